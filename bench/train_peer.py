"""Our training step against open_clip's own training loop: same model, same batches, same data.

    python bench/train_peer.py                                   # CPU: open_clip ViT-S-32, batch 16
    python bench/train_peer.py --model ViT-B-32 --batch 256 --device cuda --amp bf16 --workers 8

One random-weight open_clip model (`cultureclip.testing`, any open_clip architecture: ViT-S-32 by default
on CPU, ViT-B-32 at real size on a GPU) is saved once and trained by four loops, interleaved round by
round (the order rotates) so a busy machine slows each of them alike:

- ``open_clip_train``: open_clip's real ``open_clip_train.train.train_one_epoch`` with its own
  ``create_loss`` (ClipLoss), ``cosine_lr`` schedule, AdamW with its weight-decay groups, grad clipping;
  its data is an in-memory DataLoader in the form of its ``CsvDataset`` (image transform and per-item
  tokenization in ``__getitem__``), over our batches.
- ``ours, CLIP loss``: ``cultureclip.train.setup`` (accelerate, our AdamW, LambdaLR schedule) and the
  loop's per-step path (``_epoch_loader`` -> ``_optimizer_step`` -> ``_log_step``), ``loss.name=clip``.
- ``ours, twin loss``: the same with the default twin loss (concept prompts, a sampled twin caption, a
  twin image per item: more texts and images encoded per step).
- ``ours, twin loss, no extra encodes``: the twin loss with the twin caption taken from the batch and no
  twin images (``loss.twin_caption_source=batch loss.twin_images=false``): the loss's own cost.

Every loop gets the same synthetic CulTwin dataset (PNG files decoded once into memory, eval transform,
no augmentation), the same batches (our twin-aware sampler's, per round), full fine-tuning (no LoRA),
lr 1e-5, grad clipping at 1.0, fp32 on CPU or the same autocast on GPU. The first step's loss of the
peer and of our CLIP-loss loop is printed: equal up to float rounding when both do the same work.

Measured (CPU **under load**: 2 cores shared by ~7 jobs, load average 6-14; ``python bench/train_peer.py
--repeats 5``, ViT-S-32, batch 16, fp32, 1 thread; ratios of the process's CPU time in the same run, medians
over 5 rounds; wall-clock ratios swing far more round to round):

our step                                  CLIP loss: throughput   twin loss (default):   twin loss, no
                                          vs open_clip_train      step time vs the peer  extra encodes
                                          (goal >= 0.95)          (goal <= 1.15)
before: 77-token text pass, plain AdamW   0.98x                   2.11x                  1.35x
  (commit d0f64bb, measured in this load)
text pass cut at each text's pooled       1.39x                   1.18x                  0.78x
  token (``encode_text_cut``)
+ fused AdamW (now)                       1.51x                   1.15x (1.147x; per     0.74x
                                                                  round 1.10-1.26)

Wall clock, before / now: 0.79x / 1.26x, 2.27x / 1.29x, 1.36x / 0.86x. The twin goal is met at the median
of the last run with no margin (the run with the cut alone: 1.18x). The first-step losses are unchanged by
both (peer and CLIP loss 2.771337, twin 2.868748, twin without extra encodes 2.675312, fp32). What is left
of the twin step's cost is the data it adds: per batch of 16, ~9 twin images (+56% image tower) and ~25 more
texts (sampled twin captions, concept prompts) than the CLIP step.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench.train_peer")

WORDS = ("market festival woman man child street bowl red blue green wooden carved silk woven dish steaming "
         "plate bread spice flag cloth hat dress drum temple courtyard lantern evening morning river mountain "
         "village city crowd dancer painted pattern gold silver copper clay basket rice noodle dumpling").split()

# name -> (label, extra TrainConfig overrides); "peer" is open_clip_train
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "peer": ("open_clip_train (train_one_epoch)", {}),
    "clip": ("ours, CLIP loss", {"loss": {"name": "clip"}}),
    "twin": ("ours, twin loss (default: prompts, sampled twin caption, twin image)", {"loss": {"name": "twin"}}),
    "twin_lean": ("ours, twin loss, no extra encodes (twin caption from the batch, no twin image)",
                  {"loss": {"name": "twin", "twin_caption_source": "batch", "twin_images": False}}),
}


# --------------------------------------------------------------------------------------------------
# The shared inputs: one dataset folder, one model folder
# --------------------------------------------------------------------------------------------------


def make_dataset(folder: Path, n_items: int, image_size: int, per_concept: int = 4, seed: int = 0) -> Path:
    """A CulTwin folder (manifest.parquet + PNGs) of ``n_items`` rows: concepts in twin pairs,
    ``per_concept`` noise images each, a distinct 8-30 word caption per image."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    n_concepts = max(4, -(-n_items // per_concept))
    n_concepts += n_concepts % 2  # whole twin pairs
    rows = []
    for c in range(n_concepts):
        cid, twin = f"concept_{c:04d}", f"concept_{c ^ 1:04d}"
        for k in range(per_concept):
            rel = f"images/{cid}_{k}.png"
            pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / rel)
            words = " ".join(rng.choice(WORDS, int(rng.integers(8, 31))))
            rows.append({"image_id": f"{cid}-{k}", "image_path": rel, "concept_id": cid,
                         "concept_name": cid.replace("_", " "), "culture": f"C{c // 2}", "region": "R",
                         "category": "cuisine", "caption": f"{cid.replace('_', ' ')} {k}: {words}",
                         "concept_prompt": f"a photo of {cid.replace('_', ' ')}", "twin_concept_ids": [twin],
                         "split": "train", "generator": json.dumps({"model": "bench"}), "scores": "{}",
                         "sha256": ""})
    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet", index=False)
    return folder


def make_model(folder: Path, arch: str) -> Path:
    """A random-weight open_clip model (seed 0) saved where ``create_backbone`` loads it."""
    from cultureclip.testing import save_open_clip

    try:
        return save_open_clip(folder, arch, seed=0)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None


# --------------------------------------------------------------------------------------------------
# Ours: cultureclip.train's setup and per-step path
# --------------------------------------------------------------------------------------------------


@dataclass
class OurLoop:
    run: Any  # cultureclip.train.TrainRun
    progress: Any  # cultureclip.checkpointer.Progress
    losses: list[float] = field(default_factory=list)


def our_loop(model_dir: Path, data_dir: Path, out: Path, batch: int, amp: str, workers: int,
             overrides: dict[str, Any]) -> OurLoop:
    """A TrainRun from ``cultureclip.train.setup``: full fine-tuning, no validation, no export."""
    from cultureclip.checkpointer import Progress
    from cultureclip.train import DataConfig, LoraConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig, setup

    cfg = TrainConfig(
        model=ModelConfig(spec=str(model_dir)), lora=LoraConfig(enabled=False),
        data=DataConfig(dataset=str(data_dir), val_split="", batch_size=batch, num_workers=workers,
                        augment=False, cache_images=True, check_images=False),
        optim=OptimConfig(lr=1e-5, warmup_steps=10, max_steps=100_000, clip_grad=1.0),
        loss=LossConfig(**overrides.get("loss", {})), out_dir=str(out), seed=0,
        mixed_precision={"none": "no", "bf16": "bf16", "fp16": "fp16"}[amp], export=False, progress=False)
    run = setup(cfg)
    # data.cache_images, filled now (before any DataLoader worker forks): every image decoded once and held
    # in memory, as the peer holds them
    for i in range(len(run.dataset)):
        run.dataset[i]
    return OurLoop(run, Progress())


def our_steps(loop: OurLoop, batches: list[list[int]], epoch: int) -> None:
    """What ``train_loop`` does per step (loader, forward + loss + backward + clip + AdamW + schedule,
    the log row), without validation and checkpoints (open_clip's loop has neither inside an epoch)."""
    from cultureclip.train import _epoch_loader, _log_step, _optimizer_step

    run, progress = loop.run, loop.progress
    t0 = time.time()
    for batch in _epoch_loader(run, epoch, batches):
        losses = _optimizer_step(run, batch, progress)
        progress.step += 1
        progress.batch_in_epoch += 1
        rec = _log_step(run, progress, losses, t0)
        loop.losses.append(rec["loss"])


# --------------------------------------------------------------------------------------------------
# The peer: open_clip_train's train_one_epoch
# --------------------------------------------------------------------------------------------------


class PeerData(torch.utils.data.Dataset):
    """open_clip_train's CsvDataset item (transform the image, tokenize the one caption), over images
    decoded once into memory."""

    def __init__(self, images: list[Image.Image], captions: list[str], transform: Callable, tokenizer: Callable):
        self.images, self.captions, self.transform, self.tokenizer = images, captions, transform, tokenizer

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.tokenizer([self.captions[i]])[0]


class RecordingLoss(torch.nn.Module):
    """open_clip's loss, keeping each step's total (detached, no sync) for the first-step check."""

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.loss, self.values = loss, []

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        out = self.loss(*args, **kwargs)
        self.values.append(sum(out.values()).detach())
        return out


@dataclass
class PeerLoop:
    model: torch.nn.Module
    dataset: PeerData
    loss: RecordingLoss
    optimizer: torch.optim.Optimizer
    scheduler: Callable[[int], float]
    args: SimpleNamespace
    workers: int


def peer_loop(model_dir: Path, manifest_dir: Path, device: str, amp: str, batch: int, workers: int) -> PeerLoop:
    """open_clip_train's pieces, as its ``main`` builds them: the model, transforms and tokenizer of the
    model folder (``local-dir:``), args, ``create_loss``, AdamW with its weight-decay groups, ``cosine_lr``;
    data = the manifest's images in memory with the eval transform."""
    import open_clip
    import pandas as pd
    from open_clip_train.scheduler import cosine_lr

    name = f"local-dir:{model_dir}"
    model, _, preprocess_val = open_clip.create_model_and_transforms(name, output_dict=True, device=device)
    args = SimpleNamespace(
        device=device, precision={"none": "fp32", "bf16": "amp_bf16", "fp16": "amp"}[amp], distill=False,
        accum_freq=1, skip_scheduler=False, grad_clip_norm=1.0, horovod=False, rank=0, local_rank=0,
        world_size=1, log_every_n_steps=100, batch_size=batch, wandb=False, model=name, local_loss=False,
        gather_with_grad=False, siglip=False, distributed=False)
    frame = pd.read_parquet(manifest_dir / "manifest.parquet")
    images = []
    for rel in frame["image_path"]:
        with Image.open(manifest_dir / rel) as im:
            images.append(im.convert("RGB"))
    dataset = PeerData(images, frame["caption"].astype(str).tolist(), preprocess_val, open_clip.get_tokenizer(name))
    # open_clip_train.main's AdamW groups: no weight decay on gains, biases and the logit scale
    exclude = [p for n, p in model.named_parameters()
               if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    excluded = {id(p) for p in exclude}
    rest = [p for p in model.parameters() if id(p) not in excluded]
    optimizer = torch.optim.AdamW([{"params": exclude, "weight_decay": 0.0}, {"params": rest, "weight_decay": 0.1}],
                                  lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
    return PeerLoop(model, dataset, RecordingLoss(open_clip.create_loss(args)), optimizer,
                    cosine_lr(optimizer, 1e-5, 10, 100_000), args, workers)


def peer_steps(loop: PeerLoop, batches: list[list[int]], epoch: int) -> None:
    """One call of open_clip_train's ``train_one_epoch`` over ``batches``."""
    from open_clip_train.data import DataInfo
    from open_clip_train.train import train_one_epoch

    loader = torch.utils.data.DataLoader(loop.dataset, batch_sampler=batches, num_workers=loop.workers)
    loader.num_batches = len(batches)
    loader.num_samples = sum(len(b) for b in batches)
    train_one_epoch(loop.model, {"train": DataInfo(loader)}, loop.loss, epoch, loop.optimizer, None,
                    loop.scheduler, None, loop.args)


# --------------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    loops: dict[str, Any]  # variant -> OurLoop | PeerLoop
    sampler: Any  # our twin-aware batch sampler (every loop gets its batches)
    device: str
    image_size: int


def build(arch: str, batch: int, steps: int, device: str, amp: str, workers: int, work: Path,
          variants: list[str]) -> Bench:
    """Dataset and model folders under ``work``, then one loop per variant, each loading the model folder
    its own way (ours: ``create_backbone``; the peer: ``open_clip.create_model_and_transforms``)."""
    model_dir = make_model(work / "model", arch)
    size = json.loads((model_dir / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]["image_size"]
    image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
    data_dir = make_dataset(work / "data", batch * (steps + 2), image_size)
    loops: dict[str, Any] = {}
    for key in variants:
        if key == "peer":
            loops[key] = peer_loop(model_dir, data_dir, device, amp, batch, workers)
        else:
            loops[key] = our_loop(model_dir, data_dir, work / f"run_{key}", batch, amp, workers, VARIANTS[key][1])
    ours = [loop for key, loop in loops.items() if key != "peer"]
    if not ours:
        raise SystemExit("--variants: name at least one of ours (clip, twin, twin_lean): their sampler makes the batches")
    return Bench(loops, ours[0].run.sampler, device, image_size)


def round_batches(bench: Bench, epoch: int, steps: int) -> list[list[int]]:
    """The first ``steps`` batches of our sampler's epoch ``epoch``."""
    bench.sampler.set_epoch(epoch)
    batches = list(iter(bench.sampler))[:steps]
    if len(batches) < steps:
        raise SystemExit(f"the dataset gives {len(batches)} batches per epoch, fewer than --steps {steps}")
    return batches


@dataclass
class Timings:
    """Seconds per step of each variant, one entry per timed round: wall clock, and this process's CPU
    time (user + system, all threads): on a shared CPU the second is far less disturbed by other jobs."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def run_rounds(bench: Bench, steps: int, warmup: int, repeats: int) -> Timings:
    """Time each loop over rounds after ``warmup``: in each round every loop runs the same ``steps``
    batches, in an order that rotates round to round."""
    keys = list(bench.loops)
    out = Timings({k: [] for k in keys}, {k: [] for k in keys})
    for r in range(warmup + repeats):
        batches = round_batches(bench, r, steps)
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for key in order:
            loop = bench.loops[key]
            start, start_cpu = time.perf_counter(), time.process_time()
            (peer_steps if key == "peer" else our_steps)(loop, batches, r)
            if bench.device.startswith("cuda"):
                torch.cuda.synchronize()
            if r >= warmup:
                out.wall[key].append((time.perf_counter() - start) / steps)
                out.cpu[key].append((time.process_time() - start_cpu) / steps)
        logger.info("round %d/%d: %s", r + 1, warmup + repeats,
                    ", ".join(f"{k} {out.wall[k][-1]:.3f} s/step ({out.cpu[k][-1]:.3f} CPU s)" for k in keys if out.wall[k]))
    return out


def tokenize_seconds(bench: Bench, steps: int) -> float | None:
    """CPU seconds per step our CLIP-loss loop spends tokenizing its captions in the main process (the
    peer does it in DataLoader workers when it has any): what a GPU step cannot overlap."""
    loop = bench.loops.get("clip")
    if loop is None:
        return None
    captions = loop.run.dataset.captions
    batches = round_batches(bench, 0, steps)
    start = time.process_time()
    for b in batches:
        loop.run.backbone.tokenize(list(dict.fromkeys(captions[i] for i in b)))
    return (time.process_time() - start) / len(batches)


def first_losses(bench: Bench) -> dict[str, float]:
    """Each loop's first-step loss (peer and ours with CLIP loss: the same model, batch and loss)."""
    out = {}
    for key, loop in bench.loops.items():
        values = loop.loss.values if key == "peer" else loop.losses
        if values:
            out[key] = float(values[0])
    return out


def report(t: Timings, batch: int, first: dict[str, float], tokenize_s: float | None = None) -> str:
    """The Markdown table: medians over rounds, throughput ratios to open_clip_train (wall and CPU)."""
    med = {k: statistics.median(v) for k, v in t.wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in t.cpu.items()}
    peer = "peer" in med
    lines = ["| loop | s/step (wall) | steps/s | samples/s | vs open_clip_train (wall) | CPU s/step | vs open_clip_train (CPU time) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key in t.wall:
        ratio = f"{med['peer'] / med[key]:.3f}x" if peer else "-"
        ratio_cpu = f"{med_cpu['peer'] / med_cpu[key]:.3f}x" if peer else "-"
        lines.append(f"| {VARIANTS[key][0]} | {med[key]:.3f} | {1 / med[key]:.3f} | {batch / med[key]:.1f} | {ratio} "
                     f"| {med_cpu[key]:.3f} | {ratio_cpu} |")
    lines.append("\n(throughput ratios: open_clip_train's step time / ours; above 1 = ours faster)")
    if peer and "clip" in t.wall:
        for name, d in (("wall", t.wall), ("CPU time", t.cpu)):
            paired = [p / c for p, c in zip(d["peer"], d["clip"])]
            lines.append(f"ours CLIP loss / open_clip_train throughput per round ({name}): "
                         f"{', '.join(f'{x:.3f}' for x in paired)} (goal >= 0.95)")
    for key in ("twin", "twin_lean"):
        if peer and key in t.wall:
            lines.append(f"{VARIANTS[key][0]}: step time {med[key] / med['peer']:.3f}x open_clip_train's wall, "
                         f"{med_cpu[key] / med_cpu['peer']:.3f}x its CPU time (goal <= 1.15)")
    if tokenize_s is not None:
        lines.append(f"ours, CLIP loss: {tokenize_s * 1e3:.1f} ms CPU per step tokenizing captions in the main process")
    if first:
        lines.append("first-step loss: " + ", ".join(f"{k} {v:.6f}" for k, v in first.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-S-32", help="an open_clip architecture (or a cultureclip.testing size)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per loop per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (every loop)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype (GPU)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    if args.device.startswith("cuda") != torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is {'' if torch.cuda.is_available() else 'not '}available")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="train_peer_") as tmp:
        bench = build(args.model, args.batch, args.steps, args.device, args.amp, args.workers, Path(tmp),
                      args.variants)
        timings = run_rounds(bench, args.steps, args.warmup, args.repeats)
        first = first_losses(bench)
        tokenize_s = tokenize_seconds(bench, args.steps)
    print(f"\nModel `{args.model}` (random init, {bench.image_size} px), batch {args.batch}, {args.steps} steps x "
          f"{args.repeats} timed rounds (+{args.warmup} warmup), device {args.device}, amp {args.amp}, "
          f"{args.threads} thread(s), {args.workers} workers\n")
    print(report(timings, args.batch, first, tokenize_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
