"""The offline world's concepts and its manifest rows (CulTwin format), shared by the build's data steps
(world.build) and the study's second test domain (world.domain)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from cultureclip.fileio import atomic_path
from synth.catalog import load_catalog
from synth.world import CATALOG_PATH


def world_concepts(preset) -> dict:
    """The world's catalog concepts (optionally restricted to preset.flags + their twins)."""
    cat = load_catalog([str(CATALOG_PATH)])
    keep = set(cat.concepts)
    if preset.flags:
        keep = set(preset.flags) | {t for f in preset.flags for t in cat.concepts[f].twin_ids}
    return {k: v for k, v in cat.concepts.items() if k in keep}


def write_manifest(rows: list[dict], folder: Path) -> None:
    with atomic_path(folder / "manifest.parquet") as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)


def manifest_row(image_id, rel, concept, caption, prompt, split, folder: Path, generator: dict, **extra) -> dict:
    return {"image_id": image_id, "image_path": rel, "concept_id": concept, "concept_name": extra.get("name", concept),
            "culture": extra.get("culture", ""), "region": extra.get("region", ""), "category": extra.get("category", "generic"),
            "caption": caption, "concept_prompt": prompt, "twin_concept_ids": [], "split": split,
            "generator": json.dumps(generator), "scores": "{}",
            "sha256": hashlib.sha256((folder / rel).read_bytes()).hexdigest()}
