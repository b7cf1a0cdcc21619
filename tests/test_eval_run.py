"""The runner: results files, embedding cache, --skip-existing, unreadable images, multi-process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval_suite import results as R
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


def _write_schema_1(path: Path) -> None:
    """Rewrite a result file the way schema 1 stored groups: {"field=value|...": {metric: v, "n": n}} + group_ci."""
    data = json.loads(path.read_text())
    groups, group_ci = {}, {}
    for g in data["groups"]:
        name = "|".join(f"{k}={v}" for k, v in g["fields"].items())
        groups[name] = {**g["metrics"], "n": g["n"]}
        if "ci" in g:
            group_ci[name] = g["ci"]
    data.update(schema_version=1, groups=groups, group_ci=group_ci)
    path.write_text(json.dumps(data))


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
    # --skip-existing: nothing is rewritten, also not a result written in the old schema 1 (groups keyed
    # by flattened names), which is upgraded when read
    crope = next(out.glob("crope__*.json"))
    current = R.read_result(crope)
    assert current["groups"] and all("ci" in g for g in current["groups"])
    _write_schema_1(crope)
    assert R.read_result(crope) == current
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


def test_results_carry_model_identity(setup, tmp_path):
    """A result names its model as data (name, role, base, training config, weights hash); tables and the
    demo join on those fields, not on folder names."""
    from types import SimpleNamespace

    from cultureclip.backbone import create_backbone
    from cultureclip.checkpoint import save_model
    from demo.handlers import _base_tuned_tags
    from eval_suite import tables as T

    root, fx, model = setup
    train_cfg = {"loss": {"w_cap": 0.7, "w_con": 0.3}, "optim": {"lr": 1e-5}}
    exported = save_model(create_backbone(model), tmp_path / "run-a" / "model",
                          {"name": "twin-run-7", "config": train_cfg, "config_hash": "abc123", "step": 5})
    out = tmp_path / "out"
    crope = {"crope": fx["crope"]}
    assert main(_args(crope, str(exported), out, "--role", f"{exported}=tuned")) == 0
    assert main(_args(crope, model, out, "--role", f"{model}=base", "--name", f"{model}=plain")) == 0
    results = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in out.glob("crope__*.json")}
    tuned, base = results[str(exported)], results[model]
    ident = tuned["model_identity"]
    assert (ident["name"], ident["role"], ident["base_spec"], ident["step"]) == ("twin-run-7", "tuned", model, 5)
    assert ident["weights_sha"] == tuned["checkpoint_sha"] and ident["format"] == "open_clip"
    assert tuned["model_config"] == train_cfg and ident["train_config"] == train_cfg
    assert base["model_identity"]["name"] == "plain" and base["model_identity"]["role"] == "base"
    assert base.get("model_config") is None  # not one of our training runs

    frame = T.load_frame(out)
    roles = dict(frame[["model", "model_role"]].drop_duplicates().itertuples(index=False))
    assert roles == {str(exported): "tuned", model: "base"}
    assert T.ablation_params(frame, ["w_cap"]).loc[tuned["model_tag"], "w_cap"] == 0.7
    # the demo finds base and tuned by role when other models are loaded (names say nothing)
    services = SimpleNamespace(config=SimpleNamespace(base="hf:someone/else", tuned="./another/folder"))
    assert _base_tuned_tags(services, frame) == (base["model_tag"], tuned["model_tag"])
    # ... and by spec when the loaded models are the evaluated ones, whatever the roles say
    services = SimpleNamespace(config=SimpleNamespace(base=str(exported), tuned=model))
    assert _base_tuned_tags(services, frame) == (tuned["model_tag"], base["model_tag"])


def test_twin_accuracy_is_one_definition(tmp_path, tiny_open_clip_dir):
    """Training validation and eval_suite report the same twin accuracy for the same model and split
    (they once logged 0.740 and 0.752): both call cultureclip.twins.twin_scores."""
    import torch

    from cultureclip.backbone import create_backbone
    from cultureclip.data import read_manifest
    from cultureclip.twins import twin_scores
    from cultureclip.train import twin_accuracy as validation
    from eval_suite.benchmarks import create_benchmark
    from eval_suite.run import EvalConfig, run_sweep
    from tests.cultwin_fixture import make_tiny_cultwin

    ds = make_tiny_cultwin(tmp_path / "ds", per_concept=8)
    bb = create_backbone(str(tiny_open_clip_dir))
    val = validation(bb, read_manifest(ds).split("test"))
    out = tmp_path / "res"
    run_sweep(EvalConfig(models=[str(tiny_open_clip_dir)], benchmarks=["cultwin"], roots={"cultwin": str(ds)},
                         out=str(out), n_boot=0, num_workers=0, progress=False, no_cache=True))
    res = json.loads(next(out.glob("cultwin__*.json")).read_text())
    assert res["metrics"]["twin_acc"] == pytest.approx(val["twin_acc"], abs=1e-6)
    by_region = [g for g in res["groups"] if list(g["fields"]) == ["region"]]
    assert sum(g["metrics"].get("n_twin", 0) for g in by_region) == val["n_twin"]
    # the definition itself: own beats EVERY twin (strictly); images without twins are left out
    sims = torch.tensor([[0.9, 0.8, 0.1], [0.5, 0.6, 0.0], [0.2, 0.1, 0.7], [0.3, 0.3, 0.9]])
    tw = twin_scores(sims, torch.tensor([0, 0, 1, 2]), {0: [1], 1: [0, 2], 2: [1]})
    assert tw.rows.tolist() == [0, 1, 2, 3] and tw.correct.tolist() == [True, False, False, True]
    assert tw.margin.tolist() == pytest.approx([0.1, -0.1, -0.6, 0.6])
    none = twin_scores(sims, torch.tensor([0, 1]), {})
    assert none.rows.numel() == 0 and none.twin_acc != none.twin_acc  # NaN: no image has a twin


def test_embedding_cache_key_is_the_same_in_every_process(tiny_open_clip_dir, tiny_hf_clip_dir):
    """The key must not depend on the process (a function's address in the transform's repr once made
    every process, and every later run, miss the cache, and broke the multi-process exchange)."""
    from cultureclip.backbone import create_backbone
    from eval_suite.cache import preprocess_signature

    code = ("import sys; from cultureclip.backbone import create_backbone; from eval_suite.cache import "
            "preprocess_signature as p; print(p(create_backbone(sys.argv[1])))")
    for model in (tiny_open_clip_dir, tiny_hf_clip_dir):
        here = preprocess_signature(create_backbone(str(model)))
        there = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=Path(__file__).parent.parent)
        assert there.returncode == 0, there.stderr[-2000:]
        assert there.stdout.strip().splitlines()[-1] == here


def test_evaluate_one_is_the_sweeps_single_evaluation_and_reuses_a_current_result(setup, tmp_path, monkeypatch):
    """eval_suite.run.evaluate_one: one (model, benchmark) -> the same result the sweep writes; with reuse (or
    compute=False) a result of these weights and settings is returned without embedding anything, and a result
    of other weights is not."""
    import eval_suite.run as run
    from cultureclip.backbone import create_backbone
    from cultureclip.checkpoint import checkpoint_sha
    from cultureclip.inference import Embedder

    root, fx, model = setup
    cfg = run.EvalConfig(models=[model], benchmarks=["crope"], out=str(tmp_path / "sweep"), roots={"crope": str(fx["crope"])},
                         batch_size=4, num_workers=0, n_boot=20, progress=False)
    [swept] = run.run_sweep(cfg)
    bench = run.make_benchmark(cfg, "crope")
    emb = Embedder(create_backbone(model, device="cpu"), batch_size=4)
    path = tmp_path / "one" / swept.name
    assert run.evaluate_one(cfg, emb, bench, model, path, compute=False) is None  # nothing there yet
    assert run.evaluate_one(cfg, emb, bench, model, path) == path
    mine, theirs = R.read_result(path), R.read_result(swept)
    assert mine["config_hash"] == theirs["config_hash"] and mine["checkpoint_sha"] == theirs["checkpoint_sha"]
    assert mine["metrics"] == theirs["metrics"]

    def no_work(*a, **kw):
        raise AssertionError("a current result was recomputed")

    monkeypatch.setattr(run, "embed_benchmark", no_work)
    assert run.evaluate_one(cfg, emb, bench, model, path, reuse=True) == path
    assert run.evaluate_one(cfg, emb, bench, model, path, compute=False) == path
    other = "0" * len(checkpoint_sha(emb.backbone))  # the same file for other weights: not reused
    assert run.evaluate_one(cfg, emb, bench, model, path, sha=other, compute=False) is None
    with pytest.raises(AssertionError, match="recomputed"):
        run.evaluate_one(cfg, emb, bench, model, path, sha=other, reuse=True)
