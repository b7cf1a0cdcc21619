"""Reach checks of the curated catalog (issue 20): who and what a visitor finds in it.

`reach_report(catalog)` measures, against `REACH_FLOORS`:

- every UN member state has at least `country_min` concepts (a concept counts for every code in its
  `cultures`, as `Catalog.filter(culture=...)` finds it);
- every UN M49 subregion has at least `subregion_min` concepts (by the primary culture's subregion);
- no single culture (primary `culture`) holds more than `culture_share_max` of all concepts;
- every concept cites at least one source it actually read (a URL with a `supports` text);
- no two concepts share a name or alias unless both declare it under `shared_aliases`
  (the same thing under another name);
- the catalog size (`concepts`) and strong twin pairs (`twin_pairs`).

`reach_problems(report)` turns the report into one line per failing country, subregion, culture,
concept or label; `python -m synth.catalog stats` prints it and `validate --reach` fails on it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from . import _shared_label_problems
from .regions import COUNTRIES, SUBREGIONS

if TYPE_CHECKING:  # pragma: no cover
    from . import Catalog

# The 193 UN member states by ISO 3166-1 alpha-2 code (observers such as the Holy See and Palestine,
# and Taiwan, are not members; they still count toward their subregion).
UN_MEMBERS: tuple[str, ...] = tuple("""
AF AL DZ AD AO AG AR AM AU AT AZ BS BH BD BB BY BE BZ BJ BT BO BA BW BR BN BG BF BI CV KH CM CA CF
TD CL CN CO KM CG CR CI HR CU CY CZ KP CD DK DJ DM DO EC EG SV GQ ER EE SZ ET FJ FI FR GA GM GE DE
GH GR GD GT GN GW GY HT HN HU IS IN ID IR IQ IE IL IT JM JP JO KZ KE KI KW KG LA LV LB LS LR LY LI
LT LU MG MW MY MV ML MT MH MR MU MX FM MC MN ME MA MZ MM NA NR NP NL NZ NI NE NG MK NO OM PK PW PA
PG PY PE PH PL PT QA KR MD RO RU RW KN LC VC WS SM ST SA SN RS SC SL SG SK SI SB SO ZA SS ES LK SD
SR SE CH SY TJ TH TL TG TO TT TN TR TM TV UG UA AE GB TZ US UY UZ VU VE VN YE ZM ZW
""".split())

# The targets. The shipped catalog does not meet all of them yet: tests hold it to the
# regression floors it does reach (tests/test_catalog.py), and `stats` lists every shortfall.
REACH_FLOORS: dict[str, float] = {
    "concepts": 1000, "twin_pairs": 600, "country_min": 2, "subregion_min": 15,
    "culture_share_max": 0.02,
}


def reach_report(catalog: "Catalog", floors: dict[str, float] | None = None) -> dict:
    """Every reach measure and every item that misses its floor (JSON-serialisable)."""

    floors = {**REACH_FLOORS, **(floors or {})}
    concepts = list(catalog)
    n = len(concepts)
    per_country = Counter(code for c in concepts for code in dict.fromkeys(c.cultures))
    per_subregion = Counter(c.subregion for c in concepts)
    per_culture = Counter(c.culture for c in concepts)
    cap = floors["culture_share_max"]
    countries = {code: per_country.get(code, 0) for code in UN_MEMBERS}
    subregions = {s: per_subregion.get(s, 0) for s in SUBREGIONS}
    name_counts: dict[str, Counter] = {}
    for c in concepts:
        name_counts.setdefault(c.culture, Counter())[c.culture_name] += 1
    names = {code: k.most_common(1)[0][0] for code, k in name_counts.items()}
    return {
        "floors": floors,
        "concepts": n,
        "twin_pairs": len(catalog.twin_pairs()),
        "un_members": len(UN_MEMBERS),
        "countries_below": [{"code": code, "name": COUNTRIES[code][0], "count": k}
                            for code, k in sorted(countries.items(), key=lambda kv: (kv[1], kv[0]))
                            if k < floors["country_min"]],
        "subregions_below": [{"subregion": s, "count": k}
                             for s, k in sorted(subregions.items(), key=lambda kv: (kv[1], kv[0]))
                             if k < floors["subregion_min"]],
        "cultures_over_cap": [{"code": code, "name": names[code], "count": k,
                               "share": round(k / n, 4)}
                              for code, k in per_culture.most_common() if n and k / n > cap],
        "without_read_source": sorted(c.id for c in concepts if not c.read_sources),
        "label_collisions": _shared_label_problems(catalog),
    }


def reach_problems(report: dict) -> list[str]:
    """One line per shortfall in a `reach_report` (empty when every floor is met)."""
    f = report["floors"]
    out = [f"{key}: {report[key]} < required {int(f[key])}"
           for key in ("concepts", "twin_pairs") if report[key] < f[key]]
    out += [f"country {r['code']} ({r['name']}): {r['count']} concept(s) < required {int(f['country_min'])}"
            for r in report["countries_below"]]
    out += [f"subregion {r['subregion']}: {r['count']} concepts < required {int(f['subregion_min'])}"
            for r in report["subregions_below"]]
    out += [f"culture {r['code']} ({r['name']}): {r['count']} concepts = {r['share']:.1%} > cap "
            f"{f['culture_share_max']:.0%}" for r in report["cultures_over_cap"]]
    out += [f"concept {cid}: no source recorded as read (a url with a 'supports' text)"
            for cid in report["without_read_source"]]
    out += [f"duplicate label: {p}" for p in report["label_collisions"]]
    return out


def format_reach(report: dict, limit: int = 0) -> str:
    """The report as text for `stats`: a summary line per check, then every failing item
    (`limit` > 0 shortens the list of concepts without a read source)."""
    f = report["floors"]
    n = report["concepts"]
    no_src = report["without_read_source"]
    lines = [
        "reach (issue 20 targets; every shortfall is listed):",
        f"  concepts {n} (target {int(f['concepts'])}), twin pairs {report['twin_pairs']} "
        f"(target {int(f['twin_pairs'])})",
        f"  UN member states below {int(f['country_min'])} concepts: "
        f"{len(report['countries_below'])} of {report['un_members']}",
    ]
    lines += [f"    {r['code']} {r['name']}: {r['count']}" for r in report["countries_below"]]
    lines.append(f"  M49 subregions below {int(f['subregion_min'])} concepts: "
                 f"{len(report['subregions_below'])} of {len(SUBREGIONS)}")
    lines += [f"    {r['subregion']}: {r['count']}" for r in report["subregions_below"]]
    lines.append(f"  cultures above {f['culture_share_max']:.0%} of concepts: "
                 f"{len(report['cultures_over_cap'])}")
    lines += [f"    {r['code']} {r['name']}: {r['count']} ({r['share']:.1%})"
              for r in report["cultures_over_cap"]]
    lines.append(f"  concepts without a source recorded as read: {len(no_src)} of {n}")
    shown = no_src if limit <= 0 else no_src[:limit]
    if shown:
        more = f" ... and {len(no_src) - len(shown)} more (stats --json lists all)" if len(shown) < len(no_src) else ""
        lines.append("    " + ", ".join(shown) + more)
    lines.append(f"  duplicate labels (not declared shared): {len(report['label_collisions'])}")
    lines += [f"    {p}" for p in report["label_collisions"]]
    return "\n".join(lines)
