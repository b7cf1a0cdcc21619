"""WorldCuisines (`worldcuisines/vqa` + `worldcuisines/food-kb`, NAACL 2025): dish recognition as a
5-way choice by similarity.

Format checked against the real eval files in worldcuisines/worldcuisines (all 72,000 small/large task 1
and 2 rows parse; 1,620 have 4 options; the fixture holds real rows): JSONL files `hf_prompt/{small,large}_eval_task{1,2}/{lang}_{small,large}_eval_task{1,2}.jsonl`
with `qa_id, lang, food_id, prompt_id, prompt_type, multi_choice_prompt, open_ended_prompt, image_url,
answer, multi_choice_answer (1-based int), task, lang_status`. The 5 options exist only inside
`multi_choice_prompt` as lines "1. X" ... "5. Z". Images are not in the VQA repo: as in the authors'
`get_url_jpg_map`, KB parquet rows map `image{i}_url` -> `image{i}` (HF Image) for i in 1..8; rows
whose URL is not in the KB are counted unreadable.
Options become "a photo of {dish}" (task 1) or "a dish from {country}" (task 2); groups: lang,
prompt_type. Roots: `--root worldcuisines=VQA_DIR` and `--root worldcuisines_kb=KB_DIR` (the same as
`--option worldcuisines.kb_root=KB_DIR`; or $CULTURECLIP_WORLDCUISINES_KB, or the hub id
`worldcuisines/food-kb`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkError, BenchmarkNotFoundError, require_columns, show_path
from eval_suite.benchmarks.readers import read_parquet_rows
from eval_suite.benchmarks.tasks import ChoiceData, ImageRef, image_ref_from_hf, null_ref

VQA_FIELDS = ("multi_choice_prompt", "multi_choice_answer", "image_url", "lang", "prompt_type")
OPTION_RE = re.compile(r"^\s*(\d+)\.\s*(.+?)\s*$")


def parse_options(prompt: str) -> list[str]:
    """The numbered option lines of a multi_choice_prompt, in order."""
    opts: dict[int, str] = {}
    for line in prompt.split("\n"):
        m = OPTION_RE.match(line)
        if m:
            opts[int(m.group(1))] = m.group(2)
    if not opts or sorted(opts) != list(range(1, len(opts) + 1)):
        raise BenchmarkError(f"cannot parse numbered options from prompt {prompt[:80]!r}")
    return [opts[i] for i in range(1, len(opts) + 1)]


class KBBenchmark(Benchmark):
    """The food knowledge base (only used to resolve image URLs)."""

    name = "worldcuisines_kb"
    hub_id = "worldcuisines/food-kb"
    hub_patterns = ("data/*.parquet",)
    env_var = "CULTURECLIP_WORLDCUISINES_KB"


class WorldCuisinesBenchmark(Benchmark):
    name = "worldcuisines"
    task = "multiple_choice"
    hub_id = "worldcuisines/vqa"
    hub_patterns = ("hf_prompt/*eval*/*.jsonl",)
    env_var = "CULTURECLIP_WORLDCUISINES"
    root_options = {"kb_root": KBBenchmark.name}  # `--root worldcuisines_kb=PATH` sets kb_root

    def _load(self, root: Path) -> ChoiceData:
        task = int(self.options.get("task", 1))
        subset = self.options.get("subset", "small")
        langs = self.options.get("langs", "en")
        langs = [langs] if isinstance(langs, str) else list(langs)
        folder = root / "hf_prompt" / f"{subset}_eval_task{task}"
        if not folder.is_dir():
            raise BenchmarkNotFoundError(f"worldcuisines: {show_path(folder)} not found. {self.how_to_get()}")
        files = sorted(folder.glob("*.jsonl")) if langs == ["all"] else \
            [folder / f"{l}_{subset}_eval_task{task}.jsonl" for l in langs]
        missing = [show_path(f) for f in files if not f.is_file()]
        if missing or not files:
            raise BenchmarkNotFoundError(f"worldcuisines: missing {missing or show_path(folder)}. {self.how_to_get()}")
        rows = []
        for f in files:
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    require_columns(self.name, f"{show_path(f)} line {n}", row, VQA_FIELDS,
                                    f"WorldCuisines VQA rows need {', '.join(VQA_FIELDS)}.")
                    rows.append(row)
        url_map = self._url_map()
        template = "a photo of {}" if task == 1 else "a dish from {}"
        images, options, answers, groups = [], [], [], {"lang": [], "prompt_type": []}
        for r in rows:
            opts = parse_options(r["multi_choice_prompt"])
            images.append(url_map.get(r["image_url"], null_ref()))
            options.append([template.format(o) for o in opts])
            answers.append(int(r["multi_choice_answer"]) - 1)
            groups["lang"].append(str(r["lang"]))
            groups["prompt_type"].append(str(r["prompt_type"]))
        return ChoiceData(images=images, options=options, answers=np.array(answers), groups=groups)

    def _url_map(self) -> dict[str, ImageRef]:
        kb = KBBenchmark(self.options.get("kb_root"))
        kb_root = kb.resolve_root()
        files = sorted(kb_root.glob("data/*.parquet")) or sorted(kb_root.glob("*.parquet"))
        if not files:
            raise BenchmarkNotFoundError(f"worldcuisines: no KB parquet under {show_path(kb_root)}. {kb.how_to_get()}")
        import pyarrow.parquet as pq

        names = pq.read_schema(files[0]).names
        cols = [c for i in range(1, 9) for c in (f"image{i}", f"image{i}_url")]
        require_columns(kb.name, files[0], names, cols,
                        "The food KB maps `image{i}_url` to `image{i}` (i = 1..8) for the VQA rows' image_url "
                        "(the authors' get_url_jpg_map).")
        out: dict[str, ImageRef] = {}
        for row in read_parquet_rows(files, cols):
            for i in range(1, 9):
                url, img = row.get(f"image{i}_url"), row.get(f"image{i}")
                ref = image_ref_from_hf(img) if img is not None else None
                if url and ref is not None:
                    out[url] = ref
        return out
