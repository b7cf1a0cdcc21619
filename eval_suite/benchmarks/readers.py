"""Readers of the containers benchmarks are published in: HF parquet shards, clip_benchmark WebDataset
tars, plain line files (classnames, templates). They return rows/samples with lazy `ImageRef`s.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.tasks import ImageRef

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")


# --------------------------------------------------------------------------------------------
# Readers of common containers
# --------------------------------------------------------------------------------------------
def hf_features(parquet_path: Path) -> dict[str, Any]:
    """The `datasets` feature spec stored in a parquet file's schema metadata ({} if absent)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet_path).metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    info = json.loads(raw)
    return (info.get("info") or {}).get("features") or {}


def parquet_columns(path: Path) -> list[str]:
    """The column names of a parquet file (from its footer, no rows read), fields of a struct column also
    as `parent.child` (CROPE's `metadata.image_en_concept`; not an HF Image's bytes/path), for
    `errors.require_columns`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out: list[str] = []
    for fld in pq.read_schema(path):
        out.append(fld.name)
        subfields = ({fld.type.field(i).name for i in range(fld.type.num_fields)}
                     if pa.types.is_struct(fld.type) else set())
        if subfields and subfields != {"bytes", "path"}:  # an HF Image cell is a struct too: not listed
            out.extend(f"{fld.name}.{fld.type.field(i).name}" for i in range(fld.type.num_fields))
    return out


def require_parquet_columns(bench: str, files: Sequence[Path], required: Sequence[str], expected: str = "") -> None:
    """Every shard has the `required` columns (`parent.child` for struct fields), or a BenchmarkError
    names the shard, the missing columns and the columns it has."""
    for f in files:
        require_columns(bench, f, parquet_columns(f), required, expected)


def read_parquet_rows(files: Sequence[Path], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Read HF-style parquet shards into python rows (image cells stay `{"bytes", "path"}` dicts)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for f in files:
        table = pq.read_table(f, columns=list(columns) if columns else None)
        rows.extend(table.to_pylist())
    return rows


def find_parquet(root: Path, split: str = "test", patterns: Sequence[str] = ()) -> list[Path]:
    """HF repo layout: `data/{split}-*.parquet` (or `{config}/{split}/*.parquet` converted branches)."""
    pats = list(patterns) or [f"data/{split}-*.parquet", f"data/{split}/*.parquet", f"*/{split}/*.parquet",
                              f"{split}-*.parquet", f"**/{split}-*.parquet"]
    for pat in pats:
        files = sorted(root.glob(pat))
        if files:
            return files
    return []


def read_lines(path: Path) -> list[str]:
    return [ln.rstrip("\r") for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()]


def is_wds_root(root: Path, split: str = "test") -> bool:
    return (root / split / "nshards.txt").is_file()


def read_wds(root: Path, split: str = "test") -> list[dict[str, Any]]:
    """Read clip_benchmark/DataComp WebDataset shards into samples.

    Layout (checked against LAION-AI/CLIP_benchmark builder.py + webdataset writer): `{split}/nshards.txt`
    then `{split}/0.tar ...`; members `{key}.{ext}`; image bytes as-is (any of webp/png/jpg/jpeg,
    mixed per sample), `.cls` ASCII int, `.txt` UTF-8 (captions joined by newlines), `.npy` numpy.
    Images are returned as byte-range refs into the tar (nothing is extracted or held in memory)."""
    nfile = root / split / "nshards.txt"
    try:
        nshards = int(nfile.read_text().strip())
    except ValueError as exc:
        raise BenchmarkError(f"{show_path(nfile)} must hold one integer (the number of shards)") from exc
    samples: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for i in range(nshards):
        tar_path = root / split / f"{i}.tar"
        if not tar_path.is_file():
            raise BenchmarkNotFoundError(f"{show_path(tar_path)} is missing ({show_path(nfile)} says {nshards} shards)")
        with tarfile.open(tar_path) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                base = os.path.basename(m.name)
                if "." not in base:
                    continue
                key, ext = base.split(".", 1)
                key = f"{i}/{os.path.dirname(m.name)}/{key}"
                s = samples.get(key)
                if s is None:
                    s = samples[key] = {"__key__": key}
                    order.append(key)
                ext = ext.lower()
                if ext in WDS_IMAGE_EXTS:
                    s["image"] = ImageRef(path=str(tar_path), offset=m.offset_data, size=m.size)
                elif ext in ("cls", "txt", "npy", "json"):
                    raw = tf.extractfile(m).read()
                    if ext == "cls":
                        s["cls"] = int(raw.decode("ascii").strip())
                    elif ext == "txt":
                        s["txt"] = raw.decode("utf-8")
                    elif ext == "json":
                        s["json"] = json.loads(raw)
                    else:
                        s["npy"] = np.load(io.BytesIO(raw), allow_pickle=False)
    return [samples[k] for k in order]


def require_wds_member(bench: str, where: Path, samples: list[dict], member: str) -> None:
    """WebDataset samples were found but none carries the `.{member}` the task reads (another task's copy)."""
    if samples and not any(member in s for s in samples):
        found = sorted({k for s in samples for k in s if k != "__key__"})
        raise BenchmarkError(f"{bench}: none of the {len(samples)} WebDataset samples in {show_path(where)} has a "
                             f".{member} member (found members: {', '.join(found) or 'none'}); this task reads "
                             f".{member} per sample (clip_benchmark layout), so point at a copy made for it.")


def read_classnames_templates(root: Path) -> tuple[list[str] | None, list[str] | None]:
    cn = root / "classnames.txt"
    tp = root / "zeroshot_classification_templates.txt"
    return (read_lines(cn) if cn.is_file() else None, read_lines(tp) if tp.is_file() else None)
