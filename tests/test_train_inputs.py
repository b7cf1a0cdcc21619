"""Each loss builds its own inputs: the plain-CLIP baseline encodes only images and captions; the twin
loss still gets prompts, twin captions/prompts, twin images and the ids that drop duplicate columns."""
import copy
from types import SimpleNamespace

import pytest
import torch

from cultureclip.config import load_config
from cultureclip.loss import LOSS_INPUTS, ClipContrastiveLoss, TwinContrastiveLoss
from cultureclip.train import TrainConfig, _step_losses
from tests.cultwin_fixture import make_tiny_cultwin

CPU = SimpleNamespace(device=torch.device("cpu"))
TWIN_KEYS = {"image_features", "text_features", "logit_scale", "concept_ids", "prompt_features",
             "twin_text_features", "twin_prompt_features", "twin_mask", "text_ids", "twin_text_ids",
             "twin_concept_ids", "image_ids", "twin_image_ids", "twin_image_features", "twin_image_concept_ids"}


@pytest.fixture(scope="module")
def bb_batch(tiny_open_clip_dir, tmp_path_factory):
    from cultureclip.backbone import create_backbone
    from cultureclip.data import CulTwinDataset, TwinBatchSampler, collate, read_manifest

    ds = make_tiny_cultwin(tmp_path_factory.mktemp("inputs") / "ds", per_concept=4)
    bb = create_backbone(str(tiny_open_clip_dir))
    m = read_manifest(ds).split("train")
    dataset = CulTwinDataset(m, bb.preprocess_eval, seed=0, twin_images=True)
    batch = collate([dataset[i] for i in next(iter(TwinBatchSampler(dataset.concept_ids, dataset.twin_concept_ids, 6, seed=0)))])
    assert batch.has_twin.any() and batch.twin_images is not None
    assert set(batch.prompts) - set(batch.captions)  # prompts are texts the captions do not hold
    return bb, batch


class Recording:
    """A loss that records what the trainer built for it."""

    def __init__(self, loss):
        self.loss, self.inputs, self.seen = loss, getattr(loss, "inputs", None), {}

    def __call__(self, **kw):
        self.seen = kw
        return self.loss(**kw)


@pytest.fixture
def text_tower(bb_batch, monkeypatch):
    """Texts tokenized and rows sent through the text tower, per call."""
    bb, _ = bb_batch
    seen = {"texts": [], "rows": []}
    tokenize, forward = bb.tokenize, bb.forward
    monkeypatch.setattr(bb, "tokenize", lambda texts: seen["texts"].append(list(texts)) or tokenize(texts))
    monkeypatch.setattr(bb, "forward", lambda images=None, texts=None: seen["rows"].append(
        0 if texts is None else texts.shape[0]) or forward(images, texts))
    return seen


def _cfg(*over):
    return load_config(TrainConfig, None, ["data.dataset=x", *over])


def test_clip_baseline_encodes_only_captions(bb_batch, text_tower):
    bb, batch = bb_batch
    rec = Recording(ClipContrastiveLoss())
    with torch.no_grad():
        out = _step_losses(bb, bb, batch, rec, _cfg("loss.name=clip"), None, CPU)
    captions = list(dict.fromkeys(batch.captions))
    assert text_tower["texts"] == [captions]  # no prompts, no twin captions or prompts
    assert text_tower["rows"] == [len(captions)]
    assert set(rec.seen) == {"image_features", "text_features", "logit_scale"}
    assert rec.seen["image_features"].shape[0] == len(batch.captions)  # no twin images either
    with torch.no_grad():  # the same loss as encoding the batch directly
        ref = ClipContrastiveLoss()(bb.encode_image(batch.images), bb.encode_text(bb.tokenize(list(batch.captions))),
                                    bb.logit_scale)
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), abs=1e-5)


def test_plain_callable_gets_the_configured_losss_inputs(bb_batch, text_tower):
    bb, batch = bb_batch
    seen = {}
    _step_losses(bb, bb, batch, lambda **kw: seen.update(kw) or {"loss": torch.zeros(())}, _cfg("loss.name=clip"), None, CPU)
    assert text_tower["texts"] == [list(dict.fromkeys(batch.captions))]
    assert set(seen) == {"image_features", "text_features", "logit_scale"}


def test_twin_loss_gets_everything(bb_batch, text_tower):
    bb, batch = bb_batch
    rec = Recording(TwinContrastiveLoss())
    with torch.no_grad():
        _step_losses(bb, bb, batch, rec, _cfg(), None, CPU)
    kw = rec.seen
    assert set(kw) == TWIN_KEYS
    [texts] = text_tower["texts"]
    has = batch.has_twin.tolist()
    twin_prompts = [t if h else p for t, p, h in zip(batch.twin_prompts, batch.prompts, has)]
    assert texts[: len(set(batch.captions))] == list(dict.fromkeys(batch.captions))  # captions first
    assert set(batch.prompts) | set(twin_prompts) <= set(texts)
    assert len(texts) == len(set(texts)) == text_tower["rows"][0]  # each unique text once
    b = len(batch.captions)
    with torch.no_grad():
        enc = lambda xs: bb.encode_text(bb.tokenize(list(xs)))  # noqa: E731
        torch.testing.assert_close(kw["prompt_features"], enc(batch.prompts), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(kw["twin_prompt_features"], enc(twin_prompts), atol=1e-5, rtol=1e-4)
    assert kw["twin_text_features"].shape == kw["text_features"].shape == (b, bb.embed_dim)
    assert kw["twin_image_features"].shape[0] == len(kw["twin_image_ids"]) > 0
    assert torch.equal(kw["concept_ids"], batch.concept_ids) and torch.equal(kw["twin_mask"], batch.has_twin)


def test_distillation_gets_base_features_only_when_on(bb_batch):
    bb, batch = bb_batch
    base = copy.deepcopy(bb).eval()
    assert "base" not in TwinContrastiveLoss().inputs and "base" in TwinContrastiveLoss(w_keep=0.5).inputs
    assert ClipContrastiveLoss().inputs == frozenset() and TwinContrastiveLoss(w_keep=1).inputs == set(LOSS_INPUTS)
    for loss, cfg, want in ((TwinContrastiveLoss(w_keep=0.5), _cfg("loss.w_keep=0.5"), True),
                            (TwinContrastiveLoss(), _cfg(), False)):
        rec = Recording(loss)
        with torch.no_grad():
            _step_losses(bb, bb, batch, rec, cfg, base, CPU)
        assert ("base_image_features" in rec.seen) is want and ("base_text_features" in rec.seen) is want


def test_paper_preset_matches_the_authors_negatives_on_n_gpus():
    """The authors: one device, 128 x 16 accumulation, so 2048 items per step and 128 per softmax. The old
    rule (batch 128, grad_accum 16/N, features gathered) gave each softmax 128 x N items."""
    from pathlib import Path

    from cultureclip.train import batch_plan, create_train_loss

    preset = Path(__file__).resolve().parent.parent / "configs/train/paper_b32.yaml"
    one = load_config(TrainConfig, preset, [])
    assert one.loss.negatives == "local" and batch_plan(one, 1) == {"per_step": 2048, "per_softmax": 128}
    for n in (2, 4, 8):
        local = load_config(TrainConfig, preset, [f"optim.grad_accum={16 // n}"])  # the preset's rule
        gathered = load_config(TrainConfig, preset, ["loss.negatives=global", f"data.batch_size={128 // n}"])
        old_rule = load_config(TrainConfig, preset, ["loss.negatives=global", f"optim.grad_accum={16 // n}"])
        assert batch_plan(local, n) == batch_plan(gathered, n) == {"per_step": 2048, "per_softmax": 128}
        assert batch_plan(old_rule, n) == {"per_step": 2048, "per_softmax": 128 * n}
    # the option reaches the loss: no gather with local, gather with global
    assert create_train_loss(one).gather is False
    assert create_train_loss(load_config(TrainConfig, preset, ["loss.negatives=global"])).gather is True
    assert create_train_loss(load_config(TrainConfig, preset, ["loss.name=clip"])).gather is False
