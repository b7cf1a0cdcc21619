"""Crash safety and multi-process sharding of `python -m synth.run`, in real subprocesses."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cultureclip.steps import read_marker

ROOT = Path(__file__).resolve().parents[1]
STAGES = "captions,images,filter,export"


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory) -> Path:
    """A 12-concept slice of the curated catalog (twins kept whole) so each subprocess starts fast."""
    import yaml
    from synth.catalog import load_catalog
    cat = load_catalog()
    keep: list[str] = []
    for a, b in cat.twin_pairs():
        if len(keep) >= 12:
            break
        if a in keep or b in keep:
            continue
        keep += [a, b]
    rows = []
    for cid in keep:
        d = cat[cid].to_dict()
        d["twins"] = [t for t in d["twins"] if t["id"] in keep]
        rows.append(d)
    path = tmp_path_factory.mktemp("catalog") / "small.yaml"
    path.write_text(yaml.safe_dump(rows, allow_unicode=True, sort_keys=False))
    return path


def _cmd(out: Path, catalog: Path) -> list[str]:
    return [sys.executable, "-m", "synth.run", "--config", str(ROOT / "configs/synth/smoke.yaml"), "--stages", STAGES,
            "--out", str(out), f"catalog.paths=[{catalog}]", "catalog.limit=12",
            "images.width=256", "images.height=256", "run.concepts_per_shard=2", "run.progress=false"]


def _env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def _manifest(out: Path):
    from cultureclip.data import read_manifest
    return read_manifest(out / "dataset").frame.sort_values("image_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def clean_run(small_catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    subprocess.run(_cmd(out, small_catalog), env=_env(), cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


def test_sigkill_ten_times_then_resume(small_catalog, clean_run, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(1234)
    # Kill at random points of *progress*: when the run folder has reached a random file count (sorted, so
    # every run must get further than the last), plus a little jitter. Robust to how busy the machine is.
    total = sum(1 for p in clean_run.rglob("*") if p.is_file())
    targets = sorted(rng.randint(1, total - 1) for _ in range(10))
    kills = 0
    for target in targets:
        p = subprocess.Popen(_cmd(out, small_catalog), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while p.poll() is None and (not out.exists() or sum(1 for f in out.rglob("*") if f.is_file()) < target):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 8, f"only {kills} of 10 runs were still running when killed"
    done = subprocess.run(_cmd(out, small_catalog), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = _manifest(out), _manifest(clean_run)
    assert got["image_id"].is_unique
    assert got[["image_id", "sha256", "caption", "split"]].equals(want[["image_id", "sha256", "caption", "split"]])
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no partial file remains
    for rel, sha in zip(got["image_path"], got["sha256"]):
        import hashlib
        assert hashlib.sha256((out / "dataset" / rel).read_bytes()).hexdigest() == sha


def test_two_processes_equal_one(small_catalog, clean_run, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(_cmd(out, small_catalog), env=_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-1500:] + errs[1][-1500:]
    ranks = {read_marker(p).produced["rank"] for p in (out / "images").glob("*.done")}
    assert ranks == {0, 1}  # both processes really did shards
    got, want = _manifest(out), _manifest(clean_run)
    cols = [c for c in want.columns]
    assert got[cols].astype(str).equals(want[cols].astype(str))
