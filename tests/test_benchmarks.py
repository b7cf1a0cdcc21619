"""Benchmark adapters: each reads a fixture written in the real published format, and scores exact
numbers with hand-set features (a keyword embedder), plus one end-to-end pass with a tiny open_clip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_suite.benchmarks import BENCHMARKS, BenchmarkError, BenchmarkNotFoundError, create_benchmark
from eval_suite.results import find_group
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


class TableEmbedder(KeywordEmbedder):
    """Text -> one-hot of its position in a fixed vocabulary (unknown texts share one 'other' axis), and a
    record of every text embedded: exact scores for real captions that carry no keyword."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab))}
        self.seen = []

    def embed_texts(self, texts):
        self.seen.extend(texts)
        return onehot([self.vocab.get(t, len(self.vocab)) for t in texts], len(self.vocab) + 1)

    def image(self, texts):
        """Image features that match the given texts exactly."""
        return onehot([self.vocab[t] for t in texts], len(self.vocab) + 1)


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
    assert r.metrics["accuracy"] == 1.0 and r.n_samples == 5
    wrong = [WORDS.index("ao dai"), WORDS.index("kebaya"), WORDS.index("ao dai"), WORDS.index("kimono"),
             WORDS.index("kimono")]
    r = b.evaluate(KeywordEmbedder(), image_features=onehot(wrong), n_boot=0)
    assert r.metrics["accuracy"] == pytest.approx(2 / 5)
    assert find_group(r.groups, image_kind="main")["metrics"]["accuracy"] == 0.0


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
    import hashlib
    import pyarrow.parquet as pq

    b = create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official")
    d = b.load()
    assert d.queries == ["breakfast", "wedding"] and d.relevance.sum() == 8 and d.relevance_source == "proxy"
    # gold files key on what real rows have: the image bytes' sha256 or the row index (no u_id column exists)
    table = pq.read_table(next((fx["globalrg_retrieval"] / "data").glob("*.parquet"))).to_pylist()
    assert set(table[0]) == {"image", "region", "universal"}
    kenya = hashlib.sha256(table[0]["image"]["bytes"]).hexdigest()
    gold = tmp_path / "gold.csv"
    gold.write_text(f"universal,image_sha256,index,relevant\nwedding,{kenya},,1\nwedding,,1,0\nbreakfast,,6,1\n")
    g = create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official", gold=str(gold)).load()
    assert g.relevance_source == "gold" and g.relevance.sum() == 2
    assert g.relevance[1, 0] and g.relevance[0, 6] and not g.relevance[1, 1]
    (tmp_path / "uid.csv").write_text("universal,u_id\nwedding,wedding_Kenya_0\n")
    with pytest.raises(BenchmarkError, match="no id column"):
        create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official",
                         gold=str(tmp_path / "uid.csv")).load()
    (tmp_path / "bad.csv").write_text("universal,image_sha256\nwedding," + "0" * 64 + "\n")
    with pytest.raises(BenchmarkError, match="matches no image"):
        create_benchmark("globalrg_retrieval", root=fx["globalrg_retrieval"], protocol="official",
                         gold=str(tmp_path / "bad.csv")).load()


def test_globalrg_accepts_the_authors_ubc_vl_copies(tmp_path, monkeypatch):
    from eval_suite.benchmarks import base

    r, gr = create_benchmark("globalrg_retrieval"), create_benchmark("globalrg_grounding")
    assert r.hub_candidates() == ["UBC-VL/GlobalRG-Retrieval", "UBCNLP/GlobalRG-Retrieval"]
    assert gr.hub_candidates()[0] == "UBC-VL/globalrg-grounding-task"
    tried = []

    def fake_snapshot(repo_id, **kw):  # only the UBCNLP copy is cached here
        tried.append(repo_id)
        if repo_id != "UBCNLP/GlobalRG-Retrieval":
            raise FileNotFoundError(repo_id)
        return str(F.make_globalrg_retrieval(tmp_path / "cache"))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = create_benchmark("globalrg_retrieval").load()
    assert tried == ["UBC-VL/GlobalRG-Retrieval", "UBCNLP/GlobalRG-Retrieval"] and len(d.images) == 5
    with pytest.raises(base.BenchmarkNotFoundError, match="UBC-VL/globalrg-grounding-task"):
        create_benchmark("globalrg_grounding").load()


def test_cvqa_list_and_string_options_and_hidden_labels(tmp_path):
    for early in (False, True):
        d = create_benchmark("cvqa", root=F.make_cvqa(tmp_path / f"c{early}", early_revision=early)).load()
        assert d.options[0][1].endswith("flower Lotus") and list(d.answers) == [0, 1, 2, 3]
        assert set(d.groups["country"]) == {"India", "Indonesia"} and "Telugu" in d.groups["language"]
    with pytest.raises(BenchmarkError, match="Label == -1"):
        create_benchmark("cvqa", root=F.make_cvqa(tmp_path / "hidden", labels=False)).load()


def test_worldcuisines_real_rows_options_answers_and_kb_urls(fx):
    b = create_benchmark("worldcuisines", root=fx["worldcuisines"],
                         kb_root=str(fx["worldcuisines"].parent / "food-kb"))
    d = b.load()
    rows = F.worldcuisines_rows(1)
    assert d.options[0] == [f"a photo of {x}" for x in
                            ["Eggplant papoutsaki", "Stuffed eggplant", "Makdous", "Stuffed tomatoes", "Stuffed squid"]]
    assert list(d.answers) == [r["multi_choice_answer"] - 1 for r in rows] == [1, 0, 4, 1, 1]  # 1-based in the file
    assert len(d.options[4]) == 4  # qa_id 137 has 4 options
    assert [o[a] for o, a in zip(d.options, d.answers)] == [f"a photo of {r['answer']}" for r in rows]
    missing = [r["food_id"] == F.WC_FOOD_NOT_IN_KB for r in rows]
    assert [im.data is None and im.path is None for im in d.images] == missing  # URL not in the KB -> unreadable
    emb = TableEmbedder([t for o in d.options for t in o])
    feats = emb.image([o[a] for o, a in zip(d.options, d.answers)])
    feats[0] = emb.image([d.options[0][0]])[0]  # question 0 looks like a wrong dish
    r = b.evaluate(emb, image_features=feats, valid=np.array([not m for m in missing]), n_boot=0)
    assert r.skipped["unreadable_image"] == 1 and r.n_samples == 4
    assert r.metrics["accuracy"] == pytest.approx(3 / 4)
    t2 = create_benchmark("worldcuisines", root=fx["worldcuisines"], task=2,
                          kb_root=str(fx["worldcuisines"].parent / "food-kb")).load()
    assert t2.options[0][t2.answers[0]] == "a dish from Hungary" and len(t2.images) == 2


def test_classification_formats_agree(fx, tmp_path):
    folders = create_benchmark("zeroshot", root=fx["zeroshot"]).load()
    wds = create_benchmark("imagenet1k", root=fx["imagenet1k"]).load()
    pq = create_benchmark("zeroshot", root=F.make_zeroshot_parquet(tmp_path / "pq", ["a", "b", "c"])).load()
    assert len(folders.images) == len(wds.images) == 18
    names, templates = F.clip_benchmark_imagenet()
    assert wds.classnames == names[:6] == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark",
                                           "electric ray"]
    assert wds.templates == templates and len(templates) == 80  # clip_benchmark's own files
    assert pq.classnames == ["a", "b", "c"] and list(pq.labels) == [0, 0, 1, 1, 2, 2]
    # WDS images are byte ranges into the tar, mixed webp/jpg/png
    assert {w.open().size for w in wds.images} == {(F.SIZE, F.SIZE)}


def test_imagenet_wnid_tree_prompts_tench_with_80_templates(tmp_path):
    b = create_benchmark("imagenet1k", root=F.make_imagenet_val_tree(tmp_path / "inet", classes=range(1000), per_class=1))
    d = b.load()
    assert d.classnames[:3] == ["tench", "goldfish", "great white shark"] and list(d.labels) == list(range(1000))
    assert len(d.templates) == 80 and b.warnings == []  # the complete tree: no warning
    emb = TableEmbedder([])
    b.evaluate(emb, image_features=torch.ones(1000, 1), n_boot=0)
    assert "a photo of a tench." in emb.seen and "a bad photo of a goldfish." in emb.seen
    assert not any("n01440764" in t for t in emb.seen) and len(emb.seen) == 1000 * 80


def test_partial_imagenet_tree_keeps_the_standard_indices_and_warns(tmp_path, caplog):
    """Three WordNet-id folders used to become a 3-way task with labels 0..2 (inflated accuracy, no word)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    b = create_benchmark("imagenet1k", root=F.make_imagenet_val_tree(tmp_path / "inet", classes=(5, 300, 999)))
    with caplog.at_level("WARNING"):
        d = b.load()
    assert list(d.labels) == [5, 5, 300, 300, 999, 999] and d.classnames == list(IMAGENET_CLASSNAMES)
    assert len(b.warnings) == 1 and "only 3 of the 1000 classes" in b.warnings[0] and "inet" in b.warnings[0]
    assert b.warnings[0] in caplog.text  # logged loudly as well
    # and recorded in the result: a 1000-way task, so images of class 999 are scored against all 1000 names
    emb = TableEmbedder([])
    r = b.evaluate(emb, image_features=torch.ones(6, 1), n_boot=0)
    assert r.warnings == b.warnings and len(emb.seen) == 1000 * 80
    # the same copy under the generic class-folder benchmark is a user-defined task: no such rule
    z = create_benchmark("zeroshot", root=tmp_path / "inet")
    assert list(z.load().labels) == [0, 0, 1, 1, 2, 2] and z.warnings == []


def test_imagenet_hf_parquet_classlabel_maps_to_clip_names(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    root = F.make_imagenet_hf_parquet(tmp_path / "hf")
    b = create_benchmark("imagenet1k", root=root)
    d = b.load()  # the test split's labels are -1 (hidden): the validation split is used
    assert list(d.labels) == [0, 0, 1, 1, 2, 2, 999, 999] and d.classnames == list(IMAGENET_CLASSNAMES)
    assert d.classnames[0] == "tench" and d.classnames[999] == "toilet paper"
    assert F.imagenet_synsets()[0][1] == "tench, Tinca tinca"  # what the ClassLabel holds
    only_test = F.make_imagenet_hf_parquet(tmp_path / "t")
    (only_test / "data" / "validation-00000-of-00001.parquet").unlink()
    with pytest.raises(BenchmarkError, match="hidden test labels"):
        create_benchmark("imagenet1k", root=only_test).load()


def test_id_like_class_names_warn_loudly(tmp_path, caplog):
    F.make_zeroshot_folders(tmp_path / "ids", ["n99999999", "n99999998"])  # not ImageNet ids: cannot be mapped
    b = create_benchmark("zeroshot", root=tmp_path / "ids")
    with caplog.at_level("WARNING"):
        b.load()
    assert "look like ids" in caplog.text and b.warnings
    r = b.evaluate(KeywordEmbedder(), image_features=onehot([0] * 6), n_boot=0)
    assert "look like ids" in r.warnings[0] and r.result_fields()["extra"]["warnings"] == r.warnings
    ok = create_benchmark("zeroshot", root=F.make_zeroshot_folders(tmp_path / "words", ["kimono", "sari"]))
    ok.load()
    assert ok.warnings == []


def test_dollar_street_and_geode_groups(fx, tmp_path):
    ds = create_benchmark("dollar_street", root=fx["dollar_street"])
    d = ds.load()
    assert set(d.groups["income"]) == {"g0", "g1"} and ds.main_metric == "acc5_worst_income"
    nl_b = create_benchmark("dollar_street", root=F.make_dollar_street_nlphuji(tmp_path / "ds"))
    nl = nl_b.load()
    assert nl.classnames == ["bed", "stove", "toothbrush"] and len(nl.images) == 9 and len(nl.templates) == 80
    assert all(r.member and r.member.startswith("dollarstreet_test_images/") and r.member.count("/") == 1
               for r in nl.images)  # the zip's flat layout, found from imageRelPath's file name
    assert sorted(set(nl.groups["income"])) == ["q1", "q2", "q3", "q4"] and nl.images[0].open()
    assert any("not DataComp's class list" in w for w in nl_b.warnings)
    # DataComp's classnames.txt beside the CSV: labels follow it, rows whose topics are not in it are dropped
    root = F.make_dollar_street_nlphuji(tmp_path / "ds2", zipped=False)
    (root / "classnames.txt").write_text("toothbrushes\nstove\n")
    b2 = create_benchmark("dollar_street", root=root)
    d2 = b2.load()
    assert d2.classnames == ["toothbrushes", "stove"] and list(d2.labels) == [0, 1] * 3 and b2.notes["no_class"] == 3
    assert all(r.path and "dollarstreet_test_images" in r.path for r in d2.images) and b2.warnings == []
    for layout in ("release", "authors"):
        geo = create_benchmark("geode", root=F.make_geode_original(tmp_path / f"geo_{layout}", layout)).load()
        assert geo.groups["region"] == ["Africa"] * 3 + ["EastAsia"] * 3 + ["Europe"] * 3, layout
        assert geo.classnames == ["bag", "dustbin", "hand soap"] and len(geo.templates) == 80
        assert all(im.path for im in geo.images) and list(geo.labels) == [0, 2, 1] * 3
    (tmp_path / "geo_bad").mkdir()
    (tmp_path / "geo_bad" / "index.csv").write_text("file_name,object\nx.jpg,bag\n")
    with pytest.raises(BenchmarkError, match="file_path, object, region, ip_country"):
        create_benchmark("geode", root=tmp_path / "geo_bad").load()
    wg = create_benchmark("geode", root=fx["geode"])
    d = wg.load()
    assert set(d.groups["region"]) <= set(["Africa", "Americas", "EastAsia", "Europe", "SouthEastAsia", "WestAsia"])
    # colour-perfect features: class c images -> keyword of class c (classnames replaced by colour words)
    d.classnames = WORDS[:6]
    r = wg.evaluate(KeywordEmbedder(), image_features=onehot(list(d.labels)), n_boot=0)
    assert r.metrics["acc1"] == 1.0 and r.metrics["acc1_worst_region"] == 1.0
    assert r.main_metric == "acc1_worst_region"


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
    assert r.metrics["image_retrieval_recall@1"] == pytest.approx(10 / 12)
    assert r.metrics["text_retrieval_recall@1"] == 1.0 and r.extra["n_captions"] == 12


def test_sugarcrepe_real_rows_noncontiguous_keys_and_ties(fx):
    b = create_benchmark("sugarcrepe", root=fx["sugarcrepe"])
    d = b.load()
    rows = F.sugarcrepe_rows()
    assert len(d.images) == 5 and d.groups["subset"] == ["add_att"] * 2 + ["replace_att"] + ["swap_obj"] * 2
    assert [Path(im.path).name for im in d.images[3:]] == [rows["swap_obj"][k]["filename"] for k in ("107", "109")]
    assert all(o[0] == e["caption"] for o, e in zip(d.options, [e for s in rows.values() for e in s.values()]))
    emb = TableEmbedder([t for o in d.options for t in o])
    feats = emb.image([o[0] for o in d.options])  # every image matches its true caption ...
    feats[1] = emb.image([d.options[1][1]])[0]  # ... except pair 1 (matches the negative)
    feats[3] = emb.image([d.options[3][0]])[0] + emb.image([d.options[3][1]])[0]  # and pair 3: a tie
    r = b.evaluate(emb, image_features=feats, n_boot=0)
    assert r.metrics["accuracy"] == pytest.approx(3 / 5)  # ties count wrong
    assert find_group(r.groups, subset="replace_att")["metrics"]["accuracy"] == 1.0
    assert r.metrics["mean_subset_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)


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
    m = r.metrics
    assert m["concept_acc1"] == pytest.approx(9 / 10) and m["twin_acc"] == pytest.approx(7 / 8)
    assert m["twin_text_score"] == 0.5 and m["n_pairs"] == 2  # Chad's mean image now ties Romania
    africa = find_group(r.groups, region="Africa")
    assert africa["metrics"]["twin_acc"] == 0.5 and africa["metrics"]["n_twin"] == 2  # merged twin-acc groups
    assert find_group(r.groups, category="flag", region="Europe") is not None
    assert names  # concept texts exist for all 5 concepts
    per_item = r.samples["twin_acc"]  # per image, for paired comparisons; None: no twin in the split
    assert len(per_item) == 10 and [per_item[i] for i, c in enumerate(d.concept_ids) if c == "tartan_black_watch"] == [None, None]
    assert per_item[d.concept_ids.index("flag_chad")] == 0.0 and sum(v for v in per_item if v is not None) == 7


def test_tiny_model_end_to_end_every_benchmark(fx, tiny_open_clip_dir):
    from cultureclip.backbone import create_backbone
    from cultureclip.inference import Embedder
    from eval_suite.benchmarks import BenchmarkResult
    from eval_suite.results import make_result, validate_result

    torch.set_num_threads(1)
    emb = Embedder(create_backbone(str(tiny_open_clip_dir)), batch_size=8)
    for name, root in fx.items():
        opts = {"kb_root": str(root.parent / "food-kb")} if name == "worldcuisines" else {}
        r = create_benchmark(name, root=root, **opts).evaluate(emb, n_boot=20, progress=False)
        assert isinstance(r, BenchmarkResult) and r.benchmark == name and r.main_metric in r.metrics, name
        res = make_result(model=str(tiny_open_clip_dir), **r.result_fields())
        validate_result(res)
        main = res["metrics"][res["main_metric"]]
        assert main is not None and 0.0 <= main <= 1.0, name
        assert res["n_samples"] > 0, name
        # deterministic: the same model on the same data gives the same numbers (bootstrap seeded too)
        again = create_benchmark(name, root=root, **opts).evaluate(emb, n_boot=20, progress=False)
        assert again.metrics == res["metrics"] and again.n_samples == res["n_samples"], name
        assert again.ci == res.get("ci"), name
        json.dumps(res)
