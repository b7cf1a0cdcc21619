"""CulTwin test split (our own format; ARCHITECTURE.md "CulTwin manifest").

Format checked against: ARCHITECTURE.md (`<dataset>/manifest.parquet` + `<dataset>/images/...`,
columns image_id, image_path, concept_id, concept_name, culture, region, category, caption,
concept_prompt, twin_concept_ids (list[str]), split, ...). Scored as N-way concept classification
over the split's concepts plus Winoground-style twin scores per twin pair, grouped by region and
category.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cultureclip.data import concept_prompts, read_manifest, twin_pairs
from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, show_path
from eval_suite.benchmarks.tasks import ImageRef, TwinData


def _read_manifest(path: Path):
    """The validated manifest frame (images are not opened here: the runner counts unreadable ones)."""

    return read_manifest(path, check_images=False).frame


class CulTwinBenchmark(Benchmark):
    name = "cultwin"
    task = "twin"
    env_var = "CULTURECLIP_CULTWIN"
    source_hint = ("(a folder written by the synth pipeline: `python -m synth ...` or the bundled offline "
                   "twin world, holding manifest.parquet)")

    def _load(self, root: Path) -> TwinData:
        manifest = root / "manifest.parquet" if root.is_dir() else root
        if not manifest.is_file():
            raise BenchmarkNotFoundError(f"cultwin: {show_path(manifest)} not found. {self.how_to_get()}")
        base = manifest.parent
        df = _read_manifest(manifest)
        split = self.options.get("split", "test")
        df = df[df["split"] == split]
        if df.empty:
            raise BenchmarkError(f"cultwin: no rows with split == {split!r} in {show_path(manifest)}")
        texts = concept_prompts(df["concept_id"], df["concept_prompt"], df["concept_name"])
        pairs = twin_pairs(df["concept_id"], df["twin_concept_ids"])
        images = [ImageRef(path=str(base / p)) for p in df["image_path"]]
        return TwinData(images=images, concept_ids=[str(c) for c in df["concept_id"]], concept_texts=texts,
                        pairs=pairs,
                        groups={"region": [str(v) for v in df["region"]],
                                "category": [str(v) for v in df["category"]]})


class WorldAttributesBenchmark(CulTwinBenchmark):
    """General ability in the offline twin world: held-out culture-free flag designs, each to be matched
    to its appearance caption among all captions of the set (a CulTwin-format manifest without twins,
    written by `world.build`). N-way accuracy here is "general attribute accuracy"."""

    name = "world_attributes"
    env_var = "CULTURECLIP_WORLD_ATTRIBUTES"
    source_hint = "(built by `make offline-world`: artifacts/world/attributes)"
