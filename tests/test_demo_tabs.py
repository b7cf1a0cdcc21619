"""Every tab alive with any models: the default dataset, live evaluation and the confusion atlas.

Models are tiny transformers CLIPModels at 64 px (the hub-default format, `hf:`), with no --dataset and
no --results, as on a fresh Space: the twin explorer, confusion map and search run on the bundled
world's concepts rendered at the models' resolution, the Benchmarks tab fills after one live
evaluation, and the atlas needs no images.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cultureclip.steps import read_marker

# Every api_name that must return non-empty content with hub-default-like models and no dataset
# (also the list a launched-app test against a real-size hub cache should call; see
# test_every_tab_api_returns_content for the arguments of each).
TAB_APIS = ("/classify", "/twin_pair", "/confusion_map", "/atlas", "/search", "/evaluate", "/benchmarks")
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    from cultureclip.testing import save_hf_clip

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tabs_models")
    return save_hf_clip(root / "base", "tiny", seed=0, image_size=IMAGE_SIZE), \
        save_hf_clip(root / "tuned", "tiny", seed=1, image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def services(models, tmp_path_factory):
    """Services as on a fresh Space: two models, no dataset, no results, an empty cache."""
    from demo.services import DemoConfig, DemoServices

    cfg = DemoConfig(base=str(models[0]), tuned=str(models[1]), device="cpu",
                     cache_dir=tmp_path_factory.mktemp("tabs_cache"))
    s = DemoServices(cfg)
    s.check()
    return s


# --------------------------------------------------------------------------------------------------
# default dataset
# --------------------------------------------------------------------------------------------------
def test_world_dataset_is_built_once_atomically_and_valid(tmp_path, monkeypatch):
    from PIL import Image

    from cultureclip.data import read_manifest
    from synth.world import dataset as D

    recipe = D.Recipe(captions=2)
    # a crash half-way leaves nothing that could be used
    def boom(work, size, recipe, progress):
        (work / "dataset" / "images").mkdir(parents=True)
        (work / "dataset" / "manifest.parquet").write_bytes(b"half")
        raise RuntimeError("killed")

    monkeypatch.setattr(D, "_build", boom)
    with pytest.raises(RuntimeError, match="killed"):
        D.ensure_world_dataset(tmp_path, 32, recipe)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    path = D.ensure_world_dataset(tmp_path, 32, recipe)
    frame = read_manifest(path, check_images=True).frame
    assert frame["concept_id"].nunique() == 86 and len(frame) == 86 * 2
    assert (frame["split"] == "test").any() and frame["twin_concept_ids"].map(len).sum() > 0
    assert Image.open(path / frame["image_path"].iloc[0]).size == (32, 32)
    info = read_marker(path / D.INFO_FILE).produced
    assert info["size"] == 32 and info["world_spec_version"] == D.world_spec_version()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no build folder left behind
    mtime = (path / "manifest.parquet").stat().st_mtime_ns
    # cached: proven by what it did not do (no build ran, no file rewritten), never by wall-clock time
    monkeypatch.setattr(D, "_build", boom)
    assert D.ensure_world_dataset(tmp_path, 32, recipe) == path
    assert (path / "manifest.parquet").stat().st_mtime_ns == mtime
    monkeypatch.undo()
    # another resolution or recipe is another dataset
    assert D.dataset_dir(tmp_path, 48, recipe) != path and D.dataset_dir(tmp_path, 32) != path


def test_default_dataset_feeds_twin_explorer_confusion_map_and_search(services):
    from PIL import Image

    from demo import handlers as H

    assert services.is_default_dataset and services.models.image_size() == IMAGE_SIZE
    df = services.manifest()
    assert df["concept_id"].nunique() == 86
    for p in df["abs_path"].head(5):
        assert Image.open(p).size == (IMAGE_SIZE, IMAGE_SIZE)  # rendered at the models' resolution
    # Recognize keeps the curated catalog and adds the world's concepts (the examples are world renders)
    from synth.catalog import load_catalog

    assert len(services.concepts()) == len(load_catalog()) + 86
    assert H.example_images(services) and all(Path(p).is_file() for p in H.example_images(services))
    present = set(df["concept_name"])  # search suggestions name concepts the dataset has images of
    queries = H.copy_examples(services)["queries"]
    assert queries and all(any(q.startswith(n) for n in present) for q in queries)
    pairs = H.search_pairs(services)
    assert len(pairs) == 64  # only pairs with images
    view = H.pair_view(services, pairs[0][1])
    assert view.gallery_a and view.gallery_b and view.similarity is not None and view.confusion_note
    fig, table = H.confusion_map(services)
    assert len(table) == 64 and fig is not None
    res = H.search(services, "the flag of Chad")
    assert len(res.base) == 8 and len(res.tuned) == 8 and "flag of Chad" in res.message


def test_without_default_dataset_the_tabs_say_so(models, tmp_path):
    from demo import handlers as H
    from demo.services import DemoConfig, DemoServices
    from demo.validation import DemoInputError

    s = DemoServices(DemoConfig(base=str(models[0]), tuned=str(models[1]), device="cpu", cache_dir=tmp_path,
                                default_dataset=False))
    assert not s.has_dataset and s.dataset_root is None
    with pytest.raises(DemoInputError, match="--dataset"):
        H.search(s, "tamale")
    with pytest.raises(DemoInputError, match="--dataset"):
        H.start_evaluation(s)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# live evaluation
# --------------------------------------------------------------------------------------------------
def test_live_evaluation_writes_results_and_reuses_them(services):
    from demo import handlers as H
    from eval_suite.results import read_result

    ev = services.evaluator
    assert "Evaluation started" in H.start_evaluation(services)
    note = H.start_evaluation(services)  # a second request while running is queued (or runs after)
    assert "queued" in note or "started" in note
    assert "already queued" in H.start_evaluation(services) or not ev.running
    st = ev.wait(240)
    assert st.status == "done", st.message
    assert len(st.files) == 2
    for f, spec in zip(st.files, (services.config.base, services.config.tuned)):
        r = read_result(f)
        assert r["benchmark"] == "cultwin_live" and r["model"] == spec
        for m in ("twin_acc", "twin_group_score", "concept_acc1"):
            assert 0.0 <= r["metrics"][m] <= 1.0
        assert r["ci"]["twin_acc"][0] <= r["metrics"]["twin_acc"] <= r["ci"]["twin_acc"][1]
        assert r["n_samples"] == int((services.manifest()["split"] == "test").sum())
        assert r["checkpoint_sha"]
    mtimes = [os.stat(f).st_mtime_ns for f in st.files]
    # second click: cached by weights hash, nothing recomputed
    H.start_evaluation(services)
    st2 = ev.wait(60)
    assert st2.status == "done" and [os.stat(f).st_mtime_ns for f in st2.files] == mtimes
    # a fresh services object (an app restart) finds them without evaluating
    from demo.services import DemoServices

    again = DemoServices(services.config)
    assert again.evaluator.load_cached() and again.evaluator.state.files == st.files
    # --eval-on-start: evaluation starts in the background at check() (instant here: cached)
    import dataclasses

    started = DemoServices(dataclasses.replace(services.config, eval_on_start=True))
    assert any("background" in n for n in started.check(load_models=False))
    assert started.evaluator.wait(120).files == st.files
    view = H.benchmark_view(services)
    assert len(view.table) and set(view.table["benchmark"]) == {"cultwin_live"}
    assert view.bars is not None and view.heatmap is not None
    from eval_suite.results import model_tag

    assert set(H.benchmark_choices(services)["model"]) == {model_tag(services.config.base),
                                                           model_tag(services.config.tuned)}


def test_eval_on_start_flag_and_env(monkeypatch):
    from demo.app_config import parse_args, resolve_config

    args = ["--base", "a", "--tuned", "b"]
    monkeypatch.delenv("CULTURECLIP_EVAL_ON_START", raising=False)
    assert resolve_config(parse_args(args)).eval_on_start  # the Space evaluates at launch by default
    assert not resolve_config(parse_args(args + ["--no-eval-on-start"])).eval_on_start
    monkeypatch.setenv("CULTURECLIP_EVAL_ON_START", "0")
    assert not resolve_config(parse_args(args)).eval_on_start
    assert resolve_config(parse_args(args + ["--eval-on-start"])).eval_on_start
    cfg = resolve_config(parse_args(args + ["--no-default-dataset", "--cache-dir", "/tmp/x"]))
    assert not cfg.default_dataset and cfg.cache_dir == Path("/tmp/x")


# --------------------------------------------------------------------------------------------------
# confusion atlas
# --------------------------------------------------------------------------------------------------
def _embedder(path):
    from cultureclip.backbone import create_backbone
    from cultureclip.inference import Embedder

    return Embedder(create_backbone(str(path), device="cpu"))


def test_atlas_numbers(models):
    from eval_suite.confusions import col, confusion_atlas, concepts_from_catalog, pair_cosines
    from synth.catalog import load_catalog
    from synth.world import CATALOG_PATH

    emb = _embedder(models[0])
    cos = pair_cosines(emb, ["hanbok", "gyoza", "hanbok"], ["hanbok", "jiaozi", "hanfu"])
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and cos[1] < 1 - 1e-4 and cos[2] < 1 - 1e-4
    cat = load_catalog([CATALOG_PATH])
    concepts, pairs = concepts_from_catalog(cat), cat.twin_pairs()
    same = confusion_atlas({"m1": emb, "m2": emb}, concepts, pairs)  # the same model twice
    assert len(same) == len(pairs) == 64
    for metric in ("prompt_cos", "name_cos", "prompt_z"):
        np.testing.assert_allclose(same[col(metric, "m1")], same[col(metric, "m2")], atol=1e-6)
        np.testing.assert_allclose(same[f"delta_{metric}"], 0.0, atol=1e-6)
    # ranked by the first model's prompt cosine; the values are the embeddings' cosines
    assert same[col("prompt_cos", "m1")].is_monotonic_decreasing and list(same["rank"]) == list(range(1, 65))
    a, b = same.loc[0, "a"], same.loc[0, "b"]
    direct = pair_cosines(emb, [concepts[a].prompt], [concepts[b].prompt])[0]
    assert same.loc[0, col("prompt_cos", "m1")] == pytest.approx(direct, abs=1e-5)
    other = confusion_atlas({"base": emb, "tuned": _embedder(models[1])}, concepts, pairs)
    assert not np.allclose(other[col("prompt_cos", "base")], other[col("prompt_cos", "tuned")], atol=1e-4)


def test_geo_table_covers_every_catalog_culture():
    from eval_suite.geo import ISO2_TO_ISO3, iso3_codes
    from synth.catalog import load_catalog
    from synth.catalog.regions import COUNTRIES
    from synth.world import CATALOG_PATH

    assert set(ISO2_TO_ISO3) == set(COUNTRIES)
    assert len(set(ISO2_TO_ISO3.values())) == len(ISO2_TO_ISO3)
    assert all(len(v) == 3 and v.isalpha() and v.isupper() for v in ISO2_TO_ISO3.values())
    cultures = {c.culture for c in load_catalog()} | {c.culture for c in load_catalog([CATALOG_PATH])}
    unmapped = sorted(c for c in cultures if not iso3_codes(c))
    assert unmapped == [], f"add these cultures to eval_suite.geo: {unmapped}"
    assert iso3_codes("TD") == ("TCD",) and iso3_codes("hawaii") == ("USA",) and iso3_codes("nowhere") == ()
    # cross-check with the ISO table plotly.js bundles, when the installed plotly ships it
    import re

    import plotly

    bundles = list((Path(plotly.__file__).parent / "labextension" / "static").glob("*.js"))
    found = {}
    for f in bundles:
        found.update({b: a for a, b in re.findall(r'iso3:"([A-Z]{3})",iso2:"([A-Z]{2})"', f.read_text(errors="ignore"))})
    if found:
        assert {k: v for k, v in ISO2_TO_ISO3.items() if k in found} == {k: found[k] for k in ISO2_TO_ISO3 if k in found}


def test_confusions_cli_writes_csv_and_html(models, tmp_path):
    import pandas as pd

    from eval_suite.confusions import main
    from synth.world import CATALOG_PATH

    out = tmp_path / "atlas"
    assert main(["--models", str(models[0]), str(models[1]), "--catalog", str(CATALOG_PATH), "--out", str(out),
                 "--device", "cpu"]) == 0
    df = pd.read_csv(out / "confusion_atlas.csv")
    assert len(df) == 64 and {"pair", "category", "delta_prompt_cos"} <= set(df.columns)
    page = (out / "confusion_atlas.html").read_text()
    assert "Choropleth" in page or "choropleth" in page
    assert "Heatmap" in page or "heatmap" in page


def test_confusions_cli_rejects_bad_input(tmp_path, capsys):
    from eval_suite.confusions import main

    with pytest.raises(SystemExit):
        main(["--models", "a", "b", "c", "--out", str(tmp_path)])
    assert main(["--models", str(tmp_path / "missing_model"), "--out", str(tmp_path)]) == 2
    assert "missing_model" in capsys.readouterr().err


def test_atlas_handler_returns_table_and_figures(services):
    from demo import handlers as H
    from demo.validation import DemoInputError

    v = H.atlas_view(services)
    assert len(v.table) == 100 and "twin pairs" in v.message
    assert v.heatmap is not None and v.world is not None
    # offline, the browser cannot fetch the map's country outlines: the countries ranked instead of a blank map
    assert {t.type for t in v.world.data} == {"scatter"} and "Countries" in v.world.layout.title.text
    assert v.table["Base CLIP"].map(lambda x: x == round(x, 3)).all() and "z-score" in v.message
    assert services.atlas() is services.atlas()  # cached on the services object
    v2 = H.atlas_view(services, "name cosine", "Chad")
    assert 0 < len(v2.table) < 10 and all("Chad" in p for p in v2.table["pair"])  # whole word: not "chador"
    v3 = H.atlas_view(services, "name cosine", "tart")  # no whole word: fragments still match
    assert len(v3.table) > 0 and all("tart" in p.casefold() for p in v3.table["pair"])
    with pytest.raises(DemoInputError, match="metric"):
        H.atlas_view(services, "nonsense")


# --------------------------------------------------------------------------------------------------
# the launched app: every tab's api through gradio_client
# --------------------------------------------------------------------------------------------------
def test_every_tab_api_returns_content(services):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file

    from tests.demo_world import launch

    url, demo = launch(services)
    try:
        assert services.wait_index(300)  # the app embeds the dataset in the background at startup
        client = Client(url, verbose=False)
        names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
        assert set(TAB_APIS) <= names, f"missing endpoints: {set(TAB_APIS) - names}"
        image = services.manifest()["abs_path"].iloc[0]
        got = {}
        base, tuned, msg = client.predict(handle_file(image), "", True, "All", "All", "All", 1.0, 3,
                                          api_name="/classify")
        got["/classify"] = base["confidences"] and tuned["confidences"] and "candidate labels" in msg
        pair = services.image_pairs()[0]
        out = client.predict(f"{pair[0]}|{pair[1]}", api_name="/twin_pair")
        got["/twin_pair"] = bool(out[0]) and bool(out[1]) and bool(out[2]) and out[3] is not None
        plot, table = client.predict(api_name="/confusion_map")
        got["/confusion_map"] = plot is not None and len(table["data"]) == 64
        msg, table, heat, world, legend = client.predict("prompt cosine", "", 50, api_name="/atlas")
        got["/atlas"] = "twin pairs" in msg and len(table["data"]) == 50 and heat is not None and world is not None
        msg, g_base, g_tuned = client.predict("the flag of Chad", 4, api_name="/search")
        got["/search"] = len(g_base) == 4 and len(g_tuned) == 4
        out = client.predict([], [], [], [], True, api_name="/evaluate")
        got["/evaluate"] = "✅" in out[6] and len(out[1]["data"]) > 0
        msg, comparison, table, bars, heat, dl, status, models = client.predict([], [], [], [], True, api_name="/benchmarks")
        got["/benchmarks"] = len(table["data"]) > 0 and bars is not None and "cultwin_live" in json.dumps(table)
        assert [k for k in TAB_APIS if not got.get(k)] == [], got
    finally:
        demo.close()


def test_unwritable_cache_gives_a_clear_error_without_server_paths(models, tmp_path):
    from demo import handlers as H
    from demo.services import DemoConfig, DemoServices, ServiceError

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    s = DemoServices(DemoConfig(base=str(models[0]), tuned=str(models[1]), device="cpu", cache_dir=blocker))
    with pytest.raises(ServiceError) as err:
        H.search(s, "the flag of Chad")
    assert "CULTURECLIP_CACHE" in str(err.value) and str(tmp_path) not in str(err.value)


def test_live_results_show_beside_bundled_results(demo_world, tmp_path):
    from demo import handlers as H
    from tests.demo_world import make_services

    s = make_services(demo_world, cache_dir=tmp_path)
    s.check()
    assert H.benchmark_choices(s)["benchmark"] == ["cultwin", "globalrg"]
    H.start_evaluation(s)
    assert s.evaluator.wait(120).status == "done"
    assert H.benchmark_choices(s)["benchmark"] == ["cultwin", "cultwin_live", "globalrg"]
    view = H.benchmark_view(s, benchmarks=["cultwin", "cultwin_live"])
    assert set(view.table["benchmark"]) == {"cultwin", "cultwin_live"}
