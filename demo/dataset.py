"""The demo's dataset and its concepts: the CulTwin manifest (the --dataset folder, or without it the bundled
world's concepts rendered at the models' resolution), and the concepts enriched by the catalog, with their
twin pairs. Each is read once, under its own lock; nothing here loads a model (the default dataset's
resolution comes from a callable)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cultureclip.data import ManifestError, read_manifest, twin_pairs, twins_by_concept
from synth.catalog import DATA_DIR, load_catalog
from synth.world import CATALOG_PATH
from synth.world.dataset import ensure_world_dataset

from .config import DemoConfig, ServiceError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)


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


class DemoData:
    """The dataset folder, its manifest and the concepts (thread-safe, each built once on first use).

    image_size(): the resolution the default dataset is rendered at (the models' input size)."""

    def __init__(self, config: DemoConfig, image_size: Callable[[], int]):
        self.config = config
        self.image_size = image_size
        self._root: Path | None = None
        self._root_lock = threading.Lock()
        self._manifest: pd.DataFrame | None = None
        self._manifest_lock = threading.Lock()
        self._concepts: dict[str, ConceptInfo] | None = None
        self._concepts_lock = threading.Lock()

    @property
    def has_dataset(self) -> bool:
        return self.config.dataset is not None or self.config.default_dataset

    @property
    def is_default_dataset(self) -> bool:
        """True when no dataset was configured and the world's concepts are rendered for these models."""
        return self.config.dataset is None and self.config.default_dataset

    @property
    def root_ready(self) -> bool:
        """The dataset folder is known without rendering anything (configured, or the default one rendered)."""
        return not self.is_default_dataset or self._root is not None

    @property
    def root(self) -> Path | None:
        """The dataset folder: the configured one, or the default one (rendered on first use, then cached)."""
        if not self.is_default_dataset:
            return self.config.dataset
        if self._root is None:
            with self._root_lock:
                if self._root is None:
                    self._root = self._render_default()
        return self._root

    def _render_default(self) -> Path:
        try:
            return ensure_world_dataset(self.config.cache_dir / "datasets", self.image_size())  # type: ignore[operator]
        except ServiceError:
            raise
        except Exception as e:  # noqa: BLE001 - one clear line (no server path) instead of a traceback
            logger.exception("default dataset build failed in %s", self.config.cache_dir)
            raise ServiceError(f"cannot build the default dataset ({type(e).__name__}); set CULTURECLIP_CACHE (or "
                               "--cache-dir) to a writable folder, or pass --dataset. Details are in the server "
                               "log.") from e

    # -- the manifest --------------------------------------------------------------------------------
    @property
    def manifest_loaded(self) -> bool:
        return self._manifest is not None

    def manifest(self) -> "pd.DataFrame":
        """The CulTwin manifest (validated), with `abs_path` (resolved, inside the dataset folder)."""
        if self._manifest is None:
            with self._manifest_lock:
                if self._manifest is None:
                    self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> "pd.DataFrame":
        root = self.root
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

    # -- the concepts --------------------------------------------------------------------------------
    def concepts(self) -> dict[str, ConceptInfo]:
        """Concepts of the dataset (or of the catalog when there is no dataset), by id."""
        if self._concepts is None:
            with self._concepts_lock:
                if self._concepts is None:
                    self._concepts = self._build_concepts()
        return self._concepts

    def concept_prompts(self) -> list[str]:
        """Every concept's prompt, in concept-id order (the concept bank's labels)."""
        cs = self.concepts()
        return [cs[i].prompt for i in sorted(cs)]

    def twin_pairs(self) -> list[tuple[str, str]]:
        """Each twin pair once as (smaller id, larger id), sorted."""
        cs = self.concepts()
        return sorted({tuple(sorted((c.id, t))) for c in cs.values() for t in c.twins})  # type: ignore[misc]

    def image_pairs(self) -> list[tuple[str, str]]:
        """The twin pairs with images of both concepts in the dataset (what the twin explorer can show)."""
        present = set(self.manifest()["concept_id"].astype(str))
        return [(a, b) for a, b in self.twin_pairs() if a in present and b in present]

    def _load_catalog(self):
        try:
            if self.config.catalog:
                return load_catalog(self.config.catalog, include_generated=True)
            ds = self.config.dataset
            if ds is not None and (ds / "catalog").is_dir():
                return load_catalog(ds / "catalog", include_generated=True)
            if self.is_default_dataset:  # the curated catalog + the world's concepts (the default dataset's)
                return load_catalog([DATA_DIR, CATALOG_PATH])
            return load_catalog()
        except Exception as e:  # noqa: BLE001 - the catalog only adds detail; the manifest suffices
            logger.warning("concept catalog not available (%s: %s); using the dataset manifest only",
                           type(e).__name__, str(e)[:200])
            return None

    def _build_concepts(self) -> dict[str, ConceptInfo]:
        only_dataset = self.config.dataset is not None  # the default dataset's concepts are all in the catalog
        out = self._manifest_concepts() if only_dataset else {}
        catalog = self._load_catalog()
        for c in catalog if catalog is not None else ():
            if only_dataset and c.id not in out:
                continue
            info = out.get(c.id)
            twins = {t.id: t.distinguishing for t in c.twins}
            if info is None:
                out[c.id] = ConceptInfo(c.id, c.name, c.culture, c.culture_name, c.region, c.category,
                                        catalog.concept_prompt(c.id), c.context, list(c.features), twins)
                continue
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

    def _manifest_concepts(self) -> dict[str, ConceptInfo]:
        df = self.manifest()
        twins_of = twins_by_concept(twin_pairs(df["concept_id"], df["twin_concept_ids"]))
        out: dict[str, ConceptInfo] = {}
        for row in df.drop_duplicates("concept_id").itertuples(index=False):
            cid = str(row.concept_id)
            out[cid] = ConceptInfo(
                id=cid, name=str(row.concept_name), culture=str(row.culture), culture_name=str(row.culture),
                region=str(row.region), category=str(row.category), prompt=str(row.concept_prompt),
                twins={t: "" for t in sorted(twins_of.get(cid, ()))},
            )
        return out
