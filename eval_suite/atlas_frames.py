"""The confusion atlas's frame layout, shared by its builder (`eval_suite.confusions`) and its figures
(`eval_suite.figures`): column names per model, the per-concept and per-country views.

Its own module so that the atlas (which writes figures) and the figures (which read the atlas frame) do
not import each other.
"""
from __future__ import annotations

import logging

import pandas as pd

from eval_suite.geo import iso3_codes

logger = logging.getLogger(__name__)


def col(metric: str, label: str) -> str:
    """Column name of one model's metric in the atlas frame, e.g. ``prompt_cos[base]``."""
    return f"{metric}[{label}]"


def delta_col(metric: str) -> str:
    return f"delta_{metric}"


def atlas_labels(atlas: pd.DataFrame) -> list[str]:
    """The model labels of an atlas frame, in order."""
    labels = atlas.attrs.get("labels")
    if labels:
        return list(labels)
    return [c[len("prompt_cos["):-1] for c in atlas.columns if c.startswith("prompt_cos[")]


def concept_frame(atlas: pd.DataFrame, metric: str = "prompt_cos") -> pd.DataFrame:
    """One row per (concept side of a pair): culture, region, category and each model's value.

    A concept in several pairs appears once per pair; groupings average over these rows."""
    labels = atlas_labels(atlas)
    value_cols = [col(metric, lab) for lab in labels] + ([delta_col(metric)] if delta_col(metric) in atlas else [])
    sides = []
    for side in ("a", "b"):
        part = atlas[[side, f"name_{side}", f"culture_{side}", f"culture_name_{side}", f"region_{side}", "category",
                      "pair", *value_cols]].copy()
        part.columns = ["concept", "name", "culture", "culture_name", "region", "category", "pair", *value_cols]
        sides.append(part)
    return pd.concat(sides, ignore_index=True)


def culture_frame(atlas: pd.DataFrame, metric: str = "prompt_cos") -> pd.DataFrame:
    """Mean value per country (ISO alpha-3; a community counts for each country it lives in)."""

    per = concept_frame(atlas, metric)
    per["iso3"] = per["culture"].map(iso3_codes)
    missing = sorted(set(per.loc[per["iso3"].map(len) == 0, "culture"]))
    if missing:
        logger.warning("atlas map: no country for cultures %s (add them to eval_suite.geo)", missing)
    per = per.explode("iso3").dropna(subset=["iso3"])
    value_cols = [c for c in per.columns if c.startswith((metric + "[", "delta_"))]
    out = per.groupby("iso3").agg(
        n_concepts=("concept", "nunique"), cultures=("culture_name", lambda s: ", ".join(sorted(set(s))[:6])),
        **{c: (c, "mean") for c in value_cols}).reset_index()
    return out
