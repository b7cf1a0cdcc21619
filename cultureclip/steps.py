"""One mechanism for a resumable step keyed by its settings: canonical settings bytes, one fingerprint,
one done-marker format.

Every cached or resumable piece of work in the toolkit is a *step*: synthesis shards (`synth.engine`),
the world build's steps (`world.build`), the trainer's checkpoints (`cultureclip.checkpointer`) and the
evaluation runs' ``--skip-existing`` (`eval_suite.run`, whose result file carries the fingerprint as
``config_hash``). A step is done when its marker holds the fingerprint of the settings asked for now.

Canonical settings bytes (`settings_bytes`): the settings are first made plain data (`plain`), then
written as JSON with sorted keys, no whitespace, UTF-8 (no ``\\u`` escapes), no NaN. The rule for
values that are not JSON already:

- dataclass instances -> a dict of their fields (recursively; the class name is not part of it);
- tuples, lists -> lists (a tuple and a list with the same items give the same bytes); sets -> sorted lists;
- mapping keys -> strings (``str(key)``); key order never matters;
- paths (`os.PathLike`) -> their string as given (``Path("a/b")`` == ``"a/b"``): never resolved, so a
  step whose inputs may move fingerprints their *content* instead (`content_fingerprint`);
- floats -> Python's shortest round-trip form (``0.1`` -> ``0.1``); ``1.0`` and ``1`` differ, as the
  settings' types differ; NaN and infinities are refused (not a setting);
- numpy / torch scalars and arrays -> Python numbers / nested lists;
- anything else (an object, a function) is refused with a TypeError naming it: a ``repr`` would put a
  memory address into a fingerprint.

`fingerprint` = hex sha256 of those bytes (64 characters; a field that shows it as a label, such as a
results file's or a trained model's ``config_hash``, keeps its first 16: ``fingerprint(s, 16)``).

Done-marker (`write_marker` / `read_marker` / `done`): a small JSON file written atomically (temp
file + rename, `cultureclip.fileio`) LAST, after what the step produced::

    {"format": "cultureclip-step/1", "fingerprint": "<64 hex>", "produced": {...}, "settings": {...}}

``produced`` says what the step made (counts, a result path relative to its folder, file records);
``settings`` (optional) is kept for messages that name what changed. A missing, torn (not JSON, or not
this shape) marker, or one with another fingerprint, is not done. Marker file names stay where each
step kept them (``shard-00003.done``, ``DONE.json``, a checkpoint's ``DONE``), so existing outputs are found.

Markers written before this module (read once and upgraded in place by `done`): a JSON object with
a top-level ``fingerprint`` (synthesis shards: the same settings bytes, so the same fingerprint) or with
the ``settings`` it was made from (the world build: its fingerprint is recomputed from them, since its
old hash used other bytes); a checkpoint's plain-text ``DONE`` ("ok") reads as a marker without a
fingerprint (complete, settings unknown).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import atomic_write_json

FORMAT = "cultureclip-step/1"
LEGACY_TEXT = "ok"  # a checkpoint's DONE before this module
MARKER_NAMES = ("DONE.json", "DONE")  # the markers a folder step keeps; left out of `content_fingerprint`


# ----------------------------------------------------------------------------- settings bytes
def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data by the rule in this module's docstring (raises TypeError/ValueError)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"a setting is {obj}: NaN and infinities are not settings (use None)")
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((plain(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # a numpy array or scalar
        return plain(obj.tolist())
    if hasattr(obj, "items") and hasattr(obj, "keys"):  # another mapping (MappingProxy, OrderedDict subclasses)
        return {str(k): plain(v) for k, v in obj.items()}
    raise TypeError(f"a setting of type {type(obj).__name__} ({obj!r:.60}) is not plain data: pass its fields "
                    "(numbers, strings, lists, dicts, dataclasses, paths)")


def settings_bytes(settings: Any) -> bytes:
    """The canonical bytes of ``settings``: equal settings give equal bytes (see the module's docstring)."""
    return json.dumps(plain(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def fingerprint(settings: Any, length: int = 64) -> str:
    """The one settings fingerprint: hex sha256 of `settings_bytes`; ``length`` < 64 keeps a prefix (the
    16-character label of a ``config_hash`` field, a content id)."""
    return hashlib.sha256(settings_bytes(settings)).hexdigest()[:length]


def content_fingerprint(path: str | Path) -> str:
    """Fingerprint of a file's or a folder's *content*: relative names and bytes (step markers and
    hidden temp files left out), 16 hex. A moved, copied or symlinked folder keeps it, so steps keyed
    on it stay valid wherever the folder lies."""
    path = Path(path)
    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*")
                       if p.is_file() and p.name not in MARKER_NAMES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise FileNotFoundError(f"{path.name}: nothing to fingerprint (an earlier step did not finish); rebuild it")
    h = hashlib.sha256()
    for rel, f in files:
        h.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- done-markers
@dataclass(frozen=True)
class Marker:
    """A done-marker as read: ``fingerprint`` None for a legacy checkpoint marker (settings unknown);
    ``legacy`` True when it was written before this module (`done` rewrites it in the current format)."""

    fingerprint: str | None
    produced: dict = field(default_factory=dict)
    settings: Any = None
    legacy: bool = False


def write_marker(path: str | Path, fp: str, produced: dict | None = None, settings: Any = None) -> Path:
    """Write the done-marker ``path`` atomically (call it LAST, once the step's outputs are in place)."""
    if not isinstance(fp, str) or not fp:
        raise ValueError(f"a done-marker needs a fingerprint string, got {fp!r}")
    data: dict[str, Any] = {"format": FORMAT, "fingerprint": fp, "produced": plain(produced or {})}
    if settings is not None:
        data["settings"] = plain(settings)
    return atomic_write_json(path, data)


def read_marker(path: str | Path) -> Marker | None:
    """The marker at ``path``, or None when it is missing or torn (unreadable, not JSON, not a marker)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.strip() == LEGACY_TEXT:
        return Marker(None, {}, None, legacy=True)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("format") == FORMAT:
        fp, produced = data.get("fingerprint"), data.get("produced")
        if not isinstance(fp, str) or not isinstance(produced, dict):
            return None
        return Marker(fp, produced, data.get("settings"))
    return _legacy_marker(data)


def _legacy_marker(data: dict) -> Marker | None:
    """A pre-steps JSON marker: settings kept -> fingerprint recomputed from them; else its fingerprint."""
    if "format" in data:  # another format version: not ours to interpret
        return None
    produced = {k: v for k, v in data.items() if k not in ("fingerprint", "settings")}
    if "settings" in data:
        try:
            return Marker(fingerprint(data["settings"]), produced, data["settings"], legacy=True)
        except (TypeError, ValueError):
            return None
    if isinstance(data.get("fingerprint"), str):
        return Marker(data["fingerprint"], produced, None, legacy=True)
    return None


def done(path: str | Path, fp: str, upgrade: bool = True) -> Marker | None:
    """The marker at ``path`` when it says the step with fingerprint ``fp`` is done, else None.

    A legacy marker that matches is rewritten in the current format (read once, upgraded), unless
    ``upgrade`` is False (a reader that does not own the step: a process waiting on another's shards)."""
    marker = read_marker(path)
    if marker is None or marker.fingerprint != fp:
        return None
    if marker.legacy and upgrade:
        write_marker(path, fp, marker.produced, marker.settings)
        marker = dataclasses.replace(marker, legacy=False)
    return marker
