"""Worker for tests/test_loss.py: one rank of a multi-process TwinContrastiveLoss run.

Launched by the test under 2 processes (gloo). Reads the global batch from ``<in>.safetensors``,
takes this rank's rows (per-rank sizes in the file, so ranks may differ), computes the loss with the
features gathered across ranks, backpropagates, and writes this rank's losses and feature gradients
to ``<out_dir>/rank<r>.safetensors`` (temp file + os.replace). No pickle anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cultureclip.loss import ClipContrastiveLoss, TwinContrastiveLoss  # noqa: E402

# Per-item tensors split by "sizes"; twin images split by "twin_sizes".
ITEM_KEYS = (
    "image_features", "text_features", "concept_ids", "prompt_features", "twin_text_features",
    "twin_prompt_features", "twin_mask", "base_image_features", "base_text_features",
    "text_ids", "twin_text_ids", "twin_concept_ids", "image_ids",
)
TWIN_IMAGE_KEYS = ("twin_image_features", "twin_image_concept_ids", "twin_image_ids")
FLOAT_KEYS = (
    "image_features", "text_features", "prompt_features", "twin_text_features", "twin_prompt_features",
    "twin_image_features",
)


def _slice(t: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return t[start : start + sizes[rank]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="safetensors with the global batch")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--world-size", type=int, required=True, help="expected number of processes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != args.world_size:
        raise SystemExit(f"expected world size {args.world_size}, got {world} (launcher did not start the processes)")

    data = load_file(args.input)
    sizes = data.pop("sizes").tolist()
    twin_sizes = data.pop("twin_sizes").tolist()
    weights = data.pop("weights").tolist()
    scale = data.pop("scale").reshape(())
    direction = "symmetric" if "symmetric" in data and bool(data.pop("symmetric").item()) else "image_to_prompt"
    if len(sizes) != world:
        raise SystemExit(f"input was made for {len(sizes)} ranks, running {world}")
    inputs: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        part = _slice(value, twin_sizes if key in TWIN_IMAGE_KEYS else sizes, rank).clone()
        if key in TWIN_IMAGE_KEYS and part.shape[0] == 0:
            continue  # a rank without twin images passes None, as a trainer would
        if key in FLOAT_KEYS:
            part.requires_grad_(True)
        inputs[key] = part
    if "twin_mask" in inputs:
        inputs["twin_mask"] = inputs["twin_mask"].bool()

    loss_fn = TwinContrastiveLoss(w_cap=weights[0], w_con=weights[1], w_keep=weights[2], concept_direction=direction)
    out = loss_fn(logit_scale=scale, **inputs)
    out["loss"].backward()

    # Plain CLIP loss (baseline) too: its distributed result must match as well.
    img = inputs["image_features"].detach().clone().requires_grad_(True)
    txt = inputs["text_features"].detach().clone().requires_grad_(True)
    clip_out = ClipContrastiveLoss()(img, txt, scale)
    clip_out["loss"].backward()

    result = {f"loss/{k}": v.detach().reshape(1) for k, v in out.items()}
    result["loss/clip"] = clip_out["loss"].detach().reshape(1)
    # DDP averages gradients over ranks: the per-rank gradient / world is what the single run sees.
    for key in FLOAT_KEYS:
        if key in inputs and inputs[key].grad is not None:
            result[f"grad/{key}"] = inputs[key].grad / world
    result["grad/clip_image"] = img.grad / world
    result["grad/clip_text"] = txt.grad / world
    result = {k: v.contiguous() for k, v in result.items()}

    final = os.path.join(args.out_dir, f"rank{rank}.safetensors")
    tmp = final + ".tmp"
    save_file(result, tmp)
    os.replace(tmp, final)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
