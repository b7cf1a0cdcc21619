"""filter: CLIP score, twin margin, optional VLM yes/no, NSFW check and near-duplicate removal.

Every check returns a score and a pass/fail against a configured threshold; a rejected image is written
to ``shard-*.rejected.jsonl`` with the first failing reason and all its scores, never dropped silently.
Model-based checks need ``filter.clip_model`` (a cultureclip model spec); without it they are skipped
and the summary says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from PIL import Image

from cultureclip.backbone import create_backbone, default_device
from cultureclip.image import to_rgb
from cultureclip.inference import Embedder

from ..engine import ShardResult, StageContext
from ..llm import _resolve_device, _resolve_dtype

log = logging.getLogger(__name__)

# Prompt pairs for the CLIP-prompt NSFW check. Its limits: it is a zero-shot guess by a general CLIP, it
# misses what CLIP cannot name and it flags some art and swimwear; use it as a cheap first pass and add a
# dedicated classifier (pass one as `nsfw_check`) for published datasets.
UNSAFE_PROMPTS = ("a nude photo", "a pornographic image", "explicit sexual content", "a photo of genitals",
                  "graphic violence with blood and gore", "a dead body", "a photo of self-harm")
SAFE_PROMPTS = ("a photo", "a photo of food", "a photo of clothing", "a photo of a building", "a painting",
                "a photo of people at a festival", "a photo of an object", "a flag")


@dataclass
class FilterConfig:
    clip_model: str | None = None        # cultureclip model spec of the reference CLIP; None skips model checks
    device: str = "auto"
    batch_size: int = 64
    min_clip_score: float | None = 0.20  # cosine(image, caption)
    min_twin_margin: float | None = 0.0  # cos(image, own prompt) - max cos(image, twin prompts)
    nsfw: bool = True
    nsfw_threshold: float = 0.5          # probability mass on unsafe prompts (softmax over unsafe+safe)
    dedup_hamming: int | None = 4        # dHash bits: <= this is a near-duplicate (None: off)
    dedup_cosine: float | None = 0.97    # CLIP image cosine >= this is a near-duplicate (needs clip_model)
    min_std: float | None = 2.0          # pixel std below this: blank/black image (e.g. a safety-checker blank)
    vlm_model: str | None = None         # optional yes/no VLM check (transformers image-text-to-text)
    vlm_question: str = "Does this image show {concept_name}? Answer yes or no."


class VLMJudge(Protocol):
    """Answers a yes/no question about each image."""

    def settings(self) -> dict: ...

    def ask(self, images: Sequence[Image.Image], questions: Sequence[str]) -> list[bool]: ...


class TransformersVLMJudge:
    """A yes/no check with a local VLM (e.g. Qwen2.5-VL-7B-Instruct): keeps images whose answer starts with yes."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8):
        self.model_id, self.device_pref, self.dtype_name, self.batch_size = model, device, dtype, batch_size
        self._model = self._proc = None

    def settings(self) -> dict:
        return {"vlm": self.model_id}

    def ask(self, images: Sequence[Image.Image], questions: Sequence[str]) -> list[bool]:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if self._model is None:
            self.device = _resolve_device(self.device_pref)
            self._model = AutoModelForImageTextToText.from_pretrained(
                self.model_id, dtype=_resolve_dtype(self.dtype_name, self.device)).to(self.device).eval()
            self._proc = AutoProcessor.from_pretrained(self.model_id)
            self._proc.tokenizer.padding_side = "left"
        out: list[bool] = []
        for i in range(0, len(images), self.batch_size):
            imgs, qs = images[i:i + self.batch_size], questions[i:i + self.batch_size]
            texts = [self._proc.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                tokenize=False, add_generation_prompt=True) for q in qs]
            enc = self._proc(text=texts, images=[[im] for im in imgs], return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                ids = self._model.generate(**enc, max_new_tokens=3, do_sample=False)
            answers = self._proc.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.extend(a.strip().lower().startswith("yes") for a in answers)
        return out


def dhash(img: Image.Image, size: int = 8) -> int:
    """64-bit difference hash: robust to small noise/resizing, so near-identical renders collide."""
    import numpy as np
    g = np.asarray(img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = 0
    for b in (g[:, :-1] > g[:, 1:]).ravel():  # (size*size,) left-brighter-than-right bits
        bits = (bits << 1) | int(b)
    return bits


def _pixel_std(img: Image.Image) -> float:
    from PIL import ImageStat
    return float(sum(ImageStat.Stat(img.convert("RGB")).stddev) / 3)


class FilterStage:
    name = "filter"
    upstream = "images"

    def __init__(self, cfg: FilterConfig, vlm: VLMJudge | None = None, embedder: Any = None, n_shards: int = 0):
        self.cfg, self.vlm = cfg, vlm
        self._embedder = embedder  # a cultureclip.inference.Embedder (built lazily from cfg.clip_model)
        self.n_shards = int(n_shards)

    def settings(self) -> dict:
        s = {k: v for k, v in vars(self.cfg).items() if k not in ("device", "batch_size")}
        s["unsafe_prompts"], s["safe_prompts"] = list(UNSAFE_PROMPTS), list(SAFE_PROMPTS)
        if self.vlm is not None:
            s["vlm"] = self.vlm.settings()
        return s

    def plan(self, ctx: StageContext) -> list[list[Any]]:
        return [[i] for i in range(self.n_shards)]

    @property
    def embedder(self):
        if self._embedder is None and self.cfg.clip_model:
            device = default_device() if self.cfg.device == "auto" else self.cfg.device
            self._embedder = Embedder(create_backbone(self.cfg.clip_model, device=device),
                                      batch_size=self.cfg.batch_size)
        return self._embedder

    def process_shard(self, index: int, items: list[Any], ctx: StageContext) -> ShardResult:
        recs = ctx.read_shard(self.upstream, index)
        recs.sort(key=lambda r: r["image_id"])  # dedup keeps the smallest id: independent of order upstream
        images = [to_rgb(Image.open(Path(ctx.out) / r["image_file"])) for r in recs]
        scores: list[dict] = [{} for _ in recs]
        reasons: list[str | None] = [None] * len(recs)
        checks: list[str | None] = [None] * len(recs)
        c = self.cfg

        def fail(i: int, check: str, why: str) -> None:
            if reasons[i] is None:
                reasons[i], checks[i] = why, check

        for i, im in enumerate(images):
            if c.min_std is not None:
                std = _pixel_std(im)
                scores[i]["pixel_std"] = round(std, 4)
                if std < c.min_std:
                    fail(i, "blank", f"blank image (pixel std {std:.2f} < {c.min_std})")
        feats = None
        emb = self.embedder if recs else None
        if emb is not None:
            feats = emb.embed_images(images)                               # (N, D)
            caps = emb.embed_texts([r["caption"] for r in recs])           # (N, D)
            clip = (feats * caps).sum(-1)
            prompts = sorted({p for r in recs for p in [r["concept_prompt"], *r.get("twin_prompts", [])]})
            pfeat = dict(zip(prompts, emb.embed_texts(prompts))) if prompts else {}
            if c.nsfw:
                bank = emb.embed_texts(list(UNSAFE_PROMPTS) + list(SAFE_PROMPTS))  # (U+S, D)
                probs = emb.zero_shot(feats, bank)                                 # (N, U+S)
                unsafe = probs[:, :len(UNSAFE_PROMPTS)].sum(-1)
            for i, r in enumerate(recs):
                scores[i]["clip"] = round(float(clip[i]), 5)
                if c.min_clip_score is not None and clip[i] < c.min_clip_score:
                    fail(i, "clip", f"clip score {float(clip[i]):.3f} < {c.min_clip_score}")
                twins = r.get("twin_prompts", [])
                if twins:
                    own = float(feats[i] @ pfeat[r["concept_prompt"]])
                    other = max(float(feats[i] @ pfeat[p]) for p in twins)
                    scores[i]["twin_margin"] = round(own - other, 5)
                    if c.min_twin_margin is not None and own - other < c.min_twin_margin:
                        fail(i, "twin_margin", f"twin margin {own - other:.3f} < {c.min_twin_margin}")
                if c.nsfw:
                    scores[i]["nsfw"] = round(float(unsafe[i]), 5)
                    if unsafe[i] >= c.nsfw_threshold:
                        fail(i, "nsfw", f"nsfw score {float(unsafe[i]):.3f} >= {c.nsfw_threshold}")
        if self.vlm is not None and recs:
            answers = self.vlm.ask(images, [c.vlm_question.format(**r) for r in recs])
            for i, yes in enumerate(answers):
                scores[i]["vlm"] = bool(yes)
                if not yes:
                    fail(i, "vlm", "vlm said no")
        # Near-duplicates within a concept, among images that passed everything else.
        kept_by_concept: dict[str, list[int]] = {}
        hashes = [dhash(im) for im in images] if c.dedup_hamming is not None else None
        n_dup = 0
        for i, r in enumerate(recs):
            if reasons[i] is not None:
                continue
            for j in kept_by_concept.get(r["concept_id"], []):
                if hashes is not None and bin(hashes[i] ^ hashes[j]).count("1") <= c.dedup_hamming:
                    fail(i, "near_duplicate", f"near-duplicate of {recs[j]['image_id']} (dhash)")
                elif feats is not None and c.dedup_cosine is not None and float(feats[i] @ feats[j]) >= c.dedup_cosine:
                    fail(i, "near_duplicate", f"near-duplicate of {recs[j]['image_id']} (clip cosine {float(feats[i] @ feats[j]):.3f})")
                if reasons[i] is not None:
                    n_dup += 1
                    break
            else:
                kept_by_concept.setdefault(r["concept_id"], []).append(i)
        res = ShardResult(stats={"near_duplicates": n_dup})
        for i, r in enumerate(recs):
            rec = {**r, "scores": scores[i]}
            if reasons[i] is None:
                res.records.append(rec)
            else:
                rec["reason"], rec["check"] = reasons[i], checks[i]
                res.stats[f"rejected_{checks[i]}"] = res.stats.get(f"rejected_{checks[i]}", 0) + 1
                res.rejected.append(rec)
        return res
