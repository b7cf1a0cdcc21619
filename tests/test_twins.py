"""Twins as one idea (cultureclip.twins): pairs -> groups and indices, the one twin score, pair matrices."""
import numpy as np
import pytest
import torch

from cultureclip.twins import TwinIndex, concept_scores, pair_matrices, twin_groups, twin_scores, twins_by_concept


def test_a_tie_with_a_twin_is_not_correct():
    """The tie rule, pinned: own must beat the best twin strictly (a tie once counted as correct changed no
    test result)."""
    sims = torch.tensor([[0.5, 0.5, 0.1],    # tie with its twin -> wrong
                         [0.5, 0.4999, 0.0],  # just above -> right
                         [0.2, 0.2, 0.2],    # all equal -> wrong
                         [0.3, 0.7, 0.7]])   # concept 1: tie with its twin 2 -> wrong
    tw = twin_scores(sims, [0, 0, 0, 1], {0: [1], 1: [0, 2], 2: [1]})
    assert tw.correct.tolist() == [False, True, False, False] and tw.twin_acc == 0.25
    assert tw.margin.tolist() == pytest.approx([0.0, 0.0001, 0.0, 0.0], abs=1e-6)


def test_own_must_beat_every_twin_not_just_one():
    sims = torch.tensor([[0.6, 0.5, 0.7], [0.6, 0.5, 0.55]])
    tw = twin_scores(sims, [0, 0], {0: [1, 2], 1: [0], 2: [0]})
    assert tw.correct.tolist() == [False, True]
    assert tw.best_twin.tolist() == pytest.approx([0.7, 0.55]) and tw.own.tolist() == pytest.approx([0.6, 0.6])


def test_images_without_a_twin_are_left_out():
    sims = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.9], [0.2, 0.3, 0.1]], dtype=np.float32)
    tw = twin_scores(sims, np.array([0, 2, 1]), {0: [1], 1: [0]})  # concept 2 has no twin
    assert tw.rows.tolist() == [0, 2] and tw.correct.tolist() == [True, True]
    none = twin_scores(sims, [2, 2, 2], {0: [1], 1: [0]})
    assert np.isnan(none.twin_acc) and none.rows.shape == none.correct.shape == none.margin.shape == (0,)


def test_index_groups_and_pairs():
    pairs = [("b", "c"), ("a", "b"), ("x", "y")]
    index = TwinIndex.build({"y": "", "a": "", "c": "", "b": "", "x": "", "z": ""}, pairs)
    assert index.concepts == ("a", "b", "c", "x", "y", "z")
    assert index.twins_of == {0: [1], 1: [0, 2], 2: [1], 3: [4], 4: [3]}  # z has no twin: not listed
    assert index.pairs == ((1, 2), (0, 1), (3, 4))
    assert index.labels(["c", "z", "a"]).tolist() == [2, 5, 0]
    groups = twin_groups(pairs)
    assert groups["a"] == groups["b"] == groups["c"] != groups["x"] == groups["y"] and "z" not in groups
    assert twins_by_concept(pairs)["b"] == ["a", "c"]
    with pytest.raises(ValueError, match=r"not among the concepts: \['q'\]"):
        TwinIndex.build(["a", "b"], [("a", "q")])


def test_pair_matrices_average_every_image_of_each_side():
    sims = np.array([[0.9, 0.1], [0.5, 0.3], [0.2, 0.8], [0.0, 0.6], [0.4, 0.2]])
    labels = np.array([0, 0, 1, 1, 0])
    mats, present = pair_matrices(sims, labels, [(0, 1), (0, 2)])
    assert present.tolist() == [True, False]
    assert np.allclose(mats[0], [[0.6, 0.2], [0.1, 0.7]])  # 3 images of a, 2 of b: means
    assert np.isnan(mats[1]).all()


def test_concept_scores_are_images_times_the_sorted_prompt_bank():
    class Emb:
        def embed_texts(self, texts):
            return torch.tensor([[1.0, 0.0] if t == "A" else [0.0, 1.0] for t in texts])

    feats = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    sims = concept_scores(Emb(), feats, {"b": "B", "a": "A"})  # columns in sorted id order: a, b
    assert torch.allclose(sims, torch.tensor([[0.6, 0.8], [1.0, 0.0]]))
