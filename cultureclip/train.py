"""Fine-tune (or pretrain) a CLIP backbone with the twin-aware contrastive loss.

    python -m cultureclip.train --config configs/train/smoke.yaml [key=value ...] [--resume auto]
    accelerate launch -m cultureclip.train --config configs/train/paper_b32.yaml

The loop reads top to bottom in phases: config -> model -> data -> optimizer -> (resume) -> train
(with periodic twin-accuracy checks and checkpoints) -> export in the backbone's own format.
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .config import config_hash, load_config, to_dict, validate_config

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
    replay_dataset: str = ""
    replay_split: str = "train"
    replay_ratio: float = 0.5


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
    pass


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


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": json.dumps(np.random.get_state()[1].tolist()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": json.dumps(random.getstate()[1]),
        "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if torch.cuda.is_available() and s.get("cuda"):
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(("MT19937", np.array(json.loads(s["numpy"]), dtype=np.uint32), s["numpy_pos"], 0, 0.0))
    pos = s["python_pos"]
    random.setstate((3, tuple(json.loads(s["python"])), None if pos == -1 else pos))


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoint folders (DONE marker written last), oldest first."""
    found = (p for p in ckpt_dir.glob("step_*") if p.name[5:].isdigit() and (p / "DONE").is_file())
    return sorted(found, key=lambda p: int(p.name[5:]))


def _shown(path: Path) -> str:
    """A path for messages: relative to the working folder when inside it, else as the user gave it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train state, meta) of one checkpoint folder, after checking every file against the size and
    sha256 recorded in its meta.json when it was written. Raises CheckpointError naming the bad file."""
    from .checkpoint import CheckpointError, load_state, verify_files

    if not (path / "DONE").is_file():
        raise CheckpointError(f"{path} is incomplete (no DONE marker: the run stopped while writing it)")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / 'meta.json'} cannot be read ({type(e).__name__}: {e})") from e
    if meta.get("files"):
        verify_files(path, meta["files"])
    return load_state(path, "train_state"), meta


def _resume_point(ckpt_dir: Path, resume: str, run_dir: Path) -> tuple[Path, dict, dict, list[Path]] | None:
    """The checkpoint to resume from: (folder, train state, meta, damaged newer folders) or None.

    `resume="auto"`: the newest intact checkpoint; a damaged newer one is skipped with a warning naming
    both. An explicit folder must be intact. Raises CheckpointError when nothing intact is left."""
    from .checkpoint import CheckpointError

    if resume != "auto":
        path = Path(_shown(Path(resume)))  # messages name files relative to the working folder
        if not path.is_dir():
            raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder")
        state, meta = _read_checkpoint(path)
        return path, state, meta, []
    damaged: list[tuple[Path, CheckpointError]] = []
    for path in reversed(_checkpoints(Path(_shown(ckpt_dir)))):
        try:
            state, meta = _read_checkpoint(path)
        except CheckpointError as e:
            damaged.append((path, e))
            continue
        for bad, err in damaged:
            logger.warning("checkpoint %s is damaged (%s); resuming from the previous intact checkpoint %s",
                           _shown(bad), err, _shown(path))
        return path, state, meta, [bad for bad, _ in damaged]
    if damaged:
        reasons = "; ".join(str(e) for _, e in damaged)
        raise CheckpointError(
            f"--resume auto: no intact checkpoint in run folder {_shown(run_dir)} ({reasons}). To start this run "
            f"over, delete {_shown(ckpt_dir)} (or pick a new out_dir); to resume from a copy you trust, pass "
            "--resume PATH/TO/step_XXXXXXXX."
        )
    return None


def _truncate_jsonl(path: Path, last_step: int) -> list[dict]:
    """Keep the rows of a per-step log up to `last_step` (a resumed run rewrites the steps after it),
    dropping a torn last line left by a killed process. Returns the kept rows."""
    from .fileio import atomic_write_text

    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and isinstance(r.get("step"), int) and r["step"] <= last_step:
            rows.append(r)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def twin_accuracy(backbone, manifest, batch_size: int = 64) -> dict[str, float]:
    """Validation: per-image twin accuracy (``cultureclip.inference.twin_accuracy``, the definition
    eval_suite uses too) and N-way concept accuracy over the split's concepts."""
    from PIL import Image

    from .data import concept_prompts, twin_pairs, twins_by_concept
    from .image import to_rgb
    from .inference import Embedder
    from .inference import twin_accuracy as per_image_twin_accuracy

    df = manifest.frame
    emb = Embedder(backbone, batch_size=batch_size)
    was_training = backbone.training
    backbone.eval()
    try:
        prompt_of = concept_prompts(df["concept_id"], df["concept_prompt"], df["concept_name"])
        concepts = sorted(prompt_of)
        bank = emb.embed_texts([prompt_of[c] for c in concepts])
        idx = {c: i for i, c in enumerate(concepts)}
        feats = []
        for start in range(0, len(df), batch_size):
            ims = []
            for p in df["image_path"].iloc[start : start + batch_size]:
                with Image.open(manifest.root / p) as im:
                    ims.append(to_rgb(im))
            feats.append(emb.embed_images(ims))
        feats = torch.cat(feats)
        sims = feats @ bank.T  # (N, C)
        own = torch.tensor([idx[str(c)] for c in df["concept_id"]])
        twins = {idx[c]: [idx[t] for t in ts] for c, ts in
                 twins_by_concept(twin_pairs(df["concept_id"], df["twin_concept_ids"])).items()}
        tw = per_image_twin_accuracy(sims, own, twins)
        acc = (sims.argmax(1) == own).float().mean().item()
        return {"twin_acc": float(tw["twin_acc"]), "concept_acc": acc, "n_val": len(df), "n_twin": int(tw["rows"].numel())}
    finally:
        backbone.train(was_training)


# --------------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run training; returns a summary dict (final step, losses, export path, val metrics)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from .backbone import create_backbone
    from .checkpoint import file_records, save_model, save_state
    from .fileio import atomic_write_text, make_readable
    from .data import CulTwinDataset, TwinBatchSampler, collate, read_manifest
    from .lora import apply_lora, has_lora, lock_tower, merge_lora
    from .loss import create_loss

    # ---- phase 1: accelerator, seed, output folder --------------------------------------------
    cfg = validate_config(cfg)  # a config built in code gets the checks a loaded one had
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if torch.cuda.is_available() else "no"
    accelerator = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum, mixed_precision=mp,
                              cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))

    # ---- phase 2: model (+ LoRA / tower locking) and the frozen base for distillation ----------
    backbone = create_backbone(cfg.model.spec, device="cpu")
    backbone.info["base_spec"] = cfg.model.spec
    base_model = None
    if cfg.loss.w_keep > 0:
        base_model = copy.deepcopy(backbone).eval().requires_grad_(False).to(accelerator.device)
    if cfg.lora.enabled:
        n = apply_lora(backbone, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.targets, cfg.lora.towers)
        logger.info("LoRA on %d attention layers", n)
    elif cfg.model.lock_tower:
        lock_tower(backbone, cfg.model.lock_tower)
    if cfg.model.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    params = [p for p in backbone.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: check lora.enabled / model.lock_tower")

    # ---- phase 3: data ------------------------------------------------------------------------
    if not cfg.data.dataset:
        raise ValueError("data.dataset is empty: pass data.dataset=PATH/TO/CULTWIN (a folder with manifest.parquet)")
    manifest = read_manifest(cfg.data.dataset, check_images=cfg.data.check_images, skip_bad_images=cfg.data.skip_bad_images)
    train_m = manifest.split(cfg.data.train_split)
    if cfg.data.replay_dataset:
        from .data import mix_replay

        replay = read_manifest(cfg.data.replay_dataset, check_images=cfg.data.check_images,
                               skip_bad_images=cfg.data.skip_bad_images).split(cfg.data.replay_split)
        train_m = mix_replay(train_m, replay, cfg.data.replay_ratio, seed=cfg.seed)
    val_m = None
    if cfg.data.val_split and (manifest.frame["split"] == cfg.data.val_split).any():
        val_m = manifest.split(cfg.data.val_split)
    data_fp = train_m.fingerprint()
    transform = backbone.preprocess_train if cfg.data.augment else backbone.preprocess_eval
    if cfg.loss.twin_caption_source not in ("batch", "sampled"):
        raise ValueError(f"loss.twin_caption_source must be batch or sampled, got {cfg.loss.twin_caption_source!r}")
    dataset = CulTwinDataset(train_m, transform, seed=cfg.seed, skip_bad_images=cfg.data.skip_bad_images,
                             cache_images=cfg.data.cache_images,
                             twin_images=cfg.loss.name == "twin" and cfg.loss.twin_negatives and cfg.loss.twin_images)
    twin_ids = dataset.twin_ids if cfg.data.twin_batching else [[] for _ in dataset.twin_ids]
    sampler = TwinBatchSampler(dataset.concept_ids, twin_ids, cfg.data.batch_size, seed=cfg.seed,
                               per_side=cfg.data.per_side, num_replicas=accelerator.num_processes,
                               rank=accelerator.process_index)
    steps_per_epoch = len(sampler) // cfg.optim.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"{len(sampler)} batches per epoch is fewer than grad_accum={cfg.optim.grad_accum}")
    total_steps = cfg.optim.max_steps or steps_per_epoch * cfg.optim.epochs

    # ---- phase 4: optimizer + schedule (no weight decay on gains, biases, embeddings, logit scale)
    decay, no_decay = [], []
    for n_, p in backbone.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in n_ or "embedding" in n_ or "token" in n_ else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim, total_steps))
    loss_fn = create_loss(cfg.loss.name, w_cap=cfg.loss.w_cap, w_con=cfg.loss.w_con, w_keep=cfg.loss.w_keep,
                          concept_direction=cfg.loss.concept_direction) \
        if cfg.loss.name == "twin" else create_loss(cfg.loss.name)
    model, optimizer = accelerator.prepare(backbone, optimizer)
    unwrapped = accelerator.unwrap_model(model)

    # ---- phase 5: resume (newest intact checkpoint: sizes and hashes are checked first) --------
    step, epoch, batch_in_epoch = 0, 0, 0
    val_metrics: dict = {}
    damaged: list[Path] = []
    if resume:
        found = _resume_point(ckpt_dir, resume, out)
        if found is not None:
            path, state, meta, damaged = found
            if meta["data_fingerprint"] != data_fp:
                raise ValueError(f"checkpoint {_shown(path)} was trained on different data (fingerprint "
                                 f"{meta['data_fingerprint']} != {data_fp}); use a new out_dir")
            unwrapped.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            val_metrics = dict(state.get("val") or {})  # the last check survives a resume at the last step
            _set_rng_state(state["rng"][min(accelerator.process_index, len(state["rng"]) - 1)])
            logger.info("resumed from %s at step %d (epoch %d, batch %d)", _shown(path), step, epoch, batch_in_epoch)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for bad in damaged:  # set aside (not deleted): the resumed run writes its own checkpoints at those steps
            aside = bad.with_name(f"damaged_{bad.name}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(bad, aside)
            logger.warning("kept the damaged checkpoint as %s for inspection; delete it when no longer needed", _shown(aside))
        # logs keep the steps up to the resume point; the steps after it are logged again by this run
        _truncate_jsonl(out / "log.jsonl", step)
        _truncate_jsonl(out / "val.jsonl", step)

    def save_checkpoint():
        rng = [_rng_state()]
        if accelerator.num_processes > 1:
            gathered = [None] * accelerator.num_processes
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not accelerator.is_main_process:
            return
        path = ckpt_dir / f"step_{step:08d}"
        tmp = ckpt_dir / f".tmp_step_{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_state(tmp, "train_state", {
            "model": unwrapped.model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "rng": rng, "val": val_metrics,
        })
        meta = {"step": step, "epoch": epoch, "config": to_dict(cfg), "config_hash": config_hash(cfg),
                "base_spec": cfg.model.spec, "data_fingerprint": data_fp, "time": time.time(),
                # sizes + hashes, checked before a resume trusts this checkpoint
                "files": file_records(tmp, ["train_state.safetensors", "train_state.json"])}
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2))
        make_readable(tmp)
        (tmp / "DONE").write_text("ok\n")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        for old in _checkpoints(ckpt_dir)[: -cfg.keep_last] if cfg.keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)

    # ---- phase 6: train -----------------------------------------------------------------------
    log_path = out / "log.jsonl"
    history: list[dict] = []
    bar = tqdm(total=total_steps, initial=step, desc="train", disable=not (cfg.progress and accelerator.is_main_process),
               dynamic_ncols=True)
    model.train()
    t0 = time.time()
    done = step >= total_steps
    while not done:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        epoch_batches = list(iter(sampler))  # built once per epoch (the packing is O(dataset))
        usable = len(epoch_batches) - len(epoch_batches) % cfg.optim.grad_accum  # leftover micro-batches dropped
        batches = epoch_batches[batch_in_epoch * cfg.optim.grad_accum:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=cfg.data.num_workers,
                                             # own generator: creating a loader must not consume the global RNG
                                             # (resume mid-epoch would otherwise shift augmentation randomness)
                                             generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        micro = 0
        for batch in loader:
            if batch.get("empty"):
                continue
            with accelerator.accumulate(model):
                losses = _step_losses(model, unwrapped, batch, loss_fn, cfg, base_model, accelerator)
                loss = losses["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise NonFiniteLossError(
                        f"non-finite loss ({loss.item()}) at step {step + 1} (epoch {epoch}); stopping. "
                        f"Try a lower optim.lr, mixed_precision=no, or optim.clip_grad>0. Last good checkpoint: "
                        f"{(_checkpoints(ckpt_dir) or ['none'])[-1]}"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.clip_grad > 0:
                    accelerator.clip_grad_norm_(params, cfg.optim.clip_grad)
                optimizer.step()
                unwrapped.clamp_logit_scale()  # [0, ln 100] like open_clip / OpenAI
                scheduler.step() if accelerator.sync_gradients else None
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            batch_in_epoch += 1
            rec = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                   # mean over processes = the loss of the global batch (see cultureclip.loss)
                   **{k: float(accelerator.reduce(v.detach().float(), "mean")) for k, v in losses.items()},
                   "logit_scale": float(unwrapped.logit_scale.detach()), "elapsed_s": round(time.time() - t0, 3)}
            history.append(rec)
            if accelerator.is_main_process:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                if itstime(step, cfg.log_every) or step == 1:
                    logger.info("step %d loss %.4f", step, rec["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            end_of_epoch = batch_in_epoch * cfg.optim.grad_accum >= usable
            if val_m is not None and (itstime(step, cfg.eval_every) or (cfg.eval_every == 0 and end_of_epoch) or step == total_steps):
                if accelerator.is_main_process:
                    val_metrics = {"step": step, **twin_accuracy(unwrapped, val_m, cfg.data.batch_size)}
                    logger.info("val %s", val_metrics)
                    with open(out / "val.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps(val_metrics) + "\n")
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", twin_acc=f"{val_metrics['twin_acc']:.3f}")
                model.train()
            if end_of_epoch:
                epoch += 1
                batch_in_epoch = 0
            if itstime(step, cfg.save_every) or (cfg.save_every == 0 and end_of_epoch) or step == total_steps:
                save_checkpoint()
            if step >= total_steps:
                done = True
                break
            if end_of_epoch:
                break
        else:
            # loader exhausted without reaching the end-of-epoch bookkeeping (e.g. skipped empty batches)
            epoch += 1
            batch_in_epoch = 0
    bar.close()
    accelerator.wait_for_everyone()

    # ---- phase 7: export in the backbone's own format ------------------------------------------
    export_path = None
    if cfg.export and accelerator.is_main_process:
        final = copy.deepcopy(unwrapped).cpu()
        if has_lora(final):
            merge_lora(final)
        final.info["base_spec"] = cfg.model.spec
        export_path = save_model(final, out / "model", {
            "step": step, "config": to_dict(cfg), "config_hash": config_hash(cfg),
            "data_fingerprint": data_fp, "val": val_metrics,
            "name": cfg.name or Path(cfg.out_dir).name,
        })
    if accelerator.is_main_process:
        rows = _truncate_jsonl(log_path, step)  # every step of the run, across resumes
        if rows:
            _write_csv(out / "log.csv", rows)
    accelerator.wait_for_everyone()
    return {"step": step, "losses": [h["loss"] for h in history], "history": history, "export": str(export_path) if export_path else None,
            "val": val_metrics, "skipped_images": len(manifest.skipped) + dataset.bad_images}


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    from .fileio import atomic_write_text

    keys = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _text_id(text: str) -> int:
    """A caption's identity for the loss (a 63-bit content hash: the same text on every process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def _gather_list(accelerator, values: list) -> list:
    """The list concatenated over processes (itself with one process)."""
    if getattr(accelerator, "num_processes", 1) <= 1:
        return list(values)
    from accelerate.utils import gather_object

    return list(gather_object(list(values)))


def _step_losses(model, unwrapped, batch, loss_fn, cfg: TrainConfig, base_model, accelerator) -> dict:
    """One forward: images (+ twin images not in the batch) and the batch's UNIQUE texts (captions,
    concept prompts, twin captions, twin prompts).

    Prompts repeat across items of a concept; each unique text is encoded once. A twin caption is a
    caption of the twin concept that is not already a caption of this batch (``sampled``), so it adds a
    column the batch lacks; the loss drops any twin column (caption, prompt or image) that is already a
    batch column, by identity (caption hash, concept id, dataset row)."""
    device = accelerator.device
    b = len(batch["captions"])
    use_twins = cfg.loss.twin_negatives and bool(batch["has_twin"].any())
    captions, prompts = list(batch["captions"]), list(batch["prompts"])
    texts = captions + prompts
    has_twin = batch["has_twin"].tolist()
    if use_twins:
        if cfg.loss.twin_caption_source == "batch":
            caption_in_batch: dict[int, str] = {}
            for c, cap in zip(batch["concepts"].tolist(), captions):
                caption_in_batch.setdefault(c, cap)
            twin_caps = [caption_in_batch.get(tc, t) if h else c
                         for tc, t, c, h in zip(batch["twin_concepts"].tolist(), batch["twin_captions"], captions, has_twin)]
        else:
            in_batch = set(_gather_list(accelerator, captions))  # the global batch: independent of the split
            twin_caps = [next((t for t in cands if t not in in_batch), first) if h else c
                         for cands, first, c, h in zip(batch["twin_caption_candidates"], batch["twin_captions"], captions, has_twin)]
        twin_prompts = [t if h else p for t, p, h in zip(batch["twin_prompts"], prompts, has_twin)]
        texts += twin_caps + twin_prompts
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    index = torch.tensor([where[t] for t in texts], device=device)
    tokens = unwrapped.tokenize(unique).to(device)
    images = batch["images"].to(device)
    twin_rows = None
    if use_twins and cfg.loss.name == "twin" and batch.get("twin_images") is not None and len(batch["twin_image_index"]):
        # encode only twin images that are not already batch images (the loss would drop them anyway)
        seen = set(_gather_list(accelerator, batch["index"].tolist()))
        twin_rows = []
        for j, r in enumerate(batch["twin_image_index"].tolist()):
            if r not in seen:
                seen.add(r)
                twin_rows.append(j)
        twin_rows = torch.tensor(twin_rows, dtype=torch.long)
        if len(twin_rows):
            images = torch.cat([images, batch["twin_images"][twin_rows].to(device)])
        else:
            twin_rows = None
    out = model(images, tokens)
    tf = out["text_features"][index]
    kwargs = {
        "image_features": out["image_features"][:b],
        "text_features": tf[:b],
        "logit_scale": out["logit_scale"],
        "concept_ids": batch["concepts"].to(device),
    }
    if cfg.loss.name == "twin":
        kwargs["prompt_features"] = tf[b : 2 * b]
        if use_twins:
            kwargs["twin_text_features"] = tf[2 * b : 3 * b]
            kwargs["twin_prompt_features"] = tf[3 * b : 4 * b]
            kwargs["twin_mask"] = batch["has_twin"].to(device)
            kwargs["text_ids"] = torch.tensor([_text_id(t) for t in captions], device=device)
            kwargs["twin_text_ids"] = torch.tensor([_text_id(t) for t in twin_caps], device=device)
            kwargs["twin_concept_ids"] = batch["twin_concepts"].to(device)
            kwargs["image_ids"] = batch["index"].to(device)
            kwargs["twin_image_ids"] = torch.zeros(0, dtype=torch.long, device=device)
            if twin_rows is not None:
                kwargs["twin_image_features"] = out["image_features"][b:]
                kwargs["twin_image_concept_ids"] = batch["twin_image_concepts"][twin_rows].to(device)
                kwargs["twin_image_ids"] = batch["twin_image_index"][twin_rows].to(device)
        if base_model is not None:
            with torch.no_grad():
                kwargs["base_image_features"] = base_model.encode_image(images[:b])
                kwargs["base_text_features"] = base_model.encode_text(unwrapped.tokenize(captions).to(device))
    else:
        kwargs = {k: kwargs[k] for k in ("image_features", "text_features", "logit_scale")}
    return loss_fn(**kwargs)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cultureclip.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML preset, e.g. configs/train/smoke.yaml")
    ap.add_argument("--resume", default=None, help="'auto' (the newest intact checkpoint in out_dir; damaged ones are skipped with a "
                    "warning) or a checkpoint folder")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 data.batch_size=64")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cultureclip").setLevel(logging.INFO)
    from .config import ConfigError

    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        summary = train(cfg, resume=args.resume)
    except (ConfigError, ValueError, FileNotFoundError, NonFiniteLossError) as e:
        logger.error("%s", e)
        return 2
    logger.info("done: step %s, export %s, val %s", summary["step"], summary["export"], summary["val"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
