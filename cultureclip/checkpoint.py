"""safetensors checkpoints with JSON metadata, in each backbone's own format.

A model folder written here is loadable three ways: by `create_backbone(folder)`, by
`CLIPModel.from_pretrained(folder)` (HF backbones) or by `open_clip.create_model("local-dir:" + folder)`
(open_clip backbones) — so people can use a CultureCLIP model without our code.

Training state (optimizer, scheduler, RNG, step) lives next to it in `train_state.safetensors` +
`train_state.json`; nothing is ever pickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .backbone import CHECKPOINT_META, ClipBackbone
from .fileio import atomic_dir, atomic_path, atomic_write_text
from .weights import memoized


def save_model(backbone: ClipBackbone, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `backbone` in its native format plus `cultureclip_checkpoint.json`, atomically."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:  # published readable (0755/0644): other users and tools read exported models
        backbone.save_native(tmp)  # open_clip_config.json + weights, or save_pretrained + tokenizer + processor
        meta = {"format": backbone.kind, "base_spec": backbone.info.get("base_spec", backbone.spec)}
        meta.update(metadata or {})
        (tmp / CHECKPOINT_META).write_text(json.dumps(meta, indent=2, default=str))
    return folder


def read_metadata(folder: str | Path) -> dict | None:
    p = Path(folder) / CHECKPOINT_META
    return json.loads(p.read_text()) if p.is_file() else None


# --------------------------------------------------------------------------------------------------
# Training state (optimizer etc.) without pickle
# --------------------------------------------------------------------------------------------------


def _flatten_state(prefix: str, obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors inside nested dicts/lists by {"__tensor__": key}, collecting them in `tensors`."""
    if torch.is_tensor(obj):
        key = f"{prefix}"
        tensors[key] = obj.detach().contiguous().clone().cpu()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten_state(f"{prefix}.k{i}", k, tensors), _flatten_state(f"{prefix}.{i}", v, tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state (at {prefix})")


def _unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten_state(k, tensors): _unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unflatten_state(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten_state(v, tensors) for v in obj["__tuple__"])
    return obj


def save_state(folder: str | Path, name: str, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors/ints/floats/strings as `<name>.safetensors` + `<name>.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten_state("s", state, tensors)
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / f"{name}.json", json.dumps(skeleton))


def load_state(folder: str | Path, name: str) -> dict[str, Any]:
    """Inverse of `save_state`. A missing, truncated or corrupt file raises CheckpointError naming it."""
    folder = Path(folder)
    st, js = folder / f"{name}.safetensors", folder / f"{name}.json"
    try:
        tensors = load_file(str(st))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: one clear message naming the file
        raise CheckpointError(f"{st} cannot be read ({type(e).__name__}: {e})") from e
    try:
        skeleton = json.loads(js.read_text(encoding="utf-8"))
        return _unflatten_state(skeleton, tensors)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{js} cannot be read ({type(e).__name__}: {e})") from e


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or damaged; the message names the file."""


def file_records(folder: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """{name: {"bytes", "sha256"}} for files in `folder`: stored in a checkpoint's metadata at save time."""
    folder = Path(folder)
    return {n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names}


def verify_files(folder: str | Path, records: dict[str, dict[str, Any]]) -> None:
    """Check files against `file_records` (size first: cheap; then sha256). Raises CheckpointError naming
    the first file that is missing, truncated or altered."""
    folder = Path(folder)
    for name, rec in records.items():
        p = folder / name
        if not p.is_file():
            raise CheckpointError(f"{p} is missing")
        size = p.stat().st_size
        if size != rec["bytes"]:
            raise CheckpointError(f"{p} has {size:,} bytes, {rec['bytes']:,} were written (truncated or overwritten)")
        if file_sha256(p) != rec["sha256"]:
            raise CheckpointError(f"{p} does not match the sha256 recorded when it was written (corrupted)")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha(backbone: ClipBackbone) -> str:
    """A stable hash of the weights (for result/embedding-cache keys): sha256 of every tensor's name and bytes
    (state_dict order), its first 16 hex digits. Results, the disk label banks and the demo's evaluations are
    keyed on these exact bytes, across processes.

    Memoized per backbone object by `cultureclip.weights.memoized`: hashing a ViT-B/32 takes seconds, and the
    app, the live evaluation and the label-bank cache all ask for it. It is hashed again exactly when a weight
    changed since (any in-place write, `.data` writes included, or a replaced tensor): `weights.revision`,
    ~0.3 ms per call. A deep copy (a WiSE-FT blend) is a new object, hashed on its own."""
    return memoized(backbone, "checkpoint_sha", lambda: _hash_weights(backbone))


def _hash_weights(backbone: ClipBackbone) -> str:
    """The full pass behind `checkpoint_sha` (not memoized)."""
    h = hashlib.sha256()
    for k, v in sorted(backbone.model.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(backbone: ClipBackbone, name: str | None = None, role: str | None = None,
                   weights_sha: str | None = None) -> dict[str, Any]:
    """Who a model is, as data that travels with every result (never recovered from folder names).

    ``spec`` as typed, ``format`` (open_clip | hf), ``weights_sha`` (:func:`checkpoint_sha`), and, for
    a model our trainer exported, ``base_spec``, ``train_config``, ``config_hash`` and ``step`` from its
    metadata; ``tokenizer_source``/``preprocess_source`` say whether the model's own tokenizer and
    image processor were used or a fallback (``backbone.info``). ``name``/``role`` come from the caller
    (a user's label, e.g. role "base" or "tuned") or else from the checkpoint's metadata (the trainer
    records its run name).
    """
    meta = backbone.info.get("checkpoint") or {}
    return {
        "spec": backbone.spec,
        "format": backbone.kind,
        "weights_sha": weights_sha or checkpoint_sha(backbone),
        "name": name or meta.get("name"),
        "role": role or meta.get("role"),
        "base_spec": meta.get("base_spec") or backbone.info.get("base_spec"),
        "train_config": meta.get("config"),
        "config_hash": meta.get("config_hash"),
        "step": meta.get("step"),
        "tokenizer_source": backbone.info.get("tokenizer_source"),
        "preprocess_source": backbone.info.get("preprocess_source"),
    }
