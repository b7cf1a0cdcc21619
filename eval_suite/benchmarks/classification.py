"""Zero-shot classification benchmarks: ImageNet-style (class folders / clip_benchmark WebDataset /
HF parquet), Dollar Street (by income) and GeoDE (by region).

Formats checked against /work/shared/BENCHMARK_FORMATS.md:
- §7 clip_benchmark WDS: `{split}/nshards.txt`, `{split}/{i}.tar` with `s%07d.{webp,png,jpg,jpeg}` +
  `.cls` (ASCII int), `classnames.txt`, `zeroshot_classification_templates.txt` (templates use `{c}`);
  source LAION-AI/CLIP_benchmark builder.py / webdataset_builder.py.
- §3 Dollar Street: DataComp WDS copy (`djghosh/wds_dollar_street_test`; `.npy` = [income_ds,
  income_meta, region], main metric worst-income-group top-5) and nlphuji's script dataset
  (`dollar_street_test.csv` with dotted column names, JSON-string list columns `topics`,
  `imagenet_synonyms`, `imagenet_sysnet_id`, string `income`, images from `dollarstreet_test_images.zip`
  by `imageRelPath`) or its parquet conversion (`TEST/test/*.parquet` with an `image` column).
- §4 GeoDE: DataComp WDS (`djghosh/wds_geode_test`; `.npy` = [region, country], main metric worst-region
  top-1) and the original release (`index.csv`-like CSV with `file_name`, `script_name`, `ip_country`;
  images under `{region}/{country}/{file_name}`).
- HF parquet: an `image` column plus a `label` ClassLabel whose names are read from the parquet's
  `huggingface` schema metadata (what `datasets` writes).
"""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import (IMAGE_EXTS, Benchmark, BenchmarkError, BenchmarkNotFoundError,
                                        ClassificationData, ImageRef, find_parquet, hf_features,
                                        image_ref_from_hf, is_wds_root, null_ref, read_classnames_templates,
                                        read_lines, read_parquet_rows, read_wds)

DEFAULT_TEMPLATES = ["a photo of a {c}."]
GEODE_REGIONS = ["Africa", "Americas", "EastAsia", "Europe", "SouthEastAsia", "WestAsia"]


def _templates(bench: Benchmark, found: list[str] | None) -> list[str]:
    opt = bench.options.get("templates")
    if opt:
        return read_lines(Path(opt)) if Path(str(opt)).is_file() else list(opt)
    return found or DEFAULT_TEMPLATES


def _wds_classification(bench: Benchmark, root: Path, split: str) -> tuple[ClassificationData, list[dict]]:
    classnames, templates = read_classnames_templates(root)
    if classnames is None:
        raise BenchmarkError(f"{bench.name}: {root}/classnames.txt is missing (clip_benchmark WDS layout)")
    samples = [s for s in read_wds(root, split) if "cls" in s]
    images = [s.get("image") or null_ref() for s in samples]
    labels = np.array([s["cls"] for s in samples], dtype=int)
    return ClassificationData(images=images, labels=labels, classnames=classnames,
                              templates=_templates(bench, templates)), samples


class ZeroShotBenchmark(Benchmark):
    """ImageNet-style zero-shot classification from class folders, a WDS copy or HF parquet."""

    name = "zeroshot"
    task = "zeroshot_classification"
    env_var = "CULTURECLIP_ZEROSHOT"
    source_hint = ("(any class-folder tree `ROOT/<class>/*.jpg`, a clip_benchmark WebDataset copy such as "
                   "`clip-benchmark/wds_imagenet1k`, or an HF parquet dataset with image/label columns)")

    def _load(self, root: Path) -> ClassificationData:
        split = self.options.get("split", "test")
        if is_wds_root(root, split):
            return _wds_classification(self, root, split)[0]
        files = find_parquet(root, split)
        if files:
            return self._parquet(files)
        return self._folders(root, split)

    def _parquet(self, files: list[Path]) -> ClassificationData:
        feats = hf_features(files[0])
        img_col = self.options.get("image_column", "image")
        lab_col = self.options.get("label_column", "label")
        names = (feats.get(lab_col) or {}).get("names")
        if not names:
            raise BenchmarkError(f"{self.name}: {files[0]} has no ClassLabel names for column {lab_col!r} in its "
                                 "schema metadata; write it with `datasets` or pass a WDS/class-folder copy")
        rows = read_parquet_rows(files, [img_col, lab_col])
        return ClassificationData(images=[image_ref_from_hf(r[img_col]) or null_ref() for r in rows],
                                  labels=np.array([int(r[lab_col]) for r in rows]), classnames=list(names),
                                  templates=_templates(self, None))

    def _folders(self, root: Path, split: str) -> ClassificationData:
        base = root / split if (root / split).is_dir() else root
        classes = sorted(p.name for p in base.iterdir() if p.is_dir())
        if not classes:
            raise BenchmarkNotFoundError(f"{self.name}: {root} holds no class folders, WDS shards ({split}/nshards.txt) "
                                         f"or parquet files. {self.how_to_get()}")
        classnames, templates = read_classnames_templates(root)
        if classnames is not None and len(classnames) != len(classes):
            raise BenchmarkError(f"{root}/classnames.txt has {len(classnames)} names for {len(classes)} class folders")
        classnames = classnames or [c.replace("_", " ") for c in classes]
        images, labels = [], []
        for ci, c in enumerate(classes):
            for f in sorted((base / c).rglob("*")):
                if f.suffix.lower() in IMAGE_EXTS:
                    images.append(ImageRef(path=str(f)))
                    labels.append(ci)
        return ClassificationData(images=images, labels=np.array(labels, dtype=int), classnames=classnames,
                                  templates=_templates(self, templates))


class ImageNet1kBenchmark(ZeroShotBenchmark):
    name = "imagenet1k"
    hub_id = "clip-benchmark/wds_imagenet1k"
    hub_patterns = ("classnames.txt", "zeroshot_classification_templates.txt", "test/*")
    env_var = "CULTURECLIP_IMAGENET1K"
    source_hint = "(or an ImageNet val tree of class folders)"


def _income_buckets(incomes: list[float]) -> list[str]:
    """Quartiles of monthly income over the evaluated images (q1 = poorest)."""
    arr = np.asarray(incomes, dtype=float)
    edges = np.nanquantile(arr, [0.25, 0.5, 0.75]) if len(arr) else []
    return [f"q{int(np.searchsorted(edges, v, side='right')) + 1}" for v in arr]


class DollarStreetBenchmark(Benchmark):
    name = "dollar_street"
    task = "zeroshot_classification"
    hub_id = "djghosh/wds_dollar_street_test"
    main = "acc5_worst_income"
    env_var = "CULTURECLIP_DOLLAR_STREET"
    source_hint = ("(DataComp's WebDataset copy) or `nlphuji/dollar_street_test` (CSV + image zip; a script "
                   "dataset, so download the files rather than load_dataset)")

    def _load(self, root: Path) -> ClassificationData:
        if is_wds_root(root, "test"):
            data, samples = _wds_classification(self, root, "test")
            meta = [s.get("npy") for s in samples]
            data.groups = {"income": [f"g{int(m[0])}" if m is not None else "unknown" for m in meta],
                           "region": [f"r{int(m[2])}" if m is not None and len(m) > 2 else "unknown" for m in meta]}
            data.worst_group_metric = {"income": "acc5"}
            return data
        rows, refs = self._nlphuji_rows(root)
        topics = [json.loads(r["topics"]) if isinstance(r["topics"], str) else list(r["topics"]) for r in rows]
        keep = [i for i, t in enumerate(topics) if t]
        classnames = sorted({topics[i][0] for i in keep})
        cidx = {c: i for i, c in enumerate(classnames)}
        classnames_file, templates = read_classnames_templates(root)
        incomes = [float(rows[i]["income"]) for i in keep]
        return ClassificationData(
            images=[refs[i] for i in keep], labels=np.array([cidx[topics[i][0]] for i in keep]),
            classnames=classnames, templates=_templates(self, templates),
            groups={"income": _income_buckets(incomes), "region": [str(rows[i]["region.id"]) for i in keep],
                    "country": [str(rows[i]["country.name"]) for i in keep]},
            worst_group_metric={"income": "acc5"})

    def _nlphuji_rows(self, root: Path) -> tuple[list[dict], list[ImageRef]]:
        files = find_parquet(root, "test")
        if files:  # refs/convert/parquet layout: TEST/test/*.parquet with an `image` column
            rows = read_parquet_rows(files)
            return rows, [image_ref_from_hf(r.get("image")) or null_ref() for r in rows]
        csv_path = root / "dollar_street_test.csv"
        if not csv_path.is_file():
            raise BenchmarkNotFoundError(f"dollar_street: neither WDS shards (test/nshards.txt), parquet nor "
                                         f"dollar_street_test.csv under {root}. {self.how_to_get()}")
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        zip_path = root / "dollarstreet_test_images.zip"
        img_dir = root / "dollarstreet_test_images"
        members: dict[str, str] = {}
        if not img_dir.is_dir() and zip_path.is_file():
            with zipfile.ZipFile(zip_path) as zf:
                members = {n: n for n in zf.namelist() if not n.endswith("/")}
        refs = []
        for r in rows:
            rel = r.get("imageRelPath") or r.get("image_name") or ""
            ref = null_ref()
            for cand in (img_dir / rel, root / rel, img_dir / (r.get("image_name") or "")):
                if cand.is_file():
                    ref = ImageRef(path=str(cand))
                    break
            else:
                for name in (f"dollarstreet_test_images/{rel}", rel):
                    if name in members:
                        ref = ImageRef(path=str(zip_path), member=name)
                        break
            refs.append(ref)
        return rows, refs


class GeoDEBenchmark(Benchmark):
    name = "geode"
    task = "zeroshot_classification"
    hub_id = "djghosh/wds_geode_test"
    main = "acc1_worst_region"
    env_var = "CULTURECLIP_GEODE"
    source_hint = "(DataComp's WebDataset copy) or the original release from https://geodiverse-data-collection.cs.princeton.edu"

    def _load(self, root: Path) -> ClassificationData:
        if is_wds_root(root, "test"):
            data, samples = _wds_classification(self, root, "test")
            meta = [s.get("npy") for s in samples]
            data.groups = {"region": [GEODE_REGIONS[int(m[0])] if m is not None and 0 <= int(m[0]) < 6
                                      else "unknown" for m in meta]}
            data.worst_group_metric = {"region": "acc1"}
            return data
        csvs = sorted(root.glob("*.csv"))
        if not csvs:
            raise BenchmarkNotFoundError(f"geode: neither WDS shards (test/nshards.txt) nor a metadata CSV under "
                                         f"{root}. {self.how_to_get()}")
        with open(csvs[0], newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        by_name = {p.name: p for p in root.glob("*/*/*") if p.suffix.lower() in IMAGE_EXTS}
        obj_col = "script_name" if "script_name" in rows[0] else "object"
        classes = sorted({r[obj_col] for r in rows})
        classnames = [c.replace("_", " ") for c in classes]
        images, labels, regions = [], [], []
        for r in rows:
            p = by_name.get(r["file_name"])
            images.append(ImageRef(path=str(p)) if p else null_ref())
            labels.append(classes.index(r[obj_col]))
            regions.append(p.relative_to(root).parts[0] if p else r.get("region", "unknown"))
        return ClassificationData(images=images, labels=np.array(labels), classnames=classnames,
                                  templates=_templates(self, None), groups={"region": regions},
                                  worst_group_metric={"region": "acc1"})
