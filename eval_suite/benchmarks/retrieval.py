"""Image-text retrieval: Flickr30k and COCO, Karpathy test splits (1k / 5k images).

Formats checked against /work/shared/BENCHMARK_FORMATS.md §7-8:
- Karpathy JSON (`dataset_flickr30k.json` / `dataset_coco.json`): `{"images": [{"filename", "filepath"
  (COCO only), "split", "sentences": [{"raw", ...}]}]}`; `split == "test"` is evaluated; images are
  looked up under ROOT/<filepath>/<filename>, ROOT/images/, ROOT/flickr30k-images/ or ROOT/<filename>.
- nlphuji's HF copies (`nlphuji/flickr30k`, `nlphuji/flickr_1k_test_image_text_retrieval`,
  `nlphuji/mscoco_2014_5k_test_image_text_retrieval`): parquet with `image` + `caption` (list[str]) and,
  for the 31k Flickr copy, a `split` column that must be filtered to `test`; or the raw
  `flickr_annotations_30k.csv` (`raw` = JSON list of captions, `split`, `filename`) + image folder/zip.
- clip_benchmark WDS (`clip-benchmark/wds_flickr30k`, `wds_mscoco_captions`): `.txt` = captions joined by
  newlines (split with `str.splitlines`).
Metrics follow clip_benchmark: recall@k = share of queries with any positive in the top k, both ways.
"""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.readers import (find_parquet, is_wds_root, read_parquet_rows, read_wds,
                                           require_parquet_columns, require_wds_member)
from eval_suite.benchmarks.tasks import ImageRef, RetrievalData, image_ref_from_hf, null_ref

KARPATHY_FIELDS = ("filename", "split", "sentences")


class RetrievalBenchmark(Benchmark):
    task = "zeroshot_retrieval"
    karpathy_json = ""
    image_dirs: tuple[str, ...] = ("images",)

    def _load(self, root: Path) -> RetrievalData:
        split = self.options.get("split", "test")
        if is_wds_root(root, split):
            samples = read_wds(root, split)
            require_wds_member(self.name, root / split, samples, "txt")
            samples = [s for s in samples if "txt" in s]
            return RetrievalData(images=[s.get("image") or null_ref() for s in samples],
                                 captions=[s["txt"].splitlines() for s in samples])
        ann = Path(self.options.get("annotations") or root / self.karpathy_json)
        if ann.is_file():
            return self._karpathy(root, ann, split)
        files = find_parquet(root, split) or find_parquet(root, "test")
        if files:
            require_parquet_columns(self.name, files, ("image", "caption"),
                                    "Image-text retrieval parquet (nlphuji's copies) has `image` and `caption` (a "
                                    "list of captions per image).")
            rows = read_parquet_rows(files)
            if rows and "split" in rows[0]:
                rows = [r for r in rows if r["split"] == split]
            return RetrievalData(images=[image_ref_from_hf(r["image"]) or null_ref() for r in rows],
                                 captions=[list(r["caption"]) for r in rows])
        csvs = [p for p in root.glob("*.csv")]
        if csvs:
            return self._csv(root, csvs[0], split)
        raise BenchmarkNotFoundError(f"{self.name}: no WDS shards, {self.karpathy_json}, parquet or CSV under {show_path(root)}. "
                                     f"{self.how_to_get()}")

    def _find_image(self, root: Path, filepath: str, filename: str) -> ImageRef:
        for d in (filepath, *self.image_dirs, ""):
            p = root / d / filename if d else root / filename
            if p.is_file():
                return ImageRef(path=str(p))
        return null_ref()

    def _karpathy(self, root: Path, ann: Path, split: str) -> RetrievalData:
        data = json.loads(ann.read_text(encoding="utf-8"))
        require_columns(self.name, ann, data if isinstance(data, dict) else [], ["images"],
                        "A Karpathy split file is {\"images\": [{\"filename\", \"split\", \"sentences\": [{\"raw\"}]}]}.")
        images, captions = [], []
        for n, im in enumerate(data["images"]):
            require_columns(self.name, f"{show_path(ann)} images[{n}]", im, KARPATHY_FIELDS,
                            f"Each Karpathy image entry has {', '.join(KARPATHY_FIELDS)} (COCO also filepath).")
            if im.get("split") != split:
                continue
            for k, sent in enumerate(im["sentences"]):
                require_columns(self.name, f"{show_path(ann)} images[{n}].sentences[{k}]", sent, ["raw"],
                                "Each Karpathy sentence has its caption text in `raw`.")
            images.append(self._find_image(root, im.get("filepath", ""), im["filename"]))
            captions.append([s["raw"] for s in im["sentences"]])
        return RetrievalData(images=images, captions=captions)

    def _csv(self, root: Path, path: Path, split: str) -> RetrievalData:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            require_columns(self.name, path, reader.fieldnames or [], ("filename", "raw"),
                            "nlphuji's annotation CSV has `filename` and `raw` (a JSON list of captions), "
                            "optionally `split`.")
            rows = [r for r in reader if r.get("split", split) == split]
        zips = sorted(root.glob("*.zip"))
        members = {}
        if zips:
            with zipfile.ZipFile(zips[0]) as zf:
                members = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        images = []
        for r in rows:
            ref = self._find_image(root, "", r["filename"])
            if ref.path is None and r["filename"] in members:
                ref = ImageRef(path=str(zips[0]), member=members[r["filename"]])
            images.append(ref)
        return RetrievalData(images=images, captions=[json.loads(r["raw"]) for r in rows])


class Flickr30kBenchmark(RetrievalBenchmark):
    name = "flickr30k"
    hub_id = "clip-benchmark/wds_flickr30k"
    hub_patterns = ("dataset_type.txt", "test/*")
    env_var = "CULTURECLIP_FLICKR30K"
    karpathy_json = "dataset_flickr30k.json"
    image_dirs = ("flickr30k-images", "images")
    source_hint = "(or the Karpathy split JSON dataset_flickr30k.json beside a flickr30k-images/ folder)"


class COCOBenchmark(RetrievalBenchmark):
    name = "coco"
    hub_id = "clip-benchmark/wds_mscoco_captions"
    hub_patterns = ("dataset_type.txt", "test/*")
    env_var = "CULTURECLIP_COCO"
    karpathy_json = "dataset_coco.json"
    image_dirs = ("val2014", "images")
    source_hint = "(or the Karpathy split JSON dataset_coco.json beside a val2014/ folder)"
