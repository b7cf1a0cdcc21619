"""The one atomic writer: readers see the old file or the new one, never half; nothing is left behind."""
import os
import stat

import pytest

from cultureclip.fileio import atomic_copy, atomic_path, atomic_write_text


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
