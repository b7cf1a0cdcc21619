"""The task shapes: what an adapter reads a benchmark into, and what scoring one gives back.

An adapter reads its benchmark's published format into one of the data shapes (`ClassificationData`,
`RetrievalData`, `ChoiceData`, `TwinData`, `RankingData`) whose images are lazy `ImageRef`s; scoring
(`eval_suite.benchmarks.scoring`) turns a shape plus image features into a `BenchmarkResult`.
This module is plain data: it imports no other part of the benchmarks package but its errors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cultureclip.image import to_rgb
from eval_suite.benchmarks.errors import BenchmarkError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


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
# The scored result
# --------------------------------------------------------------------------------------------
@dataclass
class BenchmarkResult:
    """What `Benchmark.evaluate` gives: the benchmark-side fields of a result file.

    `eval_suite.results.make_result(**result.result_fields(), model=..., ...)` adds the model's fields and
    writes nothing itself; the JSON schema is `eval_suite.results`'."""

    benchmark: str
    task: str
    main_metric: str  # the headline metric; a key of `metrics`
    metrics: dict[str, Any]  # name -> value over all scored items
    n_samples: int  # items scored (images, questions or queries)
    # per-group records {"fields": {...}, "n": int, "metrics": {...}, "ci": {...}} (`eval_suite.results`' schema 2),
    # as `eval_suite.results.summarize_samples` gives them
    groups: list[dict[str, Any]] = field(default_factory=list)
    ci: dict[str, list[float]] | None = None  # metric -> [low, high] bootstrap interval (None: n_boot=0)
    samples: dict[str, list] | None = None  # per-item values ("ids" + per-metric correctness + group labels)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> items left out (e.g. unreadable_image)
    extra: dict[str, Any] = field(default_factory=dict)  # protocol, counts, the scorer's notes
    warnings: list[str] = field(default_factory=list)  # loud warnings about the data

    @property
    def main_value(self) -> Any:
        return self.metrics.get(self.main_metric)

    def result_fields(self) -> dict[str, Any]:
        """Keyword arguments of `eval_suite.results.make_result` (all but the model's); the warnings travel
        in `extra` as the result schema has them."""
        extra = dict(self.extra)
        if self.warnings:
            extra["warnings"] = list(self.warnings)
        out: dict[str, Any] = {"benchmark": self.benchmark, "task": self.task, "metrics": self.metrics,
                               "n_samples": self.n_samples, "groups": self.groups, "main_metric": self.main_metric}
        optional = {"ci": self.ci, "samples": self.samples}
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(skipped=self.skipped, extra=extra)
        return out
