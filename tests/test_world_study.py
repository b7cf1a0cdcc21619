"""world.study plumbing on tiny synthetic inputs (seconds; the real study is `make world-study`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cultureclip.twins import twin_groups
from world import study as W

INPUTS = W.WorldInputs("pre", "probe", "base_model", "ds")


def _configs(cfg: W.StudyConfig, grid: str) -> dict:
    from cultureclip.config import to_dict

    out = {}
    for name, v in cfg.grids[grid].variants.items():
        tc = W.train_config(cfg, v, {"lr": 3e-4, "epochs": 5}, 1, INPUTS, Path("/tmp/x"), steps_per_epoch=10,
                            dataset="plain_ds" if v.get("captions") == "plain" else None)
        out[name] = to_dict(tc)
    return out


def _diff(a: dict, b: dict, prefix: str = "") -> set[str]:
    keys = set(a) | set(b)
    out = set()
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out |= _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.add(prefix + k)
    return out


@pytest.mark.parametrize("which", ["full", "quick"])
def test_ingredient_variants_change_one_switch_each_and_match_steps(which):
    cfg = W.load_study_config(W.CONFIGS[which])
    c = _configs(cfg, "ingredients")
    cc = c["cultureclip"]
    assert cc["loss"]["name"] == "twin" and cc["data"]["twin_batching"] and cc["loss"]["w_con"] > 0
    assert cc["optim"]["max_steps"] == 50  # step-matched: 5 epochs x 10 steps
    one = {"no_twin_batching": {"data.twin_batching"}, "no_twin_image_negatives": {"loss.twin_images"},
           "no_twin_negatives": {"loss.twin_negatives"}, "no_concept_term": {"loss.w_cap", "loss.w_con"},
           "concept_term_only": {"loss.w_cap", "loss.w_con"}, "plain_captions": {"data.dataset"},
           "plain_at_cultureclip_lr": {"loss.name", "data.twin_batching"}, "plain": {"loss.name", "data.twin_batching"}}
    for name, want in one.items():
        if name in c:
            assert _diff(c[name], cc) == want, name
    for grid in cfg.grids:  # every run of every grid takes the same number of optimizer steps
        assert {v["optim"]["max_steps"] for v in _configs(cfg, grid).values()} == {50}


def test_full_grids_cover_the_issue():
    cfg = W.load_study_config(W.CONFIGS["full"])
    g = _configs(cfg, "generality")
    assert g["replay1_resampled"]["data"]["replay_resample"] and g["keep1_replay_rows"]["loss"]["keep_rows"] == "replay"
    assert g["lock_image"]["model"]["lock_tower"] == "image" and g["lock_text"]["model"]["lock_tower"] == "text"
    assert g["no_replay"]["data"]["replay_dataset"] == ""
    lora = _configs(cfg, "lora")
    assert {(v["lora"]["r"], v["optim"]["lr"]) for v in lora.values()} == {(r, lr) for r in (4, 16) for lr in (1e-5, 1e-4, 1e-3)}
    assert all(v["lora"]["enabled"] and v["lora"]["targets"] == ["q", "v"] for v in lora.values())
    assert all(len(cfg.grids[k].seeds) >= 3 for k in ("ingredients", "generality"))
    assert len(cfg.oracle["seeds"]) >= 3 and cfg.headline in cfg.held_out and cfg.phrasings["captions"] == "mean"
    assert set(cfg.tune["families"]) == {"cultureclip", "plain"}  # the baseline gets the same tuning budget


def test_config_errors_name_the_variant(tmp_path):
    import yaml

    raw = yaml.safe_load(W.CONFIGS["quick"].read_text())
    raw["grids"]["lora"]["variants"]["bad"] = {"loss": {"twin_negativs": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(W.StudyConfigError, match="variant bad"):
        W.load_study_config(tmp_path / "s.yaml")
    raw = yaml.safe_load(W.CONFIGS["quick"].read_text())
    raw["headline"] = "training_prompt"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(W.StudyConfigError, match="held_out"):
        W.load_study_config(tmp_path / "s.yaml")


def test_plain_caption_drops_context_keeps_style():
    cap = "a close-up photo of Chadian flag of Chad, vertical tricolour of indigo blue, yellow and red in soft morning light"
    assert W.plain_caption(cap, "flag of Chad") == "a close-up photo of flag of Chad"
    assert W.plain_caption("some LLM caption", "kilt") == "a photo of kilt"


def test_bootstrap_pairs_and_counts_seed_variance():
    groups = np.repeat(np.arange(20), 5)  # 20 twin groups of 5 images
    rng = np.random.default_rng(0)
    a = (rng.random((3, 100)) < 0.6).astype(float)
    p, lo, hi = W.mean_ci(a, groups, 1000)
    assert lo < p < hi and p == pytest.approx(a.mean())
    # identical rows: the paired difference is exactly 0 whatever the draw
    assert W.paired_diff(a, a, groups, 500) == (0.0, 0.0, 0.0)
    # a uniform 10-point shift of every seed is found, and pairing makes its interval tight
    b = a.copy()
    b[:, ::5] = 0.0  # one image of every group
    a2 = a.copy()
    a2[:, ::5] = 1.0
    d, lo, hi = W.paired_diff(a2, b, groups, 1000)
    assert d == pytest.approx(0.2) and lo > 0.15
    # seeds that disagree widen the interval (seed variance is in it); NaNs are not counted
    same = np.tile(a[:1], (3, 1))
    spread = np.vstack([a[0], np.clip(a[0] + 0.3 * (rng.random(100) < 0.5), 0, 1), np.zeros(100)])
    w_same = np.diff(W.mean_ci(same, groups, 2000)[1:])[0]
    w_spread = np.diff(W.mean_ci(spread, groups, 2000)[1:])[0]
    assert w_spread > 1.5 * w_same
    nan = a.copy()
    nan[:, 0] = np.nan
    assert W.mean_ci(nan, groups, 200)[0] == pytest.approx(np.nanmean(nan))


def test_reference_fraction_is_a_paired_ratio_with_an_interval():
    groups = np.repeat(np.arange(30), 4)
    rng = np.random.default_rng(2)
    ref = (rng.random((3, 120)) < 0.8).astype(float)
    assert W.paired_ratio(ref, ref, groups, 500) == (1.0, 1.0, 1.0)  # a row against itself: exactly 1
    half = ref.copy()
    half[:, ::2] = 0.0  # the row gets right only some of what the reference gets right
    r, lo, hi = W.paired_ratio(half, ref, groups, 2000)
    assert r == pytest.approx(half.mean() / ref.mean()) and lo < r < hi
    # pairing: the ratio's interval is much tighter than the ratio of two independent intervals' ends
    _, alo, ahi = W.mean_ci(half, groups, 2000)
    _, blo, bhi = W.mean_ci(ref, groups, 2000)
    assert hi - lo < 0.6 * (ahi / blo - alo / bhi)


def test_probe_difference_half_width_shrinks_with_size():
    rng = np.random.default_rng(1)
    widths = []
    for n in (600, 10000):
        base = (rng.random(n) < 0.25).astype(float)
        flip = rng.random(n) < 0.15  # discordant images
        model = np.where(flip, 1 - base, base)[None]
        d, lo, hi = W.paired_probe_diff(model, base, 2000)
        widths.append(50 * (hi - lo))  # percent half-width
    assert widths[1] < widths[0] / 3.5 and widths[1] < 1.0  # 10,000 test images: within +-1 point


def _split():
    from eval_suite.benchmarks.base import ImageRef

    ids = ["a", "a", "b", "b", "c"]
    pairs = [("a", "b")]
    comp = twin_groups(pairs)
    return W.TwinSplit([ImageRef(path="x")] * 5, ["a", "b", "c"], np.array([0, 0, 1, 1, 2]), pairs,
                       np.array([comp.get(c, -1) for c in ids]), np.array([0]))


def test_score_twin_per_image_and_pair():
    sims = np.array([[0.9, 0.1, 0.0],   # a, right
                     [0.2, 0.3, 0.0],   # a, wrong (b wins)
                     [0.1, 0.8, 0.0],   # b, right
                     [0.2, 0.7, 0.9],   # b, right vs its twin (c is no twin), concept argmax wrong
                     [0.0, 0.0, 1.0]])  # c: no twin
    rec = W.score_twin(sims, _split())
    assert rec["twin_correct"][:4] == [1.0, 0.0, 1.0, 1.0] and np.isnan(rec["twin_correct"][4])
    assert rec["pair_correct"] == [3] and rec["pair_n"] == [4]
    assert rec["concept_correct"] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert rec["pair_group"] == [1.0]


def test_score_twin_counts_a_tie_with_the_twin_as_wrong():
    """The one twin rule (cultureclip.twins.twin_scores): own concept strictly above every twin."""
    sims = np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.4, 0.4, 0.9], [0.1, 0.8, 0.0], [0.0, 0.0, 1.0]])
    rec = W.score_twin(sims, _split())
    assert rec["twin_correct"][:4] == [0.0, 1.0, 0.0, 1.0] and rec["pair_correct"] == [2] and rec["pair_n"] == [4]


def test_held_out_phrasings_are_not_training_texts(tmp_path):
    """The overlap check counts a phrasing that training used (the base's alt-text is in pretraining)."""
    import pandas as pd

    for name, caps in (("ds", {"caption": ["a close-up photo of Chadian flag of Chad, x"], "concept_prompt":
                                            ["a photo of flag of Chad, a Chadian flag"], "split": ["train"]}),
                       ("pre", {"caption": ["the flag of Chad"]})):
        (tmp_path / name).mkdir()
        pd.DataFrame(caps).to_parquet(tmp_path / name / "manifest.parquet")
    facts = {"flag_chad": {"prompt": "a photo of flag of Chad, a Chadian flag", "name": "flag of Chad",
                           "culture_name": "Chad", "kind": "flag"}}
    cfg = W.load_study_config(W.CONFIGS["quick"])
    texts = {n: {c: W.phrase(t, f) for c, f in facts.items()} for n, t in cfg.phrasings.items() if t != "mean"}
    data = W.EvalData({}, texts, {}, [], [], np.zeros(0), {})
    ov = W.phrasing_overlap(data, tmp_path / "pre", tmp_path / "ds")
    assert ov["training_prompt"]["in_finetuning_texts"] == 1 and ov["pretraining_alt_text"]["in_pretraining_texts"] == 1
    for h in cfg.held_out:
        assert ov[h] == {"concepts": 1, "in_finetuning_texts": 0, "in_pretraining_texts": 0}


def test_lr_and_epochs_chosen_on_val(tmp_path):
    cfg = W.load_study_config(W.CONFIGS["quick"])
    val = {"plain_lr0.0003_e4": 0.5, "plain_lr0.001_e4": 0.6, "cultureclip_lr0.0003_e4": 0.7,
           "cultureclip_lr0.001_e4": 0.7}
    for job in W.tuning_jobs(cfg):
        acc = val[job.name]
        tc = [1.0] * int(100 * acc) + [0.0] * (100 - int(100 * acc))
        rec = {"kind": "tune", "val": {"twin": {cfg.headline: {"twin_correct": tc}}},
               "test": {"twin": {cfg.headline: {"twin_correct": [1.0] * 100}}}}  # test would say otherwise
        p = W.record_path(tmp_path, job)
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(rec))
    ch = W.choose_settings(tmp_path, cfg)
    assert (ch["plain"]["lr"], ch["cultureclip"]["lr"]) == (1e-3, 3e-4)  # a tie goes to the lower lr
    jobs = W.grid_jobs(cfg, ch)
    plain = next(j for j in jobs if j.name == "plain")
    assert plain.choice == (1e-3, 4) and plain.wise
    assert next(j for j in jobs if j.name == "lora_r4_lr1e-3").choice[0] == 1e-3  # a variant's own lr wins
    # plain's lr is the sweep's largest: the report says the sweep may be too narrow there (epochs: one value)
    assert W.choices_at_edge(ch, cfg) == {"plain": ["lr"]}
    # --widen: one step beyond that edge (lr x 3), on val, named like the sweep's runs; no choice changes
    wide = W.widening_jobs(cfg, ch)
    assert [(j.name, j.choice, j.kind) for j in wide] == [("plain_lr0.003_e4", (3e-3, 4), "tune")]
    assert W.sweep_edge_report(tmp_path, cfg, ch)["plain"]["widened_val_twin_acc"] == {}
    rec = {"kind": "tune", "val": {"twin": {cfg.headline: {"twin_correct": [1.0] * 80 + [0.0] * 20}}}}
    W.record_path(tmp_path, wide[0]).parent.mkdir(parents=True)
    W.record_path(tmp_path, wide[0]).write_text(json.dumps(rec))
    edge = W.sweep_edge_report(tmp_path, cfg, ch)["plain"]
    assert edge == {"at_largest": ["lr"], "chosen_val_twin_acc": 60.0, "widened_val_twin_acc": {"plain_lr0.003_e4": 80.0}}
    assert W.choose_settings(tmp_path, cfg)["plain"]["lr"] == 1e-3  # the widening run is no candidate


def test_plain_caption_dataset_is_a_valid_manifest(tmp_path):
    """Only train captions change; the images live inside the new folder (a manifest may not point out)."""
    from cultureclip.data import read_manifest
    from tests.cultwin_fixture import make_tiny_cultwin

    ds = make_tiny_cultwin(tmp_path / "ds", per_concept=4)
    folder = W.plain_caption_dataset(W.WorldInputs("pre", "probe", "base", str(ds)), tmp_path / "study")
    old, new = read_manifest(ds).frame, read_manifest(folder).frame
    train = old["split"] == "train"
    assert (new.loc[~train, "caption"] == old.loc[~train, "caption"]).all()
    assert list(new.loc[train, "caption"]) == [f"a photo of {n}" for n in old.loc[train, "concept_name"]]


def _rec(kind, grid, name, seed, twin, probe_val, probe_test, group=1.0):
    split = lambda tc, pr: {"twin": {"held_out_picture": {"twin_correct": tc, "pair_group": [group],  # noqa: E731
                                                          "concept_correct": [1.0] * 5}}, "probe": pr}
    return {"kind": kind, "grid": grid, "name": name, "seed": seed, "val": split(twin, probe_val),
            "test": split(twin, probe_test)}


def test_constrained_target_is_chosen_on_val_and_compared_paired():
    """The best row is the one whose VAL probe shows no significant drop, even when another row has a
    higher twin accuracy; its comparison with plain fine-tuning is a paired difference over seeds."""
    cfg = W.load_study_config(W.CONFIGS["quick"])
    cfg.grids["generality"].variants["forgets"] = {}
    ok_probe = [1.0] * 300 + [0.0] * 700
    bad_probe = [1.0] * 200 + [0.0] * 800  # a 10-point drop on 1,000 probe images: significant
    nan = float("nan")
    recs = {"base": _rec("base", "", "base", 0, [0, 0, 1, 1, nan], ok_probe, ok_probe)}
    for s in (0, 1, 2):
        recs[f"cc{s}"] = _rec("finetune", "ingredients", "cultureclip", s, [1, 1, 1, 1, nan], ok_probe, ok_probe)
        recs[f"pl{s}"] = _rec("finetune", "ingredients", "plain", s, [1, 0, 1, 0, nan], ok_probe, ok_probe)
        recs[f"fg{s}"] = _rec("finetune", "generality", "forgets", s, [1, 1, 1, 1, nan], bad_probe, bad_probe)
    recs["or"] = {"kind": "oracle", "grid": "oracle", "name": "oracle", "seed": 0, "settings": {"epochs": 3},
                  "val": {"twin": {"head": {"twin_correct": [1, 1, 1, 1, nan], "pair_group": [1.0], "concept_correct": [1.0] * 5}}},
                  "test": {"twin": {"head": {"twin_correct": [1, 1, 1, 1, nan], "pair_group": [1.0], "concept_correct": [1.0] * 5}}}}
    data = W.EvalData({"test": _split(), "val": _split()}, {}, {}, [], [], np.zeros(0), {})
    rows = W.rows_of(recs)
    summaries = {k: W.row_summary(v, data, cfg) for k, v in rows.items()}
    for k, v in rows.items():
        if k not in ("base", "oracle"):
            pr = np.array([r["test"]["probe"] for r in v], dtype=float)
            summaries[k]["probe_diff"] = tuple(100 * x for x in W.paired_probe_diff(pr, np.array(ok_probe), 500))
    t = W.targets(rows, summaries, data, cfg)
    assert t[0]["value"].startswith("ingredients/cultureclip:") and t[0]["met"]  # not generality/forgets
    assert "ingredients/cultureclip - ingredients/plain: 50.0" in t[1]["value"]
    assert t[2]["value"] == "100.0 [100.0, 100.0]" and t[2]["met"]  # fraction of the reference, paired interval
    # the constrained rows against the base (one model, reused for every seed), paired over twin groups
    assert t[3]["value"] == "ingredients/cultureclip - base: 50.0 [50.0, 50.0]" and t[3]["met"]
    assert t[4]["value"] == "ingredients/plain - base: 0.0 [0.0, 0.0]" and not t[4]["met"]
    cfg.differences = [["ingredients/plain", "generality/forgets"], ["ingredients/plain", "no/such_row"]]
    diffs = {(d["difference"], d["metric"]): d for d in W.claimed_differences(rows, data, cfg)}
    assert diffs[("ingredients/plain - generality/forgets", "twin_acc")]["value"] == -50.0
    # the general probe is compared paired too (over its images and the seeds): 30% against 20% right
    p = diffs[("ingredients/plain - generality/forgets", "probe_acc")]
    assert p["value"] == 10.0 and p["lo"] > 5 and p["hi"] < 15 and p["claimable"]
    assert not any("no/such_row" in k[0] for k in diffs)  # a pair without records is skipped
    d = diffs[("ingredients/cultureclip - ingredients/plain", "twin_acc")]
    assert d["seeds"] == 3 and d["value"] == 50.0 and (d["lo"], d["hi"]) == (50.0, 50.0) and d["claimable"]
    # (one twin group and identical seeds: every draw is the same; images without a twin are no cluster)


def test_cli_hands_the_build_absolute_folders(tmp_path, monkeypatch):
    """world.build stores a step's result relative to the world only when given an absolute folder: the
    study's CLI makes a relative --out / --world absolute, so a rerun finds every cached step."""
    seen = {}

    def fake_run_study(out, cfg, world_dir, *args, **kwargs):
        seen.update(out=out, world=world_dir)
        raise RuntimeError("stop here")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(W, "run_study", fake_run_study)
    assert W.main(["--quick", "--out", "rel/study"]) == 2
    assert seen["out"] == tmp_path / "rel" / "study" and seen["world"] == tmp_path / "rel" / "study" / "world"
    assert W.main(["--quick", "--out", "rel/study", "--world", "w"]) == 2 and seen["world"] == tmp_path / "w"


def test_report_only_keeps_the_measured_wall_time(tmp_path, monkeypatch):
    """--report-only rebuilds the tables from finished runs; the wall time measured by the run that made
    them stays in summary.json (a rebuilt report takes seconds: it is no measurement of the study)."""
    out = tmp_path / "study"
    out.mkdir()
    (out / "inputs.json").write_text(json.dumps({k: "" for k in W.WorldInputs.__dataclass_fields__}))
    (out / "summary.json").write_text(json.dumps({"wall_seconds": 5178.3, "targets": []}))

    def fake_report(o, inputs, cfg, wall_seconds=None):
        summary = {"targets": [], "rebuilt": True, "wall_seconds": wall_seconds}
        for name in ("results.md", "diffs.md"):
            (o / name).write_text("|\n")
        (o / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(W, "build_report", fake_report)
    assert W.main(["--quick", "--report-only", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rebuilt"] and summary["wall_seconds"] == 5178.3


def test_a_run_is_skipped_only_when_its_marker_matches_its_settings(tmp_path):
    """A study run is keyed by what made it (the job, the study settings, the inputs' content), not by its name:
    before, any record.json of that name was reused, even one made with another lr or recipe."""
    import dataclasses
    import json

    from cultureclip.steps import write_marker

    cfg = W.load_study_config(W.CONFIGS["quick"])
    job = W.Job("finetune", "ingredients", "plain", 0, (("loss", '"clip"'),), (1e-3, 4))
    inputs_fp = {"pretrain": "a", "probe": "b", "dataset": "c", "domain": "", "base": "d"}
    fp = W.job_fingerprint(job, cfg, inputs_fp)
    assert fp == W.job_fingerprint(job, cfg, dict(inputs_fp))  # stable
    other_lr = dataclasses.replace(job, choice=(3e-4, 4))
    other_recipe = dataclasses.replace(cfg, recipe={**cfg.recipe, "optim": {**cfg.recipe["optim"], "warmup_steps": 9}})
    assert len({fp, W.job_fingerprint(other_lr, cfg, inputs_fp), W.job_fingerprint(job, other_recipe, inputs_fp),
                W.job_fingerprint(job, cfg, {**inputs_fp, "dataset": "changed"})}) == 4
    rec = W.record_path(tmp_path, job)
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"kind": "finetune"}))
    assert not W.job_done(tmp_path, job, fp)  # a record without its marker (or an old study's) is rerun
    write_marker(rec.parent / W.MARKER, fp, {"record": rec.name})
    assert W.job_done(tmp_path, job, fp)
    assert not W.job_done(tmp_path, other_lr, W.job_fingerprint(other_lr, cfg, inputs_fp))
