"""The results JSON: one file per (benchmark, model), written atomically, validated on write and read.

File name: ``results/<benchmark>__<model_tag>.json``. Schema (``schema_version`` 2)::

    required
      benchmark       str          e.g. "cultwin", "imagenet1k", "crope"
      task            str          e.g. "zeroshot_classification", "retrieval", "twin_choice"
      model           str          the model spec as typed (``hf:org/name``, a folder, ...)
      checkpoint_sha  str | null   hash of the weights (cache key; null if unknown)
      metrics         {name: number | null}            overall numbers (null = undefined)
      groups          [group record]                   per-group numbers, one record per group:
        fields        {field: str}  what the group is, as data: {"region": "Asia"} or
                                    {"region": "Asia", "category": "food"} (a cross group); values are
                                    strings of any characters ("food|drink" is fine), a missing label
                                    is "unknown"; no two records have the same fields; a
                                    field is not named like a column of the tidy frame
                                    (``tables.FRAME_COLUMNS``: model, metric, value, ...)
        n             int | null    the group's size
        metrics       {metric: number | null}
        ci            {metric: [low, high]}   optional 95% bootstrap CIs
      n_samples       int          items evaluated (after skipping unreadable ones)
      config_hash     str          hash of the evaluation settings (``--skip-existing`` compares it)
      timestamp       str          ISO 8601, UTC
      versions        {package: version}
    optional
      schema_version  int          2 (absent or 1: the old form, converted when read)
      model_tag       str          short filesystem-safe model name (default: ``model_tag(model)``)
      main_metric     str          the headline metric (a key of ``metrics``); tables/figures use it
      ci              {metric: [low, high]}            95% bootstrap CI of overall metrics
      model_config    {..}         training settings of the model (e.g. loss weights); ablations use it
      model_identity  {..}         who the model is (``cultureclip.checkpoint.model_identity``): spec,
                                   format, weights_sha, name, role ("base" | "tuned" | ...), base_spec,
                                   train_config, config_hash, step; tables and the demo join on it
      eval_config     {..}         evaluation settings (what ``config_hash`` hashes)
      samples         {"ids": [...], column: [...]}    per-item values (e.g. correctness) and group
                                                       labels, for paired bootstrap between models
      skipped         {reason: count}                  e.g. {"unreadable_image": 3}
      extra           {..}         anything else (free-form, not interpreted)

Schema 1 (files written before groups were records) stored ``groups`` as {name: {metric: value, "n":
size}} with flattened names ("region=Asia|category=food", a bare label meaning {"label": name}) and
their CIs in a top-level ``group_ci`` {name: {metric: [low, high]}}. :func:`read_result` converts such
files once, at load time (:func:`upgrade_result`, the only code that knows that form), so tables,
figures and the demo only ever see group fields as data.

Result files written by clip_benchmark (``dataset``, ``model``, ``pretrained``, ``task``, ``metrics``)
are read too and converted, so both can be tabulated together.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import re
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cultureclip.fileio import atomic_write_text
from cultureclip.steps import fingerprint
from eval_suite import metrics as M

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
GROUP_KEYS = ("fields", "n", "metrics", "ci")  # the keys of one group record
REQUIRED_KEYS = (
    "benchmark",
    "task",
    "model",
    "checkpoint_sha",
    "metrics",
    "groups",
    "n_samples",
    "config_hash",
    "timestamp",
    "versions",
)
OPTIONAL_KEYS = (
    "schema_version",
    "model_tag",
    "main_metric",
    "ci",
    "model_config",
    "model_identity",
    "eval_config",
    "samples",
    "skipped",
    "extra",
)
VERSION_PACKAGES = ("numpy", "torch", "open_clip_torch", "transformers", "pandas", "pillow", "clip_benchmark")


class ResultError(ValueError):
    """A results file or dict does not follow the schema in this module's docstring."""


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def model_tag(spec: str) -> str:
    """Short filesystem-safe name for a model spec (used in result file names and as a display name).

    ``hf:lukahh/cultureclip_lora_0315_100k_32_07_03`` -> ``lukahh--cultureclip_lora_0315_100k_32_07_03``,
    ``open_clip:ViT-B-32@openai`` -> ``ViT-B-32@openai``, a local folder -> its last two path parts.
    """
    s = str(spec).strip()
    if not s:
        raise ResultError("model spec is empty")
    for prefix in ("open_clip:", "hf:"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
            break
    if s.startswith("hf-hub:"):
        s = s[len("hf-hub:") :]
    if os.sep in s and (s.startswith((os.sep, ".", "~")) or Path(s).exists()):
        s = "--".join(Path(s).expanduser().parts[-2:])
    s = s.replace("/", "--")
    s = re.sub(r"[^A-Za-z0-9._@+=-]+", "_", s).strip("._")
    return s or "model"


def result_filename(benchmark: str, tag: str) -> str:
    """``<benchmark>__<model_tag>.json``."""
    b = re.sub(r"[^A-Za-z0-9._@+=-]+", "_", benchmark).strip("._")
    if not b:
        raise ResultError(f"benchmark name {benchmark!r} gives an empty file name")
    return f"{b}__{tag}.json"


def hash_config(config: Mapping[str, Any] | None) -> str:
    """A result's ``config_hash``: the 16-hex label of `cultureclip.steps.fingerprint` of its settings
    (key order does not matter). ``--skip-existing`` compares it: the result file is the step's marker."""
    return fingerprint(config or {}, 16)


def collect_versions(packages: Sequence[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change numbers (read from metadata, no imports)."""

    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(x: Any) -> Any:
    """numpy/torch scalars and arrays -> plain Python; NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------
def group_record(
    fields: M.Group | Mapping[str, Any],
    metrics: Mapping[str, Any],
    n: int | None = None,
    ci: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """One entry of a result's ``groups``: ``{"fields": {...}, "n": n, "metrics": {...}[, "ci": {...}]}``.

    ``fields`` is a :class:`eval_suite.metrics.Group` or a {field: value} mapping (values become strings).
    """
    group = fields if isinstance(fields, M.Group) else M.Group.of(fields)
    rec: dict[str, Any] = {"fields": group.fields, "n": None if n is None else int(n), "metrics": dict(metrics)}
    if ci:
        rec["ci"] = {k: list(v) for k, v in ci.items()}
    return rec


def find_group(groups: Sequence[Mapping[str, Any]], **fields: Any) -> dict[str, Any] | None:
    """The record in ``groups`` whose fields are exactly ``fields`` (any order), e.g.
    ``find_group(result["groups"], region="Asia")``; None if there is none."""
    want = set(M.Group.of(fields).items)
    return next((dict(g) for g in groups if set(g["fields"].items()) == want), None)


def merge_groups(groups: Sequence[Mapping[str, Any]], more: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group records of ``groups`` with those of ``more`` added: records with the same fields merge
    (metrics and CIs of ``more`` added; ``n`` kept unless missing), the others are appended."""
    out = [{**g, "metrics": dict(g["metrics"]), **({"ci": dict(g["ci"])} if "ci" in g else {})} for g in groups]
    index = {frozenset(g["fields"].items()): g for g in out}
    for g in more:
        hit = index.get(frozenset(g["fields"].items()))
        if hit is None:
            rec = group_record(g["fields"], g["metrics"], g.get("n"), g.get("ci"))
            out.append(rec)
            index[frozenset(rec["fields"].items())] = rec
            continue
        hit["metrics"].update(g["metrics"])
        if g.get("ci"):
            hit.setdefault("ci", {}).update(g["ci"])
        if hit.get("n") is None:
            hit["n"] = g.get("n")
    return out


def summarize_samples(
    per_sample: Mapping[str, Any],
    labels: Mapping[str, Sequence[Any]] | None = None,
    fields: Sequence[str] | None = None,
    cross: Sequence[Sequence[str]] = (),
    ids: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_group_count: int = 1,
    keep_samples: bool = True,
) -> dict[str, Any]:
    """Turn per-item metric arrays into the ``metrics``/``groups``/``ci``/``samples`` fields.

    per_sample: {metric: (N,) values}, e.g. {"acc1": correct_top1, "acc5": correct_top5}.
    labels: {field: (N,) group labels}, e.g. {"region": [...], "income": [...]}; ``fields`` picks
    which of them to group by (default: all); ``cross`` adds combined groups such as
    ("region", "category") for a heatmap. ``groups`` is a list of group records (module docstring), one
    per group of each field and each cross, with per-group CIs under ``ci``. For each metric and field, ``<metric>_worst_<field>`` and
    ``<metric>_gap_<field>`` join the overall metrics. Pass the result as ``**kwargs`` to
    :func:`make_result`. CIs use :func:`eval_suite.metrics.bootstrap_ci` (``n_boot=0`` skips them).
    """
    if not per_sample:
        raise ResultError("per_sample is empty; pass e.g. {'acc1': per_item_correctness}")
    arrays = {name: M.as_array(v, f"per_sample[{name!r}]") for name, v in per_sample.items()}
    n = {a.shape[0] for a in arrays.values()}
    if len(n) != 1 or any(a.ndim != 1 for a in arrays.values()):
        raise ResultError(
            "per_sample arrays must all be 1-D with one entry per item; got shapes "
            + ", ".join(f"{k}: {tuple(a.shape)}" for k, a in arrays.items())
        )
    (n_items,) = n
    labels = dict(labels or {})
    for name, col in labels.items():
        if len(col) != n_items:
            raise ResultError(f"labels[{name!r}] has {len(col)} entries but there are {n_items} items")
    fields = list(labels) if fields is None else list(fields)
    for f in [*fields, *(x for c in cross for x in c)]:
        if f not in labels:
            raise ResultError(f"group field {f!r} not in labels (have {sorted(labels)})")

    metrics: dict[str, Any] = {}
    ci: dict[str, list[float]] = {}
    records: dict[M.Group, dict[str, Any]] = {}
    for name, values in arrays.items():
        metrics[name] = float(values.mean()) if n_items else float("nan")
        if n_boot and n_items:
            b = M.bootstrap_ci(values, n_boot=n_boot, seed=seed)
            ci[name] = [b["ci_low"], b["ci_high"]]
    group_specs: list[dict[str, Sequence[Any]]] = [{f: labels[f]} for f in fields]
    group_specs += [{f: labels[f] for f in combo} for combo in cross]
    for spec in group_specs:
        members: dict[M.Group, list[int]] = {}
        if n_boot:
            for i in range(n_items):
                members.setdefault(M.Group.of({f: col[i] for f, col in spec.items()}), []).append(i)
        for name, values in arrays.items():
            g = M.group_metrics(values, spec, min_count=min_group_count)
            for group, mean in g["per_group"].items():
                rec = records.setdefault(group, {"fields": group.fields, "n": g["counts"][group], "metrics": {}})
                rec["metrics"][name] = mean
                if n_boot:
                    b = M.bootstrap_ci(values[members[group]], n_boot=n_boot, seed=seed)
                    rec.setdefault("ci", {})[name] = [b["ci_low"], b["ci_high"]]
            if len(spec) == 1:
                (field,) = spec
                metrics[f"{name}_worst_{field}"] = g["worst"]
                metrics[f"{name}_gap_{field}"] = g["gap"]
    out: dict[str, Any] = {"metrics": metrics, "groups": list(records.values()), "n_samples": n_items}
    if ci:
        out["ci"] = ci
    if keep_samples:
        if ids is None:
            ids = list(range(n_items))
        if len(ids) != n_items:
            raise ResultError(f"ids has {len(ids)} entries but there are {n_items} items")
        samples: dict[str, Any] = {"ids": [str(i) for i in ids]}
        samples.update({k: a for k, a in arrays.items()})
        samples.update({k: [None if M._is_missing(x) else str(x) for x in v] for k, v in labels.items()})
        out["samples"] = samples
    return out


def make_result(
    benchmark: str,
    task: str,
    model: str,
    metrics: Mapping[str, Any],
    *,
    n_samples: int,
    groups: Sequence[Mapping[str, Any]] | None = None,
    checkpoint_sha: str | None = None,
    eval_config: Mapping[str, Any] | None = None,
    config_hash: str | None = None,
    model_config: Mapping[str, Any] | None = None,
    model_identity: Mapping[str, Any] | None = None,
    main_metric: str | None = None,
    ci: Mapping[str, Sequence[float]] | None = None,
    samples: Mapping[str, Sequence[Any]] | None = None,
    skipped: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
    tag: str | None = None,
    timestamp: str | None = None,
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Assemble and validate a result dict (see the module docstring for the fields).

    ``config_hash`` defaults to the hash of ``{"benchmark", "task", **eval_config}``; ``timestamp`` to
    now (UTC); ``versions`` to :func:`collect_versions`; ``main_metric`` to the first metric.
    ``groups``: group records ``{"fields": {...}, "n": ..., "metrics": {...}[, "ci": {...}]}``, e.g. from
    :func:`summarize_samples` or built with :func:`group_record`.
    """
    if not metrics:
        raise ResultError("metrics is empty; a result needs at least one number")
    eval_config = dict(eval_config or {})
    if isinstance(groups, Mapping) and groups:
        raise ResultError(
            "groups must be a list of group records {'fields': {...}, 'n': ..., 'metrics': {...}} "
            "(results.group_record builds one); {name: metrics} is the old schema-1 form"
        )
    bad = [g for g in groups or [] if not isinstance(g, Mapping) or not {"fields", "metrics"} <= set(g) <= set(GROUP_KEYS)]
    if bad:
        raise ResultError(f"group record {bad[0]!r} needs 'fields' and 'metrics' (optional 'n', 'ci') and nothing else")
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": benchmark,
        "task": task,
        "model": model,
        "model_tag": tag or model_tag(model),
        "checkpoint_sha": checkpoint_sha,
        "main_metric": main_metric or next(iter(metrics)),
        "metrics": dict(metrics),
        "groups": [group_record(**g) for g in (groups or [])],
        "n_samples": int(n_samples),
        "config_hash": config_hash or hash_config({"benchmark": benchmark, "task": task, **eval_config}),
        "timestamp": timestamp or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": dict(versions) if versions is not None else collect_versions(),
    }
    optional = {
        "ci": ci,
        "model_config": model_config,
        "model_identity": dict(model_identity) if model_identity else None,
        "eval_config": eval_config or None,
        "samples": samples,
        "skipped": skipped,
        "extra": extra,
    }
    result.update({k: v for k, v in optional.items() if v is not None})
    result = _jsonable(result)
    validate_result(result)
    return result


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def validate_result(result: Any, source: str = "result") -> None:
    """Raise :class:`ResultError` naming the first problem (and the fix) if ``result`` breaks the schema."""

    def fail(msg: str) -> None:
        raise ResultError(f"{source}: {msg}")

    if not isinstance(result, Mapping):
        fail(f"must be a JSON object, got {type(result).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        fail(f"missing required keys {missing}; build results with eval_suite.results.make_result")
    if isinstance(result["groups"], Mapping):
        fail("'groups' is in the schema-1 form {name: {metric: value}}; read the file with "
             "eval_suite.results.read_result (or pass the dict through upgrade_result), which converts it")
    unknown = sorted(set(result) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        fail(f"unknown keys {unknown}; allowed optional keys are {list(OPTIONAL_KEYS)} (put free-form data in 'extra')")
    for key in ("benchmark", "task", "model", "config_hash", "timestamp"):
        if not isinstance(result[key], str) or not result[key].strip():
            fail(f"{key!r} must be a non-empty string, got {result[key]!r}")
    if result["checkpoint_sha"] is not None and not isinstance(result["checkpoint_sha"], str):
        fail(f"'checkpoint_sha' must be a string or null, got {result['checkpoint_sha']!r}")
    n = result["n_samples"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        fail(f"'n_samples' must be a non-negative integer, got {n!r}")
    try:
        _dt.datetime.fromisoformat(result["timestamp"])
    except ValueError:
        fail(f"'timestamp' must be ISO 8601 (e.g. 2025-01-31T12:00:00+00:00), got {result['timestamp']!r}")
    if not isinstance(result["versions"], Mapping) or not all(
        isinstance(v, str) for v in result["versions"].values()
    ):
        fail("'versions' must map package names to version strings")

    def check_numbers(d: Any, where: str) -> None:
        if not isinstance(d, Mapping):
            fail(f"{where} must be an object of metric -> number, got {type(d).__name__}")
        for k, v in d.items():
            if v is not None and not _is_number(v):
                fail(f"{where}[{k!r}] must be a number or null, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                fail(f"{where}[{k!r}] is {v}; write null for an undefined value")

    check_numbers(result["metrics"], "'metrics'")
    if not result["metrics"]:
        fail("'metrics' is empty")
    def check_ci(d: Any, where: str, allowed: Mapping[str, Any]) -> None:
        if not isinstance(d, Mapping):
            fail(f"{where} must be an object of metric -> [low, high]")
        for k, pair in d.items():
            if k not in allowed:
                fail(f"{where} has a CI for {k!r}, which has no value; known: {sorted(allowed)}")
            if (
                not isinstance(pair, (list, tuple))
                or len(pair) != 2
                or not all(_is_number(x) for x in pair)
                or pair[0] > pair[1] + 1e-12
            ):
                fail(f"{where}[{k!r}] must be [low, high] with low <= high, got {pair!r}")

    if "ci" in result:
        check_ci(result["ci"], "'ci'", result["metrics"])
    groups = result["groups"]
    if not isinstance(groups, list):
        fail(f"'groups' must be a list of {{fields, n, metrics}} records, got {type(groups).__name__}")
    seen: set[frozenset[tuple[str, str]]] = set()
    for i, rec in enumerate(groups):
        where = f"'groups'[{i}]"
        if not isinstance(rec, Mapping) or "fields" not in rec or "metrics" not in rec:
            fail(f"{where} must be an object with 'fields' and 'metrics' (and optional 'n', 'ci'), got {rec!r}")
        unknown_keys = sorted(set(rec) - set(GROUP_KEYS))
        if unknown_keys:
            fail(f"{where} has unknown keys {unknown_keys}; a group record has {list(GROUP_KEYS)}")
        fields = rec["fields"]
        if (
            not isinstance(fields, Mapping)
            or not fields
            or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in fields.items())
        ):
            fail(f"{where}['fields'] must be a non-empty object of field name -> string value, got {fields!r}")
        key = frozenset(fields.items())
        if key in seen:
            fail(f"{where}: another group has the same fields {dict(fields)}; merge them (results.merge_groups)")
        seen.add(key)
        check_numbers(rec["metrics"], f"{where}['metrics']")
        n_group = rec.get("n")
        if n_group is not None and (not isinstance(n_group, int) or isinstance(n_group, bool) or n_group < 0):
            fail(f"{where}['n'] must be a non-negative integer count or null, got {n_group!r}")
        if "ci" in rec:
            check_ci(rec["ci"], f"{where}['ci']", rec["metrics"])
    if "main_metric" in result and result["main_metric"] not in result["metrics"]:
        fail(f"'main_metric' {result['main_metric']!r} is not one of the metrics {sorted(result['metrics'])}")
    for key in ("model_config", "model_identity", "eval_config", "extra", "skipped"):
        if key in result and not isinstance(result[key], Mapping):
            fail(f"{key!r} must be an object")
    if "skipped" in result and not all(isinstance(v, int) and v >= 0 for v in result["skipped"].values()):
        fail("'skipped' must map reasons to non-negative integer counts")
    if "model_tag" in result and (
        not isinstance(result["model_tag"], str) or not re.fullmatch(r"[A-Za-z0-9._@+=-]+", result["model_tag"])
    ):
        fail(f"'model_tag' must be a filesystem-safe name ([A-Za-z0-9._@+=-]), got {result['model_tag']!r}")
    if "samples" in result:
        s = result["samples"]
        if not isinstance(s, Mapping) or "ids" not in s or not isinstance(s["ids"], list):
            fail("'samples' must be an object with an 'ids' list and equally long columns")
        lengths = {k: len(v) for k, v in s.items() if isinstance(v, list)}
        if len(lengths) != len(s) or len(set(lengths.values())) != 1:
            fail(f"'samples' columns must be lists of equal length, got lengths {lengths}")
        if len(set(s["ids"])) != len(s["ids"]):
            fail("'samples'['ids'] must be unique (paired comparisons align items by id)")


# --------------------------------------------------------------------------------------------------
# IO
# --------------------------------------------------------------------------------------------------
def write_result(path: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Validate and write ``result`` atomically (temp file + ``os.replace``); returns the file path.

    ``path`` is a ``.json`` file, or a folder (anything not ending in ``.json``) in which case the
    file is ``<benchmark>__<model_tag>.json`` inside it.
    """
    result = _jsonable(dict(result))
    validate_result(result)
    p = Path(path)
    if p.suffix != ".json":
        p = p / result_filename(result["benchmark"], result.get("model_tag") or model_tag(result["model"]))
    atomic_write_text(p, json.dumps(result, indent=1, allow_nan=False) + "\n")
    log.info("wrote %s", p)
    return p


def from_clip_benchmark(data: Mapping[str, Any], source: str = "result") -> dict[str, Any]:
    """Convert one clip_benchmark result (dataset/model/pretrained/task/metrics) to our schema."""
    model = str(data.get("model", ""))
    if data.get("pretrained"):
        model = f"open_clip:{model}@{data['pretrained']}"
    dataset = str(data["dataset"]).replace("wds/", "").replace("/", "_")
    lang = data.get("language")
    metrics = {k: v for k, v in data["metrics"].items() if _is_number(v) or v is None}
    result = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": dataset if not lang or lang == "en" else f"{dataset}_{lang}",
        "task": str(data.get("task") or "unknown"),
        "model": model or "unknown",
        "model_tag": model_tag(model or "unknown"),
        "checkpoint_sha": None,
        "metrics": metrics,
        "groups": [],
        "n_samples": 0,
        "config_hash": hash_config({k: data.get(k) for k in ("dataset", "task", "language")}),
        "timestamp": "1970-01-01T00:00:00+00:00",
        "versions": {},
        "extra": {"source_format": "clip_benchmark"},
    }
    result = _jsonable(result)
    validate_result(result, source)
    return result


def _legacy_group_fields(name: str) -> dict[str, str]:
    """Fields of a schema-1 group name: "region=Asia|category=food" -> {"region": "Asia", "category":
    "food"}; a bare label (other tools) -> {"label": name}. Only :func:`upgrade_result` calls this."""
    out: dict[str, str] = {}
    for part in str(name).split("|"):
        field, sep, value = part.partition("=")
        if sep:
            out[field] = value
        else:
            out["label"] = part
    return out


def upgrade_result(data: Any) -> Any:
    """A result in the current schema: a schema-1 dict (``groups`` keyed by flattened names, CIs in
    ``group_ci``) is converted to group records; anything else is returned unchanged (and left to
    :func:`validate_result` to judge). The only place that knows the old form."""
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping):
        return data
    out = {k: v for k, v in data.items() if k != "group_ci"}
    group_ci = data.get("group_ci") if isinstance(data.get("group_ci"), Mapping) else {}
    records = []
    for name, values in data["groups"].items():
        if not isinstance(values, Mapping):
            records.append({"fields": _legacy_group_fields(name), "metrics": values})  # validation names it
            continue
        rec: dict[str, Any] = {
            "fields": _legacy_group_fields(name),
            "n": values.get("n"),
            "metrics": {k: v for k, v in values.items() if k != "n"},
        }
        if group_ci.get(name):
            rec["ci"] = dict(group_ci[name])
        records.append(rec)
    out["groups"] = records
    out["schema_version"] = SCHEMA_VERSION
    return out


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one results file (ours, in this or the old schema, or clip_benchmark's)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultError(f"{p}: not valid JSON ({exc}); delete it and rerun the evaluation") from exc
    if isinstance(data, Mapping) and "benchmark" not in data and {"dataset", "metrics"} <= set(data):
        return from_clip_benchmark(data, str(p))
    data = upgrade_result(data)
    validate_result(data, str(p))
    return data


def read_results(folder: str | os.PathLike[str], strict: bool = True) -> list[dict[str, Any]]:
    """Read every ``*.json`` result in ``folder`` (sorted by name).

    strict=True raises on the first invalid file; strict=False logs a warning and skips it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"results folder {root} does not exist; run `python -m eval_suite.run ... --out {root}` first"
        )
    out = []
    for p in sorted(root.glob("*.json")):
        try:
            out.append(read_result(p))
        except ResultError as exc:
            if strict:
                raise
            log.warning("skipping %s", exc)
    return out
