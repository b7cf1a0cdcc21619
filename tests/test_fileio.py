"""The one atomic writer: readers see the old file or the new one, never half; nothing is left behind."""
import ast
import os
import stat
from pathlib import Path

import pytest

from cultureclip.fileio import atomic_copy, atomic_dir, atomic_path, atomic_write_text, replace_dir


def test_atomic_path_replaces_on_success_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_atomic_copy_links_or_copies(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(1000))
    dst = atomic_copy(src, tmp_path / "out" / "b.bin")
    assert dst.read_bytes() == src.read_bytes()
    atomic_copy(src, dst)  # again over an existing file
    assert dst.read_bytes() == src.read_bytes() and sorted(p.name for p in dst.parent.iterdir()) == ["b.bin"]


def test_atomic_dir_publishes_whole_folders_or_nothing(tmp_path):
    final = tmp_path / "models" / "tuned"
    with atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
        assert not final.exists()  # nobody sees it before it is complete
    assert (final / "weights.bin").read_bytes() == b"v1"
    assert stat.S_IMODE(final.stat().st_mode) == 0o755 and stat.S_IMODE((final / "weights.bin").stat().st_mode) == 0o644
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("export crashed")
    assert (final / "weights.bin").read_bytes() == b"v1"  # the old folder, untouched
    with atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2")
    assert (final / "weights.bin").read_bytes() == b"v2"
    assert sorted(p.name for p in final.parent.iterdir()) == ["tuned"]  # no temp or old folders left
    with atomic_dir(final, keep_existing=True) as tmp:  # another process published first: keep its folder
        (tmp / "weights.bin").write_bytes(b"v3")
    assert (final / "weights.bin").read_bytes() == b"v2" and sorted(p.name for p in final.parent.iterdir()) == ["tuned"]


def test_replace_dir_moves_a_finished_folder_over_the_old_one(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("new")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "b").write_text("old")
    replace_dir(tmp_path / "new", tmp_path / "dst")
    assert [p.name for p in (tmp_path / "dst").iterdir()] == ["a"] and sorted(p.name for p in tmp_path.iterdir()) == ["dst"]


def _moves_and_removals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, call) of every folder/file move or tree removal a module makes itself: os.replace/os.rename,
    shutil.rmtree/shutil.move, and Path.rename (`x.rename(target)`: one positional argument; pandas'
    `df.rename(columns=...)` passes keywords)."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner, attr = node.func.value, node.func.attr
        name = owner.id if isinstance(owner, ast.Name) else None
        if (name, attr) in {("os", "replace"), ("os", "rename"), ("shutil", "rmtree"), ("shutil", "move")}:
            found.append((node.lineno, f"{name}.{attr}"))
        elif attr == "rename" and name != "os" and len(node.args) == 1 and not node.keywords:
            found.append((node.lineno, "Path.rename"))
    return found


def test_the_move_and_removal_check_finds_each_form():
    code = ("import os, shutil\nos.replace(a, b)\nos.rename(a, b)\nshutil.rmtree(d)\nshutil.move(a, b)\n"
            "Path(a).rename(b)\ndf.rename(columns={'a': 'b'})\n")
    assert [c for _, c in _moves_and_removals(ast.parse(code))] == [
        "os.replace", "os.rename", "shutil.rmtree", "shutil.move", "Path.rename"]


def test_no_module_moves_or_removes_folders_itself():
    """Every file/folder publish, move and removal goes through cultureclip.fileio (one atomic writer, one
    set of modes, removals that never follow a link)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for package in ("cultureclip", "eval_suite", "synth", "demo", "world"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "fileio.py" and path.parent.name == "cultureclip":
                continue
            offenders += [f"{path.relative_to(root)}:{line} {call}"
                          for line, call in _moves_and_removals(ast.parse(path.read_text(encoding="utf-8")))]
    assert not offenders, f"moves/removals outside cultureclip.fileio (use move_path/remove_path/replace_dir): {offenders}"
