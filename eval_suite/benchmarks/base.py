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
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

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
        """Decode to an RGB PIL image (raises on unreadable data)."""
        from PIL import Image

        img = Image.open(io.BytesIO(self.read_bytes()))
        img.load()
        return img.convert("RGB")

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
    """Multiple choice by similarity: pick the option text closest to the image.

    `strict=True` counts a tie with the answer as wrong (SugarCrepe's `pos > neg`)."""

    images: list[ImageRef]
    options: list[list[str]]
    answers: np.ndarray  # (N,) int index into options[i]
    groups: dict[str, list[str]] = field(default_factory=dict)
    strict: bool = True

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
        raise BenchmarkError(f"{nfile} must hold one integer (the number of shards)") from exc
    samples: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for i in range(nshards):
        tar_path = root / split / f"{i}.tar"
        if not tar_path.is_file():
            raise BenchmarkNotFoundError(f"{tar_path} is missing ({nfile} says {nshards} shards)")
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


def stable_shuffle(items: list, seed: int = 42) -> list:
    """Shuffle with Python's `random.seed(seed)` like the CultureCLIP authors' evaluators."""
    import random

    out = list(items)
    random.Random(seed).shuffle(out)
    return out


# --------------------------------------------------------------------------------------------
# Local metric helpers (used until/unless eval_suite.metrics provides them)
# --------------------------------------------------------------------------------------------
def _metrics_module():
    try:
        from eval_suite import metrics  # noqa: WPS433
        return metrics
    except Exception:  # pragma: no cover - other helper's module may be mid-edit
        return None


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest logits; NaN when k > number of classes."""
    if logits.shape[1] < k:
        return float("nan")
    if len(labels) == 0:
        return float("nan")
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean())


def mean_per_class_recall(logits: np.ndarray, labels: np.ndarray) -> float:
    """Balanced accuracy over the classes present in `labels` (sklearn's balanced_accuracy_score)."""
    pred = logits.argmax(axis=1)
    recalls = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else float("nan")


def recall_at_k(scores: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Share of queries (rows) with at least one positive among their top-k columns."""
    k = min(k, scores.shape[1])
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(positives, topk, axis=1).any(axis=1)
    return float(hit.mean())


def choice_correct(scores: list[np.ndarray], answers: np.ndarray, strict: bool = True) -> np.ndarray:
    """Per-question correctness: answer's score beats every other option (ties wrong if strict)."""
    out = np.zeros(len(scores), dtype=bool)
    for i, (s, a) in enumerate(zip(scores, answers)):
        others = np.delete(s, a)
        out[i] = bool((s[a] > others).all()) if strict else int(np.argmax(s)) == a
    return out


def group_means(values: np.ndarray, groups: dict[str, list[str]], name: str) -> dict[str, dict[str, float]]:
    """Mean of a per-item 0/1 vector per value of each group field: {"field=value": {name: mean}}."""
    out: dict[str, dict[str, float]] = {}
    for fieldname, per_item in groups.items():
        arr = np.asarray(per_item, dtype=object)
        for val in sorted({str(v) for v in per_item}):
            mask = np.array([str(v) == val for v in arr])
            out.setdefault(f"{fieldname}={val}", {})[name] = float(values[mask].mean())
            out[f"{fieldname}={val}"]["n"] = int(mask.sum())
    return out


def worst_and_gap(groups: dict[str, dict[str, float]], fieldname: str, metric: str) -> tuple[float, float]:
    vals = [g[metric] for k, g in groups.items() if k.startswith(fieldname + "=") and metric in g
            and not np.isnan(g[metric])]
    if not vals:
        return float("nan"), float("nan")
    return float(min(vals)), float(max(vals) - min(vals))


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
    hub_patterns: ClassVar[tuple[str, ...] | None] = None
    env_var: ClassVar[str] = ""
    protocols: ClassVar[tuple[str, ...]] = ("official",)
    source_hint: ClassVar[str] = ""

    def __init__(self, root: str | os.PathLike | None = None, protocol: str = "official", **options: Any):
        if protocol not in self.protocols:
            raise BenchmarkError(
                f"benchmark {self.name!r} has no protocol {protocol!r}; choose one of {list(self.protocols)}")
        self.root_arg = Path(root).expanduser() if root else None
        self.protocol = protocol
        self.options = options
        self._data: TaskData | None = None
        self._root: Path | None = None

    # ---------- locating ----------
    def resolve_root(self) -> Path:
        """The local folder holding the benchmark (downloading a hub snapshot when allowed)."""
        if self._root is not None:
            return self._root
        cand = self.root_arg or (Path(os.environ[self.env_var]).expanduser()
                                 if self.env_var and os.environ.get(self.env_var) else None)
        if cand is not None:
            if not cand.exists():
                raise BenchmarkNotFoundError(f"{self.name}: {cand} does not exist. {self.how_to_get()}")
            self._root = cand
            return cand
        if self.hub_id:
            self._root = self._download()
            return self._root
        raise BenchmarkNotFoundError(f"{self.name}: no data folder given. {self.how_to_get()}")

    def how_to_get(self) -> str:
        where = f"the Hugging Face dataset `{self.hub_id}`" if self.hub_id else "its publisher"
        hint = f" {self.source_hint}" if self.source_hint else ""
        return (f"Get it from {where}{hint}, then point to the folder with "
                f"`--root {self.name}=PATH` or the environment variable {self.env_var}.")

    def _download(self) -> Path:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            try:
                from huggingface_hub import snapshot_download

                return Path(snapshot_download(self.hub_id, repo_type="dataset", local_files_only=True,
                                              allow_patterns=list(self.hub_patterns) if self.hub_patterns else None))
            except Exception as exc:
                raise BenchmarkNotFoundError(
                    f"{self.name}: HF_HUB_OFFLINE=1 and `{self.hub_id}` is not in the local hub cache. "
                    f"{self.how_to_get()}") from exc
        try:
            from huggingface_hub import snapshot_download

            logger.info("downloading %s from the Hugging Face hub", self.hub_id)
            return Path(snapshot_download(self.hub_id, repo_type="dataset",
                                          allow_patterns=list(self.hub_patterns) if self.hub_patterns else None))
        except Exception as exc:
            raise BenchmarkNotFoundError(
                f"{self.name}: could not download `{self.hub_id}` ({type(exc).__name__}: {exc}). "
                f"{self.how_to_get()}") from exc

    # ---------- reading ----------
    def load(self) -> TaskData:
        """Read the benchmark (cached on the instance) into its task shape."""
        if self._data is None:
            self._data = self._load(self.resolve_root())
            if not self._data.images:
                raise BenchmarkError(f"{self.name}: no samples found under {self.resolve_root()}")
        return self._data

    def _load(self, root: Path) -> TaskData:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of the samples' identities, protocol and options (keys the embedding cache)."""
        data = self.load()
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.protocol}|{sorted(self.options.items())!r}".encode())
        for ref in data.images:
            h.update(ref.key().encode())
            h.update(b"\0")
        return h.hexdigest()[:20]

    # ---------- scoring ----------
    def evaluate(self, embedder: Any, image_features: "torch.Tensor | None" = None,
                 valid: np.ndarray | None = None, **embed_kwargs: Any) -> dict[str, Any]:
        """Score the benchmark with `embedder` -> {benchmark, task, protocol, metrics, groups, n_samples, ...}.

        `image_features` (N, D) / `valid` (N,) may be given by the runner (cached, multi-process);
        otherwise images are embedded here with the shared DataLoader pipeline."""
        from eval_suite.benchmarks.embedding import embed_image_refs

        data = self.load()
        if image_features is None:
            image_features, valid = embed_image_refs(embedder, data.images, **embed_kwargs)
        import torch

        feats = torch.as_tensor(image_features).float()
        valid = np.ones(len(data.images), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        n_bad = int((~valid).sum())
        if n_bad:
            logger.warning("%s: %d unreadable images skipped", self.name, n_bad)
        idx = np.flatnonzero(valid)
        data_ok = data.select(idx)
        feats = feats[torch.as_tensor(idx, dtype=torch.long)]
        scorer = SCORERS[type(data_ok)]
        metrics, groups, n = scorer(self, data_ok, feats, embedder)
        return {"benchmark": self.name, "task": self.task, "protocol": self.protocol,
                "metrics": metrics, "groups": groups, "n_samples": n, "n_unreadable": n_bad,
                "n_images": len(data.images)}


# --------------------------------------------------------------------------------------------
# Scorers (one per task shape). Each returns (metrics, groups, n_samples).
# --------------------------------------------------------------------------------------------
def embed_texts_unique(embedder: Any, texts: Iterable[str]) -> tuple[dict[str, int], "torch.Tensor"]:
    """Embed each distinct text once: returns (text -> row, (T, D) features)."""
    uniq: dict[str, int] = {}
    for t in texts:
        uniq.setdefault(t, len(uniq))
    feats = embedder.embed_texts(list(uniq))
    return uniq, feats.float()


def score_classification(bench: Benchmark, data: ClassificationData, feats: "torch.Tensor",
                         embedder: Any) -> tuple[dict, dict, int]:
    templates = [t.replace("{c}", "{}") for t in data.templates]
    bank = embedder.label_bank(list(data.classnames), templates=tuple(templates)).float()  # (C, D)
    logits = (100.0 * feats @ bank.T).numpy()  # (N, C)
    labels = np.asarray(data.labels)
    metrics = {"acc1": topk_accuracy(logits, labels, 1), "acc5": topk_accuracy(logits, labels, 5),
               "mean_per_class_recall": mean_per_class_recall(logits, labels)}
    groups: dict[str, dict[str, float]] = {}
    if data.groups and len(labels):
        top1 = logits.argmax(1) == labels
        top5 = (np.argsort(-logits, 1, kind="stable")[:, :5] == labels[:, None]).any(1) \
            if logits.shape[1] >= 5 else np.full(len(labels), np.nan)
        g1 = group_means(top1.astype(float), data.groups, "acc1")
        g5 = group_means(top5.astype(float), data.groups, "acc5")
        for k, v in g1.items():
            groups[k] = {**v, "acc5": g5[k]["acc5"]}
        for fieldname, metric in data.worst_group_metric.items():
            worst, gap = worst_and_gap(groups, fieldname, metric)
            metrics[f"{metric}_worst_{fieldname}"] = worst
            metrics[f"{metric}_gap_{fieldname}"] = gap
    return metrics, groups, int(len(labels))


def score_retrieval(bench: Benchmark, data: RetrievalData, feats: "torch.Tensor",
                    embedder: Any) -> tuple[dict, dict, int]:
    texts, owner = [], []
    for i, caps in enumerate(data.captions):
        texts.extend(caps)
        owner.extend([i] * len(caps))
    tfeats = embedder.embed_texts(texts).float()  # (T, D)
    scores = (tfeats @ feats.T).numpy()  # (T, N)
    pos = np.zeros_like(scores, dtype=bool)
    pos[np.arange(len(texts)), owner] = True
    metrics: dict[str, float] = {}
    for k in (1, 5, 10):
        metrics[f"image_retrieval_recall@{k}"] = recall_at_k(scores, pos, k)
        metrics[f"text_retrieval_recall@{k}"] = recall_at_k(scores.T, pos.T, k)
    metrics["mean_recall@1"] = (metrics["image_retrieval_recall@1"] + metrics["text_retrieval_recall@1"]) / 2
    return metrics, {}, len(data.images)


def score_choice(bench: Benchmark, data: ChoiceData, feats: "torch.Tensor",
                 embedder: Any) -> tuple[dict, dict, int]:
    index, tfeats = embed_texts_unique(embedder, (t for opts in data.options for t in opts))
    scores = []
    for i, opts in enumerate(data.options):
        rows = torch_index(tfeats, [index[t] for t in opts])
        scores.append((rows @ feats[i]).numpy())
    correct = choice_correct(scores, np.asarray(data.answers), strict=data.strict)
    metrics = {"accuracy": float(correct.mean()) if len(correct) else float("nan")}
    groups = group_means(correct.astype(float), data.groups, "accuracy") if data.groups else {}
    for fieldname in data.groups:
        worst, gap = worst_and_gap(groups, fieldname, "accuracy")
        metrics[f"accuracy_worst_{fieldname}"] = worst
    return metrics, groups, len(correct)


def torch_index(t: "torch.Tensor", rows: list[int]) -> "torch.Tensor":
    import torch

    return t[torch.as_tensor(rows, dtype=torch.long)]


def score_twin(bench: Benchmark, data: TwinData, feats: "torch.Tensor",
               embedder: Any) -> tuple[dict, dict, int]:
    """N-way concept accuracy over all test concepts + Winoground-style scores per twin pair.

    For a pair (a, b) with image sets A, B: text score = every image prefers its own concept's text;
    image score = each concept text prefers its own images (mean similarity over its images);
    group score = both. Also reported: twin accuracy = share of images whose own-concept similarity
    beats the twin's, averaged over images."""
    concepts = sorted(data.concept_texts)
    cidx = {c: i for i, c in enumerate(concepts)}
    tfeats = embedder.embed_texts([data.concept_texts[c] for c in concepts]).float()  # (C, D)
    sims = (feats @ tfeats.T).numpy()  # (N, C)
    labels = np.array([cidx[c] for c in data.concept_ids])
    metrics = {"concept_acc1": topk_accuracy(sims, labels, 1), "concept_acc5": topk_accuracy(sims, labels, 5)}
    img_ok: list[float] = []
    per_pair = []
    own_minus_twin_by_image: dict[int, list[float]] = {}
    for a, b in data.pairs:
        ia = np.flatnonzero(labels == cidx[a])
        ib = np.flatnonzero(labels == cidx[b])
        if len(ia) == 0 or len(ib) == 0:
            continue
        s_aa, s_ab = sims[ia, cidx[a]], sims[ia, cidx[b]]
        s_bb, s_ba = sims[ib, cidx[b]], sims[ib, cidx[a]]
        text_ok = bool((s_aa > s_ab).all() and (s_bb > s_ba).all())
        image_ok = bool(s_aa.mean() > s_ba.mean() and s_bb.mean() > s_ab.mean())
        per_pair.append((a, b, text_ok, image_ok, text_ok and image_ok))
        img_ok.extend((s_aa > s_ab).tolist() + (s_bb > s_ba).tolist())
        for i, d in zip(ia, s_aa - s_ab):
            own_minus_twin_by_image.setdefault(int(i), []).append(float(d))
        for i, d in zip(ib, s_bb - s_ba):
            own_minus_twin_by_image.setdefault(int(i), []).append(float(d))
    if per_pair:
        metrics["twin_text_score"] = float(np.mean([p[2] for p in per_pair]))
        metrics["twin_image_score"] = float(np.mean([p[3] for p in per_pair]))
        metrics["twin_group_score"] = float(np.mean([p[4] for p in per_pair]))
        metrics["twin_accuracy"] = float(np.mean(img_ok))
        metrics["n_pairs"] = len(per_pair)
    top1 = (sims.argmax(1) == labels).astype(float)
    groups = group_means(top1, data.groups, "concept_acc1") if data.groups else {}
    # twin accuracy per group: images that are in at least one pair, all their pairs must be won
    if own_minus_twin_by_image and data.groups:
        items = sorted(own_minus_twin_by_image)
        won = np.array([all(d > 0 for d in own_minus_twin_by_image[i]) for i in items], dtype=float)
        sub = {k: [v[i] for i in items] for k, v in data.groups.items()}
        for k, v in group_means(won, sub, "twin_accuracy").items():
            groups.setdefault(k, {}).update({"twin_accuracy": v["twin_accuracy"], "n_twin": v["n"]})
    return metrics, groups, len(labels)


def score_ranking(bench: Benchmark, data: RankingData, feats: "torch.Tensor",
                  embedder: Any) -> tuple[dict, dict, int]:
    """precision@k against the relevance matrix and cultural diversity@k (normalised entropy)."""
    qfeats = embedder.embed_texts(data.query_texts).float()
    scores = (qfeats @ feats.T).numpy()  # (Q, N)
    order = np.argsort(-scores, axis=1, kind="stable")
    metrics: dict[str, float] = {}
    prefix = "" if data.relevance_source == "gold" else "proxy_"
    cultures = np.asarray(data.image_cultures, dtype=object)
    for k in (5, 10):
        kk = min(k, scores.shape[1])
        top = order[:, :kk]
        metrics[f"{prefix}precision@{k}"] = float(np.take_along_axis(data.relevance, top, 1).mean())
        divs = []
        for q in range(len(top)):
            _, counts = np.unique(cultures[top[q]], return_counts=True)
            m = len(counts)
            if m <= 1:
                divs.append(0.0)
                continue
            p = counts / counts.sum()
            divs.append(float(-(p * np.log(p)).sum() / np.log(m)))
        metrics[f"diversity@{k}"] = float(np.mean(divs))
    return metrics, {}, len(data.queries)


SCORERS: dict[type, Callable[..., tuple[dict, dict, int]]] = {
    ClassificationData: score_classification,
    RetrievalData: score_retrieval,
    ChoiceData: score_choice,
    TwinData: score_twin,
    RankingData: score_ranking,
}
