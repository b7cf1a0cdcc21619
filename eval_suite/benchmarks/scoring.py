"""Scoring by task shape: features in, result fields out.

Each scorer turns image features plus the task's texts into score matrices, reduces them with the pure
functions of `eval_suite.metrics`, and (where items are one per image) summarizes per-item values with
`eval_suite.results.summarize_samples` (groups, worst group, gap, bootstrap CIs, per-item samples for
paired comparisons). Returns a dict of `make_result` keyword fields, which `Benchmark.evaluate` wraps in a
`BenchmarkResult`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from cultureclip.twins import TwinIndex, concept_scores, pair_matrices, twin_scores
from eval_suite import metrics as M
from eval_suite.benchmarks.tasks import ChoiceData, ClassificationData, RankingData, RetrievalData, TwinData
from eval_suite.results import merge_groups, summarize_samples


def _summarize(per_sample: dict[str, np.ndarray], labels: dict[str, list], ids: np.ndarray, n_boot: int,
               keep_samples: bool, cross=()) -> dict[str, Any]:
    return summarize_samples(per_sample, labels=labels or None, ids=[int(i) for i in ids], n_boot=n_boot,
                             keep_samples=keep_samples, cross=cross)


def score_classification(data: ClassificationData, feats: torch.Tensor, embedder: Any, *, ids: np.ndarray,
                         n_boot: int, keep_samples: bool) -> dict[str, Any]:
    """Zero-shot: template-ensemble class bank (C, D); logits = 100 * feats @ bank.T (as clip_benchmark)."""
    templates = tuple(t.replace("{c}", "{}") for t in data.templates)
    bank = embedder.label_bank(list(data.classnames), templates=templates).float()  # (C, D)
    logits = (100.0 * feats @ bank.T).numpy()  # (N, C)
    labels = np.asarray(data.labels)
    ks = (1, 5) if logits.shape[1] >= 5 else (1,)  # clip_benchmark reports no acc5 below 5 classes
    acc = M.zero_shot_accuracy(logits, labels, ks=ks)
    per_sample = {f"acc{k}": acc["correct"][k].astype(float) for k in ks}
    out = _summarize(per_sample, data.groups, ids, n_boot, keep_samples)
    out["metrics"]["mean_per_class_recall"] = acc["mean_per_class_recall"]
    for field, metric in data.worst_group_metric.items():  # the benchmark's headline worst group first
        out["metrics"] = {f"{metric}_worst_{field}": out["metrics"].get(f"{metric}_worst_{field}"),
                          **out["metrics"]}
    return out


def score_retrieval(data: RetrievalData, feats: torch.Tensor, embedder: Any, *, ids: np.ndarray,
                    n_boot: int, keep_samples: bool) -> dict[str, Any]:
    """Recall@1/5/10 both ways over all captions (several per image)."""
    texts = [c for caps in data.captions for c in caps]
    owner = np.array([i for i, caps in enumerate(data.captions) for _ in caps])
    tfeats = embedder.embed_texts(texts).float()  # (T, D)
    scores = (feats @ tfeats.T).numpy()  # (N_img, N_txt)
    rec = M.retrieval_recall(scores, owner, ks=(1, 5, 10))
    correct = rec.pop("correct")
    metrics = {k: v for k, v in rec.items()}
    metrics["mean_recall@1"] = (metrics["image_retrieval_recall@1"] + metrics["text_retrieval_recall@1"]) / 2
    out: dict[str, Any] = {"metrics": metrics, "groups": [], "n_samples": len(data.images)}
    if n_boot:
        out["ci"] = {}
        for name, vals in correct.items():
            b = M.bootstrap_ci(vals.astype(float), n_boot=n_boot)
            out["ci"][name] = [b["ci_low"], b["ci_high"]]
    out["extra"] = {"n_captions": len(texts)}
    return out


def choice_scores(data: ChoiceData, feats: torch.Tensor, embedder: Any) -> list[np.ndarray]:
    """Per question, the (K,) similarities of its image to its options (each distinct text embedded once)."""
    uniq: dict[str, int] = {}
    for opts in data.options:
        for t in opts:
            uniq.setdefault(t, len(uniq))
    tfeats = embedder.embed_texts(list(uniq)).float()  # (T, D)
    sims = (feats @ tfeats.T).numpy()  # (N, T)
    return [sims[i, [uniq[t] for t in opts]] for i, opts in enumerate(data.options)]


def score_choice(data: ChoiceData, feats: torch.Tensor, embedder: Any, *, ids: np.ndarray,
                 n_boot: int, keep_samples: bool) -> dict[str, Any]:
    """Accuracy of picking the most similar option (ties count wrong); per-group and worst group."""
    scores = choice_scores(data, feats, embedder)
    answers = np.asarray(data.answers)
    correct = np.zeros(len(scores), dtype=float)
    for k in sorted({len(s) for s in scores}):  # questions may have different option counts
        rows = [i for i, s in enumerate(scores) if len(s) == k]
        correct[rows] = M.multiple_choice_correct(np.stack([scores[i] for i in rows]), answers[rows])
    return _summarize({"accuracy": correct}, data.groups, ids, n_boot, keep_samples)


def score_twin(data: TwinData, feats: torch.Tensor, embedder: Any, *, ids: np.ndarray,
               n_boot: int, keep_samples: bool) -> dict[str, Any]:
    """N-way concept accuracy + twin accuracy per image + Winoground-style scores per twin pair.

    Per image: `concept_acc1/5` (N-way over the split's concepts) and `twin_acc` (own concept's
    prompt beats every twin's). Per pair (a, b): a 2x2 matrix of mean image-to-prompt similarity
    (images of a / b vs prompts of a / b) gives text/image/group scores (`eval_suite.metrics`)."""
    index = TwinIndex.build(data.concept_texts, data.pairs)
    sims_t = concept_scores(embedder, feats, data.concept_texts)  # (N, C)
    sims = sims_t.numpy()
    labels = index.labels(data.concept_ids)
    ks = (1, 5) if len(index.concepts) >= 5 else (1,)
    acc = M.zero_shot_accuracy(sims, labels, ks=ks)
    per_sample = {f"concept_acc{k}": acc["correct"][k].astype(float) for k in ks}
    cross = [("region", "category")] if {"region", "category"} <= set(data.groups) else []
    out = _summarize(per_sample, data.groups, ids, n_boot, keep_samples, cross=cross)
    # twin accuracy per image (cultureclip.twins.twin_scores): beats all its twins present in the split,
    # strictly; images without a twin there are left out
    tw = twin_scores(sims_t, labels, index.twins_of)
    if tw.rows.numel():
        _add_twin_accuracy(out, tw, data, ids, n_boot, cross)
        mats, present = pair_matrices(sims, labels, index.pairs)  # pair-level Winoground scores
        if present.any():
            wp = M.twin_pair_scores(mats[present])
            out["metrics"].update({"twin_text_score": wp["text_score"], "twin_image_score": wp["image_score"],
                                   "twin_group_score": wp["group_score"], "n_pairs": int(present.sum())})
    return out


def _add_twin_accuracy(out: dict[str, Any], tw: Any, data: TwinData, ids: np.ndarray, n_boot: int, cross) -> None:
    """`twin_acc`, `twin_margin` and the per-group twin accuracy (with `n_twin`) of the images with a twin."""
    rows = tw.rows.numpy()
    sub = {k: [v[r] for r in rows] for k, v in data.groups.items()}
    tw_out = _summarize({"twin_acc": tw.correct.numpy().astype(float)}, sub, ids[rows], n_boot, False, cross=cross)
    out["metrics"] = {"twin_acc": tw.twin_acc, "twin_margin": float(tw.margin.numpy().mean()), **out["metrics"],
                      **{k: v for k, v in tw_out["metrics"].items() if k != "twin_acc"}}
    out["groups"] = merge_groups(out["groups"], [
        {"fields": g["fields"], "metrics": {"twin_acc": g["metrics"]["twin_acc"], "n_twin": g["n"]}}
        for g in tw_out["groups"]])
    if "ci" in tw_out:
        out.setdefault("ci", {}).update(tw_out["ci"])
    if "samples" in out:  # per image (None: no twin in the split), for paired comparisons of twin accuracy
        per_item: list[float | None] = [None] * len(ids)
        for r, ok in zip(rows.tolist(), tw.correct.tolist()):
            per_item[r] = float(ok)
        out["samples"]["twin_acc"] = per_item


def score_ranking(data: RankingData, feats: torch.Tensor, embedder: Any, *, ids: np.ndarray,
                  n_boot: int, keep_samples: bool) -> dict[str, Any]:
    """precision@k against the relevance matrix and cultural diversity@k (normalised entropy of the
    cultures in the top k, as GlobalRG defines it: -(1/log m) sum p_i log p_i, m = cultures present)."""
    qfeats = embedder.embed_texts(data.query_texts).float()  # (Q, D)
    scores = (qfeats @ feats.T).numpy()  # (Q, N)
    order = np.argsort(-scores, axis=1, kind="stable")
    cultures = np.asarray(data.image_cultures, dtype=object)
    prefix = "" if data.relevance_source == "gold" else "proxy_"
    metrics: dict[str, float] = {}
    for k in (5, 10):
        top = order[:, : min(k, scores.shape[1])]
        metrics[f"{prefix}precision@{k}"] = float(np.take_along_axis(data.relevance, top, 1).mean())
        divs = []
        for q in range(len(top)):
            _, counts = np.unique(cultures[top[q]], return_counts=True)
            p = counts / counts.sum()
            divs.append(float(-(p * np.log(p)).sum() / np.log(len(counts))) if len(counts) > 1 else 0.0)
        metrics[f"diversity@{k}"] = float(np.mean(divs))
    return {"metrics": metrics, "groups": [], "n_samples": len(data.queries),
            "extra": {"relevance_source": data.relevance_source}}


SCORERS: dict[type, Callable[..., dict[str, Any]]] = {
    ClassificationData: score_classification,
    RetrievalData: score_retrieval,
    ChoiceData: score_choice,
    TwinData: score_twin,
    RankingData: score_ranking,
}

MAIN_METRIC: dict[type, str] = {
    ClassificationData: "acc1",
    RetrievalData: "mean_recall@1",
    ChoiceData: "accuracy",
    TwinData: "twin_acc",
    RankingData: "diversity@10",
}
