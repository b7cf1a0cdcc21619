"""The one builder of random-weight CLIP models for tests and benches, saved the way users load them.

Every model is an instance of the REAL class (open_clip's `CLIP`, transformers' `CLIPModel`) with random
weights, deterministic by `seed` (built under a forked torch RNG: the caller's random state is left as it
was), and saved to a folder that loads through the same call a user makes with a hub id:

- `save_open_clip(folder, size)`: `open_clip_config.json` ({"model_cfg", "preprocess_cfg"}) +
  `open_clip_model.safetensors`, for `open_clip.create_model("local-dir:<folder>")` / `create_backbone`;
- `save_hf_clip(folder, size)`: `config.json` + `model.safetensors` (`save_pretrained`), a `CLIPTokenizer`
  converted from open_clip's bundled BPE, and `preprocessor_config.json`, for `CLIPModel.from_pretrained`.

Sizes (`size=`):

    open_clip  "tiny"       32 px, patch 8, 2+2 layers of width 64, embed 32   (tests; ~3.4M parameters)
               "tiny-64"    the same at 64 px, patch 16                          (synthesis filter tests)
               "small-224"  224 px, patch 32, 4 vision layers of width 256      (bench/eval_throughput.py)
               "small-96"   96 px, patch 16, 6+6 layers, widths 384/256, embed 256 (bench/train_step.py)
               any open_clip architecture name ("ViT-B-32", ...): real size, random weights
    HF         "tiny"       32 px, patch 8, 2+2 layers of width 32, projection 16 (tests)
               "ViT-B-32"   `CLIPConfig` defaults with projection 512: the sizes of openai/clip-vit-base-patch32
                            and of the paper's released checkpoint (224 px, 77 tokens)

Usable outside pytest (the bench/ scripts import it); heavy libraries are imported inside the functions.
"""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any, Iterator

from cultureclip.backbone import write_clip_tokenizer_files

OPEN_CLIP_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "tiny-64": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "small-224": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 224, "layers": 4, "width": 256, "patch_size": 32, "head_width": 64},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
    },
    "small-96": {
        "embed_dim": 256,
        "vision_cfg": {"image_size": 96, "layers": 6, "width": 384, "patch_size": 16, "head_width": 64},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 6},
    },
}

# CLIPConfig keyword arguments per size (the tokenizer's model_max_length is the text tower's positions)
HF_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "config": {
            "text_config": {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": 49407,
                            "bos_token_id": 49406, "pad_token_id": 49407},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
            "projection_dim": 16,
        },
    },
    "ViT-B-32": {"config": {"projection_dim": 512}},  # CLIPConfig's defaults are ViT-B/32's sizes
}

OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"  # open_clip prefers it over open_clip_pytorch_model.bin


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's global RNG seeded inside, restored after (a builder must not reseed its caller)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def open_clip_config(size: str = "tiny", image_size: int | None = None) -> dict[str, Any]:
    """The `model_cfg` of a size from OPEN_CLIP_SIZES (a copy), at `image_size` if given."""
    if size not in OPEN_CLIP_SIZES:
        raise ValueError(f"unknown open_clip size {size!r}; known: {', '.join(OPEN_CLIP_SIZES)} "
                         "(or pass an open_clip architecture name to build_open_clip)")
    cfg = copy.deepcopy(OPEN_CLIP_SIZES[size])
    if image_size:
        cfg["vision_cfg"]["image_size"] = int(image_size)
    return cfg


def build_open_clip(size: str = "tiny", seed: int = 0, image_size: int | None = None,
                    quick_gelu: bool = False, **arch_kwargs: Any):
    """An open_clip `CLIP` with random weights (in memory): a size of OPEN_CLIP_SIZES or an architecture
    name open_clip knows (`open_clip.list_models()`; `arch_kwargs` such as `text_cfg=` then override its
    config, as `open_clip.create_model(**model_kwargs)` does)."""
    import open_clip
    from open_clip.model import CLIP

    if size in OPEN_CLIP_SIZES:
        if arch_kwargs:
            raise ValueError(f"{sorted(arch_kwargs)}: config overrides apply to open_clip architecture names, "
                             f"not to the size {size!r}")
        cfg = open_clip_config(size, image_size)
        if quick_gelu:
            cfg["quick_gelu"] = True
        with _seeded(seed):
            return CLIP(**cfg)
    if size not in open_clip.list_models():
        raise ValueError(f"unknown model size {size!r}: use one of {', '.join(OPEN_CLIP_SIZES)} or an open_clip "
                         "architecture (open_clip.list_models())")
    kwargs = {"force_image_size": image_size} if image_size else {}
    with _seeded(seed):
        return open_clip.create_model(size, pretrained=None, load_weights=False, force_quick_gelu=quick_gelu,
                                      **kwargs, **arch_kwargs)


def _model_cfg_of(size: str, image_size: int | None, quick_gelu: bool, arch_kwargs: dict) -> dict[str, Any]:
    if size in OPEN_CLIP_SIZES:
        cfg = open_clip_config(size, image_size)
    else:
        import open_clip

        cfg = copy.deepcopy(open_clip.get_model_config(size))
        cfg.update(copy.deepcopy(arch_kwargs))
        if image_size:
            cfg["vision_cfg"]["image_size"] = int(image_size)
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


def save_open_clip(folder: str | Path, size: str = "tiny", seed: int = 0, image_size: int | None = None,
                   quick_gelu: bool = False, with_config: bool = True, **arch_kwargs: Any) -> Path:
    """An open_clip model with random weights saved as `open_clip_config.json` + `open_clip_model.safetensors`
    (`with_config=False`: the weights file alone, as an open_clip pretrained tag downloads it)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_open_clip(size, seed, image_size, quick_gelu, **arch_kwargs)
    if with_config:
        cfg = _model_cfg_of(size, image_size, quick_gelu, arch_kwargs)
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / OPEN_CLIP_WEIGHTS))
    return folder


def hf_clip_config(size: str = "tiny", image_size: int | None = None, text_config: dict | None = None,
                   vision_config: dict | None = None):
    """The transformers `CLIPConfig` of a size from HF_SIZES, at `image_size` if given; `text_config` /
    `vision_config` entries override the size's (e.g. another vocabulary or depth)."""
    from transformers import CLIPConfig

    if size not in HF_SIZES:
        raise ValueError(f"unknown HF CLIP size {size!r}; known: {', '.join(HF_SIZES)}")
    kwargs = copy.deepcopy(HF_SIZES[size]["config"])
    if text_config:
        kwargs["text_config"] = {**kwargs.get("text_config", {}), **text_config}
    if vision_config:
        kwargs["vision_config"] = {**kwargs.get("vision_config", {}), **vision_config}
    if image_size:
        kwargs.setdefault("vision_config", {})["image_size"] = int(image_size)
    return CLIPConfig(**kwargs)


def build_hf_clip(size: str = "tiny", seed: int = 0, image_size: int | None = None, text_config: dict | None = None,
                  vision_config: dict | None = None):
    """A transformers `CLIPModel` with random weights (in memory)."""
    from transformers import CLIPModel

    cfg = hf_clip_config(size, image_size, text_config, vision_config)
    with _seeded(seed):
        return CLIPModel(cfg)


def save_hf_clip(folder: str | Path, size: str = "tiny", seed: int = 0, image_size: int | None = None,
                 resize_to: int | None = None, text_config: dict | None = None, vision_config: dict | None = None,
                 with_tokenizer: bool = True, with_processor: bool = True) -> Path:
    """A `CLIPModel` with random weights saved like a hub repo: config.json + model.safetensors, a
    CLIPTokenizer from open_clip's BPE (model_max_length = the text tower's positions) and
    preprocessor_config.json (resize the shortest edge to `resize_to`, default the image size, then
    centre-crop to the image size). `with_tokenizer` / `with_processor=False` leave those files out."""
    from transformers import CLIPImageProcessor


    folder = Path(folder)
    model = build_hf_clip(size, seed, image_size, text_config, vision_config)
    model.save_pretrained(str(folder), safe_serialization=True)
    if with_tokenizer:
        write_clip_tokenizer_files(folder, model_max_length=model.config.text_config.max_position_embeddings)
    if with_processor:
        px = model.config.vision_config.image_size
        CLIPImageProcessor(size={"shortest_edge": int(resize_to or px)},
                           crop_size={"height": px, "width": px}).save_pretrained(str(folder))
    return folder
