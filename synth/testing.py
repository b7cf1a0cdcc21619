"""Tiny *real* synthesis models saved to folders (Stable Diffusion pipeline, causal LM), for tests and
benches that must run without a hub. CLIP models (the filters' reference CLIP) come from the one CLIP
builder, `cultureclip.testing`.

Each builder writes a folder that loads with the same ``from_pretrained`` call a user makes with a
hub id, so the code under test is the production loading path (see shared/OFFLINE_MODELS.md).
Heavy libraries are imported inside the functions.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from cultureclip.backbone import write_clip_tokenizer_files
from cultureclip.config import find_preset, load_config

from .run import SynthConfig


def build_tiny_sd_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Save a ~3M-parameter random Stable Diffusion pipeline (64x64 px, 32-dim text encoder) to ``folder``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tok_dir:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(tok_dir), model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=49408, max_position_embeddings=77))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_causal_lm(folder: str | Path, seed: int = 0, with_chat_template: bool = True) -> Path:
    """Save a 2-layer random GPT-2 with a ~400-token byte-level BPE to ``folder``.

    Its output is random text: exactly what validation, retry and quarantine code must survive.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ['["a photo of hanbok", "jiaozi on a plate"]', "captions of cultural dumplings, robes, flags",
              "Return a JSON list of strings.", "{}[]\",:"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>")
    if with_chat_template:
        fast.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                              "{% if add_generation_prompt %}<assistant>{% endif %}")
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=4096, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                                       pad_token_id=fast.pad_token_id))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def smoke_config(out: str | Path, *overrides: str):
    """The ``configs/synth/smoke.yaml`` preset with ``out`` and overrides applied (progress bars off)."""

    return load_config(SynthConfig, find_preset("synth", "smoke"), [f"out={out}", "run.progress=false", *overrides])
