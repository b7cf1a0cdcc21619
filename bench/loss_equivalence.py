"""Refactor check for cultureclip/loss.py: loss values and gradients of two versions, bit for bit.

Loads each `loss.py` as its own module and runs both on the same 60 seeded random cases (one to eight
items, one to three twin slots with masks, ids that drop repeated columns, twin images, distillation,
both concept directions, bf16 features, no prompts), comparing every output and every input gradient
with `torch.equal` (no tolerance). Used for the typed-batch refactor (LossInputs, gather_batch split):

    git show HEAD~1:cultureclip/loss.py > /tmp/old_loss.py
    python bench/loss_equivalence.py /tmp/old_loss.py [cultureclip/loss.py]
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def outputs(L) -> dict[str, np.ndarray]:
    """Every loss value and input gradient of the cases, keyed `seed/name`."""
    out = {}
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        B = int(rng.integers(2, 9)); D = 8; T = int(rng.integers(1, 4)); M = int(rng.integers(0, 5))
        dtype = torch.bfloat16 if seed % 7 == 3 else torch.float32
        f = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1).to(dtype)
        ids = torch.randint(0, max(2, B // 2), (B,), generator=g)
        kw = {"image_features": leaf(f(B, D)), "text_features": leaf(f(B, D)),
              "logit_scale": leaf(torch.tensor(float(rng.uniform(2, 30)))), "concept_ids": ids}
        variant = seed % 6
        if variant != 0:
            kw["prompt_features"] = leaf(f(B, D))
        if variant in (2, 3, 4, 5):
            kw["twin_text_features"] = leaf(f(B, T, D) if T > 1 or seed % 2 else f(B, D))
            kw["twin_prompt_features"] = leaf(f(B, T, D) if T > 1 or seed % 2 else f(B, D))
            mask = torch.rand(B, T, generator=g) > 0.3
            kw["twin_mask"] = mask if kw["twin_text_features"].dim() == 3 else mask[:, 0]
            shape = (B, T) if kw["twin_text_features"].dim() == 3 else (B,)
            if variant in (3, 5):
                kw["text_ids"] = torch.randint(0, 2 * B, (B,), generator=g)
                kw["twin_text_ids"] = torch.randint(0, 2 * B, shape, generator=g)
                kw["twin_concept_ids"] = torch.randint(0, B, shape, generator=g)
        if variant in (4, 5) and M > 0:
            kw["twin_image_features"] = leaf(f(M, D))
            kw["twin_image_concept_ids"] = torch.randint(0, B, (M,), generator=g)
            if variant == 5:
                kw["image_ids"] = torch.randint(0, 2 * B, (B,), generator=g)
                kw["twin_image_ids"] = torch.randint(0, 2 * B, (M,), generator=g)
        w_keep = 0.0
        if seed % 5 == 1:
            kw["base_image_features"] = f(B, 6); kw["base_text_features"] = f(B, 6); w_keep = 0.5
            if seed % 2:
                kw["base_logit_scale"] = torch.tensor(10.0)
        direction = "symmetric" if seed % 4 == 2 else "image_to_prompt"
        w_cap, w_con = (1.0, 0.0) if seed % 9 == 4 else (0.7, 0.3)
        loss = L.TwinContrastiveLoss(w_cap=w_cap, w_con=w_con, w_keep=w_keep, concept_direction=direction)
        res = loss(**kw)
        res["loss"].backward()
        for k, v in res.items():
            out[f"{seed}/{k}"] = v.detach().float().numpy()
        for k, v in kw.items():
            if isinstance(v, torch.Tensor) and v.grad is not None:
                out[f"{seed}/grad/{k}"] = v.grad.float().numpy()
        # the plain CLIP loss too
        c = L.ClipContrastiveLoss()(leaf(kw["image_features"]), leaf(kw["text_features"]), kw["logit_scale"].detach())
        out[f"{seed}/clip"] = c["loss"].detach().numpy()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    old = outputs(load(argv[0], "loss_old"))
    new = outputs(load(argv[1] if len(argv) > 1 else str(Path(__file__).resolve().parents[1] / "cultureclip/loss.py"),
                       "loss_new"))
    differ = sorted(k for k in old.keys() | new.keys() if k not in old or k not in new or not np.array_equal(old[k], new[k]))
    grads = sum("/grad/" in k for k in old)
    print(f"{len(old)} outputs ({grads} gradients) on 60 cases: {len(differ)} differ" + (f": {differ[:10]}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
