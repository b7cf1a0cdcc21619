"""The benchmark adapter base class: where a benchmark lives (local folder, env var, hub snapshot), how
its samples are fingerprinted, and `evaluate` (embed, then score by task shape) returning a typed
`BenchmarkResult`.

The pieces it builds on each have their own module: errors (`errors`), task shapes and the result
(`tasks`), container readers (`readers`), batched embedding (`embedding`) and scoring (`scoring`). The names
this module held before the split are re-exported below for code that imports them from here.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eval_suite.benchmarks.embedding import embed_image_refs
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, show_path
from eval_suite.benchmarks.readers import (
    IMAGE_EXTS,
    WDS_IMAGE_EXTS,
    find_parquet,
    hf_features,
    is_wds_root,
    read_classnames_templates,
    read_lines,
    read_parquet_rows,
    read_wds,
)
from eval_suite.benchmarks.scoring import MAIN_METRIC, SCORERS
from eval_suite.benchmarks.tasks import (
    BenchmarkResult,
    ChoiceData,
    ClassificationData,
    ImageRef,
    RankingData,
    RetrievalData,
    TaskData,
    TwinData,
    image_ref_from_hf,
    null_ref,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTS", "WDS_IMAGE_EXTS", "Benchmark", "BenchmarkError", "BenchmarkNotFoundError", "BenchmarkResult",
           "ChoiceData", "ClassificationData", "ImageRef", "RankingData", "RetrievalData", "TaskData", "TwinData",
           "find_parquet", "hf_features", "image_ref_from_hf", "is_wds_root", "null_ref", "read_classnames_templates",
           "read_lines", "read_parquet_rows", "read_wds", "show_path"]


class Benchmark:
    """One benchmark: where it lives, how to read it, which protocol scores it.

    Subclasses set the class attributes and implement `_load(root)`; scoring is shared by task shape.
    `root` is a local folder in the published layout (a snapshot of the hub repo); when omitted the
    adapter looks at `$<ENV_VAR>` and then downloads `hub_id` with huggingface_hub (if set)."""

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    hub_id: ClassVar[str | None] = None
    hub_alternatives: ClassVar[tuple[str, ...]] = ()  # other hub copies with the same files, tried in turn
    root_options: ClassVar[dict[str, str]] = {}  # option -> extra root name (`--root NAME=PATH` sets the option)
    hub_patterns: ClassVar[tuple[str, ...] | None] = None
    env_var: ClassVar[str] = ""
    protocols: ClassVar[tuple[str, ...]] = ("official",)
    source_hint: ClassVar[str] = ""
    main: ClassVar[str | None] = None  # headline metric when it differs from the task shape's default

    def __init__(self, root: str | os.PathLike | None = None, protocol: str = "official", **options: Any):
        if protocol not in self.protocols:
            raise BenchmarkError(
                f"benchmark {self.name!r} has no protocol {protocol!r}; choose one of {list(self.protocols)}")
        self.root_arg = Path(root).expanduser() if root else None
        self.protocol = protocol
        self.options = options
        self._data: TaskData | None = None
        self._root: Path | None = None
        self.notes: dict[str, Any] = {}  # extra counts reported with the result (e.g. skipped rows)
        self.warnings: list[str] = []  # loud warnings about the data, reported with the result

    # ---------- locating ----------
    def resolve_root(self) -> Path:
        """The local folder holding the benchmark (downloading a hub snapshot when allowed)."""
        if self._root is not None:
            return self._root
        cand = self.root_arg or (Path(os.environ[self.env_var]).expanduser()
                                 if self.env_var and os.environ.get(self.env_var) else None)
        if cand is not None:
            if not cand.exists():
                raise BenchmarkNotFoundError(f"{self.name}: {show_path(cand)} does not exist. {self.how_to_get()}")
            self._root = cand
            return cand
        if self.hub_candidates():
            self._root = self._download()
            return self._root
        raise BenchmarkNotFoundError(f"{self.name}: no data folder given. {self.how_to_get()}")

    def hub_candidates(self) -> list[str]:
        """Hub ids to try: the `hub_id` option when given, else the class's id and its alternatives."""
        if self.options.get("hub_id"):
            return [str(self.options["hub_id"])]
        return [h for h in (self.hub_id, *self.hub_alternatives) if h]

    def how_to_get(self) -> str:
        ids = self.hub_candidates()
        where = ("the Hugging Face dataset " + " or ".join(f"`{h}`" for h in ids)) if ids else "its publisher"
        hint = f" {self.source_hint}" if self.source_hint else ""
        return (f"Get it from {where}{hint}, then point to the folder with "
                f"`--root {self.name}=PATH` or the environment variable {self.env_var}.")

    def _download(self) -> Path:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        errors = []
        for hub_id in self.hub_candidates():
            try:
                if not offline:
                    logger.info("downloading %s from the Hugging Face hub", hub_id)
                return Path(snapshot_download(hub_id, repo_type="dataset", local_files_only=offline,
                                              allow_patterns=list(self.hub_patterns) if self.hub_patterns else None))
            except Exception as exc:  # try the next copy; report all of them below
                errors.append(f"`{hub_id}`: {type(exc).__name__}" + ("" if offline else f": {str(exc)[:200]}"))
        if offline:
            raise BenchmarkNotFoundError(f"{self.name}: HF_HUB_OFFLINE=1 and none of {', '.join(errors)} is in the "
                                         f"local hub cache. {self.how_to_get()}")
        raise BenchmarkNotFoundError(f"{self.name}: could not download {'; '.join(errors)}. {self.how_to_get()}")

    # ---------- reading ----------
    def load(self) -> TaskData:
        """Read the benchmark (cached on the instance) into its task shape."""
        if self._data is None:
            self._data = self._load(self.resolve_root())
            if not self._data.images:
                raise BenchmarkError(f"{self.name}: no samples found under {show_path(self.resolve_root())}")
        return self._data

    def _load(self, root: Path) -> TaskData:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of the samples' identities, protocol and options (keys the embedding cache)."""
        data = self.load()
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.protocol}|{sorted(self.options.items())!r}".encode())
        stats: dict[str, str] = {}
        for ref in data.images:
            h.update(ref.key().encode())
            if ref.path is not None:  # file/archive content changes invalidate the cache too
                if ref.path not in stats:
                    try:
                        st = os.stat(ref.path)
                        stats[ref.path] = f"{st.st_size}:{st.st_mtime_ns}"
                    except OSError:
                        stats[ref.path] = "missing"
                h.update(stats[ref.path].encode())
            h.update(b"\0")
        return h.hexdigest()[:20]

    # ---------- scoring ----------
    @property
    def main_metric(self) -> str:
        return self.main or MAIN_METRIC[type(self.load())]

    def evaluate(self, embedder: Any, image_features: "torch.Tensor | None" = None,
                 valid: np.ndarray | None = None, n_boot: int = 1000, keep_samples: bool = True,
                 **embed_kwargs: Any) -> BenchmarkResult:
        """Score the benchmark with `embedder`.

        Returns a `BenchmarkResult` (the benchmark-side fields of a result file; `result_fields()` are the
        keyword arguments of `eval_suite.results.make_result`, which adds the model's). `image_features`
        (N, D) / `valid` (N,) may come from the runner (cached, multi-process); otherwise images are
        embedded here."""

        data = self.load()
        if image_features is None:
            image_features, valid = embed_image_refs(embedder, data.images, **embed_kwargs)
        import torch

        feats = torch.as_tensor(image_features).float()
        valid = np.ones(len(data.images), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        if len(valid) != len(data.images) or feats.shape[0] != len(data.images):
            raise BenchmarkError(f"{self.name}: got {feats.shape[0]} features / {len(valid)} flags for "
                                 f"{len(data.images)} images (stale cache? delete it)")
        n_bad = int((~valid).sum())
        if n_bad:
            logger.warning("%s: %d unreadable images skipped", self.name, n_bad)
        idx = np.flatnonzero(valid)
        if len(idx) == 0:
            raise BenchmarkError(f"{self.name}: none of the {len(data.images)} images could be read")
        data_ok = data.select(idx)
        feats = feats[torch.as_tensor(idx, dtype=torch.long)]
        out = SCORERS[type(data_ok)](data_ok, feats, embedder, ids=idx, n_boot=n_boot, keep_samples=keep_samples)
        main = self.main_metric if self.main_metric in out["metrics"] else next(iter(out["metrics"]))
        return BenchmarkResult(
            benchmark=self.name, task=self.task, main_metric=main, metrics=out["metrics"],
            n_samples=out["n_samples"], groups=list(out.get("groups") or []), ci=out.get("ci"),
            samples=out.get("samples"),
            skipped={"unreadable_image": n_bad, **{k: v for k, v in self.notes.items() if isinstance(v, int)}},
            extra={"protocol": self.protocol, "n_images": len(data.images), **out.get("extra", {})},
            warnings=list(self.warnings))
