"""eval_suite.metrics on hand-written score matrices with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval_suite import metrics as M


# --------------------------------------------------------------------------------------------------
# twins
# --------------------------------------------------------------------------------------------------
PAIRS = np.array(
    [
        [[0.9, 0.1], [0.2, 0.8]],  # everything right
        [[0.5, 0.6], [0.4, 0.7]],  # image 0 prefers the twin text; both texts prefer their own image
        [[0.3, 0.2], [0.6, 0.1]],  # image 1 prefers text a; text a prefers image b
        [[0.5, 0.5], [0.5, 0.5]],  # all ties: wrong everywhere
    ]
)


def test_winoground_per_pair_and_means():
    out = M.twin_pair_scores(PAIRS)
    assert out["per_pair"]["text"].tolist() == [True, False, False, False]
    assert out["per_pair"]["image"].tolist() == [True, True, False, False]
    assert out["per_pair"]["group"].tolist() == [True, False, False, False]
    assert out["text_score"] == 0.25
    assert out["image_score"] == 0.5
    assert out["group_score"] == 0.25


def test_winoground_accepts_one_pair_and_torch():
    torch = pytest.importorskip("torch")
    one = M.winoground_scores(torch.tensor(PAIRS[1], dtype=torch.bfloat16))
    assert (one["text"].tolist(), one["image"].tolist(), one["group"].tolist()) == ([False], [True], [False])


def test_winoground_bad_shape():
    with pytest.raises(ValueError, match=r"\(P, 2, 2\)"):
        M.winoground_scores(np.zeros((3, 2, 3)))


# --------------------------------------------------------------------------------------------------
# classification / multiple choice
# --------------------------------------------------------------------------------------------------
LOGITS = np.array(
    [
        [0.1, 0.5, 0.3, 0.2],  # label 1: rank 0
        [0.4, 0.1, 0.3, 0.2],  # label 2: rank 1
        [0.1, 0.2, 0.3, 0.4],  # label 0: rank 3
        [0.2, 0.2, 0.1, 0.0],  # label 0: tied with class 1 -> counts as rank 1
    ]
)
LABELS = np.array([1, 2, 0, 0])


def test_topk_and_zero_shot_accuracy():
    assert M.topk_correct(LOGITS, LABELS, 1).tolist() == [True, False, False, False]
    assert M.topk_correct(LOGITS, LABELS, 2).tolist() == [True, True, False, True]
    out = M.zero_shot_accuracy(LOGITS, LABELS, ks=(1, 2, 3))
    assert (out["acc1"], out["acc2"], out["acc3"]) == (0.25, 0.75, 0.75)
    # classes present: 1 -> 1/1, 2 -> 0/1, 0 -> 0/2
    assert out["mean_per_class_recall"] == pytest.approx(1 / 3)
    assert out["correct"][2].tolist() == [True, True, False, True]


def test_constant_logits_get_no_credit():
    out = M.zero_shot_accuracy(np.zeros((5, 10)), np.arange(5), ks=(1, 5))
    assert out["acc1"] == 0.0 and out["acc5"] == 0.0


def test_zero_shot_label_errors():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        M.zero_shot_accuracy(LOGITS, [1, 2, 0, 4])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        M.zero_shot_accuracy(LOGITS, [1, 2])
    with pytest.raises(TypeError, match="integer"):
        M.zero_shot_accuracy(LOGITS, [0.5, 1, 1, 1])


def test_ensemble_class_embeddings_mean_then_renorm():
    feats = np.array(
        [
            [[1.0, 0.0], [0.0, 2.0]],  # template 0: class 0, class 1 (unnormalized)
            [[0.0, 1.0], [0.0, 1.0]],  # template 1
        ]
    )
    emb = M.ensemble_class_embeddings(feats)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(emb, [[s, s], [0.0, 1.0]], atol=1e-12)
    with pytest.raises(ValueError, match="T templates"):
        M.ensemble_class_embeddings(feats[0])


def test_multiple_choice():
    scores = np.array([[0.1, 0.9, 0.3], [0.5, 0.5, 0.1], [0.7, 0.2, 0.6]])
    answers = [1, 0, 2]  # right, tie (wrong), wrong
    assert M.multiple_choice_correct(scores, answers).tolist() == [True, False, False]
    assert M.multiple_choice_accuracy(scores, answers) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------------
def test_retrieval_recall_multiple_captions():
    t2i = [0, 0, 1, 1, 2]  # captions 0,1 -> image 0; 2,3 -> image 1; 4 -> image 2
    scores = np.array(
        [
            [0.9, 0.1, 0.8, 0.2, 0.3],  # image 0: best own caption 0.9 is first
            [0.7, 0.1, 0.5, 0.6, 0.2],  # image 1: best own 0.6, beaten by caption 0 -> rank 1
            [0.1, 0.9, 0.8, 0.7, 0.2],  # image 2: own 0.2, beaten by 3 captions -> rank 3
        ]
    )
    out = M.retrieval_recall(scores, t2i, ks=(1, 2, 4))
    assert out["correct"]["text_retrieval_recall@1"].tolist() == [True, False, False]
    assert out["text_retrieval_recall@1"] == pytest.approx(1 / 3)
    assert out["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert out["text_retrieval_recall@4"] == 1.0
    # text -> image ranks: t0 0; t1 2 (tie with image 1 counts against); t2 2; t3 1; t4 2 (tie)
    assert out["correct"]["image_retrieval_recall@2"].tolist() == [True, False, False, True, False]
    assert out["image_retrieval_recall@1"] == pytest.approx(1 / 5)
    assert out["image_retrieval_recall@2"] == pytest.approx(2 / 5)
    assert out["image_retrieval_recall@4"] == 1.0
    small_chunks = M.retrieval_recall(scores, t2i, ks=(1, 2), chunk=1)
    assert small_chunks["image_retrieval_recall@2"] == out["image_retrieval_recall@2"]
    assert small_chunks["text_retrieval_recall@2"] == out["text_retrieval_recall@2"]


def test_retrieval_errors():
    with pytest.raises(ValueError, match="without any caption"):
        M.retrieval_recall(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.retrieval_recall(np.zeros((2, 2)), [0, 2])


def test_peer_clip_benchmark_agrees_on_random_scores():
    """clip_benchmark is the correctness anchor: same numbers on the same score matrices."""
    torch = pytest.importorskip("torch")
    zsc = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
    zsr = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 12)).astype(np.float32)
    labels = rng.integers(0, 12, size=200)
    try:
        ref1, ref5 = zsc.accuracy(torch.from_numpy(logits), torch.from_numpy(labels), topk=(1, 5))
    except TypeError:  # clip_benchmark 1.6.2 calls float() on a 1-element array, which numpy>=2.4 refuses
        pred = torch.from_numpy(logits).topk(5, 1, True, True)[1].t()  # their algorithm, verbatim steps
        correct = pred.eq(torch.from_numpy(labels).view(1, -1).expand_as(pred))
        ref1, ref5 = (correct[:k].float().sum().item() / len(labels) for k in (1, 5))
    ours = M.zero_shot_accuracy(logits, labels)
    assert ours["acc1"] == pytest.approx(ref1) and ours["acc5"] == pytest.approx(ref5)

    n_img, per = 30, 5
    t2i = np.repeat(np.arange(n_img), per)
    scores = rng.normal(size=(n_img, n_img * per)).astype(np.float32)  # (images, texts)
    st = torch.from_numpy(scores.T.copy())  # clip_benchmark: (texts, images)
    pos = torch.zeros_like(st, dtype=torch.bool)
    pos[torch.arange(len(t2i)), torch.from_numpy(t2i)] = True
    ours = M.retrieval_recall(scores, t2i, ks=(1, 5, 10))
    for k in (1, 5, 10):
        ref_i = (zsr.recall_at_k(st, pos, k) > 0).float().mean().item()
        ref_t = (zsr.recall_at_k(st.T, pos.T, k) > 0).float().mean().item()
        assert ours[f"image_retrieval_recall@{k}"] == pytest.approx(ref_i)
        assert ours[f"text_retrieval_recall@{k}"] == pytest.approx(ref_t)


# --------------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------------
def test_group_metrics_worst_best_gap():
    out = M.group_metrics([1, 0, 1, 1, 0, 1], ["A", "A", "B", "B", "C", "C"])
    assert out["per_group"] == {"A": 0.5, "B": 1.0, "C": 0.5}
    assert out["counts"] == {"A": 2, "B": 2, "C": 2}
    assert (out["worst_group"], out["worst"]) == ("A", 0.5)  # A/C tie -> first by name
    assert (out["best_group"], out["best"], out["gap"]) == ("B", 1.0, 0.5)
    assert out["mean"] == pytest.approx(4 / 6)


def test_group_metrics_min_count_and_missing_labels():
    out = M.group_metrics([1, 1, 0, 0], ["A", "A", "D", None], min_count=2)
    assert out["per_group"] == {"A": 1.0, "D": 0.0, "unknown": 0.0}
    assert out["worst_group"] == "A" and out["gap"] == 0.0  # D and unknown are too small to count


def test_group_metrics_combined_fields_are_group_records():
    out = M.group_metrics(
        [1, 0, 1], {"region": ["Asia", "Asia", "Europe"], "category": ["food", "art", "food"]}
    )
    asia_art = M.Group.of(region="Asia", category="art")
    assert out["per_group"] == {
        asia_art: 0.0,
        M.Group.of(region="Asia", category="food"): 1.0,
        M.Group.of(region="Europe", category="food"): 1.0,
    }
    assert out["worst_group"] == asia_art and out["worst_group"].fields == {"region": "Asia", "category": "art"}
    assert list(out["worst_group"].fields) == ["region", "category"]  # field order as given
    with pytest.raises(ValueError, match="entries"):
        M.group_metrics([1, 0], ["A"])


def test_group_values_may_hold_any_character():
    """Separators are plain data now: the flattened names ("region=Asia|category=food") raised on these."""
    out = M.group_metrics([1, 0, 1], {"category": ["food|drink", "a=b", "food|drink"], "region": [None, "Asia", None]})
    fd = M.Group.of(category="food|drink", region=M.UNKNOWN)
    assert out["per_group"][fd] == 1.0 and out["counts"][fd] == 2
    assert M.Group.of(category="a=b", region="Asia") in out["per_group"]
    assert fd.fields == {"category": "food|drink", "region": "unknown"}
    assert fd.label == "category: food|drink · region: unknown"  # display only
    assert M.Group.of({"region": float("nan")}).fields == {"region": "unknown"}
    with pytest.raises(ValueError, match="at least one field"):
        M.Group.of()


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------
def _bernoulli(n: int, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_bootstrap_ci_contains_estimate_and_narrows():
    small = M.bootstrap_ci(_bernoulli(50, 0.7, 1), n_boot=500, seed=0)
    large = M.bootstrap_ci(_bernoulli(5000, 0.7, 1), n_boot=500, seed=0)
    for r in (small, large):
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < 0.4 * (small["ci_high"] - small["ci_low"])
    # ~ normal approximation width for n=5000: 2 * 1.96 * sqrt(.21/5000) = 0.0254
    assert large["ci_high"] - large["ci_low"] == pytest.approx(0.0254, rel=0.2)


def test_bootstrap_ci_seeded_and_chunking_invariant():
    v = _bernoulli(300, 0.4, 2)
    a = M.bootstrap_ci(v, n_boot=200, seed=7)
    b = M.bootstrap_ci(v, n_boot=200, seed=7)
    assert a == b
    c = M.bootstrap_ci(v, n_boot=200, seed=8)
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    boots_one = M._resample_stats([v], M._mean_rows, 50, seed=3)
    boots_chunked = M._resample_stats([v], M._mean_rows, 50, seed=3, max_elements=600)  # 2 rows per chunk
    np.testing.assert_allclose(boots_one, boots_chunked)


def test_bootstrap_constant_and_custom_statistic():
    r = M.bootstrap_ci(np.full(20, 0.3), n_boot=100)
    assert r["ci_low"] == pytest.approx(0.3) and r["ci_high"] == pytest.approx(0.3)
    med = M.bootstrap_ci(np.arange(11.0), statistic=lambda x: np.median(x, axis=1), n_boot=100)
    assert med["value"] == 5.0 and med["ci_low"] <= 5.0 <= med["ci_high"]
    with pytest.raises(ValueError, match="ci must be"):
        M.bootstrap_ci([1.0, 0.0], ci=95)


def test_paired_bootstrap_identical_and_dominant():
    a = _bernoulli(100, 0.6, 4)
    same = M.paired_bootstrap(a, a.copy(), n_boot=200)
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    better = M.paired_bootstrap(np.zeros(40), np.ones(40), n_boot=200)
    assert (better["diff"], better["ci_low"], better["ci_high"], better["p_value"]) == (1.0, 1.0, 1.0, 0.0)
    b = a.copy()
    b[:10] = 1 - b[:10]  # flip 10 items
    mixed = M.paired_bootstrap(a, b, n_boot=300, seed=1)
    assert mixed["diff"] == pytest.approx((b - a).mean())
    assert mixed["ci_low"] <= mixed["diff"] <= mixed["ci_high"]
    with pytest.raises(ValueError, match="same items"):
        M.paired_bootstrap(np.zeros(3), np.zeros(4))


def test_bootstrap_needs_samples_and_paired_bootstrap_reports_the_fraction_better():
    with pytest.raises(ValueError, match="at least one sample"):
        M.bootstrap_ci([])
    with pytest.raises(ValueError, match="at least one sample"):
        M.bootstrap_ci(np.float64(1.0))
    better = M.paired_bootstrap(np.full(30, 0.4), np.full(30, 0.9), n_boot=200)  # (base, tuned)
    assert better["frac_better"] == 1.0 and better["diff"] == pytest.approx(0.5)
    worse = M.paired_bootstrap(np.full(30, 0.4), np.full(30, 0.2), n_boot=200)
    assert worse["frac_better"] == 0.0
