"""The one weight-change detector (cultureclip.weights): exact after every kind of write, silent otherwise.

Each write test checks the memoized `checkpoint_sha` against a fresh full pass (`_hash_weights`) and the
label-bank key (`Embedder.weights_fingerprint`) on both backbone formats."""
from __future__ import annotations

import copy
import io
import threading

import pytest
import torch
from torch import nn

from cultureclip import weights
from cultureclip.backbone import create_backbone
from cultureclip.checkpoint import _hash_weights, checkpoint_sha
from cultureclip.inference import Embedder


@pytest.fixture(params=["open_clip", "hf"])
def bb(request, tiny_open_clip_dir, tiny_hf_clip_dir):
    """A backbone of its own (these tests write its weights), in each format."""
    return create_backbone(str(tiny_open_clip_dir if request.param == "open_clip" else tiny_hf_clip_dir))


def _matrix(bb) -> nn.Parameter:
    """The text projection (a 2-D weight of both formats; it moves every text embedding)."""
    m = bb.model
    return m.text_projection if bb.kind == "open_clip" else m.text_projection.weight


def _count_full_hashes(monkeypatch) -> list:
    import cultureclip.checkpoint as ck

    calls: list = []
    real = ck._hash_weights
    monkeypatch.setattr(ck, "_hash_weights", lambda b: calls.append(1) or real(b))
    return calls


def _assert_seen(bb, emb: Embedder, write) -> None:
    """`write(bb)` changes the memoized sha (to the true one of the new weights) and the bank key."""
    sha, fp = checkpoint_sha(bb), emb.weights_fingerprint()
    write(bb)
    assert emb.weights_fingerprint() != fp
    assert checkpoint_sha(bb) == _hash_weights(bb) != sha


def _data_item(bb):
    _matrix(bb).data[1, 2] += 1.0  # one value through .data: no autograd version bump on a plain Parameter


def _data_copy(bb):
    p = _matrix(bb)
    p.data.copy_(torch.randn_like(p))


def _add_no_grad(bb):
    with torch.no_grad():
        _matrix(bb).add_(1e-3)


def _load_state_dict(bb):
    sd = {k: v.clone() for k, v in bb.model.state_dict().items()}
    key = next(k for k in sd if "text_projection" in k)
    sd[key][0, 0] += 1.0
    bb.model.load_state_dict(sd)


def _load_state_dict_assign(bb):
    sd = {k: v.clone() for k, v in bb.model.state_dict().items()}
    key = next(k for k in sd if "text_projection" in k)
    sd[key][0, 0] += 1.0
    bb.model.load_state_dict(sd, assign=True)


def _optimizer_step(bb):
    opt = torch.optim.AdamW(bb.parameters(), lr=1e-2)
    feats = bb.encode_text(bb.tokenize(["a photo of gyoza", "a photo of jiaozi"]))
    feats.pow(2).sum().backward()
    opt.step()


WRITES = [_data_item, _data_copy, _add_no_grad, _load_state_dict, _load_state_dict_assign, _optimizer_step]


@pytest.mark.parametrize("write", WRITES, ids=lambda f: f.__name__.strip("_"))
def test_every_in_place_write_changes_the_sha_and_the_bank_key(bb, write):
    _assert_seen(bb, Embedder(bb), write)


def test_writes_through_a_tensor_assigned_to_data_are_seen(bb):
    """After `p.data = x` the weights alias `x`, whose version counter is not the parameter's (on a model being
    tracked: an Embedder tracks its model from the start)."""
    emb = Embedder(bb)
    p = _matrix(bb)
    x = p.detach().clone()
    p.data = x
    sha, fp = checkpoint_sha(bb), emb.weights_fingerprint()
    x[1, 2] += 1.0
    assert emb.weights_fingerprint() != fp
    assert checkpoint_sha(bb) == _hash_weights(bb) != sha


def test_a_single_value_written_through_data_gives_a_new_label_bank(bb):
    """The bug of issue 19: `weight.data[i, j] += 1` kept the old hash, bank and disk-bank key."""
    emb = Embedder(bb)
    labels = ["gyoza", "jiaozi", "momo"]
    before = emb.label_bank(labels)
    _data_item(bb)
    after = emb.label_bank(labels)
    assert not torch.allclose(after, before, atol=1e-7)
    assert torch.allclose(after, torch.nn.functional.normalize(emb.embed_texts(labels), dim=-1), atol=1e-6)


def test_disk_bank_key_follows_a_data_write(bb, tmp_path):
    from cultureclip.bankcache import BankCache, DiskCachedEmbedder

    emb = DiskCachedEmbedder(bb, BankCache(tmp_path / "banks"))
    key = emb.weights_hash
    _data_item(bb)
    assert emb.weights_hash != key


def test_lora_merge_changes_the_sha(bb):
    from cultureclip.lora import apply_lora, merge_lora

    apply_lora(bb, r=2, towers=("text",))
    with torch.no_grad():  # what training does: the B matrices leave zero
        for name, p in bb.named_parameters():
            if "lora_B" in name:
                p.normal_()
    emb = Embedder(bb)
    _assert_seen(bb, emb, merge_lora)


def test_buffer_data_write_changes_the_bank_key(tiny_open_clip_dir):
    """Buffers are tracked too: open_clip's causal attention mask (not saved, so not in the sha) shapes every
    text embedding."""
    bb = create_backbone(str(tiny_open_clip_dir))
    emb = Embedder(bb)
    fp = emb.weights_fingerprint()
    bb.model.attn_mask.data[0, 1] = 0.0
    assert emb.weights_fingerprint() != fp


def test_no_false_invalidation(bb, monkeypatch):
    """Forward passes (eval and train, with backward), state_dict, reading `.data`, moving to the device it is
    on, copies and label-bank lookups write nothing: no new revision, no second full hash."""
    calls = _count_full_hashes(monkeypatch)
    emb = Embedder(bb)
    sha, fp = checkpoint_sha(bb), emb.weights_fingerprint()
    emb.label_bank(["gyoza", "jiaozi"])
    emb.embed_images([torch.zeros(3, bb.image_size, bb.image_size)])
    bb.train()
    bb.encode_text(bb.tokenize(["a photo of gyoza"])).sum().backward()
    bb.eval()
    bb.model.state_dict()
    _ = [p.data.sum() for p in bb.parameters()]
    bb.to("cpu")
    copy.deepcopy(bb)
    for _ in range(3):
        emb.label_bank(["gyoza", "jiaozi"])
        assert checkpoint_sha(bb) == sha and emb.weights_fingerprint() == fp
    assert calls == [1]


def test_one_memo_for_the_sha_and_the_banks(bb, monkeypatch):
    """The label-bank key and checkpoint_sha share one detector: after a write, one full hash serves both."""
    from cultureclip.bankcache import weights_hash

    calls = _count_full_hashes(monkeypatch)
    emb = Embedder(bb)
    weights_hash(bb), checkpoint_sha(bb), emb.weights_fingerprint()
    _data_item(bb)
    emb.weights_fingerprint(), weights_hash(bb), checkpoint_sha(bb)
    assert len(calls) == 2


def test_concurrent_callers_hash_once(bb, monkeypatch):
    calls = _count_full_hashes(monkeypatch)
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(checkpoint_sha(bb))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 1 and len(out) == 4 and calls == [1]


def test_copies_of_tracked_weights_are_plain(bb):
    """Tracking belongs to one model: a deep copy (a WiSE-FT blend) carries plain tensors, its own hash equals
    the original's, and a pickled state dict loads with weights_only."""
    checkpoint_sha(bb)
    assert all(weights.is_tracked(p) and type(p) is nn.Parameter for p in bb.parameters())
    twin = copy.deepcopy(bb)
    assert not any(weights.is_tracked(p) for p in twin.parameters())
    assert all(type(p) is nn.Parameter for p in twin.parameters())
    assert all(type(b) is torch.Tensor for b in twin.buffers())
    assert checkpoint_sha(twin) == checkpoint_sha(bb)
    buf = io.BytesIO()
    torch.save(bb.model.state_dict(keep_vars=True), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert all(type(v) in (nn.Parameter, torch.Tensor) for v in loaded.values())


def test_tracked_model_saves_and_loads(bb, tmp_path):
    from cultureclip.checkpoint import save_model

    sha = checkpoint_sha(bb)
    save_model(bb, tmp_path / "m")
    assert checkpoint_sha(create_backbone(str(tmp_path / "m"))) == sha


def test_raw_memory_writes_need_forget(tiny_open_clip_dir):
    """The documented limit: a write through a numpy view bypasses PyTorch; `forget` (Embedder.invalidate)
    declares it."""
    bb = create_backbone(str(tiny_open_clip_dir))
    emb = Embedder(bb)
    sha = checkpoint_sha(bb)
    _matrix(bb).detach().numpy()[1, 2] += 1.0
    assert checkpoint_sha(bb) == sha  # not seen (documented)
    emb.invalidate()
    assert checkpoint_sha(bb) == _hash_weights(bb) != sha


def test_untrackable_parameters_are_read_in_full():
    """A Parameter subclass (quantized weights, say) keeps its class; its bytes are part of the revision."""

    class OddParameter(nn.Parameter):
        pass

    m = nn.Linear(4, 4)
    m.weight = OddParameter(m.weight.detach().clone())
    rev = weights.revision(m)
    assert type(m.weight) is OddParameter and weights.revision(m) == rev
    m.weight.data[1, 2] += 1.0
    assert weights.revision(m) != rev


def test_revisions_are_never_reused():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    ra, rb = weights.revision(a), weights.revision(b)
    with torch.no_grad():
        a.weight.add_(1)
    assert len({ra, rb, weights.revision(a)}) == 3


def test_renaming_a_submodule_is_a_change_and_cycles_are_walked_once():
    """The sha hashes state_dict names, so a renamed submodule must give a new revision."""
    m = nn.Sequential()
    m.add_module("a", nn.Linear(2, 2))
    m.add_module("b", nn.Linear(2, 2))
    rev = weights.revision(m)
    m.add_module("c", m._modules.pop("b"))  # same tensors, same order, another name
    renamed = weights.revision(m)
    assert renamed != rev
    m.add_module("loop", m)  # a module graph with a cycle (nn.Module allows it)
    looped = weights.revision(m)
    assert weights.revision(m) == looped != renamed


def test_copies_and_pickles_of_buffers_keep_their_own_attributes():
    m = nn.Linear(2, 2)
    m.register_buffer("scale", torch.ones(2))
    m.scale.note = "s"
    weights.revision(m)
    twin = copy.deepcopy(m)
    assert twin.scale.note == "s" and not hasattr(twin.scale, weights._SERIAL)
    func, args = m.scale.__reduce_ex__(2)  # what pickle would rebuild (no unpickling of arbitrary state here)
    s = func(*args)
    assert type(s) is torch.Tensor and s.note == "s" and torch.equal(s, m.scale)


def test_inference_mode_buffers_are_read_not_tracked():
    """A tensor made under torch.inference_mode has no version counter: it is hashed on each call instead."""
    m = nn.Linear(2, 2)
    with torch.inference_mode():
        m.register_buffer("cache", torch.ones(3))
    rev = weights.revision(m)
    assert type(m.cache) is torch.Tensor and weights.revision(m) == rev
    with torch.inference_mode():
        m.cache[0] = 2.0
    assert weights.revision(m) != rev


def test_untracked_parameters_keep_pytorchs_data(bb):
    """The `.data` property on nn.Parameter is PyTorch's for a parameter no module here tracks."""
    checkpoint_sha(bb)  # installs it
    free = nn.Parameter(torch.zeros(2, 2))
    assert not weights.is_tracked(free)
    free.data[0, 0] += 1.0  # PyTorch's .data: a view with its own version counter
    assert free._version == 0 and free[0, 0] == 1.0
    free.data = torch.ones(3)  # and its setter
    assert free.shape == (3,) and not weights.is_tracked(free)


def test_tracking_costs_no_dispatch_on_parameters():
    """Parameters keep their exact class: PyTorch's per-op `__torch_function__` check skips them."""
    m = nn.Linear(2, 2)
    weights.revision(m)
    assert type(m.weight) is nn.Parameter and weights.is_tracked(m.weight)
