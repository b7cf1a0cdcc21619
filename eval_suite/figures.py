"""Plotly figures from the tidy results frame (``eval_suite.tables.load_frame``).

Every function returns a ``plotly.graph_objects.Figure``; the demo's dashboard shows the same figures.
plotly is imported inside the functions so importing this module stays cheap. Values are fractions
in the frame and shown as percent (``scale``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cultureclip.fileio import atomic_path
from eval_suite import tables as T
from eval_suite.atlas_frames import atlas_labels, col, concept_frame, culture_frame, delta_col

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

STATIC_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp")


class FigureExportError(RuntimeError):
    """A static image (PNG/SVG/PDF) could not be rendered; the message says how to fix it."""


def _go():
    import plotly.graph_objects as go

    return go


def benchmark_bars(
    frame: pd.DataFrame,
    metric: str | Mapping[str, str] | None = None,
    models: Sequence[str] | None = None,
    group: T.GroupFields | None = None,
    scale: float = 100.0,
    title: str | None = None,
) -> go.Figure:
    """Grouped bars: x = benchmark, one bar trace per model, y = metric (default each benchmark's main).

    ``group``: the overall numbers (None) or one group's, e.g. {"region": "Asia"}. Error bars show the
    stored 95% CI where the results have one.
    """
    go = _go()
    sel = T.main_metrics(frame, metric)
    sel = sel[T.group_mask(sel, group)]
    if models is not None:
        tags = [T.resolve_model(frame, m) for m in models]
        sel = sel[sel["model_tag"].isin(tags)]
    else:
        tags = sorted(sel["model_tag"].unique().tolist())
    if sel.empty:
        raise ValueError(f"no rows to plot for metric={metric!r}, group={group!r}")
    benchmarks = sorted(sel["benchmark"].unique().tolist())
    fig = go.Figure()
    for tag in tags:
        rows = sel[sel["model_tag"] == tag].set_index("benchmark").reindex(benchmarks)
        y = rows["value"].to_numpy(float) * scale
        has_ci = rows["ci_low"].notna().any()
        error = None
        if has_ci:
            error = dict(
                type="data",
                symmetric=False,
                array=(rows["ci_high"].to_numpy(float) * scale - y),
                arrayminus=(y - rows["ci_low"].to_numpy(float) * scale),
            )
        labels = [f"{b}<br>{m}" for b, m in zip(benchmarks, rows["metric"].fillna(""))]
        fig.add_trace(
            go.Bar(name=tag, x=benchmarks, y=y, error_y=error, customdata=labels,
                   hovertemplate="%{customdata}<br>%{y:.1f}<extra>" + tag + "</extra>")
        )
    metric_label = metric if isinstance(metric, str) else "main metric"
    fig.update_layout(
        barmode="group",
        title=title or f"{metric_label} by benchmark",
        xaxis_title="benchmark",
        yaxis_title=f"{metric_label} (%)" if scale == 100 else metric_label,
        legend_title="model",
        legend=dict(orientation="h", yanchor="top", y=-0.2),
    )
    return fig


def delta_heatmap(
    frame: pd.DataFrame,
    base: str,
    tuned: str,
    rows: str = "region",
    cols: str = "category",
    metric: str | None = None,
    benchmark: str | None = None,
    scale: float = 100.0,
) -> go.Figure:
    """Heatmap of tuned - base per (rows x cols) group, e.g. region x category, centred on zero.

    Uses the combined groups written with ``cross=[(rows, cols)]`` (the rows whose group has exactly
    the fields ``rows`` and ``cols``; their values come from those columns of the frame).
    ``benchmark`` defaults to the only benchmark that has such groups; ``metric`` to its main metric.
    """
    go = _go()
    b_tag, t_tag = T.resolve_model(frame, base), T.resolve_model(frame, tuned)
    sel = frame[T.grouped_by(frame, [rows, cols])]
    if sel.empty:
        raise ValueError(
            f"no {rows} x {cols} groups in the results; evaluate with cross groups ({rows!r}, {cols!r})"
        )
    if benchmark is None:
        found = sorted(sel["benchmark"].unique().tolist())
        if len(found) > 1:
            raise ValueError(f"several benchmarks have {rows} x {cols} groups {found}; pass benchmark=")
        benchmark = found[0]
    sel = sel[sel["benchmark"] == benchmark]
    sel = T.main_metrics(sel, metric)
    wide = {}
    for tag in (b_tag, t_tag):
        part = sel[sel["model_tag"] == tag]
        if part.empty:
            raise ValueError(f"model {tag!r} has no {rows} x {cols} results on {benchmark!r}")
        wide[tag] = pd.DataFrame(
            {rows: part[rows].to_numpy(), cols: part[cols].to_numpy(),
             "value": part["value"].to_numpy(float), "n": part["n"].to_numpy(dtype=float, na_value=np.nan)}
        ).pivot_table(index=rows, columns=cols, values=["value", "n"], aggfunc="first")
    delta = (wide[t_tag]["value"] - wide[b_tag]["value"]) * scale
    n = wide[t_tag]["n"].reindex_like(delta)
    text = np.where(np.isnan(delta.to_numpy()), "", np.vectorize(lambda v: f"{v:+.1f}")(delta.to_numpy()))
    used_metric = sel["metric"].iloc[0]
    fig = go.Figure(
        go.Heatmap(
            z=delta.to_numpy(),
            x=[str(c) for c in delta.columns],
            y=[str(i) for i in delta.index],
            text=text,
            texttemplate="%{text}",
            customdata=n.to_numpy(),
            colorscale="RdBu",
            zmid=0,
            colorbar=dict(title="Δ"),
            hovertemplate=f"{rows}=%{{y}}<br>{cols}=%{{x}}<br>Δ=%{{z:+.1f}}<br>n=%{{customdata}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{benchmark}: {used_metric}, {t_tag} − {b_tag}",
        xaxis_title=cols,
        yaxis_title=rows,
    )
    return fig


def twin_scatter(
    points: pd.DataFrame,
    x: str = "sim_twin",
    y: str = "sim_own",
    color: str = "model",
    hover: Sequence[str] = ("concept", "twin", "image_id"),
    title: str = "Similarity to own vs twin concept",
) -> go.Figure:
    """Per-image similarity to its own concept's prompt (y) vs its twin's (x), one trace per model.

    ``points`` needs columns ``sim_own``, ``sim_twin`` (cosines, e.g. ``cultureclip.twins.twin_scores``' own and best_twin)
    and ``model``; optional hover columns. Points above the dashed diagonal are images the model puts
    closer to their own concept; the legend shows each model's twin accuracy.
    """
    go = _go()
    missing = [c for c in (x, y, color) if c not in points.columns]
    if missing:
        raise KeyError(f"twin_scatter needs columns {missing}; have {list(points.columns)}")
    if points.empty:
        raise ValueError("twin_scatter got no points")
    fig = go.Figure()
    hover_cols = [h for h in hover if h in points.columns]
    for name, part in points.groupby(color, sort=True):
        acc = float((part[y] > part[x]).mean())
        custom = part[hover_cols].astype(str).to_numpy() if hover_cols else None
        lines = "".join(f"<br>{h}=%{{customdata[{i}]}}" for i, h in enumerate(hover_cols))
        fig.add_trace(
            go.Scatter(
                x=part[x], y=part[y], mode="markers", name=f"{name} (twin acc {acc:.0%})",
                customdata=custom, opacity=0.75,
                hovertemplate=f"{x}=%{{x:.3f}}<br>{y}=%{{y:.3f}}{lines}<extra>{name}</extra>",
            )
        )
    lo = float(min(points[x].min(), points[y].min()))
    hi = float(max(points[x].max(), points[y].max()))
    pad = 0.02 * (hi - lo or 1.0)
    fig.add_trace(
        go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="own = twin",
                   line=dict(dash="dash", color="gray"), hoverinfo="skip")
    )
    fig.update_layout(title=title, xaxis_title=f"similarity to twin concept ({x})",
                      yaxis_title=f"similarity to own concept ({y})", legend_title=color)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def ablation_lines(
    frame: pd.DataFrame,
    param: str = "w_con",
    metric: str | Mapping[str, str] | None = None,
    pattern: str | None = None,
    benchmarks: Sequence[str] | None = None,
    scale: float = 100.0,
) -> go.Figure:
    """One line per benchmark (plus their mean) of the metric against an ablation parameter."""
    go = _go()
    table = T.ablation_table(frame, [param], metric, pattern, benchmarks, scale=scale)
    numeric = pd.to_numeric(table[param], errors="coerce")
    if numeric.isna().any():
        raise ValueError(f"ablation parameter {param!r} is not numeric: {table[param].tolist()}")
    table = table.assign(**{param: numeric}).sort_values(param)
    series = [c for c in table.columns if c not in (param, "model_tag")]
    fig = go.Figure()
    for col in series:
        fig.add_trace(
            go.Scatter(x=table[param], y=table[col], mode="lines+markers", name=col,
                       line=dict(dash="dot") if col == "mean" else None,
                       customdata=table["model_tag"],
                       hovertemplate=f"{param}=%{{x}}<br>%{{y:.1f}}<br>%{{customdata}}<extra>{col}</extra>")
        )
    fig.update_layout(title=f"Ablation over {param}", xaxis_title=param,
                      yaxis_title="main metric (%)" if metric is None else f"{metric} (%)", legend_title="benchmark")
    return fig


def _switchable(fig: go.Figure, names: Sequence[str]) -> go.Figure:
    """Show one trace at a time, chosen by buttons (one per name), the first visible."""
    for i, trace in enumerate(fig.data):
        trace.visible = i == 0
    if len(names) > 1:
        buttons = [dict(label=name, method="update",
                        args=[{"visible": [j == i for j in range(len(names))]}]) for i, name in enumerate(names)]
        fig.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0, y=1.01,
                                            xanchor="left", yanchor="bottom", showactive=True,
                                            pad=dict(t=0, b=0))])
    return fig


def _atlas_series(atlas: pd.DataFrame, metric: str) -> list[tuple[str, str, bool]]:
    """(column, button name, is_delta) for each model's metric, plus the difference with two models."""

    labels = atlas_labels(atlas)
    out = [(col(metric, lab), lab, False) for lab in labels]
    if delta_col(metric) in atlas.columns and len(labels) == 2:
        out.append((delta_col(metric), f"{labels[1]} − {labels[0]}", True))
    return out


def atlas_heatmap(atlas: pd.DataFrame, metric: str = "prompt_cos", rows: str = "region",
                  cols: str = "category", label: str | None = None) -> go.Figure:
    """Region x category heatmap of the confusion atlas (``eval_suite.confusions``): the mean of
    `metric` over the twin-pair sides of each cell; buttons switch between models and their difference.
    ``label``: the metric's name in titles (default: its column name)."""

    go = _go()
    label = label or metric
    per = concept_frame(atlas, metric)
    fig = go.Figure()
    series = _atlas_series(atlas, metric)
    for column, name, is_delta in series:
        grid = per.pivot_table(index=rows, columns=cols, values=column, aggfunc="mean")
        n = per.pivot_table(index=rows, columns=cols, values="pair", aggfunc="count").reindex_like(grid)
        z = grid.to_numpy(float)
        text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:+.3f}" if is_delta else f"{v:.2f}")(z))
        fig.add_trace(go.Heatmap(
            z=z, x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index], text=text,
            texttemplate="%{text}", customdata=n.to_numpy(), name=name,
            colorscale="RdBu_r" if is_delta else "Reds", zmid=0 if is_delta else None,
            colorbar=dict(title="Δ" if is_delta else "mean"),
            hovertemplate=f"{rows}=%{{y}}<br>{cols}=%{{x}}<br>{label}=%{{z:.3f}}<br>pair sides=%{{customdata}}"
                          f"<extra>{name}</extra>"))
    _switchable(fig, [name for _, name, _ in series])
    fig.update_layout(title=dict(text=f"Mean {label} of twin pairs by {rows} × {cols}<br><sup>higher = more "
                                      "confusable</sup>", x=0.01, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=12),
                                 font=dict(size=14)),
                      xaxis_title=None, yaxis_title=None, margin=dict(t=110, l=10, r=10))
    return fig


def atlas_map(atlas: pd.DataFrame, metric: str = "prompt_cos", label: str | None = None) -> go.Figure:
    """World map (plotly choropleth, ISO alpha-3) of the mean `metric` of each country's twin pairs;
    buttons switch between models and their difference. The browser fetches the country outlines from
    plotly's CDN: where it cannot, use :func:`atlas_countries`."""

    go = _go()
    label = label or metric
    per = culture_frame(atlas, metric)
    fig = go.Figure()
    series = _atlas_series(atlas, metric)
    for column, name, is_delta in series:
        fig.add_trace(go.Choropleth(
            locations=per["iso3"], z=per[column], locationmode="ISO-3", name=name,
            customdata=np.stack([per["cultures"], per["n_concepts"]], axis=-1),
            colorscale="RdBu_r" if is_delta else "Reds", zmid=0 if is_delta else None,
            colorbar=dict(title="Δ" if is_delta else "mean"),
            hovertemplate="%{location}: %{z:.3f}<br>%{customdata[0]}<br>concepts: %{customdata[1]}"
                          f"<extra>{name}</extra>"))
    _switchable(fig, [name for _, name, _ in series])
    fig.update_layout(title=dict(text=f"Mean {label} of each country's twin pairs<br><sup>higher = more "
                                      "confusable</sup>", x=0.01, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=12),
                                 font=dict(size=14)),
                      geo=dict(showframe=False, showcoastlines=True, projection_type="natural earth"),
                      margin=dict(l=0, r=0, t=110, b=0))
    return fig


def atlas_countries(atlas: pd.DataFrame, metric: str = "prompt_cos", label: str | None = None,
                    top: int = 25) -> go.Figure:
    """The countries whose twin pairs are most confusable, ranked (the map's numbers without a map, so it
    needs no outlines from a CDN): one row per country, a dot per model joined by a line, the first model's
    most confusable first; the `top` first of them."""

    go = _go()
    label = label or metric
    labels = atlas_labels(atlas)
    per = culture_frame(atlas, metric)
    first = col(metric, labels[0])
    per = per.sort_values(first, ascending=False, kind="stable").head(top)
    names = [f"{c.split(',')[0]} ({code})" if c else code for c, code in zip(per["cultures"], per["iso3"])]
    y = list(reversed(names))  # most confusable at the top
    fig = go.Figure()
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    if len(labels) >= 2:
        xs, ys = [], []
        for name, a, b in zip(names, per[col(metric, labels[0])], per[col(metric, labels[1])]):
            xs += [a, b, None]
            ys += [name, name, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#bbbbbb", width=2), hoverinfo="skip",
                                 showlegend=False))
    for i, lab in enumerate(labels):
        fig.add_trace(go.Scatter(
            x=per[col(metric, lab)], y=names, mode="markers", name=lab, marker=dict(size=9, color=colours[i % 4]),
            customdata=np.stack([per["cultures"], per["n_concepts"]], axis=-1),
            hovertemplate=f"%{{y}}: %{{x:.3f}}<br>%{{customdata[0]}}<br>concepts: %{{customdata[1]}}<extra>{lab}</extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=y, automargin=True)
    n_all = len(culture_frame(atlas, metric))
    fig.update_layout(
        title=dict(text=f"Countries whose twin pairs are most confusable<br><sup>mean {label} of each country's twin "
                        f"pairs, top {len(per)} of {n_all} by {labels[0]}; further right = more confusable</sup>",
                   x=0.01, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=12), font=dict(size=14)),
        height=max(360, 120 + 20 * len(per)), margin=dict(t=90, l=10, r=10, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), xaxis_title=None)
    return fig


def write_figure(fig: go.Figure, path: str | os.PathLike[str], include_plotlyjs: bool | str = True,
                 scale: float = 2.0) -> Path:
    """Write a figure: ``.html`` always works (self-contained by default, so it opens offline);
    ``.png``/``.svg``/``.pdf`` need kaleido and a Chrome/Chromium it can find (``BROWSER_PATH``).

    Raises :class:`FigureExportError` with the fix if static export is impossible here; nothing is
    left half-written (temp file + rename).
    """

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".html", ".htm") and suffix not in STATIC_FORMATS:
        raise ValueError(f"unknown figure format {suffix!r} for {p}; use .html or one of {STATIC_FORMATS}")
    with atomic_path(p) as tmp:
        if suffix in (".html", ".htm"):
            fig.write_html(tmp, include_plotlyjs=include_plotlyjs, full_html=True)
        else:
            _write_static(fig, tmp, suffix, scale)
    log.info("wrote %s", p)
    return p


def _write_static(fig: go.Figure, tmp: Path, suffix: str, scale: float) -> None:
    try:
        import kaleido  # noqa: F401
    except ImportError as exc:
        raise FigureExportError(
            f"writing {suffix} needs kaleido (`pip install kaleido`); or write .html instead"
        ) from exc
    try:
        fig.write_image(tmp, format=suffix.lstrip(".").replace("jpg", "jpeg"), scale=scale)
    except Exception as exc:  # kaleido raises several types when Chrome is missing or crashes
        raise FigureExportError(
            f"kaleido could not render {suffix}: {type(exc).__name__}: {exc}. kaleido>=1 needs Chrome or "
            "Chromium: install one (e.g. `apt-get install chromium`) or set BROWSER_PATH to its "
            "executable; `plotly_get_chrome` downloads one when the internet is reachable. "
            "HTML export works without it."
        ) from exc
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise FigureExportError(f"kaleido wrote no {suffix} data; write .html instead")


def write_figures(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    base: str | None = None,
    tuned: str | None = None,
    formats: Sequence[str] = ("html",),
    ablation_param: str = "w_con",
    ablation_pattern: str | None = None,
) -> list[Path]:
    """Write every figure the frame supports (bars; heatmap and ablation lines when possible)."""
    figs: dict[str, Any] = {"benchmark_bars": benchmark_bars(frame)}
    if base and tuned:
        try:
            figs["delta_heatmap"] = delta_heatmap(frame, base, tuned)
        except ValueError as exc:
            log.info("no delta heatmap: %s", exc)
    try:
        figs["ablation_lines"] = ablation_lines(frame, ablation_param, pattern=ablation_pattern)
    except (KeyError, ValueError) as exc:
        log.info("no ablation lines: %s", exc)
    out = Path(out_dir)
    return [write_figure(fig, out / f"{name}.{fmt}") for name, fig in figs.items() for fmt in formats]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval_suite.figures results/ --out figures/ [--base A --tuned B] [--formats html png]``."""

    ap = argparse.ArgumentParser(prog="python -m eval_suite.figures", description="plot a results folder")
    ap.add_argument("results", help="folder of <benchmark>__<model>.json results")
    ap.add_argument("--out", default="figures", help="output folder (default: figures/)")
    ap.add_argument("--base", help="base model (spec or tag) for the delta heatmap")
    ap.add_argument("--tuned", help="tuned model (spec or tag) for the delta heatmap")
    ap.add_argument("--formats", nargs="+", default=["html"], help="html and/or png, svg, pdf (need kaleido)")
    ap.add_argument("--ablation-param", default="w_con", help="x axis of the ablation lines")
    ap.add_argument("--ablation-pattern", default=None,
                    help="opt-in regex with named groups read from model tags (e.g. tables.AUTHOR_TAG_PATTERN)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("choreographer", "kaleido"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    frame = T.load_frame(args.results)
    for p in write_figures(frame, args.out, args.base, args.tuned, args.formats, args.ablation_param,
                            args.ablation_pattern):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
