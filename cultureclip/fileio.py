"""Atomic file writes shared by every package: readers see the old file or the new one, never half.

A temp file in the same folder is written, fsynced, made world-readable (mkstemp creates 0600) and
moved into place with os.replace; on any error the temp file is removed. `make_readable` does the same
for folders assembled under a temp name (0755 folders, 0644 files).
"""
from __future__ import annotations

import os
import tempfile
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
