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


# ---------------------------------------------------------------------------------------------
# A copy with a renamed or missing column: the error names the column and the columns found
# ---------------------------------------------------------------------------------------------
def _rename_parquet_column(root: Path, old: str, new: str) -> Path:
    import pyarrow.parquet as pq

    for f in root.rglob("*.parquet"):
        table = pq.read_table(f)
        pq.write_table(table.rename_columns([new if c == old else c for c in table.column_names]), f)
    return root


def _rename_in_json(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(f'"{old}"', f'"{new}"'), encoding="utf-8")


def _renamed_copies(tmp: Path) -> list[tuple[str, dict, Path, str, str]]:
    """(benchmark, options, root, missing column, a column the message must list as found)."""
    import csv

    cases = []
    for proto in ("paper", "official"):  # GlobalRG's `region` renamed `country`, under both protocols
        root = _rename_parquet_column(F.make_globalrg_retrieval(tmp / f"grr_{proto}"), "region", "country")
        cases.append(("globalrg_retrieval", {"protocol": proto}, root, "region", "country"))
    cases.append(("globalrg_grounding", {}, _rename_parquet_column(F.make_globalrg_grounding(tmp / "grg"),
                                                                    "concept", "name"), "concept", "name"))
    cases.append(("crope", {}, F.make_cvqa(tmp / "cvqa_as_crope"), "metadata", "Translated Question"))
    cases.append(("crope", {"protocol": "official"}, F.make_cvqa(tmp / "cvqa_as_crope2"), "answer", "Label"))
    cases.append(("cvqa", {}, _rename_parquet_column(F.make_cvqa(tmp / "cvqa"), "Translated Options", "Options_en"),
                  "Translated Options", "Options_en"))
    cases.append(("cvqa", {}, F.make_crope(tmp / "crope_as_cvqa"), "Label", "definition_images"))
    wc = F.make_worldcuisines(tmp / "wc")
    for f in (wc / "vqa").rglob("*.jsonl"):
        _rename_in_json(f, "multi_choice_answer", "mc_answer")
    cases.append(("worldcuisines", {"kb_root": str(wc / "food-kb")}, wc / "vqa", "multi_choice_answer", "mc_answer"))
    sc = F.make_sugarcrepe(tmp / "sc")
    for f in (sc / "data").glob("*.json"):
        _rename_in_json(f, "negative_caption", "negative")
    cases.append(("sugarcrepe", {}, sc, "negative_caption", "negative"))
    k = F.make_karpathy(tmp / "karpathy")
    _rename_in_json(k / "dataset_flickr30k.json", "sentences", "captions")
    cases.append(("flickr30k", {}, k, "sentences", "captions"))
    k2 = F.make_karpathy(tmp / "karpathy2")
    _rename_in_json(k2 / "dataset_flickr30k.json", "raw", "text")
    cases.append(("flickr30k", {}, k2, "raw", "text"))
    csv_root = tmp / "flickr_csv"
    csv_root.mkdir(parents=True)
    (csv_root / "flickr_annotations_30k.csv").write_text('filename,captions,split\n1.jpg,"[""a dog""]",test\n')
    cases.append(("flickr30k", {}, csv_root, "raw", "captions"))
    wc2 = F.make_worldcuisines(tmp / "wc2")
    _rename_parquet_column(wc2 / "food-kb", "image1_url", "image1_link")
    cases.append(("worldcuisines", {"kb_root": str(wc2 / "food-kb")}, wc2 / "vqa", "image1_url", "image1_link"))
    cases.append(("flickr30k", {}, _rename_parquet_column(F.make_nlphuji_flickr_parquet(tmp / "fpq"), "caption",
                                                          "captions"), "caption", "captions"))
    cases.append(("zeroshot", {}, _rename_parquet_column(F.make_zeroshot_parquet(tmp / "zpq", ["a", "b"]), "label",
                                                         "class"), "label", "class"))
    ds = F.make_dollar_street_nlphuji(tmp / "ds")
    with open(ds / "dollar_street_test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows[0] = ["monthly_income" if c == "income" else c for c in rows[0]]
    with open(ds / "dollar_street_test.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    cases.append(("dollar_street", {}, ds, "income", "monthly_income"))
    geo = tmp / "geo"
    geo.mkdir()
    (geo / "index.csv").write_text("file_path,category,region,ip_country\nbag/x.jpg,bag,Africa,Nigeria\n")
    cases.append(("geode", {}, geo, "object", "category"))
    # a WebDataset copy made for another task: retrieval shards (.txt) as ImageNet, classification (.cls) as Flickr
    (F.make_wds_retrieval(tmp / "wds_ret") / "classnames.txt").write_text("tench\ngoldfish\n")
    cases.append(("imagenet1k", {}, tmp / "wds_ret", ".cls", "txt"))
    cases.append(("flickr30k", {}, F.make_wds_classification(tmp / "wds_cls", ["kimono", "sari"]), ".txt", "cls"))
    return cases


def test_missing_columns_are_named_with_the_columns_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, opts, root, missing, found in _renamed_copies(Path("copies")):
        with pytest.raises(BenchmarkError) as exc:
            create_benchmark(name, root=str(root), **opts).load()
        msg = str(exc.value)
        assert f"'{missing}'" in msg or f"{missing} member" in msg, (name, opts, msg)
        assert found in msg.split("found", 1)[-1], (name, opts, msg)  # the columns that are there
        assert name in msg and str(tmp_path) not in msg, (name, msg)
        assert "no samples found" not in msg and "no universal" not in msg and "no region has" not in msg


def test_globalrg_gold_without_universal_is_named(tmp_path):
    root = F.make_globalrg_retrieval(tmp_path / "grr")
    (tmp_path / "gold.csv").write_text("concept,index\nwedding,0\n")
    with pytest.raises(BenchmarkError, match=r"lacks the column\(s\) 'universal' \(found: 'concept', 'index'\)"):
        create_benchmark("globalrg_retrieval", root=str(root), protocol="official", gold=str(tmp_path / "gold.csv")).load()


def test_cultwin_manifest_without_a_column_lists_the_columns_found(tmp_path):
    import pandas as pd

    from cultureclip.data import ManifestError

    root = F.make_cultwin(tmp_path / "cw")
    df = pd.read_parquet(root / "manifest.parquet").rename(columns={"concept_id": "concept"})
    df.to_parquet(root / "manifest.parquet")
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['concept_id'\] \(found: .*'concept'"):
        create_benchmark("cultwin", root=str(root)).load()


@pytest.mark.parametrize("content", ["", "id,country.name,region.id,imageRelPath,topics,income\n"])
def test_empty_dollar_street_csv_says_so(tmp_path, caplog, content):
    root = F.make_dollar_street_nlphuji(tmp_path / "ds")
    (root / "dollar_street_test.csv").write_text(content)
    with caplog.at_level("WARNING"), pytest.raises(BenchmarkError) as exc:
        create_benchmark("dollar_street", root=str(root)).load()
    msg = str(exc.value)
    assert "dollar_street_test.csv" in msg and ("is empty" in msg or "has a header but no rows" in msg), msg
    assert "0 classes" not in caplog.text and "no samples found" not in msg
