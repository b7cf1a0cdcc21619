"""The project installs as a package (pyproject.toml) and its console scripts run outside the checkout."""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_every_entry_point_names_a_main():
    assert {"cultureclip-train", "cultwin-synth", "cultwin-import", "cultureclip-eval", "cultureclip-confusions",
            "cultureclip-app"} <= set(SCRIPTS)
    for name, target in SCRIPTS.items():
        mod, func = target.split(":")
        if name == "cultureclip-confusions" and importlib.util.find_spec(mod) is None:
            continue  # eval_suite.confusions lands with the confusion-metrics work
        assert callable(getattr(importlib.import_module(mod), func)), name


def test_requirements_are_the_package_dependencies():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}


def _help(cmd: list[str], cwd: Path, env: dict) -> str:
    r = subprocess.run(cmd + ["--help"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _tracked_package_files() -> list[str]:
    """Every tracked non-Python file of the packages and of configs/, as its path inside an installed wheel."""
    out = subprocess.run(["git", "ls-files", "cultureclip", "synth", "eval_suite", "demo", "world", "configs"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return sorted(("cultureclip/" + f if f.startswith("configs/") else f) for f in out if not f.endswith(".py"))


def test_every_package_is_listed_in_pyproject():
    """pyproject.toml lists its packages (configs/ maps into cultureclip.configs): a new one must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for d in ("cultureclip", "synth", "eval_suite", "demo", "world") for p in (ROOT / d).rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.mark.slow
def test_wheel_installs_and_scripts_run_outside_the_repo(tmp_path):
    """Build a wheel from a copy of the sources, install it into a folder, and run every console script from
    another folder with the checkout off the path: synthesis, training and evaluation on their `smoke` presets
    (the presets, the CultureCLIP-Tiny architecture and the ImageNet id list are package data), the app's help."""
    from tests.fixtures import make_benchmark_fixtures as F

    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi")
    for d in ("cultureclip", "synth", "eval_suite", "demo", "world", "configs"):
        shutil.copytree(ROOT / d, src / d, ignore=ignore)
    for f in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600, env=ENV)
    wheel = next((tmp_path / "dist").glob("cultureclip-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _tracked_package_files() if f not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert {"cultureclip/configs/train/paper_b32.yaml", "cultureclip/configs/models/CultureCLIP-World.json",
            "eval_suite/benchmarks/data/imagenet_wnids.txt", "synth/importer.py", "world/build.py"} <= names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert all(f"{k} = {v}" in entry for k, v in SCRIPTS.items())

    site = tmp_path / "site"  # the installed dependencies are reused (no network): only the project is installed
    subprocess.run(pip + ["install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=600, env=ENV)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**ENV, "PYTHONPATH": str(site), "GRADIO_ANALYTICS_ENABLED": "False"}
    py = [sys.executable, "-c"]
    out = _run(py + ["import synth, cultureclip, eval_suite, world; from cultureclip.config import config_dir; "
                     "print(synth.__file__, cultureclip.__file__, eval_suite.__file__, world.__file__, config_dir())"],
               work, env)
    assert all(str(site) in p for p in out.split())  # the installed copy, not the checkout
    bin_ = site / "bin"
    assert "--from" in _run([str(bin_ / "cultwin-import"), "--help"], work, env)
    assert "--models" in _run([str(bin_ / "cultureclip-confusions"), "--help"], work, env)
    assert "--dataset" in _run([str(bin_ / "cultureclip-app"), "--help"], work, env)
    # presets by name, as a user of the wheel types them; the catalog (package data) loads too
    out = _run(py + ["from cultureclip.config import find_preset, preset_names; from synth.catalog import load_catalog;"
                     "print(preset_names('train'), preset_names('eval'), find_preset('eval', 'paper').name,"
                     " len(load_catalog()))"], work, env)
    assert "'paper_b32'" in out and "'smoke'" in out and "paper.yaml" in out and int(out.split()[-1]) > 100

    # synthesis -> training -> evaluation, each on its smoke preset
    _run([str(bin_ / "cultwin-synth"), "--config", "smoke", "--out", "synth"], work, env)
    dataset = work / "synth" / "dataset"
    assert (dataset / "manifest.parquet").is_file()
    _run([str(bin_ / "cultureclip-train"), "--config", "smoke", f"data.dataset={dataset}", "out_dir=train",
          "optim.epochs=1"], work, env)
    model = work / "train" / "model"
    assert (model / "cultureclip_checkpoint.json").is_file() or any(model.iterdir())
    inet = F.make_imagenet_val_tree(tmp_path / "inet")  # ImageNet's own layout: WordNet-id class folders
    _run([str(bin_ / "cultureclip-eval"), "--config", "smoke", f"models=[{model}]", "benchmarks=[cultwin, imagenet1k]",
          f"roots.cultwin={dataset}", f"roots.imagenet1k={inet}", "out=results", "n_boot=0"], work, env)
    results = sorted((work / "results").glob("*.json"))
    assert {r.name.split("__")[0] for r in results} >= {"cultwin", "imagenet1k"}, results
    out = _run(py + [f"from eval_suite.benchmarks import create_benchmark; "
                     f"names = create_benchmark('imagenet1k', root={str(inet)!r}).load().classnames; "
                     f"print(len(names), names[:4])"], work, env)
    # the ids mapped through the installed id list (all 1,000 classes are named, as the benchmark scores them)
    assert "1000 ['tench', 'goldfish', 'great white shark', 'tiger shark']" in out


def test_installed_console_script_runs_outside_the_repo(tmp_path):
    """Where the project is installed (make install: pip install -e .), the real script runs from anywhere."""
    script = Path(sys.executable).parent / "cultwin-import"
    if script.exists():
        assert "--from" in _help([str(script)], tmp_path, ENV)
        assert "--config" in _help([str(Path(sys.executable).parent / "cultureclip-train")], tmp_path, ENV)
    else:  # not installed here: the same entry points as modules, still from another working directory
        env = {**ENV, "PYTHONPATH": str(ROOT)}
        assert "--from" in _help([sys.executable, "-m", "synth.importer"], tmp_path, env)
        assert "--config" in _help([sys.executable, "-m", "cultureclip.train"], tmp_path, env)


def test_presets_resolve_by_name_or_path(tmp_path):
    """`--config smoke` names a preset of the entry point's kind wherever the package is installed; a YAML path
    works as before; a wrong name lists the presets."""
    from cultureclip.config import ConfigError, config_dir, find_preset

    assert find_preset("train", "smoke") == config_dir() / "train" / "smoke.yaml"
    assert find_preset("eval", "paper").is_file() and find_preset("train", None) is None
    own = tmp_path / "mine.yaml"
    own.write_text("seed: 1\n")
    assert find_preset("train", str(own)) == own
    with pytest.raises(ConfigError, match=r"'smok' is neither a YAML file nor a train preset; presets: \[.*'smoke'"):
        find_preset("train", "smok")
    with pytest.raises(ConfigError, match="nor an eval preset"):
        find_preset("eval", str(tmp_path / "absent.yaml"))
