"""A tiny CulTwin dataset (manifest.parquet + PNGs) in the real manifest format, for tests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

# (concept, culture, region, category, twin, base colour rgb)
CONCEPTS = [
    ("flag_chad", "TD", "Africa", "flag", "flag_romania", (0, 38, 100)),
    ("flag_romania", "RO", "Europe", "flag", "flag_chad", (0, 43, 127)),
    ("gyoza", "JP", "Asia", "cuisine", "jiaozi", (200, 160, 90)),
    ("jiaozi", "CN", "Asia", "cuisine", "gyoza", (230, 220, 200)),
    ("hanbok", "KR", "Asia", "clothing", "", (200, 40, 90)),
    ("kilt", "GB", "Europe", "clothing", "", (20, 100, 40)),
]


def make_tiny_cultwin(folder: str | Path, per_concept: int = 4, size: int = 32, seed: int = 0,
                      splits: tuple[str, ...] = ("train", "train", "val", "test")) -> Path:
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for cid, culture, region, cat, twin, rgb in CONCEPTS:
        for k in range(per_concept):
            arr = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            arr[: size // 2, : size // 3] = 255 - arr[: size // 2, : size // 3] if k % 2 else arr[: size // 2, : size // 3]
            rel = f"images/{cid}_{k}.png"
            Image.fromarray(arr).save(folder / rel)
            rows.append({
                "image_id": f"{cid}-{k}",
                "image_path": rel,
                "concept_id": cid,
                "concept_name": cid.replace("_", " "),
                "culture": culture,
                "region": region,
                "category": cat,
                "caption": f"a {cid.replace('_', ' ')} seen in scene {k}",
                "concept_prompt": f"a photo of {cid.replace('_', ' ')}",
                "twin_concept_ids": [twin] if twin else [],
                "split": splits[k % len(splits)],
                "generator": json.dumps({"model": "fixture", "seed": k}),
                "scores": json.dumps({}),
                "sha256": hashlib.sha256((folder / rel).read_bytes()).hexdigest(),
            })
    import pandas as pd

    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet", index=False)
    return folder
