"""Benchmark adapters: one class per benchmark, in one registry dict.

`create_benchmark(name, root=None, protocol=None, **options)` builds one; `protocol=None` picks the
benchmark's default (the CultureCLIP authors' `paper` protocol where it differs from `official`).
"""
from __future__ import annotations

from typing import Any

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError
from eval_suite.benchmarks.tasks import (BenchmarkResult, ChoiceData, ClassificationData, ImageRef, RankingData,
                                         RetrievalData, TwinData)
from eval_suite.benchmarks.classification import (DollarStreetBenchmark, GeoDEBenchmark, ImageNet1kBenchmark,
                                                  ZeroShotBenchmark)
from eval_suite.benchmarks.crope import CROPEBenchmark
from eval_suite.benchmarks.cultwin import CulTwinBenchmark, WorldAttributesBenchmark
from eval_suite.benchmarks.cvqa import CVQABenchmark
from eval_suite.benchmarks.globalrg import GlobalRGGroundingBenchmark, GlobalRGRetrievalBenchmark
from eval_suite.benchmarks.retrieval import COCOBenchmark, Flickr30kBenchmark
from eval_suite.benchmarks.sugarcrepe import SugarCrepeBenchmark
from eval_suite.benchmarks.worldcuisines import WorldCuisinesBenchmark

BENCHMARKS: dict[str, type[Benchmark]] = {
    cls.name: cls
    for cls in (CulTwinBenchmark, WorldAttributesBenchmark, CROPEBenchmark, GlobalRGRetrievalBenchmark, GlobalRGGroundingBenchmark,
                DollarStreetBenchmark, GeoDEBenchmark, WorldCuisinesBenchmark, CVQABenchmark,
                ZeroShotBenchmark, ImageNet1kBenchmark, Flickr30kBenchmark, COCOBenchmark, SugarCrepeBenchmark)
}


def create_benchmark(name: str, root: str | None = None, protocol: str | None = None, **options: Any) -> Benchmark:
    """Build the adapter registered as `name` (see BENCHMARKS for the choices)."""
    try:
        cls = BENCHMARKS[name]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}") from None
    if protocol is None:
        return cls(root, **options)
    return cls(root, protocol=protocol, **options)


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkError", "BenchmarkNotFoundError", "BenchmarkResult", "ChoiceData",
           "ClassificationData", "ImageRef", "RankingData", "RetrievalData", "TwinData", "create_benchmark"]
