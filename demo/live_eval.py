"""Live evaluation: the loaded models on the dataset's test split, in the background, with eval_suite.

`LiveEvaluator.start()` runs the CulTwin benchmark adapter (`eval_suite.benchmarks.CulTwinBenchmark`,
test split) for the base and the tuned model in one background thread, each through the sweep's own
single evaluation, `eval_suite.run.evaluate_one`: image features (on-disk embedding cache keyed by weights
hash), metrics and bootstrap CIs through the adapter's scorer (`eval_suite.metrics`), one result JSON per
model (the `eval_suite.results` schema) under `<cache>/evaluations/<dataset key>/`. A result whose weights
hash (`checkpoint_sha`) and settings match is reused, so a second click, or a restart, is instant.

It gets the models (demo.models.Models), the dataset (demo.dataset.DemoData) and the cache folder, not the
demo's services (which create it).

Work is bounded: one evaluation runs at a time; a request during a run is queued (at most one queued
run, further requests are answered "already queued").
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cultureclip.checkpoint import checkpoint_sha, model_identity
from eval_suite.benchmarks import BenchmarkError, create_benchmark
from eval_suite.results import model_tag, read_result, result_filename
from eval_suite.run import EvalConfig, evaluate_one
from eval_suite.tables import frame_from_results

from .config import ServiceError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .dataset import DemoData
    from .models import Models

logger = logging.getLogger(__name__)

BENCHMARK = "cultwin_live"  # the results' benchmark name (kept apart from any bundled "cultwin" results)
N_BOOT = 1000


@dataclass(frozen=True)
class EvalState:
    """A snapshot of the evaluator for the UI."""

    status: str = "idle"  # idle | running | done | error
    progress: float = 0.0  # 0..1 over both models
    message: str = ""
    queued: bool = False
    files: tuple[str, ...] = field(default_factory=tuple)
    seconds: float | None = None  # time of the run that computed them (None: read from the cache)
    from_cache: bool = False  # every result was found on disk for these exact weights: nothing was computed
    computed_at: str | None = None  # when the shown results were computed ("2026-12-04 23:10 UTC")
    n_images: int | None = None  # test images evaluated per model
    started: float | None = None  # time.monotonic() when the running evaluation started (for the time left)


class LiveEvaluator:
    """Evaluates the base and tuned models on the dataset's test split (thread-safe)."""

    def __init__(self, models: "Models", data: "DemoData", cache_dir: Path, n_boot: int = N_BOOT, batch_size: int = 64):
        self.models = models
        self.data = data
        self.cache_dir = Path(cache_dir)
        self.n_boot = int(n_boot)
        self.batch_size = int(batch_size)
        self._lock = threading.Lock()
        self._state = EvalState()
        self._thread: threading.Thread | None = None
        self._pending = False
        self._frame: pd.DataFrame | None = None
        self._frame_files: tuple[str, ...] = ()
        self._computed = 0  # models the current run evaluated (0: everything came from the cache)

    # -- public ------------------------------------------------------------------------------------
    @property
    def state(self) -> EvalState:
        with self._lock:
            return self._state

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state.status == "running"

    def results_dir(self) -> Path:
        """`<cache>/evaluations/<dataset key>/`: one folder per dataset (key: its resolved path)."""
        root = self.data.root
        if root is None:
            raise ServiceError("no dataset is configured, so there is no test split to evaluate (pass --dataset)")
        key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
        return self.cache_dir / "evaluations" / f"{Path(root).name}-{key}"

    def start(self) -> str:
        """Start an evaluation in the background (or queue one while another runs); returns what happened."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                if self._pending:
                    return "An evaluation is running and another is already queued."
                self._pending = True
                self._state = replace(self._state, queued=True)
                return "An evaluation is running; yours is queued and starts when it finishes."
            self._pending = False
            self._state = EvalState(status="running", message="looking for cached results…", started=time.monotonic())
            self._thread = threading.Thread(target=self._loop, name="cultureclip-live-eval", daemon=True)
            self._thread.start()
            return "Evaluation started."

    def wait(self, timeout: float | None = None) -> EvalState:
        """Block until no evaluation runs or is queued (tests, startup scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                t = self._thread
            if t is None or not t.is_alive():
                return self.state
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return self.state

    def load_cached(self) -> bool:
        """Show results cached for exactly these weights (no evaluation); True when both were found."""
        if self.running:
            return False
        try:
            files = self._evaluate_all(compute=False)
        except Exception as e:  # noqa: BLE001 - an optional speed-up
            logger.warning("cached live evaluation not loaded: %s", e)
            return False
        if not files:
            return False
        self._set(status="done", progress=1.0, files=tuple(str(f) for f in files), **_finished(files, None))
        return True

    def frame(self) -> "pd.DataFrame | None":
        """The tidy results frame (eval_suite.tables) of the finished live results, or None."""
        files = self.state.files
        if not files:
            return None
        with self._lock:
            if self._frame is not None and self._frame_files == files:
                return self._frame
        frame = frame_from_results([read_result(f) for f in files if Path(f).is_file()])
        with self._lock:
            self._frame, self._frame_files = frame, files
        return frame

    # -- the work ------------------------------------------------------------------------------------
    def _set(self, **kw: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **kw)

    def _loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            try:
                self._computed = 0
                files = self._evaluate_all()
                took = round(time.perf_counter() - t0, 1) if self._computed else None
                self._set(status="done", progress=1.0, files=tuple(str(f) for f in files), **_finished(files, took))
            except Exception as e:  # noqa: BLE001 - reported in the UI; details in the log
                logger.exception("live evaluation failed")
                why = str(e)[:300] if isinstance(e, (BenchmarkError, ServiceError)) else "details in the server log"
                self._set(status="error", message=f"Evaluation failed ({type(e).__name__}): {why}")
            with self._lock:
                if not self._pending:
                    return
                self._pending = False
                self._state = replace(self._state, status="running", queued=False, progress=0.0,
                                      message="starting the queued evaluation…", started=time.monotonic())

    def _evaluate_all(self, compute: bool = True) -> list[Path]:
        """Result files for both models; compute=False returns [] unless both are cached."""
        out = self.results_dir()
        specs = self.models.specs
        cfg = EvalConfig(models=[specs["base"], specs["tuned"]], benchmarks=["cultwin"], out=str(out),
                         batch_size=self.batch_size, num_workers=0, cache_dir=str(self.cache_dir / "embeddings"),
                         n_boot=self.n_boot, progress=False)
        tags = {which: model_tag(spec) for which, spec in specs.items()}
        if tags["base"] == tags["tuned"]:
            tags = {which: f"{tag}-{which}" for which, tag in tags.items()}
        files: list[Path] = []
        for k, which in enumerate(("base", "tuned")):
            bench = create_benchmark("cultwin", root=str(self.data.root), split="test")
            got = self._evaluate_model(cfg, bench, which, k, out, tags[which], compute)
            if got is None:
                return []
            files.append(got)
        return files

    def _evaluate_model(self, cfg, bench, which: str, k: int, out: Path, tag: str, compute: bool) -> Path | None:
        """One model's result file (`eval_suite.run.evaluate_one`), reused when cached; None when it is not and
        compute=False."""
        name, spec = self.models.names[which], self.models.specs[which]
        self._set(message=f"{name}: loading the model and hashing its weights…", progress=k / 2)
        emb = self.models.embedder(which)
        # memoized per model by checkpoint_sha itself (the label-bank cache asks for the same one at startup)
        sha = checkpoint_sha(emb.backbone)
        ecfg = {"benchmark": BENCHMARK, "adapter": "cultwin", "split": "test", "n_boot": self.n_boot,
                "dataset_fingerprint": bench.fingerprint(), "precision": "fp32"}
        path = out / result_filename(BENCHMARK, tag)
        kw = dict(sha=sha, ecfg=ecfg, benchmark_name=BENCHMARK)
        cached = evaluate_one(cfg, emb, bench, spec, path, compute=False, **kw)
        if cached is not None or not compute:
            return cached

        def progress(done: int, total: int) -> None:
            if done >= total:  # embedded: the scorer (bootstrap CIs) runs next
                self._set(progress=(k + 0.95) / 2, message=f"{name}: scoring (bootstrap CIs)…")
            else:
                self._set(progress=(k + 0.9 * done / max(1, total)) / 2,
                          message=f"{name}: embedding test images {done}/{total}…")

        self._set(message=f"{name}: embedding {len(bench.load().images)} test images…")
        self._computed += 1
        identity = model_identity(emb.backbone, name=name, role=which, weights_sha=sha)
        extra = {"role": which, "dataset": Path(str(self.data.root)).name, "default_dataset": self.data.is_default_dataset}
        return evaluate_one(cfg, emb, bench, spec, path, identity=identity, extra=extra, callback=progress, **kw)


def when(timestamp: str | None) -> str | None:
    """An ISO 8601 result timestamp as people read it: "2026-12-04 23:10 UTC"."""
    if not timestamp:
        return None
    try:
        t = dt.datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _finished(files: list[Path], seconds: float | None) -> dict[str, Any]:
    """The done state's fields: from the cache (when they were computed) or just computed (how long it took)."""
    stamps, n = [], None
    for f in files:
        try:
            r = read_result(f)
        except Exception:  # noqa: BLE001 - the table says what is missing
            continue
        stamps.append(r.get("timestamp") or "")
        n = r.get("n_samples", n)
    computed = when(max(stamps)) if stamps else None
    imgs = f" ({n:,} test images each)" if n else ""
    if seconds is None:
        msg = f"From cache: computed {computed} for these exact weights{imgs}." if computed else "From cache."
    else:
        msg = f"Evaluated both models on the dataset's test split{imgs} in {seconds:.0f} s."
    return dict(message=msg, seconds=seconds, from_cache=seconds is None, computed_at=computed, n_images=n)

