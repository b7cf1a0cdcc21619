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
    build(world, "smoke", seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in watched} == before
