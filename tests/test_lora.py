"""LoRA on both backbones (paper setting), merging, WiSE-FT."""
import pytest
import torch

from cultureclip.backbone import create_backbone
from cultureclip.checkpoint import save_model
from cultureclip.lora import apply_lora, lock_tower, merge_lora, trainable_parameters, wise_ft


def _io(bb):
    torch.manual_seed(1)
    return torch.randn(4, 3, bb.image_size, bb.image_size), bb.tokenize(["hanfu", "hanbok with a jeogori", "kimono", "a"])


@pytest.mark.parametrize("kind", ["open_clip", "hf"])
def test_lora_zero_update_equals_base_then_merge_equals_lora(kind, tiny_open_clip_dir, tiny_hf_clip_dir, tmp_path):
    bb = create_backbone(str(tiny_open_clip_dir if kind == "open_clip" else tiny_hf_clip_dir))
    px, tok = _io(bb)
    with torch.no_grad():
        i0, t0 = bb.encode_image(px), bb.encode_text(tok)
    n = apply_lora(bb, r=4, alpha=16, dropout=0.1)
    assert n == (4 if kind == "open_clip" else 8)  # 2 layers x 2 towers (x q,v for HF linears)
    names = [n for n, _ in trainable_parameters(bb)]
    assert names and all("lora" in n for n in names)
    bb.eval()
    with torch.no_grad():
        assert torch.allclose(bb.encode_image(px), i0, atol=1e-5)
        assert torch.allclose(bb.encode_text(tok), t0, atol=1e-5)
    # train mode applies dropout only on the LoRA path: with B = 0 still identical
    bb.train()
    with torch.no_grad():
        assert torch.allclose(bb.encode_text(tok), t0, atol=1e-5)
    bb.eval()
    for name, p in bb.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        i1, t1 = bb.encode_image(px), bb.encode_text(tok)
    assert (i1 - i0).abs().max() > 1e-3
    merge_lora(bb)
    bb.eval()
    with torch.no_grad():
        assert torch.allclose(bb.encode_image(px), i1, atol=1e-5)
        assert torch.allclose(bb.encode_text(tok), t1, atol=1e-5)
    save_model(bb, tmp_path / "merged")
    bb2 = create_backbone(str(tmp_path / "merged"))
    with torch.no_grad():
        assert torch.allclose(bb2.encode_image(px), i1, atol=1e-5)


@pytest.mark.parametrize("kind", ["open_clip", "hf"])
def test_lora_added_to_a_model_in_eval_mode_stays_in_eval_mode(kind, tiny_open_clip_dir, tiny_hf_clip_dir):
    """The new LoRA modules used to start in train mode: dropout made two embeddings of one text differ."""
    from cultureclip.inference import Embedder

    bb = create_backbone(str(tiny_open_clip_dir if kind == "open_clip" else tiny_hf_clip_dir))
    bb.eval()
    before = {id(m) for m in bb.modules()}
    apply_lora(bb, r=4, alpha=16, dropout=0.5)
    new = [(n, m) for n, m in bb.named_modules() if id(m) not in before]
    assert any(isinstance(m, torch.nn.Dropout) for _, m in new)  # LoRA dropout is among them
    assert [n for n, m in new if m.training] == []
    for name, p in bb.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B != 0: dropout on the LoRA path now changes outputs
    emb = Embedder(bb)
    a, b = emb.embed_texts(["x"]), emb.embed_texts(["x"])
    assert torch.equal(a, b)
    bb.train()  # and they follow the model into train mode: dropout active there
    with torch.no_grad():
        tok = bb.tokenize(["x"])
        assert not torch.allclose(bb.encode_text(tok), bb.encode_text(tok))
    # a model in train mode gets adapters in train mode; the base's own modules keep their flags
    bb2 = create_backbone(str(tiny_open_clip_dir if kind == "open_clip" else tiny_hf_clip_dir))
    bb2.train()
    apply_lora(bb2, r=4, alpha=16, dropout=0.5)
    assert all(m.training for m in bb2.modules())


def test_lora_only_targets_q_and_v(tiny_open_clip_dir):
    bb = create_backbone(str(tiny_open_clip_dir))
    apply_lora(bb, r=4, alpha=16, dropout=0.0, targets=("q", "v"))
    for name, p in bb.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    from cultureclip.lora import LoRAMultiheadAttention

    mods = [m for m in bb.modules() if isinstance(m, LoRAMultiheadAttention)]
    d = mods[0].embed_dim
    delta = mods[0].delta_weight()
    assert delta[:d].abs().sum() > 0 and delta[d : 2 * d].abs().sum() == 0 and delta[2 * d :].abs().sum() > 0
    assert mods[0].scaling == pytest.approx(4.0)


def test_lock_tower(tiny_open_clip_dir):
    bb = create_backbone(str(tiny_open_clip_dir))
    lock_tower(bb, "image")
    assert not any(p.requires_grad for p in bb.model.visual.parameters())
    assert any(p.requires_grad for p in bb.text_only_params())
    with pytest.raises(ValueError):
        lock_tower(bb, "audio")


def test_wise_ft(tiny_open_clip_dir):
    a = create_backbone(str(tiny_open_clip_dir)).model.state_dict()
    b = {k: v + 1.0 if v.is_floating_point() else v for k, v in a.items()}
    k = next(k for k, v in a.items() if v.is_floating_point())
    assert torch.equal(wise_ft(a, b, 0.0)[k], a[k]) and torch.equal(wise_ft(a, b, 1.0)[k], b[k])
    assert torch.allclose(wise_ft(a, b, 0.25)[k], a[k] + 0.25)
    with pytest.raises(ValueError):
        wise_ft(a, b, 1.5)
    with pytest.raises(ValueError, match="differ in keys"):
        wise_ft(a, {**b, "extra": torch.zeros(1)}, 0.5)
