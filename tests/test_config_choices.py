"""Choice fields are checked when a config loads (not at the step that first uses them); presets load."""
from __future__ import annotations

import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bad_schedule_fails_at_load_with_the_choices():
    from cultureclip.config import ConfigError, load_config
    from cultureclip.train import TrainConfig
    with pytest.raises(ConfigError, match=r"optim\.schedule: 'cosin' is not a valid choice; valid: cosine, linear, constant"):
        load_config(TrainConfig, None, ["optim.schedule=cosin"])


def test_bad_choice_in_yaml_names_the_file_and_field(tmp_path):
    from cultureclip.config import ConfigError, load_config
    from cultureclip.train import TrainConfig
    p = tmp_path / "t.yaml"
    p.write_text("optim:\n  schedule: cosin\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: optim\.schedule: 'cosin'"):
        load_config(TrainConfig, p)
    p.write_text("mixed_precision: no\n")  # YAML 1.1 reads this as False
    with pytest.raises(ConfigError, match="mixed_precision: False is not a valid choice.*quote the word"):
        load_config(TrainConfig, p)
    p.write_text('mixed_precision: "no"\n')
    assert load_config(TrainConfig, p).mixed_precision == "no"


@pytest.mark.parametrize("override, field", [
    ("lora.targets=[q, x]", "lora.targets"), ("lora.towers=[image, audio]", "lora.towers"),
    ("model.lock_tower=vision", "model.lock_tower"), ("loss.name=twins", "loss.name"),
    ("loss.twin_caption_source=both", "loss.twin_caption_source"), ("mixed_precision=fp8", "mixed_precision"),
])
def test_every_train_choice_field_is_checked(override, field):
    from cultureclip.config import ConfigError, load_config
    from cultureclip.train import TrainConfig
    with pytest.raises(ConfigError, match=rf"{field.replace('.', chr(92) + '.')}: .* is not a valid choice"):
        load_config(TrainConfig, None, [override])


@pytest.mark.parametrize("override, field", [
    ("llm.backend=opnai", "llm.backend"), ("llm.dtype=half", "llm.dtype"), ("llm.model_class=seq2seq", "llm.model_class"),
    ("twins.source=catalogue", "twins.source"), ("generator.kind=diffuser", "generator.kind"),
    ("generator.dtype=bfloat", "generator.dtype"), ("export.group_by=image", "export.group_by"),
])
def test_every_synth_choice_field_is_checked(override, field):
    from cultureclip.config import ConfigError, load_config
    from synth.run import SynthConfig
    with pytest.raises(ConfigError, match=rf"{field.replace('.', chr(92) + '.')}: .* is not a valid choice"):
        load_config(SynthConfig, ROOT / "configs/synth/smoke.yaml", [override])
    # null stays allowed where the field is optional
    if field in ("llm.dtype", "llm.model_class", "generator.dtype"):
        assert load_config(SynthConfig, None, [f"{field}=null"]) is not None


def test_choices_equal_the_registries():
    from cultureclip.loss import LOSSES
    from cultureclip.train import LossName
    from synth.generators import GENERATORS
    from synth.llm import BACKENDS
    from synth.run import GeneratorSection, LLMSection
    assert set(typing.get_args(LossName)) == set(LOSSES)
    hints = typing.get_type_hints(LLMSection)
    assert set(typing.get_args(hints["backend"])) == set(BACKENDS)
    kinds = typing.get_args(typing.get_type_hints(GeneratorSection)["kind"])
    assert set(kinds) == set(GENERATORS) | {"python"}


def test_config_built_in_code_is_validated():
    from cultureclip.config import ConfigError, validate_config
    from cultureclip.train import OptimConfig, TrainConfig
    with pytest.raises(ConfigError, match="optim.schedule"):
        validate_config(TrainConfig(optim=OptimConfig(schedule="cosin")))
    cfg = TrainConfig()
    assert validate_config(cfg) == cfg


def test_every_preset_loads():
    from cultureclip.config import load_config
    from cultureclip.train import TrainConfig
    from synth.run import SynthConfig
    presets = sorted((ROOT / "configs/train").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"paper_b32", "cultureclip_b32", "smoke"}
    for p in presets:
        load_config(TrainConfig, p)
    for p in sorted((ROOT / "configs/synth").glob("*.yaml")):
        load_config(SynthConfig, p)


def test_paper_preset_has_the_authors_published_settings():
    """Model cards of lukahh/cultureclip_lora_0314 / _0315_100k_32_05_05 and the authors' launch script."""
    from cultureclip.config import load_config
    from cultureclip.train import TrainConfig
    cfg = load_config(TrainConfig, ROOT / "configs/train/paper_b32.yaml")
    assert cfg.model.spec == "hf:openai/clip-vit-base-patch32"
    assert (cfg.lora.enabled, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (True, 4, 16.0, 0.1)
    assert cfg.lora.targets == ["q", "v"] and cfg.lora.towers == ["image", "text"]
    o = cfg.optim
    assert (o.lr, o.schedule, o.warmup_steps, o.epochs) == (1e-5, "linear", 100, 10)
    assert (o.beta1, o.beta2, o.eps) == (0.9, 0.999, 1e-8)  # adamw_torch defaults, as the cards print them
    assert cfg.data.batch_size * o.grad_accum == 2048  # 128 x 16 on one GPU (0315_100k card)
    assert o.weight_decay == 0.1 and o.clip_grad == 1.0  # launch script; HF default max_grad_norm
    assert (cfg.loss.w_cap, cfg.loss.w_con) == (0.7, 0.3) and cfg.seed == 42
    assert cfg.mixed_precision == "no" and cfg.data.augment is False
    ours = load_config(TrainConfig, ROOT / "configs/train/cultureclip_b32.yaml")
    assert ours.optim.schedule == "cosine" and ours.model.spec.startswith("open_clip:")
