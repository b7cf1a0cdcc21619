"""CVQA (`afaji/cvqa`, NeurIPS 2024): culturally diverse VQA as multiple choice by similarity.

Format checked against /work/shared/BENCHMARK_FORMATS.md §6 (card YAML, lm-eval utils): parquet
`data/test-*.parquet`; columns `image` (HF Image), `ID`, `Subset` (a stringified tuple
"('Language', 'Country')"), `Question`, `Translated Question`, `Options` / `Translated Options` (a list
of 4 strings in later revisions, one string in early ones), `Label` (0-3; -1 in the public test split),
`Category`, `Image Type`, `Image Source`, `License`.
Scoring: argmax over "{Translated Question} {option}" (English; `language=native` uses `Question` +
`Options`). The public test split hides labels (`Label == -1`): those rows are skipped and, if none are
left, a clear error explains how to score (submit `ID,Prediction` to the CVQA organisers).
Groups: country, language, category.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, show_path
from eval_suite.benchmarks.readers import find_parquet, read_parquet_rows, require_parquet_columns
from eval_suite.benchmarks.tasks import ChoiceData, image_ref_from_hf, null_ref


def parse_options(value) -> list[str]:
    """Options as a list: native list, or the early revisions' single string (JSON/Python list)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                out = parse(value)
                if isinstance(out, (list, tuple)):
                    return [str(v) for v in out]
            except (ValueError, SyntaxError):
                continue
    raise BenchmarkError(f"cvqa: cannot read options from {value!r}")


def parse_subset(value: str) -> tuple[str, str]:
    try:
        lang, country = ast.literal_eval(value)
        return str(lang), str(country)
    except (ValueError, SyntaxError):
        return "unknown", str(value)


class CVQABenchmark(Benchmark):
    name = "cvqa"
    task = "multiple_choice"
    hub_id = "afaji/cvqa"
    env_var = "CULTURECLIP_CVQA"

    def _load(self, root: Path) -> ChoiceData:
        files = find_parquet(root, "test")
        if not files:
            raise BenchmarkNotFoundError(f"cvqa: no data/test-*.parquet under {show_path(root)}. {self.how_to_get()}")
        native = self.options.get("language", "english") == "native"
        q_col, o_col = ("Question", "Options") if native else ("Translated Question", "Translated Options")
        required = ("image", q_col, o_col, "Label")
        require_parquet_columns(self.name, files, required,
                                f"CVQA rows ({'native' if native else 'English'} questions) need {', '.join(required)}; "
                                "Subset and Category are read when present.")
        rows = read_parquet_rows(files)
        labelled = [r for r in rows if int(r.get("Label", -1)) >= 0]
        if not labelled:
            raise BenchmarkError(
                f"cvqa: all {len(rows)} rows have Label == -1 (the public test split hides answers); accuracy "
                "needs a labelled copy (point --root cvqa=PATH at it) or an `ID,Prediction` submission to the "
                "CVQA organisers (https://cvqa-benchmark.org)")
        if len(labelled) < len(rows):
            self.notes["n_unlabelled_skipped"] = len(rows) - len(labelled)
        images, options, answers = [], [], []
        groups = {"country": [], "language": [], "category": []}
        for r in labelled:
            opts = parse_options(r[o_col])
            q = str(r.get(q_col) or "").strip()
            images.append(image_ref_from_hf(r.get("image")) or null_ref())
            options.append([f"{q} {o}".strip() for o in opts])
            answers.append(int(r["Label"]))
            lang, country = parse_subset(str(r.get("Subset", "")))
            groups["country"].append(country)
            groups["language"].append(lang)
            groups["category"].append(str(r.get("Category", "")))
        return ChoiceData(images=images, options=options, answers=np.array(answers), groups=groups)
