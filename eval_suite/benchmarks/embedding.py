"""Batched image embedding over `ImageRef`s with a DataLoader that decodes in worker processes.

Decoding and preprocessing (`backbone.preprocess_eval`) run in DataLoader workers while the main
process runs the image tower, so evaluation throughput approaches a bare forward pass. Unreadable
images do not stop a run: they come back as `valid=False` rows (zeros) and are counted by the caller.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

from eval_suite.benchmarks.tasks import ImageRef

logger = logging.getLogger(__name__)


class RefDataset:
    """Map-style dataset: index -> (index, pixels (3, H, W), ok)."""

    def __init__(self, refs: Sequence[ImageRef], transform: Callable, image_size: tuple[int, int]):
        self.refs = refs
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int):
        import torch

        try:
            pixels = self.transform(self.refs[i].open())
            return i, pixels, True
        except Exception as exc:  # unreadable/corrupt/missing image: count and skip, never crash
            logger.debug("unreadable image %d (%s): %s", i, self.refs[i].key()[:80], exc)
            return i, torch.zeros(3, *self.image_size), False


def _backbone(embedder: Any) -> Any:
    bb = getattr(embedder, "backbone", None)
    if bb is None:
        raise TypeError("the embedder must expose `.backbone` (a cultureclip ClipBackbone)")
    return bb


def image_size(backbone: Any) -> tuple[int, int]:
    """A backbone's input size as (height, width)."""
    size = getattr(backbone, "image_size", 224)
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def encode_pixels(embedder: Any, pixels: "torch.Tensor") -> "torch.Tensor":
    """(B, 3, H, W) preprocessed pixels -> (B, D) normalized float32 CPU features."""
    import torch

    fn = getattr(embedder, "embed_pixels", None)
    if callable(fn):
        return fn(pixels).float().cpu()
    bb = _backbone(embedder)
    try:
        device = next(bb.parameters()).device
        dtype = next(bb.parameters()).dtype
    except StopIteration:  # pragma: no cover
        device, dtype = torch.device("cpu"), torch.float32
    with torch.inference_mode():
        feats = bb.encode_image(pixels.to(device=device, dtype=dtype), normalize=True)
    return feats.float().cpu()


def embed_image_refs(embedder: Any, refs: Sequence[ImageRef], batch_size: int | None = None,
                     num_workers: int = 0, progress: bool = True, desc: str = "images",
                     indices: Sequence[int] | None = None,
                     callback: Callable[[int, int], None] | None = None) -> tuple["torch.Tensor", np.ndarray]:
    """Embed `refs` (or only `indices` of them) -> (features (N, D), valid (N,) bool).

    Rows not in `indices` (another process's share) and unreadable images are zero with valid=False.
    callback(done, total), when given, is called after each batch (progress for a UI)."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    bb = _backbone(embedder)
    bs = int(batch_size or getattr(embedder, "batch_size", 64))
    ds = RefDataset(refs, bb.preprocess_eval, image_size(bb))
    sub = Subset(ds, list(indices)) if indices is not None else ds
    loader = DataLoader(sub, batch_size=bs, shuffle=False, num_workers=num_workers,
                        persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None)
    feats: torch.Tensor | None = None
    valid = np.zeros(len(refs), dtype=bool)
    done = 0
    with tqdm(total=len(sub), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for idx, pixels, ok in loader:
            out = encode_pixels(embedder, pixels)
            if feats is None:
                feats = torch.zeros(len(refs), out.shape[1], dtype=torch.float32)
            ok_np = ok.numpy().astype(bool)
            idx_np = idx.numpy()
            feats[idx_np[ok_np]] = out[torch.as_tensor(ok_np)]
            valid[idx_np[ok_np]] = True
            bar.update(len(idx_np))
            done += len(idx_np)
            if callback is not None:
                callback(done, len(sub))
    if feats is None:
        dim = int(getattr(bb, "embed_dim", 0) or 0)
        feats = torch.zeros(len(refs), dim)
    return feats, valid
