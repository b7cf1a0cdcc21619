"""Atomic file writes shared by every package: readers see the old file or the new one, never half.

A temp file in the same folder is written, fsynced, made world-readable (mkstemp creates 0600) and
moved into place with os.replace; on any error the temp file is removed. Folders are built the same
way: `atomic_dir` yields a temp folder beside the target and publishes it with `replace_dir` (the old
folder is moved aside first and removed only once the new one is in place); `make_readable` gives such
folders the modes of any saved model (0755 folders, 0644 files). Every file and folder the toolkit writes
goes through these, and so does every folder removal or move (`remove_path`, `move_path`):
tests/test_fileio.py checks that no other module calls os.replace/os.rename/Path.rename/shutil.rmtree/
shutil.move itself. JSON files: `atomic_write_json` (sorted keys, UTF-8) and `read_json`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as JSON (indent 1, sorted keys, UTF-8, trailing newline), written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in ``path`` (UTF-8). Raises OSError / ValueError as `json` does; callers that treat a
    missing or torn file as absent catch them (`cultureclip.steps.read_marker` does)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """For writers that need a file name (safetensors, Parquet, CSV): yields a temp path in the same
    folder; on success the file is fsynced, given ``mode`` and moved to ``path``; on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a file atomically: a hard link when possible (big image sets cost no space), else a copy."""
    dst = Path(dst)
    if dst.exists() and os.path.samefile(src, dst):  # already this file (rename of a link to itself is a no-op)
        return dst
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return dst


def make_readable(folder: str | Path) -> Path:
    """Give a folder written through temp names the modes of any saved model: folders 0755, files 0644.

    `tempfile.mkdtemp`/`mkstemp` create 0700/0600, which would leave an exported model unreadable to
    other users (a shared server, a Space's runtime user). Fixed modes, like `atomic_write_bytes`: the
    umask is not applied (the files hold model weights and metadata, nothing secret)."""
    folder = Path(folder)
    os.chmod(folder, 0o755)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    return folder


def replace_dir(tmp: str | Path, final: str | Path, keep_existing: bool = False) -> Path:
    """Publish the finished folder ``tmp`` as ``final`` (same parent folder, so the renames are atomic).

    An existing ``final`` is renamed aside first and deleted only after the new folder is in place, so at
    every moment ``final`` is the old folder or the new one (for a moment neither, never half of one).
    ``keep_existing``: when ``final`` already exists (another process published it first), keep it and
    drop ``tmp``."""
    tmp, final = Path(tmp), Path(final)
    if keep_existing:
        try:
            os.rename(tmp, final)  # fails when final exists (a non-empty folder)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def atomic_dir(final: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Build a folder under a temp name beside ``final``; on success it gets `make_readable`'s modes and
    is published with `replace_dir`; on error the temp folder is removed and ``final`` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        make_readable(tmp)
        replace_dir(tmp, final, keep_existing=keep_existing)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_path(path: str | Path, ignore_errors: bool = False) -> None:
    """Remove a file or a folder without ever deleting through a link.

    A symbolic link (to a file or to a folder) is unlinked and its target is left as it was; a real
    folder is removed with its contents (`shutil.rmtree` unlinks the links inside it, it does not
    follow them); a missing path is nothing to do. ``ignore_errors``: a file or folder that cannot be
    removed (another process removing it too, permissions) is left as it is, without an error."""
    path = Path(path)
    try:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=ignore_errors)
    except OSError:
        if not ignore_errors:
            raise


def move_path(src: str | Path, dst: str | Path) -> Path:
    """Move a file or folder to ``dst``, replacing what is there with `remove_path` (a link at ``dst`` is
    unlinked, never followed). One rename on the same filesystem, else a copy and a removal."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_path(dst)
    try:
        os.replace(src, dst)
    except OSError:  # another filesystem
        shutil.move(str(src), str(dst))
    return dst
