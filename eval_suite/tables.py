"""Results folder -> one tidy DataFrame -> CSV / Markdown / LaTeX tables.

``load_frame`` gives one row per (model, benchmark, task, metric, group) with columns
``model, model_tag, benchmark, task, metric, group, value, n, ci_low, ci_high, is_main, checkpoint_sha,
config_hash, model_config, model_name, model_role, timestamp`` (name and role from the result's
``model_identity``) followed by one column per group field found in the results (``region``,
``category``, ``income``, ...): a group row holds its fields' values there and NaN in the fields it
lacks; an overall row has NaN in all of them. Select groups by these columns (:func:`group_mask`,
:func:`grouped_by`); ``group`` is only a display label (``"all"``, ``"region: Asia · category: food"``)
and is never parsed. Values are fractions in [0, 1] as stored; the writers scale them (percent by default).

CLI: ``python -m eval_suite.tables results/ --out tables/ [--base SPEC --tuned SPEC]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cultureclip.fileio import atomic_write_text
from eval_suite import metrics as M
from eval_suite.results import read_results, upgrade_result

log = logging.getLogger(__name__)

OVERALL = "all"
FRAME_COLUMNS = [
    "model",
    "model_tag",
    "benchmark",
    "task",
    "metric",
    "group",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "is_main",
    "checkpoint_sha",
    "config_hash",
    "model_config",
    "model_name",
    "model_role",
    "timestamp",
]
# Opt-in only, for models whose name is their only record of settings (the authors' released
# checkpoints "cultureclip_lora_0315_100k_32_07_03": two trailing two-digit loss weights, caption and
# concept; "07" reads as 0.7). Our own models carry their settings in ``model_config``.
AUTHOR_TAG_PATTERN = r"(?:^|[_-])w?(?P<w_cap>\d{2,3})_(?P<w_con>\d{2,3})$"

SampleKey = tuple[str, str, str]  # (model_tag, benchmark, task)
GroupFields = Mapping[str, str]  # a group as data, e.g. {"region": "Asia", "category": "food"}


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def frame_from_results(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Tidy frame from result dicts (validated, e.g. by ``read_results``; schema-1 dicts are upgraded)."""
    rows: list[dict[str, Any]] = []
    fields: dict[str, None] = {}  # group field names in order of first appearance
    for r in map(upgrade_result, results):
        ci = r.get("ci", {})
        base = {
            "model": r["model"],
            "model_tag": r.get("model_tag") or r["model"],
            "benchmark": r["benchmark"],
            "task": r["task"],
            "checkpoint_sha": r.get("checkpoint_sha"),
            "config_hash": r["config_hash"],
            "model_config": json.dumps(r["model_config"], sort_keys=True) if r.get("model_config") else None,
            "model_name": (r.get("model_identity") or {}).get("name"),
            "model_role": (r.get("model_identity") or {}).get("role"),
            "timestamp": r["timestamp"],
        }
        main = r.get("main_metric") or next(iter(r["metrics"]))
        for metric, value in r["metrics"].items():
            lo, hi = ci.get(metric, (None, None))
            rows.append(
                {**base, "metric": metric, "group": OVERALL, "value": value, "n": r["n_samples"] or None,
                 "ci_low": lo, "ci_high": hi, "is_main": metric == main}
            )
        for rec in r["groups"]:
            clash = sorted(set(rec["fields"]) & set(FRAME_COLUMNS))
            if clash:
                raise ValueError(
                    f"{r['benchmark']}/{base['model_tag']}: group field(s) {clash} share a name with a table "
                    f"column; rename the field (e.g. {clash[0]!r} -> {clash[0] + '_group'!r}) in the benchmark"
                )
            fields.update(dict.fromkeys(rec["fields"]))
            label = M.Group.of(rec["fields"]).label
            for metric, value in rec["metrics"].items():
                lo, hi = rec.get("ci", {}).get(metric, (None, None))
                rows.append(
                    {**base, **rec["fields"], "metric": metric, "group": label, "value": value, "n": rec.get("n"),
                     "ci_low": lo, "ci_high": hi, "is_main": metric == main}
                )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS + list(fields))
    for col in ("value", "ci_low", "ci_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["n"] = pd.to_numeric(frame["n"], errors="coerce").astype("Int64")
    frame["is_main"] = frame["is_main"].astype(bool)
    key = ["model", "benchmark", "task", "metric", *fields]
    dup = frame.duplicated(key, keep=False)
    if dup.any():
        log.warning(
            "%d rows appear in more than one result file (same model/benchmark/task); keeping the newest",
            int(dup.sum()),
        )
        frame = frame.sort_values("timestamp").drop_duplicates(key, keep="last")
    return frame.sort_values(["benchmark", "task", "model_tag", "group", "metric"], kind="stable").reset_index(
        drop=True
    )


def load_frame(results_dir: str | os.PathLike[str], strict: bool = True) -> pd.DataFrame:
    """Read a results folder into the tidy frame (see the module docstring for the columns)."""
    results = read_results(results_dir, strict=strict)
    if not results:
        raise FileNotFoundError(f"no *.json results in {results_dir}; run `python -m eval_suite.run` first")
    return frame_from_results(results)


def load_samples(results_dir: str | os.PathLike[str], strict: bool = True) -> dict[SampleKey, pd.DataFrame]:
    """Per-item values of every result that stored ``samples``: {(model_tag, benchmark, task): frame by id}."""
    out: dict[SampleKey, pd.DataFrame] = {}
    for r in read_results(results_dir, strict=strict):
        if "samples" in r:
            key = (r.get("model_tag") or r["model"], r["benchmark"], r["task"])
            out[key] = pd.DataFrame(r["samples"]).set_index("ids")
    return out


# --------------------------------------------------------------------------------------------------
# selection helpers
# --------------------------------------------------------------------------------------------------
def group_fields(frame: pd.DataFrame) -> list[str]:
    """The group field columns of a tidy frame: every column after the fixed :data:`FRAME_COLUMNS`."""
    return [c for c in frame.columns if c not in FRAME_COLUMNS]


def grouped_by(frame: pd.DataFrame, names: Iterable[str]) -> pd.Series:
    """Rows of groups defined by exactly the fields ``names`` (e.g. ["region"] or ["region", "category"]);
    no names -> the overall rows. A field the frame lacks matches nothing."""
    want = set(names)
    have = group_fields(frame)
    if not want <= set(have):
        return pd.Series(False, index=frame.index)
    mask = pd.Series(True, index=frame.index)
    for f in have:
        mask &= frame[f].notna() if f in want else frame[f].isna()
    return mask


def group_mask(frame: pd.DataFrame, group: GroupFields | None = None) -> pd.Series:
    """Rows of one group given as data ({"region": "Asia"}; None or {} -> the overall rows)."""
    group = dict(group or {})
    mask = grouped_by(frame, group)
    for f, v in group.items():
        if f in frame.columns:
            mask &= frame[f] == str(v)
    return mask


def resolve_model(frame: pd.DataFrame, name: str) -> str:
    """Model tag for ``name``, which may be a spec (``model``) or a tag (``model_tag``)."""
    hit = frame.loc[(frame["model"] == name) | (frame["model_tag"] == name), "model_tag"].unique()
    if len(hit) == 0:
        known = sorted(frame["model_tag"].unique().tolist())
        raise KeyError(f"model {name!r} not in the results; known model tags: {known}")
    if len(hit) > 1:
        raise KeyError(f"model {name!r} matches several model tags {sorted(hit.tolist())}; pass one tag")
    return str(hit[0])


def main_metrics(frame: pd.DataFrame, metric: str | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Rows of the chosen metric per benchmark: ``metric`` as a name, {benchmark: name}, or None = main."""
    if metric is None:
        return frame[frame["is_main"]]
    if isinstance(metric, Mapping):
        chosen = frame["benchmark"].map(dict(metric))
        return frame[frame["metric"] == chosen]
    sel = frame[frame["metric"] == metric]
    if sel.empty:
        raise KeyError(f"metric {metric!r} not in the results; known: {sorted(frame['metric'].unique().tolist())}")
    return sel


def summary_table(
    frame: pd.DataFrame,
    metric: str | Mapping[str, str] | None = None,
    group: GroupFields | None = None,
    scale: float = 100.0,
) -> pd.DataFrame:
    """Wide table: one row per (benchmark, metric), one column per model tag (values x ``scale``).

    ``group``: the overall numbers (None) or one group's, e.g. {"region": "Asia"}."""
    sel = main_metrics(frame, metric)
    sel = sel[group_mask(sel, group)]
    wide = sel.pivot_table(
        index=["benchmark", "metric"], columns="model_tag", values="value", aggfunc="first", sort=True
    )
    wide.columns.name = None
    return wide * scale


def group_table(
    frame: pd.DataFrame, field: str, metric: str | Mapping[str, str] | None = None, scale: float = 100.0
) -> pd.DataFrame:
    """Wide table of one grouping field (e.g. "region"): rows (benchmark, metric, value), columns models."""
    sel = main_metrics(frame, metric)
    sel = sel[grouped_by(sel, [field])]
    wide = sel.pivot_table(index=["benchmark", "metric", field], columns="model_tag", values="value", aggfunc="first")
    wide.columns.name = None
    return wide * scale


# --------------------------------------------------------------------------------------------------
# base vs tuned
# --------------------------------------------------------------------------------------------------
def _group_mask(samples: pd.DataFrame, fields: GroupFields) -> pd.Series | None:
    """Items of the group ``fields`` ({} = all items) by their stored labels; None if a label is not stored."""
    mask = pd.Series(True, index=samples.index)
    for f, v in fields.items():
        if f not in samples.columns:
            return None
        col = samples[f].astype(object).where(samples[f].notna(), M.UNKNOWN).astype(str)
        mask &= col == v
    return mask


def compare(
    frame: pd.DataFrame,
    base: str,
    tuned: str,
    samples: Mapping[SampleKey, pd.DataFrame] | None = None,
    groups: bool = False,
    metric: str | Mapping[str, str] | None = "all",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Base-vs-tuned table: ``base``, ``tuned``, ``delta`` (tuned - base) per benchmark/task/metric.

    Each side keeps its own CI when the results carry one. When ``samples`` (from :func:`load_samples`)
    hold per-item values of both models for a metric, the delta gets a paired-bootstrap CI and p-value
    over the items both evaluated (group rows use the stored group labels). ``groups`` adds per-group
    rows; ``metric`` = "all" keeps every metric, None only each benchmark's main one.
    """
    b_tag, t_tag = resolve_model(frame, base), resolve_model(frame, tuned)
    sel = frame if metric == "all" else main_metrics(frame, metric)
    if not groups:
        sel = sel[grouped_by(sel, [])]
    fields = [f for f in group_fields(sel) if sel[f].notna().any()]
    key = ["benchmark", "task", "metric", *fields]  # groups join on their fields (NaN matches NaN)
    cols = key + ["value", "ci_low", "ci_high", "n"]
    left = sel.loc[sel["model_tag"] == b_tag, cols + ["group"]]
    right = sel.loc[sel["model_tag"] == t_tag, cols]
    out = left.merge(right, on=key, how="inner", suffixes=("_base", "_tuned"))
    if out.empty:
        raise ValueError(f"models {b_tag!r} and {t_tag!r} share no benchmark/metric; evaluate both on the same ones")
    out = out.rename(columns={"value_base": "base", "value_tuned": "tuned"})
    out["delta"] = out["tuned"] - out["base"]
    out["n"] = out["n_tuned"].fillna(out["n_base"])
    dlo, dhi, pval, npair = [], [], [], []
    for row in out.to_dict("records"):
        res = None
        if samples is not None:
            sb = samples.get((b_tag, row["benchmark"], row["task"]))
            st = samples.get((t_tag, row["benchmark"], row["task"]))
            metric_name = row["metric"]
            if sb is not None and st is not None and metric_name in sb.columns and metric_name in st.columns:
                common = sb.index.intersection(st.index)
                group = {f: row[f] for f in fields if not pd.isna(row[f])}
                mask = _group_mask(sb.loc[common], group)
                ids = common[mask.to_numpy()] if mask is not None else common[:0]
                # items a metric does not apply to are stored as null (e.g. twin accuracy of an image whose
                # concept has no twin in the split): compare over the items both models have a value for
                ids = ids[(sb.loc[ids, metric_name].notna() & st.loc[ids, metric_name].notna()).to_numpy()]
                if len(ids):
                    res = M.paired_bootstrap(
                        sb.loc[ids, metric_name].to_numpy(float),
                        st.loc[ids, metric_name].to_numpy(float),
                        n_boot=n_boot,
                        seed=seed,
                    )
        dlo.append(res["ci_low"] if res else math.nan)
        dhi.append(res["ci_high"] if res else math.nan)
        pval.append(res["p_value"] if res else math.nan)
        npair.append(res["n"] if res else pd.NA)
    out["delta_ci_low"], out["delta_ci_high"], out["p_value"] = dlo, dhi, pval
    out["n_paired"] = pd.array(npair, dtype="Int64")
    ordered = ["benchmark", "task", "metric", "group", *fields] + [
        "n", "base", "tuned", "delta", "base_ci_low", "base_ci_high", "tuned_ci_low", "tuned_ci_high",
        "delta_ci_low", "delta_ci_high", "p_value", "n_paired",
    ]
    out = out.rename(
        columns={"ci_low_base": "base_ci_low", "ci_high_base": "base_ci_high",
                 "ci_low_tuned": "tuned_ci_low", "ci_high_tuned": "tuned_ci_high"}
    )
    return out[ordered].sort_values(["benchmark", "task", "metric", "group"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# ablations
# --------------------------------------------------------------------------------------------------
def _parse_number(text: str) -> float | str:
    """"07" -> 0.7 (tag convention: first digit is units), "0.7" -> 0.7, "adamw" -> "adamw"."""
    if re.fullmatch(r"\d+", text):
        return int(text) / 10 ** (len(text) - 1)
    try:
        return float(text)
    except ValueError:
        return text


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def ablation_params(
    frame: pd.DataFrame, params: Sequence[str] | None = None, pattern: str | None = None
) -> pd.DataFrame:
    """Ablation settings per model tag: index model_tag, one column per parameter.

    A parameter comes from the result's ``model_config`` (nested keys flattened with dots, e.g.
    ``loss.w_con``; a bare name also matches the last part) or, failing that, from the named groups of
    an explicitly given ``pattern`` applied to the model tag (opt-in, e.g. :data:`AUTHOR_TAG_PATTERN` for
    the authors' released checkpoints, whose names are their only record of settings); names are never
    parsed by default. ``params`` None: every config key that varies between models, else the pattern's groups.
    """
    rx = re.compile(pattern) if pattern else None
    per_model: dict[str, dict[str, Any]] = {}
    for tag, cfg in frame[["model_tag", "model_config"]].drop_duplicates("model_tag").itertuples(index=False):
        values: dict[str, Any] = {}
        if isinstance(cfg, str) and cfg:
            flat = _flatten(json.loads(cfg))
            values.update(flat)
            for k, v in flat.items():
                values.setdefault(k.rsplit(".", 1)[-1], v)
        if rx is not None:
            m = rx.search(str(tag))
            if m:
                for k, v in m.groupdict().items():
                    if v is not None:
                        values.setdefault(k, _parse_number(v))
        per_model[str(tag)] = values
    table = pd.DataFrame.from_dict(per_model, orient="index")
    table.index.name = "model_tag"
    if params is None:
        from_pattern = list(rx.groupindex) if rx is not None else []
        varying = [c for c in table.columns if table[c].astype(str).nunique(dropna=True) > 1]
        params = [c for c in from_pattern if c in table.columns] or varying
    missing = [p for p in params if p not in table.columns]
    if missing:
        raise KeyError(
            f"ablation parameters {missing} found neither in model_config nor in model tags "
            f"(pattern {pattern!r}); known: {sorted(table.columns.tolist())}"
        )
    return table[list(params)].dropna(how="all")


def ablation_table(
    frame: pd.DataFrame,
    params: Sequence[str] | None = None,
    metric: str | Mapping[str, str] | None = None,
    pattern: str | None = None,
    benchmarks: Sequence[str] | None = None,
    group: GroupFields | None = None,
    scale: float = 100.0,
) -> pd.DataFrame:
    """One row per ablation setting (e.g. loss weights w_cap/w_con), one column per benchmark, + mean.

    Models without the parameters (e.g. the base model) are left out; pass them separately via
    :func:`compare`. Cells are the chosen metric (default each benchmark's main metric) x ``scale``.
    """
    p = ablation_params(frame, params, pattern)
    if len(p) < 2:
        raise ValueError(
            f"an ablation needs at least two models with parameters {list(p.columns)}; found {p.index.tolist()}"
        )
    sel = main_metrics(frame, metric)
    sel = sel[group_mask(sel, group) & sel["model_tag"].isin(p.index)]
    if benchmarks is not None:
        sel = sel[sel["benchmark"].isin(list(benchmarks))]
    if sel.empty:
        raise ValueError("no metric rows for the ablation models; check metric/benchmarks")
    wide = sel.pivot_table(index="model_tag", columns="benchmark", values="value", aggfunc="first") * scale
    wide.columns.name = None
    complete = [c for c in wide.columns if wide[c].notna().all()]
    if len(complete) < wide.shape[1]:
        log.info("ablation mean over the benchmarks every setting has: %s", complete)
    wide["mean"] = wide[complete].mean(axis=1) if complete else math.nan
    table = p.join(wide, how="inner").reset_index()
    return table.sort_values(list(p.columns), kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
def _fmt_cell(v: Any, floatfmt: str) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


PRECISION = {"p_value": 3}  # columns shown with more digits than the default


def to_markdown(df: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """GitHub Markdown table (own formatter, so no ``tabulate`` dependency); numbers right-aligned."""
    data = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    fmts = [f".{PRECISION[c]}f" if c in PRECISION else floatfmt for c in data.columns]
    header = [str(c) for c in data.columns]
    numeric = [pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_bool_dtype(data[c]) for c in data.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |"]
    lines.append("|" + "|".join("---:" if num else ":---" for num in numeric) + "|")
    for row in data.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v, f) for v, f in zip(row, fmts)) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, precision: int = 1, caption: str | None = None) -> str:
    """booktabs LaTeX table via pandas Styler (needs jinja2); text cells and headers are escaped."""
    data = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    styler = (
        data.style.format(precision=precision, na_rep="--", escape="latex")
        .format(precision=PRECISION.get("p_value", 3), na_rep="--", subset=[c for c in data.columns if c in PRECISION])
        .format_index(escape="latex", axis=1)
        .hide(axis="index")
    )
    return styler.to_latex(hrules=True, caption=caption)


WRITERS: dict[str, Callable[[pd.DataFrame], str]] = {
    "csv": lambda df: df.to_csv(index=not isinstance(df.index, pd.RangeIndex)),
    "md": to_markdown,
    "tex": to_latex,
}


def write_table(
    df: pd.DataFrame, stem: str | os.PathLike[str], formats: Sequence[str] = ("csv", "md", "tex")
) -> list[Path]:
    """Write ``df`` as ``<stem>.csv``, ``.md``, ``.tex`` (atomic); returns the paths."""
    bad = [f for f in formats if f not in WRITERS]
    if bad:
        raise ValueError(f"unknown table formats {bad}; choose from {sorted(WRITERS)}")
    return [atomic_write_text(Path(f"{stem}.{fmt}"), WRITERS[fmt](df)) for fmt in formats]


def write_tables(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    base: str | None = None,
    tuned: str | None = None,
    samples: Mapping[SampleKey, pd.DataFrame] | None = None,
    metric: str | None = None,
    ablation: Sequence[str] | None = None,
    ablation_pattern: str | None = None,
    scale: float = 100.0,
    formats: Sequence[str] = ("csv", "md", "tex"),
    n_boot: int = 1000,
) -> list[Path]:
    """Write every table the frame supports into ``out_dir``.

    Always ``results.csv`` (the tidy frame) and ``summary.*`` (main metric per benchmark x model);
    ``groups_<field>.*`` for each single grouping field; ``compare.*`` (+ ``compare_groups.csv``) when
    ``base`` and ``tuned`` are given; ``ablation.*`` when two or more models carry ablation parameters.
    """
    out = Path(out_dir)
    written = [atomic_write_text(out / "results.csv", frame.to_csv(index=False))]
    written += write_table(summary_table(frame, metric, scale=scale), out / "summary", formats)
    for field in sorted(f for f in group_fields(frame) if grouped_by(frame, [f]).any()):
        written += write_table(group_table(frame, field, metric, scale=scale), out / f"groups_{field}", formats)
    if base or tuned:
        if not (base and tuned):
            raise ValueError("pass both --base and --tuned for a comparison table")
        table = compare(frame, base, tuned, samples=samples, n_boot=n_boot)
        pct = [c for c in table.columns if c in ("base", "tuned", "delta") or c.endswith(("_ci_low", "_ci_high"))]
        table[pct] = table[pct] * scale
        written += write_table(table, out / "compare", formats)
        gtable = compare(frame, base, tuned, samples=samples, groups=True, metric=metric, n_boot=n_boot)
        gtable[pct] = gtable[pct] * scale
        written += write_table(gtable, out / "compare_groups", ("csv",))
    try:
        table = ablation_table(frame, ablation, metric, ablation_pattern, scale=scale)
    except (KeyError, ValueError) as exc:
        if ablation:
            raise
        log.info("no ablation table: %s", exc)
    else:
        written += write_table(table, out / "ablation", formats)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval_suite.tables results/ --out tables/``: write CSV, Markdown and LaTeX tables."""
    ap = argparse.ArgumentParser(prog="python -m eval_suite.tables", description=__doc__.split("\n")[0])
    ap.add_argument("results", help="folder of <benchmark>__<model>.json results")
    ap.add_argument("--out", default="tables", help="output folder (default: tables/)")
    ap.add_argument("--base", help="base model (spec or tag) for the base-vs-tuned table")
    ap.add_argument("--tuned", help="tuned model (spec or tag) for the base-vs-tuned table")
    ap.add_argument("--metric", help="metric for summary/ablation tables (default: each benchmark's main)")
    ap.add_argument("--ablation", nargs="+", help="ablation parameters (model_config keys or pattern groups)")
    ap.add_argument("--ablation-pattern", default=None,
                    help="opt-in regex with named groups read from model tags, for models whose name is their only record of settings (e.g. the authors' checkpoints: tables.AUTHOR_TAG_PATTERN)")
    ap.add_argument("--scale", type=float, default=100.0, help="multiply values (default 100: percent)")
    ap.add_argument("--formats", nargs="+", default=["csv", "md", "tex"], choices=sorted(WRITERS))
    ap.add_argument("--n-boot", type=int, default=1000, help="paired bootstrap resamples for deltas")
    ap.add_argument("--skip-invalid", action="store_true", help="skip invalid result files instead of failing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    frame = load_frame(args.results, strict=not args.skip_invalid)
    samples = load_samples(args.results, strict=not args.skip_invalid) if args.base else None
    paths = write_tables(
        frame, args.out, base=args.base, tuned=args.tuned, samples=samples, metric=args.metric,
        ablation=args.ablation, ablation_pattern=args.ablation_pattern, scale=args.scale,
        formats=args.formats, n_boot=args.n_boot,
    )
    log.info("%d models x %d benchmarks -> %d files in %s", frame["model_tag"].nunique(),
             frame["benchmark"].nunique(), len(paths), args.out)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
