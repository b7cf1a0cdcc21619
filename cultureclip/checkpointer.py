"""A training run's checkpoints: save (with file sizes + sha256), verify, resume, export.

    <out_dir>/checkpoints/step_XXXXXXXX/   train_state.safetensors + train_state.json (model, optimizer,
                                           scheduler, step/epoch/batch, every process's RNG, last val
                                           metrics), meta.json (config, data fingerprint, file records),
                                           DONE (written last: a `cultureclip.steps` done-marker with
                                           the run's fingerprint, the step and the file records)
    <out_dir>/model/                       the export, in the backbone's own format (cultureclip.checkpoint)

A checkpoint is written to a temp folder and renamed into place; a resume checks every file against
the size and sha256 recorded when it was written and falls back to the newest intact checkpoint (with
a warning naming both), setting the damaged one (or one without DONE) aside. A restart also removes the temp
folders and files a killed process of the run left (`Checkpointer.leftovers`: the export's
`.model.<random>.tmp`, `checkpoints/.tmp_step_N`, ...). Nothing is ever pickled.
"""
from __future__ import annotations

import copy
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, file_records, load_state, save_model, save_state, verify_files
from .fileio import atomic_write_text, make_readable, remove_path, replace_dir
from .lora import has_lora, merge_lora
from .steps import fingerprint, read_marker, write_marker

logger = logging.getLogger("cultureclip.train")  # one logger for the trainer's messages

STATE_FILES = ["train_state.safetensors", "train_state.json"]
# temp names of this run's writers (fileio.atomic_dir / atomic_path / replace_dir, Checkpointer.save)
LEFTOVER = re.compile(r"^\.(tmp_step_\d+|.+\.tmp|.+\.old\d+)$")


@dataclass
class Progress:
    """Where a run stands: the last finished step, the epoch and optimizer steps done in it, and the last
    validation metrics (they survive a resume at the last step)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    val: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResumePoint:
    path: Path
    state: dict[str, Any]
    meta: dict[str, Any]
    damaged: list[Path]  # newer checkpoints skipped because a file failed its check


def rng_state() -> dict[str, Any]:
    """This process's torch / CUDA / numpy / Python RNG state, storable in a training state."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": json.dumps(np.random.get_state()[1].tolist()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": json.dumps(random.getstate()[1]),
        "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if torch.cuda.is_available() and s.get("cuda"):
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(("MT19937", np.array(json.loads(s["numpy"]), dtype=np.uint32), s["numpy_pos"], 0, 0.0))
    pos = s["python_pos"]
    random.setstate((3, tuple(json.loads(s["python"])), None if pos == -1 else pos))


def shown(path: Path | str) -> str:
    """A path for messages: relative to the working folder when inside it, else as the user gave it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def truncate_jsonl(path: Path, last_step: int) -> list[dict]:
    """Keep the rows of a per-step log up to `last_step` (a resumed run rewrites the steps after it),
    dropping a torn last line left by a killed process. Returns the kept rows."""
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


class Checkpointer:
    """The checkpoints of one run folder.

    Args:
        out_dir: the run folder (checkpoints in ``out_dir/checkpoints``, logs ``log.jsonl``/``val.jsonl``).
        accelerator: an ``accelerate.Accelerator`` (or anything with ``num_processes``,
            ``process_index``, ``is_main_process``, ``wait_for_everyone()``).
        keep_last: complete checkpoints kept (older ones are deleted after each save; 0 keeps all).
        meta: run facts recorded in every checkpoint and in the export (``config``, ``config_hash``,
            ``base_spec``, ``data_fingerprint``).
    """

    def __init__(self, out_dir: str | Path, accelerator: Any, keep_last: int, meta: dict[str, Any]) -> None:
        self.out = Path(out_dir)
        self.dir = self.out / "checkpoints"
        self.accelerator = accelerator
        self.keep_last = keep_last
        self.meta = meta

    # ---- find and verify -----------------------------------------------------------------------

    def complete(self, folder: Path | None = None) -> list[Path]:
        """Complete checkpoint folders (a readable DONE marker, written last), oldest first."""
        return [p for p in self.step_folders(folder) if read_marker(p / "DONE") is not None]

    def step_folders(self, folder: Path | None = None) -> list[Path]:
        """Every ``step_XXXXXXXX`` folder, complete or not, oldest first."""
        folder = self.dir if folder is None else folder
        found = (p for p in folder.glob("step_*") if p.name[5:].isdigit() and p.is_dir())
        return sorted(found, key=lambda p: int(p.name[5:]))

    def leftovers(self) -> list[Path]:
        """Temp files and folders a killed process of this run left behind: the export's
        ``out_dir/.model.<random>.tmp`` (a full model, ~600 MB for ViT-B/32), a checkpoint's
        ``checkpoints/.tmp_step_XXXXXXXX``, a folder set aside by `fileio.replace_dir` (``.NAME.old<pid>``)
        and atomic writers' ``.NAME.<random>.tmp`` files. Only these temp names of our own writers match."""
        found = []
        for folder in (self.out, self.dir):
            if folder.is_dir():
                found.extend(p for p in folder.iterdir() if LEFTOVER.match(p.name))
        return sorted(found)

    def clean_leftovers(self) -> list[Path]:
        """Delete `leftovers()` (main process, before this run writes anything), logging each; returns them."""
        gone = self.leftovers()
        for p in gone:
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
            logger.warning("removing %s (%.1f MB), left by a process of this run that was stopped while writing it",
                           shown(p), size / 1e6)
            remove_path(p, ignore_errors=True)
        return gone

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """(train state, meta) of one checkpoint folder, after checking every file against the size and
        sha256 recorded in its meta.json when it was written. Raises CheckpointError naming the bad file."""
        if read_marker(path / "DONE") is None:
            raise CheckpointError(f"{path} is incomplete (no DONE marker, or a torn one; the trainer renames a checkpoint "
                                  "into place only once it is whole, so this one was copied or cut short outside it)")
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path / 'meta.json'} cannot be read ({type(e).__name__}: {e})") from e
        if meta.get("files"):
            verify_files(path, meta["files"])
        return load_state(path, "train_state"), meta

    def find(self, resume: str) -> ResumePoint | None:
        """The checkpoint to resume from, or None when the run folder has none yet.

        ``resume="auto"``: the newest intact checkpoint; a damaged or incomplete (no DONE) newer one is
        skipped with a warning naming both. An explicit folder must be intact. Raises CheckpointError when nothing intact is left."""
        if resume != "auto":
            path = Path(shown(Path(resume)))  # messages name files relative to the working folder
            if not path.is_dir():
                raise CheckpointError(f"--resume {resume}: no such checkpoint folder (pass --resume auto or a "
                                      "step_XXXXXXXX folder of a run's checkpoints)")
            state, meta = self.read(path)
            return ResumePoint(path, state, meta, [])
        damaged: list[tuple[Path, CheckpointError]] = []
        # every step folder: one without DONE (not written by our saver, which renames a finished folder
        # into place, so copied or cut short by hand) is named and set aside like a damaged one
        for path in reversed(self.step_folders(Path(shown(self.dir)))):
            try:
                state, meta = self.read(path)
            except CheckpointError as e:
                damaged.append((path, e))
                continue
            for bad, err in damaged:
                logger.warning("checkpoint %s is damaged (%s); resuming from the previous intact checkpoint %s",
                               shown(bad), err, shown(path))
            return ResumePoint(path, state, meta, [bad for bad, _ in damaged])
        if damaged:
            reasons = "; ".join(str(e) for _, e in damaged)
            raise CheckpointError(
                f"--resume auto: no intact checkpoint in run folder {shown(self.out)} ({reasons}). To start this run "
                f"over, delete {shown(self.dir)} (or pick a new out_dir); to resume from a copy you trust, pass "
                "--resume PATH/TO/step_XXXXXXXX."
            )
        return None

    # ---- resume --------------------------------------------------------------------------------

    def restore(self, resume: str | None, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> Progress:
        """Load the resume point (if any) into model/optimizer/scheduler and this process's RNG; then, on
        the main process, set damaged checkpoints aside and cut the logs back to the resumed step.

        Collective: every process calls it. Raises CheckpointError for a damaged/missing checkpoint or
        one trained on other data."""
        progress = Progress()
        damaged: list[Path] = []
        if resume:
            found = self.find(resume)
            if found is not None:
                path, state, meta, damaged = found.path, found.state, found.meta, found.damaged
                if meta["data_fingerprint"] != self.meta["data_fingerprint"]:
                    raise CheckpointError(
                        f"checkpoint {shown(path)} was trained on different data (fingerprint "
                        f"{meta['data_fingerprint']} != {self.meta['data_fingerprint']}); use a new out_dir")
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                progress = Progress(state["step"], state["epoch"], state["batch_in_epoch"],
                                    dict(state.get("val") or {}))  # the last check survives a resume at the last step
                rank = self.accelerator.process_index
                set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
                logger.info("resumed from %s at step %d (epoch %d, batch %d)", shown(path), progress.step,
                            progress.epoch, progress.batch_in_epoch)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.clean_leftovers()
            for bad in damaged:  # set aside (not deleted): the resumed run writes its own checkpoints at those steps
                aside = bad.with_name(f"damaged_{bad.name}")
                replace_dir(bad, aside)
                logger.warning("kept the damaged checkpoint as %s for inspection; delete it when no longer needed",
                               shown(aside))
            # logs keep the steps up to the resume point; the steps after it are logged again by this run
            truncate_jsonl(self.out / "log.jsonl", progress.step)
            truncate_jsonl(self.out / "val.jsonl", progress.step)
        return progress

    # ---- save ----------------------------------------------------------------------------------

    def save(self, progress: Progress, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
        """Write ``step_XXXXXXXX`` (collective: every process's RNG state is gathered; the main process
        writes). Temp folder, file records, DONE marker, rename; then only ``keep_last`` are kept."""
        rng = [rng_state()]
        if self.accelerator.num_processes > 1:
            gathered = [None] * self.accelerator.num_processes
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not self.accelerator.is_main_process:
            return
        step = progress.step
        path = self.dir / f"step_{step:08d}"
        tmp = self.dir / f".tmp_step_{step:08d}"
        remove_path(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_state(tmp, "train_state", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step, "epoch": progress.epoch,
            "batch_in_epoch": progress.batch_in_epoch, "rng": rng, "val": progress.val,
        })
        meta = {"step": step, "epoch": progress.epoch, "config": self.meta["config"],
                "config_hash": self.meta["config_hash"], "base_spec": self.meta["base_spec"],
                "data_fingerprint": self.meta["data_fingerprint"], "time": time.time(),
                # sizes + hashes, checked before a resume trusts this checkpoint
                "files": file_records(tmp, STATE_FILES)}
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2))
        write_marker(tmp / "DONE", self.fingerprint(), {"step": step, "files": meta["files"]})
        make_readable(tmp)
        replace_dir(tmp, path)
        for old in self.complete()[: -self.keep_last] if self.keep_last > 0 else []:
            remove_path(old, ignore_errors=True)

    def fingerprint(self) -> str:
        """The run's fingerprint in its checkpoints' markers: config, base model and data. A resume reads
        any complete checkpoint (a changed config may continue a run); only other data is refused."""
        return fingerprint({k: self.meta[k] for k in ("config", "base_spec", "data_fingerprint")})

    def last_good(self) -> str:
        """The newest complete checkpoint folder, for messages ("none" before the first)."""
        return str((self.complete() or ["none"])[-1])

    # ---- export --------------------------------------------------------------------------------

    def export(self, backbone: Any, progress: Progress, name: str) -> Path:
        """The trained model in the backbone's own format at ``out_dir/model`` (LoRA merged), with the
        run's name, config, data fingerprint and last val metrics. Main process only."""

        final = copy.deepcopy(backbone).cpu()
        if has_lora(final):
            merge_lora(final)
        final.info["base_spec"] = self.meta["base_spec"]
        return save_model(final, self.out / "model", {
            "step": progress.step, "config": self.meta["config"], "config_hash": self.meta["config_hash"],
            "data_fingerprint": self.meta["data_fingerprint"], "val": progress.val, "name": name,
        })
