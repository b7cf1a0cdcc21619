"""Benchmark error messages: they say where the data goes, the CLI accepts the roots they suggest, and
they never show an absolute install path where a relative one does."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eval_suite.benchmarks import BenchmarkError, BenchmarkNotFoundError, create_benchmark
from eval_suite.benchmarks.base import show_path
from tests.fixtures import make_benchmark_fixtures as F


def test_sugarcrepe_without_coco_images_says_where_they_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    F.make_sugarcrepe(Path("sc"), with_images=False)
    with pytest.raises(BenchmarkNotFoundError) as exc:
        create_benchmark("sugarcrepe", root="sc").load()
    msg = str(exc.value)
    assert "val2017.zip" in msg and "sc/val2017" in msg and "--option sugarcrepe.images=PATH" in msg
    assert "5 pairs" in msg
    (tmp_path / "sc" / "val2017").mkdir()  # the folder exists but holds other files
    with pytest.raises(BenchmarkNotFoundError, match="holds none of the images"):
        create_benchmark("sugarcrepe", root="sc").load()


def test_worldcuisines_kb_root_from_the_cli(tmp_path, monkeypatch):
    from eval_suite.run import build_parser, make_benchmark, resolve_config

    monkeypatch.chdir(tmp_path)
    F.make_worldcuisines(Path("wc"))
    monkeypatch.delenv("CULTURECLIP_WORLDCUISINES_KB", raising=False)
    # the message a missing KB gives suggests --root worldcuisines_kb=PATH ...
    with pytest.raises(BenchmarkNotFoundError, match=r"--root worldcuisines_kb=PATH") as exc:
        create_benchmark("worldcuisines", root="wc/vqa", kb_root="nowhere").load()
    assert str(tmp_path) not in str(exc.value)
    # ... and the CLI accepts exactly that
    args = ["--models", "open_clip:ViT-B-32", "--benchmarks", "worldcuisines", "--root", "worldcuisines=wc/vqa",
            "--root", "worldcuisines_kb=wc/food-kb"]
    cfg = resolve_config(build_parser().parse_args(args))
    bench = make_benchmark(cfg, "worldcuisines")
    assert bench.options["kb_root"] == "wc/food-kb"
    assert sum(im.data is not None for im in bench.load().images) == 4
    # an explicit option still wins; an unknown --root name is refused with the choices
    cfg = resolve_config(build_parser().parse_args(args + ["--option", "worldcuisines.kb_root=elsewhere"]))
    assert make_benchmark(cfg, "worldcuisines").options["kb_root"] == "elsewhere"
    with pytest.raises(SystemExit, match="worldcuisines_kb"):
        resolve_config(build_parser().parse_args(args + ["--root", "worldcuisine=x"]))


def test_no_absolute_paths_in_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    F.make_sugarcrepe(tmp_path / "sc", with_images=False)  # an absolute root inside the working directory
    F.make_dollar_street_nlphuji(tmp_path / "ds")
    (tmp_path / "ds" / "dollarstreet_test_images.zip").unlink()
    (tmp_path / "geo").mkdir()
    (tmp_path / "geo" / "index.csv").write_text("file_path,object,region,ip_country\nbag/x.jpg,bag,Africa,Nigeria\n")
    F.make_wds_classification(tmp_path / "wds", ["kimono", "sari"])
    (tmp_path / "wds" / "test" / "1.tar").unlink()
    (tmp_path / "crope").mkdir()
    cases = [("sugarcrepe", tmp_path / "sc"), ("dollar_street", tmp_path / "ds"), ("geode", tmp_path / "geo"),
             ("imagenet1k", tmp_path / "wds"), ("crope", tmp_path / "crope"), ("crope", tmp_path / "missing"),
             ("globalrg_retrieval", tmp_path / "crope"), ("zeroshot", tmp_path / "crope"), ("cultwin", tmp_path / "crope"),
             ("cvqa", tmp_path / "crope"), ("flickr30k", tmp_path / "crope")]
    for name, root in cases:
        with pytest.raises(BenchmarkError) as exc:
            create_benchmark(name, root=str(root)).load()
        msg = str(exc.value)
        assert str(tmp_path) not in msg, (name, msg)
        assert root.name in msg, (name, msg)  # the path is still named, relative to the working directory
    assert show_path(tmp_path / "a" / "b") == "a/b" and show_path(tmp_path) == "."
    assert show_path(Path.home() / ".cache" / "huggingface") == "~/.cache/huggingface"
    assert show_path("rel/p") == "rel/p"


def test_hub_cache_paths_are_shown_from_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cache = tmp_path / "home" / ".cache" / "huggingface" / "hub" / "snap"
    shutil.copytree(F.make_sugarcrepe(tmp_path / "src", with_images=False), cache)
    with pytest.raises(BenchmarkNotFoundError) as exc:
        create_benchmark("sugarcrepe", root=str(cache)).load()
    assert "~/.cache/huggingface/hub/snap/val2017" in str(exc.value) and str(tmp_path) not in str(exc.value)
