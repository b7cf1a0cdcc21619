"""The hub path: default models, WiSE-FT across formats, the hub-or-cache decision, loading from a real-size cache."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _mixed_services(tiny_open_clip_dir, tiny_hf_clip_dir, tmp_path):
    from demo.services import DemoConfig, DemoServices

    cfg = DemoConfig(base=str(tiny_open_clip_dir), tuned=str(tiny_hf_clip_dir), device="cpu",
                     catalog=[tmp_path / "no_catalog"])
    return DemoServices(cfg)


def test_wise_ft_across_formats_keeps_both_models_answering(tiny_open_clip_dir, tiny_hf_clip_dir, tmp_path, caplog):
    """An open_clip base with an HF CultureCLIP cannot be blended: any alpha still answers with both models."""
    from PIL import Image

    from demo.handlers import classify

    services = _mixed_services(tiny_open_clip_dir, tiny_hf_clip_dir, tmp_path)
    with caplog.at_level("WARNING", logger="demo.services"):
        ok, note = services.wise_available()
    # visitors read what it means; the owner's fix (the flag) is in the log, not on the page
    assert not ok and "different formats" in note and "--wise-base" not in note and "CULTURECLIP_" not in note
    assert "--wise-base" in caplog.text and "open_clip" in caplog.text
    img = Image.new("RGB", (40, 30), (200, 30, 30))
    from demo.handlers import tuned_panel_name

    # the right-hand panel is never titled by a blend that cannot be made
    assert [tuned_panel_name(services, a) for a in (1.0, 0.5, 0.0)] == ["CultureCLIP"] * 3
    for alpha in (1.0, 0.5, 0.0):
        r = classify(services, img, "gyoza, jiaozi, momo", use_catalog=False, alpha=alpha, top_k=2)
        assert r.ok, r.message
        assert len(r.base) == 2 and len(r.tuned) == 2
        if alpha < 1:
            assert "WiSE-FT" in r.message and "not available" in r.message
    # the same-format pair blends
    from demo.services import DemoConfig, DemoServices

    same = DemoServices(DemoConfig(base=str(tiny_hf_clip_dir), tuned=str(tiny_hf_clip_dir), device="cpu",
                                   catalog=[tmp_path / "no_catalog"]))
    assert same.wise_available() == (True, "")
    assert tuned_panel_name(same, 0.5) == "WiSE-FT α=0.5 (Base CLIP ↔ CultureCLIP)" and tuned_panel_name(same, 1) == "CultureCLIP"


def test_wise_available_before_loading_uses_the_spec_formats(tiny_open_clip_dir, tiny_hf_clip_dir, tmp_path):
    from demo.services import DemoConfig, DemoServices, HUB_BASE, HUB_TUNED

    assert HUB_BASE == "hf:openai/clip-vit-base-patch32"
    s = DemoServices(DemoConfig(base=HUB_BASE, tuned=HUB_TUNED))
    assert s.wise_available()[0] and not s.base.loaded  # both HF CLIPModel: no model loaded to know it
    s = DemoServices(DemoConfig(base="open_clip:ViT-B-32@openai", tuned=HUB_TUNED))
    assert not s.wise_available()[0]
    s = DemoServices(DemoConfig(base="open_clip:ViT-B-32@openai", tuned=HUB_TUNED, wise_base=HUB_BASE))
    assert s.wise_available()[0]


def test_quick_gelu_follows_the_pretrained_tag():
    from cultureclip.backbone import tag_quick_gelu

    assert tag_quick_gelu("ViT-B-32", "openai") and tag_quick_gelu("ViT-L-14", "openai")
    assert tag_quick_gelu("RN50", "openai") and tag_quick_gelu("ViT-B-32", "laion400m_e32")
    assert not tag_quick_gelu("ViT-B-32", "laion2b_s34b_b79k") and not tag_quick_gelu("ViT-B-32", None)


def test_model_choice_hub_cache_or_offline(tmp_path, monkeypatch):
    """Hub defaults when the hub is reachable, or when the defaults are in the local cache; else offline."""
    from demo import app_config

    empty = tmp_path / "empty_hub"
    empty.mkdir()
    monkeypatch.setattr(app_config, "_hub_cache_dir", lambda: empty)
    c = app_config.choose_models(hub=True)
    assert c.hub_defaults and "reachable" in c.reason
    c = app_config.choose_models(hub=False)
    assert not c.hub_defaults and "not in the local" in c.reason and "HF_HOME" in c.reason
    # a partially filled cache (only one model) is not enough
    from tests.hubcache import HF_BASE_ID, _snapshot

    snap = _snapshot(empty, HF_BASE_ID)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    c = app_config.choose_models(hub=False)
    assert not c.hub_defaults and "lukahh/cultureclip_lora_0315_100k_32_07_03" in c.reason
    from tests.hubcache import HF_TUNED_ID

    snap = _snapshot(empty, HF_TUNED_ID)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    c = app_config.choose_models(hub=False)
    assert c.hub_defaults and "local Hugging Face cache" in c.reason


LOAD_CODE = r"""
import json, sys, warnings
from cultureclip.backbone import create_backbone, spec_cached
from demo.app_config import choose_models
out = {"choice": choose_models().reason, "hub_defaults": choose_models().hub_defaults}
for spec in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bb = create_backbone(spec)
    acts = sorted({type(m).__name__ for m in bb.modules() if "GELU" in type(m).__name__ or "Activation" in type(m).__name__})
    hf_act = getattr(getattr(bb.model, "config", None), "vision_config", None)
    out[spec] = {"kind": bb.kind, "embed_dim": bb.embed_dim, "image_size": bb.image_size, "cached": spec_cached(spec),
                 "acts": acts, "hf_act": getattr(hf_act, "hidden_act", None),
                 "params": sum(p.numel() for p in bb.parameters()),
                 "warnings": [str(w.message) for w in caught if "GELU" in str(w.message)],
                 "tokens": bb.tokenize(["a photo of gyoza."])[0, :6].tolist()}
    if bb.kind == "open_clip":  # a saved copy (our checkpoint format) keeps the tag's activation
        import tempfile
        from cultureclip.checkpoint import save_model
        with tempfile.TemporaryDirectory() as tmp:
            save_model(bb, tmp + "/m")
            again = create_backbone(tmp + "/m")
            out[spec]["saved_acts"] = sorted({type(m).__name__ for m in again.modules() if "GELU" in type(m).__name__})
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_real_size_models_load_from_the_local_hub_cache(hub_home):
    """HF_HOME=<cache>, HF_HUB_OFFLINE=1: each default id loads at full ViT-B/32 size; `openai` uses QuickGELU."""
    from tests.hubcache import hub_env

    specs = ["hf:openai/clip-vit-base-patch32", "hf:lukahh/cultureclip_lora_0315_100k_32_07_03", "open_clip:ViT-B-32@openai"]
    p = subprocess.run([sys.executable, "-c", LOAD_CODE, *specs], cwd=REPO, env=hub_env(hub_home, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=300)
    assert "RESULT" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    assert out["hub_defaults"] and "local Hugging Face cache" in out["choice"]
    for spec in specs:
        r = out[spec]
        assert r["cached"] and r["embed_dim"] == 512 and r["image_size"] == 224, (spec, r)
        assert 150e6 < r["params"] < 153e6, (spec, r)  # ViT-B/32: 151.3M
        assert r["tokens"][:2] == [49406, 320], (spec, r)  # <|startoftext|> "a"
    oc = out["open_clip:ViT-B-32@openai"]
    assert oc["acts"] == ["QuickGELU"] and oc["warnings"] == [] and oc["saved_acts"] == ["QuickGELU"], oc
    assert out["hf:openai/clip-vit-base-patch32"]["hf_act"] == "quick_gelu"


def test_hf_text_padding_trim_is_exact(tiny_hf_clip_dir):
    """Trimming the padding after the last EOS gives the embeddings of the full 77-column (here 32) input."""
    import torch

    from cultureclip.backbone import create_backbone

    bb = create_backbone(str(tiny_hf_clip_dir))
    tokens = bb.tokenize(["gyoza", "a photo of jiaozi, a Chinese dumpling with pleated edges", ""])
    trimmed = bb._trim_padding(tokens)
    assert trimmed.shape[1] < tokens.shape[1]
    with torch.no_grad():
        full = torch.nn.functional.normalize(bb.model.get_text_features(input_ids=tokens).pooler_output, dim=-1)
        ours = bb.encode_text(tokens)
    assert torch.allclose(full, ours, atol=1e-5)
    bb.model.text_model.eos_token_id = 2  # legacy configs: pooled at the argmax id
    with torch.no_grad():
        legacy_full = bb.model.get_text_features(input_ids=tokens).pooler_output
        assert torch.allclose(torch.nn.functional.normalize(legacy_full, dim=-1), bb.encode_text(tokens), atol=1e-5)


def test_make_app_prints_the_choice(tmp_path, monkeypatch, capsys):
    """`python -m demo.app_config` (what `make app` runs first) prints which models and why; exit 1 = offline world."""
    from demo import app_config

    monkeypatch.setattr(app_config, "_hub_cache_dir", lambda: tmp_path)
    for k in ("CULTURECLIP_BASE", "CULTURECLIP_TUNED"):
        monkeypatch.delenv(k, raising=False)
    assert app_config.main([]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Offline twin world: HF_HUB_OFFLINE is set and ") and "not in the local" in out
    monkeypatch.setenv("CULTURECLIP_BASE", "a")
    monkeypatch.setenv("CULTURECLIP_TUNED", "b")
    assert app_config.main([]) == 0 and "CULTURECLIP_BASE" in capsys.readouterr().out


def test_wise_refused_for_two_hf_clips_of_different_sizes(tiny_hf_clip_dir, tmp_path):
    """Same format, different architecture: detected once both are loaded; both models still answer."""
    from PIL import Image

    from demo.handlers import classify
    from demo.services import DemoConfig, DemoServices
    from cultureclip.testing import save_hf_clip

    other = save_hf_clip(tmp_path / "hf64", "tiny", image_size=64)  # another position-embedding size
    s = DemoServices(DemoConfig(base=str(other), tuned=str(tiny_hf_clip_dir), device="cpu", catalog=[tmp_path / "none"]))
    assert s.wise_available()[0]  # formats agree: not known before loading
    s.base.get(), s.tuned.get()
    ok, note = s.wise_available()
    assert not ok and "different architectures" in note
    r = classify(s, Image.new("RGB", (40, 30)), "gyoza, jiaozi", use_catalog=False, alpha=0.3, top_k=2)
    assert r.ok and len(r.base) == 2 and len(r.tuned) == 2 and "not available" in r.message
