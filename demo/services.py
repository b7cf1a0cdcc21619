"""What the demo's handlers need, loaded once and lazily: models, dataset, catalog, results.

`DemoServices` is built from a `DemoConfig` without loading anything; `check()` (called by app.py at
startup) validates every configured folder and loads the models so a bad spec fails fast with a clear
message. All holders are thread-safe (gradio runs handlers in worker threads).
"""
from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from cultureclip.inference import Embedder

logger = logging.getLogger(__name__)

# The exact base the paper fine-tuned, in the same (transformers CLIPModel) format as its released
# checkpoint, so WiSE-FT blends the two loaded models key by key.
HUB_BASE = "hf:openai/clip-vit-base-patch32"
HUB_TUNED = "hf:lukahh/cultureclip_lora_0315_100k_32_07_03"
WORLD_DIR = Path("artifacts/world")
ALPHA_STEP = 0.1
SMALL_BANK = 32  # labels a request embeds itself with a blend whose banks are not on disk yet (< 1 s on CPU)
BACKGROUND_BATCH = 8  # images per background forward: a request waits at most one transformer block of it


class ServiceError(RuntimeError):
    """A configured model, folder or file cannot be used; the message says what and how to fix it."""


class IndexNotReady(ServiceError):
    """The dataset images are still being embedded in the background; the message gives the progress."""


class BlendNotReady(ServiceError):
    """A WiSE-FT blend's label banks are still being embedded in the background; the message gives the progress."""


@dataclass
class DemoConfig:
    """Where models and data come from. Paths may be None (the matching tab then says so)."""

    base: str
    tuned: str
    dataset: Path | None = None
    results: Path | None = None
    results_repo: str | None = None  # a HF dataset repo of published results: owner/name[@revision][/folder]
    wise_base: str | None = None  # base weights in the tuned model's layout (None: `base`)
    catalog: list[Path] | None = None  # extra catalog YAML files/folders (default: synth's curated one)
    device: str | None = None  # None: cuda when available
    offline_world: bool = False  # show the offline-world banner
    base_name: str = "Base CLIP"
    tuned_name: str = "CultureCLIP"
    max_index_images: int = 20000  # images embedded for search / twin explorer
    batch_size: int = 64
    # label banks, the default dataset, live evaluations (None: CULTURECLIP_CACHE or ~/.cache/cultureclip)
    cache_dir: Path | None = None
    bank_cache_mb: int = 256
    # memory for WiSE-FT blends kept ready (None: 40% of the memory available at first use, at most 6 GB: every
    # slider alpha of a ViT-B/32 (9 x 0.6 GB) on a 16 GB Space, so a precomputed alpha answers like a warm query)
    blend_cache_mb: int | None = None
    # without `dataset`: render the bundled world's concepts at the models' resolution (synth.world.dataset)
    default_dataset: bool = True
    eval_on_start: bool = False  # evaluate both models on the dataset's test split at startup (background)

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset).expanduser() if self.dataset else None
        self.results = Path(self.results).expanduser() if self.results else None
        self.catalog = [Path(p) for p in self.catalog] if self.catalog else None
        if self.cache_dir:
            self.cache_dir = Path(self.cache_dir).expanduser()
        else:
            from cultureclip.bankcache import default_cache_dir

            self.cache_dir = default_cache_dir()


@dataclass
class ConceptInfo:
    """What the demo shows about a concept (from the manifest, enriched by the catalog when known)."""

    id: str
    name: str
    culture: str
    culture_name: str
    region: str
    category: str
    prompt: str
    context: str = ""
    features: list[str] = field(default_factory=list)
    twins: dict[str, str] = field(default_factory=dict)  # twin id -> distinguishing text


# ------------------------------------------------------------------------------------------------
# WiSE-FT
# ------------------------------------------------------------------------------------------------


def blend_state_dicts(base: dict, tuned: dict, alpha: float) -> dict:
    """WiSE-FT (cultureclip.lora.wise_ft); layout mismatches become a ServiceError that says what to pass."""
    from cultureclip.lora import wise_ft

    try:
        return wise_ft(base, tuned, alpha)
    except ValueError as e:
        raise ServiceError(
            f"WiSE-FT needs the base and tuned models in the same layout ({e}). Pass --wise-base with the base "
            "weights in the tuned model's format (e.g. hf:openai/clip-vit-base-patch32 for an HF CultureCLIP)."
        ) from e


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


# ------------------------------------------------------------------------------------------------
# Model holder
# ------------------------------------------------------------------------------------------------


class ModelHolder:
    """Loads one model spec on first use (once, under a lock) and keeps its `Embedder`."""

    def __init__(self, spec: str, device: str | None, batch_size: int = 64, role: str = "model",
                 bank_cache: Any = None, gate: Any = None):
        self.spec = spec
        self.gate = gate  # a demo.background.VisitorGate: background forwards of this model yield to visitors
        self.device = device
        self.batch_size = batch_size
        self.role = role
        self.bank_cache = bank_cache  # a cultureclip.bankcache.BankCache: label banks also kept on disk
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def get(self) -> "Embedder":
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._load()
        return self._embedder

    def _load(self) -> "Embedder":
        from cultureclip.backbone import BackboneError, create_backbone, default_device
        from cultureclip.inference import Embedder

        device = self.device or default_device()
        logger.info("loading %s model %s on %s", self.role, self.spec, device)
        try:
            bb = create_backbone(self.spec, device=device)
        except BackboneError as e:
            raise ServiceError(f"cannot load the {self.role} model: {e}") from e
        except Exception as e:  # noqa: BLE001 - startup must fail with one clear line
            raise ServiceError(f"cannot load the {self.role} model {self.spec!r}: {type(e).__name__}: {e}") from e
        if self.gate is not None:
            self.gate.install(bb)
        if self.bank_cache is not None:
            from cultureclip.bankcache import DiskCachedEmbedder

            return DiskCachedEmbedder(bb, self.bank_cache, batch_size=self.batch_size)
        return Embedder(bb, batch_size=self.batch_size)


# ------------------------------------------------------------------------------------------------
# Services
# ------------------------------------------------------------------------------------------------


class DemoServices:
    """Lazy, thread-safe access to everything the handlers use."""

    def __init__(self, config: DemoConfig):
        self.config = config
        from cultureclip.bankcache import BankCache, default_cache_dir

        from .background import VisitorGate

        self.gate = VisitorGate()  # background work (index, blend banks, live evaluation) yields to requests
        self.bank_cache = BankCache((config.cache_dir or default_cache_dir()) / "label_banks", config.bank_cache_mb << 20)
        self.base = ModelHolder(config.base, config.device, config.batch_size, "base", self.bank_cache, self.gate)
        self.tuned = ModelHolder(config.tuned, config.device, config.batch_size, "tuned (CultureCLIP)", self.bank_cache,
                                 self.gate)
        if config.wise_base and config.wise_base != config.base:
            self.wise_base = ModelHolder(config.wise_base, config.device, config.batch_size, "WiSE-FT base",
                                         gate=self.gate)
        else:
            self.wise_base = self.base
        self._lock = threading.RLock()
        self._blends: OrderedDict[float, Embedder] = OrderedDict()
        self._blend_lock = threading.Lock()  # guards the cache (held briefly)
        self._blend_build_lock = threading.Lock()  # one blend is built at a time; concurrent misses wait for it
        self._blend_cache_size: int | None = None  # set from blend_cache_mb once the model size is known
        self._wise_status: tuple[bool, str] | None = None
        self._warm_labels: list[list[str]] = []  # label sets of the first queries (warm_start): precomputed per alpha
        self._blend_thread: threading.Thread | None = None
        self._blend_cond = threading.Condition()
        self._blend_done: set[float] = set()  # alphas whose label banks are on disk
        self._blend_wanted: list[float] = []  # alphas a visitor asked for before they were ready: done first
        self._blend_current: tuple[float, float] | None = None  # (alpha, start time) of the bank being embedded
        self._blend_secs: float | None = None  # how long one alpha's banks took (for the progress estimate)
        self._blend_error: str | None = None
        self._stopping = threading.Event()  # stop_background(): background loops end at their next step
        self._manifest: pd.DataFrame | None = None
        self._concepts: dict[str, ConceptInfo] | None = None
        self._results: pd.DataFrame | None = None
        self._results_error: str | None = None  # owner text (the log); visitors see a plain state
        self._results_problems: list[str] = []
        self.results_folders: list[Path] = []  # the folders the published results were read from
        self._indexes: dict[int, torch.Tensor] = {}
        self._index_locks: dict[int, threading.Lock] = {}
        self._index_thread: threading.Thread | None = None
        self._index_done = threading.Event()
        self._index_progress = [0, 0]  # images embedded, images to embed (both models)
        self._index_error: str | None = None
        self._memo: dict[str, Any] = {}  # per-app derived data (the confusion table); dies with the services
        self._memo_lock = threading.Lock()
        self._default_root: Path | None = None
        self._default_lock = threading.Lock()
        self._atlas: Any = None
        self._atlas_lock = threading.Lock()
        self._evaluator: Any = None

    # -- startup -----------------------------------------------------------------------------------
    def check(self, load_models: bool = True) -> list[str]:
        """Validate configured folders (and load the models): raise ServiceError on the first problem.

        Returns notes on optional parts that are missing (shown in the log and the UI)."""
        notes: list[str] = []
        cfg = self.config
        if cfg.dataset is not None:
            if not cfg.dataset.is_dir():
                raise ServiceError(f"dataset folder {str(cfg.dataset)!r} does not exist; pass --dataset with a CulTwin dataset folder")
            self.manifest()  # raises ServiceError when unreadable
        elif not cfg.default_dataset:
            notes.append("No dataset configured: the twin explorer and search tabs are disabled (pass --dataset).")
        if cfg.results is not None and not cfg.results.is_dir():
            raise ServiceError(f"results folder {str(cfg.results)!r} does not exist; pass --results with a folder of eval JSONs")
        if cfg.results is not None or cfg.results_repo:
            self.results_frame()
            notes += [f"Benchmarks: {p}" for p in self._results_problems]
        else:
            notes.append("No published results (--results DIR or --results-repo owner/name[/folder]): the benchmarks "
                         "tab shows the live evaluation of the loaded models." if self.has_dataset else
                         "No results (--results DIR or --results-repo owner/name[/folder]) and no dataset: the "
                         "benchmarks tab is empty.")
        if load_models:
            self.base.get()
            self.tuned.get()
            if self.is_default_dataset:
                self.manifest()  # render the default dataset now (cached on disk), not on the first request
                notes.append(f"No --dataset: the twin explorer, confusion map and search use the bundled world's "
                             f"flags and tartans rendered at {self.default_image_size()} px ({self.dataset_root}).")
            if self.has_dataset and not cfg.eval_on_start and self.evaluator.load_cached():
                notes.append("Benchmarks: showing the cached live evaluation of these exact weights.")
        else:  # still fail fast on specs that cannot work: unparsable, or a local folder that is missing
            from cultureclip.backbone import BackboneError, parse_spec

            for role, spec in (("base", cfg.base), ("CultureCLIP", cfg.tuned)):
                try:
                    ms = parse_spec(str(spec))
                except BackboneError as e:
                    raise ServiceError(f"cannot load the {role} model: {e}") from e
                if ms.kind == "local" and not Path(ms.name).is_dir():
                    raise ServiceError(f"cannot load the {role} model: model folder {ms.name!r} does not exist")
        if self.has_dataset and cfg.eval_on_start:
            self.evaluator.start()  # in the background (loads what it needs); cached results make it instant
            notes.append("Evaluating both models on the dataset's test split in the background, for the Benchmarks tab "
                         "(results cached by weights hash; --no-eval-on-start turns it off).")
        return notes

    def warm_start(self, label_sets: list[list[str]], templates: tuple[str, ...] = ("{}",)) -> None:
        """Embed the label banks the first queries need, for both models, before the first request (read
        from the disk cache when this model and label set were seen before). Progress goes to the log."""
        import time

        t0 = time.perf_counter()
        self._warm_labels = [list(labels) for labels in label_sets if labels]
        jobs = [(role, holder, labels) for role, holder in (("base", self.base), ("CultureCLIP", self.tuned))
                for labels in label_sets if labels]
        for i, (role, holder, labels) in enumerate(jobs, 1):
            logger.info("warm start %d/%d: %s label bank, %d labels", i, len(jobs), role, len(labels))
            holder.get().label_bank(labels, templates)
        for holder in (self.base, self.tuned):  # the first image forward of a process is several times slower
            holder.get().embed_images([_blank()])
        logger.info("warm start done in %.1f s: the first query is as fast as a warm one", time.perf_counter() - t0)

    # -- models ------------------------------------------------------------------------------------
    def embedder(self, which: str) -> "Embedder":
        if which == "base":
            return self.base.get()
        if which == "tuned":
            return self.tuned.get()
        raise ValueError(f"which must be 'base' or 'tuned', got {which!r}")

    def wise_available(self) -> tuple[bool, str]:
        """(True, "") when the WiSE-FT base and CultureCLIP can be blended; else (False, a note for the UI).

        Decided from the spec formats before the models load, and from their parameter names and
        shapes once both are loaded (two HF CLIPs of different sizes cannot be blended either)."""
        from cultureclip.backbone import spec_format

        base_h, tuned_h = self.wise_base, self.tuned
        bf = base_h._embedder.backbone.kind if base_h.loaded else spec_format(base_h.spec)
        tf = tuned_h._embedder.backbone.kind if tuned_h.loaded else spec_format(tuned_h.spec)
        # visitors read what it means for them; the owner's fix (a flag) goes to the log once
        hint = "Both models still answer."
        owner = ("to blend, pass --wise-base (env CULTURECLIP_WISE_BASE) with the base weights in the tuned "
                 "model's format (e.g. hf:openai/clip-vit-base-patch32 for an HF CultureCLIP)")
        if bf and tf and bf != tf:
            self._log_wise_hint(f"WiSE-FT unavailable ({bf} base, {tf} CultureCLIP): {owner}")
            return False, (f"WiSE-FT blending is not available here: the base model and CultureCLIP come in "
                           f"different formats, so their weights cannot be mixed. {hint}")
        if base_h.loaded and tuned_h.loaded:
            if self._wise_status is None:  # decided once: both models are loaded for good
                a = {k: tuple(v.shape) for k, v in base_h._embedder.backbone.state_dict().items()}
                b = {k: tuple(v.shape) for k, v in tuned_h._embedder.backbone.state_dict().items()}
                self._wise_status = (True, "")
                if a != b:
                    diff = sorted(set(a) ^ set(b)) or sorted(k for k in a if a[k] != b[k])
                    self._log_wise_hint(f"WiSE-FT unavailable (architectures differ at {diff[0]}): {owner}")
                    self._wise_status = (False, "WiSE-FT blending is not available here: the base model and "
                                         f"CultureCLIP have different architectures, so their weights cannot be "
                                         f"mixed. {hint}")
            return self._wise_status
        return True, ""

    def _log_wise_hint(self, text: str) -> None:
        if not getattr(self, "_wise_hint_logged", False):
            self._wise_hint_logged = True
            logger.warning("%s", text)

    def blended(self, alpha: float, labels: Sequence[str] | None = None, wait: bool | None = None) -> "Embedder":
        """The WiSE-FT model at `alpha` (0 = base, 1 = CultureCLIP), cached per quantized alpha.

        Once `start_blends` runs (the app starts it with the index), a request does not embed a blend's label
        banks itself: until the background has them on disk it raises BlendNotReady with the progress (and that
        alpha is done next); a short list of `labels` (typed labels alone: SMALL_BANK or fewer) is embedded on
        request. Without it (library use, `wait=True`) the blend is built on first use.

        Blends are built one at a time under a lock (concurrent requests for a missing alpha wait for one
        build instead of each copying the model); the cache holds every alpha the slider can produce when
        they fit in `blend_cache_mb`, else the most recently used ones. A build costs one pass over the weights
        (no full weights hash: the blend's label banks are keyed by its two models' hashes and alpha)."""
        a = quantize_alpha(alpha)
        if a >= 1.0:
            return self.tuned.get()
        ok, note = self.wise_available()
        if not ok:
            raise ServiceError(note)
        if a <= 0.0 and self.wise_base is self.base:
            return self.base.get()
        if wait is None:
            wait = self._blend_thread is None
        if not wait and a not in self._blend_done and (labels is None or len(labels) > SMALL_BANK):
            with self._blend_cond:
                if a not in self._blend_done:
                    if a not in self._blend_wanted:
                        self._blend_wanted.append(a)
                    self._blend_cond.notify_all()
                    raise BlendNotReady(self.blend_status(a))
        with self._blend_lock:
            if a in self._blends:
                self._blends.move_to_end(a)
                return self._blends[a]
        with self._blend_build_lock:
            with self._blend_lock:
                if a in self._blends:  # built by the request we waited for
                    self._blends.move_to_end(a)
                    return self._blends[a]
            emb = self._build_blend(a)
            with self._blend_lock:
                self._blends[a] = emb
                while len(self._blends) > self.blend_cache_size:
                    self._blends.popitem(last=False)
        return emb

    def slider_alphas(self) -> list[float]:
        """The blends the WiSE-FT slider can ask for (besides CultureCLIP itself), middle first."""
        n = int(round(1 / ALPHA_STEP))
        alphas = [round(i * ALPHA_STEP, 4) for i in range(1 if self.wise_base is self.base else 0, n)]
        return sorted(alphas, key=lambda a: (abs(a - 0.5), -a))

    @property
    def blend_cache_size(self) -> int:
        """How many blends are kept: all slider alphas (at most 10 besides CultureCLIP) within the memory budget."""
        if self._blend_cache_size is None:
            n_alphas = int(round(1 / ALPHA_STEP)) + (0 if self.wise_base is self.base else 1) - 1
            bb = self.tuned.get().backbone
            model_mb = sum(t.numel() * t.element_size() for t in bb.state_dict().values()) / 2**20
            budget = self.config.blend_cache_mb if self.config.blend_cache_mb is not None else _auto_blend_mb()
            self._blend_cache_size = max(1, min(n_alphas, int(budget // max(model_mb, 1e-6))))
            logger.info("WiSE-FT: up to %d blends kept in memory (%.0f MB each, budget %d MB)",
                        self._blend_cache_size, model_mb, budget)
        return self._blend_cache_size

    def blend_key(self, a: float) -> str | None:
        """The name of the blend's weights for the label-bank cache: its two models' weights hashes and alpha
        (None when a model has no disk cache)."""
        import hashlib

        from cultureclip.bankcache import weights_hash

        tuned, base = self.tuned.get(), self.wise_base.get()
        if self.bank_cache is None:
            return None
        h = hashlib.blake2b(digest_size=20)
        h.update(f"wise-ft-v1|alpha={a:.4f}|".encode())
        for emb in (base, tuned):
            h.update((getattr(emb, "weights_hash", None) or weights_hash(emb.backbone)).encode() + b"|")
        return h.hexdigest()

    def _build_blend(self, a: float) -> "Embedder":
        import torch

        from cultureclip.bankcache import DiskCachedEmbedder

        tuned = self.tuned.get()
        base = self.wise_base.get()
        if base.backbone.kind != tuned.backbone.kind:
            raise ServiceError(
                f"WiSE-FT cannot blend a {base.backbone.kind} base with a {tuned.backbone.kind} CultureCLIP; "
                "pass --wise-base with the base weights in the tuned model's format."
            )
        t0 = time.perf_counter()
        bb = _blend_copy(base.backbone, tuned.backbone, a)
        bb.eval()
        emb = DiskCachedEmbedder(bb, self.bank_cache, batch_size=tuned.batch_size, weights_key=self.blend_key(a))
        for labels in self._blend_label_sets():  # banks the background put on disk: into memory (gathered from)
            if emb.bank_ready(labels):
                emb.label_bank(labels)
        logger.info("built the WiSE-FT blend at alpha=%.1f in %.2f s", a, time.perf_counter() - t0)
        return emb

    # -- WiSE-FT blends in the background ------------------------------------------------------------
    def _blend_label_sets(self) -> list[list[str]]:
        """The label sets precomputed per alpha: the first queries' (warm_start), else the concept prompts."""
        if self._warm_labels:
            return self._warm_labels
        cs = self.concepts()
        return [[cs[i].prompt for i in sorted(cs)]] if cs else []

    def start_blends(self) -> None:
        """Embed the label banks of every slider alpha's blend in a background thread, after the dataset index
        (an alpha a visitor asks for goes first), onto disk by weights hash: a new alpha then answers in about
        a second, and a restart reads them back. Yields to visitors' requests like all background work."""
        from .background import background_thread

        if not self.wise_available()[0]:
            return
        with self._blend_cond:
            if self._blend_thread is not None:
                return
            self._blend_thread = background_thread(self._blend_all, "blends")
            self._blend_thread.start()

    def stop_background(self, timeout: float | None = 60) -> None:
        """End the background work (dataset index, blend banks) at its next step and wait for it; what is done
        stays (banks on disk); requests then build what they need themselves."""
        self._stopping.set()
        with self._blend_cond:
            self._blend_cond.notify_all()
        for t in (self._blend_thread, self._index_thread):
            if t is not None and t is not threading.current_thread():
                t.join(timeout)
        with self._blend_cond:
            self._blend_thread = None

    def _next_alpha(self) -> float | None:
        with self._blend_cond:
            while not self._stopping.is_set():
                self._blend_wanted = [a for a in self._blend_wanted if a not in self._blend_done]
                if self._blend_wanted:
                    return self._blend_wanted[0]
                todo = [a for a in self.slider_alphas() if a not in self._blend_done]
                if not todo:
                    return None
                if self._index_thread is None or self._index_done.is_set():  # after the index (visitors need it)
                    return todo[0]
                self._blend_cond.wait(timeout=1.0)
            return None

    def _blend_all(self) -> None:
        import time as _time

        try:
            sets = self._blend_label_sets()
            while (a := self._next_alpha()) is not None:
                self.gate.pause()
                key = self.blend_key(a)
                probe = _KeyOnly(self.bank_cache, key)
                if not all(probe.ready(labels) for labels in sets):  # else on disk already (a restart)
                    t0 = _time.perf_counter()
                    with self._blend_cond:
                        self._blend_current = (a, t0)
                    emb = self.blended(a, wait=True)
                    for labels in sets:
                        emb.label_bank(labels)
                    emb.embed_images([_blank()])  # a model's first image forward is several times slower
                    self._blend_secs = _time.perf_counter() - t0
                    logger.info("WiSE-FT alpha=%.1f: label banks on disk in %.1f s", a, self._blend_secs)
                elif len(self._blends) < self.blend_cache_size:  # kept ready in memory while there is room
                    self.blended(a, wait=True).embed_images([_blank()])
                with self._blend_cond:
                    self._blend_current = None
                    self._blend_done.add(a)
            logger.info("WiSE-FT: the label banks of every slider alpha are on disk")
        except Exception as e:  # noqa: BLE001 - requests then build blends themselves
            self._blend_error = f"{type(e).__name__}: {e}"
            logger.exception("precomputing the WiSE-FT blends failed; blends are built on request")
            with self._blend_cond:
                self._blend_thread = None  # requests build (and wait for) their blend themselves

    def wait_blends(self, timeout: float | None = None) -> bool:
        """Block until every slider alpha's label banks are on disk (True) or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._blend_thread is None or not self._blend_thread.is_alive():
                return set(self.slider_alphas()) <= self._blend_done
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._blend_thread.join(0.2 if left is None else min(0.2, left))

    def blend_status(self, alpha: float) -> str:
        """A line for visitors while the blend at `alpha` is prepared: what happens and about how long."""
        a = quantize_alpha(alpha)
        n = max((len(x) for x in self._blend_label_sets()), default=0)
        cur, per = self._blend_current, self._blend_secs
        if cur is not None and cur[0] == a:
            left = f"about {max(1, round((per or 10.0) - (time.perf_counter() - cur[1])))} s left"
        elif per:
            ahead = len([x for x in self._blend_wanted if x != a]) + (cur is not None)
            left = f"about {max(1, round(per * (1 + ahead)))} s"
        else:
            left = "a few seconds"
        return (f"⏳ Preparing the WiSE-FT blend at α={a:.1f}: its {n:,} label embeddings are computed once and "
                f"cached ({left}). Classify again in a moment; every later query at α={a:.1f} is as fast as at α=1.")

    # -- dataset -----------------------------------------------------------------------------------
    @property
    def has_dataset(self) -> bool:
        return self.config.dataset is not None or self.config.default_dataset

    @property
    def is_default_dataset(self) -> bool:
        """True when no dataset was configured and the world's concepts are rendered for these models."""
        return self.config.dataset is None and self.config.default_dataset

    def default_image_size(self) -> int:
        """The models' input resolution (the larger of the two): the default dataset is rendered at it."""
        sizes = []
        for holder in (self.base, self.tuned):
            size = holder.get().backbone.image_size
            sizes.append(int(max(size)) if isinstance(size, (tuple, list)) else int(size))
        return max(sizes)

    @property
    def dataset_root(self) -> Path | None:
        """The dataset folder: the configured one, or the default one (rendered on first use, then cached)."""
        if self.config.dataset is not None or not self.config.default_dataset:
            return self.config.dataset
        if self._default_root is None:
            with self._default_lock:
                if self._default_root is None:
                    from synth.world.dataset import ensure_world_dataset

                    try:
                        self._default_root = ensure_world_dataset(self.config.cache_dir / "datasets",
                                                                  self.default_image_size())
                    except ServiceError:
                        raise
                    except Exception as e:  # noqa: BLE001 - one clear line (no server path) instead of a traceback
                        logger.exception("default dataset build failed in %s", self.config.cache_dir)
                        raise ServiceError(f"cannot build the default dataset ({type(e).__name__}); set "
                                           "CULTURECLIP_CACHE (or --cache-dir) to a writable folder, or pass "
                                           "--dataset. Details are in the server log.") from e
        return self._default_root

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir  # type: ignore[return-value]

    def manifest(self) -> "pd.DataFrame":
        """The CulTwin manifest (validated), with `abs_path` (resolved, inside the dataset folder)."""
        if self._manifest is not None:
            return self._manifest
        with self._lock:
            if self._manifest is None:
                self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> "pd.DataFrame":
        from cultureclip.data import ManifestError, read_manifest

        root = self.dataset_root
        if root is None:
            raise ServiceError("no dataset configured (pass --dataset)")
        try:
            # the shared validator: required columns, twin links, and no image path outside the folder;
            # unreadable images are handled per use
            df = read_manifest(root, check_images=False).frame.copy()
        except ManifestError as e:
            raise ServiceError(str(e)) from e
        except Exception as e:  # noqa: BLE001
            raise ServiceError(f"cannot read {root / 'manifest.parquet'}: {type(e).__name__}: {e}") from e
        root_r = root.resolve()
        df["abs_path"] = [str((root_r / rel).resolve()) for rel in df["image_path"].astype(str)]
        logger.info("dataset %s: %d images, %d concepts", root, len(df), df["concept_id"].nunique())
        return df

    def concepts(self) -> dict[str, ConceptInfo]:
        """Concepts of the dataset (or of the catalog when there is no dataset), by id."""
        if self._concepts is not None:
            return self._concepts
        with self._lock:
            if self._concepts is None:
                self._concepts = self._build_concepts()
        return self._concepts

    def _load_catalog(self):
        try:
            from synth.catalog import load_catalog

            if self.config.catalog:
                return load_catalog(self.config.catalog, include_generated=True)
            ds = self.config.dataset
            if ds is not None and (ds / "catalog").is_dir():
                return load_catalog(ds / "catalog", include_generated=True)
            if self.is_default_dataset:  # the curated catalog + the world's concepts (the default dataset's)
                from synth.catalog import DATA_DIR
                from synth.world import CATALOG_PATH

                return load_catalog([DATA_DIR, CATALOG_PATH])
            return load_catalog()
        except Exception as e:  # noqa: BLE001 - the catalog only adds detail; the manifest suffices
            logger.warning("concept catalog not available (%s: %s); using the dataset manifest only", type(e).__name__, str(e)[:200])
            return None

    def _build_concepts(self) -> dict[str, ConceptInfo]:
        catalog = self._load_catalog()
        out: dict[str, ConceptInfo] = {}
        only_dataset = self.config.dataset is not None  # the default dataset's concepts are all in the catalog
        if only_dataset:
            df = self.manifest()
            first = df.drop_duplicates("concept_id")
            from cultureclip.data import twin_pairs, twins_by_concept

            twins_of = twins_by_concept(twin_pairs(df["concept_id"], df["twin_concept_ids"]))
            for row in first.itertuples(index=False):
                cid = str(row.concept_id)
                out[cid] = ConceptInfo(
                    id=cid, name=str(row.concept_name), culture=str(row.culture), culture_name=str(row.culture),
                    region=str(row.region), category=str(row.category), prompt=str(row.concept_prompt),
                    twins={t: "" for t in sorted(twins_of.get(cid, ()))},
                )
        if catalog is not None:
            for c in catalog:
                if only_dataset and c.id not in out:
                    continue
                info = out.get(c.id)
                twins = {t.id: t.distinguishing for t in c.twins}
                if info is None:
                    out[c.id] = ConceptInfo(c.id, c.name, c.culture, c.culture_name, c.region, c.category,
                                            catalog.concept_prompt(c.id), c.context, list(c.features), twins)
                else:
                    info.culture_name = c.culture_name
                    info.context = c.context
                    info.features = list(c.features)
                    for tid, text in twins.items():
                        if tid in info.twins or not only_dataset:
                            info.twins[tid] = text
        # keep twin links symmetric and only between known concepts
        for c in out.values():
            c.twins = {t: d for t, d in c.twins.items() if t in out and t != c.id}
        for c in list(out.values()):
            for t in c.twins:
                out[t].twins.setdefault(c.id, "")
        return out

    def twin_pairs(self) -> list[tuple[str, str]]:
        """Each twin pair once as (smaller id, larger id), sorted."""
        cs = self.concepts()
        return sorted({tuple(sorted((c.id, t))) for c in cs.values() for t in c.twins})  # type: ignore[misc]

    def image_pairs(self) -> list[tuple[str, str]]:
        """The twin pairs with images of both concepts in the dataset (what the twin explorer can show)."""
        present = set(self.manifest()["concept_id"].astype(str))
        return [(a, b) for a, b in self.twin_pairs() if a in present and b in present]

    # -- dataset image embeddings ------------------------------------------------------------------
    def image_index(self, which: str, wait: bool | None = None) -> "torch.Tensor":
        """(N, D) embeddings of the first `max_index_images` manifest images, computed once per model.

        Once `start_indexing` has run (the app does it at startup), a request never builds the index
        itself: until the background build is done it raises IndexNotReady with the progress. Without a
        background build (library use) the index is built on first use (`wait=True`)."""
        emb = self.embedder(which)
        key = id(emb)
        if key in self._indexes:
            return self._indexes[key]
        if wait is None:
            wait = self._index_thread is None
        if not wait:
            raise IndexNotReady(self.index_status())
        with self._lock:
            lock = self._index_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._indexes:
                self._indexes[key] = self._embed_dataset(emb)
        return self._indexes[key]

    def start_indexing(self) -> None:
        """Embed the dataset images for both models in a background thread (called at app startup), so no
        request waits minutes for it; progress is logged and shown by `index_status`. Then the WiSE-FT
        blends' label banks (`start_blends`). All of it yields to visitors' requests (demo.background)."""
        from .background import background_thread

        if self.base.loaded and self.tuned.loaded:
            self.start_blends()  # waits for the index itself, unless a visitor asks for an alpha
        if not self.has_dataset:
            self._index_done.set()
            return
        with self._lock:
            if self._index_thread is not None:
                return
            n = min(len(self.manifest()), self.config.max_index_images)
            self._index_progress = [0, 2 * n]
            self._index_thread = background_thread(self._index_all, "index")
            self._index_thread.start()

    def _index_all(self) -> None:
        try:
            for which in ("base", "tuned"):
                self.image_index(which, wait=True)
            logger.info("dataset index ready: %d images per model", self._index_progress[1] // 2)
        except Exception as e:  # noqa: BLE001 - shown to users by index_status
            self._index_error = f"{type(e).__name__}: {e}"
            logger.exception("embedding the dataset images failed")
        finally:
            self._index_done.set()

    def wait_index(self, timeout: float | None = None) -> bool:
        """Block until the background index build has finished (True) or `timeout` seconds passed."""
        return self._index_done.wait(timeout)

    def index_status(self) -> str:
        """A line for users about the dataset index: progress, or why it failed."""
        if self._index_error:
            return f"Embedding the dataset images failed ({self._index_error[:200]}); see the server log."
        done, total = self._index_progress
        pct = 100.0 * done / total if total else 0.0
        return (f"The dataset images are still being embedded for search and the twin explorer: {done:,} of "
                f"{total:,} ({pct:.0f}%). Try again in a moment.")

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """A value derived once per services object (e.g. the confusion table); built under a lock."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = build()
            return self._memo[key]

    def _embed_dataset(self, emb: "Embedder") -> "torch.Tensor":
        import torch

        from .validation import DemoInputError, load_image

        from .background import is_background

        df = self.manifest().head(self.config.max_index_images)
        feats = []
        # in the background: small batches, each a point where a visitor's request goes first
        chunk = max(1, min(emb.batch_size, BACKGROUND_BATCH) if is_background() else emb.batch_size)
        paths = df["abs_path"].tolist()
        step = max(1, len(paths) // 10)
        for i in range(0, len(paths), chunk):
            if self._stopping.is_set() and is_background():
                raise ServiceError("the app is stopping")
            self.gate.pause()
            imgs = []
            for p in paths[i : i + chunk]:
                try:
                    imgs.append(load_image(p))
                except DemoInputError as e:
                    logger.warning("dataset image %s unreadable (%s); using a blank image", p, e)
                    imgs.append(_blank())
            feats.append(emb.embed_images(imgs))
            self._index_progress[0] += len(imgs)
            if (i // chunk) % max(1, step // chunk) == 0:
                logger.info("embedding dataset images: %d of %d", *self._index_progress)
        if not feats:
            return torch.empty(0, emb.backbone.embed_dim)
        logger.info("embedded %d dataset images with %s", len(paths), emb.backbone.spec)
        return torch.cat(feats)

    def concept_bank(self, which_or_embedder) -> tuple[list[str], "torch.Tensor"]:
        """(concept ids, (C, D) prompt embeddings) for every concept, cached by the Embedder."""
        emb = self.embedder(which_or_embedder) if isinstance(which_or_embedder, str) else which_or_embedder
        cs = self.concepts()
        ids = sorted(cs)
        return ids, emb.label_bank([cs[i].prompt for i in ids], ("{}",))

    # -- confusion atlas (text only) -----------------------------------------------------------------
    def atlas(self) -> "pd.DataFrame":
        """eval_suite.confusions atlas of every twin pair of the concepts, base vs tuned (computed once)."""
        if self._atlas is not None:
            return self._atlas
        with self._atlas_lock:
            if self._atlas is None:
                from eval_suite.confusions import confusion_atlas

                names = [self.config.base_name, self.config.tuned_name]
                if names[0] == names[1]:
                    names = [f"{names[0]} (base)", f"{names[1]} (tuned)"]
                self._atlas = confusion_atlas({names[0]: self.base.get(), names[1]: self.tuned.get()},
                                              self.concepts(), self.twin_pairs())
        return self._atlas

    # -- results -----------------------------------------------------------------------------------
    def results_frame(self) -> "pd.DataFrame | None":
        """The tidy results frame (eval_suite.tables) of the published results: the --results folder and the
        --results-repo dataset repo (demo.results_sources); None with the reason in `results_error`."""
        if self._results is not None or (self.config.results is None and not self.config.results_repo):
            return self._results
        with self._lock:
            if self._results is None and self._results_error is None:
                from .results_sources import load_published

                pub = load_published(self.config.results, self.config.results_repo)
                self._results_problems, self.results_folders = pub.problems, pub.folders
                if pub.frame is None:
                    self._results_error = "; ".join(pub.problems) or "no published results"
                else:
                    self._results = _with_filter_columns(pub.frame)
        return self._results

    @property
    def results_error(self) -> str | None:
        return self._results_error

    @property
    def evaluator(self):
        """The live evaluator (demo.live_eval.LiveEvaluator) of the loaded models on the dataset's test split."""
        if self._evaluator is None:
            with self._lock:
                if self._evaluator is None:
                    from .live_eval import LiveEvaluator

                    self._evaluator = LiveEvaluator(self, batch_size=self.config.batch_size)
        return self._evaluator

    def dashboard_frame(self) -> "pd.DataFrame | None":
        """Bundled/--results results and the live evaluation's, in one tidy frame (None when neither exists)."""
        import pandas as pd

        frames = []
        bundled = self.results_frame()
        if bundled is not None:
            frames.append(bundled)
        if self._evaluator is not None:
            live = self._evaluator.frame()
            if live is not None and len(live):
                frames.append(_with_filter_columns(live))
        if not frames:
            return None
        if len(frames) == 1:
            return frames[0]
        return _with_filter_columns(pd.concat(frames, ignore_index=True))

    # -- description ---------------------------------------------------------------------------------
    def banner(self) -> str:
        """Markdown shown at the top of the app: what models and data are on display."""
        c = self.config
        def short(spec: str) -> str:
            p = Path(spec)
            return "/".join(p.parts[-2:]) if p.is_dir() else spec

        parts = [f"**{c.base_name}**: `{short(c.base)}` · **{c.tuned_name}**: `{short(c.tuned)}`"]
        if c.dataset:
            parts.append(f"dataset: `{c.dataset.name}`")
        elif self.is_default_dataset and self._default_root is not None:
            parts.append(f"dataset: the bundled world's flags and tartans, rendered at {self.default_image_size()} px")
        text = " · ".join(parts)
        if c.offline_world:
            return (
                "⚠️ **Offline twin world.** No model hub is reachable, so this app shows the bundled offline "
                "world: small CLIP models trained on procedurally rendered flags and tartans (cultural twins that "
                "differ in small details), not the paper's ViT-B/32 models or real photographs.<br>" + text
            )
        return text


FILTER_FIELDS = ("region", "category")  # group fields the benchmarks tab filters on


def _with_filter_columns(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The tidy frame with the group-field columns the dashboard filters on (NaN where no result has them).

    eval_suite.tables already gives one column per group field, so nothing is parsed here."""
    missing = [k for k in FILTER_FIELDS if k not in frame.columns]
    return frame.assign(**{k: float("nan") for k in missing}) if missing else frame


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


def _blend_copy(base: Any, tuned: Any, alpha: float) -> Any:
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
                    raise ServiceError(
                        f"WiSE-FT needs the base and tuned models in the same layout ({name}: {got}). Pass --wise-base "
                        "with the base weights in the tuned model's format (e.g. hf:openai/clip-vit-base-patch32 for "
                        "an HF CultureCLIP).")
                v = (torch.lerp(b.detach().float(), t.detach().float(), alpha).to(t.dtype)
                     if t.is_floating_point() and name in blend else t.detach().clone())
                memo[id(t)] = torch.nn.Parameter(v, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else v
    return copy.deepcopy(tuned, memo)


def _blank():
    from PIL import Image

    return Image.new("RGB", (32, 32), (128, 128, 128))


def gpu(fn: Callable) -> Callable:
    """`spaces.GPU(fn)` on a ZeroGPU Space (when the `spaces` package imports), else `fn` unchanged."""
    try:
        import spaces  # type: ignore

        return spaces.GPU(fn)
    except Exception:  # noqa: BLE001 - not on a Space
        return fn


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
