"""Benchmark adapters: each reads a fixture written in the real published format, and scores exact
numbers with hand-set features (a keyword embedder), plus one end-to-end pass with a tiny open_clip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_suite.benchmarks import BENCHMARKS, BenchmarkError, BenchmarkNotFoundError, create_benchmark
from tests.fixtures import make_benchmark_fixtures as F

WORDS = ["red", "green", "blue", "yellow", "purple", "cyan", "kebaya", "ao dai", "hanbok", "kimono", "sari"]


class KeywordEmbedder:
    """Text -> one-hot of the first keyword it contains (else a fixed 'other' axis): exact, hand-checkable."""

    def __init__(self):
        self.calls = 0

    def embed_texts(self, texts):
        self.calls += 1
        out = torch.zeros(len(texts), len(WORDS) + 1)
        for i, t in enumerate(texts):
            hit = [j for j, w in enumerate(WORDS) if w in t.lower()]
            out[i, hit[0] if hit else len(WORDS)] = 1.0
        return out

    def label_bank(self, labels, templates=("{}",)):
        feats = torch.stack([self.embed_texts([t.format(l) for t in templates]).mean(0) for l in labels])
        return torch.nn.functional.normalize(feats, dim=-1)


def onehot(idx, dim=len(WORDS) + 1):
    out = torch.zeros(len(idx), dim)
    out[torch.arange(len(idx)), torch.as_tensor(idx)] = 1.0
    return out


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_fixtures")
    return {name: F.make_fixture(name, root / name) for name in F.FIXTURES}


def test_registry_and_errors(tmp_path):
    assert {"cultwin", "crope", "globalrg_retrieval", "globalrg_grounding", "dollar_street", "geode",
            "worldcuisines", "cvqa", "imagenet1k", "zeroshot", "flickr30k", "coco", "sugarcrepe"} <= set(BENCHMARKS)
    with pytest.raises(BenchmarkError, match="choose one of .*crope"):
        create_benchmark("crop")
    with pytest.raises(BenchmarkError, match="no protocol 'paper'.*official"):
        create_benchmark("cvqa", protocol="paper")
    with pytest.raises(BenchmarkNotFoundError, match=r"--root crope=PATH.*CULTURECLIP_CROPE"):
        create_benchmark("crope", root=tmp_path / "missing").load()
    with pytest.raises(BenchmarkNotFoundError, match="Malvinan/CROPE"):
        create_benchmark("crope", root=tmp_path).load()  # exists but holds no parquet


def test_crope_paper_protocol_reads_no_rows_and_definition_images(fx):
    b = create_benchmark("crope", root=fx["crope"])
    d = b.load()
    # 2 "no" rows: (main + 2 definition images) + (main + 1) = 5 questions; the "yes" row is dropped
    assert len(d.images) == 5 and all(len(o) == 2 for o in d.options)
    assert d.groups["image_kind"] == ["main", "definition", "definition", "main", "definition"]
    first = d.options[0]
    assert sorted(first) == ["There is ao dai in the image.", "There is kebaya in the image."]
    assert first[d.answers[0]] == "There is kebaya in the image."  # main image shows image_en_concept
    assert first[d.answers[1]] == "There is ao dai in the image."  # definition image shows definition_concept
    again = create_benchmark("crope", root=fx["crope"]).load()
    assert again.options == d.options  # seed 42: deterministic order
    # scoring: images look like their answer -> 100%; like the wrong one -> 0%
    right = [WORDS.index("kebaya"), WORDS.index("ao dai"), WORDS.index("ao dai"), WORDS.index("hanbok"),
             WORDS.index("kimono")]
    r = b.evaluate(KeywordEmbedder(), image_features=onehot(right), n_boot=0)
    assert r["metrics"]["accuracy"] == 1.0 and r["n_samples"] == 5
    wrong = [WORDS.index("ao dai"), WORDS.index("kebaya"), WORDS.index("ao dai"), WORDS.index("kimono"),
             WORDS.index("kimono")]
    r = b.evaluate(KeywordEmbedder(), image_features=onehot(wrong), n_boot=0)
    assert r["metrics"]["accuracy"] == pytest.approx(2 / 5)
    assert r["groups"]["image_kind=main"]["accuracy"] == 0.0


def test_crope_official_protocol_uses_every_row(fx):
    d = create_benchmark("crope", root=fx["crope"], protocol="official").load()
    assert len(d.images) == 3 and list(d.answers) == [1, 1, 0]


def test_globalrg_paper_protocols(fx):
    d = create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"]).load()
    # only "wedding" has >= 4 regions (5); "breakfast" has 3 -> dropped
    assert len(d.images) == 5 and all(len(o) == 4 and len(set(o)) == 4 for o in d.options)
    for opts, ans, reg in zip(d.options, d.answers, d.groups["region"]):
        assert opts[ans] == f"The picture depicts a kind of wedding in {reg}"
    g = create_benchmark("globalrg_grounding", root=fx["globalrg_grounding"]).load()
    assert len(g.images) == 5 and set(g.groups["region"]) == {"India"}  # Kenya has only 2 concepts
    assert all(o[a].startswith("The item in the picture is ") for o, a in zip(g.options, g.answers))


def test_globalrg_official_retrieval_proxy_and_gold(fx, tmp_path):
    b = create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official")
    d = b.load()
    assert d.queries == ["breakfast", "wedding"] and d.relevance.sum() == 8 and d.relevance_source == "proxy"
    gold = tmp_path / "gold.csv"
    gold.write_text("universal,u_id,relevant\nwedding,wedding_Kenya_0,1\nwedding,wedding_India_0,0\n")
    g = create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official", gold=str(gold)).load()
    assert g.relevance.sum() == 1 and g.relevance_source == "gold"
    (tmp_path / "bad.csv").write_text("universal,u_id\nwedding,nope\n")
    with pytest.raises(BenchmarkError, match="u_id 'nope'"):
        create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official",
                         gold=str(tmp_path / "bad.csv")).load()


def test_cvqa_list_and_string_options_and_hidden_labels(tmp_path):
    for early in (False, True):
        d = create_benchmark("cvqa", root=F.make_cvqa(tmp_path / f"c{early}", early_revision=early)).load()
        assert d.options[0][1].endswith("flower Lotus") and list(d.answers) == [0, 1, 2, 3]
        assert set(d.groups["country"]) == {"India", "Indonesia"} and "Telugu" in d.groups["language"]
    with pytest.raises(BenchmarkError, match="Label == -1"):
        create_benchmark("cvqa", root=F.make_cvqa(tmp_path / "hidden", labels=False)).load()


def test_worldcuisines_parses_prompt_options_and_kb_urls(fx):
    b = create_benchmark("worldcuisines", root=fx["worldcuisines"],
                         kb_root=str(fx["worldcuisines"].parent / "food-kb"))
    d = b.load()
    assert d.options[0] == [f"a photo of {x}" for x in F.DISHES] and list(d.answers) == [0, 1, 2, 3]
    assert d.images[3].data is None and d.images[3].path is None  # URL not in the KB -> unreadable
    feats = onehot([0, 1, 2, 3])
    r = b.evaluate(KeywordEmbedder(), image_features=feats, valid=np.array([1, 1, 1, 0], bool), n_boot=0)
    assert r["skipped"]["unreadable_image"] == 1 and r["n_samples"] == 3


def test_classification_formats_agree(fx, tmp_path):
    folders = create_benchmark("zeroshot", root=fx["zeroshot"]).load()
    wds = create_benchmark("imagenet1k", root=fx["imagenet1k"]).load()
    pq = create_benchmark("zeroshot", root=F.make_zeroshot_parquet(tmp_path / "pq", ["a", "b", "c"])).load()
    assert len(folders.images) == len(wds.images) == 18
    assert wds.templates == ["a photo of a {c}.", "a picture of a {c}."]
    assert pq.classnames == ["a", "b", "c"] and list(pq.labels) == [0, 0, 1, 1, 2, 2]
    # WDS images are byte ranges into the tar, mixed webp/jpg/png
    assert {w.open().size for w in wds.images} == {(F.SIZE, F.SIZE)}


def test_dollar_street_and_geode_groups(fx, tmp_path):
    ds = create_benchmark("dollar_street", root=fx["dollar_street"])
    d = ds.load()
    assert set(d.groups["income"]) == {"g0", "g1"} and ds.main_metric == "acc5_worst_income"
    nl = create_benchmark("dollar_street", root=F.make_dollar_street_nlphuji(tmp_path / "ds")).load()
    assert nl.classnames == ["bed", "stove", "toothbrush"] and len(nl.images) == 9
    assert all(r.member and r.member.startswith("dollarstreet_test_images/assets/") for r in nl.images)
    assert sorted(set(nl.groups["income"])) == ["q1", "q2", "q3", "q4"] and nl.images[0].open()
    geo = create_benchmark("geode", root=F.make_geode_original(tmp_path / "geo")).load()
    assert set(geo.groups["region"]) == {"Africa", "EastAsia", "Europe"} and geo.classnames == ["bag", "chair", "stove"]
    wg = create_benchmark("geode", root=fx["geode"])
    d = wg.load()
    assert set(d.groups["region"]) <= set(["Africa", "Americas", "EastAsia", "Europe", "SouthEastAsia", "WestAsia"])
    # colour-perfect features: class c images -> keyword of class c (classnames replaced by colour words)
    d.classnames = WORDS[:6]
    r = wg.evaluate(KeywordEmbedder(), image_features=onehot(list(d.labels)), n_boot=0)
    assert r["metrics"]["acc1"] == 1.0 and r["metrics"]["acc1_worst_region"] == 1.0
    assert r["main_metric"] == "acc1_worst_region"


def test_retrieval_formats(fx, tmp_path):
    k = create_benchmark("flickr30k", root=fx["flickr30k"]).load()
    assert len(k.images) == 6 and k.captions[0] == F.CAPTIONS[0]  # the "train" image is excluded
    c = create_benchmark("coco", root=fx["coco"]).load()
    assert Path(c.images[0].path).parent.name == "val2014"
    w = create_benchmark("flickr30k", root=F.make_wds_retrieval(tmp_path / "w")).load()
    assert w.captions == F.CAPTIONS
    p = create_benchmark("flickr30k", root=F.make_nlphuji_flickr_parquet(tmp_path / "p")).load()
    assert len(p.images) == 5  # split == "test" filter on the 31k-style copy
    b = create_benchmark("flickr30k", root=fx["flickr30k"])
    colours = [0, 1, 2, 3, 4, 5]  # image i is colour i, its captions name colour i
    r = b.evaluate(KeywordEmbedder(), image_features=onehot(colours), n_boot=0)
    # "a magenta tile" / "a turquoise tile" name no colour word: they tie with every image -> misses
    assert r["metrics"]["image_retrieval_recall@1"] == pytest.approx(10 / 12)
    assert r["metrics"]["text_retrieval_recall@1"] == 1.0 and r["extra"]["n_captions"] == 12


def test_sugarcrepe_noncontiguous_keys_and_ties(fx):
    b = create_benchmark("sugarcrepe", root=fx["sugarcrepe"])
    d = b.load()
    assert len(d.images) == 5 and d.groups["subset"].count("add_att") == 2
    assert Path(d.images[1].path).name == "000000085330.jpg"  # key "2" after the missing "1"
    # every caption and negative shares its colour word -> all ties -> ties count wrong
    r = b.evaluate(KeywordEmbedder(), image_features=onehot([0, 1, 1, 2, 3]), n_boot=0)
    assert r["metrics"]["accuracy"] == pytest.approx(1 / 5)  # only "green" vs "purple" is decided
    assert r["groups"]["subset=replace_att"]["accuracy"] == 1.0
    assert r["metrics"]["mean_subset_accuracy"] == pytest.approx(1 / 3)


def test_cultwin_twin_scores(fx):
    b = create_benchmark("cultwin", root=fx["cultwin"])
    d = b.load()
    assert len(d.images) == 10 and d.pairs == [("flag_chad", "flag_romania"), ("flag_indonesia", "flag_monaco")]

    class ConceptEmbedder(KeywordEmbedder):
        def embed_texts(self, texts):
            names = ["Chad", "Romania", "Indonesia", "Monaco", "Black Watch"]
            return onehot([next(i for i, n in enumerate(names) if n in t) for t in texts], 5)

    names = sorted(d.concept_texts)  # feature axis = order of ConceptEmbedder names
    axis = {"flag_chad": 0, "flag_romania": 1, "flag_indonesia": 2, "flag_monaco": 3, "tartan_black_watch": 4}
    feats = onehot([axis[c] for c in d.concept_ids], 5)
    feats[d.concept_ids.index("flag_chad")] = onehot([1], 5)[0]  # one Chad image looks like Romania
    r = b.evaluate(ConceptEmbedder(), image_features=feats, n_boot=0)
    m = r["metrics"]
    assert m["concept_acc1"] == pytest.approx(9 / 10) and m["twin_acc"] == pytest.approx(7 / 8)
    assert m["twin_text_score"] == 0.5 and m["n_pairs"] == 2  # Chad's mean image now ties Romania
    assert r["groups"]["region=Africa"]["twin_acc"] == 0.5
    assert "region=Europe|category=flag" in r["groups"]
    assert names  # concept texts exist for all 5 concepts


def test_tiny_model_end_to_end_every_benchmark(fx, tiny_open_clip_dir):
    from cultureclip.backbone import create_backbone
    from cultureclip.inference import Embedder
    from eval_suite.results import make_result, validate_result

    torch.set_num_threads(1)
    emb = Embedder(create_backbone(str(tiny_open_clip_dir)), batch_size=8)
    for name, root in fx.items():
        opts = {"kb_root": str(root.parent / "food-kb")} if name == "worldcuisines" else {}
        r = create_benchmark(name, root=root, **opts).evaluate(emb, n_boot=20, progress=False)
        res = make_result(r.pop("benchmark"), r.pop("task"), str(tiny_open_clip_dir), r.pop("metrics"),
                          n_samples=r.pop("n_samples"), **r)
        validate_result(res)
        main = res["metrics"][res["main_metric"]]
        assert main is None or 0.0 <= main <= 1.0, name
        json.dumps(res)
