"""`python -m synth.importer`: any image-caption-concept(-twin) table -> a validated CulTwin dataset.

    python -m synth.importer --from data/pairs.jsonl --map image=img,caption=text,concept=label,twin=twin \\
        --out data/cultwin [--dry-run]
    python -m synth.importer --from lukahh/cultureCLIP --preset cultureclip-authors --image-root /data/sd_images \\
        --out data/authors

Inputs: JSON (a list of rows, or one list under a key, or columns), JSONL, CSV/TSV, Parquet, an HF
`save_to_disk` folder (Dataset or DatasetDict), a folder of such files, or a Hugging Face dataset id (through
huggingface_hub: the local cache, or the hub when it is reachable). ``--from SPLIT=PATH`` fixes the split of
one source (train, val, test); otherwise a mapped ``split`` column, a split named by the source (DatasetDict
split, or train/valid/test in a file name), or else a deterministic split by concept.

Fields (``--map FIELD=COLUMN,...``; a field not mapped uses the column of the same name when there is one;
nested JSON keys as ``metadata.category``): image, caption, concept (required); concept_id, concept_name,
twin, culture, region, category, concept_prompt, split. Give ``--map`` twice for paired rows (both sides of a
twin pair in one row, as the CultureCLIP authors' files are): each ``--map`` reads one image-caption-concept.

image: a path relative to ``--image-root`` (default: the source's folder), an absolute path inside the image
root or an ``--allow-root``, or embedded bytes (``{"bytes": ..., "path": ...}`` as HF image features store
them). ``--rebase OLD=NEW`` rewrites absolute path prefixes written on another machine. Images are linked
(or copied) into ``<out>/images/`` under their content hash; the manifest is written atomically and re-read
through ``cultureclip.data.read_manifest``; a rerun reuses every image already there and writes the same
bytes.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from cultureclip.data import MANIFEST_COLUMNS, ManifestError, read_manifest, twin_pairs
from cultureclip.fileio import atomic_path

from .engine import (
    atomic_copy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    content_id,
    remove_stale_temps,
)
from .stages.concepts import slugify as _slug
from .stages.export import assign_splits

log = logging.getLogger(__name__)

REQUIRED = ("image", "caption", "concept")
OPTIONAL = ("concept_id", "concept_name", "twin", "culture", "region", "category", "concept_prompt", "split")
FIELDS = REQUIRED + OPTIONAL
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "eval": "val", "test": "test", "testing": "test"}
DATA_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".arrow")
IMAGE_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
MAX_LISTED = 10
SAMPLE_ROWS = 200  # rows read to list a table's columns

# The CultureCLIP authors' training rows (their public loader and launch script require the six columns
# pos_image_path, pos_caption, neg_image_path, neg_caption, pos_concept, neg_concept; their pair builder adds
# sample_id, pos/neg_caption_id, pos/neg_context and metadata.{category, pos_features, neg_features}). One row
# holds a twin pair, so it is read twice: the positive side and the negative side, each the other's twin.
# Their concept text is used as a prompt as is (no template); lukahh/cultureCLIP ships train/valid files.
PRESETS: dict[str, dict] = {
    "cultureclip-authors": {
        "sides": [
            {"image": "pos_image_path", "caption": "pos_caption", "concept": "pos_concept", "twin": "neg_concept",
             "category": "metadata.category"},
            {"image": "neg_image_path", "caption": "neg_caption", "concept": "neg_concept", "twin": "pos_concept",
             "category": "metadata.category"},
        ],
        "prompt_template": "{name}",
        "files": ["sd_0218_local_train.json", "sd_0218_local_valid.json"],
    },
}


class ImporterError(ValueError):
    """The table, the mapping or an image is wrong; the message says what and how to fix it."""


# ----------------------------------------------------------------------------- sources
@dataclass
class Source:
    """One table: a name for messages, how to read its rows, its split (if the source fixes one), image root."""

    name: str
    fmt: str
    reader: Any  # () -> Iterator[dict]
    count: Any  # () -> int
    split: str | None = None
    root: Path | None = None

    def rows(self) -> Iterator[dict]:
        return self.reader()


def _split_from_name(stem: str) -> str | None:
    toks = [t for t in re.split(r"[^a-z]+", stem.lower()) if t]
    found = {SPLIT_NAMES[t] for t in toks if t in SPLIT_NAMES}
    return found.pop() if len(found) == 1 else None


def _json_rows(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ImporterError(f"{path.name} is not valid JSON ({e}); JSON Lines files need the .jsonl suffix") from None
    if isinstance(data, list):
        rows = data
    elif isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            rows = data[lists[0]]
        elif data and all(isinstance(v, list) for v in data.values()) and len({len(v) for v in data.values()}) == 1:
            keys = list(data)
            rows = [dict(zip(keys, vals)) for vals in zip(*data.values())]  # column-oriented
        else:
            raise ImporterError(f"{path.name}: expected a list of rows, one list of rows under a key, or columns of "
                                f"equal length; got an object with keys {sorted(data)[:10]}")
    else:
        raise ImporterError(f"{path.name}: expected a JSON list of rows, got {type(data).__name__}")
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise ImporterError(f"{path.name}: rows {bad[:MAX_LISTED]} are not JSON objects")
    return rows


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ImporterError(f"{path.name} line {n} is not valid JSON ({e})") from None


def _csv_rows(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")


def _parquet_rows(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _arrow_table_batches(path: Path):
    import pyarrow as pa
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))  # what datasets' save_to_disk writes
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
        return
    yield from reader


def _arrow_rows(paths: list[Path]) -> Iterator[dict]:
    for p in paths:
        for batch in _arrow_table_batches(p):
            yield from batch.to_pylist()


def _count(it) -> int:
    return sum(1 for _ in it)


def _file_source(path: Path, split: str | None, name: str | None = None) -> Source:
    sfx = path.suffix.lower()
    name = name or path.name
    split = split or _split_from_name(path.stem)
    if sfx == ".json":
        cache: dict = {}

        def rows():
            if "rows" not in cache:
                cache["rows"] = _json_rows(path)
            return iter(cache["rows"])
        return Source(name, "json", rows, lambda: len(list(rows())), split, path.parent)
    if sfx in (".jsonl", ".ndjson"):
        return Source(name, "jsonl", lambda: _jsonl_rows(path), lambda: _count(_jsonl_rows(path)), split, path.parent)
    if sfx in (".csv", ".tsv"):
        return Source(name, "csv", lambda: _csv_rows(path), lambda: _count(_csv_rows(path)), split, path.parent)
    if sfx == ".parquet":
        import pyarrow.parquet as pq
        return Source(name, "parquet", lambda: _parquet_rows(path), lambda: pq.ParquetFile(path).metadata.num_rows,
                      split, path.parent)
    if sfx == ".arrow":
        return Source(name, "arrow", lambda: _arrow_rows([path]), lambda: _count(_arrow_rows([path])), split, path.parent)
    raise ImporterError(f"{name}: unsupported file type {sfx or '(none)'}; use one of {', '.join(DATA_SUFFIXES)}")


def _saved_dataset_source(folder: Path, name: str, split: str | None) -> Source:
    """An HF `Dataset.save_to_disk` folder: state.json lists the Arrow stream files in order."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    files = [folder / f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise ImporterError(f"{name}: state.json lists no data files")
    split = split or SPLIT_NAMES.get(str(state.get("_split") or "").lower())
    return Source(name, "hf-saved", lambda: _arrow_rows(files), lambda: _count(_arrow_rows(files)), split, folder)


def _folder_sources(folder: Path, label: str, split: str | None, patterns: list[str] | None) -> list[Source]:
    if (folder / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        out = []
        for s in splits:
            fixed = split or SPLIT_NAMES.get(s.lower())
            if fixed is None:
                raise ImporterError(f"{label}: split {s!r} is not train/validation/test; import it with "
                                    f"--from train={label}/{s} (or val=, test=)")
            out.append(_saved_dataset_source(folder / s, f"{label}/{s}", fixed))
        return out
    if (folder / "state.json").is_file():
        return [_saved_dataset_source(folder, label, split)]
    imports = {q.parent for q in folder.rglob("import.json")}  # earlier outputs of this importer: never inputs
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and not imports.intersection(p.parents))
    if patterns:
        files = [p for p in files if any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pat)
                                         or fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    if not files:
        raise ImporterError(f"{label}: no data files ({', '.join(DATA_SUFFIXES)})"
                            + (f" matching --file {' '.join(patterns)}" if patterns else "") + " in the folder")
    srcs = [_file_source(p, split, f"{label}/{p.relative_to(folder).as_posix()}") for p in files]
    for s in srcs:
        s.root = folder
    return srcs


def _hub_folder(repo_id: str, patterns: list[str] | None, cache_dir: str | None = None) -> Path:
    """A dataset repo's files from the local HF cache, or the hub when reachable."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub is a requirement
        raise ImporterError("reading a hub dataset needs huggingface_hub (pip install huggingface_hub)") from None
    allow = list(patterns) if patterns else [f"*{s}" for s in DATA_SUFFIXES] + ["**/state.json", "**/dataset_dict.json"]
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=allow, cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001 - offline, not found, gated: one clear message
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise ImporterError(
            f"{repo_id!r} is neither a local file/folder nor a hub dataset we can read "
            f"({type(e).__name__}{': offline and not in the HF cache' if offline else ''}). Download it where a hub is "
            f"reachable (`huggingface-cli download {repo_id} --repo-type dataset`) or pass a local path.") from None


def open_sources(specs: list[str], patterns: list[str] | None = None, cache_dir: str | None = None) -> list[Source]:
    """``--from`` values (PATH, HUB_ID, or SPLIT=either) -> sources in order."""
    out: list[Source] = []
    for spec in specs:
        split = None
        m = re.match(r"^(train|training|val|valid|validation|dev|test|testing)=(.+)$", spec)
        if m and not Path(spec).exists():
            split, spec = SPLIT_NAMES[m.group(1)], m.group(2)
        p = Path(spec)
        if p.is_file():  # named explicitly: read whatever --file says
            out.append(_file_source(p, split, spec))
        elif p.is_dir():
            out += _folder_sources(p, spec, split, patterns)
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
            folder = _hub_folder(spec, patterns, cache_dir)
            out += _folder_sources(folder, spec, split, patterns)
        else:
            raise ImporterError(f"--from {spec}: no such file or folder (and not a hub id like org/name)")
    return out


# ----------------------------------------------------------------------------- mapping
def parse_map(text: str) -> dict[str, str]:
    """``image=col,caption=col`` -> {field: column}; unknown fields are errors naming the valid ones."""
    out: dict[str, str] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise ImporterError(f"--map item {part!r} is not FIELD=COLUMN (example: --map image=img,caption=text,concept=label)")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in FIELDS:
            raise ImporterError(f"--map: unknown field {k!r}; fields: {', '.join(FIELDS)}")
        if not v:
            raise ImporterError(f"--map {k}=: empty column name")
        out[k] = v
    return out


_MISSING = object()


def get_path(row: dict, col: str) -> Any:
    """row[col], or a nested value for ``a.b`` when the row has no column named ``a.b``."""
    if col in row:
        return row[col]
    cur: Any = row
    for part in col.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _is_image_struct(v: Any) -> bool:
    return isinstance(v, dict) and set(v) <= {"bytes", "path"} and ("bytes" in v or "path" in v)


def columns_of(rows: list[dict]) -> list[str]:
    """Column names of sample rows, with nested JSON keys as ``a.b`` (image structs stay one column)."""
    cols: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            cols[k] = None
            if isinstance(v, dict) and not _is_image_struct(v):
                for k2 in v:
                    cols[f"{k}.{k2}"] = None
    return list(cols)


def resolve_sides(sides: list[dict[str, str]], columns: list[str], source: str) -> list[dict[str, str]]:
    """Fill unmapped fields from same-named columns; check every mapped column exists."""
    out = []
    for i, side in enumerate(sides):
        full = dict(side)
        for f in FIELDS:
            if f not in full and f in columns:
                full[f] = f
        missing_fields = [f for f in REQUIRED if f not in full]
        where = f" (--map #{i + 1})" if len(sides) > 1 else ""
        if missing_fields:
            raise ImporterError(
                f"{source}: no column for required field(s) {', '.join(missing_fields)}{where}; pass "
                f"--map {','.join(f + '=COLUMN' for f in missing_fields)}. Available columns: {', '.join(columns)}")
        absent = [f"{f}={c}" for f, c in full.items() if c not in columns]
        if absent:
            raise ImporterError(f"{source}: mapped column(s) not in the table{where}: {', '.join(absent)}. "
                                f"Available columns: {', '.join(columns)}")
        out.append(full)
    return out


def _text(v: Any) -> str:
    if v is None or v is _MISSING:
        return ""
    if isinstance(v, float) and v != v:  # NaN from pandas/parquet
        return ""
    return str(v).strip()


def _twin_values(v: Any) -> list[str]:
    if v is None or v is _MISSING:
        return []
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return []
        if s.startswith("["):
            try:
                return [_text(x) for x in json.loads(s) if _text(x)]
            except json.JSONDecodeError:
                pass
        return [s]
    if isinstance(v, (list, tuple)) or type(v).__name__ == "ndarray":
        return [_text(x) for x in v if _text(x)]
    return [_text(v)] if _text(v) else []


def slugify(text: str) -> str:
    return _slug(text)


# ----------------------------------------------------------------------------- images
@dataclass
class ImageStore:
    """Resolves image values to bytes/files, checks them, and links or copies them into <out>/images/."""

    out: Path
    roots: list[Path]
    rebase: list[tuple[str, str]] = field(default_factory=list)
    mode: str = "link"
    dry_run: bool = False
    _by_src: dict = field(default_factory=dict)

    def _allowed(self, p: Path) -> bool:
        # lexical containment (.. collapsed): HF cache snapshots are symlinks into a blobs/ folder
        return any(p == r or r in p.parents for r in self.roots)

    def locate(self, value: Any, root: Path) -> tuple[Path | None, bytes | None, str]:
        """(file, None, shown) for a path, (None, data, shown) for embedded bytes."""
        if isinstance(value, dict):
            if value.get("bytes"):
                return None, bytes(value["bytes"]), f"<{len(value['bytes'])} embedded bytes>"
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return None, bytes(value), f"<{len(value)} embedded bytes>"
        s = _text(value)
        if not s:
            raise ImporterError("empty image value")
        if re.match(r"^[a-z][a-z0-9+.-]*://", s, re.I):
            raise ImporterError(f"image {s!r} is a URL; the importer does not download: fetch the images first "
                                "(e.g. img2dataset) and map the local paths")
        rebased = False
        for old, new in self.rebase:
            if s.startswith(old):
                s, rebased = new + s[len(old):], True
                break
        p = Path(s)  # a rebased path is the user's own: relative to the working directory
        cand = Path(os.path.abspath(p if p.is_absolute() or rebased else root / p))
        if not self._allowed(cand):
            raise ImporterError(f"image {s!r} is outside the image root(s); pass --image-root DIR or --allow-root DIR "
                                "(or --rebase OLD=NEW for paths written on another machine)")
        if not cand.is_file():
            raise ImporterError(f"image {s!r} not found under the image root; pass --image-root DIR where the images "
                                "are (or --rebase OLD=NEW)")
        return cand, None, s

    def put(self, value: Any, root: Path, concept_id: str) -> tuple[str, str]:
        """-> (relative path in <out>, sha256). Same source file: hashed once."""
        from PIL import Image

        path, data, shown = self.locate(value, root)
        key = str(path) if path is not None else None
        if key is not None and (key, concept_id) in self._by_src:
            return self._by_src[(key, concept_id)]
        try:
            raw = data if data is not None else path.read_bytes()
        except OSError as e:
            raise ImporterError(f"image {shown} cannot be read ({type(e).__name__}: {e.strerror or e})") from None
        try:
            with Image.open(io.BytesIO(raw)) as im:
                fmt = im.format
                im.verify()
        except Exception as e:  # noqa: BLE001 - any decode failure is a bad image
            raise ImporterError(f"image {shown} is not a readable image ({type(e).__name__}: {e})") from None
        sha = hashlib.sha256(raw).hexdigest()
        folder = slugify(concept_id) or "concept"  # a mapped concept_id may hold '/' or '..': never a path
        rel = f"images/{folder}/{sha[:20]}{IMAGE_EXT.get(fmt or '', '.' + (fmt or 'img').lower())}"
        dst = self.out / rel
        if not self.dry_run and not (dst.is_file() and dst.stat().st_size == len(raw)):
            if path is not None and self.mode == "link":
                atomic_copy(path, dst)  # a hard link when on one filesystem, else a copy
            else:
                atomic_write_bytes(dst, raw)
        if key is not None:
            self._by_src[(key, concept_id)] = (rel, sha)
        return rel, sha


# ----------------------------------------------------------------------------- the import
@dataclass
class ImportOptions:
    sides: list[dict[str, str]]
    out: Path
    image_root: Path | None = None
    allow_roots: list[Path] = field(default_factory=list)
    rebase: list[tuple[str, str]] = field(default_factory=list)
    prompt_template: str = "a photo of {name}."
    val: float = 0.05
    test: float = 0.05
    seed: str = "cultwin"
    skip_bad_rows: bool = False
    mode: str = "link"
    limit: int | None = None
    overwrite: bool = False
    check_images: bool = True


@dataclass
class ImportReport:
    rows: int = 0
    records: int = 0
    duplicates: int = 0
    split_conflicts: int = 0
    skipped: list[str] = field(default_factory=list)
    unknown_twins: Counter = field(default_factory=Counter)
    unknown_twin_examples: list[str] = field(default_factory=list)
    attribute_conflicts: list[str] = field(default_factory=list)
    splits: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"rows read: {self.rows}; manifest rows: {self.records}; duplicates merged: {self.duplicates}"]
        if self.split_conflicts:
            out.append(f"{self.split_conflicts} duplicate row(s) had another split than their first copy (kept the first)")
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} bad row(s), e.g. " + "; ".join(self.skipped[:3]))
        if self.unknown_twins:
            out.append(f"{sum(self.unknown_twins.values())} twin link(s) name no concept of the table and were dropped "
                       f"({len(self.unknown_twins)} distinct): " + "; ".join(self.unknown_twin_examples[:5]))
        if self.attribute_conflicts:
            out.append(f"{len(self.attribute_conflicts)} concept attribute conflict(s) (first value kept): "
                       + "; ".join(self.attribute_conflicts[:3]))
        out.append("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items())))
        return out


def _roots(src: Source, opts: ImportOptions) -> tuple[Path, list[Path]]:
    root = Path(os.path.abspath(opts.image_root or src.root or Path.cwd()))
    extra = [*opts.allow_roots, *[new for _, new in opts.rebase]]  # --rebase targets are allowed roots too
    return root, sorted({root, *[Path(os.path.abspath(r)) for r in extra]}, key=str)


def _norm_split(v: str) -> str | None:
    return SPLIT_NAMES.get(v.strip().lower())


def collect(sources: list[Source], opts: ImportOptions, store: ImageStore) -> tuple[list[dict], ImportReport]:
    """Read every row of every source, side by side -> raw records (images stored, twins unresolved)."""
    rep = ImportReport()
    recs: dict[tuple, dict] = {}
    for src in sources:
        sample = list(islice(src.rows(), SAMPLE_ROWS))
        if not sample:
            raise ImporterError(f"{src.name}: the table has no rows")
        sides = resolve_sides(opts.sides, columns_of(sample), src.name)
        root, store.roots = _roots(src, opts)
        for i, row in enumerate(src.rows()):
            if opts.limit is not None and i >= opts.limit:
                break
            rep.rows += 1
            for side in sides:
                try:
                    rec = _record(row, side, src, root, opts, store)
                except ImporterError as e:
                    msg = f"{src.name} row {i}: {e}"
                    if not opts.skip_bad_rows:
                        raise ImporterError(msg + "\n(pass --skip-bad-rows to skip such rows and count them)") from None
                    rep.skipped.append(msg)
                    continue
                key = (rec["sha256"], rec["caption"], rec["concept_id"])
                if key in recs:
                    rep.duplicates += 1
                    first = recs[key]
                    for t in rec["_twins"]:
                        if t not in first["_twins"]:
                            first["_twins"].append(t)
                    if rec["_split"] and first["_split"] and rec["_split"] != first["_split"]:
                        rep.split_conflicts += 1
                    continue
                recs[key] = rec
    return list(recs.values()), rep


def _record(row: dict, side: dict[str, str], src: Source, root: Path, opts: ImportOptions, store: ImageStore) -> dict:
    val = {f: get_path(row, c) for f, c in side.items()}
    caption = _text(val["caption"])
    concept = _text(val["concept"])
    if not caption:
        raise ImporterError(f"empty caption (column {side['caption']!r})")
    if not concept:
        raise ImporterError(f"empty concept (column {side['concept']!r})")
    cid = _text(val.get("concept_id")) or slugify(concept)
    if not cid:
        raise ImporterError(f"concept {concept!r} gives an empty id; map concept_id=COLUMN")
    split = src.split
    if "split" in side and _text(val["split"]):
        split = _norm_split(_text(val["split"]))
        if split is None:
            raise ImporterError(f"split {_text(val['split'])!r} is not one of {', '.join(sorted(SPLIT_NAMES))}")
    rel, sha = store.put(val["image"], root, cid)
    return {"concept_id": cid, "concept_name": _text(val.get("concept_name")) or concept, "caption": caption,
            "culture": _text(val.get("culture")), "region": _text(val.get("region")),
            "category": _text(val.get("category")), "concept_prompt": _text(val.get("concept_prompt")),
            "image_path": rel, "sha256": sha, "_twins": _twin_values(val.get("twin")), "_split": split,
            "_source": Path(src.name).name if os.path.isabs(src.name) else src.name}


def finish(raw: list[dict], opts: ImportOptions, rep: ImportReport) -> list[dict]:
    """Concept attributes made consistent, twins resolved to concept ids (symmetric), splits, ids -> rows."""

    raw = sorted(raw, key=lambda r: (r["concept_id"], r["sha256"], r["caption"]))
    attrs: dict[str, dict] = {}
    for r in raw:
        a = attrs.setdefault(r["concept_id"], {})
        for k in ("concept_name", "culture", "region", "category", "concept_prompt"):
            if r[k] and not a.get(k):
                a[k] = r[k]
            elif r[k] and a.get(k) != r[k] and len(rep.attribute_conflicts) < 50:
                rep.attribute_conflicts.append(f"{r['concept_id']}.{k}: {a[k]!r} vs {r[k]!r}")
    ids = set(attrs)
    by_name = {}
    for cid, a in attrs.items():
        by_name.setdefault(a["concept_name"].lower(), cid)
    twins: dict[str, set[str]] = {c: set() for c in ids}
    for r in raw:
        for t in r["_twins"]:
            tid = t if t in ids else slugify(t) if slugify(t) in ids else by_name.get(t.lower())
            if tid is None:
                if t not in rep.unknown_twins:
                    rep.unknown_twin_examples.append(f"{t!r} (twin of {r['concept_id']!r}, {r['_source']})")
                rep.unknown_twins[t] += 1
            elif tid != r["concept_id"]:
                twins[r["concept_id"]].add(tid)
                twins[tid].add(r["concept_id"])
    for r in raw:
        r["image_id"] = content_id("import", r["sha256"], r["caption"], r["concept_id"])
    dup_ids = [k for k, n in Counter(r["image_id"] for r in raw).items() if n > 1]
    if dup_ids:  # a 64-bit collision among distinct rows: refuse rather than merge silently
        raise ImporterError(f"image id collision for {dup_ids[:3]}; report this with your table")
    todo = [{"image_id": r["image_id"], "concept_id": r["concept_id"], "caption_id": r["caption"],
             "twin_concept_ids": sorted(twins[r["concept_id"]])} for r in raw if not r["_split"]]
    auto = assign_splits(todo, opts.val, opts.test, "concept", 0.0, opts.seed) if todo else {}
    rows = []
    for r in raw:
        a = attrs[r["concept_id"]]
        name = a["concept_name"]
        prompt = a.get("concept_prompt") or opts.prompt_template.format(
            name=name, category=a.get("category") or "thing", culture=a.get("culture") or "")
        rows.append({"image_id": r["image_id"], "image_path": r["image_path"], "concept_id": r["concept_id"],
                     "concept_name": name, "culture": a.get("culture") or "unknown",
                     "region": a.get("region") or "unknown", "category": a.get("category") or "unknown",
                     "caption": r["caption"], "concept_prompt": prompt,
                     "twin_concept_ids": sorted(twins[r["concept_id"]]),
                     "split": r["_split"] or auto[r["image_id"]],
                     "generator": json.dumps({"imported_from": r["_source"]}, sort_keys=True),
                     "scores": "{}", "sha256": r["sha256"]})
    rows.sort(key=lambda r: r["image_id"])
    rep.records = len(rows)
    rep.splits = dict(Counter(r["split"] for r in rows))
    return rows


def write_dataset(rows: list[dict], opts: ImportOptions, rep: ImportReport, settings: dict) -> None:
    """manifest.parquet (validated before it replaces the old one), README.md, import.json; drop stale images."""
    import pyarrow as pa
    import pyarrow.parquet as pq




    cols = list(MANIFEST_COLUMNS)
    schema = pa.schema([(c, pa.list_(pa.string()) if c == "twin_concept_ids" else pa.string()) for c in cols])
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows], schema=schema), buf, compression="zstd")
    with atomic_path(opts.out / "manifest.parquet") as tmp:  # published only if the one validator accepts it
        tmp.write_bytes(buf.getvalue().to_pybytes())
        read_manifest(tmp, check_images=opts.check_images)
    keep = {r["image_path"] for r in rows}
    for p in (opts.out / "images").rglob("*") if (opts.out / "images").is_dir() else []:
        if p.is_file() and p.relative_to(opts.out).as_posix() not in keep:
            p.unlink()  # images of an earlier import of other rows
    atomic_write_text(opts.out / "README.md", card(rows, rep, settings))
    atomic_write_json(opts.out / "import.json", {"settings": settings, "report": rep.lines()})


def card(rows: list[dict], rep: ImportReport, settings: dict) -> str:
    def table(counts: Counter, head: str) -> str:
        return "\n".join([f"| {head} | images |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in sorted(counts.items())])
    concepts = {r["concept_id"] for r in rows}
    pairs = twin_pairs([r["concept_id"] for r in rows], [r["twin_concept_ids"] for r in rows])
    return "\n".join([
        "# Imported CulTwin dataset", "",
        "Imported with `python -m synth.importer` (CulTwin format: `manifest.parquet` + `images/`; read with "
        "`cultureclip.data.read_manifest`).", "",
        f"- images: **{len(rows)}**, concepts: **{len(concepts)}**, twin pairs: **{len(pairs)}**",
        f"- sources: {', '.join(settings['sources'])}", "",
        "## Images per split", table(Counter(r["split"] for r in rows), "split"), "",
        "## Images per category", table(Counter(r["category"] for r in rows), "category"), "",
        "## Import report", *[f"- {line}" for line in rep.lines()], "",
        "## Mapping", "```json", json.dumps(settings["sides"], indent=1), "```", ""])


def import_table(sources: list[Source], opts: ImportOptions) -> ImportReport:
    """Import `sources` into opts.out (see the module docstring). Returns the report."""
    out = opts.out
    if out.exists() and any(out.iterdir()) and not (out / "import.json").is_file() and not opts.overwrite:
        raise ImporterError(f"{out} is not empty and holds no earlier import (import.json); choose a new --out "
                            "or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    store = ImageStore(out, [], opts.rebase, opts.mode)
    raw, rep = collect(sources, opts, store)
    if not raw:
        raise ImporterError("no row could be imported" + (f"; e.g. {rep.skipped[0]}" if rep.skipped else ""))
    rows = finish(raw, opts, rep)
    settings = {"sources": [s.name for s in sources], "sides": opts.sides, "prompt_template": opts.prompt_template,
                "val": opts.val, "test": opts.test, "seed": opts.seed}
    write_dataset(rows, opts, rep, settings)
    return rep


# ----------------------------------------------------------------------------- dry run
def _show(v: Any, width: int = 70) -> str:
    if _is_image_struct(v):
        b = v.get("bytes")
        return f"{{bytes: <{len(b)} bytes>, path: {v.get('path')!r}}}" if b else f"{{path: {v.get('path')!r}}}"
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    s = json.dumps(v, ensure_ascii=False, default=str) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 3] + "..."


def dry_run(sources: list[Source], opts: ImportOptions, stream=None) -> bool:
    """Print each source's format, row count, columns, the resolved mapping and 3 sample rows. Writes nothing.
    Returns False when a mapping does not fit a source."""
    stream = stream or sys.stdout
    ok = True
    store = ImageStore(opts.out, [], opts.rebase, opts.mode, dry_run=True)
    for src in sources:
        sample = list(islice(src.rows(), SAMPLE_ROWS))
        cols = columns_of(sample)
        print(f"== {src.name} ({src.fmt}, {src.count()} rows, split: {src.split or 'from mapping / by concept'})",
              file=stream)
        print(f"columns: {', '.join(cols)}", file=stream)
        try:
            sides = resolve_sides(opts.sides, cols, src.name)
        except ImporterError as e:
            print(f"mapping: ERROR {e}", file=stream)
            sides, ok = [], False
        for k, side in enumerate(sides):
            print(f"mapping{f' #{k + 1}' if len(sides) > 1 else ''}: "
                  + ", ".join(f"{f} <- {c}" for f, c in side.items()), file=stream)
        root, store.roots = _roots(src, opts)
        for i, row in enumerate(sample[:3]):
            print(f"-- row {i}", file=stream)
            for c in row:
                print(f"   {c}: {_show(row[c])}", file=stream)
            for side in sides:
                try:
                    store.locate(get_path(row, side["image"]), root)
                    status = "ok"
                except ImporterError as e:
                    status = str(e)
                print(f"   -> image ({side['image']}): {status}", file=stream)
    return ok


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m synth.importer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--from", dest="sources", action="append", required=True, metavar="[SPLIT=]PATH_OR_HUB_ID",
                   help="a table file, a folder, an HF save_to_disk folder or a hub dataset id (repeatable)")
    p.add_argument("--map", dest="maps", action="append", metavar="FIELD=COLUMN,...",
                   help=f"fields: {', '.join(FIELDS)} (repeat for paired rows: one --map per side)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a known table layout (its --map and files)")
    p.add_argument("--out", required=True, help="the CulTwin dataset folder to write")
    p.add_argument("--dry-run", action="store_true", help="print columns, mapping and 3 sample rows; write nothing")
    p.add_argument("--file", dest="files", action="append", metavar="GLOB",
                   help="in a folder or hub repo, read only files matching (repeatable)")
    p.add_argument("--hf-cache", help="Hugging Face hub cache folder (default: HF_HUB_CACHE / ~/.cache/huggingface/hub)")
    p.add_argument("--image-root", help="folder that relative image paths start from (default: the source's folder)")
    p.add_argument("--allow-root", action="append", default=[], metavar="DIR",
                   help="another folder absolute image paths may point into (repeatable)")
    p.add_argument("--rebase", action="append", default=[], metavar="OLD=NEW", help="rewrite an absolute path prefix")
    p.add_argument("--prompt-template", help="concept prompt when none is mapped (default 'a photo of {name}.'; "
                   "placeholders {name}, {category}, {culture})")
    p.add_argument("--val", type=float, default=0.05, help="val fraction for the split by concept (default 0.05)")
    p.add_argument("--test", type=float, default=0.05, help="test fraction for the split by concept (default 0.05)")
    p.add_argument("--seed", default="cultwin", help="salt of the deterministic split by concept")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip (and count) rows with a missing or bad value")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    p.add_argument("--limit", type=int, help="read at most N rows per source (a quick try)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder that is not an earlier import")
    p.add_argument("--no-check-images", action="store_true", help="do not decode every image when validating")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def options_from_args(a: argparse.Namespace) -> tuple[ImportOptions, list[str] | None]:
    preset = PRESETS.get(a.preset or "", {})
    if a.maps:
        sides = [parse_map(m) for m in a.maps]
    elif preset:
        sides = [dict(s) for s in preset["sides"]]
    else:
        sides = [{}]  # every field from a same-named column, or a clear error listing the columns
    rebase = []
    for r in a.rebase:
        if "=" not in r:
            raise ImporterError(f"--rebase {r!r} is not OLD=NEW")
        rebase.append(tuple(r.split("=", 1)))
    if not (0 <= a.val and 0 <= a.test and a.val + a.test < 1):
        raise ImporterError(f"--val ({a.val}) and --test ({a.test}) must be >= 0 with a sum below 1")
    template = a.prompt_template or preset.get("prompt_template", "a photo of {name}.")
    try:
        template.format(name="x", category="y", culture="z")
    except (KeyError, IndexError, ValueError) as e:
        raise ImporterError(f"--prompt-template {template!r}: {type(e).__name__} {e}; placeholders: {{name}}, "
                            "{category}, {culture}") from None
    opts = ImportOptions(
        sides=sides, out=Path(a.out), image_root=Path(a.image_root) if a.image_root else None,
        allow_roots=[Path(r) for r in a.allow_root], rebase=rebase,
        prompt_template=template,
        val=a.val, test=a.test, seed=a.seed, skip_bad_rows=a.skip_bad_rows, mode="copy" if a.copy else "link",
        limit=a.limit, overwrite=a.overwrite, check_images=not a.no_check_images)
    return opts, a.files or preset.get("files")


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        opts, files = options_from_args(a)
        sources = open_sources(a.sources, files, a.hf_cache)
        if a.dry_run:
            return 0 if dry_run(sources, opts) else 2
        rep = import_table(sources, opts)
    except (ImporterError, ManifestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {opts.out / 'manifest.parquet'}")
    for line in rep.lines():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
