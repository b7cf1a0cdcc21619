"""Demo handlers, services and input validation as plain functions (no server, no gradio)."""
from __future__ import annotations

from pathlib import Path

import dataclasses
import numpy as np
import pytest

from demo.validation import (MAX_LABELS, DemoInputError, clean_query, inside, load_image, parse_labels)
from tests.demo_world import png_header


# --------------------------------------------------------------------------------------------------
# validation (no models)
# --------------------------------------------------------------------------------------------------


def test_parse_labels_cleans_dedupes_and_caps():
    out = parse_labels(" gyoza,  jiaozi\n,, GYOZA , 餃子 ,🥟 dumpling, ../../etc/passwd,\x00ctrl ")
    assert out.labels == ["gyoza", "jiaozi", "餃子", "🥟 dumpling", "../../etc/passwd", "ctrl"]
    assert any("1 duplicate" in n for n in out.notes)
    many = parse_labels(", ".join(f"l{i}" for i in range(10_000)))
    assert len(many.labels) == MAX_LABELS and many.labels[-1] == f"l{MAX_LABELS - 1}"
    assert any("10,000 labels given" in n for n in many.notes)
    with pytest.raises(DemoInputError, match="No candidate labels"):
        parse_labels(" , \n ,")
    with pytest.raises(DemoInputError):
        parse_labels(None)
    assert len(parse_labels("x" * 1000).labels[0]) == 200
    assert any("Only one label" in n for n in parse_labels("solo").notes)


def test_clean_query():
    assert clean_query("  a  Mexican\ttamale ") == "a Mexican tamale"
    for bad in ("", "   ", None, 5):
        with pytest.raises(DemoInputError):
            clean_query(bad)


def test_load_image_rejects_bad_files_with_clear_messages(tmp_path):
    from PIL import Image

    txt = tmp_path / "a.jpg"
    txt.write_text("hello")
    with pytest.raises(DemoInputError, match="not an image"):
        load_image(txt)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(DemoInputError, match="empty"):
        load_image(empty)
    with pytest.raises(DemoInputError, match="missing"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(DemoInputError, match="No image"):
        load_image(None)
    good = tmp_path / "g.png"
    Image.effect_noise((64, 64), 40).convert("RGB").save(good)
    trunc = tmp_path / "t.png"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(DemoInputError, match="corrupt or truncated"):
        load_image(trunc)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))  # 400 MP declared in 80 bytes
    with pytest.raises(DemoInputError, match="refused"):
        load_image(bomb)
    with pytest.raises(DemoInputError, match="MB"):
        load_image(good, max_bytes=10)


def test_load_image_downscales_and_converts(tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(big)
    img = load_image(big)
    assert max(img.size) == 1024 and img.mode == "RGB" and abs(img.size[0] / img.size[1] - 4 / 3) < 0.01
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    out = load_image(rgba)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    pal = tmp_path / "p.gif"
    Image.new("P", (30, 30), 3).save(pal)
    assert load_image(pal).size == (30, 30)


def test_inside(tmp_path):
    (tmp_path / "d").mkdir()
    assert inside(tmp_path / "d" / "x.png", tmp_path / "d")
    assert not inside(tmp_path / "d" / ".." / "x.png", tmp_path / "d")
    assert not inside("/etc/passwd", tmp_path)


def test_quantize_alpha_and_blend():
    import torch

    from demo.services import ServiceError, blend_state_dicts, quantize_alpha

    assert [quantize_alpha(a) for a in (0.04, 0.05 + 1e-6, 0.26, 1.7, -3, None, float("nan"), "x")] == \
        [0.0, 0.1, 0.3, 1.0, 0.0, 1.0, 1.0, 1.0]
    base = {"w": torch.zeros(2, 2), "n": torch.tensor([1])}
    tuned = {"w": torch.ones(2, 2) * 4, "n": torch.tensor([7])}
    out = blend_state_dicts(base, tuned, 0.25)
    assert torch.allclose(out["w"], torch.ones(2, 2)) and out["n"].item() == 7
    with pytest.raises(ServiceError, match="same layout"):
        blend_state_dicts({"a": torch.zeros(1)}, {"b": torch.zeros(1)}, 0.5)
    with pytest.raises(ServiceError, match="shape"):
        blend_state_dicts({"a": torch.zeros(1)}, {"a": torch.zeros(2)}, 0.5)


# --------------------------------------------------------------------------------------------------
# handlers on a tiny world (two tiny open_clip models, 6 concepts x 4 images, results)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(demo_world):
    from tests.demo_world import make_services

    s = make_services(demo_world)
    assert s.check() == []
    return s


def test_services_concepts_merge_manifest_and_catalog(services, demo_world):
    cs = services.concepts()
    assert sorted(cs) == ["flag_chad", "flag_romania", "gyoza", "humita", "jiaozi", "tamale"]
    g = cs["gyoza"]
    assert g.culture_name == "Japan" and g.prompt == "a photo of gyoza, from Japan"
    assert g.twins == {"jiaozi": "gyoza differs from jiaozi in its colour"} and len(g.features) == 2
    assert services.twin_pairs() == [("flag_chad", "flag_romania"), ("gyoza", "jiaozi"), ("humita", "tamale")]
    df = services.manifest()
    assert len(df) == 24 and all(inside(p, demo_world["dataset"]) for p in df["abs_path"])
    assert services.base.loaded and services.tuned.loaded
    assert services.embedder("base") is services.embedder("base")  # loaded once


def test_manifest_rows_outside_the_dataset_are_refused(demo_world, tmp_path):
    """The shared manifest validator refuses a manifest that names a file outside its folder."""
    import shutil

    import pandas as pd

    from demo.services import ServiceError
    from tests.demo_world import make_services

    ds = tmp_path / "ds"
    shutil.copytree(demo_world["dataset"], ds)
    df = pd.read_parquet(ds / "manifest.parquet")
    df.loc[0, "image_path"] = "../../../../etc/hostname"
    df.to_parquet(ds / "manifest.parquet")
    s = make_services({**demo_world, "dataset": ds})
    with pytest.raises(ServiceError, match="outside the dataset folder") as e:
        s.manifest()
    assert "etc/hostname" in str(e.value)


def test_classify_matches_a_direct_computation(services, demo_world):
    import torch

    from demo import handlers as H

    img = demo_world["dataset"] / "images/gyoza/gyoza_1.png"
    r = H.classify(services, str(img), top_k=6)
    assert r.ok and len(r.base) == 6 and "6 candidate labels" in r.message
    cs = services.concepts()
    ids = sorted(cs, key=lambda i: cs[i].name.casefold())
    for which, got in (("base", r.base), ("tuned", r.tuned)):
        emb = services.embedder(which)
        bank = emb.embed_texts([cs[i].prompt for i in ids])
        probs = (emb.logit_scale() * emb.embed_images([load_image(img)]) @ bank.T).softmax(-1)[0]
        want = {f"{cs[i].name} ({cs[i].culture_name})": float(p) for i, p in zip(ids, probs)}
        for label, p in got.items():
            assert abs(p - want[label]) < 1e-4
        assert list(got) == sorted(want, key=want.get, reverse=True)
    assert abs(sum(r.base.values()) - 1) < 1e-4
    # filters restrict the candidates; typed labels are embedded with the template
    r2 = H.classify(services, str(img), typed="pizza", category="cuisine", region="Asia")
    assert set(r2.base) == {"gyoza (Japan)", "jiaozi (China)", "pizza"}


def test_classify_batch_equals_single_calls_and_wise_ft(services, demo_world):
    import torch

    from demo import handlers as H

    paths = [str(demo_world["dataset"] / f"images/{c}/{c}_2.png") for c in ("tamale", "humita", "flag_chad")]
    cand = H.build_candidates(services, "", True)
    batch = H.classify_batch(services, paths, [cand] * 3, [1.0] * 3, [3] * 3)
    for p, b in zip(paths, batch):
        single = H.classify(services, p, top_k=3)
        assert list(single.base) == list(b.base)
        assert all(abs(single.tuned[k] - v) < 1e-5 for k, v in b.tuned.items())
    # alpha 0 = the base weights; alpha 0.5 = the average of both state dicts (cached per quantized alpha)
    r0 = H.classify(services, paths[0], alpha=0.0, top_k=3)
    assert r0.tuned == r0.base
    half = services.blended(0.52)
    assert services.blended(0.47) is half
    sb, st = services.embedder("base").backbone.state_dict(), services.embedder("tuned").backbone.state_dict()
    k = next(k for k, v in st.items() if v.is_floating_point() and v.numel() > 10)
    assert torch.allclose(half.backbone.state_dict()[k], (sb[k] + st[k]) / 2, atol=1e-6)
    assert "WiSE-FT α=0.5" in H.classify(services, paths[0], alpha=0.5).message
    # one bad image in a batch does not spoil the others
    mixed = H.classify_batch(services, [paths[0], None], [cand] * 2, [1.0] * 2, [3] * 2)
    assert mixed[0].ok and not mixed[1].ok and "No image" in mixed[1].message


def test_twin_flag(services):
    from demo import handlers as H

    cand = H.Candidates(["gyoza (Japan)", "jiaozi (China)", "pizza"], ["a", "b", "c"], ["gyoza", "jiaozi", None])
    msg = H._twin_flag(services, cand, 0, 1, "CultureCLIP")
    assert "Cultural twins" in msg and "gyoza differs from jiaozi" in msg or "jiaozi differs from gyoza" in msg
    assert "Cultural twins" not in H._twin_flag(services, cand, 0, 2, "CultureCLIP")
    assert "agree" in H._twin_flag(services, cand, 1, 1, "CultureCLIP")


def test_classify_bad_input_is_a_message(services, tmp_path):
    from demo import handlers as H

    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    r = H.classify(services, str(bad))
    assert not r.ok and r.base == {} and "not an image" in r.message
    r = H.classify(services, str(bad), typed="", use_catalog=False)
    assert not r.ok and "No candidate labels" in r.message
    r = H.classify(services, str(bad), category="no-such-category")
    assert not r.ok and "filters" in r.message


def test_pair_search_and_view(services, demo_world):
    from demo import handlers as H

    assert [v for _, v in H.search_pairs(services, "CHINA")] == ["gyoza|jiaozi"]
    assert [v for _, v in H.search_pairs(services, "", "symbol")] == ["flag_chad|flag_romania"]
    assert [v for _, v in H.search_pairs(services, "", "All", "Argentina")] == ["humita|tamale"]
    assert H.search_pairs(services, "zzz") == []
    v = H.pair_view(services, "gyoza|jiaozi", n_per_side=3)
    assert len(v.gallery_a) == 3 and len(v.gallery_b) == 3
    assert all(inside(p, demo_world["dataset"]) and "gyoza" in p for p, _ in v.gallery_a)
    assert "How to tell it from jiaozi" in v.info and "gyoza feature one" in v.info
    heat = v.similarity.data
    assert len(heat) == 2 and all(len(h.z) == 2 and len(h.z[0]) == 6 for h in heat)
    # the confusion gallery agrees with the confusion table
    table = H.confusion_table(services).set_index("value")
    n_conf = round(table.loc["gyoza|jiaozi", "base_confusion"] * 8)
    assert len(v.confusion) == n_conf
    assert (f"{n_conf} of 8" in v.confusion_note) or (n_conf == 0 and "all 8" in v.confusion_note)
    for bad in (None, "", "gyoza|tamale", "../../etc/passwd"):
        with pytest.raises(DemoInputError):
            H.pair_view(services, bad)


def test_confusion_table_matches_manual_counts(services):
    from demo import handlers as H

    t = H.confusion_table(services)
    assert list(t["value"]) and len(t) == 3 and (t["n_images"] == 8).all()
    assert list(t["base_confusion"]) == sorted(t["base_confusion"], reverse=True)
    df = services.manifest()
    for which in ("base", "tuned"):
        feats = services.image_index(which)
        emb = services.embedder(which)
        cs = services.concepts()
        for a, b in services.twin_pairs():
            pa, pb = emb.embed_texts([cs[a].prompt, cs[b].prompt])
            wrong = 0
            for i, c in enumerate(df["concept_id"]):
                if c in (a, b):
                    own, twin = (pa, pb) if c == a else (pb, pa)
                    wrong += int(float(feats[i] @ twin) > float(feats[i] @ own))
            got = t.set_index("value").loc[f"{a}|{b}", f"{which}_confusion"]
            assert abs(got - wrong / 8) < 1e-9
    fig, shown = H.confusion_map(services, top=2)
    assert len(fig.data) == 2 and len(fig.data[0].y) == 2 and "Base CLIP confusion %" in shown.columns


def test_search_ranks_by_cosine(services):
    from demo import handlers as H

    r = H.search(services, "a flag of Chad", k=5)
    assert len(r.base) == 5 and len(r.tuned) == 5 and "a flag of Chad" in r.message
    emb = services.embedder("tuned")
    q = emb.embed_texts(["a flag of Chad"])[0]
    sims = services.image_index("tuned") @ q
    top = sims.topk(5).indices.tolist()
    df = services.manifest()
    assert [p for p, _ in r.tuned] == [df.at[i, "abs_path"] for i in top]
    with pytest.raises(DemoInputError):
        H.search(services, "  ")


def test_benchmark_view_filters_and_csv(services):
    from demo import handlers as H

    ch = H.benchmark_choices(services)
    assert ch == {"benchmark": ["cultwin", "globalrg"], "model": ["base", "cultureclip"],
                  "region": ["Africa", "Asia", "Europe"], "category": ["cuisine", "symbol"]}
    v = H.benchmark_view(services)
    assert len(v.table) == 16 and v.bars is not None and v.heatmap is not None
    text = Path(v.csv_path).read_text()
    assert len(text.splitlines()) == 17
    v = H.benchmark_view(services, benchmarks=["cultwin"], models=["cultureclip"], regions=["Europe"])
    assert len(v.table) == 1 and v.table["value %"].iloc[0] == 75.0
    v = H.benchmark_view(services, benchmarks=["cultwin"], main_only=False)
    assert set(v.table["metric"]) == {"twin_acc", "n_correct"}


def test_benchmark_view_group_values_with_separators(demo_world, tmp_path):
    """Group fields reach the dashboard as columns: a category "food|drink" filters and plots as itself
    (the services split flattened "region=..|category=.." names on "|" by hand, reading "food" here)."""
    from demo import handlers as H
    from demo.services import DemoConfig, DemoServices
    from eval_suite.results import make_result, write_result

    for spec, tag, (asia, europe) in ((demo_world["base"], "base", (0.5, 0.25)), (demo_world["tuned"], "cultureclip", (0.75, 0.5))):
        groups = [{"fields": {"region": r, "category": "food|drink"}, "n": 4, "metrics": {"twin_acc": v}}
                  for r, v in (("Asia", asia), ("Europe", europe))]
        write_result(tmp_path, make_result("cultwin", "twin_choice", str(spec), {"twin_acc": (asia + europe) / 2},
                                           n_samples=8, groups=groups, tag=tag))
    s = DemoServices(DemoConfig(base=str(demo_world["base"]), tuned=str(demo_world["tuned"]), device="cpu", results=tmp_path,
                                catalog=[demo_world["dataset"] / "catalog"], default_dataset=False))
    assert H.benchmark_choices(s)["category"] == ["food|drink"]
    v = H.benchmark_view(s, categories=["food|drink"], regions=["Europe"])
    assert v.table["model"].tolist() == ["Base CLIP", "CultureCLIP"] and v.table["value %"].tolist() == [25.0, 50.0]
    assert set(v.table["group"]) == {"region: Europe · category: food|drink"}  # display label only
    hm = v.heatmap.data[0]
    assert list(hm.x) == ["food|drink"] and list(hm.y) == ["Asia", "Europe"]
    np.testing.assert_allclose(np.asarray(hm.z, float).ravel(), [25.0, 25.0])


def test_services_without_dataset_or_results(demo_world):
    from demo import handlers as H
    from demo.services import DemoConfig, DemoServices

    s = DemoServices(DemoConfig(base=str(demo_world["base"]), tuned=str(demo_world["tuned"]), device="cpu",
                                catalog=[demo_world["dataset"] / "catalog"], default_dataset=False))
    notes = s.check(load_models=False)
    assert any("--dataset" in n for n in notes) and any("--results" in n for n in notes)
    assert len(s.concepts()) == 6  # from the catalog alone
    v = H.benchmark_view(s)
    assert v.table.empty and v.message == "No benchmark results are available in this Space yet."  # no owner flags
    with pytest.raises(DemoInputError, match="--dataset"):
        H.search(s, "tamale")
    with pytest.raises(DemoInputError, match="--dataset"):
        H.pair_view(s, "gyoza|jiaozi")
    assert H.example_images(s) == []


def _result(base, tuned, labels=("gyoza (Japan)", "jiaozi (China)", "tamale (Mexico)", "pizza")):
    from demo import handlers as H

    ids = {"gyoza (Japan)": "gyoza", "jiaozi (China)": "jiaozi", "tamale (Mexico)": "tamale", "pizza": None}
    picks = tuple(H.Pick(labels[i], 0.5, ids[labels[i]]) for i in (base, tuned))
    return H.ClassifyResult({}, {}, "", picks=picks, tuned_name="CultureCLIP")


def _cards(html: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r'data-verdict="(\w+)">.*?<div class="tag">(.*?)</div>', html)


def test_verdicts_against_the_true_concept(services):
    """Each model's top answer gets a verdict against the picked example's concept: right, wrong, or took it
    for its twin (naming the twin); the twins' cues appear when the models disagree on a twin pair."""
    from demo import handlers as H

    html = H.verdicts_html(services, _result(1, 0), "gyoza (Japan)")  # base: the twin, CultureCLIP: right
    assert _cards(html) == [("twin", "✗ took it for its twin, jiaozi"), ("right", "✓ right")]
    assert 'id="twin-cues"' in html and "How to tell gyoza from jiaozi" in html.replace("jiaozi from gyoza", "gyoza from jiaozi")
    assert "gyoza differs from jiaozi in its colour" in html and "jiaozi differs from gyoza in its colour" in html
    # the spec on hover, the names people use on the cards
    assert f'title="{services.config.base}"' in html and ">Base CLIP<" in html and ">CultureCLIP<" in html
    # a plain miss: wrong, and no cues (not a twin pair)
    html = H.verdicts_html(services, _result(2, 0), "gyoza (Japan)")
    assert _cards(html) == [("wrong", "✗ wrong"), ("right", "✓ right")] and "twin-cues" not in html
    # both take it for the twin: the cues still say how to tell them apart
    html = H.verdicts_html(services, _result(1, 1), "gyoza")
    assert [k for k, _ in _cards(html)] == ["twin", "twin"] and "twin-cues" in html
    # own image: no truth, no verdict; a disagreement on a twin pair still shows the cues
    html = H.verdicts_html(services, _result(0, 1), "")
    assert [k for k, _ in _cards(html)] == ["unknown", "unknown"] and "twin-cues" in html
    assert H.verdicts_html(services, H.ClassifyResult({}, {}, "❌ no", ok=False), "gyoza") == ""


def test_verdict_panel_escapes_labels(services):
    from demo import handlers as H

    r = H.ClassifyResult({}, {}, "", picks=(H.Pick("<img src=x onerror=alert(1)> ${x} {{y}}", 0.4, None),
                                              H.Pick("pizza", 0.6, None)), tuned_name="CultureCLIP")
    html = H.verdicts_html(services, r, None)
    assert "<img" not in html and "${" not in html and "{{" not in html and "&lt;img" in html


def test_classify_gives_each_models_pick(services, demo_world):
    from demo import handlers as H

    r = H.classify(services, str(demo_world["dataset"] / "images/gyoza/gyoza_0.png"), top_k=3)
    assert r.ok and r.picks is not None
    assert r.picks[0].label == next(iter(r.base)) and r.picks[1].label == next(iter(r.tuned))
    assert all(p.concept_id in services.concepts() for p in r.picks) and "candidate labels" in r.notes
    assert "Cultural twins" not in r.notes  # the page's verdict panel says it; the API message keeps it


def test_search_marks_the_queried_concepts_hits(services):
    from demo import handlers as H

    r = H.search(services, "the flag of Chad", k=6)
    assert r.concept == "flag_chad"
    df = services.manifest()
    for which, shown in (("base", r.base), ("tuned", r.tuned)):
        concepts = [df.loc[df["abs_path"] == p, "concept_id"].iloc[0] for p, _ in shown]
        assert r.counts[which] == concepts.count("flag_chad")
        for c, (_, caption) in zip(concepts, shown):
            assert caption.startswith("✓ flag of Chad") if c == "flag_chad" else caption.startswith("✗ ")
            assert ("(its twin)" in caption) == (c == "flag_romania")
    assert f"Base CLIP: {r.counts['base']} of 6** are flag of Chad" in r.message
    assert f"CultureCLIP: {r.counts['tuned']} of 6**" in r.message
    other = H.search(services, "a red bicycle", k=3)  # names no concept: nothing marked, and it says so
    assert other.concept is None and not other.counts and "not marked" in other.message
    assert H.concept_in_query(services, "flag of Romania at dusk").id == "flag_romania"


def test_a_catalog_larger_than_the_per_query_cap_is_used_whole(services, monkeypatch):
    """The 1,000-label cap bounds what a visitor types, not the operator's catalog (1,086 labels on the hub
    path: before, the last 86 concepts were silently dropped from every query)."""
    from demo import handlers as H
    from demo.validation import MAX_LABELS

    real = services.concepts()
    proto = next(iter(real.values()))
    big = dict(real)
    for i in range(MAX_LABELS + 50):
        big[f"extra_{i}"] = dataclasses.replace(proto, id=f"extra_{i}", name=f"extra concept {i}")
    monkeypatch.setattr(services, "concepts", lambda: big)
    cand = H.build_candidates(services, "", True)
    assert len(cand.display) == len(big) and not any("limit per query" in n for n in cand.notes)
    typed = ", ".join(f"typed {i}" for i in range(MAX_LABELS + 5))
    cand = H.build_candidates(services, typed, True)
    assert len(cand.display) == len(big) + MAX_LABELS and any("limit per query" in n for n in cand.notes)
