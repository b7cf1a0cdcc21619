"""Generality recipes in the trainer: replay drawn anew every epoch, distillation on replay rows only."""
from pathlib import Path

import pytest
import torch

from cultureclip.config import load_config
from cultureclip.train import TrainConfig, TrainError, replay_distill_loss, train
from tests.cultwin_fixture import make_tiny_cultwin

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    return make_tiny_cultwin(root / "ds", per_concept=4), make_tiny_cultwin(root / "general", per_concept=8, seed=3)


def _cfg(model_dir, ds, replay, out, *over):
    ov = [f"model.spec={model_dir}", f"data.dataset={ds}", f"data.replay_dataset={replay}", "data.replay_ratio=0.5",
          f"out_dir={out}", "progress=false", "data.val_split="]
    return load_config(TrainConfig, ROOT / "configs/train/smoke.yaml", ov + list(over))


def _replay_images(run) -> list[str]:
    frame = run.dataset.m.frame
    return sorted(str(p) for p, c in zip(frame["image_path"], frame["concept_id"]) if str(c).startswith("replay:"))


def test_replay_resample_draws_new_rows_each_epoch(tiny_open_clip_dir, data, tmp_path):
    from cultureclip.checkpointer import Progress
    from cultureclip.train import _epoch_batches, setup

    ds, general = data
    fixed = setup(_cfg(tiny_open_clip_dir, ds, general, tmp_path / "a"))
    again = setup(_cfg(tiny_open_clip_dir, ds, general, tmp_path / "b", "data.replay_resample=true"))
    seen = []
    for epoch in range(3):
        _epoch_batches(fixed, Progress(epoch=epoch))
        _epoch_batches(again, Progress(epoch=epoch))
        assert len(_replay_images(again)) == len(_replay_images(fixed)) > 0
        seen.append((_replay_images(fixed), _replay_images(again)))
    assert seen[0][0] == seen[1][0] == seen[2][0]  # without resampling: one draw for the run
    assert seen[0][1] == seen[0][0]  # epoch 0 draws the same rows either way
    assert seen[1][1] != seen[0][1] and seen[2][1] != seen[1][1]  # with it: new rows each epoch


def _features(b, d, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=-1) for _ in range(2)]


def test_replay_distillation_matches_the_loss_term_on_all_rows_and_skips_others():
    from cultureclip.loss import TwinContrastiveLoss

    img, txt = _features(6, 8, 0)
    bimg, btxt = _features(6, 8, 1)
    scale = torch.tensor(10.0)
    all_rows = torch.ones(6, dtype=torch.bool)
    ref = TwinContrastiveLoss(w_cap=1.0, w_con=0.0, w_keep=1.0)(img, txt, scale, torch.arange(6),
                                                               base_image_features=bimg, base_text_features=btxt)
    assert replay_distill_loss(img, txt, bimg, btxt, scale, all_rows) == pytest.approx(float(ref["distill_loss"]), rel=1e-5)
    none = torch.zeros(6, dtype=torch.bool)
    assert float(replay_distill_loss(img, txt, bimg, btxt, scale, none)) == 0.0
    assert float(replay_distill_loss(img, txt, img, txt, scale, all_rows)) == pytest.approx(0.0, abs=1e-6)
    # only the selected rows' own softmaxes count: changing an unselected row's *base* target changes nothing
    rows = torch.tensor([True, True, False, False, False, False])
    a = replay_distill_loss(img, txt, bimg, btxt, scale, rows)
    bimg2 = bimg.clone()
    bimg2[4] = -bimg2[4]
    btxt2 = btxt.clone()
    btxt2[5] = -btxt2[5]
    b = replay_distill_loss(img, txt, bimg2, btxt2, scale, rows)
    assert float(a) > 0 and float(a) != pytest.approx(float(b))  # columns still count (the softmax is over the batch)
    rows_img = img.clone().requires_grad_(True)
    replay_distill_loss(rows_img, txt, bimg, btxt, scale, rows).backward()
    assert rows_img.grad[:2].abs().sum() > 0


def test_training_with_replay_row_distillation(tiny_open_clip_dir, data, tmp_path):
    ds, general = data
    s = train(_cfg(tiny_open_clip_dir, ds, general, tmp_path / "run", "loss.w_keep=1.0", "loss.keep_rows=replay",
                   "data.replay_resample=true"))
    rows = s["history"]
    assert rows and all("distill_loss" in r for r in rows) and any(r["distill_loss"] > 0 for r in rows)
    with pytest.raises(TrainError, match="keep_rows=replay"):
        train(_cfg(tiny_open_clip_dir, ds, general, tmp_path / "bad", "loss.w_keep=1.0", "loss.keep_rows=replay",
                   "data.replay_ratio=0"))
