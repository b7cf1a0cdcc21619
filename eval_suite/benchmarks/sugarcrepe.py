"""SugarCrepe (RAIVNLab/sugar-crepe): compositional caption selection on COCO val2017.

Format checked against the public repository (RAIVNLab/sugar-crepe; all 7,511 real pairs load, and the
test fixture holds real entries): 7 files
`data/{add_att,add_obj,replace_att,replace_obj,replace_rel,swap_att,swap_obj}.json`, each one JSON
object keyed by (possibly non-contiguous) stringified ints -> {filename, caption, negative_caption};
images are COCO val2017 files (`000000085329.jpg`) under ROOT/val2017/ (or `images=PATH`).
Metric as `main_eval.py`: per-subset accuracy of pos > neg (ties wrong), plus the mean.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.tasks import BenchmarkResult, ChoiceData, ImageRef, null_ref

COCO_VAL2017_URL = "http://images.cocodataset.org/zips/val2017.zip"

ENTRY_FIELDS = ("filename", "caption", "negative_caption")
SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


class SugarCrepeBenchmark(Benchmark):
    name = "sugarcrepe"
    task = "image_caption_selection"
    main = "mean_subset_accuracy"
    env_var = "CULTURECLIP_SUGARCREPE"
    source_hint = ("(https://github.com/RAIVNLab/sugar-crepe: its data/ folder, plus COCO 2017 val images "
                   "extracted to val2017/ beside it)")

    def _load(self, root: Path) -> ChoiceData:
        data_dir = root / "data" if (root / "data").is_dir() else root
        img_dir = Path(self.options.get("images") or root / "val2017")
        subsets = [s for s in SUBSETS if (data_dir / f"{s}.json").is_file()]
        if not subsets:
            raise BenchmarkNotFoundError(f"sugarcrepe: no data/<subset>.json under {show_path(root)}. {self.how_to_get()}")
        images, options, groups = [], [], {"subset": []}
        for sub in subsets:
            entries = json.loads((data_dir / f"{sub}.json").read_text(encoding="utf-8"))
            if not isinstance(entries, dict) or not all(str(k).isdigit() for k in entries):
                raise BenchmarkError(f"sugarcrepe: {show_path(data_dir / f'{sub}.json')} is not SugarCrepe's format "
                                     "(one JSON object keyed by stringified ints -> {filename, caption, negative_caption})")
            for key in sorted(entries, key=int):
                e = entries[key]
                require_columns(self.name, f"{show_path(data_dir / f'{sub}.json')} entry {key!r}",
                                e if isinstance(e, dict) else [], ENTRY_FIELDS,
                                f"Each SugarCrepe entry has {', '.join(ENTRY_FIELDS)}.")
                p = img_dir / e["filename"]
                images.append(ImageRef(path=str(p)) if p.is_file() else null_ref())
                options.append([e["caption"], e["negative_caption"]])
                groups["subset"].append(sub)
        if not any(ref.path for ref in images):
            where = "does not exist" if not img_dir.is_dir() else "holds none of the images the JSON names"
            raise BenchmarkNotFoundError(
                f"sugarcrepe: found the captions ({len(images)} pairs in {show_path(data_dir)}) but no COCO images: "
                f"{show_path(img_dir)} {where}. SugarCrepe's images are COCO 2017 val: download {COCO_VAL2017_URL} "
                f"and unzip it in {show_path(root)} so the files are {show_path(root / 'val2017')}/000000xxxxxx.jpg, "
                "or point to an existing val2017 folder with `--option sugarcrepe.images=PATH`.")
        return ChoiceData(images=images, options=options, answers=np.zeros(len(images), dtype=int),
                          groups=groups)

    def evaluate(self, embedder, image_features=None, valid=None, **kw) -> BenchmarkResult:
        out = super().evaluate(embedder, image_features, valid, **kw)
        subs = [g["metrics"]["accuracy"] for g in out.groups if list(g["fields"]) == ["subset"]]
        out.metrics["mean_subset_accuracy"] = float(np.mean(subs)) if subs else float("nan")
        out.metrics.pop("accuracy_worst_subset", None)
        out.metrics.pop("accuracy_gap_subset", None)
        out.main_metric = "mean_subset_accuracy"
        return out
