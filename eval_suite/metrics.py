"""Evaluation metrics as pure functions of score matrices.

Every benchmark adapter reduces its data to a score matrix (cosine similarities or logits) plus the index
of the right answer; the functions here turn that into numbers. They take numpy arrays or torch tensors
(moved to CPU float64 here, so bf16 works) and return Python floats, numpy arrays of per-sample
correctness (for per-group results and bootstrap CIs) or small dicts.

Ties: an item counts as correct at rank k only if fewer than k wrong candidates score *at least* as
high as the right one. Ties therefore count against the model, so a collapsed model that gives every
candidate the same score gets no credit (a lenient rule would give it 100% recall). On real-valued
scores this matches clip_benchmark, which uses ``topk``.

Metric names follow clip_benchmark where one exists (``acc1``, ``acc5``, ``mean_per_class_recall``,
``image_retrieval_recall@k`` = text->image, ``text_retrieval_recall@k`` = image->text) so both kinds of
result files tabulate together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ArrayLike = Any  # numpy array, torch tensor, or nested sequence

__all__ = [
    "as_array",
    "winoground_scores",
    "twin_pair_scores",
    "topk_correct",
    "zero_shot_accuracy",
    "mean_per_class_recall",
    "ensemble_class_embeddings",
    "retrieval_recall",
    "multiple_choice_correct",
    "multiple_choice_accuracy",
    "Group",
    "group_metrics",
    "bootstrap_ci",
    "paired_bootstrap",
]


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------
def as_array(x: ArrayLike, name: str = "array", dtype: Any = np.float64) -> np.ndarray:
    """Convert a numpy array, torch tensor (any device/dtype) or sequence to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch here
        x = x.detach().cpu()
        if dtype is not None and getattr(x, "is_floating_point", lambda: False)():
            x = x.float()  # bf16/fp16 have no numpy equivalent
        x = x.numpy()
    arr = np.asarray(x)
    if dtype is not None:
        try:
            arr = arr.astype(dtype, copy=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}: {exc}") from exc
    return arr


def _check_ndim(arr: np.ndarray, ndim: int, name: str, shape_doc: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(arr.shape)}")


def _labels(labels: ArrayLike, n: int, n_classes: int, name: str = "labels") -> np.ndarray:
    lab = as_array(labels, name, dtype=None)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the scores, got {tuple(lab.shape)}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab, 1) == 0):
            lab = lab.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integer class indices, got dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes - 1}] (one per score column), got range "
            f"[{lab.min()}, {lab.max()}]"
        )
    return lab


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


# --------------------------------------------------------------------------------------------------
# twins
# --------------------------------------------------------------------------------------------------
def winoground_scores(scores: ArrayLike) -> dict[str, np.ndarray]:
    """Winoground text/image/group correctness for each twin pair.

    ``scores`` has shape (P, 2, 2) (or (2, 2) for one pair): ``scores[p, i, t]`` is the similarity of
    image i to text t, where index 0 is concept a and 1 its twin b. Text score: each image prefers its
    own text; image score: each text prefers its own image; group score: both. Comparisons are strict.
    Returns boolean arrays of shape (P,) under ``text``, ``image``, ``group``.
    """
    s = as_array(scores, "scores")
    if s.shape == (2, 2):
        s = s[None]
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"scores must have shape (P, 2, 2) [pair, image, text], got {tuple(s.shape)}")
    text = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    image = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    return {"text": text, "image": image, "group": text & image}


def twin_pair_scores(scores: ArrayLike) -> dict[str, Any]:
    """Winoground scores over many twin pairs: per-pair booleans and their means.

    ``scores``: (P, 2, 2). Returns ``text_score``, ``image_score``, ``group_score`` (floats) and
    ``per_pair`` (the boolean arrays of :func:`winoground_scores`).
    """
    per_pair = winoground_scores(scores)
    return {
        "text_score": _mean(per_pair["text"]),
        "image_score": _mean(per_pair["image"]),
        "group_score": _mean(per_pair["group"]),
        "per_pair": per_pair,
    }


# --------------------------------------------------------------------------------------------------
# classification / multiple choice
# --------------------------------------------------------------------------------------------------
def _gold_rank(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Number of wrong candidates scoring >= the gold one, per row. scores (N, K), gold (N,) -> (N,)."""
    gold_score = scores[np.arange(scores.shape[0]), gold]
    return (scores >= gold_score[:, None]).sum(axis=1) - 1


def topk_correct(logits: ArrayLike, labels: ArrayLike, k: int = 1) -> np.ndarray:
    """Per-sample top-k correctness. logits (N, C), labels (N,) -> bool (N,)."""
    s = as_array(logits, "logits")
    _check_ndim(s, 2, "logits", "(N, C)")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lab = _labels(labels, s.shape[0], s.shape[1])
    if s.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return _gold_rank(s, lab) < k


def mean_per_class_recall(logits: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 recall averaged over the classes present in ``labels`` (robust to class imbalance)."""
    s = as_array(logits, "logits")
    _check_ndim(s, 2, "logits", "(N, C)")
    lab = _labels(labels, s.shape[0], s.shape[1])
    correct = topk_correct(s, lab, 1)
    classes, inverse = np.unique(lab, return_inverse=True)
    if classes.size == 0:
        return float("nan")
    hits = np.bincount(inverse, weights=correct.astype(np.float64), minlength=classes.size)
    counts = np.bincount(inverse, minlength=classes.size)
    return float((hits / counts).mean())


def zero_shot_accuracy(logits: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """N-way zero-shot classification: ``acc{k}`` for each k, ``mean_per_class_recall`` and ``correct``.

    logits (N, C) image-to-class scores; labels (N,) class indices. ``correct`` maps k -> bool (N,).
    A k >= C is reported (trivially 1.0) but logged, since it usually means a tiny class set.
    """
    s = as_array(logits, "logits")
    _check_ndim(s, 2, "logits", "(N, C)")
    lab = _labels(labels, s.shape[0], s.shape[1])
    out: dict[str, Any] = {}
    correct: dict[int, np.ndarray] = {}
    for k in ks:
        if k >= s.shape[1]:
            log.warning("top-%d accuracy with only %d classes is trivially 1", k, s.shape[1])
        correct[k] = topk_correct(s, lab, k)
        out[f"acc{k}"] = _mean(correct[k])
    out["mean_per_class_recall"] = mean_per_class_recall(s, lab)
    out["correct"] = correct
    return out


def ensemble_class_embeddings(text_features: ArrayLike, normalize_inputs: bool = True) -> np.ndarray:
    """Prompt-template ensemble: mean over templates, then L2-renormalize.

    text_features (T, C, D) [template, class, dim] -> (C, D). Inputs are normalized first (as CLIP
    does), so every template weighs the same.
    """
    f = as_array(text_features, "text_features")
    _check_ndim(f, 3, "text_features", "(T templates, C classes, D)")
    if normalize_inputs:
        f = f / np.clip(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12, None)
    mean = f.mean(axis=0)
    norm = np.linalg.norm(mean, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("a class's template embeddings average to zero; cannot normalize the ensemble")
    return mean / norm


def multiple_choice_correct(scores: ArrayLike, answers: ArrayLike) -> np.ndarray:
    """Per-question correctness: the answer's score beats every other option. (N, K), (N,) -> bool (N,)."""
    s = as_array(scores, "scores")
    _check_ndim(s, 2, "scores", "(N questions, K options)")
    ans = _labels(answers, s.shape[0], s.shape[1], "answers")
    if s.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return _gold_rank(s, ans) == 0


def multiple_choice_accuracy(scores: ArrayLike, answers: ArrayLike) -> float:
    """Accuracy of picking the most similar option. scores (N, K), answers (N,) -> float."""
    return _mean(multiple_choice_correct(scores, answers))


# --------------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------------
def retrieval_recall(
    scores: ArrayLike,
    text_to_image: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict[str, Any]:
    """Recall@k both ways with several captions per image.

    scores (N_img, N_txt): similarity of each image to each caption; text_to_image (N_txt,): the index
    of each caption's image. Image->text (``text_retrieval_recall@k``): an image is a hit if *any* of its
    captions is in its top k. Text->image (``image_retrieval_recall@k``): a caption is a hit if its image
    is in its top k. Also returns ``correct``: {metric name: bool array} (per image / per caption).
    Works in chunks of ``chunk`` rows so a 5k x 25k COCO matrix needs no extra big temporaries.
    """
    s = as_array(scores, "scores")
    _check_ndim(s, 2, "scores", "(N_img, N_txt)")
    n_img, n_txt = s.shape
    t2i = _labels(text_to_image, n_txt, n_img, "text_to_image")
    if n_img == 0 or n_txt == 0:
        raise ValueError("retrieval needs at least one image and one caption")
    caps_per_image = np.bincount(t2i, minlength=n_img)
    if np.any(caps_per_image == 0):
        missing = np.flatnonzero(caps_per_image == 0)[:5].tolist()
        raise ValueError(f"images without any caption (e.g. indices {missing}); drop them or add captions")

    # text -> image: rank of the gold image among all images, per caption
    gold_t = s[t2i, np.arange(n_txt)]  # (N_txt,)
    rank_t = np.empty(n_txt, dtype=np.int64)
    for start in range(0, n_txt, chunk):
        sl = slice(start, start + chunk)
        rank_t[sl] = (s[:, sl] >= gold_t[None, sl]).sum(axis=0) - 1

    # image -> text: rank of the best-scored own caption among the *other* images' captions
    rank_i = np.empty(n_img, dtype=np.int64)
    best = np.full(n_img, -np.inf)
    np.maximum.at(best, t2i, gold_t)
    for start in range(0, n_img, chunk):
        rows = np.arange(start, min(start + chunk, n_img))
        block = s[rows]  # (b, N_txt)
        own = t2i[None, :] == rows[:, None]
        rank_i[rows] = ((block >= best[rows, None]) & ~own).sum(axis=1)

    out: dict[str, Any] = {"correct": {}}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        ci, ct = rank_t < k, rank_i < k
        out[f"image_retrieval_recall@{k}"] = _mean(ci)
        out[f"text_retrieval_recall@{k}"] = _mean(ct)
        out["correct"][f"image_retrieval_recall@{k}"] = ci
        out["correct"][f"text_retrieval_recall@{k}"] = ct
    return out


# --------------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------------
UNKNOWN = "unknown"  # the value of a group field whose label is missing (None/NaN)


@dataclass(frozen=True, order=True)
class Group:
    """A group of items, named by its fields as data: ``Group.of(region="Asia", category="food")``.

    ``items`` holds (field, value) pairs in the order given; values are strings (a missing label is
    :data:`UNKNOWN`) and may contain any character. Results JSON, tables and figures carry the fields
    (``fields``), never a flattened name; :attr:`label` is for display only and is never parsed back.
    Frozen and ordered, so a group is a dict key and sorts deterministically.
    """

    items: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("a group needs at least one field, e.g. Group.of(region='Asia')")
        names = [name for name, _ in self.items]
        if len(set(names)) != len(names):
            raise ValueError(f"group fields repeat a name: {names}")
        for name, value in self.items:
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise ValueError(f"group field {name!r}={value!r}: names must be non-empty strings, values strings")

    @classmethod
    def of(cls, mapping: Mapping[str, Any] | None = None, /, **fields: Any) -> Group:
        """Group from a {field: value} mapping and/or keywords (``Group.of(region="Asia")``); values
        become strings, missing ones (None/NaN) :data:`UNKNOWN`."""
        merged = {**dict(mapping or {}), **fields}
        return cls(tuple((str(k), UNKNOWN if _is_missing(v) else str(v)) for k, v in merged.items()))

    @property
    def fields(self) -> dict[str, str]:
        """{field: value} in the order given, e.g. {"region": "Asia", "category": "food"}."""
        return dict(self.items)

    @property
    def label(self) -> str:
        """Human-readable name for display (``region: Asia · category: food``); never parse it."""
        return " · ".join(f"{name}: {value}" for name, value in self.items)

    def __str__(self) -> str:
        return self.label


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def group_metrics(
    values: ArrayLike,
    labels: ArrayLike | Mapping[str, ArrayLike],
    min_count: int = 1,
) -> dict[str, Any]:
    """Per-group mean of a per-sample metric, with the worst and best group and their gap.

    values (N,): e.g. per-sample correctness. labels: {field: (N,)} -> groups are :class:`Group`
    records of those fields (one field -> ``Group.of(region="Asia")``; several -> their combination);
    or a plain (N,) label array -> groups are the labels themselves. Missing labels (None/NaN) are
    :data:`UNKNOWN`. Groups with fewer than ``min_count`` samples are reported but left out of
    worst/best/gap, so one stray image cannot define the worst group.
    Returns ``per_group`` {group: mean}, ``counts`` {group: n} (groups sorted), ``worst_group``,
    ``worst``, ``best_group``, ``best``, ``gap`` (best - worst) and ``mean`` (over all samples).
    """
    v = as_array(values, "values")
    _check_ndim(v, 1, "values", "(N,)")
    n = v.shape[0]
    keys: list[Any]
    if isinstance(labels, Mapping):
        if not labels:
            raise ValueError("labels mapping is empty; pass e.g. {'region': region_labels}")
        cols = {}
        for name, col in labels.items():
            arr = list(col.tolist() if hasattr(col, "tolist") else col)
            if len(arr) != n:
                raise ValueError(f"labels[{name!r}] has {len(arr)} entries, values has {n}")
            cols[name] = arr
        keys = [Group.of({name: cols[name][i] for name in cols}) for i in range(n)]
    else:
        arr = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        if len(arr) != n:
            raise ValueError(f"labels has {len(arr)} entries, values has {n}")
        keys = [UNKNOWN if _is_missing(x) else str(x) for x in arr]

    uniq = sorted(set(keys))
    index = {k: i for i, k in enumerate(uniq)}
    inverse = np.fromiter((index[k] for k in keys), dtype=np.int64, count=n)
    sums = np.bincount(inverse, weights=v, minlength=len(uniq))
    counts = np.bincount(inverse, minlength=len(uniq))
    means = sums / np.maximum(counts, 1)
    per_group = {g: float(m) for g, m in zip(uniq, means)}
    count_map = {g: int(c) for g, c in zip(uniq, counts)}
    eligible = [g for g in per_group if count_map[g] >= min_count]
    out: dict[str, Any] = {"per_group": per_group, "counts": count_map, "mean": _mean(v)}
    if eligible:
        worst = min(eligible, key=lambda g: (per_group[g], g))
        best = max(eligible, key=lambda g: (per_group[g], g))
        out.update(
            worst_group=worst,
            worst=per_group[worst],
            best_group=best,
            best=per_group[best],
            gap=per_group[best] - per_group[worst],
        )
    else:
        out.update(worst_group=None, worst=float("nan"), best_group=None, best=float("nan"), gap=float("nan"))
    return out


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------
Statistic = Callable[[np.ndarray], np.ndarray]


def _resample_stats(
    arrays: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    n_boot: int,
    seed: int,
    max_elements: int = 4_000_000,
) -> np.ndarray:
    """Bootstrap distribution: resample item indices (shared by all arrays), apply statistic per row."""
    n = arrays[0].shape[0]
    rng = np.random.default_rng(seed)
    step = max(1, max_elements // max(n, 1))
    stats = []
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))  # (b, N)
        stats.append(np.asarray(statistic(*[a[idx] for a in arrays]), dtype=np.float64).reshape(b))
    return np.concatenate(stats)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def bootstrap_ci(
    values: ArrayLike,
    statistic: Statistic | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Percentile bootstrap confidence interval for a per-sample metric.

    values (N,) or (N, ...): one entry per evaluated item. ``statistic`` maps a batch of resamples
    (B, N, ...) to (B,); default: the mean. Seeded, vectorized (resamples in chunks to bound memory).
    Returns ``value`` (statistic on the data), ``ci_low``, ``ci_high``, ``n``, ``n_boot``.
    """
    v = as_array(values, "values")
    if v.ndim == 0 or v.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95; got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    stat = statistic or _mean_rows
    point = float(np.asarray(stat(v[None])).reshape(-1)[0])
    boots = _resample_stats([v], stat, n_boot, seed)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return {"value": point, "ci_low": float(lo), "ci_high": float(hi), "n": int(v.shape[0]), "n_boot": int(n_boot)}


def paired_bootstrap(
    base: ArrayLike,
    tuned: ArrayLike,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of the mean difference ``tuned - base`` over the same items.

    base, tuned (N,): per-item metric of two models on the *same* items in the same order. Items are
    resampled jointly, so item difficulty cancels. Returns ``diff``, ``ci_low``, ``ci_high``,
    ``p_value`` (two-sided: 2 x the smaller fraction of resampled differences on either side of 0,
    capped at 1 -- a bootstrap estimate, not an exact test), ``frac_better`` (fraction of resamples with
    diff > 0) and ``n``.
    """
    a = as_array(base, "base")
    b = as_array(tuned, "tuned")
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"base and tuned must be (N,) arrays over the same items, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    d = b - a
    boots = _resample_stats([d], _mean_rows, n_boot, seed)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    le, ge = float(np.mean(boots <= 0)), float(np.mean(boots >= 0))
    return {
        "diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": min(1.0, 2 * min(le, ge)),
        "frac_better": float(np.mean(boots > 0)),
        "n": int(a.shape[0]),
        "n_boot": int(n_boot),
    }
