"""Image generators for the `images` stage: one small interface, several implementations.

`ImageRequest` and `ImageGenerator` are the contract between the synthesis engine and anything
that turns a prompt into pixels (a diffusers pipeline, the offline world's procedural renderer, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class ImageRequest:
    item_id: str            # content-hash id of the item (stable across runs)
    concept_id: str         # catalog concept id
    prompt: str             # the caption to render
    seed: int               # derived with hashlib from item_id; fully determines the image
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512


@runtime_checkable
class ImageGenerator(Protocol):
    name: str  # recorded in the manifest's generator.model field

    def settings(self) -> dict:
        """JSON-able settings that determine the output (part of the stage's config fingerprint)."""
        ...

    def generate(self, requests: list[ImageRequest]) -> list[Image.Image]:
        """Render one image per request, in order. Same request -> same pixels."""
        ...


# ----------------------------------------------------------------------------- implementations
import hashlib  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402

log = logging.getLogger(__name__)


class PatternGenerator:
    """A fast procedural generator for smoke runs and tests: seeded noise over prompt-coloured bands.

    Not a model: the prompt's hash picks the palette, the seed the noise, so it is deterministic and
    exercises the whole pipeline (files, hashes, filters, export) in milliseconds per image.
    """

    name = "pattern"

    def __init__(self, bands: int = 3, noise: float = 24.0):
        self.bands, self.noise = int(bands), float(noise)

    def settings(self) -> dict:
        return {"model": self.name, "bands": self.bands, "noise": self.noise}

    def generate(self, requests: list[ImageRequest]) -> list[Image.Image]:
        import numpy as np
        out = []
        for r in requests:
            pal = hashlib.sha256(r.prompt.encode("utf-8")).digest()
            rng = np.random.default_rng(r.seed)
            img = np.zeros((r.height, r.width, 3), dtype=np.float32)
            edges = np.linspace(0, r.height, self.bands + 1).astype(int)
            for b in range(self.bands):
                img[edges[b]:edges[b + 1]] = [pal[3 * b], pal[3 * b + 1], pal[3 * b + 2]]
            img += rng.normal(0.0, self.noise, img.shape)
            out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"))
        return out


class DiffusersGenerator:
    """Any diffusers text-to-image pipeline (SD 1.5, SDXL, SD-Turbo, SD 3.5, FLUX) by hub id or folder.

    One ``torch.Generator`` per request, seeded from ``request.seed`` on the CPU, so an image depends
    only on its request (not on batch composition or the GPU). Requests are batched by size.
    """

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", steps: int = 30,
                 guidance: float = 5.0, batch_size: int = 4, variant: str | None = None,
                 pipeline_kwargs: dict | None = None, compile: bool = False, progress: bool = False):
        self.model_id, self.device_pref, self.dtype_name = model, device, dtype
        self.steps, self.guidance, self.batch_size = int(steps), float(guidance), max(1, int(batch_size))
        self.variant, self.pipeline_kwargs = variant, dict(pipeline_kwargs or {})
        self.compile, self.progress = compile, progress
        self.name = model
        self._pipe = None

    def settings(self) -> dict:
        return {"model": self.model_id, "steps": self.steps, "guidance": self.guidance,
                "dtype": self.dtype_name, "variant": self.variant, "pipeline_kwargs": self.pipeline_kwargs}

    @property
    def pipe(self):
        """The loaded pipeline (loaded on first use, once per process)."""
        if self._pipe is None:
            self._pipe = self._load()
        return self._pipe

    def _load(self):
        import torch
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        if self.device_pref == "auto":
            if torch.cuda.is_available():
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
            else:
                device = "cpu"
        else:
            device = self.device_pref
        if self.dtype_name == "auto":
            dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
                if device.startswith("cuda") else torch.float32
        else:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.dtype_name]
        kw = {"dtype": dtype}
        if self.variant:
            kw["variant"] = self.variant
        try:
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(self.model_id, **kw)
            except (ValueError, KeyError):  # a pipeline class AutoPipeline does not map: load it as saved
                pipe = DiffusionPipeline.from_pretrained(self.model_id, **kw)
        except OSError as exc:
            raise RuntimeError(f"could not load diffusers pipeline {self.model_id!r}: {exc}. Give a local folder "
                               "or a hub id reachable from here (HF_HUB_OFFLINE=1 forbids downloads)") from exc
        if getattr(pipe, "safety_checker", None) is not None:
            log.info("pipeline has its own safety checker; black images it returns are caught by the filter")
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=not self.progress)
        if self.compile and hasattr(pipe, "unet"):
            pipe.unet = torch.compile(pipe.unet)
        elif self.compile and hasattr(pipe, "transformer"):
            pipe.transformer = torch.compile(pipe.transformer)
        self.device, self.dtype = device, dtype
        log.info("loaded %s (%s) on %s in %s", self.model_id, type(pipe).__name__, device, dtype)
        return pipe

    def _call(self, batch: list[ImageRequest]) -> list[Image.Image]:
        import torch
        gens = [torch.Generator("cpu").manual_seed(r.seed) for r in batch]
        kw = dict(prompt=[r.prompt for r in batch], num_inference_steps=self.steps, guidance_scale=self.guidance,
                  width=batch[0].width, height=batch[0].height, generator=gens, output_type="pil",
                  **self.pipeline_kwargs)
        if any(r.negative_prompt for r in batch) and self.guidance > 1.0:
            kw["negative_prompt"] = [r.negative_prompt or "" for r in batch]
        with torch.inference_mode():
            return list(self.pipe(**kw).images)

    def generate(self, requests: list[ImageRequest]) -> list[Image.Image]:
        out: dict[int, Image.Image] = {}
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(requests):
            by_size.setdefault((r.width, r.height), []).append(i)
        for idx in by_size.values():
            for j in range(0, len(idx), self.batch_size):
                part = idx[j:j + self.batch_size]
                for i, img in zip(part, self._call([requests[i] for i in part])):
                    out[i] = img.convert("RGB")
        return [out[i] for i in range(len(requests))]


GENERATORS = {"pattern": PatternGenerator, "diffusers": DiffusersGenerator}


def create_generator(cfg: dict) -> ImageGenerator:
    """Build a generator from ``{kind: pattern|diffusers|python, ...kwargs}``.

    ``kind: python`` plugs in any class with the ImageGenerator interface: ``target: "pkg.mod:Class"``
    plus its keyword arguments under ``kwargs`` (e.g. the offline world's procedural renderer).
    """
    cfg = {k: v for k, v in cfg.items() if v is not None}
    kind = cfg.pop("kind", "pattern")
    if kind == "python":
        target = cfg.pop("target", None)
        if not target or ":" not in target:
            raise ValueError("generator.kind=python needs generator.target='package.module:ClassName'")
        mod, _, attr = target.partition(":")
        gen = getattr(importlib.import_module(mod), attr)(**cfg.pop("kwargs", {}))
    elif kind in GENERATORS:
        if kind == "diffusers" and not cfg.get("model"):
            raise ValueError("generator.kind=diffusers needs generator.model (a hub id or a local folder)")
        try:
            gen = GENERATORS[kind](**cfg)
        except TypeError as exc:
            raise ValueError(f"bad settings for generator {kind!r}: {exc}") from exc
    else:
        raise ValueError(f"unknown generator kind {kind!r}; valid: {', '.join(GENERATORS)}, python")
    if not isinstance(gen, ImageGenerator):
        raise TypeError(f"{type(gen).__name__} lacks name/settings()/generate(); see synth.generators.ImageGenerator")
    return gen
