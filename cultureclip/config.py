"""Dataclass configs, YAML presets and `key=value` overrides.

A config is plain data: a (possibly nested) dataclass. Presets are YAML files whose keys must match
fields; `key=value` overrides use dotted paths (`optim.lr=1e-4`). Unknown keys are rejected with the
list of valid ones, so a typo never silently falls back to a default. A field annotated with
`typing.Literal[...]` is a choice: any other value is rejected when the config loads (not at the step
that first uses it), with the valid choices in the message.

Lists are set whole (`models=[a, b]`, a YAML flow sequence; a single value makes a one-item list).
A mapping field (`dict[str, V]`) takes one entry per override: `roots.geode=/data/geode` sets the key
`geode`; for a mapping of mappings (`dict[str, dict]`) the first dotted part is the outer key and the
rest the inner one (`options.worldcuisines.kb_root=PATH`); otherwise everything after the field name is
the key, dots included (`names.runs/v1.2/model=tuned`). Entry values are coerced to `V`; untyped values
(`dict`, `Any`) stay the strings given.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not match the config's fields."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type (str from the CLI is parsed as YAML first)."""
    optional = _unwrap_optional(tp) is not tp or tp is Any
    tp = _unwrap_optional(tp)
    if isinstance(value, str) and optional and value.strip().lower() in ("null", "none", "~"):
        return None
    if value is None:
        if not optional and tp in (int, float, bool):
            raise ConfigError(f"{where}: cannot be null (expected {tp.__name__})")
        return None
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        hint = " (YAML reads unquoted yes/no/on/off as booleans: quote the word)" if isinstance(value, bool) else ""
        raise ConfigError(f"{where}: {value!r} is not a valid choice; valid: "
                          f"{', '.join(repr(c) if c == '' else str(c) for c in choices)}{hint}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp) or (tp if tp in (list, tuple, dict) else None)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        if len(args) != 2:
            return dict(value)
        return {_coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, str):
            try:  # float() first: YAML 1.1 reads "3e-4" (no dot) as a string
                value = float(value) if tp is float else int(value)
            except ValueError:
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError as e:  # pragma: no cover - yaml rarely fails on scalars
                    raise ConfigError(f"{where}: cannot parse {value!r}") from e
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if tp is int:
            if float(value) != int(value):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            return int(value)
        return float(value)
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass `cls` from a dict, rejecting unknown keys."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + where if where else ''}: {', '.join(sorted(types_))}"
        )
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def validate_config(cfg: T) -> T:
    """Check a config built in code (not loaded) the way loading checks one: types and choices.

    Returns an equal config; raises ConfigError naming the field and the valid choices."""
    return from_dict(type(cfg), to_dict(cfg))


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of `cfg` with `a.b=value` overrides applied (values parsed as YAML scalars)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (example: optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        cls: Any = type(cfg)
        for i, part in enumerate(parts):
            types_ = _field_types(cls)
            if part not in types_:
                where = ".".join(parts[:i]) or "top level"
                raise ConfigError(
                    f"unknown config key {key!r}: {part!r} is not a field at {where}; "
                    f"valid: {', '.join(sorted(types_))}"
                )
            if i == len(parts) - 1:
                node[part] = _coerce(raw, types_[part], key)
                if dataclasses.is_dataclass(node[part]):
                    node[part] = dataclasses.asdict(node[part])
            else:
                cls = _unwrap_optional(types_[part])
                if _is_mapping(cls):  # the rest of the path names an entry of the mapping
                    if not isinstance(node.get(part), dict):
                        node[part] = {}
                    _set_entry(node[part], parts[i + 1:], raw, cls, key)
                    break
                if not dataclasses.is_dataclass(cls):
                    raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a section; cannot set {key}")
                node = node[part]
    return from_dict(type(cfg), data)


def _is_mapping(tp: Any) -> bool:
    return tp is dict or typing.get_origin(tp) is dict


def _set_entry(mapping: dict, path: list[str], raw: str, tp: Any, key: str) -> None:
    """Set `mapping[path...] = raw` (coerced) in a mapping field annotated `tp` (see the module docstring)."""
    args = typing.get_args(tp)
    vtype = _unwrap_optional(args[1]) if len(args) == 2 else Any
    if not path or not path[0]:
        raise ConfigError(f"override {key!r} names no entry (example: roots.geode=/data/geode)")
    if len(path) > 1 and _is_mapping(vtype):
        sub = mapping.get(path[0])
        mapping[path[0]] = sub = dict(sub) if isinstance(sub, dict) else {}
        _set_entry(sub, path[1:], raw, vtype, key)
        return
    entry = ".".join(path)
    mapping[entry] = raw if vtype is Any else _coerce(raw, args[1], key)


def config_dir() -> Path:
    """The project's `configs/` folder: presets (`train/`, `synth/`, `eval/`) and open_clip architectures
    (`models/`). A wheel installs it as package data, `cultureclip/configs/` (pyproject.toml's package-dir);
    a checkout (plain or `pip install -e .`) reads the top-level `configs/` beside the packages."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def preset_names(kind: str) -> list[str]:
    """The preset names of one entry point (`train`, `synth`, `eval`): the YAML files in `configs/<kind>/`."""
    return sorted(p.stem for p in (config_dir() / kind).glob("*.yaml"))


def find_preset(kind: str, name: str | Path | None) -> Path | None:
    """`--config NAME|PATH`: an existing YAML file, or the name of a preset in `configs/<kind>/` (`smoke`,
    `paper_b32`), found the same way in a checkout and in an installed wheel. None stays None (defaults)."""
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return path
    preset = config_dir() / kind / f"{path.name}.yaml"
    if not path.suffix and path.name == str(name) and preset.is_file():
        return preset
    raise ConfigError(f"config {str(name)!r} is neither a YAML file nor {'an' if kind[0] in 'aeiou' else 'a'} {kind} preset; presets: "
                      f"{preset_names(kind)} (pass a name, e.g. --config smoke, or a path to a YAML file)")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults <- YAML preset <- overrides."""
    cfg = cls()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        with open(p, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of config keys")
        base = to_dict(cfg)
        _deep_update(base, data)
        try:
            cfg = from_dict(cls, base)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


