"""Trainer: smoke run + export, LoRA run, exact resume after SIGKILL, non-finite loss, config errors."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cultureclip.config import ConfigError, load_config
from cultureclip.train import TrainConfig, train
from tests.cultwin_fixture import make_tiny_cultwin

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny_cultwin(tmp_path_factory.mktemp("cw") / "ds", per_concept=8)


def _cfg(model_dir, ds, out, **over):
    ov = [f"model.spec={model_dir}", f"data.dataset={ds}", f"out_dir={out}", "progress=false"]
    ov += [f"{k}={v}" for k, v in over.items()]
    return load_config(TrainConfig, ROOT / "configs/train/smoke.yaml", ov)


def test_full_finetune_learns_and_exports(tiny_open_clip_dir, ds, tmp_path):
    cfg = _cfg(tiny_open_clip_dir, ds, tmp_path / "run", **{"optim.epochs": 6, "optim.lr": 3e-4})
    s = train(cfg)
    losses = s["losses"]
    assert len(losses) == s["step"] and s["step"] > 6
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first * 0.8, losses
    from cultureclip.backbone import create_backbone
    from cultureclip.checkpoint import read_metadata

    bb = create_backbone(s["export"])
    meta = read_metadata(s["export"])
    assert meta["step"] == s["step"] and meta["config"]["optim"]["lr"] == 3e-4 and meta["base_spec"] == str(tiny_open_clip_dir)
    assert (tmp_path / "run" / "log.jsonl").is_file() and (tmp_path / "run" / "log.csv").is_file()
    assert (tmp_path / "run" / "val.jsonl").is_file()
    assert len(list((tmp_path / "run" / "checkpoints").glob("step_*"))) == 2  # keep_last


def test_lora_run_on_hf_exports_plain_clipmodel(tiny_hf_clip_dir, ds, tmp_path):
    cfg = _cfg(tiny_hf_clip_dir, ds, tmp_path / "lora", **{"lora.enabled": True, "optim.max_steps": 3, "optim.lr": 1e-3})
    s = train(cfg)
    from transformers import CLIPModel

    m = CLIPModel.from_pretrained(s["export"])
    assert not any("lora" in k for k in m.state_dict())
    base = CLIPModel.from_pretrained(str(tiny_hf_clip_dir))
    k = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(m.state_dict()[k], base.state_dict()[k])  # merged update landed
    k2 = "vision_model.encoder.layers.0.self_attn.k_proj.weight"
    assert torch.equal(m.state_dict()[k2], base.state_dict()[k2])  # k not adapted


def test_nonfinite_loss_stops_with_step(tiny_open_clip_dir, ds, tmp_path, monkeypatch):
    import cultureclip.train as T

    real = T._step_losses
    calls = {"n": 0}

    def fake(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(T, "_step_losses", fake)
    with pytest.raises(T.NonFiniteLossError, match="at step 3"):
        train(_cfg(tiny_open_clip_dir, ds, tmp_path / "nan"))


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(TrainConfig, None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(TrainConfig, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="valid"):
        load_config(TrainConfig, None, ["nosuch=1"])


def _run(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "cultureclip.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _losses(run_dir):
    by_step = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        by_step[r["step"]] = r["loss"]  # a resumed run re-logs steps after the last checkpoint
    return [by_step[k] for k in sorted(by_step)]


def test_sigkill_then_resume_matches_uninterrupted(tiny_open_clip_dir, ds, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    common = ["--config", "configs/train/smoke.yaml", f"model.spec={tiny_open_clip_dir}", f"data.dataset={ds}",
              "progress=false", "optim.max_steps=10", "save_every=2", "data.val_split=", "export=false",
              "lora.enabled=true", "lora.dropout=0.1"]
    ref = _run(common + [f"out_dir={tmp_path / 'ref'}"], env)
    out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out
    # interrupted run: SIGKILL once the step-4 checkpoint is complete
    p = _run(common + [f"out_dir={tmp_path / 'kill'}"], env)
    marker = tmp_path / "kill" / "checkpoints" / "step_00000004" / "DONE"
    t0 = time.time()
    while not marker.exists():
        assert p.poll() is None, p.stdout.read()
        assert time.time() - t0 < 240
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _run(common + [f"out_dir={tmp_path / 'kill'}", "--resume", "auto"], env)
    out, _ = r.communicate(timeout=300)
    assert r.returncode == 0, out
    assert "resumed from" in out
    a, b = _losses(tmp_path / "ref"), _losses(tmp_path / "kill")
    assert len(a) == len(b) == 10
    assert a == pytest.approx(b, abs=1e-6), (a, b)
    assert not list((tmp_path / "kill" / "checkpoints").glob(".tmp*"))


def test_two_processes_match_one(tiny_open_clip_dir, ds, tmp_path):
    """accelerate launch with 2 CPU processes (gloo): per-process batch 4 x 2 = the single run's batch 8;
    features are gathered with gradient, so the loss sequence equals the single-process run's."""
    import shutil

    accel = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    common = ["--config", "configs/train/smoke.yaml", f"model.spec={tiny_open_clip_dir}", f"data.dataset={ds}",
              "progress=false", "optim.max_steps=4", "data.val_split=", "export=false", "data.augment=false",
              "optim.clip_grad=0", "loss.twin_caption_source=sampled"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "cultureclip.train", *common, "data.batch_size=8",
                          f"out_dir={tmp_path / 'one'}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    env2 = {**env, "ACCELERATE_USE_CPU": "1"}
    two = subprocess.run([accel, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
                          "-m", "cultureclip.train", *common, "data.batch_size=4", f"out_dir={tmp_path / 'two'}"],
                         cwd=ROOT, env=env2, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, abs=1e-4), (a, b)


def test_local_negatives_on_two_processes_equal_one_device_accumulating(tiny_open_clip_dir, ds, tmp_path):
    """`loss.negatives=local` on 2 processes x batch 4 trains exactly like one device with batch 4 and 2
    accumulation steps (each softmax sees 4 items; the paper's one-GPU 128 x 16 on N GPUs): same weights."""
    import shutil

    from cultureclip.backbone import create_backbone

    accel = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    common = ["--config", "configs/train/smoke.yaml", f"model.spec={tiny_open_clip_dir}", f"data.dataset={ds}",
              "progress=false", "optim.max_steps=3", "data.val_split=", "data.augment=false", "optim.clip_grad=0",
              "loss.twin_caption_source=sampled", "loss.negatives=local", "data.batch_size=4", "keep_last=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "cultureclip.train", *common, "optim.grad_accum=2",
                          f"out_dir={tmp_path / 'one'}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "each softmax sees 4 items (loss.negatives=local)" in one.stderr + one.stdout
    two = subprocess.run([accel, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29534",
                          "-m", "cultureclip.train", *common, "optim.grad_accum=1", f"out_dir={tmp_path / 'two'}"],
                         cwd=ROOT, env={**env, "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "4 per process x 2 processes x 1 accumulation = 8 items per optimizer step; each softmax sees 4 items" \
        in two.stderr + two.stdout
    a = create_backbone(str(tmp_path / "one" / "model")).state_dict()
    b = create_backbone(str(tmp_path / "two" / "model")).state_dict()
    base = create_backbone(str(tiny_open_clip_dir)).state_dict()
    assert a.keys() == b.keys()
    assert max((a[k].float() - base[k].float()).abs().max().item() for k in a) > 1e-4  # it did train
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=2e-5, rtol=1e-4, msg=k)


def test_config_numbers_as_users_type_them(tmp_path):
    cfg = load_config(TrainConfig, None, ["optim.lr=3e-4", "optim.epochs=2", "loss.w_cap=1", "data.dataset=x"])
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.loss.w_cap, float) and cfg.optim.epochs == 2
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 1e-5\n")
    assert load_config(TrainConfig, tmp_path / "c.yaml").optim.lr == 1e-5
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(TrainConfig, None, ["optim.epochs=2.5"])


def test_logit_scale_is_clamped_after_each_step(tiny_open_clip_dir, ds, tmp_path):
    """lr=1e6 used to drive exp(logit_scale) to 0 (or inf) in one step; it is clamped to [1, 100]."""
    out = tmp_path / "lr1e6"
    cfg = _cfg(tiny_open_clip_dir, ds, out, **{"optim.lr": 1e6, "optim.max_steps": 1, "optim.warmup_steps": 0,
                                               "optim.clip_grad": 0, "data.val_split": "", "export": "false"})
    train(cfg)
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert 1.0 - 1e-6 <= rec["logit_scale"] <= 100.0 + 1e-4, rec
    from cultureclip.backbone import create_backbone

    bb = create_backbone(str(tiny_open_clip_dir))
    for raw, want in ((12.0, 100.0), (-3.0, 1.0), (2.0, math.exp(2.0))):
        with torch.no_grad():
            bb.model.logit_scale.fill_(raw)
        bb.clamp_logit_scale()
        assert abs(float(bb.logit_scale) - want) < 1e-3


def test_step_feeds_new_twin_columns_with_identities(tiny_open_clip_dir, ds):
    """The trainer gives the loss twin captions the batch lacks, twin images that are not batch images,
    and the ids the loss needs to drop any duplicate column."""
    from types import SimpleNamespace

    from cultureclip.backbone import create_backbone
    from cultureclip.data import CulTwinDataset, TwinBatchSampler, collate, read_manifest
    from cultureclip.train import _step_losses, _text_id

    bb = create_backbone(str(tiny_open_clip_dir))
    m = read_manifest(ds).split("train")
    dataset = CulTwinDataset(m, bb.preprocess_eval, seed=0, twin_images=True)
    sampler = TwinBatchSampler(dataset.concept_ids, dataset.twin_concept_ids, 6, seed=0)
    batch = collate([dataset[i] for i in next(iter(sampler))])
    assert batch.has_twin.any() and batch.twin_images is not None
    seen = {}
    cfg = load_config(TrainConfig, None, ["data.dataset=x"])
    _step_losses(bb, bb, batch, lambda **kw: seen.update(kw) or {"loss": torch.zeros(())}, cfg, None,
                 SimpleNamespace(device=torch.device("cpu")))
    caps = {_text_id(c) for c in batch.captions}
    has = batch.has_twin
    for tid, h, cands in zip(seen["twin_text_ids"].tolist(), has.tolist(), batch.twin_caption_candidates):
        if h and any(_text_id(c) not in caps for c in cands):
            assert tid not in caps  # a caption of the twin that the batch does not hold
    assert not set(seen["twin_image_ids"].tolist()) & set(seen["image_ids"].tolist())
    assert seen["twin_image_features"].shape[0] == len(seen["twin_image_ids"]) > 0
    assert seen["image_features"].shape[0] == len(batch.captions)
    assert seen["twin_concept_ids"][has].ne(seen["concept_ids"][has]).all()
