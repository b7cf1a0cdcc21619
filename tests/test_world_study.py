"""world.study plumbing on tiny synthetic inputs (seconds; the real study is `make world-study`)."""
from __future__ import annotations

import numpy as np
import pytest

from cultureclip.twins import twin_groups
from world import study as W


def test_variants_change_one_switch_at_a_time():
    inputs = W.WorldInputs("pre", "attr", "base_model", "ds")
    cfg = {n: W.train_config(v, 1, inputs, W.Path("/tmp/x"), "full") for n, v in W.VARIANTS.items()}
    plain, batching, neg, cc = (cfg[n] for n in W.MAIN)
    assert plain.loss.name == "clip" and not plain.data.twin_batching
    assert batching.loss.name == "clip" and batching.data.twin_batching  # batching alone
    assert neg.loss.name == "twin" and neg.loss.twin_negatives and neg.loss.w_con == 0  # + twin negatives
    assert cc.loss.name == "twin" and cc.loss.w_con == 0.3 and cc.loss.concept_direction == "image_to_prompt"
    assert cfg["symmetric"].loss.concept_direction == "symmetric"
    r4 = cfg["lora_r4"]
    assert r4.lora.enabled and (r4.lora.r, r4.lora.alpha, r4.lora.targets) == (4, 16.0, ["q", "v"])
    assert not cc.lora.enabled and cc.seed == 1 and cc.model.spec == "base_model"
    assert cfg["replay0"].data.replay_dataset == "" and cfg["replay1"].data.replay_ratio == 1.0
    assert cfg["keep1"].loss.w_keep == 1.0


def test_plan_runs_main_seed_zero_first_and_oracle_early():
    plan = W.full_plan()
    runs = plan.runs()
    assert runs[:4] == [(n, 0) for n in W.MAIN]
    assert sum(1 for n, _ in runs if n == "cultureclip") == 3 and len(set(runs)) == len(runs)
    jobs = W.jobs_for(plan, W.Path("/tmp/o"), W.WorldInputs("a", "b", "c", "d"))
    kinds = [j.kind for j in jobs]
    assert kinds[0] == "base" and kinds[5] == kinds[6] == "oracle"
    wise = [j for j in jobs if j.wise_alphas]
    assert {j.variant for j in wise} == set(plan.wise_for) and all(j.seed == 0 for j in wise)


def test_twin_groups_and_cluster_bootstrap():
    comp = twin_groups([("a", "b"), ("b", "c"), ("x", "y")])
    assert comp["a"] == comp["b"] == comp["c"] != comp["x"] == comp["y"]
    v = np.array([1, 1, 1, 0, 0, 0, np.nan], dtype=float)
    p, lo, hi = W.cluster_bootstrap(v, np.array([0, 0, 0, 1, 1, 1, 2]), n_boot=500)
    assert p == 0.5 and lo == 0.0 and hi == 1.0  # two clusters: every resample is all-0, all-1 or half
    p, lo, hi = W.cluster_bootstrap(np.ones(20), np.arange(20))
    assert p == lo == hi == 1.0


def _eval_data():
    from eval_suite.benchmarks.base import TwinData

    ids = ["a", "a", "b", "b", "c"]
    twin = TwinData(images=[None] * 5, concept_ids=ids, concept_texts={"a": "A", "b": "B", "c": "C"}, pairs=[("a", "b")])
    comp = twin_groups(twin.pairs)
    return W.EvalData(twin, None, np.array([comp.get(c, -1) for c in ids]), np.array([0]))


def test_score_twin_per_image_and_pair():
    data = _eval_data()
    sims = np.array([[0.9, 0.1, 0.0],   # a, right
                     [0.2, 0.3, 0.0],   # a, wrong (b wins)
                     [0.1, 0.8, 0.0],   # b, right
                     [0.2, 0.7, 0.9],   # b, right vs its twin (c is no twin), concept argmax wrong
                     [0.0, 0.0, 1.0]])  # c: no twin
    rec = W.score_twin(sims, data)
    assert rec["twin_correct"][:4] == [1.0, 0.0, 1.0, 1.0] and np.isnan(rec["twin_correct"][4])
    assert rec["pair_correct"] == [3] and rec["pair_n"] == [4]
    assert rec["concept_correct"] == [1.0, 0.0, 1.0, 0.0, 1.0]
    # mean matrix: images of a score A 0.55 > B 0.2; images of b: B 0.75 > A 0.15 -> text & image right
    assert rec["pair_group"] == [1.0]
    s = W.summary_of(rec)
    assert s["twin_acc"] == 75.0 and s["twin_group_score"] == 100.0


def test_aggregate_seed_means_and_frontier():
    data = _eval_data()
    recs = [{"twin_correct": [1, 0, 1, 1, np.nan], "pair_group": [1.0], "concept_correct": [1, 0, 1, 0, 1],
             "attr_correct": [1, 0], "pair_correct": [3], "pair_n": [4]},
            {"twin_correct": [1, 1, 1, 1, np.nan], "pair_group": [0.0], "concept_correct": [1, 1, 1, 1, 1],
             "attr_correct": [1, 1], "pair_correct": [4], "pair_n": [4]}]
    row = W.aggregate(recs, data.groups, data.pair_groups, n_boot=200)
    assert row["seeds"] == 2 and row["twin_acc"] == pytest.approx(87.5) and row["twin_group_score"] == 50.0
    assert row["attr_acc"] == 75.0 and row["pair_correct"] == [7] and row["twin_acc_per_seed"] == "75.0 / 100.0"
    pts = [{"name": n, "attr_acc": a, "twin_acc": t} for n, a, t in
           [("base", 30, 40), ("x", 20, 70), ("dominated", 19, 60), ("y", 25, 65), ("z", 10, 90)]]
    assert [p["name"] for p in W.frontier(pts)] == ["z", "x", "y", "base"]
    fig = W.pareto_figure([{**p, "family": "base" if p["name"] == "base" else "twin-aware", "label": p["name"],
                            "kind": "variant"} for p in pts] + [{"name": "cultureclip", "family": "twin-aware",
                                                                 "label": "cc", "kind": "variant", "attr_acc": 21,
                                                                 "twin_acc": 69}])
    assert any(t.name == "CultureCLIP (README)" for t in fig.data)


def test_targets_report_gaps():
    rows = {"base": {"attr_acc": 30.0, "twin_acc": 40.0}, "oracle": {"twin_acc": 80.0},
            "cultureclip": {"twin_acc": 60.0, "attr_acc": 25.0, "twin_group_score": 50.0,
                            "twin_group_score_lo": 45.0, "twin_group_score_hi": 55.0},
            "plain": {"twin_group_score": 30.0, "twin_group_score_lo": 20.0, "twin_group_score_hi": 46.0}}
    t = {d["target"].split(" ")[0] + d["target"].split(" ")[-1]: d for d in W.targets(rows)}
    frac = next(d for d in W.targets(rows) if "oracle" in d["target"])
    assert frac["value"] == 75.0 and not frac["met"] and frac["gap"] == 15.0
    drop = next(d for d in W.targets(rows) if "within 1 point" in d["target"])
    assert not drop["met"] and drop["gap"] == 4.0
    sep = next(d for d in W.targets(rows) if "'plain'" in d["target"])
    assert not sep["met"] and sep["gap"] == 1.0  # 46 > 45: intervals overlap by one point
    assert t  # every target has a row


def test_lora_vs_full_at_equal_twin_accuracy():
    base, tuned = {"twin_acc": 40.0, "attr_acc": 30.0}, {"twin_acc": 80.0, "attr_acc": 20.0}
    wise = {0.5: {"twin_acc": 70.0, "attr_acc": 28.0}}
    assert W.full_ft_attr_at(55.0, base, tuned, wise) == pytest.approx(29.0)  # halfway base -> alpha 0.5
    assert W.full_ft_attr_at(75.0, base, tuned, wise) == pytest.approx(24.0)
    assert W.full_ft_attr_at(90.0, base, tuned, wise) is None
    rows = {"base": base, "cultureclip": {**tuned, "twin_group_score": 1.0, "twin_group_score_lo": 0.0,
                                          "twin_group_score_hi": 2.0},
            "lora_r4": {"twin_acc": 55.0, "attr_acc": 29.5}}
    t = next(d for d in W.targets(rows, wise) if "LoRA" in d["target"])
    assert t["met"] and t["gap"] == -0.5


def test_best_twin_within_the_attribute_floor():
    path = W.wise_path({"twin_acc": 40.0, "attr_acc": 30.0}, {"twin_acc": 80.0, "attr_acc": 20.0},
                       {0.5: {"twin_acc": 70.0, "attr_acc": 28.0}})
    alpha, twin = W.best_twin_within(29.0, path)  # floor crossed between alpha 0 and 0.5
    assert alpha == pytest.approx(0.25) and twin == pytest.approx(55.0)
    assert W.best_twin_within(31.0, path) is None
    assert W.best_twin_within(10.0, path) == (1.0, 80.0)


def test_world_build_trains_through_typed_configs():
    """The full loop builds each fine-tune's TrainConfig as data (no key=value strings); every value has
    the field's type, so the config (and its hash, which keys resume and caches) equals a YAML-loaded one."""
    from pathlib import Path

    from cultureclip.config import ConfigError, config_hash, from_dict, to_dict
    from cultureclip.train import TrainConfig
    from world import build as B

    preset = B.PRESETS["smoke"]
    for name in B.FINETUNES:
        cfg = B.train_config(B.finetune_settings(name, Path("base"), Path("ds"), Path("run"), preset, 1, Path("rep")), False)
        again = from_dict(TrainConfig, to_dict(cfg))
        assert repr(again) == repr(cfg) and config_hash(again) == config_hash(cfg), name
    lora = B.train_config(B.finetune_settings("lora", Path("b"), Path("d"), Path("r"), preset, 0), False)
    assert lora.lora.enabled and lora.optim.lr == preset.lora_lr and lora.data.replay_dataset == ""
    with pytest.raises(ConfigError, match="cosin"):
        B.train_config({"optim": {"schedule": "cosin"}}, False)
