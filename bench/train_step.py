"""Train-step cost of the twin-aware loss against plain CLIP loss, same model and batch in one run.

    python bench/train_step.py --model tiny --batch 32 --steps 4

Builds one open_clip model (random init, from `cultureclip.testing`: ``tiny`` is its "small-96" ViT, any built-in open_clip
architecture name works too), copies it per variant, and times full train steps (forward, loss,
backward, AdamW) round-robin so a busy machine slows every variant alike. The batch mimics
twin-aware batching: 2 images per concept, concepts in twin pairs, both sides of a pair in the batch.

Variants (texts encoded per step with B items and U = B/2 concepts):
- ``clip``: B captions, plain CLIP loss -- the reference.
- ``twin, in-batch twins``: B captions + U concept prompts; twin captions/prompts are the features of
  the twin concept's items already in the batch (no extra encoding).
- ``twin, encoded twin captions``: B captions + B separate twin captions + U prompts.
- ``clip, same texts``: plain CLIP loss but the text tower encodes the same 2B + U texts as the row
  above -- separates the cost of encoding more text from the cost of the loss itself.
Also times the loss alone (forward + backward on fixed features).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cultureclip.loss import ClipContrastiveLoss, TwinContrastiveLoss  # noqa: E402

logger = logging.getLogger(__name__)

SOT, EOT = 49406, 49407


def build_model(name: str, image_size: int | None) -> torch.nn.Module:
    """An open_clip CLIP with random weights (seed 0) from the one model builder, `cultureclip.testing`:
    ``tiny`` (its "small-96" size: 96 px, patch 16, 6+6 layers) or a built-in architecture name."""
    from cultureclip.testing import build_open_clip

    try:
        return build_open_clip("small-96" if name == "tiny" else name, seed=0, image_size=image_size)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None


def _tokens(n: int, lo: int, hi: int, ctx: int, g: torch.Generator) -> torch.Tensor:
    """Random BPE-like token rows (n, ctx): SOT, lo..hi words, EOT, zero padding (argmax pooling finds EOT)."""
    out = torch.zeros(n, ctx, dtype=torch.long)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    for i, length in enumerate(lengths.tolist()):
        out[i, 0] = SOT
        out[i, 1 : length + 1] = torch.randint(1, 49000, (length,), generator=g)
        out[i, length + 1] = EOT
    return out


def make_batch(batch: int, image_size: int, ctx: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Twin-aware batch: item i has concept i // 2; concepts 2k and 2k+1 are twins."""
    if batch % 4:
        raise SystemExit(f"--batch must be a multiple of 4 (2 images per concept, concepts in twin pairs); got {batch}")
    g = torch.Generator().manual_seed(seed)
    concept_ids = torch.arange(batch) // 2
    twin_concepts = concept_ids ^ 1
    n_concepts = batch // 2
    return {
        "images": torch.randn(batch, 3, image_size, image_size, generator=g),
        "captions": _tokens(batch, 12, 40, ctx, g),
        "twin_captions": _tokens(batch, 12, 40, ctx, g),
        "prompts": _tokens(n_concepts, 4, 10, ctx, g),  # one per concept
        "concept_ids": concept_ids,
        # in-batch twins: both items of the twin concept, (B, 2)
        "twin_items": torch.stack([2 * twin_concepts, 2 * twin_concepts + 1], dim=1),
        "twin_concepts": twin_concepts,
    }


def make_step(model: torch.nn.Module, variant: str, data: dict[str, torch.Tensor],
              amp: torch.dtype | None = None) -> Callable[[], float]:
    """One closure per variant: forward + loss + backward + AdamW step; returns the loss value
    (`.item()` synchronizes, so wall time covers the GPU work)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    twin_loss, clip_loss = TwinContrastiveLoss(), ClipContrastiveLoss()
    batch = data["captions"].shape[0]
    n_concepts = data["prompts"].shape[0]

    def step() -> float:
        images, ids = data["images"], data["concept_ids"]
        if variant == "clip":
            texts = data["captions"]
        elif variant == "twin_inbatch":
            texts = torch.cat([data["captions"], data["prompts"]])  # (B + U, L)
        else:  # twin_encoded and clip_same_texts encode the same texts
            texts = torch.cat([data["captions"], data["twin_captions"], data["prompts"]])  # (2B + U, L)
        ctx = torch.autocast(images.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with ctx:
            image_features = model.encode_image(images, normalize=True)
            text_all = model.encode_text(texts, normalize=True)
        scale = model.logit_scale.exp()
        captions = text_all[:batch]
        if variant in ("clip", "clip_same_texts"):
            out = clip_loss(image_features, captions, scale)
        else:
            bank = text_all[-n_concepts:]  # (U, D) concept prompts
            if variant == "twin_inbatch":
                twin_text = captions[data["twin_items"]]  # (B, 2, D) the twin concept's captions
            else:
                twin_text = text_all[batch : 2 * batch]  # (B, D)
            out = twin_loss(image_features, captions, scale, ids, prompt_features=bank[ids],
                            twin_text_features=twin_text, twin_prompt_features=bank[data["twin_concepts"]])
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return out["loss"].item()

    return step


def time_loss_only(batch: int, dim: int, reps: int) -> dict[str, float]:
    """Best-of-reps ms of loss forward + backward on fixed features (B, D), twins (B, 2, D), prompts.

    The minimum, not the median: on a shared CPU a sub-millisecond op is mostly measuring neighbours.
    """
    g = torch.Generator().manual_seed(1)
    feats = {k: torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1)
             for k in ("image", "text", "prompt")}
    twin = torch.nn.functional.normalize(torch.randn(batch, 2, dim, generator=g), dim=-1)
    ids = torch.arange(batch) // 2
    scale = torch.tensor(100.0)
    results: dict[str, list[float]] = {"clip": [], "twin": []}
    for _ in range(reps):
        for name in results:
            img = feats["image"].clone().requires_grad_(True)
            txt = feats["text"].clone().requires_grad_(True)
            start = time.perf_counter()
            if name == "clip":
                loss = ClipContrastiveLoss()(img, txt, scale)["loss"]
            else:
                loss = TwinContrastiveLoss()(img, txt, scale, ids, prompt_features=feats["prompt"],
                                             twin_text_features=twin, twin_prompt_features=twin)["loss"]
            loss.backward()
            results[name].append((time.perf_counter() - start) * 1e3)
    return {k: min(v) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (a small ViT) or an open_clip architecture name")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=None, help="override the model's image size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--loss-reps", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype (GPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    base = build_model(args.model, args.image_size)
    base.train()
    image_size = base.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    ctx = base.context_length
    data = {k: v.to(args.device) for k, v in make_batch(args.batch, image_size, ctx).items()}
    base = base.to(args.device)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    variants = {
        "clip": "CLIP loss (reference)",
        "twin_inbatch": "twin loss, in-batch twins + prompts",
        "twin_encoded": "twin loss, encoded twin captions + prompts",
        "clip_same_texts": "CLIP loss, same texts as the row above",
    }
    n, u = args.batch, args.batch // 2
    texts = {"clip": n, "twin_inbatch": n + u, "twin_encoded": 2 * n + u, "clip_same_texts": 2 * n + u}
    steps = {k: make_step(copy.deepcopy(base), k, data, amp) for k in variants}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.warmup + args.steps):
        for key, step in steps.items():  # round-robin: background load hits every variant
            start = time.perf_counter()
            loss = step()
            if i >= args.warmup:
                times[key].append(time.perf_counter() - start)
        logger.info("step %d/%d done (last loss %.4f)", i + 1, args.warmup + args.steps, loss)

    ref = statistics.median(times["clip"])
    print(f"\nModel `{args.model}` (image {image_size}px, context {ctx}), batch {n} ({u} concepts), "
          f"{args.steps} timed steps, device {args.device}, amp {args.amp}, {args.threads} thread(s), median step time\n")
    print("| variant | texts encoded | step (s) | samples/s | step-time ratio vs CLIP |")
    print("|---|---:|---:|---:|---:|")
    for key, label in variants.items():
        t = statistics.median(times[key])
        print(f"| {label} | {texts[key]} | {t:.3f} | {n / t:.1f} | {t / ref:.3f}x |")
    ratio_same = statistics.median(times["twin_encoded"]) / statistics.median(times["clip_same_texts"])
    print(f"\nTwin loss vs CLIP loss with the same texts encoded: {ratio_same:.3f}x")

    with torch.no_grad():
        dim = base.encode_text(data["prompts"][:1]).shape[-1]
    loss_ms = time_loss_only(n, dim, args.loss_reps) if args.device == "cpu" else None
    if loss_ms is None:
        return 0
    print(f"\n| loss only (fwd + bwd, B={n}, D={dim}) | ms | ratio |")
    print("|---|---:|---:|")
    for key in ("clip", "twin"):
        print(f"| {key} | {loss_ms[key]:.3f} | {loss_ms[key] / loss_ms['clip']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
