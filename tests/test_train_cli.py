"""`python -m cultureclip.train`: a user's mistake is one clear line and exit code 2; a bug in our code
keeps its traceback (it used to be swallowed into one line when it was a ValueError/FileNotFoundError)."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cultureclip.train as T
from cultureclip.backbone import BackboneError
from cultureclip.checkpoint import CheckpointError
from cultureclip.config import ConfigError
from cultureclip.data import ManifestError

ROOT = Path(__file__).resolve().parent.parent


def test_bad_config_value_is_one_line_exit_2_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "cultureclip.train", "--config", "configs/train/smoke.yaml",
                        f"data.dataset={tmp_path}", "data.batch_size=1", f"out_dir={tmp_path / 'run'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "data.batch_size=1: it must be >= 2" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


@pytest.mark.parametrize("argv,message", [
    (["optim.schedule=cosin"], "optim.schedule: 'cosin' is not a valid choice"),
    (["data.dataset="], "data.dataset is empty"),
])
def test_user_errors_are_logged_in_one_line(argv, message, caplog):
    with caplog.at_level(logging.ERROR, logger="cultureclip.train"):
        assert T.main(argv) == 2
    [rec] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert message in rec.getMessage() and rec.exc_info is None


@pytest.mark.parametrize("error", [ConfigError("c"), T.TrainError("t"), ManifestError("m"), CheckpointError("k"),
                                   BackboneError("b"), T.NonFiniteLossError("n")])
def test_every_user_error_type_exits_2(error, monkeypatch):
    def fail(cfg, resume=None):
        raise error

    monkeypatch.setattr(T, "train", fail)
    assert T.main(["data.dataset=x"]) == 2


@pytest.mark.parametrize("error", [ValueError("a bug"), FileNotFoundError("internal.json"), KeyError("k"),
                                   RuntimeError("r")])
def test_internal_errors_propagate_with_their_traceback(error, monkeypatch):
    def bug(cfg, resume=None):
        raise error

    monkeypatch.setattr(T, "train", bug)
    with pytest.raises(type(error)):
        T.main(["data.dataset=x"])


def test_missing_dataset_model_and_resume_folder_are_user_errors(tiny_open_clip_dir, tmp_path, caplog):
    from tests.cultwin_fixture import make_tiny_cultwin

    ds = make_tiny_cultwin(tmp_path / "ds", per_concept=2)
    common = ["--config", str(ROOT / "configs/train/smoke.yaml"), "progress=false", f"out_dir={tmp_path / 'run'}"]
    cases = [
        ([f"model.spec={tiny_open_clip_dir}", f"data.dataset={tmp_path / 'nope'}"], "no manifest at"),
        ([f"model.spec={tmp_path / 'no_model'}", f"data.dataset={ds}"], "no_model"),
        ([f"model.spec={tiny_open_clip_dir}", f"data.dataset={ds}", "--resume", str(tmp_path / "no_step")],
         "no such checkpoint folder"),
    ]
    for argv, message in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="cultureclip.train"):
            assert T.main(common + argv) == 2, argv
        [rec] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert message in rec.getMessage() and rec.exc_info is None
