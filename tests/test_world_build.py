"""CI-sized offline twin world: the whole loop (pretrain data -> base -> synth.run CulTwin -> fine-tune with
the twin loss -> eval_suite) on a few real flag twins, with a real assertion: CultureCLIP beats the base."""
import json
import time
from pathlib import Path

import pytest


def _synth_config_from_override_strings(out: Path, preset, reference: Path | None):
    """The world's synth config as world.build made it before it was typed: key=value override strings."""
    from cultureclip.config import load_config
    from synth.run import SynthConfig
    from synth.world import SYNTH_PRESET

    ov = [f"out={out / 'synth'}", f"captions.n={preset.captions}", f"images.per_caption={preset.images_per_caption}",
          f"images.width={preset.size}", f"images.height={preset.size}",
          f"generator.kwargs={{difficulty: {preset.difficulty}}}", f"export.dir={out / 'dataset'}"]
    if preset.flags:
        ov.append("catalog.concepts=[" + ",".join(preset.flags) + "]")
    if reference is not None:
        ov.append(f"filter.clip_model={reference}")
    return load_config(SynthConfig, SYNTH_PRESET, ov)


@pytest.mark.parametrize("reference", [None, "models/base"])
@pytest.mark.parametrize("preset_name", ["full", "smoke"])
def test_typed_synth_config_equals_the_override_strings(tmp_path, preset_name, reference):
    """The typed world synth config is the very config the key=value strings built, for every preset."""
    import dataclasses

    from cultureclip.config import to_dict
    from world.build import PRESETS, synth_config

    assert set(PRESETS) == {"full", "smoke"}  # a new preset joins the parametrization
    preset = PRESETS[preset_name]
    ref = tmp_path / reference if reference else None
    typed = synth_config(tmp_path / "w", preset, ref)
    assert to_dict(typed) == to_dict(_synth_config_from_override_strings(tmp_path / "w", preset, ref))
    assert typed.images.width == preset.size and typed.generator.kwargs == {"difficulty": preset.difficulty}
    # a changed preset changes the config the same way both ways (the test can fail)
    other = dataclasses.replace(preset, size=preset.size + 16, difficulty=0.25, flags=["flag_chad"])
    assert to_dict(synth_config(tmp_path / "w", other, ref)) == to_dict(
        _synth_config_from_override_strings(tmp_path / "w", other, ref))
    assert to_dict(synth_config(tmp_path / "w", other, ref)) != to_dict(typed)


@pytest.mark.slow
def test_smoke_world_cultureclip_beats_base(tmp_path):
    import torch

    from world.build import build

    torch.set_num_threads(2)
    t0 = time.time()
    summary = build(tmp_path / "world", "smoke", seed=0, progress=False)
    elapsed = time.time() - t0
    res = {}
    for f in (tmp_path / "world" / "results").glob("*.json"):
        r = json.loads(f.read_text())
        ident = r["model_identity"]  # results name their model as data; file names are not parsed
        assert ident["role"] == ("base" if ident["name"] == "base" else "tuned")
        res[(r["benchmark"], ident["name"])] = r["metrics"]
    base, tuned = res[("cultwin", "base")], res[("cultwin", "cultureclip")]
    print(f"smoke world in {elapsed:.0f}s: base twin_acc {base['twin_acc']:.3f} -> CultureCLIP {tuned['twin_acc']:.3f}; "
          f"attributes {res[('world_attributes', 'base')]['concept_acc1']:.3f} -> "
          f"{res[('world_attributes', 'cultureclip')]['concept_acc1']:.3f}")
    assert tuned["twin_acc"] >= base["twin_acc"] + 0.15, (base, tuned)
    assert tuned["concept_acc1"] > base["concept_acc1"]
    # the artifacts the app uses exist and load
    from cultureclip.backbone import create_backbone
    from cultureclip.data import read_manifest

    create_backbone(summary["models"]["cultureclip"])
    m = read_manifest(summary["dataset"], check_images=False)
    assert set(m.frame["split"]) == {"train", "val", "test"}
    # rerun: every step cached, nothing recomputed (no step marker, model or result file is rewritten)
    world = tmp_path / "world"
    watched = [*world.rglob("DONE.json"), *(world / "results").glob("*.json"), *(world / "models").rglob("*.safetensors")]
    assert len(watched) >= 8
    before = {p: p.stat().st_mtime_ns for p in watched}
    assert build(world, "smoke", seed=0, progress=False)["timings_s"] == {}
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    # the checkout moved (the world copied elsewhere, the original gone): still nothing reruns
    import shutil

    moved = tmp_path / "elsewhere" / "world"
    shutil.copytree(world, moved, symlinks=True)
    shutil.rmtree(world)
    watched = [moved / p.relative_to(world) for p in watched]
    before = {p: p.stat().st_mtime_ns for p in watched}
    again = build(moved, "smoke", seed=0, progress=False)
    assert again["timings_s"] == {} and {p: p.stat().st_mtime_ns for p in watched} == before
    assert again["models"]["cultureclip"] == str(moved / "models" / "cultureclip")


def _tiny_chain(out: Path, calls: list[str], rows: str = "a\nb\n") -> str:
    """Two chained build steps like world.build's: data, then a 'model' keyed on the data's content."""
    from cultureclip.steps import content_fingerprint
    from world.build import run_step

    def make_data():
        calls.append("data")
        (out / "data").mkdir(parents=True, exist_ok=True)
        (out / "data" / "rows.txt").write_text(rows)
        return str(out / "data")

    data = run_step("data", out / "data", make_data, {"step": "data", "rows": rows}, out)

    def make_model():
        calls.append("model")
        (out / "model" / "weights.bin").write_bytes(b"w")
        return str(out / "model")

    return run_step("model", out / "model", make_model, {"step": "model", "deps": {"data": content_fingerprint(Path(data))}}, out)


def test_a_moved_or_copied_world_keeps_its_cache(tmp_path):
    """Steps are keyed on content, results stored relative: a copy elsewhere reruns nothing and points
    into itself (failed before: the cache key held the absolute data path and results absolute paths)."""
    import shutil

    calls: list[str] = []
    first = tmp_path / "checkout1" / "world"
    assert _tiny_chain(first, calls) == str(first / "model") and calls == ["data", "model"]
    assert "checkout1" not in (first / "model" / "DONE.json").read_text()  # no absolute path is stored
    moved = tmp_path / "checkout2" / "world"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    calls.clear()
    assert _tiny_chain(moved, calls) == str(moved / "model") and calls == []
    linked = tmp_path / "link"
    linked.symlink_to(moved, target_is_directory=True)
    assert _tiny_chain(linked, calls) == str(linked / "model") and calls == []
    _tiny_chain(moved, calls, rows="c\n")  # the data changed: the step reading it reruns
    assert calls == ["data", "model"]


def test_a_world_given_by_a_relative_path_reuses_its_steps(tmp_path, monkeypatch):
    """`python -m world.build --out w`: results are stored relative to the world, not to the working folder
    (failed before: a relative result was stored as `w/model` and read back as `w/w/model`)."""
    calls: list[str] = []
    monkeypatch.chdir(tmp_path)
    out = Path("w")
    assert _tiny_chain(out, calls) == str(out / "model") and calls == ["data", "model"]
    calls.clear()
    again = _tiny_chain(out, calls)
    assert calls == [] and Path(again).resolve() == (tmp_path / "w" / "model").resolve()


def test_a_symlinked_step_folder_is_unlinked_not_emptied(tmp_path):
    """A step that must rerun never deletes through a link: the link goes, its target survives."""
    from world.build import run_step

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    out = tmp_path / "world"
    out.mkdir()
    (out / "step").symlink_to(target, target_is_directory=True)
    run_step("step", out / "step", lambda: (out / "step" / "new.txt").write_text("x") and None, {"s": 1}, out)
    assert (target / "keep.txt").read_text() == "precious" and not (target / "new.txt").exists()
    assert not (out / "step").is_symlink() and (out / "step" / "new.txt").is_file()


def test_remove_and_move_never_follow_links(tmp_path):
    from cultureclip.fileio import move_path, remove_path

    target = tmp_path / "t"
    target.mkdir()
    (target / "f").write_text("1")
    (tmp_path / "l").symlink_to(target, target_is_directory=True)
    remove_path(tmp_path / "l")
    assert (target / "f").is_file() and not (tmp_path / "l").exists()
    (tmp_path / "dst").symlink_to(target, target_is_directory=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "g").write_text("2")
    move_path(tmp_path / "src", tmp_path / "dst")
    assert (target / "f").is_file() and (tmp_path / "dst" / "g").read_text() == "2" and not (tmp_path / "dst").is_symlink()


def test_world_removes_and_moves_only_through_fileio():
    """world/ deletes and moves files only through cultureclip.fileio (which never follows a link)."""
    import ast

    root = Path(__file__).resolve().parent.parent
    banned = {("shutil", "rmtree"), ("shutil", "move"), ("shutil", "copy2"), ("os", "remove"), ("os", "unlink"),
              ("os", "rmdir"), ("os", "replace"), ("os", "rename")}
    offenders = []
    for path in sorted((root / "world").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            f = node.func if isinstance(node, ast.Call) else None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in banned:
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {f.value.id}.{f.attr}")
    assert not offenders, offenders
