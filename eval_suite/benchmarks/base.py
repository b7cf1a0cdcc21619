"""Shared pieces of the benchmark adapters: image references, task data, readers, scoring.

An adapter only *reads* its benchmark's published format into one of four task shapes
(`ClassificationData`, `RetrievalData`, `ChoiceData`, `TwinData`); embedding (batched, cached,
split across processes) and scoring are shared here, so every benchmark is scored the same way.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded or scored; the message says why and what to do."""


class BenchmarkNotFoundError(BenchmarkError, FileNotFoundError):
    """The benchmark's files are not on disk (or reachable); the message says where to get them."""


def show_path(path: str | os.PathLike) -> str:
    """A path as error messages show it: relative to the working directory when inside it, `~/...` when
    inside the home folder, never the absolute install or server path that neither helps nor belongs
    in a message shown to someone else."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        return prefix + (str(rel) if str(rel) != "." else "") or "."
    return str(p)


# --------------------------------------------------------------------------------------------
# Image references: small, picklable handles that a DataLoader worker can open lazily.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRef:
    """Where one image's encoded bytes live: inline bytes, a file, a byte range, or a zip member."""

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    offset: int = 0
    size: int = -1
    member: str | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise BenchmarkError("ImageRef has neither bytes nor a path (a null image in the dataset)")
        if self.member is not None:
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(self.member)
        with open(self.path, "rb") as fh:
            if self.offset or self.size >= 0:
                fh.seek(self.offset)
                return fh.read(self.size)
            return fh.read()

    def open(self) -> "Image.Image":
        """Decode to an RGB PIL image (raises on unreadable data); transparency follows the one policy
        (`cultureclip.image.to_rgb`: composited onto white)."""
        from PIL import Image

        from cultureclip.image import to_rgb

        img = Image.open(io.BytesIO(self.read_bytes()))
        img.load()
        return to_rgb(img)

    def key(self) -> str:
        """A stable identity for dataset fingerprints (content hash for inline bytes)."""
        if self.data is not None:
            return "b:" + hashlib.blake2b(self.data, digest_size=12).hexdigest()
        return f"p:{self.path}:{self.member or ''}:{self.offset}:{self.size}"


def image_ref_from_hf(value: Any, base_dir: Path | None = None) -> ImageRef | None:
    """Convert an HF `Image` cell (`{"bytes", "path"}` struct, as stored in parquet) to a ref."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value))
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return ImageRef(data=bytes(value["bytes"]))
        if value.get("path"):
            p = Path(value["path"])
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            return ImageRef(path=str(p))
        return None
    if isinstance(value, str):
        p = Path(value)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        return ImageRef(path=str(p))
    raise BenchmarkError(f"unsupported image cell of type {type(value).__name__}; expected an HF Image struct")


def null_ref() -> ImageRef:
    """A ref that always fails to open: keeps row alignment for null images (counted unreadable)."""
    return ImageRef()


# --------------------------------------------------------------------------------------------
# Task data shapes
# --------------------------------------------------------------------------------------------
@dataclass
class ClassificationData:
    """Zero-shot classification: one label per image; classifier = template ensemble per class."""

    images: list[ImageRef]
    labels: np.ndarray  # (N,) int
    classnames: list[str]
    templates: list[str]  # with "{c}" placeholders (clip_benchmark convention)
    groups: dict[str, list[str]] = field(default_factory=dict)  # field -> per-image value
    worst_group_metric: dict[str, str] = field(default_factory=dict)  # field -> "acc1"/"acc5"

    def select(self, idx: np.ndarray) -> "ClassificationData":
        return dataclasses.replace(
            self, images=[self.images[i] for i in idx], labels=self.labels[idx],
            groups={k: [v[i] for i in idx] for k, v in self.groups.items()})


@dataclass
class RetrievalData:
    """Image-text retrieval: each image has one or more captions (Karpathy style)."""

    images: list[ImageRef]
    captions: list[list[str]]
    groups: dict[str, list[str]] = field(default_factory=dict)

    def select(self, idx: np.ndarray) -> "RetrievalData":
        return dataclasses.replace(
            self, images=[self.images[i] for i in idx], captions=[self.captions[i] for i in idx],
            groups={k: [v[i] for i in idx] for k, v in self.groups.items()})


@dataclass
class ChoiceData:
    """Multiple choice by similarity: pick the option text closest to the image (ties count wrong,
    as SugarCrepe's `pos > neg`)."""

    images: list[ImageRef]
    options: list[list[str]]
    answers: np.ndarray  # (N,) int index into options[i]
    groups: dict[str, list[str]] = field(default_factory=dict)

    def select(self, idx: np.ndarray) -> "ChoiceData":
        return dataclasses.replace(
            self, images=[self.images[i] for i in idx], options=[self.options[i] for i in idx],
            answers=self.answers[idx], groups={k: [v[i] for i in idx] for k, v in self.groups.items()})


@dataclass
class TwinData:
    """CulTwin: images of concepts; each concept has a prompt text; twin pairs are hard negatives."""

    images: list[ImageRef]
    concept_ids: list[str]  # per image
    concept_texts: dict[str, str]  # concept id -> prompt
    pairs: list[tuple[str, str]]  # twin pairs (a, b), a < b
    groups: dict[str, list[str]] = field(default_factory=dict)

    def select(self, idx: np.ndarray) -> "TwinData":
        return dataclasses.replace(
            self, images=[self.images[i] for i in idx], concept_ids=[self.concept_ids[i] for i in idx],
            groups={k: [v[i] for i in idx] for k, v in self.groups.items()})


@dataclass
class RankingData:
    """Text-to-image ranking with graded relevance (GlobalRG retrieval, official protocol)."""

    images: list[ImageRef]
    queries: list[str]
    query_texts: list[str]
    relevance: np.ndarray  # (Q, N) bool
    image_cultures: list[str]  # per image, for diversity@k
    relevance_source: str = "gold"

    def select(self, idx: np.ndarray) -> "RankingData":
        return dataclasses.replace(
            self, images=[self.images[i] for i in idx], relevance=self.relevance[:, idx],
            image_cultures=[self.image_cultures[i] for i in idx])


TaskData = ClassificationData | RetrievalData | ChoiceData | TwinData | RankingData


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


def read_classnames_templates(root: Path) -> tuple[list[str] | None, list[str] | None]:
    cn = root / "classnames.txt"
    tp = root / "zeroshot_classification_templates.txt"
    return (read_lines(cn) if cn.is_file() else None, read_lines(tp) if tp.is_file() else None)


# --------------------------------------------------------------------------------------------
# The adapter base class
# --------------------------------------------------------------------------------------------
class Benchmark:
    """One benchmark: where it lives, how to read it, which protocol scores it.

    Subclasses set the class attributes and implement `_load(root)`; scoring is shared by task shape.
    `root` is a local folder in the published layout (a snapshot of the hub repo); when omitted the
    adapter looks at `$<ENV_VAR>` and then downloads `hub_id` with huggingface_hub (if set)."""

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    hub_id: ClassVar[str | None] = None
    hub_alternatives: ClassVar[tuple[str, ...]] = ()  # other hub copies with the same files, tried in turn
    root_options: ClassVar[dict[str, str]] = {}  # option -> extra root name (`--root NAME=PATH` sets the option)
    hub_patterns: ClassVar[tuple[str, ...] | None] = None
    env_var: ClassVar[str] = ""
    protocols: ClassVar[tuple[str, ...]] = ("official",)
    source_hint: ClassVar[str] = ""
    main: ClassVar[str | None] = None  # headline metric when it differs from the task shape's default

    def __init__(self, root: str | os.PathLike | None = None, protocol: str = "official", **options: Any):
        if protocol not in self.protocols:
            raise BenchmarkError(
                f"benchmark {self.name!r} has no protocol {protocol!r}; choose one of {list(self.protocols)}")
        self.root_arg = Path(root).expanduser() if root else None
        self.protocol = protocol
        self.options = options
        self._data: TaskData | None = None
        self._root: Path | None = None
        self.notes: dict[str, Any] = {}  # extra counts reported with the result (e.g. skipped rows)
        self.warnings: list[str] = []  # loud warnings about the data, reported with the result

    # ---------- locating ----------
    def resolve_root(self) -> Path:
        """The local folder holding the benchmark (downloading a hub snapshot when allowed)."""
        if self._root is not None:
            return self._root
        cand = self.root_arg or (Path(os.environ[self.env_var]).expanduser()
                                 if self.env_var and os.environ.get(self.env_var) else None)
        if cand is not None:
            if not cand.exists():
                raise BenchmarkNotFoundError(f"{self.name}: {show_path(cand)} does not exist. {self.how_to_get()}")
            self._root = cand
            return cand
        if self.hub_candidates():
            self._root = self._download()
            return self._root
        raise BenchmarkNotFoundError(f"{self.name}: no data folder given. {self.how_to_get()}")

    def hub_candidates(self) -> list[str]:
        """Hub ids to try: the `hub_id` option when given, else the class's id and its alternatives."""
        if self.options.get("hub_id"):
            return [str(self.options["hub_id"])]
        return [h for h in (self.hub_id, *self.hub_alternatives) if h]

    def how_to_get(self) -> str:
        ids = self.hub_candidates()
        where = ("the Hugging Face dataset " + " or ".join(f"`{h}`" for h in ids)) if ids else "its publisher"
        hint = f" {self.source_hint}" if self.source_hint else ""
        return (f"Get it from {where}{hint}, then point to the folder with "
                f"`--root {self.name}=PATH` or the environment variable {self.env_var}.")

    def _download(self) -> Path:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        errors = []
        for hub_id in self.hub_candidates():
            try:
                if not offline:
                    logger.info("downloading %s from the Hugging Face hub", hub_id)
                return Path(snapshot_download(hub_id, repo_type="dataset", local_files_only=offline,
                                              allow_patterns=list(self.hub_patterns) if self.hub_patterns else None))
            except Exception as exc:  # try the next copy; report all of them below
                errors.append(f"`{hub_id}`: {type(exc).__name__}" + ("" if offline else f": {str(exc)[:200]}"))
        if offline:
            raise BenchmarkNotFoundError(f"{self.name}: HF_HUB_OFFLINE=1 and none of {', '.join(errors)} is in the "
                                         f"local hub cache. {self.how_to_get()}")
        raise BenchmarkNotFoundError(f"{self.name}: could not download {'; '.join(errors)}. {self.how_to_get()}")

    # ---------- reading ----------
    def load(self) -> TaskData:
        """Read the benchmark (cached on the instance) into its task shape."""
        if self._data is None:
            self._data = self._load(self.resolve_root())
            if not self._data.images:
                raise BenchmarkError(f"{self.name}: no samples found under {show_path(self.resolve_root())}")
        return self._data

    def _load(self, root: Path) -> TaskData:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of the samples' identities, protocol and options (keys the embedding cache)."""
        data = self.load()
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.protocol}|{sorted(self.options.items())!r}".encode())
        stats: dict[str, str] = {}
        for ref in data.images:
            h.update(ref.key().encode())
            if ref.path is not None:  # file/archive content changes invalidate the cache too
                if ref.path not in stats:
                    try:
                        st = os.stat(ref.path)
                        stats[ref.path] = f"{st.st_size}:{st.st_mtime_ns}"
                    except OSError:
                        stats[ref.path] = "missing"
                h.update(stats[ref.path].encode())
            h.update(b"\0")
        return h.hexdigest()[:20]

    # ---------- scoring ----------
    @property
    def main_metric(self) -> str:
        from eval_suite.benchmarks.scoring import MAIN_METRIC

        return self.main or MAIN_METRIC[type(self.load())]

    def evaluate(self, embedder: Any, image_features: "torch.Tensor | None" = None,
                 valid: np.ndarray | None = None, n_boot: int = 1000, keep_samples: bool = True,
                 **embed_kwargs: Any) -> dict[str, Any]:
        """Score the benchmark with `embedder`.

        Returns the benchmark-side fields of a result (`benchmark, task, metrics, groups, n_samples,
        main_metric, ci, group_ci, samples, skipped, extra`): pass them to
        `eval_suite.results.make_result` with the model fields. `image_features` (N, D) / `valid` (N,)
        may come from the runner (cached, multi-process); otherwise images are embedded here."""
        from eval_suite.benchmarks.embedding import embed_image_refs
        from eval_suite.benchmarks.scoring import SCORERS

        data = self.load()
        if image_features is None:
            image_features, valid = embed_image_refs(embedder, data.images, **embed_kwargs)
        import torch

        feats = torch.as_tensor(image_features).float()
        valid = np.ones(len(data.images), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        if len(valid) != len(data.images) or feats.shape[0] != len(data.images):
            raise BenchmarkError(f"{self.name}: got {feats.shape[0]} features / {len(valid)} flags for "
                                 f"{len(data.images)} images (stale cache? delete it)")
        n_bad = int((~valid).sum())
        if n_bad:
            logger.warning("%s: %d unreadable images skipped", self.name, n_bad)
        idx = np.flatnonzero(valid)
        if len(idx) == 0:
            raise BenchmarkError(f"{self.name}: none of the {len(data.images)} images could be read")
        data_ok = data.select(idx)
        feats = feats[torch.as_tensor(idx, dtype=torch.long)]
        out = SCORERS[type(data_ok)](data_ok, feats, embedder, ids=idx, n_boot=n_boot, keep_samples=keep_samples)
        main = self.main_metric if self.main_metric in out["metrics"] else next(iter(out["metrics"]))
        out.update({"benchmark": self.name, "task": self.task, "main_metric": main})
        out["skipped"] = {"unreadable_image": n_bad, **{k: v for k, v in self.notes.items() if isinstance(v, int)}}
        out["extra"] = {"protocol": self.protocol, "n_images": len(data.images), **out.get("extra", {})}
        if self.warnings:
            out["extra"]["warnings"] = list(self.warnings)
        return out


