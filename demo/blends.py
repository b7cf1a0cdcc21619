"""WiSE-FT blends of the base and CultureCLIP: (1 - alpha) * base + alpha * tuned, one per slider alpha.

`Blends` builds a blend in one pass under a lock, keeps as many as fit a memory budget (most recently used
first), and precomputes every slider alpha's label banks in a background thread onto disk (keyed by both
models' weights hashes and alpha); a request for an alpha not ready yet gets `BlendNotReady` with progress,
and that alpha is done next. It reads the models (demo.models) and is told which label sets to precompute
and whether the dataset index is still being built (that goes first)."""
from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cultureclip.backbone import spec_format
from cultureclip.bankcache import DiskCachedEmbedder, weights_hash
from cultureclip.lora import wise_ft

from .background import background_thread
from .config import BlendNotReady, ServiceError
from .models import Models, blank_image

if TYPE_CHECKING:  # pragma: no cover
    from cultureclip.inference import Embedder

logger = logging.getLogger(__name__)

ALPHA_STEP = 0.1
SMALL_BANK = 32  # labels a request embeds itself with a blend whose banks are not on disk yet (< 1 s on CPU)
LAYOUT_FIX = ("Pass --wise-base with the base weights in the tuned model's format (e.g. "
              "hf:openai/clip-vit-base-patch32 for an HF CultureCLIP).")


def blend_state_dicts(base: dict, tuned: dict, alpha: float) -> dict:
    """WiSE-FT (cultureclip.lora.wise_ft); layout mismatches become a ServiceError that says what to pass."""
    try:
        return wise_ft(base, tuned, alpha)
    except ValueError as e:
        raise ServiceError(f"WiSE-FT needs the base and tuned models in the same layout ({e}). {LAYOUT_FIX}") from e


def quantize_alpha(alpha: float | None) -> float:
    """Clamp to [0, 1] and round to ALPHA_STEP, so the blend cache holds at most 11 entries."""
    try:
        a = float(alpha if alpha is not None else 1.0)
    except (TypeError, ValueError):
        a = 1.0
    if a != a:  # NaN
        a = 1.0
    a = min(1.0, max(0.0, a))
    return round(round(a / ALPHA_STEP) * ALPHA_STEP, 4)


def blend_copy(base: Any, tuned: Any, alpha: float) -> Any:
    """A copy of `tuned` (a ClipBackbone) with WiSE-FT weights (1 - alpha) * base + alpha * tuned, built in one
    pass: each blended tensor is written once and handed to `copy.deepcopy` through its memo, so the copy
    duplicates only the module structure (about 10x faster than deepcopy + wise_ft + load_state_dict)."""
    import torch

    bp = dict(base.named_parameters(remove_duplicate=False)) | dict(base.named_buffers(remove_duplicate=False))
    blend = set(tuned.state_dict())  # what WiSE-FT blends; non-persistent buffers (an attention mask) are copied
    # the tokenizer and image transforms are shared, not copied (a tokenizer's deepcopy alone takes ~0.2 s)
    memo: dict[int, Any] = {id(x): x for x in (getattr(tuned, "tokenize", None), getattr(tuned, "preprocess_eval", None))
                            if x is not None}
    with torch.no_grad():
        for named in (tuned.named_parameters(remove_duplicate=False), tuned.named_buffers(remove_duplicate=False)):
            for name, t in named:
                if id(t) in memo:
                    continue
                b = bp.get(name)
                if b is None or b.shape != t.shape:
                    got = "missing" if b is None else f"shape {tuple(b.shape)} vs {tuple(t.shape)}"
                    raise ServiceError(f"WiSE-FT needs the base and tuned models in the same layout ({name}: {got}). "
                                       f"{LAYOUT_FIX}")
                v = (torch.lerp(b.detach().float(), t.detach().float(), alpha).to(t.dtype)
                     if t.is_floating_point() and name in blend else t.detach().clone())
                memo[id(t)] = torch.nn.Parameter(v, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else v
    return copy.deepcopy(tuned, memo)


def _auto_blend_mb(share: float = 0.4, cap_mb: int = 6144, fallback_mb: int = 2048) -> int:
    """The default memory for WiSE-FT blends: `share` of the memory available now (Linux), at most `cap_mb`."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return fallback_mb
    return int(min(cap_mb, share * avail_kb / 1024))


class _KeyOnly:
    """Whether a blend's banks are on disk, from its key alone (no model built)."""

    def __init__(self, cache: Any, weights_key: str | None):
        self.cache, self.weights = cache, f"key:{weights_key}"

    def ready(self, labels: list[str], templates: tuple[str, ...] = ("{}",)) -> bool:
        return self.cache is not None and self.cache.path(self.cache.key(self.weights, labels, templates)).is_file()


class Blends:
    """The WiSE-FT blends of `models` (thread-safe), built on request or precomputed in the background.

    label_sets(): the label sets precomputed per alpha; index_busy(): True while the dataset index is being
    built (the background waits for it, unless a visitor asks for an alpha); stopping: set when the app stops."""

    def __init__(self, models: Models, label_sets: Callable[[], list[list[str]]], index_busy: Callable[[], bool],
                 stopping: threading.Event, gate: Any, cache_mb: int | None = None):
        self.models = models
        self.label_sets = label_sets
        self.index_busy = index_busy
        self.stopping = stopping
        self.gate = gate
        self.cache_mb = cache_mb  # None: _auto_blend_mb() at first use
        self._blends: OrderedDict[float, Embedder] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache (held briefly)
        self._build_lock = threading.Lock()  # one blend is built at a time; concurrent misses wait for it
        self._cache_size: int | None = None  # set from cache_mb once the model size is known
        self._wise_status: tuple[bool, str] | None = None
        self._hint_logged = False
        self._cond = threading.Condition()  # guards the background fields below
        self._thread: threading.Thread | None = None
        self._done: set[float] = set()  # alphas whose label banks are on disk
        self._wanted: list[float] = []  # alphas a visitor asked for before they were ready: done first
        self._current: tuple[float, float] | None = None  # (alpha, start time) of the bank being embedded
        self._secs: float | None = None  # how long one alpha's banks took (for the progress estimate)
        self.error: str | None = None

    # -- can the two models be blended? ------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """(True, "") when the WiSE-FT base and CultureCLIP can be blended; else (False, a note for the UI).

        Decided from the spec formats before the models load, and from their parameter names and
        shapes once both are loaded (two HF CLIPs of different sizes cannot be blended either)."""
        base_h, tuned_h = self.models.wise_base, self.models.tuned
        bf = base_h.get().backbone.kind if base_h.loaded else spec_format(base_h.spec)
        tf = tuned_h.get().backbone.kind if tuned_h.loaded else spec_format(tuned_h.spec)
        if bf and tf and bf != tf:
            self._log_hint(f"WiSE-FT unavailable ({bf} base, {tf} CultureCLIP)")
            return False, ("WiSE-FT blending is not available here: the base model and CultureCLIP come in different "
                           "formats, so their weights cannot be mixed. Both models still answer.")
        if base_h.loaded and tuned_h.loaded:
            if self._wise_status is None:  # decided once: both models are loaded for good
                self._wise_status = self._same_layout(base_h.get(), tuned_h.get())
            return self._wise_status
        return True, ""

    def _same_layout(self, base: "Embedder", tuned: "Embedder") -> tuple[bool, str]:
        a = {k: tuple(v.shape) for k, v in base.backbone.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in tuned.backbone.state_dict().items()}
        if a == b:
            return True, ""
        diff = sorted(set(a) ^ set(b)) or sorted(k for k in a if a[k] != b[k])
        self._log_hint(f"WiSE-FT unavailable (architectures differ at {diff[0]})")
        return False, ("WiSE-FT blending is not available here: the base model and CultureCLIP have different "
                       "architectures, so their weights cannot be mixed. Both models still answer.")

    def _log_hint(self, why: str) -> None:
        """Visitors read what it means for them; the owner's fix (a flag) goes to the log once."""
        if not self._hint_logged:
            self._hint_logged = True
            logger.warning("%s: to blend, pass --wise-base (env CULTURECLIP_WISE_BASE) with the base weights in the "
                           "tuned model's format (e.g. hf:openai/clip-vit-base-patch32 for an HF CultureCLIP)", why)

    # -- a blend ---------------------------------------------------------------------------------------
    def blended(self, alpha: float, labels: Sequence[str] | None = None, wait: bool | None = None) -> "Embedder":
        """The WiSE-FT model at `alpha` (0 = base, 1 = CultureCLIP), cached per quantized alpha.

        Once `start` runs (the app starts it with the index), a request does not embed a blend's label banks
        itself: until the background has them on disk it raises BlendNotReady with the progress (and that
        alpha is done next); a short list of `labels` (typed labels alone: SMALL_BANK or fewer) is embedded on
        request. Without it (library use, `wait=True`) the blend is built on first use.

        Blends are built one at a time under a lock (concurrent requests for a missing alpha wait for one
        build instead of each copying the model); the cache holds every alpha the slider can produce when
        they fit in the memory budget, else the most recently used ones. A build costs one pass over the
        weights (no full weights hash: the blend's label banks are keyed by its two models' hashes and alpha)."""
        a = quantize_alpha(alpha)
        if a >= 1.0:
            return self.models.tuned.get()
        ok, note = self.available()
        if not ok:
            raise ServiceError(note)
        if a <= 0.0 and self.models.wise_base is self.models.base:
            return self.models.base.get()
        if not (self._thread is None if wait is None else wait) and (labels is None or len(labels) > SMALL_BANK):
            self._raise_unless_done(a)
        emb = self._kept(a)
        if emb is not None:
            return emb
        with self._build_lock:
            emb = self._kept(a)  # built by the request we waited for
            if emb is None:
                emb = self._build(a)
                with self._lock:
                    self._blends[a] = emb
                    while len(self._blends) > self.cache_size:
                        self._blends.popitem(last=False)
        return emb

    def _raise_unless_done(self, a: float) -> None:
        """BlendNotReady (and `a` first in the background's queue) unless alpha `a`'s banks are on disk."""
        with self._cond:
            if a not in self._done:
                if a not in self._wanted:
                    self._wanted.append(a)
                self._cond.notify_all()
                raise BlendNotReady(self.status(a))

    def _kept(self, a: float) -> "Embedder | None":
        with self._lock:
            if a in self._blends:
                self._blends.move_to_end(a)
                return self._blends[a]
        return None

    def kept_alphas(self) -> list[float]:
        """The alphas whose blends are in memory, least recently used first."""
        with self._lock:
            return list(self._blends)

    def forget(self) -> None:
        """Drop the blends kept in memory (benches measure a build this way)."""
        with self._lock:
            self._blends.clear()

    def slider_alphas(self) -> list[float]:
        """The blends the WiSE-FT slider can ask for (besides CultureCLIP itself), middle first."""
        n = int(round(1 / ALPHA_STEP))
        alphas = [round(i * ALPHA_STEP, 4) for i in range(1 if self.models.wise_base is self.models.base else 0, n)]
        return sorted(alphas, key=lambda a: (abs(a - 0.5), -a))

    @property
    def cache_size(self) -> int:
        """How many blends are kept: all slider alphas (at most 10 besides CultureCLIP) within the memory budget."""
        if self._cache_size is None:
            n_alphas = len(self.slider_alphas())
            bb = self.models.tuned.get().backbone
            model_mb = sum(t.numel() * t.element_size() for t in bb.state_dict().values()) / 2**20
            budget = self.cache_mb if self.cache_mb is not None else _auto_blend_mb()
            self._cache_size = max(1, min(n_alphas, int(budget // max(model_mb, 1e-6))))
            logger.info("WiSE-FT: up to %d blends kept in memory (%.0f MB each, budget %d MB)",
                        self._cache_size, model_mb, budget)
        return self._cache_size

    def key(self, a: float) -> str | None:
        """The name of the blend's weights for the label-bank cache: its two models' weights hashes and alpha
        (None when a model has no disk cache)."""
        tuned, base = self.models.tuned.get(), self.models.wise_base.get()
        if self.models.bank_cache is None:
            return None
        h = hashlib.blake2b(digest_size=20)
        h.update(f"wise-ft-v1|alpha={a:.4f}|".encode())
        for emb in (base, tuned):
            h.update((getattr(emb, "weights_hash", None) or weights_hash(emb.backbone)).encode() + b"|")
        return h.hexdigest()

    def _build(self, a: float) -> "Embedder":
        tuned, base = self.models.tuned.get(), self.models.wise_base.get()
        if base.backbone.kind != tuned.backbone.kind:
            raise ServiceError(f"WiSE-FT cannot blend a {base.backbone.kind} base with a {tuned.backbone.kind} "
                               "CultureCLIP; pass --wise-base with the base weights in the tuned model's format.")
        t0 = time.perf_counter()
        bb = blend_copy(base.backbone, tuned.backbone, a)
        bb.eval()
        emb = DiskCachedEmbedder(bb, self.models.bank_cache, batch_size=tuned.batch_size, weights_key=self.key(a))
        for labels in self.label_sets():  # banks the background put on disk: into memory (gathered from)
            if emb.bank_ready(labels):
                emb.label_bank(labels)
        logger.info("built the WiSE-FT blend at alpha=%.1f in %.2f s", a, time.perf_counter() - t0)
        return emb

    # -- every slider alpha in the background --------------------------------------------------------------
    def start(self) -> None:
        """Embed the label banks of every slider alpha's blend in a background thread, after the dataset index
        (an alpha a visitor asks for goes first), onto disk by weights hash: a new alpha then answers in about
        a second, and a restart reads them back. Yields to visitors' requests like all background work."""
        if not self.available()[0]:
            return
        with self._cond:
            if self._thread is not None:
                return
            self._thread = background_thread(self._run, "blends")
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def seconds_per_alpha(self) -> float | None:
        """How long the background took for one alpha's label banks (None before the first)."""
        return self._secs

    def done_alphas(self) -> set[float]:
        with self._cond:
            return set(self._done)

    def wanted_alphas(self) -> list[float]:
        """The alphas visitors asked for that the background has not finished, first asked first."""
        with self._cond:
            return list(self._wanted)

    def stop(self, timeout: float | None = 60) -> None:
        """Wake the background loop (it ends at its next step once `stopping` is set) and wait for it."""
        with self._cond:
            self._cond.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        with self._cond:
            self._thread = None

    def _next_alpha(self) -> float | None:
        with self._cond:
            while not self.stopping.is_set():
                self._wanted = [a for a in self._wanted if a not in self._done]
                if self._wanted:
                    return self._wanted[0]
                todo = [a for a in self.slider_alphas() if a not in self._done]
                if not todo:
                    return None
                if not self.index_busy():  # after the index (visitors need it)
                    return todo[0]
                self._cond.wait(timeout=1.0)
            return None

    def _run(self) -> None:
        try:
            sets = self.label_sets()
            while (a := self._next_alpha()) is not None:
                self.gate.pause()
                if not all(_KeyOnly(self.models.bank_cache, self.key(a)).ready(labels) for labels in sets):
                    self._embed_banks(a, sets)  # else on disk already (a restart)
                elif len(self._blends) < self.cache_size:  # kept ready in memory while there is room
                    self.blended(a, wait=True).embed_images([blank_image()])
                with self._cond:
                    self._current = None
                    self._done.add(a)
            logger.info("WiSE-FT: the label banks of every slider alpha are on disk")
        except Exception as e:  # noqa: BLE001 - requests then build blends themselves
            self.error = f"{type(e).__name__}: {e}"
            logger.exception("precomputing the WiSE-FT blends failed; blends are built on request")
            with self._cond:
                self._thread = None  # requests build (and wait for) their blend themselves

    def _embed_banks(self, a: float, sets: list[list[str]]) -> None:
        t0 = time.perf_counter()
        with self._cond:
            self._current = (a, t0)
        emb = self.blended(a, wait=True)
        for labels in sets:
            emb.label_bank(labels)
        emb.embed_images([blank_image()])  # a model's first image forward is several times slower
        self._secs = time.perf_counter() - t0
        logger.info("WiSE-FT alpha=%.1f: label banks on disk in %.1f s", a, self._secs)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every slider alpha's label banks are on disk (True) or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            t = self._thread
            if t is None or not t.is_alive():
                return set(self.slider_alphas()) <= self.done_alphas()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            t.join(0.2 if left is None else min(0.2, left))

    def status(self, alpha: float) -> str:
        """A line for visitors while the blend at `alpha` is prepared: what happens and about how long."""
        a = quantize_alpha(alpha)
        n = max((len(x) for x in self.label_sets()), default=0)
        cur, per = self._current, self._secs
        if cur is not None and cur[0] == a:
            left = f"about {max(1, round((per or 10.0) - (time.perf_counter() - cur[1])))} s left"
        elif per:
            ahead = len([x for x in self._wanted if x != a]) + (cur is not None)
            left = f"about {max(1, round(per * (1 + ahead)))} s"
        else:
            left = "a few seconds"
        return (f"⏳ Preparing the WiSE-FT blend at α={a:.1f}: its {n:,} label embeddings are computed once and "
                f"cached ({left}). Classify again in a moment; every later query at α={a:.1f} is as fast as at α=1.")
