"""The demo's models: base and CultureCLIP (and a separate WiSE-FT base), each loaded once on first use, and
their label banks (disk-cached), with the warm start that embeds the first queries' banks.

`Models` holds one `ModelHolder` per model and the warm-start state under its own lock; it knows nothing
of the dataset, the blends or the results (demo.services composes them)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cultureclip.backbone import BackboneError, create_backbone, default_device
from cultureclip.bankcache import BankCache, DiskCachedEmbedder
from cultureclip.inference import Embedder

from .background import background_thread
from .config import DemoConfig, ServiceError

if TYPE_CHECKING:  # pragma: no cover
    from cultureclip.inference import Embedder

logger = logging.getLogger(__name__)


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
            return DiskCachedEmbedder(bb, self.bank_cache, batch_size=self.batch_size)
        return Embedder(bb, batch_size=self.batch_size)


def blank_image():
    """A small grey image: a model's first image forward (several times slower than the next ones) on it."""
    from PIL import Image

    return Image.new("RGB", (32, 32), (128, 128, 128))


class Models:
    """The base and tuned models (and the WiSE-FT base), their names, and the warm start of their label banks."""

    def __init__(self, config: DemoConfig, gate: Any):
        c = config
        self.names = {"base": c.base_name, "tuned": c.tuned_name}
        self.specs = {"base": c.base, "tuned": c.tuned}
        self.bank_cache = BankCache(c.cache_dir / "label_banks", c.bank_cache_mb << 20)  # type: ignore[operator]
        self.base = ModelHolder(c.base, c.device, c.batch_size, "base", self.bank_cache, gate)
        self.tuned = ModelHolder(c.tuned, c.device, c.batch_size, "tuned (CultureCLIP)", self.bank_cache, gate)
        if c.wise_base and c.wise_base != c.base:
            self.wise_base = ModelHolder(c.wise_base, c.device, c.batch_size, "WiSE-FT base", gate=gate)
        else:
            self.wise_base = self.base
        self._lock = threading.Lock()  # guards the warm-start fields below
        self.warm_labels: list[list[str]] = []  # label sets of the first queries (warm_start): precomputed per alpha
        self._starter: frozenset[str] | None = None  # warm_first's prompts: ranked until the full banks are ready
        self._warm_done = threading.Event()  # cleared while the full label banks embed in the background
        self._warm_done.set()
        self._warm_thread: threading.Thread | None = None

    def embedder(self, which: str) -> "Embedder":
        if which == "base":
            return self.base.get()
        if which == "tuned":
            return self.tuned.get()
        raise ValueError(f"which must be 'base' or 'tuned', got {which!r}")

    @property
    def loaded(self) -> bool:
        return self.base.loaded and self.tuned.loaded

    def image_size(self) -> int:
        """The models' input resolution (the larger of the two): the default dataset is rendered at it."""
        sizes = []
        for holder in (self.base, self.tuned):
            size = holder.get().backbone.image_size
            sizes.append(int(max(size)) if isinstance(size, (tuple, list)) else int(size))
        return max(sizes)

    # -- warm start: the first queries' label banks ------------------------------------------------------
    def warm_start(self, label_sets: list[list[str]], templates: tuple[str, ...] = ("{}",),
                   first: Sequence[str] | None = None, start: bool = True) -> None:
        """Embed the label banks the first queries need, for both models (read from the disk cache when this
        model and label set were seen before). Progress goes to the log.

        first: a small set of catalog prompts (the example gallery's concepts and their twins) embedded now;
        `label_sets` then continue in a background thread that yields to visitors, and until they are done
        Recognize ranks the catalog labels among `first` only and says so (`starter_prompts`, `wait_warm`).
        start=False: the background part waits for `start_warm()` (the app renders the default dataset and builds
        its page first, then `start_indexing` starts it: on 2 cores, torch next to them slows both down ~2x).
        Without `first`, everything is embedded before this returns."""
        self.warm_labels = [list(labels) for labels in label_sets if labels]
        if first is not None:
            self._warm_done.clear()
            self.warm_first(first, templates)
            self._warm_thread = background_thread(lambda: self._warm_all(label_sets, templates), "label-banks")
            if start:
                self.start_warm()
            return
        t0 = time.perf_counter()
        jobs = [(role, holder, labels) for role, holder in (("base", self.base), ("CultureCLIP", self.tuned))
                for labels in label_sets if labels]
        for i, (role, holder, labels) in enumerate(jobs, 1):
            logger.info("warm start %d/%d: %s label bank, %d labels", i, len(jobs), role, len(labels))
            holder.get().label_bank(labels, templates)
        self._first_forward()
        logger.info("warm start done in %.1f s: the first query is as fast as a warm one", time.perf_counter() - t0)

    def _first_forward(self) -> None:
        for holder in (self.base, self.tuned):  # the first image forward of a process is several times slower
            holder.get().embed_images([blank_image()])

    def warm_first(self, prompts: Sequence[str], templates: tuple[str, ...] = ("{}",)) -> None:
        """Embed a small starter bank (`prompts`, added to the current one) for both models now: what Recognize
        ranks among the catalog's labels until the full banks of `warm_start(..., first=...)` are ready."""
        t0 = time.perf_counter()
        with self._lock:
            have = self._starter or frozenset()
            starter = sorted(have | set(prompts))
        if set(starter) == have and have:
            return
        for holder in (self.base, self.tuned):
            holder.get().label_bank(starter, templates)
        self._first_forward()
        with self._lock:
            self._starter = frozenset(starter)
        logger.info("first label banks ready in %.1f s: %d catalog labels (the examples' concepts and their twins); "
                    "the full catalog continues in the background", time.perf_counter() - t0, len(starter))

    def start_warm(self) -> None:
        """Start the background part of `warm_start(..., first=..., start=False)` (once)."""
        with self._lock:
            t, self._warm_thread = self._warm_thread, None
        if t is not None:
            t.start()

    def _warm_all(self, label_sets: list[list[str]], templates: tuple[str, ...]) -> None:
        try:
            self.warm_start(label_sets, templates)
        except Exception:  # noqa: BLE001 - requests then embed the banks themselves
            logger.exception("embedding the full catalog label banks failed; requests embed them on demand")
        finally:
            with self._lock:
                self._starter = None
            self._warm_done.set()

    def starter_prompts(self) -> frozenset[str] | None:
        """The catalog prompts Recognize ranks while the full label banks are still embedding; None once they
        are ready (or when the app embeds them all before serving)."""
        return None if self._warm_done.is_set() else self._starter

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until the full label banks of a background warm start are ready (True) or `timeout` passed
        (starting them if they still wait for `start_warm`)."""
        self.start_warm()
        return self._warm_done.wait(timeout)

    def wait_warm_done(self) -> None:
        """Block until the full label banks are ready, without starting them (the dataset index waits for them)."""
        self._warm_done.wait()
