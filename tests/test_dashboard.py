"""The Benchmarks dashboard full on arrival: published results from a Hugging Face dataset repo (read through
the local HF cache when offline), the launch evaluation cached on disk by weights hash (a restart computes
nothing and says when the results were computed), base and tuned side by side with friendly names, and an
atlas whose values are rounded. The browser journeys are in tests/test_dashboard_browser.py."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest


def _repo_files(results: Path, folder: str = "results") -> dict[str, bytes]:
    return {f"{folder}/{p.name}": p.read_bytes() for p in sorted(results.glob("*.json"))}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty local HF cache (HF_HOME/hub) that huggingface_hub reads, with the hub switched off."""
    import huggingface_hub.constants as hc

    hf_home = tmp_path / "hf_home"
    (hf_home / "hub").mkdir(parents=True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    return hf_home


def test_results_from_a_dataset_repo_in_the_hub_cache(demo_world, offline_hub, tmp_path, caplog):
    """`--results-repo owner/name/results`: the owner's published result JSONs, read offline from the HF cache
    laid out as huggingface_hub writes it, shown beside a local --results folder; a repo that is not cached
    gives the visitor a plain state and the owner a log line."""
    from demo import handlers as H
    from demo.results_sources import RepoSpec, ResultsSourceError, fetch_results_repo
    from demo.services import DemoConfig, DemoServices
    from eval_suite.results import make_result, result_filename, write_result
    from tests.hubcache import add_dataset_repo

    add_dataset_repo(offline_hub, "owner/cultureclip-results", _repo_files(demo_world["results"]))
    folder = fetch_results_repo("owner/cultureclip-results/results")
    assert folder.is_dir() and "datasets--owner--cultureclip-results" in str(folder) and len(list(folder.glob("*.json"))) == 4
    # a local folder beside it, with another benchmark
    local = tmp_path / "local_results"
    for spec, tag, v in ((demo_world["base"], "base", 0.4), (demo_world["tuned"], "cultureclip", 0.6)):
        write_result(local / result_filename("crope", tag), make_result("crope", "multiple_choice", str(spec), {"acc": v},
                                                                        n_samples=50, tag=tag, ci={"acc": [v - 0.1, v + 0.1]}))
    cfg = dict(base=str(demo_world["base"]), tuned=str(demo_world["tuned"]), device="cpu", default_dataset=False,
               catalog=[demo_world["dataset"] / "catalog"])
    s = DemoServices(DemoConfig(results=local, results_repo="owner/cultureclip-results/results", **cfg))
    s.check(load_models=False)
    assert H.benchmark_choices(s)["benchmark"] == ["crope", "cultwin", "globalrg"]
    v = H.benchmark_view(s)
    cmp = v.comparison
    assert list(cmp.columns[:7]) == ["benchmark", "metric", "group", "Base CLIP %", "CultureCLIP %", "Δ points", "Δ 95% interval"]
    overall = cmp[cmp["group"] == "all items"].set_index("benchmark")
    assert overall.loc["CulTwin", "Base CLIP %"] == 55.0 and overall.loc["CulTwin", "CultureCLIP %"] == 70.0
    assert overall.loc["CulTwin", "Δ points"] == 15.0 and overall.loc["CROPE", "Δ points"] == 20.0
    assert set(v.table["model"]) == {"Base CLIP", "CultureCLIP"}  # friendly names, never the result tags
    assert {t.name for t in v.bars.data} == {"Base CLIP", "CultureCLIP"}
    assert "CultureCLIP − Base CLIP" in v.heatmap.layout.title.text
    # a repo id that is not in the cache: nothing for the visitor but a plain state, the reason in the log
    caplog.set_level("WARNING")
    missing = DemoServices(DemoConfig(results_repo="owner/not-published", **cfg))
    notes = missing.check(load_models=False)
    assert any("owner/not-published" in n and "cache" in n for n in notes)
    assert any("owner/not-published" in r.getMessage() for r in caplog.records)
    view = H.benchmark_view(missing)
    assert view.message == "No benchmark results are available in this Space yet."
    assert RepoSpec.parse("o/n@v1.0/sub/dir") == RepoSpec("o/n", "v1.0", "sub/dir")
    for bad in ("no-slash", "o/n/../x", ""):
        with pytest.raises(ResultsSourceError, match="owner/name"):
            RepoSpec.parse(bad)


def test_the_launch_evaluation_is_cached_by_weights_hash_across_restarts(demo_world, tmp_path, monkeypatch):
    """The app evaluates the loaded models at launch by default; a restart over the same cache computes
    nothing and says when the results were computed (not a fake "Evaluated in 0.3 s")."""
    import eval_suite.run as run
    from demo import handlers as H
    from demo.app_config import parse_args, resolve_config
    from demo.services import DemoServices

    monkeypatch.delenv("CULTURECLIP_EVAL_ON_START", raising=False)
    argv = ["--base", str(demo_world["base"]), "--tuned", str(demo_world["tuned"]), "--dataset",
            str(demo_world["dataset"]), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    first = DemoServices(resolve_config(parse_args(argv)))
    first.check(load_models=False)  # no flag: the evaluation starts in the background
    st = first.evaluator.wait(240)
    assert st.status == "done" and not st.from_cache and len(st.files) == 2, st.message
    assert st.message.startswith("Evaluated both models on the dataset's test split")
    mtimes = [os.stat(f).st_mtime_ns for f in st.files]
    stamp = json.loads(Path(st.files[0]).read_text())["timestamp"]

    calls = []

    def no_work(*a, **k):
        calls.append(a)
        raise AssertionError("a restart must not evaluate again")

    monkeypatch.setattr(run, "embed_benchmark", no_work)
    monkeypatch.setattr(run, "score_and_write", no_work)
    again = DemoServices(resolve_config(parse_args(argv)))  # a restart with persistent storage
    again.check(load_models=False)
    st2 = again.evaluator.wait(120)
    assert st2.status == "done" and st2.from_cache and calls == [], st2.message
    assert [os.stat(f).st_mtime_ns for f in st2.files] == mtimes
    assert re.fullmatch(r"From cache: computed \d{4}-\d\d-\d\d \d\d:\d\d UTC for these exact weights \(\d+ test images each\)\.",
                        st2.message), st2.message
    assert st2.computed_at.startswith(stamp[:10])
    status, running = H.evaluation_status(again)
    status = status.replace("\\", "")  # markdown escapes
    assert not running and "From cache: computed" in status and "0.3s" not in status
    v = H.benchmark_view(again)
    live = v.comparison[v.comparison["benchmark"] == "CulTwin test split"]
    assert len(live) and live["group"].iloc[0] == "all items"
    assert "computed" in v.models and "Base CLIP" in v.models and "CultureCLIP" in v.models


def test_atlas_values_are_rounded_as_the_page_receives_them(tmp_path):
    """float32 cosines rounded in float32 reach the page as 0.9829999804496765: the tables are float64."""
    import numpy as np
    import pandas as pd

    from demo.handlers import atlas_table
    from eval_suite.confusions import display_table

    atlas = pd.DataFrame({"rank": [1, 2], "pair": ["a ↔ b", "c ↔ d"], "culture_name_a": ["A", "C"],
                          "culture_name_b": ["B", "D"], "category": ["x", "y"]})
    for lab, vals in (("Base", [0.98299998, 0.5123456]), ("Tuned", [0.9712345, 0.40000001])):
        v = np.array(vals, dtype=np.float32)
        atlas[f"prompt_cos[{lab}]"], atlas[f"name_cos[{lab}]"], atlas[f"prompt_z[{lab}]"] = v, v, v * 2
    atlas["delta_prompt_cos"] = atlas["prompt_cos[Tuned]"] - atlas["prompt_cos[Base]"]
    atlas["delta_name_cos"] = atlas["delta_prompt_cos"]
    atlas.attrs["labels"] = ["Base", "Tuned"]
    for table in (atlas_table(atlas, "prompt_cos", ["Base CLIP", "CultureCLIP"]), display_table(atlas)):
        text = json.dumps(table.select_dtypes("number").to_dict("list"))
        assert not re.search(r"\d\.\d{4,}", text), text
    assert atlas_table(atlas, "prompt_cos", ["Base CLIP", "CultureCLIP"])["Base CLIP"].tolist() == [0.983, 0.512]


def test_result_tables_show_a_constant_number_of_decimals():
    """67.0 shows as "67.0" next to 67.4 (before: gradio showed "67" and "21"); the values stay numbers."""
    import gradio as gr
    import pandas as pd

    from demo.ui import fixed_decimals

    frame = pd.DataFrame({"group": ["all items", "region: Asia"], "Base CLIP %": [21.0, 67.4],
                          "Δ points": [-4.8, float("nan")], "n": [600, 71]})
    out = gr.Dataframe(interactive=False).postprocess(fixed_decimals(frame, 1))
    assert out.data[0][1] == 21.0 and isinstance(out.data[0][1], float)
    assert [row[1:] for row in out.metadata["display_value"]] == [["21.0", "-4.8", "600"], ["67.4", "—", "71"]]
    assert fixed_decimals(pd.DataFrame(), 1).empty and fixed_decimals(None, 1) is None
