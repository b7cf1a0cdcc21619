"""On-disk embedding cache: image features per (model weights, dataset, preprocessing), in safetensors.

A sweep over models x benchmarks embeds each image set once per model; rerunning (a new protocol, a
new metric, `--skip-existing` after a crash) reads the features back instead of running the tower.
Files are safetensors (never pickle) written to a temp name and renamed, so a killed run leaves no
half-written entry. Multi-process runs write one part per rank and the main process merges them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cultureclip.fileio import atomic_path
from cultureclip.image import POLICY_VERSION

logger = logging.getLogger(__name__)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def preprocess_signature(backbone: Any) -> str:
    """Hash of the eval transform (its repr names sizes, crops, mean/std) and the input size.

    Memory addresses in the repr (``<function to_rgb at 0x7f...>``) are dropped: they differ between
    processes, and the key must not (ranks of one run exchange features through it; later runs reuse it).
    """

    text = (f"{getattr(backbone, 'image_size', '')}|{_ADDRESS.sub('', repr(backbone.preprocess_eval))}"
            f"|rgb{POLICY_VERSION}")  # the image policy's pixels change with its version
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_key(model_sha: str, dataset_fingerprint: str, preprocess_sig: str) -> str:
    """File stem of one cache entry."""
    return hashlib.sha256(f"{model_sha}|{dataset_fingerprint}|{preprocess_sig}".encode()).hexdigest()[:24]


class EmbeddingCache:
    """A folder of `<key>.safetensors` files holding `features` (N, D) float32 and `valid` (N,) uint8."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, key: str, part: str = "") -> Path:
        return self.folder / f"{key}{part}.safetensors"

    def load(self, key: str, n_expected: int | None = None, part: str = "") -> tuple["torch.Tensor", np.ndarray] | None:
        """(features, valid) or None when absent/corrupt/stale (wrong row count)."""
        from safetensors.torch import load_file

        p = self.path(key, part)
        if not p.is_file():
            return None
        try:
            t = load_file(str(p))
            feats, valid = t["features"], t["valid"].numpy().astype(bool)
        except Exception as exc:  # a corrupt entry is recomputed, not fatal
            logger.warning("ignoring unreadable cache entry %s: %s", p, exc)
            return None
        if n_expected is not None and feats.shape[0] != n_expected:
            logger.warning("ignoring stale cache entry %s (%d rows, expected %d)", p, feats.shape[0], n_expected)
            return None
        return feats, valid

    def save(self, key: str, features: "torch.Tensor", valid: np.ndarray, metadata: dict[str, Any] | None = None,
             part: str = "") -> Path:
        """Write atomically (`cultureclip.fileio.atomic_path`)."""
        import torch
        from safetensors.torch import save_file


        p = self.path(key, part)
        with atomic_path(p) as tmp:
            save_file({"features": features.float().contiguous(),
                       "valid": torch.as_tensor(np.asarray(valid, dtype=np.uint8))},
                      str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
        return p

    def remove(self, key: str, part: str = "") -> None:
        self.path(key, part).unlink(missing_ok=True)
