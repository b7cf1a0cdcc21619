"""Embedder: batching, cached label banks, zero-shot probabilities, twin scores (tiny real models)."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cultureclip.backbone import create_backbone
from cultureclip.inference import Embedder, classify


@pytest.fixture(scope="module")
def emb(tiny_open_clip_dir):
    return Embedder(create_backbone(str(tiny_open_clip_dir)), batch_size=3)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)) for i in range(n)]


def test_batched_equals_single(emb):
    ims = _images(7)
    feats = emb.embed_images(ims)  # 3 batches of <= 3
    one = torch.cat([emb.embed_images([im]) for im in ims])
    assert feats.shape == (7, emb.backbone.embed_dim) and feats.dtype == torch.float32
    assert torch.allclose(feats, one, atol=1e-5)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(7), atol=1e-5)
    t = emb.embed_texts(["hanbok", "hanfu", "kimono", "jiaozi", "gyoza"])
    assert torch.allclose(t[1], emb.embed_texts(["hanfu"])[0], atol=1e-5)
    assert emb.embed_images([]).shape == (0, emb.backbone.embed_dim)


def test_label_bank_is_template_ensemble_and_cached(emb, monkeypatch):
    labels, templates = ["hanbok", "hanfu"], ["a photo of {}.", "a {} worn at a festival"]
    bank = emb.label_bank(labels, templates)
    manual = torch.nn.functional.normalize(
        torch.stack([emb.embed_texts([t.format(lab) for t in templates]).mean(0) for lab in labels]), dim=-1)
    assert torch.allclose(bank, manual, atol=1e-5)
    calls = {"n": 0}
    real = emb.embed_texts

    def counting(texts):
        calls["n"] += 1
        return real(texts)

    monkeypatch.setattr(emb, "embed_texts", counting)
    assert torch.equal(emb.label_bank(labels, templates), bank) and calls["n"] == 0  # cached
    emb.label_bank(labels + ["kimono"], templates)
    assert calls["n"] == 1  # a new label set is embedded once
    emb.invalidate()
    emb.label_bank(labels, templates)
    assert calls["n"] == 2  # weights changed -> recomputed
    with pytest.raises(ValueError, match="placeholder"):
        emb.label_bank(labels, ["no placeholder"])


@pytest.mark.parametrize("template, found", [("{} and {}", "found 2 ({}, {})"), ("a photo of {c}.", "found 1 ({c})"),
                                             ("a photo of {0}", "found 1 ({0})"), ("no label", "found 0"),
                                             ("a {", "cannot be formatted")])
def test_templates_without_exactly_one_placeholder_are_refused(emb, template, found):
    """'{} and {}' used to give a bare IndexError from str.format; '{c}' a KeyError."""
    with pytest.raises(ValueError, match=re.escape(found)) as exc:
        emb.label_bank(["x"], [template])
    assert repr(template) in str(exc.value) and "'{}'" in str(exc.value)
    # literal braces are fine
    assert emb.label_bank(["x"], ["{{x}} {}"]).shape == (1, emb.backbone.embed_dim)


def test_zero_shot_and_classify(emb):
    ims = _images(4, seed=1)
    feats = emb.embed_images(ims)
    bank = emb.label_bank(["gyoza", "jiaozi", "mandu"])
    probs = emb.zero_shot(feats, bank)
    assert probs.shape == (4, 3) and torch.allclose(probs.sum(-1), torch.ones(4), atol=1e-5)
    expected = (emb.logit_scale() * feats @ bank.T).softmax(-1)
    assert torch.allclose(probs, expected, atol=1e-6)
    top = classify(emb, ims[:2], ["gyoza", "jiaozi", "mandu"], top_k=2)
    assert len(top) == 2 and len(top[0]) == 2 and top[0][0][1] >= top[0][1][1]


@pytest.fixture()
def fresh(tiny_open_clip_dir):
    """An Embedder of its own: these tests change the weights."""
    return Embedder(create_backbone(str(tiny_open_clip_dir)), batch_size=3)


def test_label_bank_key_cannot_collide(fresh):
    """Labels and templates are keyed as tuples: no joined string makes two lists meet."""
    two = fresh.label_bank(["a", "b"])
    one = fresh.label_bank(["a\x00Lb"])
    assert two.shape[0] == 2 and one.shape[0] == 1
    assert torch.allclose(one, fresh.embed_texts(["a\x00Lb"]), atol=1e-5)
    x = fresh.label_bank(["foo", "bar"], ["{}"])
    y = fresh.label_bank(["bar"], ["{}\x00Lfoo"])
    assert x.shape[0] == 2 and y.shape[0] == 1


def test_label_bank_follows_the_weights_not_the_object(fresh):
    labels = ["hanbok", "hanfu", "kimono"]
    bank = fresh.label_bank(labels)
    proj = fresh.backbone.model.text_projection
    with torch.no_grad():
        proj.mul_(-1.0)  # in place, same object, no invalidate(): the version counter moves
    flipped = fresh.label_bank(labels)
    assert torch.allclose(flipped, -bank, atol=1e-5)
    proj.data.copy_(torch.randn_like(proj))  # through .data: no version bump; invalidate() says so
    fresh.invalidate()
    again = fresh.label_bank(labels)
    assert not torch.allclose(again, flipped, atol=1e-3)
    assert torch.allclose(again, torch.nn.functional.normalize(fresh.embed_texts(labels), dim=-1), atol=1e-5)
    state = {k: v.clone() for k, v in fresh.backbone.model.state_dict().items()}
    state["text_projection"] = torch.randn_like(state["text_projection"])
    fresh.backbone.model.load_state_dict(state)  # a WiSE-FT style reload
    assert not torch.allclose(fresh.label_bank(labels), again, atol=1e-3)


def test_label_bank_returns_a_copy(fresh):
    bank = fresh.label_bank(["gyoza", "jiaozi"])
    keep = bank.clone()
    bank.zero_()  # a caller normalizing/scaling in place must not corrupt the cache
    assert torch.equal(fresh.label_bank(["gyoza", "jiaozi"]), keep)


def test_label_bank_of_no_labels_is_empty(fresh):
    bank = fresh.label_bank([], ["a photo of {}."])
    assert bank.shape == (0, fresh.backbone.embed_dim)
    feats = fresh.embed_images(_images(2))
    assert fresh.zero_shot(feats, bank).shape == (2, 0)


def test_label_bank_hot_path_does_not_hash(fresh, monkeypatch):
    """A cache hit reads version counters only (never the weights); a write, `.data` included, re-embeds."""
    import cultureclip.weights as weights

    reads, texts = [], []
    real_read, real_embed = weights._content_digest, fresh.embed_texts
    monkeypatch.setattr(weights, "_content_digest", lambda *a, **k: reads.append(1) or real_read(*a, **k))
    monkeypatch.setattr(fresh, "embed_texts", lambda t: texts.append(len(t)) or real_embed(t))
    labels = ["hanbok", "hanfu", "kimono"]
    bank = fresh.label_bank(labels)
    assert texts == [3]
    for _ in range(3):
        assert torch.equal(fresh.label_bank(labels), bank)
    assert texts == [3] and reads == []  # no change: no weight read, no embedding
    with torch.no_grad():
        fresh.backbone.model.text_projection.mul_(-1.0)  # in place: the version counter moves
    flipped = fresh.label_bank(labels)
    assert texts == [3, 3]  # recomputed
    assert torch.allclose(flipped, -bank, atol=1e-5)
    fresh.label_bank(labels)
    assert texts == [3, 3]
    fresh.backbone.model.text_projection.data[1, 2] += 1.0  # one value, through .data (no autograd version bump)
    moved = fresh.label_bank(labels)
    assert texts == [3, 3, 3] and not torch.allclose(moved, flipped, atol=1e-6)
    assert reads == []


def test_cpu_embeddings_are_full_precision_unless_asked(emb):
    """No autocast on the CPU without an amp_dtype: embeddings equal the backbone's own float32 forward."""
    bb = emb.backbone
    assert emb.amp_dtype is None
    with torch.no_grad():
        ref = torch.nn.functional.normalize(bb.encode_text(bb.tokenize(["hanbok", "kimono"])).float(), dim=-1)
        ims = _images(2)
        ref_img = torch.nn.functional.normalize(bb.encode_image(emb.preprocess(ims)).float(), dim=-1)
    assert torch.allclose(emb.embed_texts(["hanbok", "kimono"]), ref, atol=1e-6)
    assert torch.allclose(emb.embed_images(ims), ref_img, atol=1e-6)


def test_texts_are_batched_shortest_first_and_returned_in_order(tiny_hf_clip_dir):
    """An HF text tower runs each batch at its longest prompt's length: batching by length saves the padding."""
    e = Embedder(create_backbone(str(tiny_hf_clip_dir)), batch_size=1)  # 4 texts per batch
    texts = [("word " * n).strip() for n in (9, 1, 7, 3, 12, 2, 8, 5, 4, 11, 6, 10)]
    seen = []
    real = e.backbone.tokenize

    def spy(batch):
        seen.append([len(t) for t in batch])
        return real(batch)

    e.backbone.tokenize = spy
    got = e.embed_texts(texts)
    flat = [n for b in seen for n in b]
    assert flat == sorted(flat) and len(seen) == 3, seen
    alone = torch.cat([e.embed_texts([t]) for t in texts])
    assert torch.allclose(got, alone, atol=1e-5)
