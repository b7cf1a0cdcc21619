"""The errors every benchmark adapter raises, and how paths appear in their messages.

A message says what is wrong and what to do; paths are shown relative to the working directory or the home
folder (`show_path`), never as absolute server paths.
"""
from __future__ import annotations

import os
from pathlib import Path


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded or scored; the message says why and what to do."""


class BenchmarkNotFoundError(BenchmarkError, FileNotFoundError):
    """The benchmark's files are not on disk (or reachable); the message says where to get them."""


def show_path(path: str | os.PathLike) -> str:
    """A path as error messages show it: relative to the working directory when inside it, `~/...` when
    inside the home folder, never the absolute install or server path that neither helps nor belongs
    in a message shown to someone else."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        return prefix + (str(rel) if str(rel) != "." else "") or "."
    return str(p)
