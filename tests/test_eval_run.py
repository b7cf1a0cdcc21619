"""The runner: results files, embedding cache, --skip-existing, unreadable images, multi-process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval_suite.run import main
from tests.fixtures import make_benchmark_fixtures as F


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_open_clip_dir):
    root = tmp_path_factory.mktemp("run")
    fx = {n: F.make_fixture(n, root / n) for n in ("imagenet1k", "flickr30k", "crope")}
    # one corrupt file among the class-folder images
    zs = F.make_fixture("zeroshot", root / "zeroshot")
    (zs / "kimono" / "kimono_0.jpg").write_bytes(b"not an image")
    fx["zeroshot"] = zs
    return root, fx, str(tiny_open_clip_dir)


def _args(fx, model, out, *extra):
    roots = [f"--root={n}={p}" for n, p in fx.items()]
    return ["--models", model, "--benchmarks", *fx, "--out", str(out), "--batch-size", "4", "--num-workers", "0",
            "--n-boot", "20", "--no-progress", *roots, *extra]


def test_run_writes_results_cache_and_skips(setup):
    root, fx, model = setup
    out = root / "out"
    assert main(_args(fx, model, out)) == 0
    files = sorted(p.name for p in out.glob("*.json"))
    assert len(files) == 4 and all("__" in f for f in files)
    z = json.loads(next(out.glob("zeroshot__*.json")).read_text())
    assert z["skipped"]["unreadable_image"] == 1 and z["n_samples"] == 17 and z["checkpoint_sha"]
    assert z["extra"]["protocol"] == "official" and z["eval_config"]["benchmark"] == "zeroshot"
    c = json.loads(next(out.glob("crope__*.json")).read_text())
    assert c["eval_config"]["protocol"] == "paper" and "samples" in c
    cache = list((out / ".embedding_cache").glob("*.safetensors"))
    assert len(cache) == 4
    # rerun without --skip-existing: features come from the cache, numbers identical
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert main(_args(fx, model, out)) == 0
    z2 = json.loads(next(out.glob("zeroshot__*.json")).read_text())
    assert z2["metrics"] == z["metrics"] and z2["extra"]["embed_seconds"] == 0.0
    # --skip-existing: nothing is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert main(_args(fx, model, out, "--skip-existing")) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.json")} == mtimes
    # a changed setting (protocol) is not "existing"
    assert main(_args({"crope": fx["crope"]}, model, out, "--skip-existing", "--protocol", "crope=official")) == 0
    c2 = json.loads(next(out.glob("crope__*.json")).read_text())
    assert c2["eval_config"]["protocol"] == "official" and c2["n_samples"] == 3


def test_missing_benchmark_reported_others_written(setup, tmp_path):
    root, fx, model = setup
    rc = main(["--models", model, "--benchmarks", "imagenet1k", "sugarcrepe", "--out", str(tmp_path),
               f"--root=imagenet1k={fx['imagenet1k']}", f"--root=sugarcrepe={tmp_path / 'nope'}",
               "--num-workers", "0", "--n-boot", "0", "--no-progress"])
    assert rc == 1 and len(list(tmp_path.glob("imagenet1k__*.json"))) == 1
    with pytest.raises(Exception, match="choose one of"):
        main(["--models", model, "--benchmarks", "imagenett", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="presets"):
        main(["--config", "no_such_preset"])


def test_dataloader_workers_give_same_features(setup, tmp_path):
    root, fx, model = setup
    from cultureclip.backbone import create_backbone
    from cultureclip.inference import Embedder
    from eval_suite.benchmarks import create_benchmark
    from eval_suite.benchmarks.embedding import embed_image_refs

    emb = Embedder(create_backbone(model), batch_size=4)
    refs = create_benchmark("zeroshot", root=fx["zeroshot"]).load().images
    a, va = embed_image_refs(emb, refs, num_workers=0, progress=False)
    b, vb = embed_image_refs(emb, refs, num_workers=2, progress=False)
    assert (va == vb).all() and va.sum() == len(refs) - 1
    assert (a - b).abs().max() < 1e-5
    ok = [i for i in range(len(refs)) if va[i]]
    ref_feats = emb.embed_images([refs[i].open() for i in ok])  # the plain Embedder path
    assert (a[ok] - ref_feats).abs().max() < 1e-5


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate CLI not installed")
def test_accelerate_two_processes_match_single(setup, tmp_path):
    root, fx, model = setup
    sub = {"imagenet1k": fx["imagenet1k"], "zeroshot": fx["zeroshot"]}
    single = tmp_path / "single"
    assert main(_args(sub, model, single, "--no-cache")) == 0
    multi = tmp_path / "multi"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": str(repo)}
    # `--cpu --num_processes 2` starts one process without mpirun; the torchrun launcher (--multi_gpu)
    # with ACCELERATE_USE_CPU=1 starts two that talk over gloo.
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(port),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "eval_suite.run",
           *_args(sub, model, multi)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in sub:
        a = json.loads(next(single.glob(f"{name}__*.json")).read_text())
        b = json.loads(next(multi.glob(f"{name}__*.json")).read_text())
        assert b["extra"]["world_size"] == 2
        assert a["n_samples"] == b["n_samples"]
        for k, v in a["metrics"].items():
            assert b["metrics"][k] == pytest.approx(v, abs=1e-6), (name, k)
    assert not list((multi / ".embedding_cache").glob("*part*"))
