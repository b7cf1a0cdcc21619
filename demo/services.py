"""What the demo's handlers need, composed from holders that each do one job and keep their own locks:

- `models` (demo.models.Models): base and CultureCLIP (and the WiSE-FT base), loaded once on first use,
  their disk-cached label banks and the warm start;
- `blends` (demo.blends.Blends): the WiSE-FT blends, precomputed per slider alpha in the background;
- `data` (demo.dataset.DemoData): the dataset folder (or the default one), its manifest and the concepts;
- `index` (demo.index.ImageIndex): the dataset images' embeddings, built in the background;
- `results` (demo.results.DemoResults): the published results and the live evaluation (demo.live_eval).

`DemoServices` is built from a `DemoConfig` without loading anything; `check()` (called by app.py at
startup) validates every configured folder and loads the models so a bad spec fails fast with a clear
message. Its other methods are the handlers' vocabulary, each a line over one holder, plus the few things
that combine two (the concept bank, the confusion atlas, startup and stopping of the background work).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cultureclip.backbone import BackboneError, parse_spec
from eval_suite.confusions import confusion_atlas

from .background import VisitorGate
from .blends import Blends, blend_state_dicts, quantize_alpha  # noqa: F401 - re-exported: the demo's vocabulary
from .config import HUB_BASE, HUB_TUNED, WORLD_DIR, BlendNotReady, DemoConfig, IndexNotReady, ServiceError  # noqa: F401
from .dataset import ConceptInfo, DemoData
from .index import ImageIndex
from .models import ModelHolder, Models
from .results import DemoResults

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from cultureclip.inference import Embedder

    from .live_eval import LiveEvaluator

logger = logging.getLogger(__name__)


class Memo:
    """Values derived once per services object (the confusion table, the atlas), each built under its own lock."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        if key in self._values:
            return self._values[key]
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = build()
        return self._values[key]


class DemoServices:
    """The demo's state holders, composed for the handlers and the UI (lazy and thread-safe)."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self.gate = VisitorGate()  # background work (index, blend banks, live evaluation) yields to requests
        self.stopping = threading.Event()  # stop_background(): background loops end at their next step
        self.models = Models(config, self.gate)
        self.data = DemoData(config, self.models.image_size)
        self.index = ImageIndex(self.models, self.data, config.max_index_images, self.gate, self.stopping,
                                before=self.models.wait_warm_done)
        self.blends = Blends(self.models, self._blend_label_sets, lambda: self.index.busy, self.stopping, self.gate,
                             config.blend_cache_mb)
        self.results = DemoResults(config, self.models, self.data)
        self.memo = Memo()

    # -- startup -----------------------------------------------------------------------------------
    def check(self, load_models: bool = True) -> list[str]:
        """Validate configured folders (and load the models): raise ServiceError on the first problem.

        Returns notes on optional parts that are missing (shown in the log and the UI)."""
        notes = self._check_data()
        if load_models:
            self.base.get()
            self.tuned.get()
            if self.is_default_dataset:
                self.manifest()  # render the default dataset now (cached on disk), not on the first request
                notes.append(f"No --dataset: the twin explorer, confusion map and search use the bundled world's "
                             f"flags and tartans rendered at {self.models.image_size()} px ({self.dataset_root}).")
            if self.has_dataset and not self.config.eval_on_start and self.evaluator.load_cached():
                notes.append("Benchmarks: showing the cached live evaluation of these exact weights.")
        else:  # still fail fast on specs that cannot work: unparsable, or a local folder that is missing
            self._check_specs()
        if self.has_dataset and self.config.eval_on_start:
            self.evaluator.start()  # in the background (loads what it needs); cached results make it instant
            notes.append("Evaluating both models on the dataset's test split in the background, for the Benchmarks tab "
                         "(results cached by weights hash; --no-eval-on-start turns it off).")
        return notes

    def _check_data(self) -> list[str]:
        """The dataset and results folders: ServiceError when one cannot be used, notes when one is missing."""
        cfg, notes = self.config, []
        if cfg.dataset is not None:
            if not cfg.dataset.is_dir():
                raise ServiceError(f"dataset folder {str(cfg.dataset)!r} does not exist; pass --dataset with a CulTwin dataset folder")
            self.manifest()  # raises ServiceError when unreadable
        elif not cfg.default_dataset:
            notes.append("No dataset configured: the twin explorer and search tabs are disabled (pass --dataset).")
        if cfg.results is not None and not cfg.results.is_dir():
            raise ServiceError(f"results folder {str(cfg.results)!r} does not exist; pass --results with a folder of eval JSONs")
        if self.results.configured:
            self.results.published()
            notes += [f"Benchmarks: {p}" for p in self.results.problems]
        else:
            notes.append("No published results (--results DIR or --results-repo owner/name[/folder]): the benchmarks "
                         "tab shows the live evaluation of the loaded models." if self.has_dataset else
                         "No results (--results DIR or --results-repo owner/name[/folder]) and no dataset: the "
                         "benchmarks tab is empty.")
        return notes

    def _check_specs(self) -> None:
        for role, spec in (("base", self.config.base), ("CultureCLIP", self.config.tuned)):
            try:
                ms = parse_spec(str(spec))
            except BackboneError as e:
                raise ServiceError(f"cannot load the {role} model: {e}") from e
            if ms.kind == "local" and not Path(ms.name).is_dir():
                raise ServiceError(f"cannot load the {role} model: model folder {ms.name!r} does not exist")

    def start_indexing(self) -> None:
        """Start the background work (called at app startup): the full catalog label banks (a pending warm
        start), the dataset index (after them), then the WiSE-FT blends' label banks (after the index, unless a
        visitor asks for an alpha). All of it yields to visitors' requests (demo.background)."""
        self.models.start_warm()
        self.index.start()  # waits for the full label banks
        if self.models.loaded:
            self.blends.start()  # waits for the index, unless a visitor asks for an alpha

    def stop_background(self, timeout: float | None = 60) -> None:
        """End the background work (dataset index, blend banks) at its next step and wait for it; what is done
        stays (banks on disk); requests then build what they need themselves."""
        self.stopping.set()
        self.blends.stop(timeout)
        self.index.join(timeout)

    def _blend_label_sets(self) -> list[list[str]]:
        """The label sets precomputed per alpha: the first queries' (warm_start), else the concept prompts."""
        if self.models.warm_labels:
            return self.models.warm_labels
        prompts = self.data.concept_prompts()
        return [prompts] if prompts else []

    # -- models (demo.models, demo.blends) -----------------------------------------------------------
    @property
    def base(self) -> ModelHolder:
        return self.models.base

    @property
    def tuned(self) -> ModelHolder:
        return self.models.tuned

    def embedder(self, which: str) -> "Embedder":
        return self.models.embedder(which)

    def warm_start(self, label_sets: list[list[str]], templates: tuple[str, ...] = ("{}",),
                   first: Sequence[str] | None = None, start: bool = True) -> None:
        self.models.warm_start(label_sets, templates, first, start)

    def starter_prompts(self) -> frozenset[str] | None:
        return self.models.starter_prompts()

    def wait_warm(self, timeout: float | None = None) -> bool:
        return self.models.wait_warm(timeout)

    def wise_available(self) -> tuple[bool, str]:
        return self.blends.available()

    def blended(self, alpha: float, labels: Sequence[str] | None = None, wait: bool | None = None) -> "Embedder":
        return self.blends.blended(alpha, labels, wait)

    # -- dataset and concepts (demo.dataset, demo.index) -----------------------------------------------
    @property
    def has_dataset(self) -> bool:
        return self.data.has_dataset

    @property
    def is_default_dataset(self) -> bool:
        return self.data.is_default_dataset

    @property
    def dataset_root(self) -> Path | None:
        return self.data.root

    def manifest(self) -> "pd.DataFrame":
        return self.data.manifest()

    def concepts(self) -> dict[str, ConceptInfo]:
        return self.data.concepts()

    def twin_pairs(self) -> list[tuple[str, str]]:
        return self.data.twin_pairs()

    def image_pairs(self) -> list[tuple[str, str]]:
        return self.data.image_pairs()

    def image_index(self, which: str, wait: bool | None = None) -> "torch.Tensor":
        return self.index.get(which, wait)

    def wait_index(self, timeout: float | None = None) -> bool:
        return self.index.wait(timeout)

    def concept_bank(self, which_or_embedder) -> tuple[list[str], "torch.Tensor"]:
        """(concept ids, (C, D) prompt embeddings) for every concept, cached by the Embedder."""
        emb = self.embedder(which_or_embedder) if isinstance(which_or_embedder, str) else which_or_embedder
        cs = self.concepts()
        ids = sorted(cs)
        return ids, emb.label_bank([cs[i].prompt for i in ids], ("{}",))

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """A value derived once per services object (e.g. the confusion table); built under its own lock."""
        return self.memo.get(key, build)

    def atlas(self) -> "pd.DataFrame":
        """eval_suite.confusions atlas of every twin pair of the concepts, base vs tuned (computed once)."""
        return self.memo.get("atlas", self._build_atlas)

    def _build_atlas(self) -> "pd.DataFrame":
        names = [self.config.base_name, self.config.tuned_name]
        if names[0] == names[1]:
            names = [f"{names[0]} (base)", f"{names[1]} (tuned)"]
        return confusion_atlas({names[0]: self.base.get(), names[1]: self.tuned.get()}, self.concepts(),
                               self.twin_pairs())

    # -- results (demo.results, demo.live_eval) --------------------------------------------------------
    @property
    def evaluator(self) -> "LiveEvaluator":
        return self.results.evaluator

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
        elif self.is_default_dataset and self.data.root_ready:
            parts.append(f"dataset: the bundled world's flags and tartans, rendered at {self.models.image_size()} px")
        text = " · ".join(parts)
        if c.offline_world:
            return (
                "⚠️ **Offline twin world.** No model hub is reachable, so this app shows the bundled offline "
                "world: small CLIP models trained on procedurally rendered flags and tartans (cultural twins that "
                "differ in small details), not the paper's ViT-B/32 models or real photographs.<br>" + text
            )
        return text


def gpu(fn: Callable) -> Callable:
    """`spaces.GPU(fn)` on a ZeroGPU Space (when the `spaces` package imports), else `fn` unchanged."""
    try:
        import spaces  # type: ignore

        return spaces.GPU(fn)
    except Exception:  # noqa: BLE001 - not on a Space
        return fn
