"""The errors every benchmark adapter raises, and how paths appear in their messages.

A message says what is wrong and what to do; paths are shown relative to the working directory or the home
folder (`show_path`), never as absolute server paths.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
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


def require_columns(bench: str, where: str | os.PathLike, found: Iterable[str], required: Iterable[str],
                    expected: str = "") -> None:
    """Raise a `BenchmarkError` naming every required column (or field, or member) that `found` lacks,
    with the columns that were found: a renamed column (`country` for `region`) or another benchmark's
    files should fail here, not later as a bare `KeyError` or as "no samples"."""
    have = [str(c) for c in found]
    missing = [c for c in required if c not in have]
    if not missing:
        return
    shown_where = show_path(where) if isinstance(where, os.PathLike) else str(where)
    need = f" {expected}" if expected else ""
    raise BenchmarkError(
        f"{bench}: {shown_where} lacks the column(s) {', '.join(repr(c) for c in missing)} "
        f"(found: {', '.join(repr(c) for c in have) or 'no columns'}).{need} Rename the column(s) or point "
        f"--root {bench}=PATH at a copy in the published format.")
