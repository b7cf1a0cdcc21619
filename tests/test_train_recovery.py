"""Trainer recovery: damaged checkpoints are detected and skipped, logs and val metrics survive resumes,
exported folders are readable by others.

One reference run (6 steps, a checkpoint every 2, val checks, export) is copied for each scenario, so
the scenarios cost only the steps they re-train."""
import json
import logging
import shutil
import stat
from pathlib import Path

import pytest

from cultureclip.checkpoint import CheckpointError
from cultureclip.config import load_config
from cultureclip.train import TrainConfig, main, train
from tests.cultwin_fixture import make_tiny_cultwin

ROOT = Path(__file__).resolve().parent.parent
STEPS = 6


def _overrides(model_dir, ds, out):
    return [f"model.spec={model_dir}", f"data.dataset={ds}", f"out_dir={out}", "progress=false",
            f"optim.max_steps={STEPS}", "save_every=2", "keep_last=3"]


def _cfg(model_dir, ds, out):
    return load_config(TrainConfig, ROOT / "configs/train/smoke.yaml", _overrides(model_dir, ds, out))


@pytest.fixture(scope="module")
def ref(tiny_open_clip_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("recovery")
    ds = make_tiny_cultwin(base / "ds", per_concept=6)
    summary = train(_cfg(tiny_open_clip_dir, ds, base / "ref"))
    assert summary["step"] == STEPS and summary["val"]
    return {"dir": base / "ref", "ds": ds, "model": tiny_open_clip_dir, "summary": summary}


def _copy(ref, dst: Path) -> Path:
    shutil.copytree(ref["dir"], dst)
    return dst


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _csv_steps(run_dir: Path) -> list[int]:
    import csv

    with open(run_dir / "log.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_truncated_newest_checkpoint_falls_back_and_finishes_the_same(ref, tmp_path, caplog):
    run = _copy(ref, tmp_path / "run")
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000002", "step_00000004", "step_00000006"]
    newest = ckpts / "step_00000006" / "train_state.safetensors"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a disk-full / killed copy
    with caplog.at_level(logging.WARNING, logger="cultureclip.train"):
        s = train(_cfg(ref["model"], ref["ds"], run), resume="auto")
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step_00000006" in m and "step_00000004" in m and "truncated" in m for m in warn), warn
    # the resumed run re-trained steps 5-6 exactly as the uninterrupted run did
    assert s["step"] == STEPS and len(s["losses"]) == 2
    assert s["losses"] == pytest.approx(ref["summary"]["losses"][4:], abs=1e-6)
    a, b = _log(ref["dir"]), _log(run)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # no duplicates, nothing lost
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], abs=1e-6)
    assert _csv_steps(run) == list(range(1, STEPS + 1))  # log.csv: the whole run, not only this process's steps
    # the damaged checkpoint is set aside, a good one written in its place
    assert (ckpts / "damaged_step_00000006").is_dir()
    assert json.loads((ckpts / "step_00000006" / "meta.json").read_text())["files"]["train_state.safetensors"]["bytes"] == len(data)


def test_corrupt_train_state_json_is_named(ref, tmp_path, caplog):
    run = _copy(ref, tmp_path / "run")
    step6 = run / "checkpoints" / "step_00000006"
    (step6 / "train_state.json").write_text('{"__dict__": [[')  # torn JSON
    with pytest.raises(CheckpointError, match=r"step_00000006/train_state\.json"):
        train(_cfg(ref["model"], ref["ds"], run), resume=str(step6))
    # an older checkpoint without recorded hashes: the load itself names the file
    meta = json.loads((step6 / "meta.json").read_text())
    meta.pop("files")
    (step6 / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"train_state\.json cannot be read \(JSONDecodeError"):
        train(_cfg(ref["model"], ref["ds"], run), resume=str(step6))
    # the CLI: exit code 2 and one line naming the file, no traceback
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="cultureclip.train"):
        rc = main(["--config", str(ROOT / "configs/train/smoke.yaml"), "--resume", str(step6),
                   *_overrides(ref["model"], ref["ds"], run)])
    assert rc == 2
    assert any("train_state.json" in r.getMessage() for r in caplog.records)


def test_no_intact_checkpoint_fails_clearly(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _copy(ref, tmp_path / "run")
    for ck in (tmp_path / "run" / "checkpoints").glob("step_*"):
        p = ck / "train_state.safetensors"
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError) as ei:
        train(_cfg(ref["model"], ref["ds"], "run"), resume="auto")
    msg = str(ei.value)
    assert "no intact checkpoint in run folder run " in msg and "delete run/checkpoints" in msg
    assert str(tmp_path) not in msg  # named relatively
    assert "step_00000002" in msg and "step_00000006" in msg


def test_resume_at_the_last_step_keeps_val_metrics_and_logs(ref, tmp_path):
    run = _copy(ref, tmp_path / "run")
    s = train(_cfg(ref["model"], ref["ds"], run), resume="auto")  # nothing left to train
    assert s["step"] == STEPS and s["losses"] == []
    assert s["val"] == ref["summary"]["val"] and s["val"]["step"] == STEPS
    meta = json.loads((run / "model" / "cultureclip_checkpoint.json").read_text())
    assert meta["val"] == ref["summary"]["val"]
    assert _csv_steps(run) == list(range(1, STEPS + 1))
    assert [r["step"] for r in _log(run)] == list(range(1, STEPS + 1))


def test_exported_and_checkpoint_folders_are_readable(ref):
    for folder in (ref["dir"] / "model", ref["dir"] / "checkpoints" / "step_00000006"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_logs_cover_the_whole_run_after_a_resume(ref, tmp_path):
    """As if killed after step 6 was logged but before its checkpoint: the resume from step 4 drops the
    logged steps 5-6 and logs them again; log.csv holds all 6 steps (it held only the resumed run's)."""
    run = _copy(ref, tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "step_00000006")
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 7, "loss": 1.0, "ep')  # a torn line from the killed process
    train(_cfg(ref["model"], ref["ds"], run), resume="auto")
    assert [r["step"] for r in _log(run)] == list(range(1, STEPS + 1))
    assert _csv_steps(run) == list(range(1, STEPS + 1))
    val_steps = [json.loads(line)["step"] for line in (run / "val.jsonl").read_text().splitlines()]
    ref_val = [json.loads(line)["step"] for line in (ref["dir"] / "val.jsonl").read_text().splitlines()]
    assert val_steps == ref_val


def test_checkpoint_without_done_is_named_when_resume_falls_back(ref, tmp_path, caplog):
    """A step folder without DONE used to be skipped silently (the resume went back two steps unannounced)."""
    run = _copy(ref, tmp_path / "run")
    ckpts = run / "checkpoints"
    (ckpts / "step_00000006" / "DONE").unlink()  # a copy cut short, or DONE deleted by hand
    with caplog.at_level(logging.WARNING, logger="cultureclip.train"):
        s = train(_cfg(ref["model"], ref["ds"], run), resume="auto")
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step_00000006" in m and "DONE" in m and "step_00000004" in m for m in warn), warn
    assert s["step"] == STEPS and len(s["losses"]) == 2  # resumed at step 4, as the warning says
    assert (ckpts / "damaged_step_00000006").is_dir() and (ckpts / "step_00000006" / "DONE").is_file()
    # with no complete checkpoint left, the run does not silently start over
    for ck in ckpts.glob("step_*"):
        (ck / "DONE").unlink()
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*step_00000006.*no DONE marker"):
        train(_cfg(ref["model"], ref["ds"], run), resume="auto")


def test_checkpoint_markers_old_and_torn(ref, tmp_path, caplog):
    """A checkpoint's DONE is a cultureclip.steps marker (the run's fingerprint, the step, the file records);
    a checkpoint written before it (DONE reads "ok") still resumes; a torn DONE is an incomplete checkpoint."""
    from cultureclip.steps import read_marker

    run = _copy(ref, tmp_path / "run")
    ckpts = run / "checkpoints"
    marker = read_marker(ckpts / "step_00000006" / "DONE")
    meta = json.loads((ckpts / "step_00000006" / "meta.json").read_text())
    assert len(marker.fingerprint) == 64 and marker.produced == {"step": 6, "files": meta["files"]}
    assert {read_marker(ck / "DONE").fingerprint for ck in ckpts.glob("step_*")} == {marker.fingerprint}
    (ckpts / "step_00000006" / "DONE").write_text('{"format": "cultureclip-step/1", "fingerp')  # torn
    for ck in ("step_00000002", "step_00000004"):
        (ckpts / ck / "DONE").write_text("ok\n")  # as the trainer wrote them before cultureclip.steps
    with caplog.at_level(logging.WARNING, logger="cultureclip.train"):
        s = train(_cfg(ref["model"], ref["ds"], run), resume="auto")
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step_00000006" in m and "torn" in m and "step_00000004" in m for m in warn), warn
    assert s["step"] == STEPS and len(s["losses"]) == 2  # resumed from the old-format step 4


def test_resume_removes_a_killed_exports_temp_folder(ref, tmp_path, caplog):
    """A process killed while exporting leaves `out_dir/.model.<random>.tmp` (~600 MB for ViT-B/32); a
    checkpoint write leaves `checkpoints/.tmp_step_N`; `--resume auto` removes this run's leftovers."""
    import tempfile

    run = _copy(ref, tmp_path / "run")
    export_tmp = Path(tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=run))  # the name fileio.atomic_dir uses
    shutil.copytree(run / "model", export_tmp, dirs_exist_ok=True)  # half an export: the weights written
    ckpt_tmp = run / "checkpoints" / ".tmp_step_00000008"
    shutil.copytree(run / "checkpoints" / "step_00000006", ckpt_tmp)
    (ckpt_tmp / "DONE").unlink()
    aside = run / ".model.old4242"  # replace_dir's old folder, killed between its two renames
    shutil.copytree(run / "model", aside)
    torn = run / ".log.jsonl.x1y2z3.tmp"  # an atomic write's temp file
    torn.write_text('{"step": 1')
    keep = [run / "notes.tmp", run / ".hidden", run / "checkpoints" / "step_00000006"]  # not our temp names
    keep[0].write_text("user file")
    keep[1].write_text("user file")
    with caplog.at_level(logging.WARNING, logger="cultureclip.train"):
        s = train(_cfg(ref["model"], ref["ds"], run), resume="auto")
    assert s["step"] == STEPS
    for p in (export_tmp, ckpt_tmp, aside, torn):
        assert not p.exists(), p
    assert all(p.exists() for p in keep)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".hidden"]
    warn = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert export_tmp.name in warn and ".tmp_step_00000008" in warn
    assert (run / "model").is_dir()  # the export itself is intact
