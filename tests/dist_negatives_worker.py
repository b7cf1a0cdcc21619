"""Worker for tests/test_loss.py: which negatives each softmax sees under `loss.negatives` (global/local).

Launched by the test under 2 processes (gloo). Reads a global batch from ``<in>.safetensors``, takes
this rank's equal share of rows, builds each configured loss the way the trainer does
(`cultureclip.train.create_train_loss` from a `TrainConfig` with ``loss.negatives`` set), and writes,
per setting, the number of caption columns each of its softmaxes saw and its loss to
``<out_dir>/rank<r>.safetensors`` (temp file + os.replace). No pickle anywhere.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cultureclip.loss import LossInputs  # noqa: E402
from cultureclip.train import TrainConfig, create_train_loss  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="safetensors with the global batch")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = load_file(args.input)
    b = data["image_features"].shape[0] // world
    mine = {k: v[rank * b : (rank + 1) * b] for k, v in data.items() if k != "scale"}
    scale = data["scale"].reshape(())
    result = {}
    for negatives in ("global", "local"):
        for name in ("twin", "clip"):
            cfg = TrainConfig()
            cfg.loss.name, cfg.loss.negatives = name, negatives
            loss_fn = create_train_loss(cfg)
            out = loss_fn(mine["image_features"], mine["text_features"], scale, mine["concept_ids"],
                          prompt_features=mine["prompt_features"])
            result[f"{negatives}/{name}/loss"] = out["loss"].detach().reshape(1)
            if name == "twin":  # the caption softmax's columns: the items this rank's rows are contrasted with
                tb = loss_fn.gather_batch(LossInputs(image_features=mine["image_features"],
                                                     text_features=mine["text_features"], logit_scale=scale,
                                                     concept_ids=mine["concept_ids"],
                                                     prompt_features=mine["prompt_features"]))
                result[f"{negatives}/columns"] = torch.tensor([tb.all_txt.shape[0]])
    final = os.path.join(args.out_dir, f"rank{rank}.safetensors")
    save_file({k: v.contiguous() for k, v in result.items()}, final + ".tmp")
    os.replace(final + ".tmp", final)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
