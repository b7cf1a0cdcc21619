"""synth.importer: any image-caption-concept(-twin) table -> a CulTwin dataset that read_manifest accepts."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

FIX = Path(__file__).resolve().parent / "fixtures" / "importer"
# concept, twin value (an id, a display name, a list, an unknown name), region
ROWS = [("hanbok", "hanfu", "Asia"), ("hanfu", "Hanbok", "Asia"), ("gyoza", ["jiaozi"], "Asia"),
        ("jiaozi", "mandu", "Asia")]
MAP = "image=img,caption=text,concept=label,twin=twin_of"


def png(k: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (30 * k % 256, 255 - 20 * k, 7 * k % 256)).save(buf, format="PNG")
    return buf.getvalue()


def table(src: Path) -> list[dict]:
    """8 rows (2 images per concept) with image files under src/imgs/."""
    (src / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(8):
        concept, twin, region = ROWS[k // 2]
        (src / "imgs" / f"{k}.png").write_bytes(png(k))
        rows.append({"img": f"imgs/{k}.png", "text": f"a photo of {concept}, view {k}", "label": concept,
                     "twin_of": twin, "region": region})
    return rows


def write(fmt: str, src: Path) -> Path:
    rows = table(src)
    if fmt == "json":
        p = src / "t.json"
        p.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        p = src / "t.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        p = src / "t.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({**r, "twin_of": json.dumps(r["twin_of"]) if isinstance(r["twin_of"], list) else r["twin_of"]})
    else:  # parquet with the images embedded as HF image structs {bytes, path}
        import pyarrow as pa
        import pyarrow.parquet as pq
        for r in rows:
            r["img"] = {"bytes": (src / r["img"]).read_bytes(), "path": Path(r["img"]).name}
            r["twin_of"] = r["twin_of"] if isinstance(r["twin_of"], list) else [r["twin_of"]]
        for f in (src / "imgs").iterdir():
            f.unlink()  # the bytes in the table are all there is
        p = src / "t.parquet"
        pq.write_table(pa.Table.from_pylist(rows), p)
    return p


def run(*argv: str) -> int:
    from synth.importer import main
    return main([str(a) for a in argv])


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_each_format_imports_to_a_valid_manifest(fmt, tmp_path):
    from cultureclip.data import read_manifest
    src = write(fmt, tmp_path / "src")
    out = tmp_path / "ds"
    assert run("--from", src, "--map", MAP, "--out", out) == 0
    m = read_manifest(out)
    df = m.frame
    assert len(df) == 8 and df["concept_id"].nunique() == 4
    twins = dict(zip(df["concept_id"], df["twin_concept_ids"].map(tuple)))
    assert twins == {"hanbok": ("hanfu",), "hanfu": ("hanbok",), "gyoza": ("jiaozi",), "jiaozi": ("gyoza",)}
    assert set(df["region"]) == {"Asia"} and df["concept_prompt"].iat[0].startswith("a photo of ")
    for rel, sha in zip(df["image_path"], df["sha256"]):  # content-addressed copies of the source images
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha
    assert df.groupby("concept_id")["split"].nunique().max() == 1  # split by concept: no concept straddles
    report = json.loads((out / "import.json").read_text())["report"]
    assert any("'mandu'" in line and "dropped" in line for line in report)  # the unknown twin is reported


def test_hf_save_to_disk_folder_written_by_datasets(tmp_path):
    """tests/fixtures/importer/hf_saved is real `datasets` 4.8.5 DatasetDict.save_to_disk output."""
    from cultureclip.data import read_manifest
    out = tmp_path / "ds"
    assert run("--from", FIX / "hf_saved", "--map", "caption=text,concept=label", "--out", out) == 0
    df = read_manifest(out).frame
    assert len(df) == 4 and sorted(df["split"]) == ["test", "test", "train", "train"]  # the DatasetDict splits
    assert dict(zip(df["concept_id"], df["twin_concept_ids"].map(list))) == {"hanbok": ["hanfu"], "hanfu": ["hanbok"]}
    assert set(df["region"]) == {"Asia"}  # image, twin, region mapped by their own names


def test_hub_dataset_from_the_local_hf_cache(tmp_path):
    """A hub id resolves through huggingface_hub's cache (offline here), file layout as the hub stores it."""
    from cultureclip.data import read_manifest
    cache = tmp_path / "hub"
    repo = cache / "datasets--someone--twins-mini"
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / rev
    src = write("jsonl", snap)
    src.rename(snap / "train.jsonl")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    out = tmp_path / "ds"
    assert run("--from", "someone/twins-mini", "--hf-cache", cache, "--map", MAP, "--out", out) == 0
    df = read_manifest(out).frame
    assert len(df) == 8 and set(df["split"]) == {"train"}  # split named by the file
    assert json.loads(df["generator"].iat[0]) == {"imported_from": "someone/twins-mini/train.jsonl"}


def test_missing_hub_dataset_is_a_clear_error(tmp_path, capsys):
    assert run("--from", "nobody/nothing-here", "--hf-cache", tmp_path / "empty", "--map", MAP, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "'nobody/nothing-here' is neither a local file/folder nor a hub dataset" in err and "Traceback" not in err


def test_authors_preset_on_rows_in_their_format(tmp_path):
    from cultureclip.data import read_manifest
    src = FIX / "cultureclip_authors"
    out = tmp_path / "ds"
    assert run("--from", src, "--preset", "cultureclip-authors", "--out", out,
               "--rebase", f"/data/yuchen/cultureCLIP/sd_images={src / 'images'}") == 0
    df = read_manifest(out).frame
    assert df["concept_id"].nunique() == 4 and len(df) == 8  # 4 pos + 4 neg images, each once
    twins = dict(zip(df["concept_id"], df["twin_concept_ids"].map(list)))
    assert twins == {"erhu": ["guzheng"], "guzheng": ["erhu"], "gyoza": ["jiaozi"], "jiaozi": ["gyoza"]}
    assert set(zip(df["concept_id"], df["category"])) == {("erhu", "Art"), ("guzheng", "Art"), ("gyoza", "Cuisine"),
                                                          ("jiaozi", "Cuisine")}
    assert (df["concept_prompt"] == df["concept_name"]).all()  # their concept text is their prompt
    report = " ".join(json.loads((out / "import.json").read_text())["report"])
    # their pairs repeat each image in many rows, across the train and valid files: kept once, counted
    assert "duplicates merged: 8" in report and "another split" in report


def test_dry_run_prints_columns_and_three_rows_and_writes_nothing(tmp_path, capsys):
    src = write("jsonl", tmp_path / "src")
    out = tmp_path / "ds"
    assert run("--from", src, "--map", MAP, "--out", out, "--dry-run") == 0
    text = capsys.readouterr().out
    assert "(jsonl, 8 rows" in text and "columns: img, text, label, twin_of, region" in text
    assert "image <- img, caption <- text, concept <- label, twin <- twin_of, region <- region" in text
    assert text.count("-- row ") == 3 and "-> image (img): ok" in text
    assert not out.exists()


def test_unmapped_and_missing_fields_name_the_columns(tmp_path, capsys):
    src = write("json", tmp_path / "src")
    assert run("--from", src, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "no column for required field(s) image, caption, concept" in err
    assert "--map image=COLUMN,caption=COLUMN,concept=COLUMN" in err and "Available columns: img, text, label" in err
    assert run("--from", src, "--map", "image=picture,caption=text,concept=label", "--out", tmp_path / "o") == 2
    assert "mapped column(s) not in the table: image=picture. Available columns: img" in capsys.readouterr().err
    assert run("--from", src, "--map", "img=img", "--out", tmp_path / "o") == 2
    assert "unknown field 'img'; fields: image, caption, concept" in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.parquet").exists()


def test_image_paths_stay_inside_allowed_roots(tmp_path, capsys):
    from cultureclip.data import read_manifest
    src = tmp_path / "src"
    rows = table(src)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes(png(99))
    rows[0]["img"] = str(elsewhere / "x.png")  # absolute, outside the source folder
    (src / "t.json").write_text(json.dumps(rows))
    assert run("--from", src / "t.json", "--map", MAP, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "is outside the image root(s); pass --image-root DIR or --allow-root DIR" in err and "row 0" in err
    assert run("--from", src / "t.json", "--map", MAP, "--out", tmp_path / "o", "--allow-root", elsewhere) == 0
    assert len(read_manifest(tmp_path / "o").frame) == 8
    rows[0]["img"] = "../elsewhere/x.png"  # relative escapes are refused the same way
    rows[1]["img"] = "https://example.org/a.png"
    (src / "t.json").write_text(json.dumps(rows))
    assert run("--from", src / "t.json", "--map", MAP, "--out", tmp_path / "o2") == 2
    assert "outside the image root" in capsys.readouterr().err
    assert run("--from", src / "t.json", "--map", MAP, "--out", tmp_path / "o2", "--skip-bad-rows") == 0
    report = " ".join(json.loads((tmp_path / "o2" / "import.json").read_text())["report"])
    assert "skipped 2 bad row(s)" in report and "is a URL" in report
    assert len(read_manifest(tmp_path / "o2").frame) == 6


def test_rerun_is_idempotent_and_repairs(tmp_path):
    src = write("json", tmp_path / "src")
    out = tmp_path / "ds"
    assert run("--from", src, "--map", MAP, "--out", out) == 0
    before = tree(out)
    assert run("--from", src, "--map", MAP, "--out", out) == 0
    assert tree(out) == before
    victim = next((out / "images").rglob("*.png"))
    victim.unlink()
    (out / "images" / "stale.png").write_bytes(png(50))
    assert run("--from", src, "--map", MAP, "--out", out) == 0
    assert tree(out) == before  # the lost image is back, the stray one gone


def test_refuses_a_folder_that_is_not_an_import(tmp_path, capsys):
    src = write("json", tmp_path / "src")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run("--from", src, "--map", MAP, "--out", out) == 2
    assert "holds no earlier import" in capsys.readouterr().err and (out / "notes.txt").exists()


def test_split_column_and_fixed_split_sources(tmp_path, capsys):
    from cultureclip.data import read_manifest
    src = tmp_path / "src"
    rows = table(src)
    for k, r in enumerate(rows):
        r["part"] = ["training", "validation", "test", "Train"][k % 4]
    (src / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run("--from", src / "t.jsonl", "--map", MAP + ",split=part", "--out", tmp_path / "a") == 0
    df = read_manifest(tmp_path / "a").frame
    assert sorted(df["split"].value_counts().items()) == [("test", 2), ("train", 4), ("val", 2)]
    assert run("--from", f"test={src / 't.jsonl'}", "--map", MAP, "--out", tmp_path / "b") == 0
    assert set(read_manifest(tmp_path / "b").frame["split"]) == {"test"}
    rows[0]["part"] = "holdout"
    (src / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run("--from", src / "t.jsonl", "--map", MAP + ",split=part", "--out", tmp_path / "c") == 2
    assert "split 'holdout' is not one of" in capsys.readouterr().err


def test_folder_source_never_reads_an_earlier_import_inside_it(tmp_path):
    from cultureclip.data import read_manifest
    src = tmp_path / "src"
    write("json", src)
    out = src / "ds"
    for _ in range(2):  # the second run sees src/ds/manifest.parquet in the folder: not a source
        assert run("--from", src, "--map", MAP, "--out", out) == 0
    assert len(read_manifest(out).frame) == 8


def test_mapped_concept_ids_never_become_paths_and_bad_templates_are_errors(tmp_path, capsys):
    from cultureclip.data import read_manifest
    src = tmp_path / "src"
    rows = table(src)
    for r in rows:
        r["cid"] = "../../" + r["label"]
    (src / "t.json").write_text(json.dumps(rows))
    out = tmp_path / "ds"
    assert run("--from", src / "t.json", "--map", MAP + ",concept_id=cid", "--out", out) == 0
    df = read_manifest(out).frame
    assert set(df["concept_id"]) == {"../../" + c for c, _, _ in ROWS}
    assert all((out / p).resolve().is_relative_to(out.resolve()) for p in df["image_path"])
    assert run("--from", src / "t.json", "--map", MAP, "--out", tmp_path / "o", "--prompt-template", "a {thing}") == 2
    assert "placeholders: {name}, {category}, {culture}" in capsys.readouterr().err
