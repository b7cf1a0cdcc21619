"""Zero-shot classification benchmarks: ImageNet-style (class folders / clip_benchmark WebDataset /
HF parquet), Dollar Street (by income) and GeoDE (by region).

Formats (see the README table "Where each benchmark comes from" for sources and what was verified):
- clip_benchmark WDS: `{split}/nshards.txt`, `{split}/{i}.tar` with `s%07d.{webp,png,jpg,jpeg}` + `.cls`
  (ASCII int), `classnames.txt`, `zeroshot_classification_templates.txt` (templates use `{c}`);
  LAION-AI/CLIP_benchmark builder.py / webdataset_builder.py.
- ImageNet class-folder trees name folders by WordNet id (`n01440764/`), HF `imagenet-1k` parquet names
  its ClassLabel with raw synset strings (`tench, Tinca tinca`): both are mapped to open_clip's CLIP class
  names through the standard 1000-id order (`imagenet_meta`), and any class names that still look like
  ids raise a loud warning (recorded in the result's `extra.warnings`). Without a templates file the 80
  OpenAI ImageNet templates are used. `imagenet1k` is 1000 classes: a copy with images of fewer (a partial
  val tree) keeps the standard indices (a WordNet-id tree stays 1000-way) and warns loudly the same way.
- Dollar Street: DataComp's WDS copy (`djghosh/wds_dollar_street_test`; `.npy` = [income_ds,
  income_meta, region]; top-5, worst `income_ds` group, as `mlfoundations/datacomp:eval_utils/
  fairness_eval.py`) and nlphuji's files (`dollar_street_test.csv` with `id, country.id, country.name,
  region.id, imageRelPath, topics, place, income, imagenet_synonyms, imagenet_sysnet_id`, list columns as
  JSON strings; images in `dollarstreet_test_images.zip` as `dollarstreet_test_images/<file name>`, or
  that folder extracted) or its parquet conversion. How the nlphuji path differs from DataComp's is in
  `DollarStreetBenchmark`'s docstring.
- GeoDE: DataComp's WDS copy (`djghosh/wds_geode_test`; `.npy` = [region, country]; top-1, worst region)
  and the original release (`index.csv` with `file_path` under `images/`, `object` (underscores for
  spaces), `region`, `ip_country`, as public loaders of the release read it; the authors' own CSVs use
  `file_name`, `script_name`, `ip_country` with images under `{region}/{country}/`: both are read).
"""
from __future__ import annotations

import ast
import csv
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from cultureclip.inference import check_templates
from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.imagenet_meta import (
    WNID_RE,
    imagenet_classnames,
    imagenet_wnids,
    is_imagenet_classlabel,
    openai_templates,
    warn_if_id_like,
    wnid_classnames,
)
from eval_suite.benchmarks.readers import (
    IMAGE_EXTS,
    find_parquet,
    hf_features,
    is_wds_root,
    read_classnames_templates,
    read_lines,
    read_parquet_rows,
    read_wds,
    require_parquet_columns,
    require_wds_member,
)
from eval_suite.benchmarks.tasks import ClassificationData, ImageRef, image_ref_from_hf, null_ref

logger = logging.getLogger(__name__)

# mlfoundations/datacomp tasklist.yml: Dollar Street 3,503 images, 58 classes, main metric acc_top5_wg;
# GeoDE 12,488 images, 40 classes, main metric acc_wg (top-1, worst region).
DATACOMP_DOLLAR_STREET_CLASSES = 58
GEODE_REGIONS = ["Africa", "Americas", "EastAsia", "Europe", "SouthEastAsia", "WestAsia"]
# GeoDE's country -> region (index into GEODE_REGIONS), as in princetonvisualai/geode_dataset
# training/utils_local.py (`get_country_to_region`); country names with "_" for spaces.
GEODE_COUNTRY_REGION = {
    **dict.fromkeys(["Angola", "Botswana", "Cameroon", "Egypt", "Ghana", "Nigeria", "South_Africa"], 0),
    **dict.fromkeys(["Argentina", "Brazil", "Colombia", "Mexico", "Uruguay", "Venezuela"], 1),
    **dict.fromkeys(["China", "Hong_Kong", "Japan", "South_Korea", "Taiwan"], 2),
    **dict.fromkeys(["Bulgaria", "France", "Greece", "Italy", "Poland", "Romania", "Switzerland", "United_Kingdom",
                     "Cyprus", "Germany", "Ireland", "Netherlands", "Portugal", "Spain", "Ukraine"], 3),
    **dict.fromkeys(["Indonesia", "Malaysia", "Philippines", "Singapore", "Thailand"], 4),
    **dict.fromkeys(["Jordan", "Saudi_Arabia", "Turkey", "United_Arab_Emirates", "Yemen"], 5),
}


def checked_templates(templates: list[str], where: str) -> list[str]:
    """Zero-shot templates (clip_benchmark's `{c}` or `{}` for the class name), each with exactly one
    placeholder (`cultureclip.inference.check_templates`), else a BenchmarkError naming `where` and the
    template as written."""
    for t in map(str, templates):
        try:
            check_templates([t.replace("{c}", "{}")])
        except ValueError as e:
            detail = str(e).split("; ", 1)[-1].split(". Write", 1)[0]
            raise BenchmarkError(f"{where}: prompt template {t!r} must have exactly one placeholder for the class "
                                 f"name, {{c}} (clip_benchmark's files) or {{}}; {detail}. Write it like "
                                 "'a photo of a {c}.' (a literal brace as '{{' or '}}')") from None
    return [str(t) for t in templates]


def templates_option(value, bench_name: str) -> list[str]:
    """The `templates` adapter option as a list, checked: a file of one template per line, a list, or a
    YAML list / single template given as text (`--option imagenet1k.templates='[a photo of a {c}.]'`)."""
    where = f"{bench_name}: option templates"
    if isinstance(value, (str, os.PathLike)) and Path(str(value)).expanduser().is_file():
        path = Path(str(value)).expanduser()
        return checked_templates(read_lines(path), f"{bench_name}: templates file {show_path(path)}")
    if isinstance(value, str):
        import yaml

        if value.strip().startswith("["):  # a YAML list
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                value = None
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise BenchmarkError(f"{where}: cannot read the list of templates; quote each one, e.g. "
                                     "templates=['a photo of a {c}.', 'a drawing of a {c}.']")
        else:
            value = [value]  # one template
    if not isinstance(value, (list, tuple)) or not value:
        raise BenchmarkError(f"{where}: expected a templates file, or a list of templates; got {value!r}")
    return checked_templates(list(value), where)


def _templates(bench: Benchmark, found: list[str] | None, where: Path | None = None) -> list[str]:
    """`templates` option (file or list) > the dataset's templates file > the 80 OpenAI templates."""
    opt = bench.options.get("templates")
    if opt:
        return templates_option(opt, bench.name)
    if found:
        shown = show_path(where / "zeroshot_classification_templates.txt") if where else "templates file"
        return checked_templates(found, f"{bench.name}: {shown}")
    return list(openai_templates())


def _readable_classnames(bench: Benchmark, names: list[str], where: str) -> list[str]:
    """Map ImageNet WordNet ids to CLIP names; warn loudly about any names that still look like ids."""
    mapped = wnid_classnames(names) if names and all(WNID_RE.match(n) for n in names) else None
    if mapped is not None:
        logger.info("%s: %d ImageNet WordNet ids in %s mapped to CLIP class names", bench.name, len(names), where)
        return mapped
    msg = warn_if_id_like(bench.name, names, where)
    if msg:
        bench.warnings.append(msg)
    return names


def _wds_classification(bench: Benchmark, root: Path, split: str) -> tuple[ClassificationData, list[dict]]:
    classnames, templates = read_classnames_templates(root)
    if classnames is None:
        raise BenchmarkError(f"{bench.name}: {show_path(root / 'classnames.txt')} is missing (clip_benchmark WDS "
                             "layout: one class name per line, line i = label i)")
    classnames = _readable_classnames(bench, classnames, "classnames.txt")
    samples = read_wds(root, split)
    require_wds_member(bench.name, root / split, samples, "cls")
    samples = [s for s in samples if "cls" in s]
    images = [s.get("image") or null_ref() for s in samples]
    labels = np.array([s["cls"] for s in samples], dtype=int)
    return ClassificationData(images=images, labels=labels, classnames=classnames,
                              templates=_templates(bench, templates, root)), samples


class ZeroShotBenchmark(Benchmark):
    """ImageNet-style zero-shot classification from class folders, a WDS copy or HF parquet."""

    name = "zeroshot"
    task = "zeroshot_classification"
    env_var = "CULTURECLIP_ZEROSHOT"
    source_hint = ("(any class-folder tree `ROOT/<class>/*.jpg` (ImageNet WordNet-id folders are mapped to class "
                   "names), a clip_benchmark WebDataset copy such as `clip-benchmark/wds_imagenet1k`, or an HF "
                   "parquet dataset with image/label columns)")

    n_classes: ClassVar[int | None] = None  # a fixed-size benchmark (ImageNet-1k: 1000) warns when it sees fewer

    def _load(self, root: Path) -> ClassificationData:
        data = self._read(root)
        self._check_class_count(data, root)
        return data

    def _check_class_count(self, data: ClassificationData, root: Path) -> None:
        """A copy holding fewer classes than the benchmark has scores higher on an easier task: warn loudly
        (logged and recorded in the result's warnings)."""
        if not self.n_classes or not len(data.labels):
            return
        seen = len(np.unique(data.labels))
        if seen >= self.n_classes:
            return
        way = len(data.classnames)
        task = (f"scored as the full {way}-way task with the standard class indices" if way >= self.n_classes else
                f"scored as a {way}-way task (its class list has {way} names, not {self.n_classes})")
        msg = (f"{self.name}: only {seen} of the {self.n_classes} classes have images under {show_path(root)} "
               f"(a partial copy?); {task}. Accuracy over {seen} classes is not comparable with full "
               f"{self.name} results: point --root {self.name}=PATH at the complete set.")
        logger.warning("%s", msg)
        self.warnings.append(msg)

    def _read(self, root: Path) -> ClassificationData:
        split = self.options.get("split", "test")
        if is_wds_root(root, split):
            return _wds_classification(self, root, split)[0]
        splits = [split] + (["validation"] if split == "test" else [])
        found = [(sp, f) for sp in splits if (f := find_parquet(root, sp))]
        for i, (sp, files) in enumerate(found):
            data = self._parquet(root, files)
            if (data.labels >= 0).any():
                self.notes["hidden_label"] = int((data.labels < 0).sum())  # rows with label -1 are skipped
                return data.select(np.flatnonzero(data.labels >= 0))
            if i + 1 < len(found):  # HF imagenet-1k: the test split's labels are hidden (-1)
                logger.warning("%s: the %r split's labels are hidden (-1); using %r", self.name, sp, found[i + 1][0])
                self.warnings.clear()
                continue
            raise BenchmarkError(f"{self.name}: every label of the {sp!r} parquet split under {show_path(root)} is -1 "
                                 "(hidden test labels); evaluate a labelled split with `--option "
                                 f"{self.name}.split=validation`")
        return self._folders(root, split)

    def _parquet(self, root: Path, files: list[Path]) -> ClassificationData:
        feats = hf_features(files[0])
        img_col = self.options.get("image_column", "image")
        lab_col = self.options.get("label_column", "label")
        require_parquet_columns(self.name, files, (img_col, lab_col),
                                f"Zero-shot parquet needs an image and a label column (name others with "
                                f"`--option {self.name}.image_column=NAME` / `{self.name}.label_column=NAME`).")
        names = (feats.get(lab_col) or {}).get("names")
        own, templates = read_classnames_templates(root)
        if own is not None:
            names = own
        if not names:
            raise BenchmarkError(f"{self.name}: {show_path(files[0])} has no ClassLabel names for column {lab_col!r} "
                                 "in its schema metadata; write it with `datasets`, put a classnames.txt beside it, "
                                 "or pass a WDS/class-folder copy")
        if own is None and is_imagenet_classlabel(names):
            # HF imagenet-1k: label index = the standard ImageNet order; its names are raw synset strings
            logger.info("%s: ImageNet-1k ClassLabel mapped to CLIP class names", self.name)
            names = list(imagenet_classnames())
        else:
            names = _readable_classnames(self, list(names), "classnames.txt" if own else f"the {lab_col!r} ClassLabel")
        rows = read_parquet_rows(files, [img_col, lab_col])
        return ClassificationData(images=[image_ref_from_hf(r[img_col]) or null_ref() for r in rows],
                                  labels=np.array([int(r[lab_col]) for r in rows]), classnames=list(names),
                                  templates=_templates(self, templates, root))

    def _folders(self, root: Path, split: str) -> ClassificationData:
        base = root / split if (root / split).is_dir() else root
        if (root / "val").is_dir() and not (root / split).is_dir() and split == "test":
            base = root / "val"  # ImageNet's own layout: train/ and val/
        classes = sorted(p.name for p in base.iterdir() if p.is_dir())
        if not classes:
            raise BenchmarkNotFoundError(f"{self.name}: {show_path(root)} holds no class folders, WDS shards "
                                         f"({split}/nshards.txt) or parquet files. {self.how_to_get()}")
        classnames, templates = read_classnames_templates(root)
        if classnames is not None and len(classnames) != len(classes):
            raise BenchmarkError(f"{show_path(root / 'classnames.txt')} has {len(classnames)} names for "
                                 f"{len(classes)} class folders")
        index = list(range(len(classes)))  # label of each folder
        standard = {w: i for i, w in enumerate(imagenet_wnids())}
        if classnames is None and self.n_classes == len(standard) and all(c in standard for c in classes):
            # ImageNet WordNet-id folders: the standard 1000-way task and indices, however many folders are here
            classnames, index = list(imagenet_classnames()), [standard[c] for c in classes]
            logger.info("%s: %d ImageNet WordNet-id folders mapped to the standard class indices", self.name, len(classes))
        elif classnames is None:
            classnames = _readable_classnames(self, [c.replace("_", " ") for c in classes], "the folder names")
        else:
            classnames = _readable_classnames(self, classnames, "classnames.txt")
        images, labels = [], []
        for ci, c in zip(index, classes):
            for f in sorted((base / c).rglob("*")):
                if f.suffix.lower() in IMAGE_EXTS:
                    images.append(ImageRef(path=str(f)))
                    labels.append(ci)
        return ClassificationData(images=images, labels=np.array(labels, dtype=int), classnames=classnames,
                                  templates=_templates(self, templates, root))


class ImageNet1kBenchmark(ZeroShotBenchmark):
    name = "imagenet1k"
    n_classes = 1000
    hub_id = "clip-benchmark/wds_imagenet1k"
    hub_patterns = ("classnames.txt", "zeroshot_classification_templates.txt", "test/*")
    env_var = "CULTURECLIP_IMAGENET1K"
    source_hint = ("(or an ImageNet val tree of WordNet-id class folders, or HF `imagenet-1k` parquet: both are "
                   "mapped to the standard CLIP class names)")


def _income_buckets(incomes: list[float]) -> list[str]:
    """Quartiles of monthly income over the evaluated images (q1 = poorest)."""
    arr = np.asarray(incomes, dtype=float)
    edges = np.nanquantile(arr, [0.25, 0.5, 0.75]) if len(arr) else []
    return [f"q{int(np.searchsorted(edges, v, side='right')) + 1}" for v in arr]


def _json_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return []
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            out = ast.literal_eval(value)
        return list(out) if isinstance(out, (list, tuple)) else [out]
    return list(value)


NLPHUJI_COLUMNS = ("topics", "income")  # what the nlphuji copies must have (imageRelPath too in the CSV)


class DollarStreetBenchmark(Benchmark):
    """Dollar Street as DataComp scores it: zero-shot top-5 accuracy, worst income group.

    On DataComp's WDS copy everything comes from the copy: its classnames.txt and templates file, labels
    (`.cls`) and the `income_ds` group (`.npy`[0]); this is DataComp's protocol exactly.

    On nlphuji's CSV + zip (or its parquet conversion) the same scorer runs (top-5, worst income group,
    80 OpenAI templates unless the folder has a templates file), but:
    - classes: with DataComp's `classnames.txt` copied beside the CSV, each image takes the first of its
      `topics` that is one of those names (images with none are dropped and counted in `skipped.no_class`);
      without it, the classes are the distinct first topics of the rows (a warning says so);
    - income groups: DataComp's `income_ds` bins are not published outside its WDS copy, so the groups
      here are income quartiles over the evaluated rows (`q1` = poorest); the worst group is therefore
      not DataComp's number.
    """

    name = "dollar_street"
    task = "zeroshot_classification"
    hub_id = "djghosh/wds_dollar_street_test"
    main = "acc5_worst_income"
    env_var = "CULTURECLIP_DOLLAR_STREET"
    source_hint = ("(DataComp's WebDataset copy) or `nlphuji/dollar_street_test` (dollar_street_test.csv + "
                   "dollarstreet_test_images.zip; a script dataset, so download the files rather than load_dataset)")

    def _load(self, root: Path) -> ClassificationData:
        if is_wds_root(root, "test"):
            data, samples = _wds_classification(self, root, "test")
            meta = [s.get("npy") for s in samples]
            data.groups = {"income": [f"g{int(m[0])}" if m is not None else "unknown" for m in meta],
                           "region": [f"r{int(m[2])}" if m is not None and len(m) > 2 else "unknown" for m in meta]}
            data.worst_group_metric = {"income": "acc5"}
            return data
        rows, refs = self._nlphuji_rows(root)
        topics = [[str(t) for t in _json_list(r.get("topics"))] for r in rows]
        classnames, templates = read_classnames_templates(root)
        if classnames is not None:
            lookup = {c.strip().lower(): i for i, c in enumerate(classnames)}
            labels_all = [next((lookup[t.strip().lower()] for t in ts if t.strip().lower() in lookup), None)
                          for ts in topics]
        else:
            classnames = sorted({ts[0] for ts in topics if ts})
            cidx = {c: i for i, c in enumerate(classnames)}
            labels_all = [cidx[ts[0]] if ts else None for ts in topics]
            msg = (f"dollar_street: no classnames.txt beside {show_path(root / 'dollar_street_test.csv')}: the "
                   f"{len(classnames)} classes are the rows' first topics, not DataComp's class list "
                   f"({DATACOMP_DOLLAR_STREET_CLASSES} classes; copy classnames.txt from "
                   "djghosh/wds_dollar_street_test to score DataComp's classes)")
            logger.warning("%s", msg)
            self.warnings.append(msg)
        keep = [i for i, lab in enumerate(labels_all) if lab is not None]
        self.notes["no_class"] = len(rows) - len(keep)
        incomes = [float(rows[i]["income"]) for i in keep]
        return ClassificationData(
            images=[refs[i] for i in keep], labels=np.array([labels_all[i] for i in keep], dtype=int),
            classnames=classnames, templates=_templates(self, templates, root),
            groups={"income": _income_buckets(incomes), "region": [str(rows[i].get("region.id")) for i in keep],
                    "country": [str(rows[i].get("country.name")) for i in keep]},
            worst_group_metric={"income": "acc5"})

    def _nlphuji_rows(self, root: Path) -> tuple[list[dict], list[ImageRef]]:
        files = find_parquet(root, "test")
        if files:  # refs/convert/parquet layout: TEST/test/*.parquet with an `image` column
            require_parquet_columns(self.name, files, ("image", *NLPHUJI_COLUMNS),
                                    f"nlphuji's Dollar Street rows have image, {', '.join(NLPHUJI_COLUMNS)}, "
                                    "country.name, region.id, ...")
            rows = read_parquet_rows(files)
            if not rows:
                raise BenchmarkError(f"dollar_street: the parquet files under {show_path(root)} hold no rows")
            return rows, [image_ref_from_hf(r.get("image")) or null_ref() for r in rows]
        csv_path = root / "dollar_street_test.csv"
        if not csv_path.is_file():
            raise BenchmarkNotFoundError(f"dollar_street: neither WDS shards (test/nshards.txt), parquet nor "
                                         f"dollar_street_test.csv under {show_path(root)}. {self.how_to_get()}")
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        if not header:
            raise BenchmarkError(f"dollar_street: {show_path(csv_path)} is empty (no header, no rows); nlphuji's CSV "
                                 "has a header and one row per image: download dollar_street_test.csv again")
        require_columns(self.name, csv_path, header, (*NLPHUJI_COLUMNS, "imageRelPath"),
                        "nlphuji's CSV has id, country.name, region.id, imageRelPath, topics, income, ...")
        if not rows:
            raise BenchmarkError(f"dollar_street: {show_path(csv_path)} has a header but no rows (an empty or "
                                 "truncated copy): download dollar_street_test.csv again")
        refs = self._image_refs(root, rows)
        if rows and all(r.path is None and r.data is None for r in refs):
            raise BenchmarkNotFoundError(
                f"dollar_street: none of the {len(rows)} images of {show_path(csv_path)} was found. Put "
                f"dollarstreet_test_images.zip (members dollarstreet_test_images/<file>.jpg) or its extracted "
                f"dollarstreet_test_images/ folder beside the CSV in {show_path(root)}.")
        return rows, refs

    @staticmethod
    def _image_refs(root: Path, rows: list[dict]) -> list[ImageRef]:
        """Images by file name, as public downloaders read nlphuji's zip (`dollarstreet_test_images/<name>`),
        also accepting the zip extracted, `imageRelPath` kept as a sub-path, or files beside the CSV."""
        zip_path = root / "dollarstreet_test_images.zip"
        img_dir = root / "dollarstreet_test_images"
        by_name: dict[str, ImageRef] = {}
        by_rel: dict[str, ImageRef] = {}
        if zip_path.is_file():
            with zipfile.ZipFile(zip_path) as zf:
                for n in zf.namelist():
                    if not n.endswith("/"):
                        ref = ImageRef(path=str(zip_path), member=n)
                        by_rel[n] = ref
                        by_name.setdefault(os.path.basename(n), ref)
        for folder in (img_dir, root):
            if folder.is_dir():
                for p in folder.rglob("*"):
                    if p.suffix.lower() in IMAGE_EXTS:
                        ref = ImageRef(path=str(p))
                        by_rel[p.relative_to(folder).as_posix()] = ref
                        by_name.setdefault(p.name, ref)
        refs = []
        for r in rows:
            rel = (r.get("imageRelPath") or "").lstrip("/")
            name = r.get("image_name") or os.path.basename(rel)
            ref = (by_rel.get(f"dollarstreet_test_images/{name}") or by_rel.get(rel)
                   or by_rel.get(f"dollarstreet_test_images/{rel}") or by_name.get(name))
            refs.append(ref or null_ref())
        return refs


class GeoDEBenchmark(Benchmark):
    name = "geode"
    task = "zeroshot_classification"
    hub_id = "djghosh/wds_geode_test"
    main = "acc1_worst_region"
    env_var = "CULTURECLIP_GEODE"
    source_hint = ("(DataComp's WebDataset copy) or the original release from "
                   "https://geodiverse-data-collection.cs.princeton.edu (index.csv + images/)")

    def _load(self, root: Path) -> ClassificationData:
        if is_wds_root(root, "test"):
            data, samples = _wds_classification(self, root, "test")
            meta = [s.get("npy") for s in samples]
            data.groups = {"region": [GEODE_REGIONS[int(m[0])] if m is not None and 0 <= int(m[0]) < 6
                                      else "unknown" for m in meta]}
            data.worst_group_metric = {"region": "acc1"}
            return data
        csv_path = root / "index.csv" if (root / "index.csv").is_file() else next(iter(sorted(root.glob("*.csv"))), None)
        if csv_path is None:
            raise BenchmarkNotFoundError(f"geode: neither WDS shards (test/nshards.txt) nor index.csv under "
                                         f"{show_path(root)}. {self.how_to_get()}")
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        if not header:
            raise BenchmarkError(f"geode: {show_path(csv_path)} is empty (no header, no rows)")
        cols = set(header)
        if {"file_path", "object"} <= cols:  # the public release's index.csv
            obj_col, file_col = "object", "file_path"
        elif {"file_name", "script_name", "ip_country"} <= cols:  # the authors' own CSVs
            obj_col, file_col = "script_name", "file_name"
        else:
            layout = ("file_name", "script_name", "ip_country") if "file_name" in cols else ("file_path", "object")
            require_columns(self.name, csv_path, header, layout,
                            "GeoDE's index.csv has file_path, object, region, ip_country (the authors' own CSVs: "
                            "file_name, script_name, ip_country).")
        if not rows:
            raise BenchmarkError(f"geode: {show_path(csv_path)} has a header but no rows (an empty or truncated copy)")
        by_name = {p.name: p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS} \
            if file_col == "file_name" else {}
        classes = sorted({r[obj_col] for r in rows})
        cidx = {c: i for i, c in enumerate(classes)}
        classnames = [c.replace("_", " ") for c in classes]
        images, labels, regions = [], [], []
        for r in rows:
            region = r.get("region") or ""
            if not region and r.get("ip_country"):
                k = GEODE_COUNTRY_REGION.get(r["ip_country"].replace(" ", "_"))
                region = GEODE_REGIONS[k] if k is not None else "unknown"
            if file_col == "file_path":
                p = next((c for c in (root / "images" / r["file_path"], root / r["file_path"]) if c.is_file()), None)
            else:
                p = by_name.get(r["file_name"])
            images.append(ImageRef(path=str(p)) if p else null_ref())
            labels.append(cidx[r[obj_col]])
            regions.append(region or "unknown")
        if rows and all(im.path is None for im in images):
            raise BenchmarkNotFoundError(f"geode: none of the {len(rows)} images of {show_path(csv_path)} was found "
                                         f"(expected under {show_path(root / 'images')}/ by the {file_col} column)")
        templates = read_classnames_templates(root)[1]
        return ClassificationData(images=images, labels=np.array(labels), classnames=classnames,
                                  templates=_templates(self, templates, root), groups={"region": regions},
                                  worst_group_metric={"region": "acc1"})
