"""The ONE place that builds CLIP models, for both open_clip and Hugging Face transformers.

`create_backbone(spec)` turns a model spec string into a `ClipBackbone`, a thin `nn.Module` with one
interface for both kinds: normalized image/text embeddings, a tokenizer, eval/train preprocessing and
the logit scale. Accepted specs (see ARCHITECTURE.md):

    open_clip:ViT-B-32@openai         open_clip architecture + pretrained tag
    open_clip:ViT-B-32                random init
    open_clip:hf-hub:org/name         open_clip model on the hub
    hf:openai/clip-vit-base-patch32   transformers CLIPModel (also the paper's merged-LoRA checkpoints)
    org/name                          bare hub id -> hf:
    ViT-B-32@openai / ViT-B-32        bare open_clip architecture
    /path/to/folder                   HF folder, open_clip folder or a checkpoint our trainer wrote

When the hub cannot be reached and the files are not cached, loading fails within seconds (not after
~47 s of retries) with a message naming the spec and suggesting a local folder or the offline default.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import math
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch
from torch import nn

from .image import to_rgb

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CHECKPOINT_META = "cultureclip_checkpoint.json"
OFFLINE_HINT = (
    "Use a local folder (an HF CLIP folder with config.json, an open_clip folder with "
    "open_clip_config.json, or a checkpoint written by `python -m cultureclip.train`), or the bundled "
    "offline world model (`make offline-world`, then artifacts/world/models/cultureclip)."
)


class BackboneError(RuntimeError):
    """A model spec could not be turned into a model; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "open_clip" | "hf" | "local"
    name: str  # architecture / hub id / folder
    pretrained: str | None = None  # open_clip pretrained tag

    def __str__(self) -> str:
        if self.kind == "local":
            return self.name
        tag = f"@{self.pretrained}" if self.pretrained else ""
        return f"{self.kind}:{self.name}{tag}"


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string (see module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError("empty model spec; examples: open_clip:ViT-B-32@openai, hf:openai/clip-vit-base-patch32")
    s = spec.strip()
    if s.startswith("local-dir:"):
        s = s[len("local-dir:"):]
    if s.startswith("open_clip:"):
        rest = s[len("open_clip:"):]
        if rest.startswith("local-dir:"):
            return ModelSpec("local", rest[len("local-dir:"):])
        if rest.startswith("hf-hub:"):
            return ModelSpec("open_clip", rest)
        name, _, tag = rest.partition("@")
        return ModelSpec("open_clip", name, tag or None)
    if s.startswith("hf-hub:"):
        return ModelSpec("open_clip", s)
    if s.startswith("hf:"):
        return ModelSpec("hf", s[3:])
    p = Path(s).expanduser()
    if p.exists() or s.startswith(("/", "./", "../", "~")):
        return ModelSpec("local", str(p))
    name, _, tag = s.partition("@")
    if _is_open_clip_arch(name):
        return ModelSpec("open_clip", name, tag or None)
    if "/" in s and "@" not in s and s.count("/") == 1:
        return ModelSpec("hf", s)
    raise BackboneError(
        f"cannot interpret model spec {spec!r}: not an existing folder, an open_clip architecture, or a "
        "hub id. Examples: open_clip:ViT-B-32@openai, hf:openai/clip-vit-base-patch32, ./my_model_folder"
    )


PROJECT_ARCHS = Path(__file__).resolve().parent.parent / "configs" / "models"
_ARCHS_REGISTERED = False


def _register_project_archs() -> None:
    """Make the architectures in configs/models/*.json (e.g. CultureCLIP-Tiny) known to open_clip."""
    global _ARCHS_REGISTERED
    if not _ARCHS_REGISTERED and PROJECT_ARCHS.is_dir():
        import open_clip

        open_clip.add_model_config(PROJECT_ARCHS)
        _ARCHS_REGISTERED = True


def _is_open_clip_arch(name: str) -> bool:
    try:
        import open_clip

        _register_project_archs()

        return name.replace("/", "-") in open_clip.list_models()
    except Exception:  # pragma: no cover - open_clip missing
        return False


# --------------------------------------------------------------------------------------------------
# Hub reachability: fail fast instead of 47 s of retries
# --------------------------------------------------------------------------------------------------

_HUB_CACHE: dict[str, bool] = {}
_OFFLINE_LOCK = threading.Lock()


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the HF endpoint accepts a TCP connection (cached per process). False when offline mode is set."""
    import huggingface_hub.constants as hc

    if hc.HF_HUB_OFFLINE:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", getattr(hc, "ENDPOINT", "https://huggingface.co"))
    if endpoint in _HUB_CACHE:
        return _HUB_CACHE[endpoint]
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    ok = False
    try:  # the timeout is this connection's own: no process-wide socket default in a threaded app
        with socket.create_connection((host, port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _HUB_CACHE[endpoint] = ok
    return ok


@contextlib.contextmanager
def _offline_mode():
    """Force huggingface_hub (and so transformers/open_clip) to use only the local cache."""
    import huggingface_hub.constants as hc

    with _OFFLINE_LOCK:
        old = hc.HF_HUB_OFFLINE
        old_env = os.environ.get("HF_HUB_OFFLINE")
        hc.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            yield
        finally:
            hc.HF_HUB_OFFLINE = old
            if old_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old_env


def _load_from_hub(spec: str, fn: Callable[[], Any]) -> Any:
    """Run a hub-loading function; when the hub is unreachable use only the cache and fail fast."""
    online = hub_reachable()
    try:
        if online:
            return fn()
        with _offline_mode():
            return fn()
    except BackboneError:
        raise
    except Exception as e:  # noqa: BLE001 - turned into one clear message
        if online:
            raise BackboneError(f"could not load model {spec!r}: {type(e).__name__}: {e}") from e
        raise BackboneError(
            f"could not load model {spec!r}: the Hugging Face hub is not reachable from this machine "
            f"and the weights are not in the local cache ({type(e).__name__}). {OFFLINE_HINT}"
        ) from e


def spec_format(spec: str) -> str | None:
    """'hf' (transformers CLIPModel) or 'open_clip' for a spec, without loading it; None when unknown
    (an unparsable spec, or a local folder that is not a model folder)."""
    try:
        ms = parse_spec(spec)
    except BackboneError:
        return None
    if ms.kind != "local":
        return ms.kind
    folder = Path(ms.name)
    if (folder / "open_clip_config.json").is_file():
        return "open_clip"
    if (folder / "config.json").is_file():
        return "hf"
    return None


def _hub_files_cached(repo_id: str, alternatives: list[list[str]], cache_dir: str | Path | None) -> bool:
    """True when, for each group of alternative file names, one is in the local HF cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str)

    return all(any(cached(n) for n in group) for group in alternatives)


def spec_cached(spec: str, cache_dir: str | Path | None = None) -> bool:
    """True when `spec` can be built without the network: a local folder, a random-init architecture, or
    hub weights already in the local Hugging Face cache (`cache_dir`, default HF_HOME's hub folder)."""
    try:
        ms = parse_spec(spec)
    except BackboneError:
        return False
    if ms.kind == "local":
        return Path(ms.name).is_dir()
    if ms.kind == "hf":
        return _hub_files_cached(
            ms.name, [["config.json"], ["model.safetensors", "model.safetensors.index.json"]], cache_dir
        )
    if ms.name.startswith("hf-hub:"):
        return _hub_files_cached(
            ms.name[len("hf-hub:"):],
            [["open_clip_config.json"], ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]],
            cache_dir,
        )
    if not ms.pretrained or Path(ms.pretrained).is_file():
        return True
    import open_clip

    hub_path = open_clip.get_pretrained_cfg(ms.name.replace("/", "-"), ms.pretrained).get("hf_hub", "")
    if not hub_path:  # a URL-only tag: open_clip keeps those outside the HF cache
        return False
    repo_id, filename = os.path.split(hub_path)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):  # open_clip tries the safetensors twin first
        names.insert(0, filename[:-4] + ".safetensors")
    return _hub_files_cached(repo_id, [names], cache_dir)


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------


def write_clip_tokenizer_files(folder: str | Path, model_max_length: int = 77) -> Path:
    """Write a transformers `CLIPTokenizer` (vocab.json, merges.txt, configs) converted from open_clip's
    bundled BPE, so HF CLIP models and diffusers pipelines get a tokenizer with no download.
    Gives the same ids as open_clip's SimpleTokenizer."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2), encoding="utf-8"
    )
    return folder


def _bundled_clip_tokenizer(model_max_length: int):
    from transformers import CLIPTokenizer

    cache = Path(os.environ.get("CULTURECLIP_CACHE", Path.home() / ".cache" / "cultureclip")) / "clip_tokenizer"
    if not (cache / "merges.txt").is_file():
        tmp = cache.with_name(f"clip_tokenizer.tmp{os.getpid()}")
        write_clip_tokenizer_files(tmp)
        try:
            os.replace(tmp, cache)
        except OSError:  # another process won the race
            pass
    return CLIPTokenizer.from_pretrained(str(cache), model_max_length=model_max_length)


class HFTokenize:
    """Callable list[str] -> LongTensor (B, L), padded to the model's context length."""

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        return out["input_ids"]


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


class ResizeCenterCrop:
    """Eval geometry of transformers' `CLIPImageProcessor`: resize, then center crop, on a PIL image.

    `resize` is the shortest edge (int; the long edge becomes int(resize * long / short), as in
    transformers) or an exact (height, width). The crop offsets are floor((size - crop) / 2), the
    processor's convention (torchvision's CenterCrop rounds instead, so they differ by one pixel for
    some margins; open_clip models keep torchvision's, HF models get their processor's)."""

    def __init__(self, resize: int | tuple[int, int] | None, crop: tuple[int, int] | None, resample: int = 3):
        from PIL import Image

        self.resize = resize
        self.crop = crop
        self.resample = Image.Resampling(int(resample))

    def _resized_size(self, w: int, h: int) -> tuple[int, int]:
        if isinstance(self.resize, (tuple, list)):
            return int(self.resize[1]), int(self.resize[0])
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = int(self.resize), int(int(self.resize) * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)

    def __call__(self, img):
        if self.resize is not None:
            size = self._resized_size(*img.size)
            if size != img.size:
                img = img.resize(size, self.resample)
        if self.crop is not None:
            ch, cw = self.crop
            w, h = img.size
            # out-of-image parts (crop larger than the image) are filled with black, as the processor pads with 0
            left, top = (w - cw) // 2 if w >= cw else -((cw - w) // 2), (h - ch) // 2 if h >= ch else -((ch - h) // 2)
            if (left, top, cw, ch) != (0, 0, w, h):
                img = img.crop((left, top, left + cw, top + ch))
        return img

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(resize={self.resize}, crop={self.crop}, resample={self.resample.name})"


def build_transforms(image_size: int | tuple[int, int], mean=OPENAI_MEAN, std=OPENAI_STD,
                     resize: int | tuple[int, int] | None = None, resample: int = 3):
    """(eval, train) transforms for HF CLIP models, mirroring their image processor.

    eval: RGB (the one alpha policy, `cultureclip.image.to_rgb`) -> resize (`resize`: shortest edge,
    or (h, w); default = the crop size) -> center crop to `image_size` -> tensor -> normalize.
    train: RGB -> random resized crop (scale 0.9-1) to `image_size` -> tensor -> normalize."""
    from torchvision import transforms as T

    crop = tuple(image_size) if isinstance(image_size, (tuple, list)) else (int(image_size), int(image_size))
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    eval_tf = T.Compose([to_rgb, ResizeCenterCrop(resize if resize is not None else crop[0], crop, resample)] + norm)
    train_tf = T.Compose(
        [to_rgb, T.RandomResizedCrop(crop, scale=(0.9, 1.0), interpolation=T.InterpolationMode.BICUBIC)] + norm
    )
    return eval_tf, train_tf


# --------------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------------


class ClipBackbone(nn.Module):
    """One interface over an open_clip `CLIP` or a transformers `CLIPModel`.

    `forward(images, texts)` returns open_clip's key names so `loss(**out, ...)` works.
    """

    def __init__(
        self,
        kind: str,
        spec: str,
        model: nn.Module,
        tokenize: Callable[[list[str]], torch.Tensor],
        preprocess_eval: Callable,
        preprocess_train: Callable,
        image_size: int,
        info: dict | None = None,
    ):
        super().__init__()
        if kind not in ("open_clip", "hf"):
            raise ValueError(f"kind must be open_clip or hf, got {kind!r}")
        self.kind = kind
        self.spec = spec
        self.model = model
        self.tokenize = tokenize
        self.preprocess_eval = preprocess_eval
        self.preprocess_train = preprocess_train
        self.image_size = image_size
        # everything needed to save/re-create the model without the hub (arch config, base spec, ...)
        self.info = dict(info or {})

    # -- properties ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def embed_dim(self) -> int:
        if self.kind == "hf":
            return int(self.model.config.projection_dim)
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") and self.model.text_projection is not None else int(self.info["model_cfg"]["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenize, "context_length", 77))

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp of the learned log-temperature (a 0-dim tensor with grad)."""
        return self.model.logit_scale.exp().reshape(())

    @torch.no_grad()
    def clamp_logit_scale(self, max_scale: float = 100.0) -> None:
        """Keep the learned log-temperature in [0, ln max_scale] (open_clip and OpenAI clamp at ln 100
        after every optimizer step), so a large step can neither zero nor blow up the scale."""
        self.model.logit_scale.clamp_(0.0, math.log(max_scale))

    # -- encoders --------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D)."""
        if self.kind == "hf":
            out = self.model.get_image_features(pixel_values=images)
            feats = out if torch.is_tensor(out) else out.pooler_output
        else:
            feats = self.model.encode_image(images)
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, L) token ids -> (B, D)."""
        if self.kind == "hf":
            out = self.model.get_text_features(input_ids=self._trim_padding(tokens))
            feats = out if torch.is_tensor(out) else out.pooler_output
        else:
            feats = self.model.encode_text(tokens)
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    def _trim_padding(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L') with L' = the last pooled (EOS) position + 1, for an HF CLIP text tower.

        Its attention is causal and it pools at the EOS token, so the padding columns after every row's
        EOS change nothing but cost time: short prompts padded to 77 tokens embed ~3x faster trimmed.
        The EOS position is found as transformers finds it (argmax for legacy eos_token_id=2 configs)."""
        if tokens.ndim != 2 or tokens.shape[1] <= 1:
            return tokens
        eos = getattr(self.model.text_model, "eos_token_id", None)
        ids = tokens.to(torch.int)
        pos = ids.argmax(dim=-1) if eos == 2 or eos is None else (ids == eos).to(torch.int).argmax(dim=-1)
        return tokens[:, : int(pos.max()) + 1]

    def forward(self, images: torch.Tensor | None = None, texts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"logit_scale": self.logit_scale}
        if images is not None:
            out["image_features"] = self.encode_image(images)
        if texts is not None:
            out["text_features"] = self.encode_text(texts)
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if self.kind == "hf":
            if enable:
                self.model.gradient_checkpointing_enable()
            else:
                self.model.gradient_checkpointing_disable()
        else:
            self.model.set_grad_checkpointing(enable)

    def towers(self) -> dict[str, nn.Module]:
        """The image and text towers (for locking one of them)."""
        if self.kind == "hf":
            return {
                "image": nn.ModuleList([self.model.vision_model, self.model.visual_projection]),
                "text": nn.ModuleList([self.model.text_model, self.model.text_projection]),
            }
        text_parts = [m for n, m in self.model.named_children() if n != "visual"]
        return {"image": self.model.visual, "text": nn.ModuleList(text_parts)}

    def text_only_params(self) -> list[nn.Parameter]:
        """Text-tower parameters, including bare parameters such as open_clip's positional embedding."""
        if self.kind == "hf":
            return list(self.towers()["text"].parameters())
        return [p for n, p in self.model.named_parameters() if not n.startswith("visual.") and n != "logit_scale" and n != "logit_bias"]


# --------------------------------------------------------------------------------------------------
# Builders per kind
# --------------------------------------------------------------------------------------------------


def _open_clip_model_cfg(name: str) -> dict | None:
    import open_clip

    if name.startswith("hf-hub:"):
        from open_clip.factory import _get_hf_config

        cfg = _get_hf_config(name[len("hf-hub:"):])
        return cfg.get("model_cfg")
    return open_clip.get_model_config(name.replace("/", "-"))


def _wrap_open_clip(model, spec: str, name: str, model_cfg: dict | None, extra_info: dict | None = None) -> ClipBackbone:
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from torchvision.transforms import Compose

    pp = PreprocessCfg(**model.visual.preprocess_cfg)
    # RGB first (one alpha policy), then open_clip's own transforms: open_clip converts only after
    # resizing, which resizes palette images with nearest-neighbour and RGBA with premultiplied alpha
    eval_tf = Compose([to_rgb, image_transform_v2(pp, is_train=False)])
    train_tf = Compose([to_rgb, image_transform_v2(pp, is_train=True)])
    tokenizer = open_clip.get_tokenizer(name)
    if not hasattr(tokenizer, "context_length"):
        tokenizer.context_length = model.context_length
    size = pp.size if isinstance(pp.size, int) else pp.size[0]
    info = {"model_cfg": model_cfg, "preprocess_cfg": dict(model.visual.preprocess_cfg), "open_clip_name": name}
    info.update(extra_info or {})
    return ClipBackbone("open_clip", spec, model, tokenizer, eval_tf, train_tf, int(size), info)


def tag_quick_gelu(name: str, pretrained: str | None) -> bool:
    """True when open_clip's pretrained config for (architecture, tag) says the weights use QuickGELU."""
    if not pretrained or name.startswith("hf-hub:"):
        return False
    import open_clip

    return bool(open_clip.get_pretrained_cfg(name.replace("/", "-"), pretrained).get("quick_gelu", False))


def _build_open_clip(ms: ModelSpec, spec: str) -> ClipBackbone:
    import open_clip

    _register_project_archs()

    name = ms.name
    if not name.startswith("hf-hub:") and name.replace("/", "-") not in open_clip.list_models():
        raise BackboneError(
            f"unknown open_clip architecture {name!r} in spec {spec!r}; see open_clip.list_models() "
            "(e.g. ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    if ms.pretrained and not name.startswith("hf-hub:"):
        tags = open_clip.list_pretrained_tags_by_model(name.replace("/", "-"))
        if ms.pretrained not in tags and not Path(ms.pretrained).is_file():
            raise BackboneError(
                f"unknown pretrained tag {ms.pretrained!r} for {name} in spec {spec!r}; valid tags: {', '.join(tags) or 'none'}"
            )

    # The pretrained tag says which activation its weights were trained with (every `openai` tag and
    # the yfcc/cc12m/laion400m ones use QuickGELU); building the plain config with them would give
    # embeddings that are not the published model's (open_clip only warns about the mismatch).
    quick_gelu = tag_quick_gelu(name, ms.pretrained)

    def load():
        model = open_clip.create_model(name, pretrained=ms.pretrained, weights_only=True, force_quick_gelu=quick_gelu)
        model_cfg = _open_clip_model_cfg(name)
        if quick_gelu and model_cfg is not None:
            model_cfg = {**model_cfg, "quick_gelu": True}  # a saved copy keeps the activation
        return model, model_cfg

    needs_hub = name.startswith("hf-hub:") or (ms.pretrained is not None and not Path(ms.pretrained).is_file())
    model, model_cfg = _load_from_hub(spec, load) if needs_hub else load()
    return _wrap_open_clip(model, spec, name, model_cfg)


def _build_hf(path_or_id: str, spec: str, local: bool) -> ClipBackbone:
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    def load():
        model = CLIPModel.from_pretrained(path_or_id, use_safetensors=True)
        cfg = model.config
        ctx = int(cfg.text_config.max_position_embeddings)
        try:
            tok = AutoTokenizer.from_pretrained(path_or_id, model_max_length=ctx)
        except Exception as e:  # noqa: BLE001 - no tokenizer files: fall back to the bundled CLIP BPE
            logger.info("no tokenizer in %s (%s); using the bundled CLIP BPE tokenizer", path_or_id, type(e).__name__)
            tok = _bundled_clip_tokenizer(ctx)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        pp = _hf_preprocess_cfg(path_or_id, int(cfg.vision_config.image_size))
        return model, tok, ctx, pp

    if local:
        try:
            model, tok, ctx, pp = load()
        except OSError as e:
            raise BackboneError(f"could not load HF CLIP folder {path_or_id!r}: {e}") from e
    else:
        model, tok, ctx, pp = _load_from_hub(spec, load)
    if not isinstance(model.config, CLIPConfig):  # pragma: no cover - from_pretrained already enforces
        raise BackboneError(f"{spec!r} is not a CLIP model")
    eval_tf, train_tf = build_transforms(pp["size"], pp["mean"], pp["std"], resize=pp["resize"], resample=pp["resample"])
    info = {"hf_source": path_or_id, "preprocess_cfg": pp}
    return ClipBackbone("hf", spec, model, HFTokenize(tok, ctx), eval_tf, train_tf, pp["size"], info)


def _hf_preprocess_cfg(path_or_id: str, default_size: int) -> dict:
    """The image processor's geometry and normalization (preprocessor_config.json), else CLIP defaults.

    Returns {"size": crop size (the model's input side), "resize": shortest edge (int) or [h, w] (exact)
    or None (no resize), "mean", "std", "resample" (a PIL filter code)}. A processor that resizes to 256
    and crops 224 keeps both: resizing straight to the crop size would show the model more of the image
    than it was trained on."""
    cfg: dict = {}
    try:
        from transformers import CLIPImageProcessor

        cfg = CLIPImageProcessor.from_pretrained(path_or_id).to_dict()
    except Exception:  # noqa: BLE001 - no processor config: defaults
        cfg = {}
    size, crop = cfg.get("size"), cfg.get("crop_size")
    resize: int | list[int] | None = default_size
    if isinstance(size, dict) and size.get("shortest_edge"):
        resize = int(size["shortest_edge"])
    elif isinstance(size, dict) and size.get("height") and size.get("width"):
        resize = [int(size["height"]), int(size["width"])]
    elif isinstance(size, int):
        resize = size
    if not cfg.get("do_resize", True):
        resize = None
    if isinstance(crop, dict):
        crop = crop.get("height") or crop.get("shortest_edge")
    if not cfg.get("do_center_crop", True) or not crop:
        crop = resize if isinstance(resize, int) else (resize[0] if resize else default_size)
    side = int(crop)
    return {
        "size": int(side),
        "resize": resize,
        "mean": tuple(cfg.get("image_mean") or OPENAI_MEAN),
        "std": tuple(cfg.get("image_std") or OPENAI_STD),
        "resample": int(cfg.get("resample", 3)),
    }


def _build_local(folder: Path, spec: str) -> ClipBackbone:
    if not folder.is_dir():
        raise BackboneError(f"model folder {str(folder)!r} does not exist. {OFFLINE_HINT}")
    meta_path = folder / CHECKPOINT_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if (folder / "open_clip_config.json").is_file():
        _refuse_pickles(folder, "open_clip")
        import open_clip

        cfg = json.loads((folder / "open_clip_config.json").read_text())
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True)
        bb = _wrap_open_clip(model, spec, f"local-dir:{folder}", cfg.get("model_cfg"), {"checkpoint": meta})
        return bb
    if (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "clip":
            raise BackboneError(
                f"{folder}/config.json has model_type={cfg.get('model_type')!r}; only CLIP models (model_type 'clip') are supported"
            )
        _refuse_pickles(folder, "hf")
        bb = _build_hf(str(folder), spec, local=True)
        bb.info["checkpoint"] = meta
        return bb
    raise BackboneError(
        f"{folder} is not a model folder: expected config.json (HF CLIPModel), open_clip_config.json "
        f"(open_clip) or {CHECKPOINT_META} (our trainer). Files there: {sorted(p.name for p in folder.iterdir())[:10]}"
    )


def _refuse_pickles(folder: Path, kind: str) -> None:
    """Weights must be safetensors: we never unpickle a user-supplied file."""
    if not list(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            raise BackboneError(
                f"{folder} has weights only in pickle format ({', '.join(pickles)}); CultureCLIP loads safetensors only. "
                "Convert once in a trusted environment (e.g. load then save with safetensors) and retry."
            )
        raise BackboneError(f"{folder} has no *.safetensors weights")


def create_backbone(
    spec: str,
    device: str | torch.device | None = "cpu",
    precision: str = "fp32",
) -> ClipBackbone:
    """Build a `ClipBackbone` from a model spec string (see module docstring).

    precision: fp32 | fp16 | bf16 (half precisions are meant for GPU inference)."""
    ms = parse_spec(spec)
    if ms.kind == "open_clip":
        bb = _build_open_clip(ms, spec)
    elif ms.kind == "hf":
        bb = _build_hf(ms.name, spec, local=False)
    else:
        bb = _build_local(Path(ms.name), spec)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise BackboneError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
    bb = bb.to(device=device or "cpu", dtype=dtypes[precision])
    bb.eval()
    return bb


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
