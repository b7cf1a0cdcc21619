"""export: the CulTwin manifest (Parquet + images/), leak-free splits, and a dataset card."""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from cultureclip.data import MANIFEST_COLUMNS, read_manifest, twin_pairs

from ..engine import (ShardResult, StageContext, atomic_copy, atomic_write_bytes, atomic_write_text, done_marker,
                      iter_records, remove_stale_temps, wait_for_done)

log = logging.getLogger(__name__)


def _unit(key: str, salt: str) -> float:
    """A uniform number in [0, 1) from a key (hashlib, so every process and run agrees)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2 ** 64


def assign_splits(rows: list[dict], val: float, test: float, group_by: str = "caption",
                  holdout_twin_pairs: float = 0.0, seed: str = "cultwin") -> dict[str, str]:
    """image_id -> split. Every image of one group (caption, or concept) shares a split, so near-identical
    renders of one caption never straddle train and test. holdout_twin_pairs: the fraction of twin pairs
    whose two concepts go entirely to test (unseen-pair evaluation)."""
    if not 0 <= val + test < 1:
        raise ValueError(f"val ({val}) + test ({test}) must be in [0, 1)")
    key = {"caption": "caption_id", "concept": "concept_id"}.get(group_by)
    if key is None:
        raise ValueError(f"export.group_by must be caption or concept, got {group_by!r}")
    held: set[str] = set()
    if holdout_twin_pairs > 0:
        pairs = twin_pairs([r["concept_id"] for r in rows], [r["twin_concept_ids"] for r in rows])
        for a, b in pairs:
            if _unit(f"{a}|{b}", seed + ":pair") < holdout_twin_pairs:
                held |= {a, b}
    out = {}
    for r in rows:
        if r["concept_id"] in held:
            out[r["image_id"]] = "test"
            continue
        u = _unit(r[key], seed)
        out[r["image_id"]] = "test" if u < test else "val" if u < test + val else "train"
    return out


class ExportStage:
    """One shard: gather all filter shards, copy images into the dataset, write manifest + card."""

    name = "export"
    upstream = "filter"

    def __init__(self, dataset_dir: str | Path | None = None, val: float = 0.05, test: float = 0.05,
                 group_by: str = "caption", holdout_twin_pairs: float = 0.0, seed: str = "cultwin",
                 title: str = "CulTwin dataset", run_info: dict | None = None, n_shards: int = 0):
        self.dataset_dir = dataset_dir
        self.val, self.test, self.group_by = float(val), float(test), group_by
        self.holdout_twin_pairs, self.seed, self.title = float(holdout_twin_pairs), seed, title
        self.run_info = run_info or {}
        self.n_shards = int(n_shards)

    def settings(self) -> dict:
        return {"val": self.val, "test": self.test, "group_by": self.group_by, "seed": self.seed,
                "holdout_twin_pairs": self.holdout_twin_pairs, "title": self.title,
                "dataset_dir": str(self.dataset_dir) if self.dataset_dir else None}

    def plan(self, ctx: StageContext) -> list[list[Any]]:
        return [[0]]

    def process_shard(self, index: int, items: list[Any], ctx: StageContext) -> ShardResult:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(ctx.out)
        wait_for_done(out, self.upstream, range(self.n_shards), ctx.wait_timeout, ctx.expected.get(self.upstream))
        recs = sorted(iter_records(out, self.upstream, self.n_shards), key=lambda r: r["image_id"])
        if len({r["image_id"] for r in recs}) != len(recs):
            raise RuntimeError("duplicate image ids across filter shards; the run folder is inconsistent")
        rejected = list(iter_records(out, self.upstream, self.n_shards, ".rejected.jsonl"))
        ds = Path(self.dataset_dir) if self.dataset_dir else out / "dataset"
        ds.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(ds)
        present = {r["concept_id"] for r in recs}
        for r in recs:  # the manifest may only link twins that are in it
            r["twin_concept_ids"] = [t for t in r["twin_concept_ids"] if t in present]
        splits = assign_splits(recs, self.val, self.test, self.group_by, self.holdout_twin_pairs, self.seed)
        rows = []
        for r in recs:
            rel = f"images/{r['concept_id']}/{r['image_id']}.png"
            dst = ds / rel
            if not dst.exists() or dst.stat().st_size != (out / r["image_file"]).stat().st_size:
                atomic_copy(out / r["image_file"], dst)
            rows.append({"image_id": r["image_id"], "image_path": rel, "concept_id": r["concept_id"],
                         "concept_name": r["concept_name"], "culture": r["culture"], "region": r["region"],
                         "category": r["category"], "caption": r["caption"], "concept_prompt": r["concept_prompt"],
                         "twin_concept_ids": list(r["twin_concept_ids"]), "split": splits[r["image_id"]],
                         "generator": json.dumps(r["generator"], sort_keys=True),
                         "scores": json.dumps(r.get("scores", {}), sort_keys=True), "sha256": r["sha256"]})
        keep = {f"images/{r['concept_id']}/{r['image_id']}.png" for r in recs}
        for p in (ds / "images").rglob("*.png") if (ds / "images").exists() else []:
            if str(p.relative_to(ds)) not in keep:  # images of a previous export that no longer pass
                p.unlink()
        schema = pa.schema([(c, pa.list_(pa.string()) if c == "twin_concept_ids" else pa.string())
                            for c in MANIFEST_COLUMNS])
        table = pa.Table.from_pylist(rows, schema=schema)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd")
        atomic_write_bytes(ds / "manifest.parquet", buf.getvalue().to_pybytes())
        # re-read what was written through the one validator (columns, twins, paths, image files)
        df = read_manifest(ds / "manifest.parquet", check_images=False).frame if rows else \
            pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        atomic_write_text(ds / "README.md", self.card(df, rejected, out))
        split_counts = Counter(splits.values())
        log.info("exported %d images of %d concepts to %s (%s)", len(rows), len(present), ds, dict(split_counts))
        return ShardResult(records=[{"dataset": str(ds), "images": len(rows), "concepts": len(present),
                                     **{f"split_{k}": v for k, v in sorted(split_counts.items())}}],
                           stats={"images": len(rows)})

    def card(self, df, rejected: list[dict], out: Path) -> str:
        """The dataset card: counts per category/region/split, generator settings, filter statistics."""
        def table(counts: dict, head: str) -> str:
            lines = [f"| {head} | images |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in counts.items()]
            return "\n".join(lines)

        gen = sorted({g for g in df["generator"]}) if len(df) else []
        gsettings = {k: v for k, v in json.loads(gen[0]).items() if k not in ("seed",)} if gen else {}
        reasons = Counter(r.get("check", "other") for r in rejected)
        quarantined = sum(m.produced.get("quarantined", 0) for i in range(self.n_shards)
                          if (m := done_marker(out, "captions", i)) is not None)
        pairs = twin_pairs(df["concept_id"], df["twin_concept_ids"])
        cross = pd_crosstab(df)
        parts = [
            f"# {self.title}", "",
            "Concept-caption-image triplets of cultural concepts grouped into twin pairs (CulTwin format: "
            "`manifest.parquet` + `images/`; read with `cultureclip.data.read_manifest`).", "",
            f"- images: **{len(df)}**, concepts: **{df['concept_id'].nunique() if len(df) else 0}**, "
            f"twin pairs: **{len(pairs)}**, cultures: **{df['culture'].nunique() if len(df) else 0}**",
            f"- splits grouped by {self.group_by} (no {self.group_by} appears in two splits); "
            f"held-out twin-pair fraction: {self.holdout_twin_pairs}", "",
            "## Images per split", table(dict(sorted(Counter(df["split"]).items())), "split"), "",
            "## Images per category", table(dict(sorted(Counter(df["category"]).items())), "category"), "",
            "## Images per region", table(dict(sorted(Counter(df["region"]).items())), "region"), "",
            "## Category x split", cross, "",
            "## Generator", "```json", json.dumps(gsettings, indent=1, sort_keys=True), "```",
            "Each image's own seed (sha256 of its id) is in the manifest's `generator` column.", "",
            "## Filter statistics",
            table(dict(sorted(reasons.items())) or {"(none rejected)": 0}, "rejected by"), "",
            f"Kept {len(df)} of {len(df) + len(rejected)} generated images; {quarantined} concept(s) quarantined "
            "by the caption stage (see `captions/*.quarantine.jsonl` in the run folder).", "",
            "## Run", "```json", json.dumps(self.run_info, indent=1, sort_keys=True, default=str), "```", "",
        ]
        return "\n".join(parts)


def pd_crosstab(df) -> str:
    if not len(df):
        return "(empty)"
    splits = sorted(set(df["split"]))
    lines = ["| category | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for cat in sorted(set(df["category"])):
        sub = df[df["category"] == cat]
        lines.append(f"| {cat} | " + " | ".join(str(int((sub['split'] == s).sum())) for s in splits) + " |")
    return "\n".join(lines)
