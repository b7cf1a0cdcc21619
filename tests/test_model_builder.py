"""cultureclip.testing, the one random-weight CLIP builder of tests and benches: deterministic by seed,
leaves the caller's RNG alone, and saves folders that load through the user code path."""
from __future__ import annotations

import json

import pytest
import torch

from cultureclip.testing import (OPEN_CLIP_SIZES, build_hf_clip, build_open_clip, hf_clip_config,
                                 save_hf_clip, save_open_clip)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("build", [build_open_clip, build_hf_clip], ids=["open_clip", "hf"])
def test_weights_are_a_function_of_the_seed(build):
    a, b, c = build("tiny", seed=3).state_dict(), build("tiny", seed=3).state_dict(), build("tiny", seed=4).state_dict()
    assert _same(a, b)
    assert not _same(a, c)


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    build_open_clip("tiny", seed=0)
    build_hf_clip("tiny", seed=0)
    assert torch.equal(torch.rand(4), expected)


def test_saved_folders_load_like_hub_ids_and_keep_the_weights(tmp_path):
    """Load with the libraries' own calls (no cultureclip code), then through create_backbone."""
    import open_clip
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPTokenizer

    from cultureclip.backbone import create_backbone

    oc = save_open_clip(tmp_path / "oc", "tiny", seed=5, image_size=48)
    cfg = json.loads((oc / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["vision_cfg"]["image_size"] == 48 and cfg["model_cfg"]["embed_dim"] == 32
    loaded = open_clip.create_model(f"local-dir:{oc}", weights_only=True)
    assert _same(loaded.state_dict(), build_open_clip("tiny", seed=5, image_size=48).state_dict())
    assert create_backbone(str(oc)).image_size == 48

    hf = save_hf_clip(tmp_path / "hf", "tiny", seed=5, image_size=64, resize_to=72)
    m = CLIPModel.from_pretrained(str(hf))
    assert _same(m.state_dict(), build_hf_clip("tiny", seed=5, image_size=64).state_dict())
    assert CLIPTokenizer.from_pretrained(str(hf)).model_max_length == 32  # the text tower's positions
    proc = json.loads((hf / "preprocessor_config.json").read_text())
    assert proc["size"] == {"shortest_edge": 72} and proc["crop_size"] == {"height": 64, "width": 64}
    bb = create_backbone(str(hf))
    assert bb.kind == "hf" and bb.image_size == 64 and bb.embed_dim == 16

    weights_only = save_open_clip(tmp_path / "w", "tiny", seed=5, with_config=False)
    assert [p.name for p in weights_only.iterdir()] == ["open_clip_model.safetensors"]
    assert _same(load_file(str(weights_only / "open_clip_model.safetensors")), build_open_clip("tiny", seed=5).state_dict())


def test_real_size_configs_are_vit_b32():
    """The real-size HF model has openai/clip-vit-base-patch32's shape (checked on the config: no 600 MB build)."""
    import open_clip

    c = hf_clip_config("ViT-B-32")
    assert (c.projection_dim, c.vision_config.hidden_size, c.vision_config.num_hidden_layers,
            c.vision_config.patch_size, c.vision_config.image_size) == (512, 768, 12, 32, 224)
    assert (c.text_config.hidden_size, c.text_config.num_hidden_layers, c.text_config.max_position_embeddings) == (512, 12, 77)
    assert open_clip.get_model_config("ViT-B-32")["vision_cfg"]["patch_size"] == 32  # the open_clip name builds it


def test_unknown_sizes_name_the_known_ones():
    with pytest.raises(ValueError, match="tiny"):
        build_open_clip("huge-ish")
    with pytest.raises(ValueError, match="ViT-B-32"):
        hf_clip_config("ViT-B-16")
    assert set(OPEN_CLIP_SIZES) >= {"tiny", "tiny-64", "small-224", "small-96"}


def test_no_other_module_builds_a_random_clip():
    """cultureclip.testing is the one builder: no test, bench or package module constructs a CLIP itself
    (`CLIPModel(...)`, `CLIPConfig(...)`, open_clip's `CLIP(...)`, `create_model(..., load_weights=False)`)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    builders = {"CLIPModel", "CLIPConfig", "CLIP"}
    bad = []
    for top in ("tests", "bench", "synth", "world", "demo", "eval_suite", "cultureclip"):
        for path in sorted((root / top).rglob("*.py")):
            if path == root / "cultureclip" / "testing.py" or "__pycache__" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                no_weights = any(k.arg == "load_weights" and isinstance(k.value, ast.Constant) and k.value.value is False
                                 for k in node.keywords)
                if fn in builders or no_weights:
                    bad.append(f"{path.relative_to(root)}:{node.lineno} {fn}(...)")
    assert not bad, "build random CLIPs with cultureclip.testing:\n" + "\n".join(bad)
