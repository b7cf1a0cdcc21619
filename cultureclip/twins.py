"""Twins as one idea: pairs, groups, the concept index and the one twin score.

A **twin pair** is two concepts that look alike but belong to different cultures (`cultureclip.data.twin_pairs`
reads them from a manifest: sorted `(a, b)`, both present). From the pairs:

- `twins_by_concept(pairs)`: concept -> its twins; `twin_groups(pairs)`: concept -> its connected look-alike set.
- `TwinIndex.build(concepts, pairs)`: concepts in sorted order with each one's twins as indices, the shape every
  score below takes, and `labels(concept_ids)`.
- `concept_scores(embedder, image_feats, concept_texts)`: image features x the concept-prompt bank, (N, C).
- `twin_scores(sims, labels, twins_of)`: per image, its own concept's score against the best of its twins.
  **A tie is not correct**: an image counts only when its own concept scores strictly higher than every twin.
- `pair_matrices(sims, labels, pairs)`: per twin pair, the 2x2 matrix of mean scores (images of a / b vs
  concepts a / b) behind the Winoground-style text/image/group scores.

Used by training validation (`cultureclip.train.twin_accuracy`), eval_suite's CulTwin scoring (and so the
demo's live evaluation) and the world study: there is no other twin accuracy.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def twins_by_concept(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """concept id -> its twins (sorted), from `cultureclip.data.twin_pairs`."""
    out: dict[str, set[str]] = {}
    for a, b in pairs:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return {k: sorted(v) for k, v in out.items()}


def twin_groups(pairs: Iterable[tuple[str, str]]) -> dict[str, int]:
    """concept id -> index of its connected look-alike set (union-find over the pairs; groups numbered in the
    order of their sorted root ids, concepts listed in sorted order)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    roots = sorted({find(c) for c in parent})
    return {c: roots.index(find(c)) for c in sorted(parent)}


@dataclass(frozen=True)
class TwinIndex:
    """Concepts in sorted id order and each concept's twins as indices into them."""

    concepts: tuple[str, ...]
    twins_of: dict[int, list[int]]  # concept index -> its twins' indices (concepts with twins only)
    pairs: tuple[tuple[int, int], ...]  # the twin pairs as index pairs, in the order given

    @classmethod
    def build(cls, concepts: Iterable[str], pairs: Iterable[tuple[str, str]]) -> TwinIndex:
        names = tuple(sorted(concepts))
        at = {c: i for i, c in enumerate(names)}
        pairs = list(pairs)
        missing = sorted({c for p in pairs for c in p} - set(at))
        if missing:
            raise ValueError(f"twin pairs name concepts that are not among the concepts: {missing}")
        twins = {at[c]: [at[t] for t in ts] for c, ts in twins_by_concept(pairs).items()}
        return cls(names, twins, tuple((at[a], at[b]) for a, b in pairs))

    def labels(self, concept_ids: Iterable[Any]) -> np.ndarray:
        """(N,) each id's index among `concepts`."""
        at = {c: i for i, c in enumerate(self.concepts)}
        return np.array([at[str(c)] for c in concept_ids], dtype=np.int64)


def concept_scores(embedder: Any, image_feats: torch.Tensor, concept_texts: Mapping[str, str]) -> torch.Tensor:
    """(N, C) cosines of each image with each concept's prompt (concepts in sorted id order, as `TwinIndex`).

    `embedder` is a `cultureclip.inference.Embedder` (anything with `embed_texts`); `image_feats` (N, D) are
    normalized image embeddings."""
    concepts = sorted(concept_texts)
    bank = embedder.embed_texts([concept_texts[c] for c in concepts]).float()  # (C, D)
    return image_feats.float() @ bank.T


@dataclass(frozen=True)
class TwinScores:
    """Per image with at least one twin among the concepts: own score vs the best twin's."""

    rows: torch.Tensor  # (M,) long: the images that take part
    own: torch.Tensor  # (M,) the own concept's score
    best_twin: torch.Tensor  # (M,) the highest score among the image's twins
    margin: torch.Tensor  # (M,) own - best_twin
    correct: torch.Tensor  # (M,) bool: own > best_twin, strictly (a tie is not correct)

    @property
    def twin_acc(self) -> float:
        """Fraction correct (NaN when no image has a twin)."""
        return float(self.correct.float().mean()) if self.rows.numel() else float("nan")


def twin_scores(sims: torch.Tensor | np.ndarray, labels: Sequence[int] | torch.Tensor | np.ndarray,
                twins_of: Mapping[int, Sequence[int]]) -> TwinScores:
    """The twin accuracy's one definition. sims (N, C) image-to-concept scores; labels (N,) each image's own
    concept index; twins_of: concept index -> its twins' indices. An image takes part when its concept has a
    twin; it is correct when its own score beats every twin's strictly."""
    sims = torch.as_tensor(sims)
    labels = torch.as_tensor(labels, dtype=torch.long)
    rows = torch.tensor([i for i, lab in enumerate(labels.tolist()) if twins_of.get(lab)], dtype=torch.long)
    if rows.numel() == 0:
        empty = sims.new_zeros(0)
        return TwinScores(rows, empty, empty, empty, torch.zeros(0, dtype=torch.bool))
    own = sims[rows, labels[rows]]
    best = torch.stack([sims[r, list(twins_of[int(labels[r])])].max() for r in rows.tolist()])
    margin = own - best
    return TwinScores(rows, own, best, margin, margin > 0)


def pair_matrices(sims: np.ndarray, labels: np.ndarray, pairs: Iterable[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per twin pair (a, b) of concept indices: the (2, 2) mean scores [images of a, images of b] x [a, b]
    and whether both sides have images. Returns (P, 2, 2) (NaN rows where a side has none) and (P,) bool."""
    mats, present = [], []
    for a, b in pairs:
        ia, ib = labels == a, labels == b
        ok = bool(ia.any() and ib.any())
        present.append(ok)
        mats.append([[sims[ia, a].mean(), sims[ia, b].mean()], [sims[ib, a].mean(), sims[ib, b].mean()]]
                    if ok else [[np.nan, np.nan], [np.nan, np.nan]])
    return np.array(mats, dtype=float).reshape(-1, 2, 2), np.array(present, dtype=bool)
