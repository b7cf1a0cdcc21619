"""Fine-tune (or pretrain) a CLIP backbone with the twin-aware contrastive loss.

    python -m cultureclip.train --config configs/train/smoke.yaml [key=value ...] [--resume auto]
    accelerate launch -m cultureclip.train --config configs/train/paper_b32.yaml

``train(cfg, resume)`` reads top to bottom in three parts:
``setup`` (config checks -> accelerator -> loss -> model -> data -> optimizer: a ``TrainRun``),
``Checkpointer.restore`` (cultureclip.checkpointer: the newest intact checkpoint, RNG included) and
``train_loop`` (steps, logs, twin-accuracy checks, checkpoints), then ``finish`` exports the model in
the backbone's own format. Each step builds only the inputs its loss asks for (``_step_losses``).
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import BackboneError, create_backbone
from .checkpoint import CheckpointError
from .checkpointer import Checkpointer, shown, truncate_jsonl
from .config import ConfigError, find_preset, load_config, to_dict, validate_config
from .data import (
    CulTwinBatch,
    CulTwinDataset,
    ManifestError,
    TwinBatchSampler,
    collate,
    concept_prompts,
    mix_replay,
    read_manifest,
    twin_pairs,
)
from .fileio import atomic_write_text
from .image import to_rgb
from .inference import Embedder
from .lora import apply_lora, lock_tower
from .loss import LossInputs, create_loss
from .steps import fingerprint
from .twins import TwinIndex, concept_scores, twin_scores

if TYPE_CHECKING:
    from .checkpointer import Checkpointer, Progress

logger = logging.getLogger("cultureclip.train")

# the names in cultureclip.loss.LOSSES (tests/test_config_choices.py keeps the two equal)
LossName = Literal["twin", "clip"]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    spec: str = "open_clip:ViT-B-32@openai"  # any model spec (see cultureclip.backbone)
    grad_checkpointing: bool = False
    lock_tower: Literal["", "image", "text"] = ""  # full fine-tuning of the other tower


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 4
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[Literal["q", "k", "v"]] = field(default_factory=lambda: ["q", "v"])
    towers: list[Literal["image", "text"]] = field(default_factory=lambda: ["image", "text"])


@dataclass
class DataConfig:
    dataset: str = ""  # CulTwin dataset folder (manifest.parquet + images/)
    train_split: str = "train"
    val_split: str = "val"  # "" disables the periodic twin-accuracy check
    batch_size: int = 32  # per process
    twin_batching: bool = True  # twin-aware batch sampler (both sides of a pair in one batch)
    per_side: int = 1
    num_workers: int = 0
    check_images: bool = True
    skip_bad_images: bool = False
    augment: bool = True
    cache_images: bool = False  # keep decoded images in RAM (small datasets; num_workers=0)
    # replay of general data to keep general ability: rows of another manifest (e.g. the data the base
    # was trained on) mixed into every epoch, replay_ratio x the train split's size, sampled once per run
    # (replay_resample: drawn anew every epoch, seeded by the epoch; epoch 0 draws the same rows)
    replay_dataset: str = ""
    replay_split: str = "train"
    replay_ratio: float = 0.5
    replay_resample: bool = False


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = 100
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    epochs: int = 10
    max_steps: int = 0  # >0 overrides epochs
    grad_accum: int = 1
    clip_grad: float = 1.0


@dataclass
class LossConfig:
    name: LossName = "twin"  # a key of cultureclip.loss.LOSSES
    w_cap: float = 0.7
    w_con: float = 0.3
    w_keep: float = 0.0  # distillation toward the frozen base model
    # the rows it applies to: "all" (the loss's term, over the whole global batch) or "replay" (only the
    # replay rows of each process's batch: keep general data where it was, let the twin rows move)
    keep_rows: Literal["all", "replay"] = "all"
    # twin negatives (the "no twin negatives" ablation sets this false; twin-aware batching is the
    # separate switch data.twin_batching). A twin column already in the batch is dropped by the loss.
    twin_negatives: bool = True
    # where a twin caption comes from: "sampled" = a caption of the twin concept that is not among the
    # batch's captions (the dataset offers a few, the trainer takes the first new one): information;
    # "batch" = a copy of a twin-concept caption already in the batch (the old default) -- the loss drops
    # it as a duplicate column, so this is the same as no twin captions
    twin_caption_source: Literal["batch", "sampled"] = "sampled"
    twin_images: bool = True  # also an image of the twin concept per item (a text->image hard negative)
    # concept term: "image_to_prompt" (zero-shot-classification direction) or "symmetric" (+ prompt->image)
    concept_direction: Literal["image_to_prompt", "symmetric"] = "image_to_prompt"
    # which items each softmax sees with N processes: "global" = features gathered across processes, so each
    # softmax sees data.batch_size x N items (open_clip's gather; twin pairs may sit on different processes);
    # "local" = only the process's own data.batch_size items (no gather; twin-aware batching packs each
    # pair into one process's batch), as when one device accumulates gradients over steps. One process:
    # the same either way. Gradient accumulation never adds negatives (each step's softmax is its own).
    negatives: Literal["global", "local"] = "global"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/default"
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, none on CPU
    log_every: int = 10
    eval_every: int = 0  # steps; 0 = at the end of each epoch
    save_every: int = 0  # steps; 0 = at the end of each epoch
    keep_last: int = 2
    export: bool = True
    progress: bool = True
    name: str = ""  # the run's name, recorded in the exported model (default: out_dir's folder name)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf (the run diverged): a user-facing stop with the step and what to try."""


class TrainError(ValueError):
    """A run setting or input that cannot work (empty dataset path, batch too small for the data, no
    trainable parameters, unwritable out_dir, ...): ``main`` reports it in one line, exit code 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The error types that mean "fix your config, data, paths or settings" (one line, exit 2 from the
    CLI); anything else is a bug in our code and keeps its traceback."""

    return (ConfigError, TrainError, ManifestError, CheckpointError, BackboneError, NonFiniteLossError)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def lr_lambda(cfg: OptimConfig, total_steps: int):
    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return 1.0 - progress
        raise ValueError(f"optim.schedule must be cosine, linear or constant; got {cfg.schedule!r}")

    return f


def itstime(step: int, every: int) -> bool:
    return every > 0 and step % every == 0




def twin_accuracy(backbone, manifest, batch_size: int = 64) -> dict[str, float]:
    """Validation: per-image twin accuracy (``cultureclip.twins.twin_scores``, the definition eval_suite
    uses too) and N-way concept accuracy over the split's concepts."""
    from PIL import Image


    df = manifest.frame
    emb = Embedder(backbone, batch_size=batch_size)
    was_training = backbone.training
    backbone.eval()
    try:
        prompt_of = concept_prompts(df["concept_id"], df["concept_prompt"], df["concept_name"])
        index = TwinIndex.build(prompt_of, twin_pairs(df["concept_id"], df["twin_concept_ids"]))
        feats = []
        for start in range(0, len(df), batch_size):
            ims = []
            for p in df["image_path"].iloc[start : start + batch_size]:
                with Image.open(manifest.root / p) as im:
                    ims.append(to_rgb(im))
            feats.append(emb.embed_images(ims))
        sims = concept_scores(emb, torch.cat(feats), prompt_of)  # (N, C)
        own = torch.from_numpy(index.labels(df["concept_id"]))
        tw = twin_scores(sims, own, index.twins_of)
        acc = (sims.argmax(1) == own).float().mean().item()
        return {"twin_acc": tw.twin_acc, "concept_acc": acc, "n_val": len(df), "n_twin": int(tw.rows.numel())}
    finally:
        backbone.train(was_training)




# --------------------------------------------------------------------------------------------------
# Setup: config -> accelerator -> loss -> model -> data -> optimizer, as one typed run object
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainRun:
    """Everything the loop needs, built by ``setup`` (in this order, which fixes the RNG draws)."""

    cfg: TrainConfig
    accelerator: Any  # accelerate.Accelerator
    out: Path
    loss_fn: nn.Module
    backbone: Any  # the unwrapped ClipBackbone (what is saved and exported)
    model: nn.Module  # the same, prepared by accelerate (DDP-wrapped with several processes)
    base_model: nn.Module | None  # frozen copy of the base for distillation, when the loss needs it
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    manifest: Any  # cultureclip.data.Manifest of the whole dataset
    val_m: Any  # its validation split, or None
    dataset: Any  # CulTwinDataset of the train split (+ replay)
    sampler: Any  # TwinBatchSampler
    data_fp: str
    total_steps: int
    checkpointer: Checkpointer
    mix: Any = None  # (train split, replay manifest, needs) when replay is drawn anew every epoch
    mix_epoch: int = 0  # the epoch whose replay draw `dataset` holds


def create_train_loss(cfg: TrainConfig) -> nn.Module:
    """The configured loss (``cfg.loss``); a bad weight is a TrainError naming the setting."""

    try:
        gather = cfg.loss.negatives == "global"
        if cfg.loss.name == "twin":
            w_keep = cfg.loss.w_keep if cfg.loss.keep_rows == "all" else 0.0  # "replay": added by the trainer
            return create_loss(cfg.loss.name, w_cap=cfg.loss.w_cap, w_con=cfg.loss.w_con, w_keep=w_keep,
                               concept_direction=cfg.loss.concept_direction, gather=gather)
        return create_loss(cfg.loss.name, gather=gather)
    except ValueError as e:
        raise TrainError(f"loss: {e}") from e


def batch_plan(cfg: TrainConfig, num_processes: int) -> dict[str, int]:
    """Items per optimizer step (``per_step`` = batch_size x processes x grad_accum) and items each
    softmax sees (``per_softmax``: batch_size x processes with ``loss.negatives=global``, batch_size with
    ``local``; accumulation steps never share a softmax). The authors trained on one device with
    128 x 16: per_step 2048, per_softmax 128."""
    per_softmax = cfg.data.batch_size * (num_processes if cfg.loss.negatives == "global" else 1)
    return {"per_step": cfg.data.batch_size * num_processes * cfg.optim.grad_accum, "per_softmax": per_softmax}


def _check_settings(cfg: TrainConfig) -> None:
    """Settings that cannot work, caught before any model or data is loaded."""
    if not cfg.data.dataset:
        raise TrainError("data.dataset is empty: pass data.dataset=PATH/TO/CULTWIN (a folder with manifest.parquet)")
    if cfg.data.batch_size < 2:
        raise TrainError(f"data.batch_size={cfg.data.batch_size}: it must be >= 2 so a twin pair fits in one batch")
    if cfg.data.replay_dataset and cfg.data.replay_ratio < 0:
        raise TrainError(f"data.replay_ratio={cfg.data.replay_ratio}: it must be >= 0")
    if cfg.loss.keep_rows == "replay" and cfg.loss.w_keep > 0 and not (cfg.data.replay_dataset and cfg.data.replay_ratio > 0):
        raise TrainError("loss.keep_rows=replay distils on replay rows, but there are none: set data.replay_dataset "
                         "and data.replay_ratio > 0, or loss.keep_rows=all")
    if cfg.loss.keep_rows == "replay" and cfg.loss.w_keep > 0 and cfg.loss.name != "twin":
        raise TrainError(f"loss.keep_rows=replay needs loss.name=twin (the {cfg.loss.name!r} loss has no distillation)")
    if cfg.optim.grad_accum < 1:
        raise TrainError(f"optim.grad_accum={cfg.optim.grad_accum}: it must be >= 1")


def setup(cfg: TrainConfig) -> TrainRun:
    """Validate the config, then build accelerator, loss, model, data, optimizer and schedule, and the
    run's checkpointer (in this order: it fixes the RNG draws). Raises the errors of ``user_errors()``
    for settings, data or paths that cannot work."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed


    # ---- config, loss, accelerator, seed, output folder ----------------------------------------
    cfg = validate_config(cfg)  # a config built in code gets the checks a loaded one had
    _check_settings(cfg)
    loss_fn = create_train_loss(cfg)
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if torch.cuda.is_available() else "no"
    accelerator = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum, mixed_precision=mp,
                              cpu=not torch.cuda.is_available())
    plan = batch_plan(cfg, accelerator.num_processes)
    if 2 * max(1, cfg.data.per_side) > plan["per_softmax"]:
        raise TrainError(f"data.per_side={cfg.data.per_side} does not fit the {cfg.loss.negatives} batch of "
                         f"{plan['per_softmax']}: 2 x per_side items per twin pair")
    logger.info("batch: %d per process x %d processes x %d accumulation = %d items per optimizer step; each "
                "softmax sees %d items (loss.negatives=%s)", cfg.data.batch_size, accelerator.num_processes,
                cfg.optim.grad_accum, plan["per_step"], plan["per_softmax"], cfg.loss.negatives)
    set_seed(cfg.seed)
    out = Path(cfg.out_dir)
    if accelerator.is_main_process:
        try:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
        except OSError as e:
            raise TrainError(f"out_dir={shown(out)} cannot be written ({e.strerror or e}); pick another out_dir") from e

    # ---- model, data, optimizer ----------------------------------------------------------------
    needs = _loss_inputs(loss_fn, cfg)
    backbone, base_model, params = _build_model(cfg, needs, accelerator.device)
    data = _build_data(cfg, backbone, needs, accelerator)
    optimizer, scheduler = _build_optimizer(cfg, backbone, data.total_steps)
    model, optimizer = accelerator.prepare(backbone, optimizer)
    checkpointer = Checkpointer(out, accelerator, cfg.keep_last, {
        "config": to_dict(cfg), "config_hash": fingerprint(to_dict(cfg), 16), "base_spec": cfg.model.spec,
        "data_fingerprint": data.data_fp,
    })
    return TrainRun(cfg=cfg, accelerator=accelerator, out=out, loss_fn=loss_fn, backbone=accelerator.unwrap_model(model),
                    model=model, base_model=base_model, params=params, optimizer=optimizer, scheduler=scheduler,
                    manifest=data.manifest, val_m=data.val_m, dataset=data.dataset, sampler=data.sampler,
                    data_fp=data.data_fp, total_steps=data.total_steps, checkpointer=checkpointer,
                    mix=data.mix)


def _build_model(cfg: TrainConfig, needs: frozenset[str], device: torch.device) -> tuple[Any, nn.Module | None, list]:
    """(backbone with LoRA / tower locking applied, frozen copy of the base if the loss uses ``base``,
    trainable parameters)."""

    backbone = create_backbone(cfg.model.spec, device="cpu")
    backbone.info["base_spec"] = cfg.model.spec
    base_model = None
    if "base" in needs:
        base_model = copy.deepcopy(backbone).eval().requires_grad_(False).to(device)
    if cfg.lora.enabled:
        n = apply_lora(backbone, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.targets, cfg.lora.towers)
        logger.info("LoRA on %d attention layers", n)
    elif cfg.model.lock_tower:
        lock_tower(backbone, cfg.model.lock_tower)
    if cfg.model.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    params = [p for p in backbone.parameters() if p.requires_grad]
    if not params:
        raise TrainError("no trainable parameters: check lora.enabled / model.lock_tower")
    return backbone, base_model, params


@dataclass
class _Data:
    manifest: Any
    val_m: Any
    dataset: Any
    sampler: Any
    data_fp: str
    total_steps: int
    mix: Any = None


def _build_data(cfg: TrainConfig, backbone, needs: frozenset[str], accelerator) -> _Data:
    """Manifest (+ replay rows), val split, dataset (twin images only if the loss uses them), this
    process's twin-aware batch sampler, and the run's length in optimizer steps."""

    manifest = read_manifest(cfg.data.dataset, check_images=cfg.data.check_images, skip_bad_images=cfg.data.skip_bad_images)
    own = train_m = manifest.split(cfg.data.train_split)
    mix = None
    if cfg.data.replay_dataset:
        replay = read_manifest(cfg.data.replay_dataset, check_images=cfg.data.check_images,
                               skip_bad_images=cfg.data.skip_bad_images).split(cfg.data.replay_split)
        train_m = mix_replay(train_m, replay, cfg.data.replay_ratio, seed=cfg.seed)
        if cfg.data.replay_resample:
            mix = (own, replay, needs)
    val_m = None
    if cfg.data.val_split and (manifest.frame["split"] == cfg.data.val_split).any():
        val_m = manifest.split(cfg.data.val_split)
    data_fp = train_m.fingerprint()
    dataset, sampler = _dataset_and_sampler(cfg, train_m, backbone, needs, accelerator)
    steps_per_epoch = len(sampler) // cfg.optim.grad_accum
    if steps_per_epoch == 0:
        raise TrainError(f"{len(sampler)} batches per epoch is fewer than optim.grad_accum={cfg.optim.grad_accum}: "
                         "lower optim.grad_accum or data.batch_size")
    return _Data(manifest, val_m, dataset, sampler, data_fp,
                 cfg.optim.max_steps or steps_per_epoch * cfg.optim.epochs, mix)


def _dataset_and_sampler(cfg: TrainConfig, train_m, backbone, needs: frozenset[str], accelerator) -> tuple[Any, Any]:
    """The train rows' dataset (twin images only if the loss uses them) and this process's sampler."""

    transform = backbone.preprocess_train if cfg.data.augment else backbone.preprocess_eval
    dataset = CulTwinDataset(train_m, transform, seed=cfg.seed, skip_bad_images=cfg.data.skip_bad_images,
                             cache_images=cfg.data.cache_images,
                             twin_images="twin_images" in needs and cfg.loss.twin_negatives and cfg.loss.twin_images)
    twins = dataset.twin_concept_ids if cfg.data.twin_batching else [[] for _ in dataset.twin_concept_ids]
    sampler = TwinBatchSampler(dataset.concept_ids, twins, cfg.data.batch_size, seed=cfg.seed,
                               per_side=cfg.data.per_side, num_replicas=accelerator.num_processes,
                               rank=accelerator.process_index, local=cfg.loss.negatives == "local")
    return dataset, sampler


def _redraw_replay(run: "TrainRun", epoch: int) -> None:
    """data.replay_resample: this epoch's replay rows (seeded by the epoch; epoch 0 = the run's first draw)."""

    own, replay, needs = run.mix
    mixed = mix_replay(own, replay, run.cfg.data.replay_ratio, seed=run.cfg.seed, epoch=epoch)
    run.dataset, run.sampler = _dataset_and_sampler(run.cfg, mixed, run.backbone, needs, run.accelerator)
    run.mix_epoch = epoch


def _fused_adamw_ok(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused AdamW runs on these parameters: floating point, on a device with its kernel (the
    model is still on the CPU here; accelerate moves it to one of these)."""
    return bool(params) and all(p.is_floating_point() and p.device.type in FUSED_ADAMW_DEVICES for p in params)


FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")


def _build_optimizer(cfg: TrainConfig, backbone, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no weight decay on gains, biases, embeddings, logit scale) + warmup/decay schedule."""
    decay, no_decay = [], []
    for n_, p in backbone.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in n_ or "embedding" in n_ or "token" in n_ else decay).append(p)
    # fused: one kernel over all parameters (on the CPU ~6x faster than torch's default per-tensor loop, which
    # took ~10% of a ViT-S-32 step; the same update up to float rounding, tests/test_train_inputs.py)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps,
        fused=_fused_adamw_ok(decay + no_decay),
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim, total_steps))


# --------------------------------------------------------------------------------------------------
# The run: setup -> resume -> loop (steps, logs, validation, checkpoints) -> export
# --------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run training; returns a summary dict (final step, losses, history, export path, val metrics,
    skipped images). ``resume``: None, "auto" (the newest intact checkpoint in out_dir) or a folder."""
    run = setup(cfg)
    progress = run.checkpointer.restore(resume, run.backbone.model, run.optimizer, run.scheduler)
    history = train_loop(run, progress)
    return finish(run, progress, history)


def train_loop(run: TrainRun, progress: Progress) -> list[dict]:
    """Train from ``progress`` to ``run.total_steps`` (updating ``progress``): an optimizer step per
    ``grad_accum`` micro-batches, a log row per step, twin-accuracy checks and checkpoints at their
    cadence (``eval_every``/``save_every`` steps, 0 = end of each epoch, and always at the last step).
    Returns this run's log rows."""
    from tqdm.auto import tqdm

    cfg, accelerator = run.cfg, run.accelerator
    history: list[dict] = []
    bar = tqdm(total=run.total_steps, initial=progress.step, desc="train",
               disable=not (cfg.progress and accelerator.is_main_process), dynamic_ncols=True)
    run.model.train()
    t0 = time.time()
    done = progress.step >= run.total_steps
    while not done:
        batches, usable = _epoch_batches(run, progress)
        for batch in _epoch_loader(run, progress.epoch, batches):
            if batch is None:  # every image of the batch was unreadable (and skipped)
                continue
            losses = _optimizer_step(run, batch, progress)
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            progress.batch_in_epoch += 1
            rec = _log_step(run, progress, losses, t0)
            history.append(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            end_of_epoch = progress.batch_in_epoch * cfg.optim.grad_accum >= usable
            if run.val_m is not None and (itstime(progress.step, cfg.eval_every) or (cfg.eval_every == 0 and end_of_epoch)
                                          or progress.step == run.total_steps):
                _validate(run, progress)
                if accelerator.is_main_process:
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", twin_acc=f"{progress.val['twin_acc']:.3f}")
            if end_of_epoch:
                progress.epoch += 1
                progress.batch_in_epoch = 0
            if (itstime(progress.step, cfg.save_every) or (cfg.save_every == 0 and end_of_epoch)
                    or progress.step == run.total_steps):
                run.checkpointer.save(progress, run.backbone.model, run.optimizer, run.scheduler)
            if progress.step >= run.total_steps:
                done = True
                break
            if end_of_epoch:
                break
        else:
            # loader exhausted without reaching the end-of-epoch bookkeeping (e.g. skipped empty batches)
            progress.epoch += 1
            progress.batch_in_epoch = 0
    bar.close()
    return history


def _epoch_batches(run: TrainRun, progress: Progress) -> tuple[list[list[int]], int]:
    """(this epoch's remaining micro-batches, the epoch's usable micro-batch count: leftovers that do
    not fill a grad_accum group are dropped)."""
    if run.mix is not None and run.mix_epoch != progress.epoch:
        _redraw_replay(run, progress.epoch)
    run.sampler.set_epoch(progress.epoch)
    run.dataset.set_epoch(progress.epoch)
    epoch_batches = list(iter(run.sampler))  # built once per epoch (the packing is O(dataset))
    usable = len(epoch_batches) - len(epoch_batches) % run.cfg.optim.grad_accum
    return epoch_batches[progress.batch_in_epoch * run.cfg.optim.grad_accum:], usable


def _epoch_loader(run: TrainRun, epoch: int, batches: list[list[int]]) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(run.dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=run.cfg.data.num_workers,
                                       # own generator: creating a loader must not consume the global RNG
                                       # (resume mid-epoch would otherwise shift augmentation randomness)
                                       generator=torch.Generator().manual_seed(run.cfg.seed * 100003 + epoch))


def _optimizer_step(run: TrainRun, batch: CulTwinBatch, progress: Progress) -> dict[str, torch.Tensor]:
    """Forward + backward of one micro-batch; the optimizer steps when accumulation is complete."""
    cfg, accelerator = run.cfg, run.accelerator
    with accelerator.accumulate(run.model):
        replay_rows = None
        if cfg.loss.keep_rows == "replay" and cfg.loss.w_keep > 0:
            replay_rows = torch.tensor([run.dataset.concept_ids[int(i)].startswith("replay:")
                                        for i in batch.index.tolist()], dtype=torch.bool)
        losses = _step_losses(run.model, run.backbone, batch, run.loss_fn, cfg, run.base_model, accelerator,
                              replay_rows)
        loss = losses["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at step {progress.step + 1} (epoch {progress.epoch}); stopping. "
                f"Try a lower optim.lr, mixed_precision=no, or optim.clip_grad>0. Last good checkpoint: "
                f"{run.checkpointer.last_good()}"
            )
        accelerator.backward(loss)
        if accelerator.sync_gradients and cfg.optim.clip_grad > 0:
            accelerator.clip_grad_norm_(run.params, cfg.optim.clip_grad)
        run.optimizer.step()
        run.backbone.clamp_logit_scale()  # [0, ln 100] like open_clip / OpenAI
        if accelerator.sync_gradients:
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return losses


def _log_step(run: TrainRun, progress: Progress, losses: dict[str, torch.Tensor], t0: float) -> dict:
    """The step's log row (losses averaged over processes = the loss of the global batch, see
    cultureclip.loss), appended to log.jsonl by the main process."""
    accelerator = run.accelerator
    rec = {"step": progress.step, "epoch": progress.epoch, "lr": run.scheduler.get_last_lr()[0],
           **{k: float(accelerator.reduce(v.detach().float(), "mean")) for k, v in losses.items()},
           "logit_scale": float(run.backbone.logit_scale.detach()), "elapsed_s": round(time.time() - t0, 3)}
    if accelerator.is_main_process:
        with open(run.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if itstime(progress.step, run.cfg.log_every) or progress.step == 1:
            logger.info("step %d loss %.4f", progress.step, rec["loss"])
    return rec


def _validate(run: TrainRun, progress: Progress) -> None:
    """Twin accuracy on the val split (main process; appended to val.jsonl and kept in ``progress.val``)."""
    if run.accelerator.is_main_process:
        progress.val = {"step": progress.step, **twin_accuracy(run.backbone, run.val_m, run.cfg.data.batch_size)}
        logger.info("val %s", progress.val)
        with open(run.out / "val.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(progress.val) + "\n")
    run.model.train()


def finish(run: TrainRun, progress: Progress, history: list[dict]) -> dict[str, Any]:
    """Export (main process), log.csv over every step of the run (across resumes), the summary."""

    cfg, accelerator = run.cfg, run.accelerator
    accelerator.wait_for_everyone()
    export_path = None
    if cfg.export and accelerator.is_main_process:
        export_path = run.checkpointer.export(run.backbone, progress, cfg.name or Path(cfg.out_dir).name)
    if accelerator.is_main_process:
        rows = truncate_jsonl(run.out / "log.jsonl", progress.step)  # every step of the run, across resumes
        if rows:
            _write_csv(run.out / "log.csv", rows)
    accelerator.wait_for_everyone()
    return {"step": progress.step, "losses": [h["loss"] for h in history], "history": history,
            "export": str(export_path) if export_path else None, "val": progress.val,
            "skipped_images": len(run.manifest.skipped) + run.dataset.bad_images}


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())



def _text_id(text: str) -> int:
    """A caption's identity for the loss (a 63-bit content hash: the same text on every process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def _gather_list(accelerator, values: list, cfg: TrainConfig) -> list:
    """The list concatenated over the processes whose items share a softmax: all of them with
    ``loss.negatives=global``, this one alone with ``local`` (and with one process)."""
    if getattr(accelerator, "num_processes", 1) <= 1 or cfg.loss.negatives == "local":
        return list(values)
    from accelerate.utils import gather_object

    return list(gather_object(list(values)))


def _loss_inputs(loss_fn, cfg: TrainConfig) -> frozenset[str]:
    """What the loss uses beyond images and captions (``cultureclip.loss.LOSS_INPUTS``): its own
    ``inputs``, or, for a plain callable, those of the configured loss; plus the frozen base's features
    when the trainer distils on replay rows itself (``loss.keep_rows=replay``)."""
    inputs = getattr(loss_fn, "inputs", None)
    needs = frozenset(inputs) if inputs is not None else create_train_loss(cfg).inputs
    return needs | {"base"} if cfg.loss.keep_rows == "replay" and cfg.loss.w_keep > 0 else needs


def replay_distill_loss(image_features: torch.Tensor, text_features: torch.Tensor, base_image_features: torch.Tensor,
                        base_text_features: torch.Tensor, logit_scale: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Distillation toward the frozen base on the selected rows only (``loss.keep_rows=replay``): the mean
    over those rows of KL(base || student) of the image->caption and caption->image softmaxes over this
    process's batch, the base at the student's (detached) scale, as the loss's own distillation term.
    Features (B, D) (base: (B, D_base)); rows (B,) bool. Zero when no row is selected."""
    rows = rows.to(image_features.device)
    if not bool(rows.any()):
        return image_features.sum() * 0.0
    img, txt = F.normalize(image_features.float(), dim=-1), F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float() if logit_scale.dim() == 0 else logit_scale.float().mean()
    with torch.no_grad():
        bimg = F.normalize(base_image_features.float(), dim=-1)
        btxt = F.normalize(base_text_features.float(), dim=-1)
        s = scale.detach()
        p_img = F.log_softmax(s * bimg[rows] @ btxt.T, dim=1)  # (R, B)
        p_txt = F.log_softmax(s * btxt[rows] @ bimg.T, dim=1)
    q_img = F.log_softmax(scale * img[rows] @ txt.T, dim=1)
    q_txt = F.log_softmax(scale * txt[rows] @ img.T, dim=1)
    kl = (F.kl_div(q_img, p_img, reduction="sum", log_target=True)
          + F.kl_div(q_txt, p_txt, reduction="sum", log_target=True))
    return kl / (2 * int(rows.sum()))


def _twin_captions(batch: CulTwinBatch, cfg: TrainConfig, accelerator) -> list[str]:
    """One twin caption per item (the item's own caption where it has no twin). ``sampled``: a caption
    of the twin concept that is not a caption of the softmax's batch (global or local, ``loss.negatives``); ``batch``: a caption of the twin
    concept already in the batch (a duplicate column, which the loss drops)."""
    captions, has_twin = list(batch.captions), batch.has_twin.tolist()
    if cfg.loss.twin_caption_source == "batch":
        caption_in_batch: dict[int, str] = {}
        for c, cap in zip(batch.concept_ids.tolist(), captions):
            caption_in_batch.setdefault(c, cap)
        return [caption_in_batch.get(tc, t) if h else c
                for tc, t, c, h in zip(batch.twin_concept_ids.tolist(), batch.twin_captions, captions, has_twin)]
    in_batch = set(_gather_list(accelerator, captions, cfg))  # the softmax's batch: independent of the split
    return [next((t for t in cands if t not in in_batch), first) if h else c
            for cands, first, c, h in zip(batch.twin_caption_candidates, batch.twin_captions, captions, has_twin)]


def _new_twin_image_rows(batch: CulTwinBatch, accelerator, cfg: TrainConfig) -> torch.Tensor | None:
    """Rows of ``batch.twin_images`` that are not images of the softmax's batch (nor repeats): the
    only ones worth encoding (the loss would drop the others). None when there are none."""
    seen = set(_gather_list(accelerator, batch.index.tolist(), cfg))
    rows = []
    for j, r in enumerate(batch.twin_image_index.tolist()):
        if r not in seen:
            seen.add(r)
            rows.append(j)
    return torch.tensor(rows, dtype=torch.long) if rows else None


def _text_groups(batch: CulTwinBatch, needs: frozenset[str], use_twins: bool, cfg: TrainConfig,
                 accelerator) -> dict[str, list[str]]:
    """The texts to encode, B per group, in the order captions, prompts, twin captions, twin prompts (an item
    without a twin repeats its own caption / prompt, which the loss masks)."""
    groups: dict[str, list[str]] = {"captions": list(batch.captions)}
    if "prompts" in needs:
        groups["prompts"] = list(batch.prompts)
    if use_twins:
        groups["twin_captions"] = _twin_captions(batch, cfg, accelerator)
        groups["twin_prompts"] = [t if h else p for t, p, h in
                                  zip(batch.twin_prompts, batch.prompts, batch.has_twin.tolist())]
    return groups


def _step_losses(model, unwrapped, batch: CulTwinBatch, loss_fn, cfg: TrainConfig, base_model, accelerator,
                 replay_rows: torch.Tensor | None = None) -> dict:
    """One forward + the loss. Builds only what the loss uses (``_loss_inputs``): always images and
    captions; concept prompts, twin captions/prompts (with the ids that drop duplicate columns), twin
    images and the frozen base's features only when the loss asks for them.

    All texts go through the text tower in one call, each unique text once (prompts repeat across the
    items of a concept), in the order captions, prompts, twin captions, twin prompts."""
    needs = _loss_inputs(loss_fn, cfg)
    device = accelerator.device
    b = len(batch.captions)
    use_twins = "twin_texts" in needs and cfg.loss.twin_negatives and bool(batch.has_twin.any())
    groups = _text_groups(batch, needs, use_twins, cfg, accelerator)
    texts = [t for group in groups.values() for t in group]
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    index = torch.tensor([where[t] for t in texts], device=device)
    tokens = unwrapped.tokenize(unique).to(device)
    images = batch.images.to(device)
    twin_rows = None
    if use_twins and "twin_images" in needs and batch.twin_images is not None and len(batch.twin_image_index):
        twin_rows = _new_twin_image_rows(batch, accelerator, cfg)
        if twin_rows is not None:
            images = torch.cat([images, batch.twin_images[twin_rows].to(device)])
    out = model(images, tokens)
    tf = out["text_features"][index]  # (len(texts), D): one gather, sliced per group below
    feats = {name: tf[i * b : (i + 1) * b] for i, name in enumerate(groups)}
    x = LossInputs(image_features=out["image_features"][:b], text_features=feats["captions"],
                   logit_scale=out["logit_scale"], prompt_features=feats.get("prompts"))
    if "concept_ids" in needs:
        x.concept_ids = batch.concept_ids.to(device)
    if use_twins:
        _add_twin_inputs(x, batch, groups, feats, needs, twin_rows, out["image_features"][b:], device)
    if "base" in needs and base_model is not None:
        with torch.no_grad():
            x.base_image_features = base_model.encode_image(images[:b])
            x.base_text_features = base_model.encode_text(unwrapped.tokenize(groups["captions"]).to(device))
    kwargs = {f.name: getattr(x, f.name) for f in dataclasses.fields(x) if getattr(x, f.name) is not None}
    return loss_fn(**kwargs) if replay_rows is None else _replay_distilled(loss_fn, kwargs, replay_rows, cfg)


def _replay_distilled(loss_fn, kwargs: dict[str, Any], replay_rows: torch.Tensor, cfg: TrainConfig) -> dict:
    """``loss.keep_rows=replay``: the loss without its distillation inputs, plus ``w_keep`` x the
    distillation on the replay rows alone (``replay_distill_loss``), reported as ``distill_loss``."""
    base_img, base_txt = kwargs.pop("base_image_features"), kwargs.pop("base_text_features")
    losses = dict(loss_fn(**kwargs))
    losses["distill_loss"] = replay_distill_loss(kwargs["image_features"], kwargs["text_features"], base_img, base_txt,
                                                 kwargs["logit_scale"], replay_rows)
    losses["loss"] = losses["loss"] + cfg.loss.w_keep * losses["distill_loss"]
    return losses


def _add_twin_inputs(x: LossInputs, batch: CulTwinBatch, groups: dict[str, list[str]], feats: dict[str, torch.Tensor],
                     needs: frozenset[str], twin_rows: torch.Tensor | None, twin_image_features: torch.Tensor,
                     device) -> None:
    """Twin caption / prompt slots with their mask and the ids that drop the ones already in the batch; the
    new twin images (``twin_rows`` of ``batch.twin_images``, encoded as ``twin_image_features``) and theirs."""
    x.twin_text_features, x.twin_prompt_features = feats["twin_captions"], feats["twin_prompts"]
    x.twin_mask = batch.has_twin.to(device)
    x.text_ids = torch.tensor([_text_id(t) for t in groups["captions"]], device=device)
    x.twin_text_ids = torch.tensor([_text_id(t) for t in groups["twin_captions"]], device=device)
    x.twin_concept_ids = batch.twin_concept_ids.to(device)
    if "twin_images" not in needs:
        return
    x.image_ids = batch.index.to(device)
    x.twin_image_ids = torch.zeros(0, dtype=torch.long, device=device)
    if twin_rows is not None:
        x.twin_image_features = twin_image_features
        x.twin_image_concept_ids = batch.twin_image_concept_ids[twin_rows].to(device)
        x.twin_image_ids = batch.twin_image_index[twin_rows].to(device)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The CLI. A problem with the config, data, paths or a diverged run (``user_errors()``) is logged in
    one line and returns 2; any other exception is a bug and propagates with its traceback."""
    ap = argparse.ArgumentParser(prog="python -m cultureclip.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a preset name (smoke, paper_b32, ...: configs/train/, installed with the "
                    "package) or a YAML path")
    ap.add_argument("--resume", default=None, help="'auto' (the newest intact checkpoint in out_dir; damaged ones are skipped with a "
                    "warning) or a checkpoint folder")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 data.batch_size=64")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cultureclip").setLevel(logging.INFO)
    try:
        cfg = load_config(TrainConfig, find_preset("train", args.config), args.overrides)
        summary = train(cfg, resume=args.resume)
    except user_errors() as e:
        logger.error("%s", e)
        return 2
    logger.info("done: step %s, export %s, val %s", summary["step"], summary["export"], summary["val"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
