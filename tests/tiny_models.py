"""Tiny models of the REAL classes, saved to folders and loaded back through the user code path."""
from __future__ import annotations

import json
from pathlib import Path

TINY_OPEN_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_open_clip(folder: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """An open_clip CLIP (random init) saved as open_clip_config.json + open_clip_model.safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(TINY_OPEN_CLIP_CFG))
    cfg["vision_cfg"]["image_size"] = image_size
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def make_tiny_hf_clip(folder: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """A transformers CLIPModel (random init) + CLIPTokenizer (open_clip's BPE) + image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from cultureclip.backbone import write_clip_tokenizer_files

    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, eos_token_id=49407, bos_token_id=49406,
                         pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=16,
    )
    model = CLIPModel(cfg)
    model.save_pretrained(str(folder), safe_serialization=True)
    write_clip_tokenizer_files(folder, model_max_length=32)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return folder
