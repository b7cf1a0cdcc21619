"""Results JSON schema, tables and figures on the fixture results in tests/fixtures/results.

Fixture contents (per-item values chosen by hand, see the ``samples`` in each file):
- cultwin (twin_choice, main twin_acc, 8 images; region x category groups)
  base ViT-B-32@openai [1,0,0,0,1,1,0,1] = 0.5; tuned ..._07_03 [1,1,1,0,1,1,1,1] = 0.875;
  ..._05_05 [1,1,0,0,1,1,1,1] = 0.75. Regions Asia x4, Europe x2, Africa x2.
- geode (zero-shot, main acc1, 6 images, regions Africa/Americas/Asia x2):
  base acc1 0.5, acc5 5/6; 07_03 acc1 5/6, acc5 1; 05_05 acc1 5/6, acc5 1.
- flickr30k (retrieval, no per-item data): base and 07_03 only.
- cifar10 written by clip_benchmark (ViT-B-32 / openai), acc1 0.8983.
07_03 carries model_config loss weights; 05_05 has none: its weights are read from its tag only when
asked to (``pattern=T.AUTHOR_TAG_PATTERN``), never by default.
The fixture files are in results schema 1 (groups keyed by "region=Asia|category=food" names, CIs in
``group_ci``), as files written before schema 2 are on users' disks: every test here reads them through the
load-time upgrade, and ``test_old_and_new_schema_give_the_same_tables`` checks both schemas agree.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval_suite import figures as F
from eval_suite import results as R
from eval_suite import tables as T

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = "ViT-B-32@openai"
TUNED = "lukahh--cultureclip_lora_0315_100k_32_07_03"
T55 = "lukahh--cultureclip_lora_0315_100k_32_05_05"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return T.load_frame(FIXTURES)


def _value(frame, model, benchmark, metric, group=None):
    """The one row of (model, benchmark, metric) for the overall numbers or a group given as {field: value}."""
    sel = frame[
        (frame.model_tag == model) & (frame.benchmark == benchmark) & (frame.metric == metric)
        & T.group_mask(frame, group)
    ]
    assert len(sel) == 1, (model, benchmark, metric, group, len(sel))
    return sel.iloc[0]


# --------------------------------------------------------------------------------------------------
# results JSON
# --------------------------------------------------------------------------------------------------
def _minimal(**over):
    kw = dict(benchmark="geode", task="zeroshot_classification", model="hf:org/model", metrics={"acc1": 0.5},
              n_samples=4, timestamp="2025-01-01T00:00:00+00:00", versions={"numpy": "2"})
    kw.update(over)
    return R.make_result(**kw)


def test_model_tag_and_filename():
    assert R.model_tag("hf:lukahh/cultureclip_lora_0315_100k_32_07_03") == TUNED
    assert R.model_tag("open_clip:ViT-B-32@openai") == BASE
    assert R.model_tag("open_clip:hf-hub:org/name") == "org--name"
    assert R.model_tag("/tmp/runs/exp 1/final") == "exp_1--final"
    assert R.result_filename("geode", BASE) == "geode__ViT-B-32@openai.json"


def test_write_read_roundtrip_atomic(tmp_path):
    res = _minimal(
        metrics={"acc1": 0.5, "acc5": float("nan")}, ci={"acc1": [0.25, 0.75]}, skipped={"unreadable_image": 2}
    )
    assert res["metrics"]["acc5"] is None  # NaN is stored as null (strict JSON)
    path = R.write_result(tmp_path, res)  # a folder -> <benchmark>__<tag>.json inside it
    assert path.name == "geode__org--model.json"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    json.loads(path.read_text())  # strict JSON
    back = R.read_results(tmp_path)
    assert back == [res]
    frame = T.frame_from_results(back)
    assert math.isnan(_value(frame, "org--model", "geode", "acc5").value)
    assert _value(frame, "org--model", "geode", "acc1").ci_low == 0.25


def test_config_hash_depends_on_eval_config_only():
    a = _minimal(eval_config={"templates": 80, "split": "test"})
    b = _minimal(eval_config={"split": "test", "templates": 80}, timestamp="2026-01-01T00:00:00+00:00")
    c = _minimal(eval_config={"split": "test", "templates": 1})
    assert a["config_hash"] == b["config_hash"] != c["config_hash"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("task"), "missing required keys"),
        (lambda r: r.update(typo=1), "unknown keys"),
        (lambda r: r["metrics"].update(acc1="high"), "must be a number"),
        (lambda r: r.update(ci={"acc1": [0.9, 0.1]}), "low <= high"),
        (lambda r: r.update(ci={"acc9": [0.1, 0.2]}), "has no value"),
        (lambda r: r.update(main_metric="acc9"), "main_metric"),
        (lambda r: r.update(n_samples=-1), "n_samples"),
        (lambda r: r.update(timestamp="yesterday"), "ISO 8601"),
        (lambda r: r.update(samples={"ids": ["a", "b"], "acc1": [1]}), "equal length"),
        (lambda r: r.update(groups={"region=Asia": {"acc1": 0.5}}), "schema-1 form"),
        (lambda r: r.update(groups=[{"metrics": {"acc1": 0.5}}]), "'fields' and 'metrics'"),
        (lambda r: r.update(groups=[{"fields": {}, "metrics": {}}]), "non-empty object"),
        (lambda r: r.update(groups=[{"fields": {"region": 1}, "metrics": {}}]), "string value"),
        (lambda r: r.update(groups=[{"fields": {"a": "x", "b": "y"}, "metrics": {}},
                                    {"fields": {"b": "y", "a": "x"}, "metrics": {}}]), "same fields"),
        (lambda r: r.update(groups=[{"fields": {"a": "x"}, "metrics": {"acc1": 1}, "n": -2}]), "non-negative"),
        (lambda r: r.update(groups=[{"fields": {"a": "x"}, "metrics": {"acc1": 1}, "ci": {"acc5": [0, 1]}}]),
         "has no value"),
        (lambda r: r.update(groups=[{"fields": {"a": "x"}, "metrics": {}, "size": 3}]), "unknown keys"),
        (lambda r: r.update(group_ci={}), "unknown keys"),
    ],
)
def test_validation_errors_name_the_problem(change, message):
    res = _minimal()
    change(res)
    with pytest.raises(R.ResultError, match=message):
        R.validate_result(res)


def test_read_results_bad_files(tmp_path):
    R.write_result(tmp_path, _minimal())
    (tmp_path / "broken__x.json").write_text("{not json")
    with pytest.raises(R.ResultError, match="broken__x.json: not valid JSON"):
        R.read_results(tmp_path)
    assert len(R.read_results(tmp_path, strict=False)) == 1
    with pytest.raises(FileNotFoundError, match="eval_suite.run"):
        R.read_results(tmp_path / "missing")


def test_summarize_samples_groups_and_ci():
    s = R.summarize_samples(
        {"acc1": [1, 0, 1, 1]}, {"region": ["Asia", "Asia", "Europe", None]}, ids=["a", "b", "c", "d"], n_boot=100
    )
    assert s["metrics"]["acc1"] == 0.75
    assert [g["fields"] for g in s["groups"]] == [{"region": "Asia"}, {"region": "Europe"}, {"region": "unknown"}]
    asia = s["groups"][0]
    assert (asia["n"], asia["metrics"]) == (2, {"acc1": 0.5}) and asia["ci"]["acc1"][0] <= 0.5
    assert s["groups"][2]["metrics"] == {"acc1": 1.0} and s["groups"][2]["n"] == 1
    assert s["metrics"]["acc1_worst_region"] == 0.5 and s["metrics"]["acc1_gap_region"] == 0.5
    lo, hi = s["ci"]["acc1"]
    assert lo <= 0.75 <= hi
    assert s["samples"]["region"] == ["Asia", "Asia", "Europe", None]
    with pytest.raises(R.ResultError, match="not in labels"):
        R.summarize_samples({"acc1": [1]}, {"region": ["A"]}, fields=["income"])


OLD_RESULT = """{"schema_version": 1, "benchmark": "cultwin", "task": "twin_choice", "model": "hf:org/m",
 "checkpoint_sha": null, "metrics": {"twin_acc": 0.5}, "n_samples": 4, "config_hash": "abc",
 "timestamp": "2025-01-01T00:00:00+00:00", "versions": {},
 "groups": {"region=Asia": {"twin_acc": 0.25, "n": 3}, "category=food": {"twin_acc": 1.0, "n": 1},
            "region=Asia|category=food": {"twin_acc": 1.0, "n": 1}, "elsewhere": {"twin_acc": 0.0}},
 "group_ci": {"region=Asia": {"twin_acc": [0.0, 0.75]}}}"""
NEW_RESULT = """{"schema_version": 2, "benchmark": "cultwin", "task": "twin_choice", "model": "hf:org/m",
 "checkpoint_sha": null, "metrics": {"twin_acc": 0.5}, "n_samples": 4, "config_hash": "abc",
 "timestamp": "2025-01-01T00:00:00+00:00", "versions": {},
 "groups": [{"fields": {"region": "Asia"}, "n": 3, "metrics": {"twin_acc": 0.25}, "ci": {"twin_acc": [0.0, 0.75]}},
            {"fields": {"category": "food"}, "n": 1, "metrics": {"twin_acc": 1.0}},
            {"fields": {"region": "Asia", "category": "food"}, "n": 1, "metrics": {"twin_acc": 1.0}},
            {"fields": {"label": "elsewhere"}, "n": null, "metrics": {"twin_acc": 0.0}}]}"""


def test_old_schema_is_upgraded_once_at_load(tmp_path):
    (tmp_path / "old").mkdir(), (tmp_path / "new").mkdir()
    (tmp_path / "old" / "cultwin__m.json").write_text(OLD_RESULT)
    (tmp_path / "new" / "cultwin__m.json").write_text(NEW_RESULT)
    old, new = R.read_result(tmp_path / "old" / "cultwin__m.json"), R.read_result(tmp_path / "new" / "cultwin__m.json")
    assert old == new and old["schema_version"] == R.SCHEMA_VERSION == 2 and "group_ci" not in old
    pd.testing.assert_frame_equal(T.load_frame(tmp_path / "old"), T.load_frame(tmp_path / "new"))
    frame = T.load_frame(tmp_path / "old")
    assert T.group_fields(frame) == ["region", "category", "label"]  # a bare old name is a "label" field
    cell = _value(frame, "hf:org/m", "cultwin", "twin_acc", {"region": "Asia", "category": "food"})
    assert (cell.value, cell.n) == (1.0, 1)
    asia = _value(frame, "hf:org/m", "cultwin", "twin_acc", {"region": "Asia"})
    assert (asia.ci_low, asia.ci_high) == (0.0, 0.75)
    assert T.frame_from_results([json.loads(OLD_RESULT)]).equals(T.frame_from_results([json.loads(NEW_RESULT)]))
    with pytest.raises(R.ResultError, match="schema-1 form"):
        R.validate_result(json.loads(OLD_RESULT))  # only the readers convert; a writer must use records
    with pytest.raises(R.ResultError, match="group records"):
        _minimal(groups={"region=Asia": {"acc1": 0.5}})
    with pytest.raises(R.ResultError, match="needs 'fields' and 'metrics'"):
        _minimal(groups=[{"fields": {"region": "Asia"}}])


def test_merge_and_find_group_records():
    a = [R.group_record({"region": "Asia"}, {"acc1": 0.5}, n=4, ci={"acc1": [0.2, 0.8]})]
    b = [{"fields": {"region": "Asia"}, "metrics": {"twin_acc": 1.0}, "n": 2},
         {"fields": {"region": "Europe", "category": "food|drink"}, "metrics": {"twin_acc": 0.0}}]
    merged = R.merge_groups(a, b)
    assert merged[0] == {"fields": {"region": "Asia"}, "n": 4, "metrics": {"acc1": 0.5, "twin_acc": 1.0},
                         "ci": {"acc1": [0.2, 0.8]}}
    assert a[0]["metrics"] == {"acc1": 0.5}  # inputs are not mutated
    assert R.find_group(merged, category="food|drink", region="Europe")["n"] is None
    assert R.find_group(merged, region="Europe") is None  # exactly these fields


def test_old_and_new_schema_give_the_same_tables(tmp_path):
    """The schema-1 fixture files, and the same results written in schema 2, give identical tables."""
    new_dir = tmp_path / "new"
    for path in sorted(FIXTURES.glob("*.json")):
        written = R.write_result(new_dir / path.name, R.read_result(path))
        data = json.loads(written.read_text())
        assert data["schema_version"] == 2 and isinstance(data["groups"], list) and "group_ci" not in data
        assert all("=" not in k for g in data["groups"] for k in g["fields"])
    pd.testing.assert_frame_equal(T.load_frame(FIXTURES), T.load_frame(new_dir))
    outs = {}
    for name, src in (("old", FIXTURES), ("new", new_dir)):
        T.main([str(src), "--out", str(tmp_path / f"tables_{name}"), "--base", BASE, "--tuned", TUNED,
                "--n-boot", "50", "--ablation-pattern", T.AUTHOR_TAG_PATTERN])
        outs[name] = {p.name: p.read_text() for p in sorted((tmp_path / f"tables_{name}").iterdir())}
    assert len(outs["old"]) > 10 and outs["old"] == outs["new"]
    heat = [F.delta_heatmap(T.load_frame(d), BASE, TUNED).data[0] for d in (FIXTURES, new_dir)]
    assert list(heat[0].x) == list(heat[1].x) and np.array_equal(np.asarray(heat[0].z, float), np.asarray(heat[1].z, float))


def test_group_values_with_separators_end_to_end(tmp_path):
    """A category "food|drink" (and a region "North=South") goes results -> table -> heatmap unchanged.

    With groups flattened to "region=..|category=.." names, summarize_samples raised on these values."""
    labels = {"region": ["North=South", "North=South", "West", "West", "West", "North=South"],
              "category": ["food|drink", "art", "food|drink", "art", "food|drink", "food|drink"]}
    ids = ["a", "b", "c", "d", "e", "f"]
    for tag, correct in (("base", [0, 1, 0, 1, 1, 0]), ("tuned", [1, 1, 1, 1, 1, 0])):
        s = R.summarize_samples({"acc1": correct}, labels, cross=[("region", "category")], ids=ids, n_boot=20)
        R.write_result(tmp_path, _minimal(benchmark="cultwin", model=f"hf:org/{tag}", tag=tag, **s))
    frame = T.load_frame(tmp_path)
    cell = _value(frame, "tuned", "cultwin", "acc1", {"region": "North=South", "category": "food|drink"})
    assert (cell.value, cell.n) == (0.5, 2) and cell.group == "region: North=South · category: food|drink"
    cats = T.group_table(frame, "category")
    assert cats.loc[("cultwin", "acc1", "food|drink"), ["base", "tuned"]].tolist() == [25.0, 75.0]
    fig = F.delta_heatmap(frame, "base", "tuned", rows="region", cols="category")
    hm = fig.data[0]
    assert list(hm.y) == ["North=South", "West"] and list(hm.x) == ["art", "food|drink"]
    np.testing.assert_allclose(np.asarray(hm.z, float), [[0, 50], [0, 50]])
    pairs = T.compare(frame, "base", "tuned", samples=T.load_samples(tmp_path), groups=True, n_boot=50)
    fd = pairs[(pairs.category == "food|drink") & pairs.region.isna()].iloc[0]
    assert (fd.delta, fd.n_paired) == (0.5, 4)
    T.write_tables(frame, tmp_path / "tables", formats=("csv",))
    assert "food|drink" in (tmp_path / "tables" / "groups_category.csv").read_text()


def test_group_field_named_like_a_column_is_refused():
    res = _minimal(groups=[{"fields": {"metric": "x"}, "metrics": {"acc1": 1.0}}])
    with pytest.raises(ValueError, match="rename the field"):
        T.frame_from_results([res])


def test_fixtures_are_consistent_with_their_samples():
    """The fixture numbers are what summarize_samples computes from the stored per-item values."""
    for path in sorted(FIXTURES.glob("*.json")):
        res = R.read_result(path)
        if "samples" not in res:
            continue
        s = res["samples"]
        metric_cols = [k for k in s if k != "ids" and all(isinstance(v, (int, float)) for v in s[k])]
        label_cols = {k: s[k] for k in s if k != "ids" and k not in metric_cols}
        cross = [("region", "category")] if "category" in label_cols else []
        again = R.summarize_samples({k: s[k] for k in metric_cols}, label_cols, cross=cross, ids=s["ids"], n_boot=0)
        assert again["metrics"] == pytest.approx(res["metrics"]), path.name
        stored = {frozenset(g["fields"].items()): (g["n"], g["metrics"]) for g in res["groups"]}
        assert {frozenset(g["fields"].items()): (g["n"], g["metrics"]) for g in again["groups"]} == stored, path.name


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------
def test_load_frame_rows(frame):
    assert list(frame.columns[:10]) == ["model", "model_tag", "benchmark", "task", "metric", "group", "value", "n",
                                        "ci_low", "ci_high"]
    assert set(frame.model_tag) == {BASE, TUNED, T55}
    assert set(frame.benchmark) == {"cifar10", "cultwin", "flickr30k", "geode"}
    assert _value(frame, BASE, "cultwin", "twin_acc").value == 0.5
    assert _value(frame, TUNED, "cultwin", "twin_acc").value == 0.875
    asia = _value(frame, BASE, "cultwin", "twin_acc", {"region": "Asia"})
    assert (asia.value, asia.n, asia.group) == (0.25, 4, "region: Asia")
    assert pd.isna(asia.category)  # a region-only group has no category
    cell = _value(frame, TUNED, "cultwin", "twin_acc", {"region": "Asia", "category": "dress"})
    assert (cell.value, cell.n, cell.region, cell.category) == (0.5, 2, "Asia", "dress")
    assert list(frame.columns[-2:]) == ["region", "category"]  # one column per group field
    assert T.group_fields(frame) == ["region", "category"]
    geo = _value(frame, BASE, "geode", "acc1")
    assert geo.is_main and geo.n == 6 and geo.ci_low <= 0.5 <= geo.ci_high
    assert not _value(frame, BASE, "geode", "acc5").is_main
    cifar = _value(frame, BASE, "cifar10", "acc1")  # clip_benchmark file, same model as the base
    assert cifar.value == 0.8983 and cifar.model == "open_clip:ViT-B-32@openai"
    assert not (frame.metric == "n").any()  # group sizes go to the n column, not a metric row


def test_duplicate_results_keep_newest(tmp_path, caplog):
    old = _minimal(metrics={"acc1": 0.1}, timestamp="2025-01-01T00:00:00+00:00")
    new = _minimal(metrics={"acc1": 0.9}, timestamp="2025-06-01T00:00:00+00:00")
    R.write_result(tmp_path / "a.json", new)
    R.write_result(tmp_path / "b.json", old)
    frame = T.load_frame(tmp_path)
    assert frame.value.tolist() == [0.9]
    assert "keeping the newest" in caplog.text


def test_summary_and_group_tables(frame):
    summary = T.summary_table(frame)
    assert summary.loc[("cultwin", "twin_acc"), [BASE, T55, TUNED]].tolist() == [50.0, 75.0, 87.5]
    assert summary.loc[("geode", "acc1"), TUNED] == pytest.approx(500 / 6)
    assert math.isnan(summary.loc[("cifar10", "acc1"), TUNED])
    regions = T.group_table(frame, "region")
    assert regions.loc[("geode", "acc1", "Asia"), [BASE, T55, TUNED]].tolist() == [0.0, 100.0, 50.0]


def test_compare_with_paired_bootstrap(frame):
    samples = T.load_samples(FIXTURES)
    table = T.compare(frame, "open_clip:ViT-B-32@openai", TUNED, samples=samples, n_boot=300)
    row = table[(table.benchmark == "cultwin") & (table.metric == "twin_acc")].iloc[0]
    assert (row.base, row.tuned, row.delta, row.n_paired) == (0.5, 0.875, 0.375, 8)
    assert row.delta_ci_low <= row.delta <= row.delta_ci_high and 0 <= row.p_value <= 1
    assert row.base_ci_low <= row.base <= row.base_ci_high
    flickr = table[(table.benchmark == "flickr30k") & (table.metric == "text_retrieval_recall@1")].iloc[0]
    assert flickr.delta == pytest.approx(0.772 - 0.789) and math.isnan(flickr.delta_ci_low)
    assert "cifar10" not in set(table.benchmark)  # the tuned model was not run on it
    groups = T.compare(frame, BASE, TUNED, samples=samples, groups=True, metric=None, n_boot=100)
    assert {"region", "category"} <= set(groups.columns)
    asia = groups[(groups.benchmark == "cultwin") & (groups.region == "Asia") & groups.category.isna()].iloc[0]
    assert (asia.delta, asia.n_paired) == (0.5, 4)
    same = T.compare(frame, BASE, BASE, samples=samples, n_boot=100)
    paired = same[same.n_paired.notna()]
    assert (paired.delta == 0).all() and (paired.p_value == 1).all() and (paired.delta_ci_high == 0).all()
    with pytest.raises(KeyError, match="known model tags"):
        T.compare(frame, "nope", TUNED)


def test_ablation_from_config_and_tags(frame):
    # by default only data counts: 05_05 has no model_config, so it is not an ablation point
    own = T.ablation_params(frame, ["w_cap", "w_con"])
    assert own.index.tolist() == [TUNED] and own.loc[TUNED].tolist() == [0.7, 0.3]
    with pytest.raises(ValueError, match="at least two models"):
        T.ablation_table(frame, ["w_cap", "w_con"])
    params = T.ablation_params(frame, pattern=T.AUTHOR_TAG_PATTERN)
    assert params.loc[TUNED].tolist() == [0.7, 0.3]  # from model_config loss.w_cap / loss.w_con
    assert params.loc[T55].tolist() == [0.5, 0.5]  # from the tag ..._05_05, opted in
    assert BASE not in params.index
    table = T.ablation_table(frame, pattern=T.AUTHOR_TAG_PATTERN)
    assert table.model_tag.tolist() == [T55, TUNED]  # sorted by w_cap
    assert table.cultwin.tolist() == [75.0, 87.5]
    # mean over the benchmarks both settings have (cultwin, geode); flickr30k is missing for 05_05
    assert table["mean"].tolist() == pytest.approx([(75 + 500 / 6) / 2, (87.5 + 500 / 6) / 2])
    custom = T.ablation_table(frame, ["rank"], pattern=r"_(?P<rank>\d+)_\d\d_\d\d$", benchmarks=["cultwin"])
    assert custom["rank"].tolist() == [3.2, 3.2]  # digits read with the tag convention: "32" -> 3.2
    with pytest.raises(KeyError, match="found neither"):
        T.ablation_params(frame, ["lr"])


def test_markdown_and_latex_writers():
    df = pd.DataFrame({"model": ["a|b", "c"], "acc": [0.5, float("nan")], "p_value": [0.0123, 1.0]})
    assert T.to_markdown(df) == (
        "| model | acc | p_value |\n|:---|---:|---:|\n| a\\|b | 0.5 | 0.012 |\n| c |  | 1.000 |\n"
    )
    tex = T.to_latex(pd.DataFrame({"metric_name": ["acc_1"], "value": [50.0]}))
    assert "\\toprule" in tex and "metric\\_name" in tex and "acc\\_1 & 50.0" in tex


def test_tables_cli_writes_files(tmp_path):
    rc = T.main([str(FIXTURES), "--out", str(tmp_path), "--base", BASE, "--tuned", TUNED, "--n-boot", "100",
                 "--ablation-pattern", T.AUTHOR_TAG_PATTERN])
    assert rc == 0
    names = {p.name for p in tmp_path.iterdir()}
    for stem in ("summary", "compare", "ablation", "groups_region", "groups_category"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    assert {"results.csv", "compare_groups.csv"} <= names
    assert "| cultwin | twin_acc | 50.0 | 75.0 | 87.5 |" in (tmp_path / "summary.md").read_text()
    tidy = pd.read_csv(tmp_path / "results.csv")
    assert len(tidy) == len(T.load_frame(FIXTURES))
    compare = pd.read_csv(tmp_path / "compare.csv")
    row = compare[(compare.benchmark == "cultwin") & (compare.metric == "twin_acc")].iloc[0]
    assert row.delta == pytest.approx(37.5)  # percent


def test_tables_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        T.main([str(tmp_path / "none")])
    with pytest.raises(ValueError, match="both --base and --tuned"):
        T.main([str(FIXTURES), "--out", str(tmp_path), "--base", BASE])


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def test_benchmark_bars(frame):
    fig = F.benchmark_bars(frame)
    assert [t.name for t in fig.data] == [BASE, T55, TUNED]
    assert list(fig.data[0].x) == ["cifar10", "cultwin", "flickr30k", "geode"]
    tuned = fig.data[2]
    assert tuned.y[1] == 87.5 and math.isnan(tuned.y[0])
    assert fig.layout.barmode == "group" and fig.layout.xaxis.title.text == "benchmark"
    assert tuned.error_y.array[1] == pytest.approx(_value(frame, TUNED, "cultwin", "twin_acc").ci_high * 100 - 87.5)
    only = F.benchmark_bars(frame, metric="acc5", models=[BASE])
    assert len(only.data) == 1 and list(only.data[0].x) == ["cifar10", "geode"]


def test_delta_heatmap(frame):
    fig = F.delta_heatmap(frame, BASE, TUNED, rows="region", cols="category")
    hm = fig.data[0]
    assert list(hm.y) == ["Africa", "Asia", "Europe"] and list(hm.x) == ["dress", "food"]
    np.testing.assert_allclose(np.asarray(hm.z, float), [[0, 100], [50, 50], [0, 0]])
    assert hm.zmid == 0 and fig.layout.yaxis.title.text == "region"
    with pytest.raises(ValueError, match="no income x category groups"):
        F.delta_heatmap(frame, BASE, TUNED, rows="income")


def test_twin_scatter():
    pts = pd.DataFrame(
        {"model": ["base", "base", "tuned", "tuned"], "sim_own": [0.30, 0.20, 0.35, 0.31],
         "sim_twin": [0.25, 0.28, 0.20, 0.22], "concept": ["flag_td", "flag_ro", "flag_td", "flag_ro"]}
    )
    fig = F.twin_scatter(pts)
    names = [t.name for t in fig.data]
    assert names == ["base (twin acc 50%)", "tuned (twin acc 100%)", "own = twin"]
    diag = fig.data[-1]
    assert list(diag.x) == list(diag.y) and diag.line.dash == "dash"
    assert list(fig.data[1].y) == [0.35, 0.31]
    assert "twin" in fig.layout.xaxis.title.text and "own" in fig.layout.yaxis.title.text
    with pytest.raises(KeyError, match="sim_own"):
        F.twin_scatter(pts.drop(columns="sim_own"))


def test_ablation_lines(frame):
    fig = F.ablation_lines(frame, "w_con", pattern=T.AUTHOR_TAG_PATTERN)
    assert [t.name for t in fig.data] == ["cultwin", "flickr30k", "geode", "mean"]
    assert list(fig.data[0].x) == [0.3, 0.5] and list(fig.data[0].y) == [87.5, 75.0]
    assert fig.layout.xaxis.title.text == "w_con"


def test_write_figure_html_and_errors(tmp_path, frame, monkeypatch):
    fig = F.benchmark_bars(frame)
    path = F.write_figure(fig, tmp_path / "bars.html", include_plotlyjs="cdn")
    text = path.read_text()
    assert "plotly" in text and "cultwin" in text
    with pytest.raises(ValueError, match="unknown figure format"):
        F.write_figure(fig, tmp_path / "bars.gif")

    def broken(*args, **kwargs):
        raise RuntimeError("no browser")

    monkeypatch.setattr(type(fig), "write_image", broken)
    with pytest.raises(F.FigureExportError, match="Chromium"):
        F.write_figure(fig, tmp_path / "bars.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.html"]  # nothing half-written


@pytest.mark.browser
def test_write_figure_png(tmp_path, frame):
    """Real static export; needs kaleido plus a Chrome/Chromium, else skipped with the reason."""
    if shutil.which("chromium") is None and shutil.which("google-chrome") is None:
        pytest.skip("no Chrome/Chromium on PATH for kaleido")
    try:
        path = F.write_figure(F.ablation_lines(frame, pattern=T.AUTHOR_TAG_PATTERN), tmp_path / "ablation.png", scale=1)
    except F.FigureExportError as exc:
        pytest.skip(str(exc))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_cli_html(tmp_path):
    assert F.main([str(FIXTURES), "--out", str(tmp_path), "--base", BASE, "--tuned", TUNED,
                   "--ablation-pattern", T.AUTHOR_TAG_PATTERN]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ablation_lines.html", "benchmark_bars.html", "delta_heatmap.html"
    ]


def test_schema1_group_names_split_fields_at_the_first_equals_sign():
    """A schema-1 name is "field=value|field=value": a value may hold "=" (an old parse with rpartition made
    "category=food=drink" the field "category=food"); a part without "=" is a bare label."""
    old = json.loads(OLD_RESULT)
    old["groups"] = {"category=food=drink|region=Asia": {"twin_acc": 0.5, "n": 2}, "a=b=c": {"twin_acc": 1.0}}
    got = {json.dumps(g["fields"], sort_keys=True) for g in R.upgrade_result(old)["groups"]}
    assert got == {json.dumps({"category": "food=drink", "region": "Asia"}, sort_keys=True), json.dumps({"a": "b=c"})}
