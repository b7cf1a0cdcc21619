"""Label banks on disk: a layer over `Embedder.label_bank` so a restarted app (or a second process)
does not re-embed the same 429 catalog prompts.

A bank is stored as one safetensors file named by sha256(weights hash, templates, labels), where the
weights hash covers every parameter and buffer of the backbone plus its tokenizer's output on a probe
text, so different weights or tokenizers never share a bank. Writes are atomic (cultureclip.fileio)
and the folder is bounded: the least recently used files are removed past `max_bytes`.

    cache = BankCache(default_cache_dir() / "label_banks")
    emb = DiskCachedEmbedder(backbone, cache)     # an Embedder; label_bank() reads/writes the cache
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from .backbone import ClipBackbone
from .checkpoint import checkpoint_sha
from .fileio import atomic_write_bytes
from .inference import Embedder, check_templates

logger = logging.getLogger(__name__)

SUFFIX = ".safetensors"
PROBE_TEXT = "a photo of gyoza, 餃子 🥟, jiaozi and momo."


def default_cache_dir() -> Path:
    """CULTURECLIP_CACHE, else ~/.cache/cultureclip (on a Space: point it at persistent storage, /data/...)."""
    return Path(os.environ.get("CULTURECLIP_CACHE") or Path.home() / ".cache" / "cultureclip")


def weights_hash(backbone: ClipBackbone) -> str:
    """The weights hash results use (`cultureclip.checkpoint.checkpoint_sha`), joined with the backbone's kind,
    context length and its tokenizer's ids for a probe text (a bank depends on the tokenizer too)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{backbone.kind}|ctx={backbone.context_length}|{checkpoint_sha(backbone)}".encode())
    h.update(backbone.tokenize([PROBE_TEXT]).cpu().numpy().tobytes())
    return h.hexdigest()


class BankCache:
    """A bounded folder of label banks, one safetensors file each."""

    def __init__(self, folder: str | Path, max_bytes: int = 256 << 20):
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)

    @staticmethod
    def key(weights: str, labels: Sequence[str], templates: Sequence[str]) -> str:
        h = hashlib.sha256(f"bank-v1|{weights}".encode())
        for t in templates:
            h.update(b"\x00T" + t.encode())
        for label in labels:
            h.update(b"\x00L" + label.encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    def load(self, key: str, n_labels: int) -> torch.Tensor | None:
        """The (n_labels, D) bank, or None when absent or unreadable (a damaged file is removed)."""
        p = self.path(key)
        if not p.is_file():
            return None
        from safetensors.torch import load_file

        try:
            bank = load_file(str(p))["bank"]
            if bank.ndim != 2 or bank.shape[0] != n_labels:
                raise ValueError(f"shape {tuple(bank.shape)}, expected ({n_labels}, D)")
        except Exception as e:  # noqa: BLE001 - a cache miss, never an error
            logger.warning("label bank cache file %s unusable (%s); recomputing", p.name, e)
            p.unlink(missing_ok=True)
            return None
        try:
            os.utime(p)  # recently used: pruned last
        except OSError:
            pass
        return bank

    def save(self, key: str, bank: torch.Tensor, meta: dict[str, str] | None = None) -> None:
        """Write atomically, then prune. Failures (read-only or full disk) are logged, not raised."""
        from safetensors.torch import save

        try:
            data = save({"bank": bank.detach().float().cpu().contiguous()}, metadata=meta or {})
            atomic_write_bytes(self.path(key), data)
            self.prune()
        except OSError as e:
            logger.warning("cannot write the label bank cache in %s (%s); continuing without it", self.folder, e)

    def prune(self) -> None:
        """Remove the least recently used banks until the folder holds at most max_bytes."""
        files = []
        for p in self.folder.glob(f"*{SUFFIX}"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(f[1] for f in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size


class DiskCachedEmbedder(Embedder):
    """An `Embedder` whose label banks of at least `min_labels` labels are also kept in a `BankCache`.

    Small banks (a search query, a few typed labels) stay in memory only: they are cheap to embed and
    would only churn the folder. A bank whose labels are all rows of a bank already in memory (the same
    catalog prompts in another order) is gathered from it instead of re-embedded."""

    def __init__(self, backbone: ClipBackbone, cache: BankCache, min_labels: int = 16,
                 weights_key: str | None = None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.cache = cache
        self.min_labels = int(min_labels)
        self._weights_hash: tuple[int, str] | None = None  # (weights fingerprint, hash)
        if weights_key is not None:
            # the caller names these weights (e.g. a WiSE-FT blend: hash of its two models' hashes + alpha), which
            # spares a full pass over them; it holds while the weights stay as they are now
            self._weights_hash = (self.weights_fingerprint(), f"key:{weights_key}")
        # cache key -> (weights hash, templates, label -> row, bank)
        self._big: OrderedDict[str, tuple[str, tuple[str, ...], dict[str, int], torch.Tensor]] = OrderedDict()

    @property
    def weights_hash(self) -> str:
        """`weights_hash(self.backbone)`, recomputed exactly when `weights_fingerprint()` changes (any write to
        the weights, `.data` writes included; ~0.3 ms per call); the full weights hash inside is `checkpoint_sha`'s,
        memoized per model by the same detector, so the app's startup hashes each model's weights once for the
        label banks and the live evaluation together."""
        fingerprint = self.weights_fingerprint()
        with self._lock:
            memo = self._weights_hash
        if memo is not None and memo[0] == fingerprint:
            return memo[1]
        h = weights_hash(self.backbone)
        with self._lock:
            self._weights_hash = (fingerprint, h)
        return h

    def invalidate(self) -> None:
        super().invalidate()
        with self._lock:
            self._weights_hash = None
            self._big.clear()

    def _gather(self, weights: str, labels: list[str], templates: tuple[str, ...]) -> tuple[torch.Tensor, int] | None:
        """The bank from the rows of a bank in memory with these weights and templates, embedding only the labels
        it lacks (when it has at least half of them: typed labels added to the catalog's). Returns (bank, number
        of labels embedded), or None. Rows are independent of each other, so the result equals a fresh bank."""
        with self._lock:
            entries = list(self._big.values())
        best, best_hits = None, 0
        for w, tpl, index, bank in entries:
            if w == weights and tpl == templates:
                hits = sum(label in index for label in labels)
                if hits == len(labels):
                    return bank[torch.tensor([index[label] for label in labels], dtype=torch.long)], 0
                if hits > best_hits:
                    best, best_hits = (index, bank), hits
        if best is None or 2 * best_hits < len(labels):
            return None
        index, bank = best
        missing = list(dict.fromkeys(label for label in labels if label not in index))
        extra = Embedder.label_bank(self, missing, list(templates))
        at = {label: i for i, label in enumerate(missing)}
        rows = [bank[index[label]] if label in index else extra[at[label]] for label in labels]
        return torch.stack(rows), len(missing)

    def bank_ready(self, labels: Sequence[str], templates: Sequence[str] = ("{}",)) -> bool:
        """True when `label_bank(labels, templates)` embeds nothing: the bank is in memory or on disk."""
        labels = [str(label) for label in labels]
        if len(labels) < self.min_labels:
            return False
        tpl = tuple(templates) or ("{}",)
        key = self.cache.key(self.weights_hash, labels, tpl)
        with self._lock:
            if key in self._big:
                return True
        return self.cache.path(key).is_file()

    def label_bank(self, labels: Sequence[str], templates: Sequence[str] = ("{}",)) -> torch.Tensor:
        labels = list(labels)
        if len(labels) < self.min_labels:
            return super().label_bank(labels, templates)
        tpl = tuple(check_templates(templates)) or ("{}",)
        weights = self.weights_hash
        key = self.cache.key(weights, labels, tpl)
        with self._lock:
            if key in self._big:
                self._big.move_to_end(key)
                return self._big[key][3].clone()  # a copy, as Embedder.label_bank returns
        t0 = time.perf_counter()
        bank, source = self.cache.load(key, len(labels)), "disk cache"
        if bank is None:
            gathered = self._gather(weights, labels, tpl)
            if gathered is None:
                bank, source = super().label_bank(labels, list(tpl)), "embedded"
            else:
                bank, source = gathered[0], f"rows of a cached bank + {gathered[1]} embedded"
            self.cache.save(key, bank, {"weights": weights, "n_labels": str(len(labels)),
                                        "templates": json.dumps(list(tpl), ensure_ascii=False)})
        logger.info("label bank of %d labels x %d templates for %s: %s in %.1f s", len(labels), len(tpl),
                    self.backbone.spec, source, time.perf_counter() - t0)
        index: dict[str, int] = {}
        for i, label in enumerate(labels):
            index.setdefault(label, i)
        with self._lock:
            self._big[key] = (weights, tpl, index, bank)
            while len(self._big) > self._bank_cache_size:
                self._big.popitem(last=False)
        return bank.clone()
