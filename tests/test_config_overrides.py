"""`key=value` overrides of lists and mappings (cultureclip.config), as the eval config uses them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from cultureclip.config import ConfigError, load_config


@dataclass
class Sub:
    lr: float = 1e-3


@dataclass
class Cfg:
    models: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=lambda: {"crope": "data/crope"})
    options: dict[str, dict] = field(default_factory=dict)
    protocols: dict[str, Literal["official", "paper"]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sub: Sub = field(default_factory=Sub)


def test_lists_are_set_whole_and_keep_model_specs_intact():
    cfg = load_config(Cfg, None, ["models=[open_clip:ViT-B-32@openai, hf:org/name, runs/v1.2/model]"])
    assert cfg.models == ["open_clip:ViT-B-32@openai", "hf:org/name", "runs/v1.2/model"]
    assert load_config(Cfg, None, ["models=hf:org/name"]).models == ["hf:org/name"]
    assert load_config(Cfg, None, ['models=["a, b", "c"]']).models == ["a, b", "c"]


def test_mapping_entries_merge_into_the_preset(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("roots: {geode: /old}\noptions: {worldcuisines: {kb_root: kb, split: test}}\n")
    cfg = load_config(Cfg, p, ["roots.geode=/data/geode", "options.worldcuisines.kb_root=/data/kb",
                               "names.runs/v1.2/model=tuned", "options.cvqa.subset=Japan.Japanese"])
    assert cfg.roots == {"crope": "data/crope", "geode": "/data/geode"}  # the default entry is kept
    assert cfg.options == {"worldcuisines": {"kb_root": "/data/kb", "split": "test"},
                           "cvqa": {"subset": "Japan.Japanese"}}
    assert cfg.names == {"runs/v1.2/model": "tuned"}  # everything after the field name is the key


def test_entry_values_are_coerced_and_choices_checked():
    assert load_config(Cfg, None, ["counts.a=3", "names.x=yes"]) == Cfg(counts={"a": 3}, names={"x": "yes"})
    assert load_config(Cfg, None, ["protocols.crope=paper"]).protocols == {"crope": "paper"}
    with pytest.raises(ConfigError, match=r"protocols\.crope: 'papr' is not a valid choice; valid: official, paper"):
        load_config(Cfg, None, ["protocols.crope=papr"])
    with pytest.raises(ConfigError, match=r"counts\.a: expected an integer"):
        load_config(Cfg, None, ["counts.a=1.5"])
    with pytest.raises(ConfigError, match=r"options\.wc: expected a mapping"):
        load_config(Cfg, None, ["options.wc=x"])
    with pytest.raises(ConfigError, match="names no entry"):
        load_config(Cfg, None, ["roots.=x"])


def test_yaml_mappings_are_checked_too(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("protocols: {crope: offical}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: protocols\.crope: 'offical' is not a valid choice"):
        load_config(Cfg, p)


def test_sections_and_unknown_keys_unchanged():
    assert load_config(Cfg, None, ["sub.lr=1e-4"]).sub.lr == 1e-4
    with pytest.raises(ConfigError, match="not a section"):
        load_config(Cfg, None, ["models.x=1"])
    with pytest.raises(ConfigError, match="unknown config key 'rots.x'"):
        load_config(Cfg, None, ["rots.x=1"])
