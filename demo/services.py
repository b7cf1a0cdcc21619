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
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

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


class ServiceError(RuntimeError):
    """A configured model, folder or file cannot be used; the message says what and how to fix it."""


class IndexNotReady(ServiceError):
    """The dataset images are still being embedded in the background; the message gives the progress."""


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
    blend_cache_mb: int = 2048  # memory for cached WiSE-FT blends (all 11 slider alphas of a small model fit)
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
                 bank_cache: Any = None):
        self.spec = spec
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

        self.bank_cache = BankCache((config.cache_dir or default_cache_dir()) / "label_banks", config.bank_cache_mb << 20)
        self.base = ModelHolder(config.base, config.device, config.batch_size, "base", self.bank_cache)
        self.tuned = ModelHolder(config.tuned, config.device, config.batch_size, "tuned (CultureCLIP)", self.bank_cache)
        if config.wise_base and config.wise_base != config.base:
            self.wise_base = ModelHolder(config.wise_base, config.device, config.batch_size, "WiSE-FT base")
        else:
            self.wise_base = self.base
        self._lock = threading.RLock()
        self._blends: OrderedDict[float, Embedder] = OrderedDict()
        self._blend_lock = threading.Lock()  # guards the cache (held briefly)
        self._blend_build_lock = threading.Lock()  # one blend is built at a time; concurrent misses wait for it
        self._blend_cache_size: int | None = None  # set from blend_cache_mb once the model size is known
        self._wise_status: tuple[bool, str] | None = None
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

    def blended(self, alpha: float) -> "Embedder":
        """The WiSE-FT model at `alpha` (0 = base, 1 = CultureCLIP), cached per quantized alpha.

        Blends are built one at a time under a lock (concurrent requests for a missing alpha wait for one
        build instead of each copying the model); the cache holds every alpha the slider can produce when
        they fit in `blend_cache_mb`, else the most recently used ones."""
        a = quantize_alpha(alpha)
        if a >= 1.0:
            return self.tuned.get()
        ok, note = self.wise_available()
        if not ok:
            raise ServiceError(note)
        if a <= 0.0 and self.wise_base is self.base:
            return self.base.get()
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

    @property
    def blend_cache_size(self) -> int:
        """How many blends are kept: all slider alphas (at most 10 besides CultureCLIP) within the memory budget."""
        if self._blend_cache_size is None:
            n_alphas = int(round(1 / ALPHA_STEP)) + (0 if self.wise_base is self.base else 1) - 1
            bb = self.tuned.get().backbone
            model_mb = sum(t.numel() * t.element_size() for t in bb.state_dict().values()) / 2**20
            self._blend_cache_size = max(1, min(n_alphas, int(self.config.blend_cache_mb // max(model_mb, 1e-6))))
        return self._blend_cache_size

    def _build_blend(self, a: float) -> "Embedder":
        from cultureclip.inference import Embedder

        tuned = self.tuned.get()
        base = self.wise_base.get()
        if base.backbone.kind != tuned.backbone.kind:
            raise ServiceError(
                f"WiSE-FT cannot blend a {base.backbone.kind} base with a {tuned.backbone.kind} CultureCLIP; "
                "pass --wise-base with the base weights in the tuned model's format."
            )
        state = blend_state_dicts(base.backbone.state_dict(), tuned.backbone.state_dict(), a)
        bb = copy.deepcopy(tuned.backbone)
        bb.load_state_dict(state)
        del state
        bb.eval()
        logger.info("built the WiSE-FT blend at alpha=%.1f", a)
        return Embedder(bb, batch_size=tuned.batch_size)

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
        request waits minutes for it; progress is logged and shown by `index_status`."""
        if not self.has_dataset:
            self._index_done.set()
            return
        with self._lock:
            if self._index_thread is not None:
                return
            n = min(len(self.manifest()), self.config.max_index_images)
            self._index_progress = [0, 2 * n]
            self._index_thread = threading.Thread(target=self._index_all, name="cultureclip-index", daemon=True)
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

        df = self.manifest().head(self.config.max_index_images)
        feats = []
        chunk = max(1, emb.batch_size)
        paths = df["abs_path"].tolist()
        step = max(1, len(paths) // 10)
        for i in range(0, len(paths), chunk):
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
