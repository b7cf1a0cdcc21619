"""Cultural confusion atlas: how close a CLIP's text tower puts the two concepts of every twin pair.

No images are needed, so any CLIP can be audited in seconds: for each curated twin pair (a, b) of the
catalog, the cosine between the embeddings of a's and b's concept prompts ("a photo of gyoza, a
Japanese dumpling" vs "... jiaozi, a Chinese dumpling") and of their bare names ("gyoza" vs "jiaozi").
A pair whose texts nearly coincide is one the model can hardly tell apart by text, whatever the image.
Raw cosines are not comparable across models (each has its own spread), so `prompt_z` also gives the
pair's cosine as a z-score within that model's cosines over all concept pairs of the catalog.

    python -m eval_suite.confusions --models SPEC [SPEC] --out DIR [--catalog PATH ...]

writes `confusion_atlas.csv` (one row per pair, ranked by the first model's prompt cosine) and
`confusion_atlas.html` (the table's top rows, a region x category heatmap and a world map by culture;
with two models also their difference). The demo's atlas tab shows the same table and figures.
"""
from __future__ import annotations

import argparse
import html
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cultureclip.backbone import BackboneError, create_backbone, default_device
from cultureclip.fileio import atomic_write_text
from cultureclip.inference import Embedder
from eval_suite import figures
from eval_suite.atlas_frames import atlas_labels, col, concept_frame, culture_frame, delta_col  # noqa: F401 - re-exported
from eval_suite.results import model_tag
from synth.catalog import CatalogError, load_catalog

logger = logging.getLogger(__name__)

METRICS = ("prompt_cos", "name_cos", "prompt_z")
PAIR_COLUMNS = ["rank", "pair", "a", "b", "name_a", "name_b", "culture_a", "culture_b", "culture_name_a",
                "culture_name_b", "region_a", "region_b", "category"]


class AtlasConcept(Protocol):
    """What the atlas reads of a concept (a catalog Concept plus its prompt, or the demo's ConceptInfo)."""

    id: str
    name: str
    prompt: str
    culture: str
    culture_name: str
    region: str
    category: str


def concepts_from_catalog(catalog: Any) -> dict[str, AtlasConcept]:
    """Atlas concepts from a `synth.catalog.Catalog` (the prompt is the catalog's concept prompt)."""

    return {c.id: SimpleNamespace(id=c.id, name=c.name, prompt=catalog.concept_prompt(c.id), culture=c.culture,
                                  culture_name=c.culture_name, region=c.region, category=c.category)
            for c in catalog}


def _embed_unique(embedder: Any, texts: Sequence[str]) -> tuple[dict[str, int], "np.ndarray"]:
    """Each distinct text embedded once: (text -> row, (T, D) normalized float32).

    Through the Embedder's cached label bank (one "{}" template: the normalized text embedding), so
    texts the app already embedded (e.g. its catalog label bank) are not embedded again."""
    index: dict[str, int] = {}
    for t in texts:
        index.setdefault(t, len(index))
    if hasattr(embedder, "label_bank"):
        feats = embedder.label_bank(list(index), ("{}",)).float().numpy()  # (T, D)
    else:
        feats = embedder.embed_texts(list(index)).float().numpy()  # (T, D), L2-normalized by the Embedder
    return index, feats


def pair_cosines(embedder: Any, texts_a: Sequence[str], texts_b: Sequence[str]) -> np.ndarray:
    """(P,) cosine between the embeddings of texts_a[i] and texts_b[i] (identical texts give 1)."""
    if len(texts_a) != len(texts_b):
        raise ValueError(f"texts_a has {len(texts_a)} entries but texts_b has {len(texts_b)}")
    index, feats = _embed_unique(embedder, list(texts_a) + list(texts_b))
    ia = np.array([index[t] for t in texts_a], dtype=int)
    ib = np.array([index[t] for t in texts_b], dtype=int)
    return np.einsum("pd,pd->p", feats[ia], feats[ib]) if len(ia) else np.zeros(0)


def model_scores(embedder: Any, concepts: Mapping[str, AtlasConcept], pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Per pair: prompt cosine, name cosine and the prompt cosine's z-score among all concept pairs."""
    ids = sorted(concepts)  # by id: the same list as the demo's concept bank, so its cached bank is reused
    pos = {c: i for i, c in enumerate(ids)}
    index, feats = _embed_unique(embedder, [concepts[c].prompt for c in ids])
    prompt = feats[[index[concepts[c].prompt] for c in ids]]  # (C, D)
    sims = prompt @ prompt.T  # (C, C)
    off = sims[~np.eye(len(ids), dtype=bool)]
    mu, sd = (float(off.mean()), float(off.std())) if off.size else (0.0, 1.0)
    ia = np.array([pos[a] for a, _ in pairs], dtype=int)
    ib = np.array([pos[b] for _, b in pairs], dtype=int)
    prompt_cos = sims[ia, ib] if len(pairs) else np.zeros(0)
    name_cos = pair_cosines(embedder, [concepts[a].name for a, _ in pairs], [concepts[b].name for _, b in pairs])
    return {"prompt_cos": prompt_cos, "name_cos": name_cos, "prompt_z": (prompt_cos - mu) / (sd or 1.0)}


def confusion_atlas(models: Mapping[str, Any], concepts: Mapping[str, AtlasConcept],
                    pairs: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One row per twin pair with every model's `METRICS` (columns ``prompt_cos[label]``, ...).

    models: {label: Embedder} (one or two; with two, ``delta_<metric>`` = second - first). pairs
    default to every twin link between the given concepts. Rows are ranked by the first model's prompt
    cosine, most confusable first (rank 1)."""
    if not models:
        raise ValueError("give at least one model")
    if pairs is None:
        raise ValueError("give the twin pairs (e.g. catalog.twin_pairs())")
    unknown = sorted({c for p in pairs for c in p} - set(concepts))
    if unknown:
        raise ValueError(f"twin pairs name concepts that are not given: {unknown[:5]}")
    pairs = [tuple(sorted(p)) for p in pairs]
    rows = []
    for a, b in pairs:
        ca, cb = concepts[a], concepts[b]
        rows.append({"pair": f"{ca.name} ↔ {cb.name}", "a": a, "b": b, "name_a": ca.name, "name_b": cb.name,
                     "culture_a": ca.culture, "culture_b": cb.culture, "culture_name_a": ca.culture_name,
                     "culture_name_b": cb.culture_name, "region_a": ca.region, "region_b": cb.region,
                     "category": ca.category})
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS[1:])
    labels = list(models)
    for label in labels:
        t0 = time.perf_counter()
        scores = model_scores(models[label], concepts, pairs)
        for metric in METRICS:
            frame[col(metric, label)] = scores[metric]
        logger.info("atlas: %s scored %d pairs in %.1fs", label, len(pairs), time.perf_counter() - t0)
    if len(labels) == 2:
        for metric in METRICS:
            frame[delta_col(metric)] = frame[col(metric, labels[1])] - frame[col(metric, labels[0])]
    frame = frame.sort_values(col("prompt_cos", labels[0]), ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    frame.attrs["labels"] = labels
    return frame


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
def display_table(atlas: pd.DataFrame, top: int | None = None, digits: int = 3) -> pd.DataFrame:
    """The ranked table for people: pair, cultures, category and each model's cosines (rounded)."""
    labels = atlas_labels(atlas)
    cols = ["rank", "pair", "category"]
    out = atlas.assign(cultures=atlas["culture_name_a"] + " / " + atlas["culture_name_b"])
    cols.insert(2, "cultures")
    for metric in ("prompt_cos", "name_cos", "prompt_z"):
        cols += [col(metric, lab) for lab in labels]
        if delta_col(metric) in atlas and metric != "prompt_z":
            cols.append(delta_col(metric))
    out = out[cols].copy()
    num = out.select_dtypes("number").columns.drop("rank")
    out[num] = out[num].astype("float64").round(digits)  # float32 0.983 would print as 0.9829999804496765
    return out.head(top) if top else out


def write_atlas(atlas: pd.DataFrame, out_dir: str | Path, title: str = "Cultural confusion atlas",
                metric: str = "prompt_cos", top: int = 50) -> list[Path]:
    """`confusion_atlas.csv` (every pair) and a self-contained `confusion_atlas.html` (table + figures)."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "confusion_atlas.csv"
    atomic_write_text(csv_path, atlas.to_csv(index=False))
    figs = [figures.atlas_heatmap(atlas, metric=metric), figures.atlas_map(atlas, metric=metric)]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(atlas)} twin pairs; models: {html.escape(', '.join(atlas_labels(atlas)))}. "
             "prompt_cos / name_cos: cosine between the two concepts' prompt / name embeddings (higher = more "
             "easily confused); prompt_z: that cosine as a z-score among all concept pairs of the model.</p>"]
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if i == 0 else False))
    parts.append(f"<h2>The {min(top, len(atlas))} most confusable pairs (all pairs in {csv_path.name})</h2>")
    parts.append(display_table(atlas, top).to_html(index=False, escape=True, border=0))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    html_path = out / "confusion_atlas.html"
    atomic_write_text(html_path, page)
    return [csv_path, html_path]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval_suite.confusions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="one or two model specs (base first, then tuned)")
    ap.add_argument("--out", required=True, help="output folder for confusion_atlas.csv/.html")
    ap.add_argument("--catalog", action="append", help="catalog YAML file/folder (default: the curated catalog)")
    ap.add_argument("--metric", default="prompt_cos", choices=METRICS, help="value shown in the heatmap and map")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(args.models) > 2:
        ap.error("give one or two models (base first, then the tuned one)")

    try:
        catalog = load_catalog(args.catalog) if args.catalog else load_catalog()
    except CatalogError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    models = {}
    for spec in args.models:
        label = model_tag(spec)
        if label in models:
            label = f"{label}#{len(models) + 1}"
        try:
            models[label] = Embedder(create_backbone(spec, device=args.device or default_device()),
                                     batch_size=args.batch_size)
        except BackboneError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    atlas = confusion_atlas(models, concepts_from_catalog(catalog), catalog.twin_pairs())
    for p in write_atlas(atlas, args.out, metric=args.metric):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
