"""GlobalRG: the CultureCLIP authors' copies `UBC-VL/GlobalRG-Retrieval` and
`UBC-VL/globalrg-grounding-task` (what their evaluators load, split `test`), or the `UBCNLP/GlobalRG-*`
copies; any of them is accepted (the hub id option picks one).

Format: parquet `data/test-*.parquet`; Retrieval columns `image` (HF Image), `region` (country),
`universal`; Grounding columns `image`, `region`, `concept`. There is no id column (`u_id` appears only in
the card prose). Gold relevance / boxes are not public.

Retrieval protocols:
- `paper` (CultureCLIP authors): universals seen in >= 4 regions; per image 4 options
  "The picture depicts a kind of {universal} in {region}" (true region + 3 other regions with that
  universal, sampled and shuffled with seed 42); accuracy.
- `official`: text -> image retrieval, one query "a photo of {universal}" per universal over the whole
  pool; precision@5/10 against a local gold file (`gold=PATH`: CSV/JSONL with a `universal` column and,
  to name a relevant image, `image_sha256` (sha256 of the image bytes: stable across copies and row
  orders) or `index` (row number in the test split of the copy you evaluate); optional `relevant` 0/1)
  and cultural diversity@5/10
  (normalised entropy of `region` in the top k). Without gold the relevance proxy is
  `universal == query`, reported as `proxy_precision@k`.
Grounding: only `paper` (4-way concept choice "The item in the picture is {concept} in {region}" among
concepts of the same region, regions with >= 4 concepts); the official box accuracy needs hidden boxes.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.readers import find_parquet, read_parquet_rows, require_parquet_columns
from eval_suite.benchmarks.tasks import ChoiceData, RankingData, image_ref_from_hf, null_ref

GOLD_KEYS = ("image_sha256", "index")


RETRIEVAL_COLUMNS = ("image", "region", "universal")
GROUNDING_COLUMNS = ("image", "region", "concept")


def _rows(bench: Benchmark, root: Path, required: tuple[str, ...]) -> list[dict]:
    """The test split's rows, after checking every shard has the `required` columns (a copy with a
    renamed column fails here naming it, under every protocol)."""
    files = find_parquet(root, "test")
    if not files:
        raise BenchmarkNotFoundError(f"{bench.name}: no data/test-*.parquet under {show_path(root)}. {bench.how_to_get()}")
    require_parquet_columns(bench.name, files, required,
                            f"GlobalRG's {bench.name.split('_')[1]} rows have the columns {', '.join(required)}.")
    return read_parquet_rows(files)


def _read_gold(path: Path) -> list[dict]:
    if not path.is_file():
        raise BenchmarkNotFoundError(f"GlobalRG gold file {show_path(path)} not found (the gold answers come from the "
                                     "GlobalRG authors on request: see https://globalrg.github.io)")
    if path.suffix == ".jsonl":
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def image_sha256(cell) -> str | None:
    """sha256 of an HF Image cell's encoded bytes (the key gold files use)."""
    ref = image_ref_from_hf(cell)
    if ref is None:
        return None
    try:
        return hashlib.sha256(ref.read_bytes()).hexdigest()
    except (OSError, BenchmarkError):
        return None


class GlobalRGRetrievalBenchmark(Benchmark):
    name = "globalrg_retrieval"
    hub_id = "UBC-VL/GlobalRG-Retrieval"
    hub_alternatives = ("UBCNLP/GlobalRG-Retrieval",)
    env_var = "CULTURECLIP_GLOBALRG_RETRIEVAL"
    protocols = ("paper", "official")

    def __init__(self, root=None, protocol: str = "paper", **options):
        super().__init__(root, protocol, **options)

    @property
    def task(self) -> str:  # type: ignore[override]
        return "multiple_choice" if self.protocol == "paper" else "retrieval"

    def _load(self, root: Path):
        rows = _rows(self, root, RETRIEVAL_COLUMNS)
        if self.protocol == "paper":
            rows = [r for r in rows if r.get("universal") and r.get("region")]
            return self._paper(rows)  # universals seen in >= 4 regions
        queries = sorted({str(r["universal"]) for r in rows})
        rel = np.zeros((len(queries), len(rows)), dtype=bool)
        qi = {q: i for i, q in enumerate(queries)}
        gold = self.options.get("gold")
        if gold:
            gold_rows = _read_gold(Path(gold))
            if gold_rows:
                require_columns(self.name, Path(gold), gold_rows[0], ["universal"],
                                "A gold file names, per relevant image, its `universal` and `image_sha256` or `index`.")
            keys = [k for k in GOLD_KEYS if gold_rows and k in gold_rows[0]]
            if not keys:
                found = sorted(gold_rows[0]) if gold_rows else []
                raise BenchmarkError(
                    f"gold file {show_path(gold)} names no image: it needs a column `image_sha256` (sha256 of the image "
                    f"bytes) or `index` (row number in the test split); found {found}. GlobalRG rows have no id "
                    "column (no `u_id`), so a gold file keyed on one cannot be matched.")
            sha_to_row: dict[str, int] = {}
            if "image_sha256" in keys:
                for j, r in enumerate(rows):
                    h = image_sha256(r.get("image"))
                    if h:
                        sha_to_row.setdefault(h, j)
            for g in gold_rows:
                if str(g.get("relevant", "1")).strip() in ("0", "false", "False"):
                    continue
                q = str(g["universal"])
                if q not in qi:
                    raise BenchmarkError(f"gold file names universal {q!r}, which is not in the dataset")
                sha = str(g.get("image_sha256") or "").strip().lower()
                if sha:
                    if sha not in sha_to_row:
                        raise BenchmarkError(f"gold image_sha256 {sha[:16]}... matches no image of the dataset "
                                             "(a different copy or revision?)")
                    rel[qi[q], sha_to_row[sha]] = True
                elif str(g.get("index", "")).strip() != "":
                    j = int(g["index"])
                    if not 0 <= j < len(rows):
                        raise BenchmarkError(f"gold index {j} is outside the {len(rows)} rows of the test split")
                    rel[qi[q], j] = True
                else:
                    raise BenchmarkError(f"gold row {g} has neither image_sha256 nor index")
            source = "gold"
        else:
            for j, r in enumerate(rows):
                rel[qi[str(r["universal"])], j] = True
            source = "proxy"
        return RankingData(images=[image_ref_from_hf(r.get("image")) or null_ref() for r in rows],
                           queries=queries, query_texts=[f"a photo of {q}" for q in queries], relevance=rel,
                           image_cultures=[str(r["region"]) for r in rows], relevance_source=source)

    def _paper(self, rows: list[dict]) -> ChoiceData:
        regions_by_universal: dict[str, list[str]] = {}
        for r in rows:
            lst = regions_by_universal.setdefault(str(r["universal"]), [])
            if str(r["region"]) not in lst:
                lst.append(str(r["region"]))
        rng = random.Random(int(self.options.get("seed", 42)))
        images, options, answers, groups = [], [], [], {"region": [], "universal": []}
        for r in rows:
            u, reg = str(r["universal"]), str(r["region"])
            pool = regions_by_universal[u]
            if len(pool) < 4:
                continue
            vals = [reg] + rng.sample([p for p in pool if p != reg], 3)
            rng.shuffle(vals)
            images.append(image_ref_from_hf(r.get("image")) or null_ref())
            options.append([f"The picture depicts a kind of {u} in {v}" for v in vals])
            answers.append(vals.index(reg))
            groups["region"].append(reg)
            groups["universal"].append(u)
        if not images:
            raise BenchmarkError("globalrg_retrieval: no universal appears in >= 4 regions (paper protocol)")
        return ChoiceData(images=images, options=options, answers=np.array(answers), groups=groups)


class GlobalRGGroundingBenchmark(Benchmark):
    name = "globalrg_grounding"
    task = "multiple_choice"
    hub_id = "UBC-VL/globalrg-grounding-task"
    hub_alternatives = ("UBCNLP/GlobalRG-Grounding",)
    env_var = "CULTURECLIP_GLOBALRG_GROUNDING"
    protocols = ("paper",)
    source_hint = "(the official box-accuracy protocol needs hidden boxes, so only protocol 'paper' exists)"

    def __init__(self, root=None, protocol: str = "paper", **options):
        super().__init__(root, protocol, **options)

    def _load(self, root: Path) -> ChoiceData:
        rows = [r for r in _rows(self, root, GROUNDING_COLUMNS) if r.get("concept") and r.get("region")]
        concepts_by_region: dict[str, list[str]] = {}
        for r in rows:
            lst = concepts_by_region.setdefault(str(r["region"]), [])
            if str(r["concept"]) not in lst:
                lst.append(str(r["concept"]))
        rng = random.Random(int(self.options.get("seed", 42)))
        images, options, answers, groups = [], [], [], {"region": []}
        for r in rows:
            c, reg = str(r["concept"]), str(r["region"])
            pool = concepts_by_region[reg]
            if len(pool) < 4:
                continue
            vals = [c] + rng.sample([p for p in pool if p != c], 3)
            rng.shuffle(vals)
            images.append(image_ref_from_hf(r.get("image")) or null_ref())
            options.append([f"The item in the picture is {v} in {reg}" for v in vals])
            answers.append(vals.index(c))
            groups["region"].append(reg)
        if not images:
            raise BenchmarkError("globalrg_grounding: no region has >= 4 concepts (paper protocol)")
        return ChoiceData(images=images, options=options, answers=np.array(answers), groups=groups)
