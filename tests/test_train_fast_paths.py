"""The training step's fast paths give what the plain ones give, up to float rounding.

- The cut text pass (``ClipBackbone.encode_text_cut``): texts encoded in groups of similar length, each stopped
  after its pooled token, give the embeddings and gradients of the full 77-token pass, for both backbones (the
  HF backbone already cut at the batch's longest text: ``test_hf_text_padding_trim_is_exact``); where the cut
  would not be exact (bidirectional text towers, last-token pooling) it is not made.
- The fused AdamW of ``_build_optimizer``: the updates of torch's default per-tensor AdamW."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from cultureclip.backbone import create_backbone, length_buckets
from cultureclip.testing import save_hf_clip, save_open_clip

TEXTS = ["gyoza", "a photo of jiaozi, a Chinese dumpling with pleated edges, steaming on a bamboo tray at a "
         "night market in Xi'an", "", "a photo of momo", "momo", "a carved wooden mask painted red and gold",
         "a photo of gyoza"]


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def backbone(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "open_clip":
        return create_backbone(str(save_open_clip(folder, "tiny", seed=0)))
    return create_backbone(str(save_hf_clip(folder, "tiny", seed=0)))


def _grads(bb, feats):
    bb.zero_grad(set_to_none=True)
    (feats * torch.linspace(-1, 1, feats.numel()).reshape(feats.shape)).sum().backward()
    return {n: p.grad.clone() for n, p in bb.named_parameters() if p.grad is not None}


def test_cut_pass_gives_the_full_pass_embeddings_and_gradients(backbone):
    bb = backbone.train()
    tokens = bb.tokenize(TEXTS)
    ends = bb._text_ends(tokens)
    assert ends is not None and int(ends.max()) + 1 < tokens.shape[1]  # there is padding to cut
    full = bb(texts=tokens, cut_texts=False)["text_features"]
    g_full = _grads(bb, full)
    cut = bb(texts=tokens)["text_features"]
    g_cut = _grads(bb, cut)
    assert torch.allclose(cut, full, atol=1e-5, rtol=0)
    assert g_cut.keys() == g_full.keys()
    for name, g in g_full.items():
        assert torch.allclose(g_cut[name], g, atol=1e-5, rtol=1e-4), name


def test_cut_pass_runs_short_and_long_texts_apart(backbone, monkeypatch):
    bb = backbone.eval()
    tokens = bb.tokenize(["x"] * 40 + [TEXTS[1]] * 2)
    widths = []
    encode = type(bb).encode_text
    monkeypatch.setattr(type(bb), "encode_text", lambda self, t, normalize=True: (widths.append(t.shape), encode(self, t, normalize))[1])
    with torch.no_grad():
        cut = bb(texts=tokens)["text_features"]
    assert [w[0] for w in widths] == [40, 2]  # the short prompts are not padded to the long caption
    assert widths[0][1] == 3 and widths[1][1] < tokens.shape[1]  # start, "x", end; the caption's own length
    with torch.no_grad():
        assert torch.allclose(cut, bb.encode_text(tokens), atol=1e-5, rtol=0)


def test_open_clip_without_a_causal_single_token_pool_is_not_cut(tmp_path):
    bb = create_backbone(str(save_open_clip(tmp_path, "tiny", seed=0)))
    tokens = bb.tokenize(TEXTS)
    bb.model.text_pool_type = "last"  # pools the last column: the padding matters
    assert bb._text_ends(tokens) is None
    with torch.no_grad():
        assert torch.equal(bb(texts=tokens)["text_features"], bb.encode_text(tokens))
    bb._cut_ok = None
    bb.model.text_pool_type = "argmax"
    bb.model.attn_mask = torch.zeros_like(bb.model.attn_mask)  # bidirectional: every column sees the padding
    assert bb._text_ends(tokens) is None


def test_length_buckets_minimise_tokens_plus_calls():
    assert length_buckets([], 10) == []
    # one long text among short ones: two calls beat padding every short text to the long one
    assert length_buckets([5, 5, 40, 5], overhead=10) == [([0, 1, 3], 5), ([2], 40)]
    # a call costs more than the tokens it would save: one group at the longest length
    assert length_buckets([5, 6, 7], overhead=10) == [([0, 1, 2], 7)]
    groups = length_buckets([3, 9, 9, 30, 31, 3, 77], overhead=0)
    assert sorted(r for rows, _ in groups for r in rows) == list(range(7))
    assert all(n == max([3, 9, 9, 30, 31, 3, 77][r] for r in rows) for rows, n in groups)


def test_twin_step_loss_and_gradients_equal_the_full_length_pass(backbone, tmp_path):
    """The default twin step (prompts, sampled twin captions, twin images) through ``_step_losses``: the same
    losses and parameter gradients whether the text pass is cut or runs all 77 (here 32) columns."""
    from types import SimpleNamespace

    from cultureclip.config import load_config
    from cultureclip.data import CulTwinDataset, TwinBatchSampler, collate, read_manifest
    from cultureclip.loss import TwinContrastiveLoss
    from cultureclip.train import TrainConfig, _step_losses
    from tests.cultwin_fixture import make_tiny_cultwin

    bb = backbone.train()
    m = read_manifest(make_tiny_cultwin(tmp_path / "ds", per_concept=4)).split("train")
    dataset = CulTwinDataset(m, bb.preprocess_eval, seed=0, twin_images=True)
    batch = collate([dataset[i] for i in next(iter(TwinBatchSampler(dataset.concept_ids, dataset.twin_concept_ids, 6, seed=0)))])
    cfg = load_config(TrainConfig, None, ["data.dataset=x"])
    cpu = SimpleNamespace(device=torch.device("cpu"))
    widths = []

    def full(images, texts):
        return bb(images, texts, cut_texts=False)

    def cut(images, texts):
        out = bb(images, texts)
        widths.append((texts.shape[1], int(bb._text_ends(texts).max()) + 1))
        return out

    results = {}
    for name, model in (("full", full), ("cut", cut)):
        torch.manual_seed(0)
        losses = _step_losses(model, bb, batch, TwinContrastiveLoss(), cfg, None, cpu)
        bb.zero_grad(set_to_none=True)
        losses["loss"].backward()
        results[name] = ({k: float(v.detach()) for k, v in losses.items()},
                         {n: p.grad.clone() for n, p in bb.named_parameters() if p.grad is not None})
    assert widths[0][1] < widths[0][0]  # the cut pass ran fewer columns than the context length
    (loss_full, g_full), (loss_cut, g_cut) = results["full"], results["cut"]
    assert loss_full.keys() == loss_cut.keys() and loss_full["concept_loss"] > 0
    for k, v in loss_full.items():
        assert loss_cut[k] == pytest.approx(v, rel=1e-6, abs=1e-6), k
    assert g_cut.keys() == g_full.keys()
    worst = max(float((g_cut[n] - g).abs().max() / g.abs().max().clamp_min(1e-12)) for n, g in g_full.items())
    print(f"cut vs full text pass: losses {loss_cut} vs {loss_full}; largest gradient difference "
          f"{worst:.2e} of the parameter's largest gradient")
    assert worst < 1e-4


def test_fused_adamw_makes_the_default_adamw_updates(tmp_path):
    import copy

    from cultureclip.config import load_config
    from cultureclip.train import TrainConfig, _build_optimizer

    bb = create_backbone(str(save_open_clip(tmp_path, "tiny", seed=0)))
    ref_bb = copy.deepcopy(bb)
    cfg = load_config(TrainConfig, None, ["data.dataset=x", "optim.warmup_steps=0", "optim.lr=1e-3"])
    opt, _ = _build_optimizer(cfg, bb, 10)
    assert all(g["fused"] for g in opt.param_groups)
    ref_opt = torch.optim.AdamW([{**{k: v for k, v in g.items() if k not in ("params", "fused")},
                                  "params": [dict(ref_bb.named_parameters())[n] for n in names]}
                                 for g, names in zip(opt.param_groups, _group_names(bb, opt))])
    assert not any(g["fused"] for g in ref_opt.param_groups)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for (_, p), (_, q) in zip(bb.named_parameters(), ref_bb.named_parameters()):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    start = dict(create_backbone(str(tmp_path)).named_parameters())
    for (n, p), (_, q) in zip(bb.named_parameters(), ref_bb.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-6), n
        assert not torch.equal(p, start[n]), n  # every parameter moved


def _group_names(bb, opt):
    name_of = {id(p): n for n, p in bb.named_parameters()}
    return [[name_of[id(p)] for p in g["params"]] for g in opt.param_groups]
