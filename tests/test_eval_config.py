"""The eval command line loads its config like train and synth: preset <- key=value overrides, with the old
flags as aliases from one table checked against EvalConfig."""
from __future__ import annotations

import dataclasses

import pytest

from cultureclip.config import ConfigError
from eval_suite.run import ALIASES, Alias, EvalConfig, check_aliases, parse_args, resolve_config, run_sweep


def _cfg(*argv: str) -> EvalConfig:
    return resolve_config(parse_args(list(argv)))


def test_flags_and_overrides_give_the_same_config():
    flags = _cfg("--config", "smoke", "--models", "open_clip:ViT-B-32@openai", "runs/v1.2/model",
                 "--benchmarks", "crope", "geode", "--out", "res", "--name", "runs/v1.2/model=tuned",
                 "--role", "runs/v1.2/model=tuned", "--root", "geode=/data/geode", "--protocol", "paper",
                 "--protocol", "crope=official", "--option", "worldcuisines.kb_root=/data/kb", "--skip-existing",
                 "--batch-size", "8", "--num-workers", "1", "--cache-dir", "c", "--no-cache", "--n-boot", "0",
                 "--device", "cpu", "--precision", "bf16", "--no-progress")
    overrides = _cfg("--config", "smoke", "models=[open_clip:ViT-B-32@openai, runs/v1.2/model]",
                     "benchmarks=[crope, geode]", "out=res", "names.runs/v1.2/model=tuned", "roles.runs/v1.2/model=tuned",
                     "roots.geode=/data/geode", "protocol=paper", "protocols.crope=official",
                     "options.worldcuisines.kb_root=/data/kb", "skip_existing=true", "batch_size=8", "num_workers=1",
                     "cache_dir=c", "no_cache=true", "n_boot=0", "device=cpu", "precision=bf16", "progress=false")
    assert flags == overrides
    assert flags.roots["geode"] == "/data/geode" and flags.roots["crope"] == "tests/fixtures/benchmarks/crope"
    assert flags.options["worldcuisines"] == {"kb_root": "/data/kb"} and flags.n_boot == 0
    # every field was set away from the preset by both spellings (the table covers them all)
    preset = _cfg("--config", "smoke")
    assert all(getattr(flags, f.name) != getattr(preset, f.name) for f in dataclasses.fields(EvalConfig))


def test_overrides_mix_with_flags_in_any_order_and_come_last():
    cfg = _cfg("--config", "smoke", "n_boot=0", "--out", "x", "--n-boot", "5", "--models", "a", "b", "batch_size=3")
    assert (cfg.models, cfg.out, cfg.n_boot, cfg.batch_size) == (["a", "b"], "x", 0, 3)


def test_choice_fields_are_refused_at_load_with_the_choices(tmp_path):
    with pytest.raises(SystemExit, match=r"precision: 'fp8' is not a valid choice; valid: fp32, fp16, bf16"):
        _cfg("--config", "smoke", "precision=fp8")
    with pytest.raises(SystemExit, match=r"protocols\.crope: 'papr' is not a valid choice"):
        _cfg("--config", "smoke", "--protocol", "crope=papr")
    with pytest.raises(SystemExit, match=r"protocol: 'offical' is not a valid choice"):
        _cfg("--config", "smoke", "--protocol", "offical")
    p = tmp_path / "e.yaml"
    p.write_text("models: [a]\nbenchmarks: [crope]\nprecision: half\n")
    with pytest.raises(SystemExit, match=r"e\.yaml: precision: 'half'"):
        _cfg("--config", str(p))
    with pytest.raises(SystemExit, match="unknown config key 'nboot'"):
        _cfg("--config", "smoke", "nboot=1")
    # a config built in code is checked before any model loads
    with pytest.raises(ConfigError, match="precision: 'fp8'"):
        run_sweep(EvalConfig(models=["no-such-model"], benchmarks=["crope"], precision="fp8"))


def test_unknown_root_names_are_refused_with_the_choices():
    for args in (["--root", "worldcuisine=x"], ["roots.worldcuisine=x"]):
        with pytest.raises(SystemExit, match=r"names no benchmark: \['worldcuisine'\]; choose from .*worldcuisines_kb"):
            _cfg("--config", "smoke", *args)
    with pytest.raises(ConfigError, match="worldcuisine"):
        run_sweep(EvalConfig(models=["m"], benchmarks=["crope"], roots={"worldcuisine": "x"}))


def test_protocol_choices_are_the_benchmarks_protocols():
    import typing

    from eval_suite.benchmarks import BENCHMARKS
    from eval_suite.run import Protocol

    assert set(typing.get_args(Protocol)) == {p for cls in BENCHMARKS.values() for p in cls.protocols}


def test_the_alias_table_is_checked_against_the_fields():
    check_aliases()
    with pytest.raises(RuntimeError, match="n_boot: no flag"):
        check_aliases(tuple(a for a in ALIASES if a.field != "n_boot"))
    with pytest.raises(RuntimeError, match=r"--seed: form 'value' does not fit seed|seed: not an EvalConfig field"):
        check_aliases(ALIASES + (Alias("--seed", "seed", "value"),))
    with pytest.raises(RuntimeError, match="--root: form 'value' does not fit roots"):
        check_aliases(tuple(dataclasses.replace(a, form="value") if a.flag == "--root" else a for a in ALIASES))


def test_bad_prompt_templates_are_refused_at_config_load(tmp_path):
    """A benchmark's `templates` option (a list or a file) needs exactly one placeholder per template."""
    with pytest.raises(SystemExit, match=r"options.imagenet1k.templates: .*'a {c} and a {c}' must have exactly one"):
        _cfg("--config", "smoke", "--option", "imagenet1k.templates=['a photo of a {c}.', 'a {c} and a {c}']")
    with pytest.raises(SystemExit, match=r"options.imagenet1k.templates: .*quote each one"):
        _cfg("--config", "smoke", "--option", "imagenet1k.templates=[a photo of a {c}.]")  # YAML reads {c} as a map
    bad = tmp_path / "templates.txt"
    bad.write_text("a photo of a {c}.\na photo of {}, a {}\n")
    with pytest.raises(SystemExit, match=r"templates file .*templates.txt: prompt template 'a photo of {}, a {}'"):
        _cfg("--config", "smoke", "--option", f"zeroshot.templates={bad}")
    good = _cfg("--config", "smoke", "--option", "imagenet1k.templates=['a photo of a {c}.', 'itap of a {}.']")
    assert good.options["imagenet1k"]["templates"]


def test_bad_templates_file_beside_the_data_is_refused_at_load(tmp_path):
    from eval_suite.benchmarks import BenchmarkError, create_benchmark
    from eval_suite.benchmarks.classification import templates_option
    from tests.fixtures import make_benchmark_fixtures as F

    root = F.make_zeroshot_folders(tmp_path / "zs", ["kimono", "sari"])
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n{c} or {c}\n")
    with pytest.raises(BenchmarkError, match=r"zeroshot_classification_templates.txt: prompt template '{c} or {c}'"):
        create_benchmark("zeroshot", root=str(root)).load()
    # a template option given as text is a list of templates, not a list of characters
    assert templates_option("a photo of a {c}.", "zeroshot") == ["a photo of a {c}."]
