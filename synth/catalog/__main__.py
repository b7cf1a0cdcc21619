"""`python -m synth.catalog stats [--json]` and `python -m synth.catalog validate [--floors]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import FLOORS, CatalogError, check_floors, load_catalog
from .reach import REACH_FLOORS, format_reach, reach_problems, reach_report


def _table(title: str, counts: dict[str, int], total: int, names: dict[str, str] | None = None) -> str:
    lines = [f"{title}:"]
    for key, k in counts.items():
        label = f"{key} ({names[key]})" if names else key
        lines.append(f"  {label:<40} {k:>5}  {k / total:6.1%}" if total else f"  {label:<40} {k:>5}")
    return "\n".join(lines)


def _format_stats(s: dict) -> str:
    t = s["totals"]
    n = t["concepts"]
    head = (f"concepts: {n}  twin pairs: {t['twin_pairs']}  categories: {t['categories']}  "
            f"cultures: {t['cultures']}  regions: {t['regions']}  "
            f"concepts with twins: {t['concepts_with_twins']}  generated: {t['generated']}\n"
            f"weak twin pairs (not in twin pairs): {t['weak_twin_pairs']}  "
            f"multi-culture concepts: {t['multi_culture_concepts']}  "
            f"smallest subregion: {t['subregion_min']}\n"
            f"sources: {s['sources']['with_source']}/{n} cite one or more, "
            f"{s['sources']['with_2plus_sources']} cite two or more, "
            f"{s['sources']['with_url']} cite a URL, "
            f"{s['sources']['with_read_source']} cite a page recorded as read (url + what it supports)")
    cultures = {k: v["count"] for k, v in s["culture"].items()}
    names = {k: "; ".join(v["names"]) if len(v["names"]) <= 3
             else f"{v['name']} +{len(v['names']) - 1} more" for k, v in s["culture"].items()}
    several = {k: v["names"] for k, v in s["culture"].items() if len(v["names"]) > 1}
    lines = [f"culture names per code ({len(several)} codes carry several):"]
    lines += [f"  {k}: {' | '.join(v)}" for k, v in several.items()]
    return "\n\n".join([
        head,
        _table("category", s["category"], n),
        _table("twin pairs per category", s["twin_pairs_per_category"], t["twin_pairs"]),
        _table("region", s["region"], n),
        _table("subregion", s["subregion"], n),
        _table("culture", cultures, n, names),
        "\n".join(lines),
        format_reach(s["reach"], limit=40) if "reach" in s else "",
    ]).rstrip()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 invalid catalog or floors not met)."""
    parser = argparse.ArgumentParser(prog="python -m synth.catalog",
                                     description="Inspect and validate the curated concept catalog.")
    parser.add_argument("--paths", action="append", type=Path, default=None,
                        help="a catalog YAML file or folder; repeat for more "
                             "(default: synth/catalog/data)")
    parser.add_argument("--include-generated", action="store_true",
                        help="also read synth/catalog/generated and accept generated: true entries")
    parser.add_argument("--shared-labels", action=argparse.BooleanOptionalAction, default=None,
                        help="require that concepts share no name/alias unless listed under "
                             "shared_aliases (default: on for the curated catalog and the world's "
                             "synth/world/catalog.yaml, off for other files)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_stats = sub.add_parser("stats", help="counts per category, region and culture")
    p_stats.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p_val = sub.add_parser("validate", help="check every rule; exit 1 with the problems when invalid")
    p_val.add_argument("--floors", action="store_true",
                       help=f"also require the catalog size/coverage floors {FLOORS}")
    p_val.add_argument("--reach", action="store_true",
                       help=f"also require the issue-20 reach targets {REACH_FLOORS} (every UN member "
                            "state, subregion, culture cap, a read source per concept, no duplicate labels)")
    args = parser.parse_args(argv)

    try:
        catalog = load_catalog(args.paths, include_generated=args.include_generated,
                               shared_labels=args.shared_labels)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command == "stats":
        s = catalog.stats()
        s["reach"] = reach_report(catalog)
        text = json.dumps(s, indent=2, ensure_ascii=False) if args.json else _format_stats(s)
        try:
            print(text)
        except BrokenPipeError:  # e.g. piped into `head`
            sys.stderr.close()
        return 0
    short = check_floors(catalog) if args.floors else []
    if args.reach:
        short += reach_problems(reach_report(catalog))
    if short:
        print("catalog is valid but below the floors:\n  - " + "\n  - ".join(short), file=sys.stderr)
        return 1
    print(f"ok: {len(catalog)} concepts, {len(catalog.twin_pairs())} twin pairs "
          f"(+{len(catalog.weak_twin_pairs())} marked weak)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
