"""Twin-aware contrastive loss for CultureCLIP (torch only; imports nothing else from the project).

Our reading of the paper (DESIGN.md section 5), with every choice stated here so it can be changed:

* **Caption term** -- symmetric InfoNCE between images and captions, as open_clip's ``ClipLoss``:
  - image rows: columns are all captions of the (global) batch plus the row's *own* twin captions
    (``twin_text_features[i]``). Only the row's own twins are added: a twin caption describes the
    twin concept, which twin-aware batching usually puts in the batch too, so using another item's
    twin caption as a negative would often contradict that concept's own images.
  - caption rows: columns are all images of the batch plus all twin images
    (``twin_image_features``); a twin image whose concept id equals the caption's is masked out.
* **No column twice** -- a twin column that is already a column of the (global) batch adds nothing
  but ``ln 2`` to an existing logit (a reweighting, not information), so it is dropped. Identity is
  by id, never by float equality: ``text_ids`` / ``twin_text_ids`` (e.g. a hash of the caption
  text) for twin captions, the twin's concept id (``twin_concept_ids``) for twin prompts (the batch's
  concept bank already holds every batch concept's prompt), ``image_ids`` / ``twin_image_ids``
  (e.g. the dataset row) for twin images. Repeats within the twin columns are dropped too. Without
  ids nothing can be matched and every real twin slot is used.
* **Positives are by concept id** -- we *mask* (drop from the softmax denominator) every other item
  of the same concept; the target stays the row's own item. We do not use soft targets spread over
  same-concept columns: cross-entropy against a uniform target pushes a same-concept pair apart
  whenever its probability exceeds 1/P, whereas masking makes the gradient with respect to their
  similarity exactly zero -- two images of one concept are never pushed apart. With one image per
  concept and no twins nothing is masked and the term equals open_clip's ``ClipLoss`` exactly.
* **Concept term** -- image rows against the batch's unique concept prompts (one column per concept
  id: the mean of the prompt features of that concept's items, so it does not depend on batch
  order) plus the row's own twin prompts; the target is the image's own concept.
  ``concept_direction`` (config ``loss.concept_direction``): ``image_to_prompt`` (default; like
  zero-shot classification) or ``symmetric``, which averages it with the prompt -> image direction:
  each item's concept prompt as a row against all images of the batch plus the twin images, the
  item's own image as target and the concept's other images masked (as in the caption term). Whether
  the paper's term is symmetric is not stated; the study (``world.study``) ablates both. With prompts
  equal to captions and one image per concept the symmetric term equals open_clip's ``ClipLoss``.
  If ``prompt_features`` is None the term is
  skipped: ``concept_loss`` is reported as 0 and its weight moves to the caption term, so the total
  is ``(w_cap + w_con) * caption_loss`` (= plain CLIP loss with the default 0.7/0.3).
* **Distillation** (``w_keep``) -- keeps general ability: the mean of the two KL divergences
  KL(base || student) between the frozen base model's and the student's image->text and
  text->image softmax distributions over the batch (same logit scale for both unless
  ``base_logit_scale`` is given). Computed whenever both base feature tensors are given.
* **Distributed** -- with ``gather=True`` and an initialised process group of world size > 1,
  images, captions, prompts, concept ids, twin images and base features are all-gathered (with
  gradient, variable sizes allowed) and each rank computes the loss of its *local rows* against the
  *global columns* (open_clip's ``local_loss=True``). Row losses are summed and divided by
  ``global_batch / world_size``, so the mean of the ranks' losses equals the single-process loss on
  the global batch; the all-gather backward sums gradients over ranks, so after DDP's gradient
  averaging the parameter gradient equals the single-process one (each rank's feature gradient is
  ``world_size`` times the single-process gradient, exactly as with open_clip).
  All ranks must pass the same optional tensors (twin images may be empty on some ranks).

Logits are computed in float32 whatever the feature dtype (bf16/fp16 autocast), for stable softmax.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

CONCEPT_DIRECTIONS = ("image_to_prompt", "symmetric")

# What a trainer may build for a loss beyond images and captions (every loss gets those and the logit
# scale). Each loss says which it uses in its ``inputs``, so a trainer encodes nothing it throws away:
#   concept_ids  the items' concept ids (positives by concept)
#   prompts      concept prompt features (the concept term)
#   twin_texts   twin captions and twin prompts, with the ids that drop those already in the batch
#   twin_images  images of the twin concepts
#   base         the frozen base model's image and caption features (distillation)
LOSS_INPUTS = ("concept_ids", "prompts", "twin_texts", "twin_images", "base")

__all__ = [
    "CONCEPT_DIRECTIONS",
    "LOSSES",
    "LOSS_INPUTS",
    "LossInputs",
    "ClipContrastiveLoss",
    "TwinBatch",
    "TwinContrastiveLoss",
    "all_gather_with_grad",
    "create_loss",
]


# --------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------


def _dist_info(gather: bool) -> tuple[int, int]:
    """(rank, world_size) when gathering applies, else (0, 1)."""
    if gather and dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1:
            return dist.get_rank(), world
    return 0, 1


class _AllGatherVar(torch.autograd.Function):
    """All-gather along dim 0 with per-rank sizes; backward sums the gradient over ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        max_n = max(sizes)
        padded = tensor.new_zeros((max_n, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded.contiguous())
        return torch.cat([buf[:n] for buf, n in zip(buffers, sizes)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        # Every rank's loss depends on every rank's features: sum the contributions (gloo has no
        # reduce_scatter, so all_reduce the whole gradient and keep our slice).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def all_gather_with_grad(tensor: Tensor, sizes: list[int], rank: int) -> Tensor:
    """Concatenate every rank's ``tensor`` (rank r holds ``sizes[r]`` rows): (n_r, ...) -> (sum n, ...).

    Gradients flow back to each rank's own rows (summed over ranks). Tensors that do not require
    grad take the same path; autograd simply records nothing.
    """
    return _AllGatherVar.apply(tensor, sizes, rank)


def _gather_sizes(values: list[int], device: torch.device) -> Tensor:
    """All-gather a small int vector per rank -> (world, len(values)). One collective per call."""
    local = torch.tensor(values, dtype=torch.long, device=device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _check_2d(name: str, t: Tensor | None, rows: int | None, dim: int) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != dim or (rows is not None and t.shape[0] != rows):
        want = f"({rows if rows is not None else 'M'}, {dim})"
        raise ValueError(f"{name} must have shape {want} to match image_features; got {tuple(t.shape)}")


def _twin_slots(name: str, feats: Tensor | None, mask: Tensor | None, batch: int, dim: int) -> tuple[Tensor, Tensor] | None:
    """Normalise twin features to (B, T, D) and a (B, T) bool mask (all True when mask is None)."""
    if feats is None:
        return None
    if feats.dim() == 2:
        feats = feats.unsqueeze(1)
    if feats.dim() != 3 or feats.shape[0] != batch or feats.shape[2] != dim:
        raise ValueError(
            f"{name} must have shape ({batch}, {dim}) or ({batch}, T, {dim}) (one row per batch item); "
            f"got {tuple(feats.shape)}"
        )
    slots = feats.shape[1]
    if mask is None:
        mask = torch.ones(batch, slots, dtype=torch.bool, device=feats.device)
    else:
        if mask.dim() == 1:
            mask = mask.unsqueeze(1)
        if tuple(mask.shape) != (batch, slots):
            raise ValueError(f"twin_mask must have shape ({batch},) or ({batch}, {slots}) to match {name}; got {tuple(mask.shape)}")
        mask = mask.to(device=feats.device, dtype=torch.bool)
    return feats, mask


def _slot_ids(name: str, ids: Tensor | None, batch: int, slots: int, device: torch.device) -> Tensor | None:
    """Twin slot identities as (B, T) long, or None."""
    if ids is None:
        return None
    ids = torch.as_tensor(ids, device=device)
    if ids.dim() == 1:
        ids = ids.unsqueeze(1)
    if tuple(ids.shape) != (batch, slots) or ids.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor of shape ({batch},) or ({batch}, {slots}); got {tuple(ids.shape)}")
    return ids.long()


def _drop_repeats(mask: Tensor, ids: Tensor, known: Tensor) -> Tensor:
    """mask (B, T) of real twin slots -> without slots whose id is in ``known`` (K,) or repeats an
    earlier real slot of the same row."""
    keep = mask & ~(ids[:, :, None] == known[None, None, :]).any(-1)
    for t in range(1, ids.shape[1]):
        earlier = (ids[:, t : t + 1] == ids[:, :t]) & keep[:, :t]
        keep[:, t] &= ~earlier.any(1)
    return keep


def _first_new(ids: Tensor, known: Tensor) -> Tensor:
    """(M,) bool: id not in ``known`` and not seen earlier in ``ids``."""
    seen_before = (ids[:, None] == ids[None, :]).tril(diagonal=-1).any(1)
    return ~seen_before & ~(ids[:, None] == known[None, :]).any(1)


def _as_scale(logit_scale: Tensor | float, device: torch.device) -> Tensor:
    scale = torch.as_tensor(logit_scale, device=device)
    if scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar (already exp'd); got shape {tuple(scale.shape)}")
    return scale.reshape(()).float()


# --------------------------------------------------------------------------------------------------
# The typed batch and the gather step (validation, cross-process gather, dropping repeated columns)
# --------------------------------------------------------------------------------------------------


@dataclass
class LossInputs:
    """What a trainer hands the loss for one rank's B items: features, the logit scale and identities.

    One name per idea: ``concept_ids`` (B,) the items' concepts; ``twin_concept_ids`` (B,) or (B, T) the
    concept of each twin prompt slot; ``twin_image_concept_ids`` (M,) the concept of each twin image;
    ``text_ids``/``twin_text_ids`` and ``image_ids``/``twin_image_ids`` identify captions and images so a
    twin column already in the batch is dropped. Shapes: features (B, D); twin text/prompt features
    (B, D) or (B, T, D) with ``twin_mask`` (B,) or (B, T) marking real slots; twin images (M, D); base
    features (B, D_base). ``logit_bias`` (SigLIP-style models) is accepted so ``loss(**model_out)`` works,
    and ignored: a constant shift cancels in the softmax. The field order is ``forward``'s argument order.
    """

    image_features: Tensor
    text_features: Tensor
    logit_scale: Tensor | float
    concept_ids: Tensor | None = None
    prompt_features: Tensor | None = None
    twin_text_features: Tensor | None = None
    twin_prompt_features: Tensor | None = None
    twin_mask: Tensor | None = None
    twin_image_features: Tensor | None = None
    twin_image_concept_ids: Tensor | None = None
    base_image_features: Tensor | None = None
    base_text_features: Tensor | None = None
    base_logit_scale: Tensor | float | None = None
    logit_bias: Tensor | None = None
    text_ids: Tensor | None = None
    twin_text_ids: Tensor | None = None
    twin_concept_ids: Tensor | None = None
    image_ids: Tensor | None = None
    twin_image_ids: Tensor | None = None


@dataclass
class _Local:
    """One rank's inputs after validation, normalised (see ``TwinContrastiveLoss._local_view``)."""

    image_features: Tensor
    text_features: Tensor
    prompt_features: Tensor | None
    concept_ids: Tensor  # (B,) long
    scale: Tensor
    twin_text: tuple[Tensor, Tensor] | None  # (B, T, D), (B, T) bool
    twin_prompt: tuple[Tensor, Tensor] | None
    twin_text_ids: Tensor | None  # (B, T) long
    twin_concept_ids: Tensor | None  # (B, T) long
    twin_image_features: Tensor  # (M, D), possibly empty
    twin_image_concept_ids: Tensor  # (M,) long
    twin_image_ids: Tensor | None  # (M,)
    base_image_features: Tensor | None
    base_text_features: Tensor | None
    text_ids: Tensor | None
    image_ids: Tensor | None
    batch: int
    device: torch.device


@dataclass
class _Columns:
    """The global batch's columns (every rank's items) and where this rank's rows sit among them."""

    img: Tensor
    txt: Tensor
    ids: Tensor
    prompt: Tensor | None
    twin_img: Tensor
    twin_img_ids: Tensor
    base_img: Tensor | None
    base_txt: Tensor | None
    text_ids: Tensor | None
    image_ids: Tensor | None
    twin_image_ids: Tensor | None
    offset: int
    total: int
    world: int


def _check_features(x: LossInputs) -> tuple[int, int]:
    """(B, D) of the batch; every feature's shape and the concept ids checked against it."""
    if x.image_features.dim() != 2:
        raise ValueError(f"image_features must be (B, D); got shape {tuple(x.image_features.shape)}")
    batch, dim = x.image_features.shape
    _check_2d("text_features", x.text_features, batch, dim)
    _check_2d("prompt_features", x.prompt_features, batch, dim)
    _check_2d("twin_image_features", x.twin_image_features, None, dim)
    if (x.base_image_features is None) != (x.base_text_features is None):
        raise ValueError("pass both base_image_features and base_text_features, or neither")
    if x.base_image_features is not None:  # the base model may have another embedding dim
        if x.base_image_features.dim() != 2 or x.base_image_features.shape[0] != batch:
            raise ValueError(f"base_image_features must be ({batch}, D_base); got {tuple(x.base_image_features.shape)}")
        _check_2d("base_text_features", x.base_text_features, batch, x.base_image_features.shape[1])
    ids = x.concept_ids
    if not isinstance(ids, Tensor) or tuple(ids.shape) != (batch,) or ids.is_floating_point():
        raise ValueError(
            f"concept_ids must be an integer tensor of shape ({batch},) (one id per item; map string ids "
            f"to ints first); got {type(ids).__name__} {tuple(getattr(ids, 'shape', ()))}"
        )
    if (x.twin_image_features is None) != (x.twin_image_concept_ids is None):
        raise ValueError("twin_image_features needs twin_image_concept_ids (M,) and vice versa")
    if x.twin_image_features is not None and tuple(x.twin_image_concept_ids.shape) != (x.twin_image_features.shape[0],):
        raise ValueError(
            f"twin_image_concept_ids must have shape ({x.twin_image_features.shape[0]},); "
            f"got {tuple(x.twin_image_concept_ids.shape)}"
        )
    return batch, dim


def _check_ids(x: LossInputs, batch: int, has_twin_text: bool) -> None:
    """The identities that drop repeated twin columns: given in pairs, integer, one per row."""
    if (x.text_ids is None) != (x.twin_text_ids is None) and has_twin_text:
        raise ValueError("pass both text_ids and twin_text_ids (to drop twin captions already in the batch), or neither")
    if (x.image_ids is None) != (x.twin_image_ids is None) and x.twin_image_features is not None:
        raise ValueError("pass both image_ids and twin_image_ids (to drop twin images already in the batch), or neither")
    for name_, ids_ in (("text_ids", x.text_ids), ("image_ids", x.image_ids)):
        if ids_ is not None and (tuple(ids_.shape) != (batch,) or ids_.is_floating_point()):
            raise ValueError(f"{name_} must be an integer tensor of shape ({batch},); got {tuple(ids_.shape)}")
    if x.twin_image_ids is not None and x.twin_image_features is not None and (
            tuple(x.twin_image_ids.shape) != (x.twin_image_features.shape[0],) or x.twin_image_ids.is_floating_point()):
        raise ValueError(f"twin_image_ids must be an integer tensor of shape ({x.twin_image_features.shape[0]},); "
                         f"got {tuple(x.twin_image_ids.shape)}")


def _gather_columns(local: _Local, gather: bool) -> tuple[_Local, _Columns]:
    """The global columns: this rank's own tensors with one process, an all-gather (with gradient) of
    every rank's with several. Returns ``local`` too: with several processes its feature tensors may be
    replaced by ones that require grad (the gather's backward is a collective every rank must run)."""
    rank, world = _dist_info(gather)
    if world == 1:
        def as_long(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(local.device).long()

        return local, _Columns(
            img=local.image_features, txt=local.text_features, ids=local.concept_ids, prompt=local.prompt_features,
            twin_img=local.twin_image_features, twin_img_ids=local.twin_image_concept_ids,
            base_img=local.base_image_features, base_txt=local.base_text_features,
            text_ids=as_long(local.text_ids), image_ids=as_long(local.image_ids),
            twin_image_ids=as_long(local.twin_image_ids), offset=0, total=local.batch, world=1)
    local, sizes, twin_sizes = _align_ranks(local, rank)
    return local, _all_gather_columns(local, sizes, twin_sizes, rank, world)


def _align_ranks(local: _Local, rank: int) -> tuple[_Local, list[int], list[int]]:
    """Exchange each rank's row counts and which optional tensors it has; make the features that any rank
    differentiates require grad on every rank. Returns the local view and the item / twin-image counts."""
    has_prompt, has_base = local.prompt_features is not None, local.base_image_features is not None
    grad_inputs = (local.image_features, local.text_features, local.prompt_features, local.twin_image_features)
    table = _gather_sizes(
        [local.batch, local.twin_image_features.shape[0], int(has_prompt), int(has_base)]
        + [int(t is not None and t.requires_grad) for t in grad_inputs],
        local.device,
    )
    for col, what in ((2, "prompt_features"), (3, "base_image_features/base_text_features")):
        if table[:, col].min() != table[:, col].max():
            raise ValueError(f"{what} must be given on every rank or on none (ranks disagree)")
    # The gather's backward is a collective: every rank must run it if any rank does (e.g. a rank with no
    # twin images while others have some), so align requires_grad across ranks.
    needs_grad = table[:, 4:].amax(dim=0).tolist()
    img, txt, prompt, twin_img = (t.detach().requires_grad_(True) if t is not None and flag and not t.requires_grad else t
                                  for t, flag in zip(grad_inputs, needs_grad))
    local = dataclasses.replace(local, image_features=img, text_features=txt, prompt_features=prompt,
                                twin_image_features=twin_img)
    return local, table[:, 0].tolist(), table[:, 1].tolist()


def _all_gather_columns(local: _Local, sizes: list[int], twin_sizes: list[int], rank: int, world: int) -> _Columns:
    """Every rank's items (and twin images) as the global columns, gathered with gradient."""
    device = local.device
    all_img = all_gather_with_grad(local.image_features, sizes, rank)
    all_txt = all_gather_with_grad(local.text_features, sizes, rank)
    all_ids = all_gather_with_grad(local.concept_ids, sizes, rank)
    all_prompt = all_gather_with_grad(local.prompt_features, sizes, rank) if local.prompt_features is not None else None
    if sum(twin_sizes) > 0:
        all_twin_img = all_gather_with_grad(local.twin_image_features, twin_sizes, rank)
        all_twin_img_ids = all_gather_with_grad(local.twin_image_concept_ids, twin_sizes, rank)
    else:
        all_twin_img, all_twin_img_ids = local.twin_image_features, local.twin_image_concept_ids
    all_base_img = all_base_txt = None
    if local.base_image_features is not None:
        with torch.no_grad():
            all_base_img = all_gather_with_grad(local.base_image_features.detach(), sizes, rank)
            all_base_txt = all_gather_with_grad(local.base_text_features.detach(), sizes, rank)
    # identities (integers, no gradient); every rank passes the same optional ids
    all_text_ids = None if local.text_ids is None else all_gather_with_grad(local.text_ids.to(device).long(), sizes, rank)
    all_image_ids = None if local.image_ids is None else all_gather_with_grad(local.image_ids.to(device).long(), sizes, rank)
    all_twin_image_ids = None
    if local.twin_image_ids is not None:
        all_twin_image_ids = (all_gather_with_grad(local.twin_image_ids.to(device).long(), twin_sizes, rank)
                              if sum(twin_sizes) > 0 else local.twin_image_ids.to(device).long())
    return _Columns(img=all_img, txt=all_txt, ids=all_ids, prompt=all_prompt, twin_img=all_twin_img,
                    twin_img_ids=all_twin_img_ids, base_img=all_base_img, base_txt=all_base_txt, text_ids=all_text_ids,
                    image_ids=all_image_ids, twin_image_ids=all_twin_image_ids, offset=sum(sizes[:rank]),
                    total=sum(sizes), world=world)


def _drop_twin_columns(local: _Local, cols: _Columns) -> tuple[_Local, _Columns]:
    """No column twice: twin caption / prompt slots and twin images that are already columns of the global
    batch (by identity) are dropped from the local twin slots' masks and from the twin image columns."""
    twin_text, twin_prompt = local.twin_text, local.twin_prompt
    if twin_text is not None and local.twin_text_ids is not None:
        twin_text = (twin_text[0], _drop_repeats(twin_text[1], local.twin_text_ids, cols.text_ids))
    if twin_prompt is not None and local.twin_concept_ids is not None:
        twin_prompt = (twin_prompt[0], _drop_repeats(twin_prompt[1], local.twin_concept_ids, cols.ids))
    if cols.twin_image_ids is not None and cols.image_ids is not None and cols.twin_img.shape[0] > 0:
        keep = _first_new(cols.twin_image_ids, cols.image_ids)
        cols = dataclasses.replace(cols, twin_img=cols.twin_img[keep], twin_img_ids=cols.twin_img_ids[keep])
    return dataclasses.replace(local, twin_text=twin_text, twin_prompt=twin_prompt), cols


def _assemble(local: _Local, cols: _Columns) -> TwinBatch:
    """Local rows against global columns, with the same-concept mask (not a negative) and the normaliser."""
    batch, device = local.batch, local.device
    rows = torch.arange(cols.offset, cols.offset + batch, device=device)  # (B,) global index of local rows
    img = local.image_features.float()
    # Same concept but not the item itself: not a negative (masked out of the softmax).
    same = local.concept_ids[:, None] == cols.ids[None, :]  # (B, N)
    same[torch.arange(batch, device=device), rows] = False
    return TwinBatch(
        scale=local.scale, concept_ids=local.concept_ids, img=img, txt=local.text_features.float(),
        scaled_img=local.scale * img, all_img=cols.img, all_txt=cols.txt, all_ids=cols.ids, all_prompt=cols.prompt,
        twin_text=local.twin_text, twin_prompt=local.twin_prompt, twin_img=cols.twin_img, twin_img_ids=cols.twin_img_ids,
        base_img=local.base_image_features, base_txt=local.base_text_features,
        all_base_img=cols.base_img, all_base_txt=cols.base_txt,
        rows=rows, offset=cols.offset, same=same, norm=cols.total / cols.world,
    )


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


@dataclass
class TwinBatch:
    """One rank's view of the global batch after the gather step: local rows, global columns.

    B local items, N global items (N = B with one process), D embedding dim, T twin slots per item,
    M twin images of the global batch left after dropping those already batch columns. Features keep
    their dtype (each term casts to float32 where it uses them); ``img``/``txt``/``scaled_img`` are the
    local rows already in float32, shared by every term so autograd sees one node each.
    """

    scale: Tensor  # () float32, already exp'd
    concept_ids: Tensor  # (B,) long
    img: Tensor  # (B, D) float32 local image rows
    txt: Tensor  # (B, D) float32 local caption rows
    scaled_img: Tensor  # (B, D) scale * img: one multiply serves every image-row logit
    all_img: Tensor  # (N, D) global image columns
    all_txt: Tensor  # (N, D) global caption columns
    all_ids: Tensor  # (N,) global concept ids
    all_prompt: Tensor | None  # (N, D) global prompt features, None: no concept term
    twin_text: tuple[Tensor, Tensor] | None  # (B, T, D) own twin captions, (B, T) bool: slot used
    twin_prompt: tuple[Tensor, Tensor] | None  # (B, T, D) own twin prompts, (B, T) bool: slot used
    twin_img: Tensor  # (M, D) global twin images
    twin_img_ids: Tensor  # (M,) their concept ids
    base_img: Tensor | None  # (B, D_base) local rows of the frozen base model
    base_txt: Tensor | None  # (B, D_base)
    all_base_img: Tensor | None  # (N, D_base)
    all_base_txt: Tensor | None  # (N, D_base)
    rows: Tensor  # (B,) global index of the local rows (the targets)
    offset: int  # global index of the first local row
    same: Tensor  # (B, N) bool: same concept but not the item itself (masked, not a negative)
    norm: float  # global rows / world: sum of local row losses / norm, mean over ranks == global mean

    @property
    def batch(self) -> int:
        return self.img.shape[0]


class TwinContrastiveLoss(nn.Module):
    """Caption + concept contrastive loss with cultural twins as hard negatives (see module doc).

    ``forward`` = ``gather`` (validation, cross-process gather, twin columns already in the batch
    dropped: a ``TwinBatch``) + one method per term: ``caption_logits`` / ``caption_loss``,
    ``concept_loss``, ``distill_loss``.

    Args:
        w_cap: weight of the caption term.
        w_con: weight of the concept term (moves to the caption term when no prompts are given).
        w_keep: weight of the distillation term toward the frozen base model (needs base features).
        gather: all-gather features across processes when torch.distributed runs with world > 1.
        concept_direction: ``image_to_prompt`` or ``symmetric`` (see module doc).
    """

    def __init__(self, w_cap: float = 0.7, w_con: float = 0.3, w_keep: float = 0.0, gather: bool = True,
                 concept_direction: str = "image_to_prompt") -> None:
        super().__init__()
        for name, w in (("w_cap", w_cap), ("w_con", w_con), ("w_keep", w_keep)):
            if not w >= 0:
                raise ValueError(f"{name} must be >= 0; got {w}")
        if w_cap + w_con <= 0:
            raise ValueError("w_cap + w_con must be > 0 (at least one contrastive term must be on)")
        if concept_direction not in CONCEPT_DIRECTIONS:
            raise ValueError(f"concept_direction must be one of {', '.join(CONCEPT_DIRECTIONS)}; got {concept_direction!r}")
        self.w_cap, self.w_con, self.w_keep, self.gather = float(w_cap), float(w_con), float(w_keep), gather
        self.concept_direction = concept_direction

    @property
    def inputs(self) -> frozenset[str]:
        """What a trainer must build for this loss beyond images and captions (see ``LOSS_INPUTS``):
        everything, base features only when the distillation term is on."""
        return frozenset(LOSS_INPUTS) if self.w_keep > 0 else frozenset(LOSS_INPUTS) - {"base"}

    def extra_repr(self) -> str:
        return (f"w_cap={self.w_cap}, w_con={self.w_con}, w_keep={self.w_keep}, gather={self.gather}, "
                f"concept_direction={self.concept_direction}")

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Return ``{"caption_loss", "concept_loss", ["distill_loss"], "loss"}`` (scalars).

        Takes one ``LossInputs`` (the typed batch: shapes and names there) or its fields as arguments,
        so ``loss(**model_out)`` works as with open_clip's losses."""
        x = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], LossInputs) else LossInputs(*args, **kwargs)
        b = self.gather_batch(x)
        # the order of the terms is the order autograd accumulates shared gradients in: keep it
        raw_img, raw_txt = self.caption_logits(b)
        caption_loss = self.caption_loss(b, raw_img, raw_txt)
        if b.all_prompt is not None:
            concept_loss = self.concept_loss(b)
            w_cap, w_con = self.w_cap, self.w_con
        else:  # no prompts: the concept weight moves to the caption term
            concept_loss = caption_loss.new_zeros(())
            w_cap, w_con = self.w_cap + self.w_con, 0.0
        out = {"caption_loss": caption_loss, "concept_loss": concept_loss}
        total_loss = w_cap * caption_loss + w_con * concept_loss
        if b.base_img is not None:
            out["distill_loss"] = self.distill_loss(b, raw_img, raw_txt, x.base_logit_scale)
            total_loss = total_loss + self.w_keep * out["distill_loss"]
        out["loss"] = total_loss
        return out

    # ---- gather step ------------------------------------------------------------------------------

    def gather_batch(self, inputs: LossInputs) -> TwinBatch:
        """Check the inputs, gather the columns across processes and drop twin columns that are already
        columns of the global batch (by identity, not float equality): local rows, global columns."""
        local = self._local_view(inputs)
        local, cols = _gather_columns(local, self.gather)
        return _assemble(*_drop_twin_columns(local, cols))

    def _local_view(self, x: LossInputs) -> _Local:
        """Validate ``x`` (each problem named with its shape) and normalise it: twin slots as (B, T, D) with a
        (B, T) mask, slot ids as (B, T), no twin images as an empty (0, D), integer ids as long."""
        batch, dim = _check_features(x)
        device = x.image_features.device
        scale = _as_scale(x.logit_scale, device)
        twin_text = _twin_slots("twin_text_features", x.twin_text_features, x.twin_mask, batch, dim)
        twin_prompt = _twin_slots("twin_prompt_features", x.twin_prompt_features, x.twin_mask, batch, dim)
        _check_ids(x, batch, twin_text is not None)
        twin_text_ids = _slot_ids("twin_text_ids", x.twin_text_ids, batch, twin_text[0].shape[1], device) if twin_text else None
        twin_concept_ids = (_slot_ids("twin_concept_ids", x.twin_concept_ids, batch, twin_prompt[0].shape[1], device)
                            if twin_prompt else None)
        twin_image_features, twin_image_concept_ids, twin_image_ids = (
            x.twin_image_features, x.twin_image_concept_ids, x.twin_image_ids)
        if twin_image_features is None:
            twin_image_features = x.image_features.new_zeros((0, dim))
            twin_image_concept_ids = x.concept_ids.new_zeros((0,))
            twin_image_ids = None if x.image_ids is None else x.concept_ids.new_zeros((0,))
        self._check_terms(x, twin_prompt is not None)
        return _Local(
            image_features=x.image_features, text_features=x.text_features, prompt_features=x.prompt_features,
            concept_ids=x.concept_ids.to(device=device, dtype=torch.long), scale=scale,
            twin_text=twin_text, twin_prompt=twin_prompt, twin_text_ids=twin_text_ids, twin_concept_ids=twin_concept_ids,
            twin_image_features=twin_image_features,
            twin_image_concept_ids=twin_image_concept_ids.to(device=device, dtype=torch.long),
            twin_image_ids=twin_image_ids, base_image_features=x.base_image_features,
            base_text_features=x.base_text_features, text_ids=x.text_ids, image_ids=x.image_ids,
            batch=batch, device=device)

    def _check_terms(self, x: LossInputs, has_twin_prompt: bool) -> None:
        """The inputs each term on this loss's weights needs."""
        if x.prompt_features is None and has_twin_prompt:
            raise ValueError("twin_prompt_features needs prompt_features (the concept term uses both)")
        if x.prompt_features is None and self.w_cap == 0:
            raise ValueError("w_cap is 0 and prompt_features is None: nothing to train; pass prompt_features")
        if x.base_image_features is None and self.w_keep > 0:
            raise ValueError("w_keep > 0 needs base_image_features and base_text_features from the frozen base model")

    # ---- terms --------------------------------------------------------------------------------------

    @staticmethod
    def caption_logits(b: TwinBatch) -> tuple[Tensor, Tensor]:
        """Unmasked student logits, image -> caption and caption -> image: (B, N) each (the caption
        term masks them; the distillation term compares them with the base's)."""
        raw_img = b.scaled_img @ b.all_txt.float().T  # (B, N)
        raw_txt = b.scale * b.txt @ b.all_img.float().T  # (B, N)
        return raw_img, raw_txt

    @staticmethod
    def _twin_slot_logits(scaled_img: Tensor, twin: tuple[Tensor, Tensor]) -> Tensor:
        """Image rows against their own twin slots: (B, T), unused slots at -inf."""
        feats, mask = twin
        twin_logits = torch.bmm(feats.float(), scaled_img.unsqueeze(2)).squeeze(2)  # (B, T)
        return twin_logits.masked_fill(~mask, float("-inf"))

    @staticmethod
    def _twin_image_logits(b: TwinBatch, rows_scaled: Tensor) -> Tensor:
        """Text rows (already scaled) against all twin images: (B, M), a twin image of the row's own
        concept at -inf (not a negative)."""
        twin_same = b.concept_ids[:, None] == b.twin_img_ids[None, :]
        return (rows_scaled @ b.twin_img.float().T).masked_fill(twin_same, float("-inf"))

    def caption_loss(self, b: TwinBatch, raw_img: Tensor, raw_txt: Tensor) -> Tensor:
        """Symmetric InfoNCE: image rows against all captions + own twin captions (B, N+T); caption
        rows against all images + all twin images (B, N+M); same-concept columns masked."""
        logits_img = raw_img.masked_fill(b.same, float("-inf"))
        if b.twin_text is not None:
            logits_img = torch.cat([logits_img, self._twin_slot_logits(b.scaled_img, b.twin_text)], dim=1)
        logits_txt = raw_txt.masked_fill(b.same, float("-inf"))
        if b.twin_img.shape[0] > 0:
            logits_txt = torch.cat([logits_txt, self._twin_image_logits(b, b.scale * b.txt)], dim=1)
        return (
            F.cross_entropy(logits_img, b.rows, reduction="sum") + F.cross_entropy(logits_txt, b.rows, reduction="sum")
        ) / (2 * b.norm)

    def concept_loss(self, b: TwinBatch) -> Tensor:
        """Image rows against one prompt per concept of the batch (mean of its items' prompts, (U, D))
        + own twin prompts: (B, U+T), target the own concept. ``symmetric`` averages it with the
        prompt -> image direction (B, N+M), target the own image, same-concept images masked."""
        dim = b.img.shape[1]
        uniq, inverse = torch.unique(b.all_ids, return_inverse=True)  # (U,), (N,)
        sums = b.all_prompt.float().new_zeros((uniq.shape[0], dim)).index_add(0, inverse, b.all_prompt.float())
        counts = torch.bincount(inverse, minlength=uniq.shape[0]).to(sums.dtype)
        concept_bank = sums / counts[:, None]  # (U, D): one prompt per concept
        logits_con = b.scaled_img @ concept_bank.T  # (B, U)
        if b.twin_prompt is not None:
            logits_con = torch.cat([logits_con, self._twin_slot_logits(b.scaled_img, b.twin_prompt)], dim=1)
        target = inverse[b.offset : b.offset + b.batch]
        loss = F.cross_entropy(logits_con, target, reduction="sum") / b.norm
        if self.concept_direction == "symmetric":
            own_prompt = b.scale * concept_bank[target]  # (B, D): each item's concept prompt as a row
            logits_p2i = (own_prompt @ b.all_img.float().T).masked_fill(b.same, float("-inf"))
            if b.twin_img.shape[0] > 0:
                logits_p2i = torch.cat([logits_p2i, self._twin_image_logits(b, own_prompt)], dim=1)
            loss = (loss + F.cross_entropy(logits_p2i, b.rows, reduction="sum") / b.norm) / 2
        return loss

    @staticmethod
    def distill_loss(b: TwinBatch, raw_img: Tensor, raw_txt: Tensor, base_logit_scale: Tensor | float | None = None) -> Tensor:
        """Mean of KL(base || student) over image->text and text->image softmaxes of the batch (unmasked
        student logits ``raw_img``/``raw_txt`` (B, N)); the base uses the student's scale unless given."""
        base_scale = b.scale.detach() if base_logit_scale is None else _as_scale(base_logit_scale, b.img.device)
        with torch.no_grad():
            base_img = b.base_img.float()
            base_txt = b.base_txt.float()
            p_img = F.log_softmax(base_scale * base_img @ b.all_base_txt.float().T, dim=1)  # (B, N)
            p_txt = F.log_softmax(base_scale * base_txt @ b.all_base_img.float().T, dim=1)
        q_img = F.log_softmax(raw_img, dim=1)
        q_txt = F.log_softmax(raw_txt, dim=1)
        kl = F.kl_div(q_img, p_img, reduction="sum", log_target=True) + F.kl_div(
            q_txt, p_txt, reduction="sum", log_target=True
        )
        return kl / (2 * b.norm)


class ClipContrastiveLoss(nn.Module):
    """Plain symmetric CLIP InfoNCE (the baseline / ablation): diagonal targets, no twins.

    Takes the same arguments as ``TwinContrastiveLoss`` so a trainer can swap them; concept ids,
    prompts and twin tensors are ignored. Gathers like ``TwinContrastiveLoss`` (local rows, global
    columns), which matches open_clip's ``ClipLoss(local_loss=True, gather_with_grad=True)``.
    """

    # images and captions only: a trainer builds none of LOSS_INPUTS for it
    inputs: frozenset[str] = frozenset()

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = gather

    def forward(self, image_features: Tensor | LossInputs, text_features: Tensor | None = None,
                logit_scale: Tensor | float | None = None, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Return ``{"caption_loss", "loss"}``; image/text features (B, D), or one ``LossInputs``."""
        if isinstance(image_features, LossInputs):
            x = image_features
            image_features, text_features, logit_scale = x.image_features, x.text_features, x.logit_scale
        if image_features.dim() != 2 or text_features.shape != image_features.shape:
            raise ValueError(
                f"image_features and text_features must both be (B, D); got {tuple(image_features.shape)} "
                f"and {tuple(text_features.shape)}"
            )
        batch = image_features.shape[0]
        device = image_features.device
        scale = _as_scale(logit_scale, device)
        rank, world = _dist_info(self.gather)
        if world > 1:
            sizes = _gather_sizes([batch], device)[:, 0].tolist()
            all_img = all_gather_with_grad(image_features, sizes, rank)
            all_txt = all_gather_with_grad(text_features, sizes, rank)
            offset, total = sum(sizes[:rank]), sum(sizes)
        else:
            all_img, all_txt, offset, total = image_features, text_features, 0, batch
        rows = torch.arange(offset, offset + batch, device=device)
        logits_img = scale * image_features.float() @ all_txt.float().T
        logits_txt = scale * text_features.float() @ all_img.float().T
        loss = (F.cross_entropy(logits_img, rows, reduction="sum") + F.cross_entropy(logits_txt, rows, reduction="sum")) / (
            2 * total / world
        )
        return {"caption_loss": loss, "loss": loss}


LOSSES: dict[str, type[nn.Module]] = {"twin": TwinContrastiveLoss, "clip": ClipContrastiveLoss}


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss from the ``LOSSES`` registry by name (``"twin"`` or ``"clip"``)."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for loss {name!r}: {exc}") from None
