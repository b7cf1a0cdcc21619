"""TwinContrastiveLoss on random tensors: reference equality, multi-positives, twins, distributed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cultureclip.loss import LOSSES, ClipContrastiveLoss, TwinContrastiveLoss, create_loss

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def _features(batch: int, dim: int, seed: int, leaf: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = _norm(torch.randn(batch, dim, generator=g))
    txt = _norm(img + 0.8 * torch.randn(batch, dim, generator=g))  # correlated pairs, like a trained model
    if leaf:
        img.requires_grad_(True)
        txt.requires_grad_(True)
    return img, txt


def _open_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    from open_clip.loss import ClipLoss

    return ClipLoss()(img, txt, scale)


# --------------------------------------------------------------------------------------------------
# Reference equality
# --------------------------------------------------------------------------------------------------


def test_equals_open_clip_cliploss_without_twins_one_image_per_concept():
    img, txt = _features(8, 16, seed=0)
    scale = torch.tensor(14.3)
    ids = torch.tensor([40, 3, 17, 8, 99, 5, 12, 7])  # unique, not contiguous
    out = TwinContrastiveLoss()(img, txt, scale, ids)
    ref_img, ref_txt = img.detach().clone().requires_grad_(True), txt.detach().clone().requires_grad_(True)
    ref = _open_clip_loss(ref_img, ref_txt, scale)
    assert set(out) == {"caption_loss", "concept_loss", "loss"}
    assert abs(out["loss"].item() - ref.item()) < 1e-6
    assert abs(out["caption_loss"].item() - ref.item()) < 1e-6
    assert out["concept_loss"].item() == 0.0
    out["loss"].backward()
    ref.backward()
    torch.testing.assert_close(img.grad, ref_img.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(txt.grad, ref_txt.grad, atol=1e-6, rtol=0)
    # the registry's plain CLIP loss is the same number
    assert abs(create_loss("clip")(img, txt, scale)["loss"].item() - ref.item()) < 1e-6


def test_concept_term_with_prompts_equal_to_captions_is_clip_image_direction():
    from open_clip.loss import ClipLoss

    img, txt = _features(6, 12, seed=1)
    scale = torch.tensor(20.0)
    ids = torch.arange(6) * 7
    out = TwinContrastiveLoss(w_cap=0.7, w_con=0.3)(img, txt, scale, ids, prompt_features=txt)
    logits_per_image, _ = ClipLoss().get_logits(img, txt, scale)
    image_direction = F.cross_entropy(logits_per_image, torch.arange(6))
    clip = _open_clip_loss(img, txt, scale)
    assert abs(out["concept_loss"].item() - image_direction.item()) < 1e-6
    assert abs(out["caption_loss"].item() - clip.item()) < 1e-6
    assert abs(out["loss"].item() - (0.7 * clip + 0.3 * image_direction).item()) < 1e-6


def test_all_masked_twins_equal_no_twins():
    img, txt = _features(5, 8, seed=2)
    scale, ids = torch.tensor(10.0), torch.tensor([0, 0, 1, 2, 2])
    twins = _norm(torch.randn(5, 3, 8))
    base = TwinContrastiveLoss()(img, txt, scale, ids, prompt_features=txt)
    masked = TwinContrastiveLoss()(
        img, txt, scale, ids, prompt_features=txt, twin_text_features=twins, twin_prompt_features=twins,
        twin_mask=torch.zeros(5, 3, dtype=torch.bool),
    )
    assert abs(base["loss"].item() - masked["loss"].item()) < 1e-6


# --------------------------------------------------------------------------------------------------
# Positives by concept id
# --------------------------------------------------------------------------------------------------


def _orthonormal_setup():
    """Captions e_0..e_5, prompts e_8.., twin captions e_16.. -- so one similarity can be moved alone."""
    eye = torch.eye(32)
    ids = torch.tensor([0, 0, 1, 2, 3, 4])  # items 0 and 1 share concept 0
    txt = eye[:6].clone()
    prompts = eye[8 + ids].clone()
    twin_txt = eye[16:22].clone()
    twin_prompt = eye[24:30].clone()
    g = torch.Generator().manual_seed(3)
    img = torch.randn(6, 32, generator=g) * 0.3
    img[:, :6] += torch.eye(6)  # each image leans toward its own caption
    return img, txt, ids, prompts, twin_txt, twin_prompt


def test_two_images_of_one_concept_are_never_pushed_apart():
    img, txt, ids, prompts, twin_txt, twin_prompt = _orthonormal_setup()
    loss_fn = TwinContrastiveLoss()
    scale = torch.tensor(5.0)

    def loss_with(shift_to: int, t: float) -> float:
        moved = img.clone()
        moved[0, shift_to] += t  # changes only sim(image 0, caption shift_to) -- captions are a basis
        return loss_fn(moved, txt, scale, ids, prompt_features=prompts, twin_text_features=twin_txt,
                       twin_prompt_features=twin_prompt)["loss"].item()

    base = loss_with(1, 0.0)
    # Image 0 vs caption 1 (same concept): the loss does not care at all, in either direction.
    for t in (-2.0, -0.5, 0.5, 2.0):
        assert abs(loss_with(1, t) - base) < 1e-6
    # Image 0 vs caption 2 (another concept): a real negative, more similar -> higher loss.
    assert loss_with(2, 0.5) > base + 1e-3
    assert loss_with(2, -0.5) < base - 1e-5  # less similar -> lower (saturates: prob already small)

    # Gradient view: plain CLIP pushes image 0 away from caption 1 (positive gradient along e_1),
    # the twin-aware loss puts exactly zero there and still pushes away from caption 2.
    x = img.clone().requires_grad_(True)
    loss_fn(x, txt, scale, ids)["loss"].backward()
    assert x.grad[0, 1].abs().item() < 1e-7 and x.grad[1, 0].abs().item() < 1e-7
    assert x.grad[0, 2].item() > 1e-4
    y = img.clone().requires_grad_(True)
    ClipContrastiveLoss()(y, txt, scale)["loss"].backward()
    assert y.grad[0, 1].item() > 1e-4


def test_twin_image_of_the_captions_own_concept_is_not_a_negative():
    img, txt, ids, *_ = _orthonormal_setup()
    loss_fn, scale = TwinContrastiveLoss(), torch.tensor(5.0)
    twin_ids = torch.tensor([1, 9])  # the first twin image shows concept 1 (caption 2's concept)

    def loss_with(axis: int, t: float) -> float:
        twin_img = torch.zeros(2, 32)
        twin_img[:, 30] = 1.0
        twin_img[0, axis] += t  # only sim(caption `axis`, twin image 0) changes
        return loss_fn(img, txt, scale, ids, twin_image_features=twin_img, twin_image_concept_ids=twin_ids)["loss"].item()

    base = loss_with(2, 0.0)
    assert abs(loss_with(2, 3.0) - base) < 1e-6  # caption 2 is concept 1: masked
    assert loss_with(3, 3.0) > base + 1e-3  # caption 3 is concept 2: a hard negative


# --------------------------------------------------------------------------------------------------
# Twins
# --------------------------------------------------------------------------------------------------


def _twin_batch(seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    img, txt = _features(6, 16, seed=seed, leaf=False)
    ids = torch.tensor([0, 1, 2, 3, 0, 5])
    prompts = _norm(torch.randn(6, 16, generator=g))
    prompts[4] = prompts[0]  # same concept, same prompt
    twin_txt = _norm(torch.randn(6, 2, 16, generator=g))
    twin_prompt = _norm(torch.randn(6, 2, 16, generator=g))
    mask = torch.ones(6, 2, dtype=torch.bool)
    mask[3, 1] = False
    twin_img = _norm(torch.randn(3, 16, generator=g))
    twin_ids = torch.tensor([7, 1, 8])  # the second is concept 1: a positive for caption 1, not a negative
    return dict(image_features=img, text_features=txt, logit_scale=torch.tensor(12.0), concept_ids=ids,
                prompt_features=prompts, twin_text_features=twin_txt, twin_prompt_features=twin_prompt,
                twin_mask=mask, twin_image_features=twin_img, twin_image_concept_ids=twin_ids)


def test_gradients_reach_twin_features_but_not_masked_slots():
    batch = _twin_batch()
    for key in ("twin_text_features", "twin_prompt_features", "twin_image_features"):
        batch[key] = batch[key].clone().requires_grad_(True)
    out = TwinContrastiveLoss()(**batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    tt, tp, ti = (batch[k].grad for k in ("twin_text_features", "twin_prompt_features", "twin_image_features"))
    assert tt[batch["twin_mask"]].norm(dim=-1).min() > 1e-9  # random twins are easy negatives: small but real
    assert tp[batch["twin_mask"]].norm(dim=-1).min() > 1e-9
    assert tt[3, 1].abs().max() == 0 and tp[3, 1].abs().max() == 0  # padding slot
    assert ti[0].norm() > 1e-9 and ti[2].norm() > 1e-9


def test_raising_similarity_to_twin_raises_the_loss():
    loss_fn = TwinContrastiveLoss()
    batch = _twin_batch()
    base = loss_fn(**batch)
    img = batch["image_features"]

    closer_caption = batch["twin_text_features"].clone()
    closer_caption[2, 0] = _norm(closer_caption[2, 0] + 2 * img[2])
    out = loss_fn(**{**batch, "twin_text_features": closer_caption})
    assert out["caption_loss"] > base["caption_loss"] + 1e-4
    assert torch.equal(out["concept_loss"], base["concept_loss"])

    closer_prompt = batch["twin_prompt_features"].clone()
    closer_prompt[2, 1] = _norm(closer_prompt[2, 1] + 2 * img[2])
    out = loss_fn(**{**batch, "twin_prompt_features": closer_prompt})
    assert out["concept_loss"] > base["concept_loss"] + 1e-4

    closer_image = batch["twin_image_features"].clone()
    closer_image[0] = _norm(closer_image[0] + 2 * batch["text_features"][2])  # twin image vs caption 2
    out = loss_fn(**{**batch, "twin_image_features": closer_image})
    assert out["caption_loss"] > base["caption_loss"] + 1e-4


def test_a_duplicated_column_changes_nothing():
    """Twin columns that are copies of batch columns (same caption id / concept / image row) add
    nothing: the loss equals the loss without them, values and gradients."""
    img, txt = _features(6, 16, seed=11)
    g = torch.Generator().manual_seed(11)
    ids = torch.tensor([0, 1, 2, 3, 0, 5])
    prompts = _norm(torch.randn(6, 16, generator=g))
    prompts[4] = prompts[0]
    text_ids = torch.tensor([10, 11, 12, 13, 14, 15])
    scale = torch.tensor(12.0)
    for direction in ("image_to_prompt", "symmetric"):
        loss_fn = TwinContrastiveLoss(concept_direction=direction)
        ref = loss_fn(img, txt, scale, ids, prompt_features=prompts)
        # item i's twin is item (i+1)%6's concept: caption, prompt and image copied from the batch
        nxt = torch.tensor([1, 2, 3, 4, 5, 0])
        dup = loss_fn(img, txt, scale, ids, prompt_features=prompts,
                      twin_text_features=txt[nxt], twin_prompt_features=prompts[nxt],
                      twin_image_features=img[nxt], twin_image_concept_ids=ids[nxt],
                      text_ids=text_ids, twin_text_ids=text_ids[nxt], twin_concept_ids=ids[nxt],
                      image_ids=torch.arange(6), twin_image_ids=nxt)
        for key in ("caption_loss", "concept_loss", "loss"):
            assert abs(dup[key].item() - ref[key].item()) < 1e-6, (direction, key)
        # without identities the copies are extra columns: the old behaviour (each adds ln 2 to a logit)
        old = loss_fn(img, txt, scale, ids, prompt_features=prompts,
                      twin_text_features=txt[nxt], twin_prompt_features=prompts[nxt])
        assert old["loss"].item() > ref["loss"].item() + 1e-3
    # a new twin column (an id the batch lacks) does add a negative
    new = TwinContrastiveLoss()(img, txt, scale, ids, prompt_features=prompts,
                                twin_text_features=txt[torch.tensor([1, 2, 3, 4, 5, 0])], text_ids=text_ids,
                                twin_text_ids=torch.arange(90, 96))
    assert new["caption_loss"].item() > ref["caption_loss"].item() + 1e-3
    # gradients equal too, and repeats inside the twin columns count once
    a, b = img.detach().clone().requires_grad_(True), img.detach().clone().requires_grad_(True)
    TwinContrastiveLoss()(a, txt.detach(), scale, ids, twin_image_features=torch.cat([img[:2], img[:2]]).detach(),
                          twin_image_concept_ids=torch.tensor([7, 7, 7, 7]), image_ids=torch.arange(6),
                          twin_image_ids=torch.tensor([40, 41, 40, 41]))["loss"].backward()
    TwinContrastiveLoss()(b, txt.detach(), scale, ids, twin_image_features=img[:2].detach(),
                          twin_image_concept_ids=torch.tensor([7, 7]))["loss"].backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0)


def test_symmetric_concept_term_is_clip_when_prompts_are_captions():
    img, txt = _features(6, 12, seed=1)
    scale = torch.tensor(20.0)
    out = TwinContrastiveLoss(w_cap=0.0, w_con=1.0, concept_direction="symmetric")(
        img, txt, scale, torch.arange(6) * 7, prompt_features=txt)
    assert abs(out["concept_loss"].item() - _open_clip_loss(img, txt, scale).item()) < 1e-6
    with pytest.raises(ValueError, match="concept_direction must be one of"):
        TwinContrastiveLoss(concept_direction="both")


def test_twins_make_the_loss_harder_than_plain_clip():
    batch = _twin_batch()
    with_twins = TwinContrastiveLoss()(**batch)["caption_loss"]
    without = TwinContrastiveLoss()(batch["image_features"], batch["text_features"], batch["logit_scale"],
                                    batch["concept_ids"])["caption_loss"]
    assert with_twins > without


# --------------------------------------------------------------------------------------------------
# Distillation, weights, errors
# --------------------------------------------------------------------------------------------------


def test_distillation_is_zero_at_the_base_and_positive_away_from_it():
    img, txt = _features(6, 8, seed=5)
    ids, scale = torch.arange(6), torch.tensor(10.0)
    same = TwinContrastiveLoss(w_keep=0.5)(img, txt, scale, ids, base_image_features=img.detach(),
                                            base_text_features=txt.detach())
    assert same["distill_loss"].abs().item() < 1e-6
    assert abs(same["loss"].item() - (same["caption_loss"] + 0.5 * same["distill_loss"]).item()) < 1e-6
    base_img, base_txt = _features(6, 8, seed=6, leaf=False)
    moved = TwinContrastiveLoss(w_keep=0.5)(img, txt, scale, ids, base_image_features=base_img,
                                             base_text_features=base_txt)
    assert moved["distill_loss"].item() > 1e-3
    moved["loss"].backward()
    assert img.grad.norm() > 0


def test_weights_and_renormalisation():
    batch = _twin_batch()
    out = TwinContrastiveLoss(w_cap=0.5, w_con=0.5)(**batch)
    assert abs(out["loss"].item() - (0.5 * out["caption_loss"] + 0.5 * out["concept_loss"]).item()) < 1e-6
    no_prompt = {k: v for k, v in batch.items() if k not in ("prompt_features", "twin_prompt_features")}
    out = TwinContrastiveLoss(w_cap=0.2, w_con=0.3)(**no_prompt)
    assert abs(out["loss"].item() - 0.5 * out["caption_loss"].item()) < 1e-6


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text_features": torch.zeros(5, 16)}, "text_features must have shape (6, 16)"),
        ({"concept_ids": torch.zeros(6)}, "concept_ids must be an integer tensor"),
        ({"twin_mask": torch.ones(6, 3, dtype=torch.bool)}, "twin_mask must have shape"),
        ({"twin_image_concept_ids": None}, "twin_image_concept_ids"),
        ({"twin_text_features": torch.zeros(6, 2, 8)}, "twin_text_features must have shape"),
        ({"prompt_features": None}, "twin_prompt_features needs prompt_features"),
        ({"logit_scale": torch.ones(2)}, "logit_scale must be a scalar"),
    ],
)
def test_bad_input_names_the_problem(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TwinContrastiveLoss()(**{**_twin_batch(), **change})


def test_registry_and_bad_config():
    assert set(LOSSES) == {"twin", "clip"}
    assert isinstance(create_loss("twin", w_cap=1.0, w_con=0.0), TwinContrastiveLoss)
    with pytest.raises(ValueError, match="choose one of: clip, twin"):
        create_loss("siglip")
    with pytest.raises(ValueError, match="bad arguments for loss 'twin'"):
        create_loss("twin", w_caption=1.0)
    with pytest.raises(ValueError, match="w_cap \\+ w_con must be > 0"):
        TwinContrastiveLoss(w_cap=0, w_con=0)
    with pytest.raises(ValueError, match="w_keep > 0 needs base_image_features"):
        TwinContrastiveLoss(w_keep=0.1)(*_features(3, 4, seed=0), 10.0, torch.arange(3))
    with pytest.raises(ValueError, match="nothing to train"):
        TwinContrastiveLoss(w_cap=0, w_con=1)(*_features(3, 4, seed=0), 10.0, torch.arange(3))


def test_bf16_features_are_computed_in_float32():
    batch = _twin_batch()
    low = {k: (v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0 else v)
           for k, v in batch.items()}
    out = TwinContrastiveLoss()(**low)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert abs(out["loss"].item() - TwinContrastiveLoss()(**batch)["loss"].item()) < 0.1


# --------------------------------------------------------------------------------------------------
# Two processes
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FLOAT_KEYS = ("image_features", "text_features", "prompt_features", "twin_text_features",
              "twin_prompt_features", "twin_image_features")


@pytest.mark.slow  # ~10-20 s: starts two Python processes (subprocess timeout below)
def test_two_processes_match_single_process(tmp_path):
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(7)
    sizes, twin_sizes, n, dim = [3, 5], [3, 0], 8, 16  # uneven ranks; rank 1 has no twin images
    img, txt = _features(n, dim, seed=7, leaf=False)
    ids = torch.tensor([4, 9, 2, 9, 4, 6, 1, 3])  # concepts 4 and 9 span both ranks
    prompts = _norm(torch.randn(n, dim, generator=g))
    base_img, base_txt = _features(n, dim, seed=8, leaf=False)
    mask = torch.rand(n, 2, generator=g) > 0.3
    data = {
        "image_features": img, "text_features": txt, "concept_ids": ids, "prompt_features": prompts,
        "twin_text_features": _norm(torch.randn(n, 2, dim, generator=g)),
        "twin_prompt_features": _norm(torch.randn(n, 2, dim, generator=g)),
        "twin_mask": mask.to(torch.uint8),
        "twin_image_features": _norm(torch.randn(3, dim, generator=g)),
        "twin_image_concept_ids": torch.tensor([9, 5, 2]),
        "base_image_features": base_img, "base_text_features": base_txt,
        # identities: twin caption 0 of item 0 (rank 0) is caption 6 (rank 1); twin image 1 (rank 0) is
        # image 5 (rank 1): both must be dropped across ranks
        "text_ids": torch.arange(100, 108),
        "twin_text_ids": torch.tensor([[106, 201], [202, 203], [204, 205], [206, 207], [208, 209],
                                       [210, 211], [212, 213], [214, 215]]),
        "twin_concept_ids": torch.tensor([[9, 77], [4, 78], [79, 80], [81, 82], [83, 84], [85, 86], [87, 88], [89, 90]]),
        "image_ids": torch.arange(8),
        "twin_image_ids": torch.tensor([50, 5, 51]),
    }
    weights = [0.7, 0.3, 0.2]
    file = tmp_path / "batch.safetensors"
    save_file({**data, "sizes": torch.tensor(sizes), "twin_sizes": torch.tensor(twin_sizes),
               "weights": torch.tensor(weights), "scale": torch.tensor([11.0]), "symmetric": torch.tensor([1])},
              str(file))

    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless mpirun is set up; the
    # torchrun-based launcher (--multi_gpu) starts two, and the worker uses gloo on CPU.
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(REPO / "tests" / "dist_loss_worker.py"), "--input", str(file), "--out-dir", str(tmp_path),
           "--world-size", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]

    # single process on the global batch
    leaves = {k: data[k].clone().requires_grad_(True) for k in FLOAT_KEYS}
    single_in = {**data, **leaves, "twin_mask": mask}
    single = TwinContrastiveLoss(*weights, concept_direction="symmetric")(logit_scale=torch.tensor(11.0), **single_in)
    single["loss"].backward()
    for key in ("caption_loss", "concept_loss", "distill_loss", "loss"):
        dist_mean = (ranks[0][f"loss/{key}"] + ranks[1][f"loss/{key}"]).item() / 2
        assert abs(dist_mean - single[key].item()) < 1e-5, key
    for key in FLOAT_KEYS:
        split = twin_sizes if key == "twin_image_features" else sizes
        parts = [r.get(f"grad/{key}", torch.zeros(s, *data[key].shape[1:])) for r, s in zip(ranks, split)]
        torch.testing.assert_close(torch.cat(parts), leaves[key].grad, atol=1e-5, rtol=0, msg=key)
    assert leaves["twin_image_features"].grad.norm() > 0  # twins really were gathered with gradient

    # plain CLIP baseline: mean of ranks == open_clip ClipLoss on the global batch, gradients too
    ref_img, ref_txt = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    ref = _open_clip_loss(ref_img, ref_txt, torch.tensor(11.0))
    ref.backward()
    assert abs((ranks[0]["loss/clip"] + ranks[1]["loss/clip"]).item() / 2 - ref.item()) < 1e-5
    torch.testing.assert_close(torch.cat([r["grad/clip_image"] for r in ranks]), ref_img.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([r["grad/clip_text"] for r in ranks]), ref_txt.grad, atol=1e-5, rtol=0)


def test_concept_bank_is_the_mean_prompt_of_each_concept_with_several_images():
    """Several images per concept with different prompt features: each concept's column is the MEAN of its
    items' prompts (a sum, or the first item's prompt, gives another loss), whatever the batch order."""
    g = torch.Generator().manual_seed(3)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    prompt = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    ids = torch.tensor([0, 1, 0, 0, 1])  # 3 images of concept 0, 2 of concept 1
    scale = torch.tensor(7.0)
    out = TwinContrastiveLoss(w_cap=0.0, w_con=1.0)(img, img.clone(), scale, ids, prompt_features=prompt)
    bank = torch.stack([prompt[ids == 0].mean(0), prompt[ids == 1].mean(0)])  # (U, D)
    expected = F.cross_entropy(scale * img @ bank.T, ids)
    assert torch.allclose(out["concept_loss"], expected, atol=1e-5)
    perm = torch.tensor([4, 2, 0, 3, 1])
    again = TwinContrastiveLoss(w_cap=0.0, w_con=1.0)(img[perm], img[perm].clone(), scale, ids[perm],
                                                      prompt_features=prompt[perm])
    assert torch.allclose(again["concept_loss"], expected, atol=1e-5)


def test_the_loss_takes_the_typed_batch_or_its_fields():
    """`LossInputs` is forward's arguments as one value: the same losses either way, for both losses."""
    from cultureclip.loss import LossInputs

    img, txt = _features(4, 8, seed=5)
    g = torch.Generator().manual_seed(6)
    twin = _norm(torch.randn(4, 2, 8, generator=g))
    fields = dict(image_features=img, text_features=txt, logit_scale=torch.tensor(10.0),
                  concept_ids=torch.tensor([0, 1, 0, 2]), prompt_features=_norm(torch.randn(4, 8, generator=g)),
                  twin_text_features=twin, twin_prompt_features=twin.flip(1), twin_mask=torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]]).bool())
    for loss in (TwinContrastiveLoss(), ClipContrastiveLoss()):
        a, b = loss(LossInputs(**fields)), loss(**fields)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="twin_caption_features"):
        TwinContrastiveLoss()(**fields, twin_caption_features=twin)  # a misspelt name is an error, not ignored


@pytest.mark.slow  # ~10-20 s: starts two Python processes
def test_negatives_option_sets_what_each_softmax_sees(tmp_path):
    """`loss.negatives`: with N processes, `global` contrasts each row with all N x B items (features
    gathered), `local` with its own process's B items only, which is what one device accumulating N
    micro-batches of B sees (the paper: 128 per softmax, accumulated to 2,048)."""
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(11)
    n, dim, b = 8, 16, 4  # 2 ranks x 4 items
    img, txt = _features(n, dim, seed=11, leaf=False)
    data = {"image_features": img, "text_features": txt, "concept_ids": torch.tensor([1, 2, 3, 1, 2, 4, 5, 6]),
            "prompt_features": _norm(torch.randn(n, dim, generator=g)), "scale": torch.tensor([20.0])}
    file = tmp_path / "batch.safetensors"
    save_file(data, str(file))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(REPO / "tests" / "dist_negatives_worker.py"),
           "--input", str(file), "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]

    scale = torch.tensor(20.0)
    twin = TwinContrastiveLoss(gather=False)  # the trainer's defaults: w_cap 0.7, w_con 0.3

    def single(name, rows):
        args = (img[rows], txt[rows], scale, data["concept_ids"][rows])
        if name == "clip":
            return ClipContrastiveLoss(gather=False)(*args[:3])["loss"].item()
        return twin(*args, prompt_features=data["prompt_features"][rows])["loss"].item()

    halves = [slice(0, b), slice(b, n)]
    for r in range(2):
        assert int(ranks[r]["global/columns"]) == n  # every item of both processes
        assert int(ranks[r]["local/columns"]) == b  # only its own
    for name in ("twin", "clip"):
        glob = [float(ranks[r][f"global/{name}/loss"]) for r in range(2)]
        loc = [float(ranks[r][f"local/{name}/loss"]) for r in range(2)]
        # global: the ranks together compute the single-process loss of the whole 8-item batch
        assert sum(glob) / 2 == pytest.approx(single(name, slice(0, n)), abs=1e-5), name
        # local: each rank's loss is the loss of its own 4 items alone, as one device's micro-batch
        for r in range(2):
            assert loc[r] == pytest.approx(single(name, halves[r]), abs=1e-5), name
        assert abs(sum(loc) - sum(glob)) > 1e-3  # the option changes the loss: other negatives
