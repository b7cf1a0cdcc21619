"""Atomic file writes shared by every package: readers see the old file or the new one, never half.

A temp file in the same folder is written, fsynced, made world-readable (mkstemp creates 0600) and
moved into place with os.replace; on any error the temp file is removed. `make_readable` does the same
for folders assembled under a temp name (0755 folders, 0644 files).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
