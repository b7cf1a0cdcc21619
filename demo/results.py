"""The demo's results: the published ones (a --results folder, a --results-repo dataset repo:
demo.results_sources) and the live evaluation of the loaded models (demo.live_eval), as one tidy frame
(eval_suite.tables) for the Benchmarks tab. Each is built once, under its own lock."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DemoConfig
from .dataset import DemoData
from .live_eval import LiveEvaluator
from .models import Models
from .results_sources import load_published

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FILTER_FIELDS = ("region", "category")  # group fields the benchmarks tab filters on


def with_filter_columns(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The tidy frame with the group-field columns the dashboard filters on (NaN where no result has them).

    eval_suite.tables already gives one column per group field, so nothing is parsed here."""
    missing = [k for k in FILTER_FIELDS if k not in frame.columns]
    return frame.assign(**{k: float("nan") for k in missing}) if missing else frame


class DemoResults:
    """Published results (read once) and the live evaluator (created on first use), thread-safe."""

    def __init__(self, config: DemoConfig, models: Models, data: DemoData):
        self.config = config
        self.models = models
        self.data = data
        self._frame: pd.DataFrame | None = None
        self.error: str | None = None  # owner text (the log); visitors see a plain state
        self.problems: list[str] = []
        self.folders: list[Path] = []  # the folders the published results were read from
        self._lock = threading.Lock()
        self._evaluator: LiveEvaluator | None = None
        self._evaluator_lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.config.results is not None or bool(self.config.results_repo)

    def published(self) -> "pd.DataFrame | None":
        """The tidy results frame (eval_suite.tables) of the published results: the --results folder and the
        --results-repo dataset repo (demo.results_sources); None with the reason in `error`."""
        if self._frame is not None or not self.configured:
            return self._frame
        with self._lock:
            if self._frame is None and self.error is None:
                pub = load_published(self.config.results, self.config.results_repo)
                self.problems, self.folders = pub.problems, pub.folders
                if pub.frame is None:
                    self.error = "; ".join(pub.problems) or "no published results"
                else:
                    self._frame = with_filter_columns(pub.frame)
        return self._frame

    @property
    def evaluator(self) -> LiveEvaluator:
        """The live evaluator of the loaded models on the dataset's test split."""
        if self._evaluator is None:
            with self._evaluator_lock:
                if self._evaluator is None:
                    self._evaluator = LiveEvaluator(self.models, self.data, self.config.cache_dir,  # type: ignore[arg-type]
                                                    batch_size=self.config.batch_size)
        return self._evaluator

    def dashboard_frame(self) -> "pd.DataFrame | None":
        """Published results and the live evaluation's, in one tidy frame (None when neither exists)."""
        import pandas as pd

        frames = []
        bundled = self.published()
        if bundled is not None:
            frames.append(bundled)
        if self._evaluator is not None:
            live = self._evaluator.frame()
            if live is not None and len(live):
                frames.append(with_filter_columns(live))
        if not frames:
            return None
        if len(frames) == 1:
            return frames[0]
        return with_filter_columns(pd.concat(frames, ignore_index=True))
