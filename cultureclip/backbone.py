"""The ONE place that builds CLIP models, for both open_clip and Hugging Face transformers.

`create_backbone(spec)` turns a model spec string into a `ClipBackbone`, a thin `nn.Module` with one
interface for both kinds: normalized image/text embeddings, a tokenizer, eval/train preprocessing and
the logit scale. Each kind is its own subclass (`OpenClipBackbone`, `HFClipBackbone`), which knows how
to load, encode, split into towers and save its format. Accepted specs (see ARCHITECTURE.md):

    open_clip:ViT-B-32@openai         open_clip architecture + pretrained tag
    open_clip:ViT-B-32                random init
    open_clip:hf-hub:org/name         open_clip model on the hub
    hf:openai/clip-vit-base-patch32   transformers CLIPModel (also the paper's merged-LoRA checkpoints)
    org/name                          bare hub id -> hf:
    ViT-B-32@openai / ViT-B-32        bare open_clip architecture
    /path/to/folder                   HF folder, open_clip folder or a checkpoint our trainer wrote

When the hub cannot be reached, each load resolves its files from the local Hugging Face cache
explicitly (`local_files_only`, a cached snapshot folder, a cached weights file passed as a path); no
process-wide setting (environment variable, huggingface_hub constant, socket timeout) is ever changed,
so loads in one thread of an app never change another's. Files that are not cached fail within seconds
(not after ~47 s of retries) with a message naming the spec and suggesting a local folder or the
offline default.

A model's own tokenizer and image processor are used when it has them; if its tokenizer or processor
files are there but fail to load, loading fails with a message naming them. Only a model with no such
files at all gets a fallback (the bundled CLIP BPE when its vocabulary size is the BPE's; OpenAI CLIP
mean/std), with a logged warning, recorded in `info["tokenizer_source"]` / `info["preprocess_source"]`.
"""
from __future__ import annotations

import gzip
import json
import math
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch
from torch import nn

from .config import config_dir
from .fileio import atomic_dir
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


PROJECT_ARCHS = config_dir() / "models"  # package data in a wheel, the top-level configs/ in a checkout
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
# Hub reachability and the local cache: fail fast instead of 47 s of retries, change no global state
# --------------------------------------------------------------------------------------------------

_HUB_CACHE: dict[str, bool] = {}


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


def _load_from_hub(spec: str, load: Callable[[bool], Any]) -> Any:
    """Run `load(offline)`; offline (the hub unreachable) it must read only the local cache, explicitly.

    Every failure becomes one clear `BackboneError` naming the spec (offline: with OFFLINE_HINT)."""
    online = hub_reachable()
    try:
        return load(not online)
    except BackboneError:
        raise
    except Exception as e:  # noqa: BLE001 - turned into one clear message
        if online:
            raise BackboneError(f"could not load model {spec!r}: {type(e).__name__}: {e}") from e
        raise BackboneError(
            f"could not load model {spec!r}: the Hugging Face hub is not reachable from this machine "
            f"and the weights are not in the local cache ({type(e).__name__}). {OFFLINE_HINT}"
        ) from e


def _cached_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub repo (its `main` revision), without the network.

    Raises huggingface_hub's LocalEntryNotFoundError when the repo is not in the cache."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, local_files_only=True))


def _cached_file(repo_id: str, names: list[str], cache_dir: str | Path | None = None) -> str | None:
    """The local path of the first of `names` cached for `repo_id` (no network), or None."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        path = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(path, str):
            return path
    return None


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


HF_WEIGHT_NAMES = ["model.safetensors", "model.safetensors.index.json"]
OPEN_CLIP_HUB_WEIGHT_NAMES = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]  # open_clip's order


def _tag_hub_weights(arch: str, tag: str) -> tuple[str, list[str]] | None:
    """(hub repo, candidate file names in open_clip's order) of an open_clip pretrained tag's weights,
    or None for a tag that is not on the hub (a URL; open_clip keeps those outside the HF cache)."""
    import open_clip

    hub_path = open_clip.get_pretrained_cfg(arch.replace("/", "-"), tag).get("hf_hub", "")
    if not hub_path:
        return None
    repo_id, filename = os.path.split(hub_path)
    if not filename:
        return repo_id, list(OPEN_CLIP_HUB_WEIGHT_NAMES)
    names = [filename]
    if filename.endswith((".bin", ".pth")):  # open_clip tries the safetensors twin first
        names.insert(0, filename[:-4] + ".safetensors")
    return repo_id, names


def _hub_files_cached(repo_id: str, alternatives: list[list[str]], cache_dir: str | Path | None) -> bool:
    """True when, for each group of alternative file names, one is in the local HF cache (no network)."""
    return all(_cached_file(repo_id, group, cache_dir) is not None for group in alternatives)


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
        return _hub_files_cached(ms.name, [["config.json"], HF_WEIGHT_NAMES], cache_dir)
    if ms.name.startswith("hf-hub:"):
        return _hub_files_cached(ms.name[len("hf-hub:"):], [["open_clip_config.json"], OPEN_CLIP_HUB_WEIGHT_NAMES], cache_dir)
    if not ms.pretrained or Path(ms.pretrained).is_file():
        return True
    hub = _tag_hub_weights(ms.name, ms.pretrained)
    return hub is not None and _hub_files_cached(hub[0], [hub[1]], cache_dir)

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
        with atomic_dir(cache, keep_existing=True) as tmp:  # another process may publish it first: keep that one
            write_clip_tokenizer_files(tmp)
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
# An HF model's own tokenizer and image processor; a visible fallback only when it has none
# --------------------------------------------------------------------------------------------------

TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                         "tokenizer.model")
TOKENIZER_OTHER_FILES = ("merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
CLIP_BPE_VOCAB_SIZE = 49408  # open_clip's bundled BPE: 256 bytes x2 + 48,894 merges + 2 special tokens
CLIP_BPE_EOS_IDS = (49407, 2)  # <|endoftext|>; 2 in legacy transformers CLIP configs (pooled at the argmax)
BUNDLED_BPE_SOURCE = "bundled CLIP BPE (no tokenizer files in the model)"
DEFAULT_PREPROCESS_SOURCE = "OpenAI CLIP mean/std, resize + center crop to the model's image size (no preprocessor files in the model)"


def _hf_tokenizer(source: str, files: set[str], text_config, ctx: int, spec: str, local_files_only: bool,
                  files_in: str = "the model"):
    """(tokenizer, where it came from) for an HF CLIP model whose folder/repo holds `files`.

    The model's own tokenizer when it has tokenizer files (they must load); the bundled CLIP BPE only
    when it has none and its text tower was built for that BPE (vocabulary size and end token)."""
    from transformers import AutoTokenizer

    vocab = sorted(f for f in files if f in TOKENIZER_VOCAB_FILES)
    present = sorted(f for f in files if f in TOKENIZER_VOCAB_FILES + TOKENIZER_OTHER_FILES)
    vocab_size = int(text_config.vocab_size)
    if present and not vocab:
        raise BackboneError(
            f"model {spec!r} has tokenizer files ({', '.join(present)}) but no vocabulary (one of "
            f"{', '.join(TOKENIZER_VOCAB_FILES)}). Save the full tokenizer there "
            "(`AutoTokenizer.from_pretrained(<its base model>).save_pretrained(<folder>)`), or remove the partial "
            "tokenizer files to use the bundled CLIP BPE."
        )
    if present:
        try:
            tok = AutoTokenizer.from_pretrained(source, model_max_length=ctx, local_files_only=local_files_only)
        except Exception as e:  # noqa: BLE001 - one clear message naming the files
            raise BackboneError(
                f"model {spec!r}: its tokenizer ({', '.join(present)}) failed to load: {type(e).__name__}: {e}. "
                "Repair or re-save those files (`AutoTokenizer.from_pretrained(<its base model>).save_pretrained(<folder>)`)."
            ) from e
        if len(tok) > vocab_size:
            raise BackboneError(
                f"model {spec!r}: its tokenizer ({', '.join(present)}) has {len(tok)} tokens but the text tower has "
                f"vocab_size={vocab_size}: the tokenizer belongs to another model. Save the tokenizer the model was "
                "trained with into its folder."
            )
        return tok, f"the model's own ({type(tok).__name__}: {', '.join(vocab)})"
    eos = getattr(text_config, "eos_token_id", None)
    if vocab_size != CLIP_BPE_VOCAB_SIZE or (eos is not None and eos not in CLIP_BPE_EOS_IDS):
        raise BackboneError(
            f"model {spec!r} has no tokenizer files and its text tower (vocab_size={vocab_size}, eos_token_id={eos}) "
            f"was not built for the CLIP BPE (vocab_size={CLIP_BPE_VOCAB_SIZE}, eos_token_id=49407), so no bundled "
            "tokenizer fits. Save the tokenizer it was trained with into its folder "
            "(`tokenizer.save_pretrained(<folder>)`)."
        )
    logger.warning("model %r has no tokenizer files; using the bundled CLIP BPE tokenizer (vocab_size %d matches)",
                   spec, vocab_size)
    return _bundled_clip_tokenizer(ctx), BUNDLED_BPE_SOURCE.replace("the model", files_in)


def _hf_preprocess_cfg(source: str, files: set[str], default_size: int, spec: str,
                       local_files_only: bool, files_in: str = "the model") -> tuple[dict, str]:
    """The image processor's geometry and normalization (preprocessor_config.json) and where it came from.

    Returns ({"size": crop size (the model's input side), "resize": shortest edge (int) or [h, w] (exact)
    or None (no resize), "mean", "std", "resample" (a PIL filter code)}, source). A processor that resizes
    to 256 and crops 224 keeps both: resizing straight to the crop size would show the model more of the
    image than it was trained on. A model with processor files that fail to load is an error; one with
    none gets CLIP's defaults (OpenAI mean/std, the model's image size), with a warning."""
    present = [f for f in PREPROCESSOR_FILES if f in files]
    if present:
        from transformers import CLIPImageProcessor

        try:
            cfg = CLIPImageProcessor.from_pretrained(source, local_files_only=local_files_only).to_dict()
        except Exception as e:  # noqa: BLE001 - one clear message naming the file
            raise BackboneError(
                f"model {spec!r}: its image processor ({', '.join(present)}) failed to load: {type(e).__name__}: {e}. "
                "Repair or re-save it (`CLIPImageProcessor.from_pretrained(<its base model>).save_pretrained(<folder>)`)."
            ) from e
        where = f"the model's own ({', '.join(present)})"
    else:
        logger.warning("model %r has no preprocessor files; using OpenAI CLIP mean/std at its image size %d",
                       spec, default_size)
        cfg, where = {}, DEFAULT_PREPROCESS_SOURCE.replace("in the model)", f"in {files_in})")
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
    pp = {
        "size": int(side),
        "resize": resize,
        "mean": tuple(cfg.get("image_mean") or OPENAI_MEAN),
        "std": tuple(cfg.get("image_std") or OPENAI_STD),
        "resample": int(cfg.get("resample", 3)),
    }
    return pp, where


# --------------------------------------------------------------------------------------------------
# The backbone: one interface, one subclass per format
# --------------------------------------------------------------------------------------------------


def length_buckets(lengths: list[int], overhead: int) -> list[tuple[list[int], int]]:
    """Texts grouped for a text forward cut at each group's longest text: ``[(rows, length), ...]``.

    ``lengths[i]`` is the tokens row ``i`` needs (its pooled position + 1). Groups are runs of the rows
    sorted by length, chosen to minimise the tokens run (rows x the group's length) plus ``overhead``
    tokens per extra forward call (exact dynamic programme over the distinct lengths, at most a few dozen)."""
    if not lengths:
        return []
    by_length: dict[int, list[int]] = {}
    for row, n in enumerate(lengths):
        by_length.setdefault(int(n), []).append(row)
    values = sorted(by_length)
    counts = [len(by_length[v]) for v in values]
    best, cut = [0.0] * (len(values) + 1), [0] * (len(values) + 1)  # best[j]: the first j lengths grouped
    for j in range(1, len(values) + 1):
        rows, best[j] = 0, math.inf
        for i in range(j, 0, -1):  # the last group holds lengths i-1 .. j-1
            rows += counts[i - 1]
            cost = best[i - 1] + rows * values[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups, j = [], len(values)
    while j > 0:
        i = cut[j]
        groups.append(([r for v in values[i:j] for r in by_length[v]], values[j - 1]))
        j = i
    return groups[::-1]


class ClipBackbone(nn.Module):
    """One interface over a CLIP model; `OpenClipBackbone` and `HFClipBackbone` implement it.

    `forward(images, texts)` returns open_clip's key names so `loss(**out, ...)` works. `kind` is the
    format ("open_clip" | "hf"), the value checkpoints and results record.
    """

    kind: str = ""

    def __init__(
        self,
        spec: str,
        model: nn.Module,
        tokenize: Callable[[list[str]], torch.Tensor],
        preprocess_eval: Callable,
        preprocess_train: Callable,
        image_size: int,
        info: dict | None = None,
    ):
        super().__init__()
        if type(self) is ClipBackbone:
            raise TypeError("ClipBackbone is the interface; build one with create_backbone(spec)")
        self.spec = spec
        self.model = model
        self.tokenize = tokenize
        self.preprocess_eval = preprocess_eval
        self.preprocess_train = preprocess_train
        self.image_size = image_size
        # everything needed to save/re-create the model without the hub (arch config, base spec, ...) and
        # where its tokenizer and preprocessing came from (tokenizer_source, preprocess_source)
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
        raise NotImplementedError

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
    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D)."""
        feats = self._image_features(images)
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, L) token ids -> (B, D)."""
        feats = self._text_features(tokens)
        return nn.functional.normalize(feats, dim=-1) if normalize else feats

    def _text_ends(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """(B,) the position each row's text embedding is pooled at, when the text tower is causal and pools
        at one token (then everything after it changes nothing: the forward can stop there); None when it
        cannot be cut (bidirectional attention, mean or last-token pooling, ...)."""
        return None

    def encode_text_cut(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``encode_text`` of padded (B, L) tokens, run in groups of similar length, each group's forward
        stopped at its longest text's pooled token (``length_buckets``): the same embeddings up to float
        rounding, where the text tower allows the cut (``_text_ends``); else plain ``encode_text``.
        Captions of ~30 tokens and prompts of ~8 padded to 77 cost 2-5x less this way."""
        ends = self._text_ends(tokens) if tokens.ndim == 2 and tokens.shape[0] > 0 else None
        if ends is None:
            return self.encode_text(tokens, normalize)
        overhead = self.CUT_OVERHEAD_TOKENS["cuda" if tokens.is_cuda else "cpu"]
        groups = length_buckets((ends + 1).tolist(), overhead)
        if len(groups) == 1:
            return self.encode_text(tokens[:, : groups[0][1]], normalize)
        rows = [torch.tensor(r, device=tokens.device) for r, _ in groups]
        feats = torch.cat([self.encode_text(tokens[r, :n], normalize) for r, (_, n) in zip(rows, groups)])
        order = torch.cat(rows)
        back = torch.empty_like(order)
        back[order] = torch.arange(order.numel(), device=order.device)
        return feats[back]

    # what one more forward call of ``encode_text_cut`` costs, in text tokens (rows x columns): on a CPU a
    # call's fixed cost is that of a few tokens (64 is generous); on a GPU the extra kernel launches of a
    # call (~1 ms) outweigh the columns saved at any usual batch, so there it is one call cut at the
    # batch's longest text (an estimate: not measured on a GPU yet)
    CUT_OVERHEAD_TOKENS = {"cpu": 64, "cuda": 1 << 20}

    def forward(self, images: torch.Tensor | None = None, texts: torch.Tensor | None = None,
                cut_texts: bool = True) -> dict[str, torch.Tensor]:
        """open_clip's output names (``image_features``, ``text_features``, ``logit_scale``), normalized.
        The training step's path: texts go through ``encode_text_cut`` unless ``cut_texts=False``."""
        out: dict[str, torch.Tensor] = {"logit_scale": self.logit_scale}
        if images is not None:
            out["image_features"] = self.encode_image(images)
        if texts is not None:
            out["text_features"] = self.encode_text_cut(texts) if cut_texts else self.encode_text(texts)
        return out

    # -- per-format structure ----------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        raise NotImplementedError

    def towers(self) -> dict[str, nn.Module]:
        """The image and text towers (for locking one of them)."""
        raise NotImplementedError

    def text_only_params(self) -> list[nn.Parameter]:
        """Text-tower parameters, including bare parameters such as open_clip's positional embedding."""
        raise NotImplementedError

    def save_native(self, folder: Path) -> None:
        """Write the model in its own format into the (existing, empty) `folder`, loadable without our code."""
        raise NotImplementedError


# -- open_clip ---------------------------------------------------------------------------------------


def tag_quick_gelu(name: str, pretrained: str | None) -> bool:
    """True when open_clip's pretrained config for (architecture, tag) says the weights use QuickGELU."""
    if not pretrained or name.startswith("hf-hub:"):
        return False
    import open_clip

    return bool(open_clip.get_pretrained_cfg(name.replace("/", "-"), pretrained).get("quick_gelu", False))


def _cached_tag_weights(arch: str, tag: str) -> str:
    """The local path of an open_clip pretrained tag's weights, found without the network (the HF cache,
    or open_clip's own download folder for URL-only tags); FileNotFoundError when not there."""
    import open_clip
    from open_clip.pretrained import download_pretrained_from_url

    cfg = open_clip.get_pretrained_cfg(arch.replace("/", "-"), tag)
    if cfg.get("file"):
        return cfg["file"]
    hub = _tag_hub_weights(arch, tag)
    if hub is not None:
        path = _cached_file(*hub)
        if path is None:
            raise FileNotFoundError(f"{hub[0]}/{hub[1][-1]} (weights of {arch}@{tag}) is not in the local Hugging Face cache")
        return path
    url = cfg.get("url", "")
    if url and os.path.isfile(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))):
        return download_pretrained_from_url(url)  # the cached file, its checksum verified
    raise FileNotFoundError(f"the weights of {arch}@{tag} ({url or 'no url'}) are not cached")


def _offline_text_tower_kwargs(model_cfg: dict | None) -> dict:
    """create_model kwargs that point a transformers text tower (text_cfg.hf_model_name, a hub id) at its
    cached snapshot folder, so building its config reads no network; {} for open_clip's own text tower."""
    text = dict((model_cfg or {}).get("text_cfg") or {})
    if not text.get("hf_model_name"):
        return {}
    text["hf_model_name"] = str(_cached_snapshot(text["hf_model_name"]))
    text["hf_model_pretrained"] = False  # the full CLIP checkpoint holds the text tower's weights
    return {"text_cfg": text}


def _open_clip_tokenizer(name: str, model_cfg: dict | None, offline: bool):
    """open_clip's tokenizer for the model; offline, a transformers tokenizer (text_cfg.hf_tokenizer_name)
    is read from the local cache only."""
    import open_clip

    text = (model_cfg or {}).get("text_cfg") or {}
    if offline and text.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(text["hf_tokenizer_name"], context_length=text.get("context_length", 77),
                           tokenizer_mode=text.get("tokenizer_mode"), local_files_only=True,
                           **text.get("tokenizer_kwargs", {}))
    return open_clip.get_tokenizer(name)


class OpenClipBackbone(ClipBackbone):
    """An open_clip `CLIP` (built-in architecture + tag, `hf-hub:` repo, or an open_clip folder)."""

    kind = "open_clip"

    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if proj is not None:
            return int(proj.shape[1])
        return int(self.info["model_cfg"]["embed_dim"])

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 2 and tokens.shape[1] < self.model.positional_embedding.shape[0] and self._cuttable():
            return self._cut_text_features(tokens)
        return self.model.encode_text(tokens)

    def _cuttable(self) -> bool:
        """Whether the text forward may stop after the pooled token: an open_clip ``CLIP`` (its own text
        tower) with a causal mask, pooling at one token (``argmax`` or ``eos``). Checked once per model."""
        ok = getattr(self, "_cut_ok", None)
        if ok is None:
            m = self.model
            mask = getattr(m, "attn_mask", None)
            ok = (all(hasattr(m, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final"))
                  and getattr(m, "text_pool_type", None) in ("argmax", "eos") and mask is not None
                  and mask.ndim == 2 and bool((torch.isinf(mask) == torch.ones_like(mask, dtype=torch.bool).triu(1)).all()))
            self._cut_ok = ok
        return ok

    def _text_ends(self, tokens: torch.Tensor) -> torch.Tensor | None:
        if not self._cuttable():
            return None
        if self.model.text_pool_type == "argmax":
            return tokens.argmax(dim=-1)
        return (tokens == self.model.text_eos_id).int().argmax(dim=-1)

    def _cut_text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's ``CLIP.encode_text`` on (B, L') tokens, L' < the context length: the positional
        embedding and the causal mask cut to L' (the model's own method adds all 77 positions)."""
        from open_clip.transformer import text_global_pool

        m, n = self.model, tokens.shape[1]
        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast_dtype) + m.positional_embedding[:n].to(cast_dtype)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:n, :n]))
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def towers(self) -> dict[str, nn.Module]:
        text_parts = [m for n, m in self.model.named_children() if n != "visual"]
        return {"image": self.model.visual, "text": nn.ModuleList(text_parts)}

    def text_only_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters()
                if not n.startswith("visual.") and n != "logit_scale" and n != "logit_bias"]

    def save_native(self, folder: Path) -> None:
        from safetensors.torch import save_file

        cfg = {"model_cfg": self.info.get("model_cfg"), "preprocess_cfg": self.info.get("preprocess_cfg", {})}
        if cfg["model_cfg"] is None:
            raise ValueError("this open_clip backbone has no architecture config to save (info['model_cfg'])")
        (Path(folder) / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
        sd = {k: v.detach().contiguous().clone().cpu() for k, v in self.model.state_dict().items()}
        save_file(sd, str(Path(folder) / "open_clip_model.safetensors"))

    # -- builders ----------------------------------------------------------------------------------
    @classmethod
    def wrap(cls, model, spec: str, name: str, model_cfg: dict | None, tokenizer=None,
             extra_info: dict | None = None) -> "OpenClipBackbone":
        """A backbone around a built open_clip model, with open_clip's own tokenizer and transforms."""
        from open_clip.transform import PreprocessCfg, image_transform_v2
        from torchvision.transforms import Compose

        pp = PreprocessCfg(**model.visual.preprocess_cfg)
        # RGB first (one alpha policy), then open_clip's own transforms: open_clip converts only after
        # resizing, which resizes palette images with nearest-neighbour and RGBA with premultiplied alpha
        eval_tf = Compose([to_rgb, image_transform_v2(pp, is_train=False)])
        train_tf = Compose([to_rgb, image_transform_v2(pp, is_train=True)])
        if tokenizer is None:
            tokenizer = _open_clip_tokenizer(name, model_cfg, offline=False)
        if not hasattr(tokenizer, "context_length"):
            tokenizer.context_length = model.context_length
        size = pp.size if isinstance(pp.size, int) else pp.size[0]
        info = {"model_cfg": model_cfg, "preprocess_cfg": dict(model.visual.preprocess_cfg), "open_clip_name": name,
                "tokenizer_source": f"open_clip's own ({type(tokenizer).__name__})",
                "preprocess_source": "open_clip's own (preprocess_cfg)"}
        info.update(extra_info or {})
        return cls(spec, model, tokenizer, eval_tf, train_tf, int(size), info)

    @classmethod
    def from_spec(cls, ms: ModelSpec, spec: str) -> "OpenClipBackbone":
        """open_clip:ARCH[@TAG] or open_clip:hf-hub:org/name."""
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
        if name.startswith("hf-hub:"):
            return _load_from_hub(spec, lambda offline: cls._from_hf_hub(name, spec, offline))
        if ms.pretrained is not None and not Path(ms.pretrained).is_file():
            return _load_from_hub(spec, lambda offline: cls._from_arch(name, ms.pretrained, spec, offline))
        return cls._from_arch(name, ms.pretrained, spec, offline=False)

    @classmethod
    def _from_arch(cls, name: str, pretrained: str | None, spec: str, offline: bool) -> "OpenClipBackbone":
        import open_clip
        from open_clip.transform import PreprocessCfg

        # The pretrained tag says which activation its weights were trained with (every `openai` tag and
        # the yfcc/cc12m/laion400m ones use QuickGELU); building the plain config with them would give
        # embeddings that are not the published model's (open_clip only warns about the mismatch).
        quick_gelu = tag_quick_gelu(name, pretrained)
        model_cfg = open_clip.get_model_config(name.replace("/", "-"))
        if offline and pretrained and not Path(pretrained).is_file():
            # the tag's weights file from the local cache, passed as a path; the tag's normalization
            # (open_clip merges it only for a tag) is passed explicitly, the size stays the model's
            tag_cfg = open_clip.get_pretrained_cfg(name.replace("/", "-"), pretrained)
            keys = set(PreprocessCfg.__dataclass_fields__) - {"size"}
            model = open_clip.create_model(
                name, pretrained=_cached_tag_weights(name, pretrained), weights_only=True, force_quick_gelu=quick_gelu,
                force_preprocess_cfg={k: v for k, v in tag_cfg.items() if k in keys and v is not None},
                **_offline_text_tower_kwargs(model_cfg),
            )
        else:
            model = open_clip.create_model(name, pretrained=pretrained, weights_only=True, force_quick_gelu=quick_gelu)
        if quick_gelu and model_cfg is not None:
            model_cfg = {**model_cfg, "quick_gelu": True}  # a saved copy keeps the activation
        return cls.wrap(model, spec, name, model_cfg, _open_clip_tokenizer(name, model_cfg, offline))

    @classmethod
    def _from_hf_hub(cls, name: str, spec: str, offline: bool) -> "OpenClipBackbone":
        import open_clip

        repo_id = name[len("hf-hub:"):]
        if not offline:
            from open_clip.factory import _get_hf_config

            model = open_clip.create_model(name, weights_only=True)
            model_cfg = _get_hf_config(repo_id).get("model_cfg")
            return cls.wrap(model, spec, name, model_cfg)
        folder = _cached_snapshot(repo_id)  # open_clip_config.json + weights, as open_clip downloads them
        if not any((folder / n).is_file() for n in OPEN_CLIP_HUB_WEIGHT_NAMES):
            raise FileNotFoundError(f"{repo_id}: none of {OPEN_CLIP_HUB_WEIGHT_NAMES} in the local cache")
        model_cfg = json.loads((folder / "open_clip_config.json").read_text()).get("model_cfg")
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True, **_offline_text_tower_kwargs(model_cfg))
        tokenizer = _open_clip_tokenizer(f"local-dir:{folder}", model_cfg, offline=True)
        return cls.wrap(model, spec, name, model_cfg, tokenizer)

    @classmethod
    def from_folder(cls, folder: Path, spec: str, meta: dict | None) -> "OpenClipBackbone":
        import open_clip

        _refuse_pickles(folder)
        cfg = json.loads((folder / "open_clip_config.json").read_text())
        model = open_clip.create_model(f"local-dir:{folder}", weights_only=True)
        return cls.wrap(model, spec, f"local-dir:{folder}", cfg.get("model_cfg"), extra_info={"checkpoint": meta})


# -- Hugging Face transformers -------------------------------------------------------------------------


class HFClipBackbone(ClipBackbone):
    """A transformers `CLIPModel` (hub id or folder) with its own tokenizer and image processor."""

    kind = "hf"

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=images)
        return out if torch.is_tensor(out) else out.pooler_output

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model.get_text_features(input_ids=self._trim_padding(tokens))
        return out if torch.is_tensor(out) else out.pooler_output

    def _trim_padding(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L') with L' = the last pooled (EOS) position + 1, for an HF CLIP text tower.

        Its attention is causal and it pools at the EOS token, so the padding columns after every row's
        EOS change nothing but cost time: short prompts padded to 77 tokens embed ~3x faster trimmed.
        The EOS position is found as transformers finds it (argmax for legacy eos_token_id=2 configs)."""
        if tokens.ndim != 2 or tokens.shape[1] <= 1:
            return tokens
        return tokens[:, : int(self._text_ends(tokens).max()) + 1]

    def _text_ends(self, tokens: torch.Tensor) -> torch.Tensor:
        """The EOS position transformers pools at (argmax for legacy eos_token_id=2 configs)."""
        eos = getattr(self.model.text_model, "eos_token_id", None)
        ids = tokens.to(torch.int)
        return ids.argmax(dim=-1) if eos == 2 or eos is None else (ids == eos).to(torch.int).argmax(dim=-1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()

    def towers(self) -> dict[str, nn.Module]:
        return {
            "image": nn.ModuleList([self.model.vision_model, self.model.visual_projection]),
            "text": nn.ModuleList([self.model.text_model, self.model.text_projection]),
        }

    def text_only_params(self) -> list[nn.Parameter]:
        return list(self.towers()["text"].parameters())

    def save_native(self, folder: Path) -> None:
        self.model.save_pretrained(str(folder), safe_serialization=True)
        tok = getattr(self.tokenize, "tokenizer", None)
        if tok is not None:
            tok.save_pretrained(str(folder))
        pp = self.info.get("preprocess_cfg") or {}
        if pp:
            from transformers import CLIPImageProcessor

            resize = pp.get("resize", pp["size"])
            CLIPImageProcessor(
                do_resize=resize is not None,
                size={"height": resize[0], "width": resize[1]} if isinstance(resize, (list, tuple))
                else {"shortest_edge": resize or pp["size"]},
                crop_size={"height": pp["size"], "width": pp["size"]},
                resample=int(pp.get("resample", 3)),
                image_mean=list(pp["mean"]),
                image_std=list(pp["std"]),
            ).save_pretrained(str(folder))

    # -- builders ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str, files: set[str], spec: str, local_files_only: bool,
             hf_source: str | None = None, files_in: str = "the model") -> "HFClipBackbone":
        """Model, tokenizer and processor from `source` (a folder or a hub id) whose files are `files`."""
        from transformers import CLIPConfig, CLIPModel

        model = CLIPModel.from_pretrained(source, use_safetensors=True, local_files_only=local_files_only)
        if not isinstance(model.config, CLIPConfig):  # pragma: no cover - from_pretrained already enforces
            raise BackboneError(f"{spec!r} is not a CLIP model")
        cfg = model.config
        ctx = int(cfg.text_config.max_position_embeddings)
        tok, tok_source = _hf_tokenizer(source, files, cfg.text_config, ctx, spec, local_files_only, files_in)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        pp, pp_source = _hf_preprocess_cfg(source, files, int(cfg.vision_config.image_size), spec, local_files_only,
                                           files_in)
        eval_tf, train_tf = build_transforms(pp["size"], pp["mean"], pp["std"], resize=pp["resize"], resample=pp["resample"])
        info = {"hf_source": hf_source or source, "preprocess_cfg": pp, "tokenizer_source": tok_source,
                "preprocess_source": pp_source}
        return cls(spec, model, HFTokenize(tok, ctx), eval_tf, train_tf, pp["size"], info)

    @classmethod
    def from_hub(cls, repo_id: str, spec: str) -> "HFClipBackbone":
        """hf:org/name: from the hub, or (hub unreachable) from the repo's cached snapshot folder only."""

        def load(offline: bool) -> HFClipBackbone:
            if offline:
                folder = _cached_snapshot(repo_id)
                return cls.load(str(folder), {p.name for p in folder.iterdir()}, spec, True, hf_source=repo_id,
                                files_in="the model's cached snapshot (the hub is not reachable)")
            from huggingface_hub import list_repo_files

            return cls.load(repo_id, set(list_repo_files(repo_id)), spec, False)

        return _load_from_hub(spec, load)

    @classmethod
    def from_folder(cls, folder: Path, spec: str, meta: dict | None) -> "HFClipBackbone":
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "clip":
            raise BackboneError(
                f"{folder}/config.json has model_type={cfg.get('model_type')!r}; only CLIP models (model_type 'clip') are supported"
            )
        _refuse_pickles(folder)
        try:
            bb = cls.load(str(folder), {p.name for p in folder.iterdir()}, spec, local_files_only=True)
        except OSError as e:
            raise BackboneError(f"could not load HF CLIP folder {str(folder)!r}: {e}") from e
        bb.info["checkpoint"] = meta
        return bb


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def _build_local(folder: Path, spec: str) -> ClipBackbone:
    if not folder.is_dir():
        raise BackboneError(f"model folder {str(folder)!r} does not exist. {OFFLINE_HINT}")
    meta_path = folder / CHECKPOINT_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if (folder / "open_clip_config.json").is_file():
        return OpenClipBackbone.from_folder(folder, spec, meta)
    if (folder / "config.json").is_file():
        return HFClipBackbone.from_folder(folder, spec, meta)
    raise BackboneError(
        f"{folder} is not a model folder: expected config.json (HF CLIPModel), open_clip_config.json "
        f"(open_clip) or {CHECKPOINT_META} (our trainer). Files there: {sorted(p.name for p in folder.iterdir())[:10]}"
    )


def _refuse_pickles(folder: Path) -> None:
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
    """Build a `ClipBackbone` (an `OpenClipBackbone` or an `HFClipBackbone`) from a model spec string
    (see module docstring).

    precision: fp32 | fp16 | bf16 (half precisions are meant for GPU inference)."""
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    ms = parse_spec(spec)
    if ms.kind == "open_clip":
        bb = OpenClipBackbone.from_spec(ms, spec)
    elif ms.kind == "hf":
        bb = HFClipBackbone.from_hub(ms.name, spec)
    else:
        bb = _build_local(Path(ms.name), spec)
    if precision not in dtypes:
        raise BackboneError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
    bb = bb.to(device=device or "cpu", dtype=dtypes[precision])
    bb.eval()
    return bb


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
