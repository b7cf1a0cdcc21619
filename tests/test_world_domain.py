"""The world study's second test domain (world.domain, synth.world.shift): built by the world's renderer
parts, deterministic, different from the training domain, and read by the study's report."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from world import study as W
from world.build import PRESETS, STEP_FIELDS, step_settings
from world.domain import build_domain

FLAGS = ["flag_chad", "flag_monaco"]  # + their twins (Romania, Andorra, Indonesia, ...)


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    preset = dataclasses.replace(PRESETS["smoke"], flags=FLAGS, domain_images=9, domain_probe=30)
    out = tmp_path_factory.mktemp("dom")
    build_domain(out / "a", preset, 0)
    build_domain(out / "b", preset, 0)
    return preset, out


def _flat(x: np.ndarray) -> float:
    """Share of horizontally adjacent pixel pairs with exactly equal colour (sensor noise and JPEG make
    the renderer's photos almost never flat; paint, print and the other pipeline leave flat areas)."""
    return float((np.abs(np.diff(x.astype(int), axis=1)).sum(-1) == 0).mean())


def test_domain_is_deterministic_and_complete(domain):
    preset, out = domain
    a, b = (pd.read_parquet(out / x / "twins" / "manifest.parquet") for x in ("a", "b"))
    assert list(a["sha256"]) == list(b["sha256"])  # same preset + seed: the same pixels
    pa, pb = (pd.read_parquet(out / x / "probe" / "manifest.parquet") for x in ("a", "b"))
    assert list(pa["sha256"]) == list(pb["sha256"]) and list(pa["caption"]) == list(pb["caption"])
    assert len(pa) == 30 and set(pa["split"]) == {"test"}
    assert set(a["concept_id"]) >= set(FLAGS) and (a.groupby("concept_id").size() == 9).all()
    chad = a[a["concept_id"] == "flag_chad"].iloc[0]
    assert "flag_romania" in list(chad["twin_concept_ids"])  # twin links from the catalog, within the set
    styles = {json.loads(g)["style"] for g in a["generator"]}
    assert styles == {"painted", "printed", "distant"}
    assert a["sha256"].nunique() == len(a)  # no two images alike
    # the step's cache key: its preset fields and the renderer version, never a path
    st = step_settings("domain", preset, 0, {"shift_version": 1})
    assert set(st["preset"]) == set(STEP_FIELDS["domain"]) and "/" not in json.dumps(st)


def test_domain_differs_from_the_training_renders(domain):
    from synth.world.render import WorldRenderer, generic_sample

    preset, out = domain
    twins = pd.read_parquet(out / "a" / "twins" / "manifest.parquet")
    r = WorldRenderer(difficulty=preset.difficulty)
    train = [np.asarray(r.render(c, s, preset.size, preset.size)) for s, c in enumerate(twins["concept_id"])]
    train_sha = {hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in train}
    shifted = [np.asarray(Image.open(out / "a" / "twins" / p)) for p in twins["image_path"]]
    assert not train_sha & {hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in shifted}
    ft, fs = np.array([_flat(x) for x in train]), np.array([_flat(x) for x in shifted])
    assert fs.mean() > 3 * ft.mean()
    auc = float(np.mean(ft[:, None] < fs[None, :]))  # a one-number domain classifier separates them
    assert auc > 0.85, (ft.mean(), fs.mean(), auc)
    # the probe too: generic designs drawn another way, with the renderer's caption grammar
    probe = pd.read_parquet(out / "a" / "probe" / "manifest.parquet")
    gen = [generic_sample(i, preset.size, preset.size, preset.difficulty) for i in range(30)]
    assert np.mean([_flat(np.asarray(Image.open(out / "a" / "probe" / p))) for p in probe["image_path"]]) > \
        3 * np.mean([_flat(np.asarray(im)) for im, _ in gen])
    assert all(c.startswith(("a ", "a tartan")) for c in probe["caption"])


def _rec(kind, name, seed, twin, probe, shift_twin=None, shift_probe=None):
    split = lambda tc, pr: {"twin": {"held_out_picture": {"twin_correct": tc, "pair_group": [1.0],  # noqa: E731
                                                          "concept_correct": [1.0] * 5}}, "probe": pr}
    r = {"kind": kind, "grid": "" if kind == "base" else "ingredients", "name": name, "seed": seed,
         "val": split(twin, probe), "test": split(twin, probe)}
    if shift_twin is not None:
        r["shift"] = split(shift_twin, shift_probe)
    return r


def test_report_reads_every_row_on_both_domains():
    """results_table has a `domain` column and one line per row and domain; the shifted probe difference
    is paired with the base's shifted probe; differences are reported per domain."""
    from tests.test_world_study import _split

    cfg = W.load_study_config(W.CONFIGS["quick"])
    nan = float("nan")
    probe = [1.0] * 300 + [0.0] * 700
    recs = {"base": _rec("base", "base", 0, [0, 0, 1, 1, nan], probe, [0, 0, 0, 1, nan], [1.0] * 100 + [0.0] * 900)}
    for s in (0, 1, 2):
        recs[f"cc{s}"] = _rec("finetune", "cultureclip", s, [1, 1, 1, 1, nan], probe, [1, 0, 1, 0, nan],
                              [1.0] * 50 + [0.0] * 950)
        recs[f"pl{s}"] = _rec("finetune", "plain", s, [1, 0, 1, 0, nan], probe, [1, 0, 1, 0, nan], [1.0] * 100 + [0.0] * 900)
    recs["old"] = {**_rec("finetune", "no_concept_term", 0, [1, 1, 0, 0, nan], probe)}  # an old record: no shift
    data = W.EvalData({"test": _split(), "val": _split(), "shift": _split()}, {}, {}, [], [], np.zeros(0), {})
    df, summ = W.results_table(W.rows_of(recs), data, cfg)
    assert list(df.columns[:2]) == ["domain", "row"]
    assert df.columns.is_unique and list(df.columns).count("twin_acc - base (paired)") == 1
    assert set(df[df["domain"] == "rendered"]["row"]) == {"base (web-like CLIP)", "ingredients/cultureclip",
                                                          "ingredients/plain", "ingredients/no_concept_term"}
    assert set(df[df["domain"] == "shifted"]["row"]) == {"base (web-like CLIP)", "ingredients/cultureclip",
                                                         "ingredients/plain"}  # no shift record, no line
    assert summ["shift"]["ingredients/cultureclip"]["twin_acc"][0] == pytest.approx(50.0)
    assert summ["test"]["ingredients/cultureclip"]["twin_acc"][0] == pytest.approx(100.0)
    assert summ["shift"]["ingredients/cultureclip"]["probe_diff"][0] == pytest.approx(-5.0)  # vs the base's shifted probe
    assert summ["test"]["ingredients/cultureclip"]["probe_diff"][0] == pytest.approx(0.0)
    d = W.claimed_differences(W.rows_of(recs), data, cfg, "shift")
    assert {x["domain"] for x in d} == {"shifted"}
    assert next(x for x in d if x["difference"].endswith("ingredients/plain") and x["metric"] == "twin_acc")["value"] == 0.0
    t = W.targets(W.rows_of(recs), summ["test"], data, cfg, summ["shift"])
    assert any("shifted domain" in x["target"] and "twin 50.0" in x["value"] for x in t)


def test_wise_row_reads_the_chosen_alpha_on_both_domains():
    r = _rec("finetune", "cultureclip", 0, [1, 1, 1, 1, float("nan")], [1.0], [1, 1, 1, 1, float("nan")], [1.0])
    r["wise"] = {"alpha": 0.5, "val_curve": {}, "test": {"probe": [0.0]}, "shift": {"probe": [0.5]}}
    rows = W.rows_of({"x": r})
    w = rows["ingredients/cultureclip+wise"][0]
    assert w["test"] == {"probe": [0.0]} and w["shift"] == {"probe": [0.5]} and w["val"] == r["val"]
    assert Path(W.__file__).name == "study.py"
