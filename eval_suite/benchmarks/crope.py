"""CROPE (`Malvinan/CROPE`, NAACL 2025): binary questions about cultural concepts.

Format checked against /work/shared/BENCHMARK_FORMATS.md §1: HF parquet `data/test-*.parquet`, columns
`image` (HF Image struct), `definition_images` (list of Image structs), `metadata` (struct with
`image_en_concept`, `definition_concept`), `answer` ("yes"/"no"); any other column is optional.

Protocols:
- `paper` (CultureCLIP authors' evaluator): keep `answer == "no"` rows; options
  "There is {concept} in the image." for the image's concept and the definition concept, shuffled with
  seed 42; the main image's answer is its own concept, each definition image's is the definition
  concept. Accuracy over all (image, 2 options) questions.
- `official`: the binary yes/no question as a CLIP 2-way choice between "There is {definition_concept}
  in the image." and "There is no {definition_concept} in the image." on the main image (every row).
  The official benchmark asks a VLM; this is our CLIP reading of it, grouped by answer.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from eval_suite.benchmarks.base import Benchmark
from eval_suite.benchmarks.errors import BenchmarkNotFoundError, show_path
from eval_suite.benchmarks.readers import find_parquet, read_parquet_rows, require_parquet_columns
from eval_suite.benchmarks.tasks import ChoiceData, image_ref_from_hf, null_ref

TEMPLATE = "There is {} in the image."
# what each protocol reads (struct fields as parent.child); any other column is optional
OFFICIAL_COLUMNS = ("image", "metadata", "metadata.image_en_concept", "metadata.definition_concept", "answer")
PAPER_COLUMNS = ("image", "definition_images", *OFFICIAL_COLUMNS[1:])


class CROPEBenchmark(Benchmark):
    name = "crope"
    task = "multiple_choice"
    hub_id = "Malvinan/CROPE"
    env_var = "CULTURECLIP_CROPE"
    protocols = ("paper", "official")

    def __init__(self, root=None, protocol: str = "paper", **options):
        super().__init__(root, protocol, **options)

    def _load(self, root: Path) -> ChoiceData:
        files = find_parquet(root, "test")
        if not files:
            raise BenchmarkNotFoundError(f"crope: no data/test-*.parquet under {show_path(root)}. {self.how_to_get()}")
        required = PAPER_COLUMNS if self.protocol == "paper" else OFFICIAL_COLUMNS
        require_parquet_columns(self.name, files, required,
                                f"CROPE's rows ({self.protocol} protocol) need {', '.join(required)}.")
        rows = read_parquet_rows(files)
        images, options, answers, groups = [], [], [], {"answer": [], "image_kind": []}
        rng = random.Random(int(self.options.get("seed", 42)))
        for row in rows:
            meta = row.get("metadata") or {}
            tar, dfn = meta.get("image_en_concept"), meta.get("definition_concept")
            if not tar or not dfn:
                continue
            answer = str(row.get("answer", "")).strip().lower()
            if self.protocol == "paper":
                if answer != "no":
                    continue
                t_opt, d_opt = TEMPLATE.format(tar), TEMPLATE.format(dfn)
                opts = [t_opt, d_opt]
                rng.shuffle(opts)
                main = image_ref_from_hf(row.get("image")) or null_ref()
                images.append(main)
                options.append(opts)
                answers.append(opts.index(t_opt))
                groups["answer"].append(answer)
                groups["image_kind"].append("main")
                for d in row.get("definition_images") or []:
                    images.append(image_ref_from_hf(d) or null_ref())
                    options.append(list(opts))
                    answers.append(opts.index(d_opt))
                    groups["answer"].append(answer)
                    groups["image_kind"].append("definition")
            else:
                if answer not in ("yes", "no"):
                    continue
                opts = [TEMPLATE.format(dfn), f"There is no {dfn} in the image."]
                images.append(image_ref_from_hf(row.get("image")) or null_ref())
                options.append(opts)
                answers.append(0 if answer == "yes" else 1)
                groups["answer"].append(answer)
                groups["image_kind"].append("main")
        return ChoiceData(images=images, options=options, answers=np.array(answers, dtype=int),
                          groups=groups)
