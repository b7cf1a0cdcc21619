"""The dataset index: every model's embeddings of the first `max_index_images` dataset images (search, the twin
explorer, the confusion map), built once per model in a background thread that yields to visitors; a
request never builds it itself, it gets `IndexNotReady` with the progress."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .background import background_thread, is_background
from .config import IndexNotReady, ServiceError
from .dataset import DemoData
from .models import Models, blank_image
from .validation import DemoInputError, load_image

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cultureclip.inference import Embedder

logger = logging.getLogger(__name__)

BACKGROUND_BATCH = 8  # images per background forward: a request waits at most one transformer block of it


class ImageIndex:
    """(N, D) image embeddings of the dataset per model (thread-safe; one lock per model's build).

    before(): called by the background build before it starts (it waits for the full label banks)."""

    def __init__(self, models: Models, data: DemoData, max_images: int, gate: Any, stopping: threading.Event,
                 before: Callable[[], None] = lambda: None):
        self.models = models
        self.data = data
        self.max_images = max_images
        self.gate = gate
        self.stopping = stopping
        self.before = before
        self._indexes: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()  # guards the per-model locks and the thread
        self._model_locks: dict[int, threading.Lock] = {}
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.progress = [0, 0]  # images embedded, images to embed (both models)
        self.error: str | None = None

    def get(self, which: str, wait: bool | None = None) -> "torch.Tensor":
        """(N, D) embeddings of the first `max_images` manifest images, computed once per model.

        Once `start` has run (the app does it at startup), a request never builds the index itself: until the
        background build is done it raises IndexNotReady with the progress. Without a background build
        (library use) the index is built on first use (`wait=True`)."""
        emb = self.models.embedder(which)
        key = id(emb)
        if key in self._indexes:
            return self._indexes[key]
        if not (self._thread is None if wait is None else wait):
            raise IndexNotReady(self.status())
        with self._lock:
            lock = self._model_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._indexes:
                self._indexes[key] = self._embed_dataset(emb)
        return self._indexes[key]

    def start(self) -> None:
        """Embed the dataset images for both models in a background thread (once), so no request waits minutes
        for it; progress is logged and shown by `status`. Without a dataset there is nothing to do."""
        if not self.data.has_dataset:
            self._done.set()
            return
        with self._lock:
            if self._thread is not None:
                return
            n = min(len(self.data.manifest()), self.max_images)
            self.progress = [0, 2 * n]
            self._thread = background_thread(self._run, "index")
            self._thread.start()

    def _run(self) -> None:
        try:
            self.before()  # the full label banks first: every Recognize query needs them
            for which in ("base", "tuned"):
                self.get(which, wait=True)
            logger.info("dataset index ready: %d images per model", self.progress[1] // 2)
        except Exception as e:  # noqa: BLE001 - shown to users by status
            self.error = f"{type(e).__name__}: {e}"
            logger.exception("embedding the dataset images failed")
        finally:
            self._done.set()

    @property
    def busy(self) -> bool:
        """True while a background build runs (other background work waits for it)."""
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background index build has finished (True) or `timeout` seconds passed."""
        return self._done.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def status(self) -> str:
        """A line for users about the dataset index: progress, or why it failed."""
        if self.error:
            return f"Embedding the dataset images failed ({self.error[:200]}); see the server log."
        done, total = self.progress
        pct = 100.0 * done / total if total else 0.0
        return (f"The dataset images are still being embedded for search and the twin explorer: {done:,} of "
                f"{total:,} ({pct:.0f}%). Try again in a moment.")

    def _embed_dataset(self, emb: "Embedder") -> "torch.Tensor":
        import torch

        paths = self.data.manifest().head(self.max_images)["abs_path"].tolist()
        # in the background: small batches, each a point where a visitor's request goes first
        chunk = max(1, min(emb.batch_size, BACKGROUND_BATCH) if is_background() else emb.batch_size)
        step = max(1, len(paths) // 10)
        feats = []
        for i in range(0, len(paths), chunk):
            if self.stopping.is_set() and is_background():
                raise ServiceError("the app is stopping")
            self.gate.pause()
            imgs = [_load_or_blank(p) for p in paths[i : i + chunk]]
            feats.append(emb.embed_images(imgs))
            self.progress[0] += len(imgs)
            if (i // chunk) % max(1, step // chunk) == 0:
                logger.info("embedding dataset images: %d of %d", *self.progress)
        if not feats:
            return torch.empty(0, emb.backbone.embed_dim)
        logger.info("embedded %d dataset images with %s", len(paths), emb.backbone.spec)
        return torch.cat(feats)


def _load_or_blank(path: str):
    try:
        return load_image(path)
    except DemoInputError as e:
        logger.warning("dataset image %s unreadable (%s); using a blank image", path, e)
        return blank_image()
