"""The resumable shard engine behind every synthesis stage.

A stage maps shard i of its input to shard i of its output (datatrove style). On disk, per stage:

    <out>/<stage>/fingerprint.json          settings that made this stage's outputs (refuse to mix)
    <out>/<stage>/shard-00003.jsonl         records, one JSON per line, written atomically
    <out>/<stage>/shard-00003.rejected.jsonl    items dropped by a check, each with its reason
    <out>/<stage>/shard-00003.quarantine.jsonl  items a model failed to produce valid output for
    <out>/<stage>/shard-00003.done          written LAST: the shard is complete (a `cultureclip.steps`
                                            done-marker: the stage fingerprint + counts produced)
    <out>/<stage>/work/<fp>/...             per-item caches (LLM responses, images) that survive a crash

Fingerprints, done-markers and the settings bytes behind content ids are `cultureclip.steps`'s (the
one step mechanism). Item ids are content hashes, seeds derive from ids with hashlib, every file is written to a temp name
and renamed, so a SIGKILL at any point leaves either the old file or the new one, never half of one.
Processes split shards by ``index % world_size == rank`` and synchronise only through done-markers,
so the same code runs alone, as N subprocesses with RANK/WORLD_SIZE, or under ``accelerate launch``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from cultureclip.fileio import (atomic_copy, atomic_write_bytes, atomic_write_json,  # noqa: F401 - re-exported
                                atomic_write_text, read_json, remove_path)
from cultureclip.steps import Marker, done, fingerprint, read_marker, write_marker

log = logging.getLogger(__name__)

SHARD_DIGITS = 5


# ----------------------------------------------------------------------------- ids, seeds, hashing
def content_id(*parts: Any, length: int = 16) -> str:
    """A stable id from content: the `cultureclip.steps.fingerprint` of ``parts`` (first ``length`` chars)."""
    return fingerprint(list(parts), length)


def seed_from_id(item_id: str) -> int:
    """A 32-bit seed from an item id via sha256 (Python's ``hash()`` changes per process)."""
    return int.from_bytes(hashlib.sha256(item_id.encode("utf-8")).digest()[:4], "big")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- atomic writes
# atomic_write_bytes / atomic_write_text / atomic_write_json come from cultureclip.fileio (re-exported here)
def atomic_write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """One JSON object per line (sorted keys, no whitespace, UTF-8), written atomically."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                               default=str) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def remove_stale_temps(folder: str | Path) -> int:
    """Delete ``.*.tmp`` files left by a killed writer (they are never read); returns how many."""
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


# ----------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class ProcessInfo:
    """Which slice of the shards this process owns."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard_index: int) -> bool:
        return shard_index % self.world_size == self.rank


def process_info() -> ProcessInfo:
    """Rank/world size from the environment (set by ``accelerate launch``, torchrun, or by hand).

    We deliberately do not start a torch.distributed group: shards are independent and processes meet
    only through done-markers, so plain subprocesses with RANK/WORLD_SIZE behave exactly like accelerate.
    """
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad RANK={rank} / WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return ProcessInfo(rank, world)


# ----------------------------------------------------------------------------- stage protocol
@dataclass
class ShardResult:
    """What a stage produced for one shard."""

    records: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)      # each has "reason"
    quarantined: list[dict] = field(default_factory=list)   # each has "reason"
    stats: dict = field(default_factory=dict)                # extra counters for the summary


class Stage(Protocol):
    name: str
    upstream: str | None  # stage whose shard i this stage's shard i reads (None: reads no shards)

    def settings(self) -> dict:
        """JSON-able settings that determine this stage's output (hashed into the fingerprint)."""
        ...

    def plan(self, ctx: "StageContext") -> list[list[Any]]:
        """The shards: a deterministic list of item lists (the same in every process)."""
        ...

    def process_shard(self, index: int, items: list[Any], ctx: "StageContext") -> ShardResult:
        ...


class FingerprintMismatchError(RuntimeError):
    """The output folder holds results made with different settings."""


class UpstreamMissingError(RuntimeError):
    """A stage needs shards another stage has not produced (and nobody is producing them)."""


@dataclass
class StageContext:
    """Where a stage writes, and the helpers it needs to read its upstream."""

    out: Path
    stage: str
    fingerprint: str
    proc: ProcessInfo = ProcessInfo()
    wait_timeout: float = 0.0
    progress: bool = True
    expected: dict = field(default_factory=dict)  # upstream stage -> fingerprint it must have

    @property
    def dir(self) -> Path:
        return self.out / self.stage

    @property
    def work(self) -> Path:
        """Per-item cache folder, keyed by fingerprint so items made with other settings are never reused."""
        return self.dir / "work" / self.fingerprint[:12]

    def shard_path(self, index: int, suffix: str = ".jsonl", stage: str | None = None) -> Path:
        return self.out / (stage or self.stage) / f"shard-{index:0{SHARD_DIGITS}d}{suffix}"

    def read_shard(self, stage: str, index: int) -> list[dict]:
        """Records of ``stage``'s shard ``index``, waiting for its done-marker if another process owns it."""
        wait_for_done(self.out, stage, [index], self.wait_timeout, self.expected.get(stage))
        return read_jsonl(self.shard_path(index, stage=stage))

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, leave=False,
                    disable=not self.progress or not sys.stderr.isatty())


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1] or '<root>'}: {old!r} -> {new!r}"]


def marker_path(out: Path, stage: str, index: int) -> Path:
    return out / stage / f"shard-{index:0{SHARD_DIGITS}d}.done"


def done_marker(out: Path, stage: str, index: int) -> Marker | None:
    """The shard's done-marker as written (any fingerprint), or None when missing or torn."""
    return read_marker(marker_path(out, stage, index))


def stage_fingerprint(out: Path, stage: str) -> str | None:
    try:
        fp = read_json(out / stage / "fingerprint.json")["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fp if isinstance(fp, str) else None


def wait_for_done(out: Path, stage: str, indices: Iterable[int], timeout: float,
                  expected: str | None = None, poll: float = 0.2) -> None:
    """Block until every listed shard of ``stage`` has a done-marker with the expected fingerprint.

    expected: the fingerprint the current settings give that stage (None: whatever it has on disk).
    timeout 0 means "do not wait" (single process): a missing shard is an error right away.
    """
    indices = list(indices)
    deadline = time.monotonic() + timeout
    while True:
        fp = expected or stage_fingerprint(out, stage)
        on_disk = stage_fingerprint(out, stage)
        if expected and on_disk not in (None, expected) and time.monotonic() >= deadline:
            raise UpstreamMissingError(
                f"stage {stage!r} in {out} was made with other settings than the current config; "
                f"rerun it (add {stage} to --stages, with --overwrite)")
        missing = [i for i in indices if fp is None or done(marker_path(out, stage, i), fp, upgrade=False) is None]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise UpstreamMissingError(
                f"stage {stage!r} has no finished shard(s) {missing[:5]}{'...' if len(missing) > 5 else ''} "
                f"in {out}; run it first (add it to --stages) with the same settings")
        time.sleep(poll)


# ----------------------------------------------------------------------------- the runner
@dataclass
class StageSummary:
    stage: str
    shards: int
    computed: int
    skipped: int
    records: int
    rejected: int
    quarantined: int
    seconds: float
    stats: dict = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in sorted(self.stats.items()))
        return (f"[{self.stage}] {self.shards} shard(s): {self.computed} computed, {self.skipped} already done; "
                f"{self.records} records, {self.rejected} rejected, {self.quarantined} quarantined"
                f"{extra} ({self.seconds:.1f}s)")


def prepare_stage_dir(out: Path, stage: str, fingerprint: str, settings: dict, overwrite: bool,
                      proc: ProcessInfo) -> None:
    """Record the stage fingerprint; refuse (or, with overwrite, supersede) outputs made otherwise."""
    sdir = out / stage
    fp_path = sdir / "fingerprint.json"
    old = None
    if fp_path.exists():
        old = read_json(fp_path)
    if old is not None and old.get("fingerprint") != fingerprint:
        if not overwrite:
            changes = _diff(old.get("settings", {}), settings)
            raise FingerprintMismatchError(
                f"{sdir} was made with different settings ({'; '.join(changes[:6]) or 'unknown change'}). "
                "Rerun with --overwrite to recompute this stage, or choose another --out.")
        log.warning("[%s] settings changed, recomputing (--overwrite): %s", stage,
                    "; ".join(_diff(old.get("settings", {}), settings)[:6]))
    if old is None or old.get("fingerprint") != fingerprint:
        # Every process computes the same bytes, so concurrent atomic writes are harmless.
        atomic_write_json(fp_path, {"stage": stage, "fingerprint": fingerprint, "settings": settings})
    if overwrite and proc.is_main and (sdir / "work").is_dir():
        for d in (sdir / "work").iterdir():  # caches of other settings: never reused, so drop them
            if d.is_dir() and d.name != fingerprint[:12]:
                remove_path(d, ignore_errors=True)


def run_stage(stage: Stage, out: str | Path, fingerprint: str, *, proc: ProcessInfo | None = None,
              overwrite: bool = False, wait_timeout: float | None = None, progress: bool = True,
              expected: dict | None = None) -> StageSummary:
    """Run this process's shards of ``stage`` into ``out``; skip shards whose done-marker matches.

    fingerprint: hash of this stage's settings *and* its upstream's fingerprint (see ``synth.run``).
    wait_timeout: seconds to wait for shards other processes produce (default 0 alone, 1 h with peers).
    """
    out = Path(out)
    proc = proc or process_info()
    if wait_timeout is None:
        wait_timeout = 0.0 if proc.world_size == 1 else 3600.0
    t0 = time.monotonic()
    settings = stage.settings()
    prepare_stage_dir(out, stage.name, fingerprint, settings, overwrite, proc)
    ctx = StageContext(out, stage.name, fingerprint, proc, wait_timeout, progress, dict(expected or {}))
    if proc.world_size == 1:  # with peers a temp file may be another process's write in flight
        remove_stale_temps(ctx.dir)
    shards = stage.plan(ctx)
    if overwrite and proc.is_main:  # shards beyond the current plan belong to other settings
        for p in ctx.dir.glob("shard-*"):
            try:
                if int(p.name[6:6 + SHARD_DIGITS]) >= len(shards):
                    p.unlink()
            except (ValueError, FileNotFoundError):
                pass
    computed = skipped = 0
    for index, items in enumerate(shards):
        if not proc.owns(index):
            continue
        if done(marker_path(out, stage.name, index), fingerprint) is not None:
            skipped += 1
            continue
        ts = time.monotonic()
        res = stage.process_shard(index, items, ctx)
        atomic_write_jsonl(ctx.shard_path(index), res.records)
        atomic_write_jsonl(ctx.shard_path(index, ".rejected.jsonl"), res.rejected)
        atomic_write_jsonl(ctx.shard_path(index, ".quarantine.jsonl"), res.quarantined)
        write_marker(marker_path(out, stage.name, index), fingerprint, {
            "records": len(res.records), "rejected": len(res.rejected),
            "quarantined": len(res.quarantined), "items": len(items), "stats": res.stats,
            "seconds": round(time.monotonic() - ts, 3), "rank": proc.rank})
        computed += 1
        log.debug("[%s] shard %d: %d records", stage.name, index, len(res.records))
    summary = summarize(out, stage.name, len(shards), fingerprint, proc)
    summary.computed, summary.skipped, summary.seconds = computed, skipped, time.monotonic() - t0
    log.info(summary.line())
    return summary


def summarize(out: Path, stage: str, n_shards: int, fingerprint: str, proc: ProcessInfo | None = None) -> StageSummary:
    """Totals over the finished shards of a stage (those this process can see)."""
    s = StageSummary(stage, n_shards, 0, 0, 0, 0, 0, 0.0)
    for i in range(n_shards):
        m = done_marker(out, stage, i)
        if m is None or m.fingerprint != fingerprint:
            continue
        made = m.produced
        s.records += made["records"]
        s.rejected += made["rejected"]
        s.quarantined += made["quarantined"]
        for k, v in (made.get("stats") or {}).items():
            if isinstance(v, (int, float)):
                s.stats[k] = s.stats.get(k, 0) + v
    return s


def iter_records(out: Path, stage: str, n_shards: int, suffix: str = ".jsonl") -> Iterator[dict]:
    for i in range(n_shards):
        yield from read_jsonl(out / stage / f"shard-{i:0{SHARD_DIGITS}d}{suffix}")


def chunk(items: list[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]
