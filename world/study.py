"""The world study: the paper's claims one ingredient at a time on the offline twin world, chosen on val,
read once on test, seeded, with paired intervals.

    make world-study                            # configs/world/study.yaml -> artifacts/world-study/
    python -m world.study --quick               # configs/world/study_quick.yaml: the smoke world, minutes
    python -m world.study --grid ingredients    # one grid (plus what it needs: base, oracle, tuning)
    python -m world.study --report-only         # tables from the runs finished so far

Protocol (the config says every number):
1. the world's inputs from `world.build` (base CLIP, CulTwin dataset with train/val/test, the general
   probe: held-out culture-free designs, split into a val and a test half);
2. tuning on val: per family (CultureCLIP, plain CLIP fine-tuning) a sweep of lr x epochs, one seed; the
   setting with the best val twin accuracy (headline phrasing) is what every later run of that family uses;
3. the grids (step-matched variants, one switch each; LoRA; generality recipes), each (variant, seed) one
   fine-tune through `cultureclip.train` with a typed `TrainConfig`, evaluated once on val and once on
   test; WiSE-FT alphas are scored on val only, the alpha chosen there is read once on test;
4. the oracle, a supervised reference (image tower + linear head), early-stopped on val, 3 seeds;
5. the report: per row the seed mean with a 95% interval that resamples twin groups *and* seeds; every
   claimed difference as a paired bootstrap over twin groups and seeds; the general probe's paired
   difference to the base (resampling probe images and seeds) with its half-width.

Twin accuracy is scored with several phrasings of each concept: the concept prompt the concept term
trains on, the base's pretraining alt-text, two phrasings no training step used, and the mean of the
concept's train captions; the headline is a held-out phrasing.

Every run writes `runs/<grid>/<run>/record.json` (atomic), then a `cultureclip.steps` marker beside it holding
the run's fingerprint (the job, every study setting, the inputs' content); a rerun skips exactly the runs whose
marker matches, so an interrupted study resumes and a changed setting reruns what it changes. Runs go to `--workers` processes with one torch thread each.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cultureclip.backbone import create_backbone
from cultureclip.config import config_dir
from cultureclip.data import CulTwinDataset, read_manifest, twin_pairs
from cultureclip.fileio import atomic_copy, atomic_path, atomic_write_text, remove_path
from cultureclip.inference import Embedder
from cultureclip.lora import wise_ft
from cultureclip.steps import content_fingerprint, done, fingerprint, write_marker
from cultureclip.train import train
from cultureclip.twins import pair_matrices, twin_groups, twin_scores, twins_by_concept
from eval_suite import metrics as M
from eval_suite.benchmarks.base import ImageRef
from eval_suite.benchmarks.embedding import RefDataset, embed_image_refs, image_size
from eval_suite.figures import FigureExportError, write_figure
from synth.catalog import load_catalog
from synth.llm import STYLES
from synth.world import CATALOG_PATH
from world.build import build, merge_settings
from world.build import train_config as typed

logger = logging.getLogger("world.study")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"full": config_dir() / "world" / "study.yaml", "quick": config_dir() / "world" / "study_quick.yaml"}


# --------------------------------------------------------------------------------------------------
# The study's config
# --------------------------------------------------------------------------------------------------


@dataclass
class Grid:
    seeds: list[int]
    variants: dict[str, dict[str, Any]]  # name -> TrainConfig overrides (+ "family", "captions")


@dataclass
class StudyConfig:
    preset: str
    recipe: dict[str, Any]
    phrasings: dict[str, str]
    headline: str
    held_out: list[str]
    tune: dict[str, Any]
    grids: dict[str, Grid]
    step_matched: bool = True
    probe_val_fraction: float = 0.5
    n_boot: int = 2000
    claim_seeds: int = 3
    wise_alphas: list[float] = field(default_factory=list)
    wise_for: list[str] = field(default_factory=list)
    oracle: dict[str, Any] = field(default_factory=dict)
    differences: list[list[str]] = field(default_factory=list)  # extra [a, b] row pairs tested as a - b


class StudyConfigError(ValueError):
    pass


STUDY_KEYS = {"family", "captions"}  # variant keys that are not TrainConfig sections


def load_study_config(path: str | Path) -> StudyConfig:
    """The study config from YAML; every variant is checked by building its TrainConfig (a typo in a
    section, field or choice is an error naming the variant)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise StudyConfigError(f"{path.name}: cannot read the study config ({e})") from e
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = set(raw) - known
    if unknown:
        raise StudyConfigError(f"{path.name}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    raw["grids"] = {g: Grid(seeds=list(v["seeds"]), variants=dict(v["variants"])) for g, v in raw.get("grids", {}).items()}
    cfg = StudyConfig(**raw)
    check_study_config(cfg)
    return cfg


def check_study_config(cfg: StudyConfig) -> None:
    if cfg.headline not in cfg.held_out:
        raise StudyConfigError(f"headline {cfg.headline!r} must be one of held_out {cfg.held_out}: the headline "
                               "is scored with a phrasing no training step used")
    missing = [p for p in cfg.held_out if p not in cfg.phrasings]
    if missing:
        raise StudyConfigError(f"held_out phrasing(s) {missing} are not in phrasings {sorted(cfg.phrasings)}")
    families = set(cfg.tune.get("families", {}))
    inputs = WorldInputs("pretrain", "probe", "base", "dataset")
    for grid, g in cfg.grids.items():
        for name, v in g.variants.items():
            fam = v.get("family", "cultureclip")
            if fam not in families:
                raise StudyConfigError(f"grid {grid}, variant {name}: family {fam!r} is not tuned; tune.families: "
                                       f"{sorted(families)}")
            if v.get("captions", "context") not in ("context", "plain"):
                raise StudyConfigError(f"grid {grid}, variant {name}: captions must be context or plain")
            try:
                train_config(cfg, v, {"lr": 1e-4, "epochs": 1}, 0, inputs, Path("run"), steps_per_epoch=1)
            except Exception as e:  # noqa: BLE001 - the config's own message, with the variant named
                raise StudyConfigError(f"grid {grid}, variant {name}: {e}") from e


# --------------------------------------------------------------------------------------------------
# What is trained
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldInputs:
    pretrain: str
    probe: str  # the general probe (held-out culture-free designs; split into val and test parts)
    base: str
    dataset: str
    domain: str = ""  # the second test domain (world.domain: twins/ and probe/ drawn another way); "" none


def world_inputs(world_dir: Path, preset: str, seed: int = 0, progress: bool = False) -> WorldInputs:
    """The world's inputs from `world.build` (cached steps are reused)."""

    got = build(world_dir, preset, seed, progress=progress, inputs_only=True)
    return WorldInputs(got["pretrain"], got["probe"], got["base"], got["dataset"], got.get("domain", ""))


def train_config(cfg: StudyConfig, variant: dict[str, Any], choice: dict[str, Any], seed: int, inputs: WorldInputs,
                 run_dir: Path, steps_per_epoch: int, dataset: str | None = None):
    """The `TrainConfig` of one fine-tune: the recipe, the family's lr/epochs chosen on val (`choice`), the
    variant's overrides; step-matched runs get optim.max_steps = epochs x steps_per_epoch."""

    overrides = {k: v for k, v in variant.items() if k not in STUDY_KEYS}
    settings = merge_settings(
        {"model": {"spec": inputs.base}, "data": {"dataset": dataset or inputs.dataset, "replay_dataset": inputs.pretrain},
         "optim": {"lr": choice["lr"], "epochs": choice["epochs"]},
         "out_dir": str(run_dir), "seed": seed, "mixed_precision": "no", "keep_last": 1, "log_every": 50},
        cfg.recipe, overrides)
    if cfg.step_matched:
        settings = merge_settings(settings, {"optim": {"max_steps": int(settings["optim"]["epochs"]) * steps_per_epoch}})
    if settings["data"].get("replay_ratio", 0) <= 0:
        settings["data"]["replay_dataset"] = ""
    tc = typed(settings, progress=False)
    if tc.lora.enabled:
        tc.lora.targets = ["q", "v"]
    return tc


def steps_per_epoch(inputs: WorldInputs, batch_size: int) -> int:
    """Optimizer steps in one epoch of the train split alone (no replay): the step-matching unit."""

    n = len(read_manifest(inputs.dataset, check_images=False).split("train").frame)
    return max(1, math.ceil(n / batch_size))


def plain_caption(caption: str, name: str) -> str:
    """A world caption without its context: the photo style kept, the demonym, feature and scene dropped
    ("a close-up photo of Chadian flag of Chad, vertical tricolour ... in soft light" -> "a close-up photo
    of flag of Chad")."""

    style = next((s for s in sorted(STYLES, key=len, reverse=True) if caption.startswith(s + " ")), "a photo of")
    return f"{style} {name}"


PLAIN_DATASET = Path("datasets") / "plain_captions"


def plain_caption_dataset(inputs: WorldInputs, out: Path) -> Path:
    """The CulTwin dataset with every train caption replaced by `plain_caption`; val and test unchanged.
    Its images are hard links to the world's (a copy across filesystems): a manifest may not point outside
    its folder. Built once per study, before the runs that use it."""
    import pandas as pd


    folder = out / PLAIN_DATASET
    src = Path(inputs.dataset)
    frame = pd.read_parquet(src / "manifest.parquet")
    train = frame["split"] == "train"
    frame.loc[train, "caption"] = [plain_caption(c, n) for c, n in zip(frame.loc[train, "caption"],
                                                                        frame.loc[train, "concept_name"])]
    for rel in frame["image_path"]:
        atomic_copy(src / rel, folder / rel)
    with atomic_path(folder / "manifest.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    return folder


# --------------------------------------------------------------------------------------------------
# Evaluation data: twin val/test splits, phrasings, the general probe's halves
# --------------------------------------------------------------------------------------------------


@dataclass
class TwinSplit:
    images: list  # ImageRef
    concepts: list[str]  # sorted concept ids (the score matrix's columns)
    labels: np.ndarray  # (N,) column of each image's concept
    pairs: list[tuple[str, str]]
    groups: np.ndarray  # (N,) twin group (connected look-alike set) per image; -1 none
    pair_groups: np.ndarray  # (P,) twin group per pair


@dataclass
class EvalData:
    twin: dict[str, TwinSplit]  # "val" / "test"
    texts: dict[str, dict[str, str]]  # phrasing -> concept -> text (not the caption mean)
    captions: dict[str, list[str]]  # concept -> its train captions
    probe_images: list
    probe_texts: list[str]  # every candidate caption of the probe (sorted)
    probe_labels: np.ndarray  # (M,) index into probe_texts
    probe_split: dict[str, np.ndarray]  # "val" / "test" -> image indices
    # the second test domain's general probe (twin["shift"] is its twin split); empty without one
    shift_probe_images: list = field(default_factory=list)
    shift_probe_texts: list[str] = field(default_factory=list)
    shift_probe_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


# the test domains every reported row is read on: split key -> what the table calls it
DOMAINS = {"test": "rendered", "shift": "shifted"}
DOMAIN_NOTE = ("rendered: the world's renderer, as in training (its test split); shifted: the same concepts and "
               "probe designs painted, printed on objects or far away in clutter, another colour pipeline "
               "(world.domain; never trained on, never used for a choice)")


def phrase(template: str, facts: dict[str, str]) -> str:
    return template.format(**facts)


def concept_facts(dataset: Path, frame) -> dict[str, dict[str, str]]:
    """Concept -> {prompt, name, culture_name, kind} from the dataset's manifest and its catalog copy."""

    shipped = Path(dataset) / "catalog" / "world.yaml"
    cat = load_catalog([str(shipped if shipped.is_file() else CATALOG_PATH)])
    out = {}
    for cid, prompt, name in zip(frame["concept_id"], frame["concept_prompt"], frame["concept_name"]):
        c = cat.concepts.get(cid)
        out[str(cid)] = {"prompt": str(prompt), "name": str(name),
                         "culture_name": c.culture_name if c else str(name), "kind": (c.kind if c else "") or "thing"}
    return out


def load_eval_data(inputs: WorldInputs, cfg: StudyConfig) -> EvalData:
    import pandas as pd


    root = Path(inputs.dataset)
    frame = pd.read_parquet(root / "manifest.parquet")
    facts = concept_facts(root, frame)

    def twin_split(df, folder: Path) -> TwinSplit:
        concepts = sorted(set(df["concept_id"].astype(str)))
        pairs = twin_pairs(df["concept_id"], df["twin_concept_ids"])
        comp = twin_groups(pairs)
        ids = [str(c) for c in df["concept_id"]]
        return TwinSplit([ImageRef(path=str(folder / p)) for p in df["image_path"]], concepts,
                         np.array([concepts.index(c) for c in ids]), pairs,
                         np.array([comp.get(c, -1) for c in ids]), np.array([comp[a] for a, _ in pairs]))

    twin = {}
    for split in ("val", "test"):
        df = frame[frame["split"] == split]
        if df.empty:
            raise RuntimeError(f"the world dataset has no {split} rows; rebuild it (python -m world.build --force)")
        twin[split] = twin_split(df, root)
    shift_probe: tuple = ([], [], np.zeros(0, dtype=int))
    if inputs.domain:
        droot = Path(inputs.domain)
        df = pd.read_parquet(droot / "twins" / "manifest.parquet")
        keep = set(twin["test"].concepts)  # the concepts (and twins) the rendered test split has
        df = df[df["concept_id"].astype(str).isin(keep)].copy()
        df["twin_concept_ids"] = [[t for t in ts if t in keep] for ts in df["twin_concept_ids"]]
        twin["shift"] = twin_split(df, droot / "twins")
        sp = pd.read_parquet(droot / "probe" / "manifest.parquet")
        st = sorted(set(sp["caption"]))
        shift_probe = ([ImageRef(path=str(droot / "probe" / p)) for p in sp["image_path"]], st,
                       np.array([st.index(c) for c in sp["caption"]]))
    texts = {name: {c: phrase(t, f) for c, f in facts.items()} for name, t in cfg.phrasings.items() if t != "mean"}
    train = frame[frame["split"] == "train"]
    captions = {str(c): sorted(set(g["caption"])) for c, g in train.groupby("concept_id")}
    attr_root = Path(inputs.probe)
    attr = pd.read_parquet(attr_root / "manifest.parquet")
    probe_texts = sorted(set(attr["caption"]))
    where = {t: i for i, t in enumerate(probe_texts)}
    labels = np.array([where[c] for c in attr["caption"]])
    order = np.random.default_rng([0, 17]).permutation(len(attr))
    n_val = int(round(cfg.probe_val_fraction * len(attr)))
    return EvalData(twin, texts, captions, [ImageRef(path=str(attr_root / p)) for p in attr["image_path"]], probe_texts,
                    labels, {"val": np.sort(order[:n_val]), "test": np.sort(order[n_val:])}, *shift_probe)


def phrasing_overlap(data: EvalData, pretrain: Path, dataset: Path) -> dict[str, dict[str, int]]:
    """Per phrasing: how many concepts' phrased texts occur verbatim among the fine-tuning captions and
    prompts, and among the pretraining captions (a held-out phrasing must be 0 / 0)."""
    import pandas as pd

    ft = pd.read_parquet(Path(dataset) / "manifest.parquet")
    ft = ft[ft["split"] == "train"]
    finetune_texts = {t.lower() for t in set(ft["caption"]) | set(ft["concept_prompt"])}
    pre_texts = {t.lower() for t in pd.read_parquet(Path(pretrain) / "manifest.parquet")["caption"]}
    return {name: {"concepts": len(texts),
                   "in_finetuning_texts": sum(t.lower() in finetune_texts for t in texts.values()),
                   "in_pretraining_texts": sum(t.lower() in pre_texts for t in texts.values())}
            for name, texts in data.texts.items()}


def score_twin(sims: np.ndarray, split: TwinSplit) -> dict[str, Any]:
    """Per-image and per-pair twin scores from image x concept scores (N, C) (columns = split.concepts).

    twin_correct (N,): own concept beats every twin present, strictly (NaN without a twin): eval_suite's
    twin_acc, `cultureclip.twins.twin_scores`; pair_group (P,): Winoground group score of the pair's mean 2x2
    matrix (`cultureclip.twins.pair_matrices`); pair_correct/pair_n (P,): images of the pair whose own concept
    beats the pair's other one (the same rule with that one twin); concept_correct (N,): N-way."""

    cidx = {c: i for i, c in enumerate(split.concepts)}
    labels = np.asarray(split.labels)
    twins_of = {cidx[c]: [cidx[t] for t in ts] for c, ts in twins_by_concept(split.pairs).items()}
    pairs = [(cidx[a], cidx[b]) for a, b in split.pairs]
    tw = twin_scores(sims, labels, twins_of)
    twin_correct = np.full(len(labels), np.nan)
    twin_correct[tw.rows.numpy()] = tw.correct.numpy().astype(float)
    pc, pn = [], []
    for a, b in pairs:
        rows = np.flatnonzero((labels == a) | (labels == b))
        pc.append(int(twin_scores(sims[rows], labels[rows], {a: [b], b: [a]}).correct.sum()))
        pn.append(len(rows))
    mats, _ = pair_matrices(sims, labels, pairs)
    group = M.winoground_scores(mats)["group"].astype(float) if pairs else np.zeros(0)
    concept_correct = (sims.argmax(1) == labels).astype(float)
    return {"twin_correct": twin_correct.tolist(), "pair_group": group.tolist(), "pair_correct": pc, "pair_n": pn,
            "concept_correct": concept_correct.tolist()}


def _normalize(x):
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)


def evaluate_backbone(backbone, data: EvalData, splits: tuple[str, ...] = ("val", "test")) -> dict[str, Any]:
    """Zero-shot scores of a CLIP backbone per split: the twin metrics with every phrasing, and the
    general probe's per-image correctness (its half of the probe; for "shift", the second domain's
    probe against its own candidate captions)."""
    import torch


    backbone.eval()
    emb = Embedder(backbone, batch_size=128)
    out: dict[str, Any] = {}
    with torch.no_grad():
        concepts = sorted(data.captions.keys() | data.texts[next(iter(data.texts))].keys())
        text_sets = {name: _normalize(emb.embed_texts([texts[c] for c in concepts])) for name, texts in data.texts.items()}
        if any(c for c in data.captions.values()):
            text_sets["captions"] = _normalize(torch.stack(
                [emb.embed_texts(data.captions[c]).mean(0) if data.captions.get(c) else text_sets[next(iter(text_sets))][i]
                 for i, c in enumerate(concepts)]))
        col = {c: i for i, c in enumerate(concepts)}
        probe_text = _normalize(emb.embed_texts(data.probe_texts))
        for split in splits:
            if split == "shift" and "shift" not in data.twin:
                continue
            sp = data.twin[split]
            feats, valid = embed_image_refs(emb, sp.images, progress=False)
            if not valid.all():
                raise RuntimeError(f"{int((~valid).sum())} unreadable {split} twin images")
            cols = [col[c] for c in sp.concepts]
            twin = {name: score_twin((_normalize(feats) @ t[cols].T).numpy(), sp) for name, t in text_sets.items()}
            if split == "shift":
                refs, texts, labels = data.shift_probe_images, _normalize(emb.embed_texts(data.shift_probe_texts)), \
                    data.shift_probe_labels
            else:
                idx = data.probe_split[split]
                refs, texts, labels = [data.probe_images[i] for i in idx], probe_text, data.probe_labels[idx]
            pf, pvalid = embed_image_refs(emb, refs, progress=False)
            if not pvalid.all():
                raise RuntimeError(f"{int((~pvalid).sum())} unreadable probe images")
            pred = (_normalize(pf) @ texts.T).argmax(1).numpy()
            out[split] = {"twin": twin, "probe": (pred == labels).astype(float).tolist()}
    return out


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str  # base | oracle | tune | finetune
    grid: str
    name: str  # variant (or tuning setting) name
    seed: int
    variant: tuple  # (key, json) items of the variant's overrides
    choice: tuple  # (lr, epochs)
    wise: bool = False

    @property
    def run(self) -> str:
        return "base" if self.kind == "base" else f"{self.grid}/{self.name}_s{self.seed}"


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj))


def record_path(out: Path, job: Job) -> Path:
    return out / "runs" / job.run / "record.json"


MARKER = "DONE.json"  # beside record.json: a cultureclip.steps marker holding the run's fingerprint


def inputs_fingerprint(inputs: WorldInputs) -> dict[str, str]:
    """The world inputs by content, not place: their manifests (which hold every image's sha256) and the base
    model's folder. Computed once per study run (the parent), passed to every job."""
    def manifests(folder: str) -> list[str]:
        return sorted(str(p) for p in Path(folder).rglob("manifest.parquet")) if folder else []

    out = {k: fingerprint([content_fingerprint(m) for m in manifests(v)])
           for k, v in dataclasses.asdict(inputs).items() if k != "base"}
    out["base"] = content_fingerprint(inputs.base)
    return out


def job_fingerprint(job: Job, cfg: StudyConfig, inputs_fp: dict[str, str]) -> str:
    """What a run's record depends on: the job (kind, variant, lr/epochs, seed), every study setting and the
    inputs' content. A rerun skips a run only when its marker holds this fingerprint (before: whenever a
    record.json of that name existed, whatever settings had made it)."""
    return fingerprint({"job": job, "study": dataclasses.replace(cfg, grids={}), "inputs": inputs_fp})


def job_done(out: Path, job: Job, fp: str) -> bool:
    return record_path(out, job).is_file() and done(record_path(out, job).parent / MARKER, fp) is not None


def run_job(job: Job, out: str, inputs: WorldInputs, cfg: StudyConfig, fp: str = "") -> str:
    """One evaluated run (base, oracle, or fine-tune + its WiSE-FT alphas); writes its record.json and, last,
    its marker (`fp`: job_fingerprint; computed here when not given)."""
    import torch

    torch.set_num_threads(1)

    out_p = Path(out)
    rec_path = record_path(out_p, job)
    fp = fp or job_fingerprint(job, cfg, inputs_fingerprint(inputs))
    if job_done(out_p, job, fp):
        return job.run
    data = load_eval_data(inputs, cfg)
    t0 = time.time()
    rec: dict[str, Any] = {"kind": job.kind, "grid": job.grid, "name": job.name, "seed": job.seed}
    if job.kind == "base":
        rec.update(evaluate_backbone(create_backbone(inputs.base), data, ("val", "test", "shift")))
    elif job.kind == "oracle":
        rec.update(train_oracle(inputs, data, job.seed, cfg))
    else:
        variant = {k: json.loads(v) for k, v in job.variant}
        lr, epochs = job.choice
        work = rec_path.parent / "train"
        remove_path(work)
        dataset = str(out_p / PLAIN_DATASET) if variant.get("captions") == "plain" else None
        tc = train_config(cfg, variant, {"lr": lr, "epochs": epochs}, job.seed, inputs, work,
                          steps_per_epoch(inputs, int(cfg.recipe["data"]["batch_size"])), dataset)
        summary = train(tc)
        rec["settings"] = {"lr": tc.optim.lr, "epochs": tc.optim.epochs, "max_steps": tc.optim.max_steps,
                           "steps": summary["step"]}
        tuned = create_backbone(summary["export"])
        rec.update(evaluate_backbone(tuned, data, ("val",) if job.kind == "tune" else ("val", "test", "shift")))
        if job.wise and cfg.wise_alphas:
            base_rec = record_path(out_p, Job("base", "", "base", 0, (), ()))
            base_val = json.loads(base_rec.read_text())["val"]["probe"] if base_rec.is_file() else None
            rec["wise"] = wise_choice(tuned, create_backbone(inputs.base), data, cfg, base_val)
        remove_path(work / "checkpoints")  # optimizer states: not needed after export
    rec["seconds"] = round(time.time() - t0, 1)
    _write_json(rec_path, rec)
    write_marker(rec_path.parent / MARKER, fp, {"record": rec_path.name})
    logger.info("%s done in %.0fs", job.run, time.time() - t0)
    return job.run


def wise_choice(tuned, base, data: EvalData, cfg: StudyConfig, base_val_probe: list | None = None) -> dict[str, Any]:
    """WiSE-FT alphas scored on val; the alpha chosen there (best val twin accuracy, headline phrasing,
    with no significant paired drop on the val probe: alpha 0, the base, always qualifies) is read once
    on test."""

    base_state = base.state_dict()
    tuned_state = {k: v.clone() for k, v in tuned.state_dict().items()}
    if base_val_probe is None:  # the base run's record has it (the base is the study's first run)
        base_val_probe = evaluate_backbone(base, data, ("val",))["val"]["probe"]
    base_probe = np.array(base_val_probe)
    curve, best = {}, (0.0, -1.0)
    for alpha in sorted(set(cfg.wise_alphas) | {1.0}):
        tuned.load_state_dict(wise_ft(base_state, tuned_state, alpha))
        v = evaluate_backbone(tuned, data, ("val",))["val"]
        twin = float(np.nanmean(v["twin"][cfg.headline]["twin_correct"]))
        d, lo, hi = paired_probe_diff(np.array(v["probe"])[None], base_probe, cfg.n_boot)
        ok = hi >= 0
        curve[str(alpha)] = {"twin_acc": 100 * twin, "probe_acc": 100 * float(np.mean(v["probe"])),
                             "probe_diff": 100 * d, "probe_diff_lo": 100 * lo, "probe_diff_hi": 100 * hi, "ok": ok}
        if ok and twin > best[1]:
            best = (alpha, twin)
    alpha = best[0]
    tuned.load_state_dict(wise_ft(base_state, tuned_state, alpha))
    read = evaluate_backbone(tuned, data, ("test", "shift"))
    tuned.load_state_dict(tuned_state)
    return {"val_curve": curve, "alpha": alpha, **read}


def train_oracle(inputs: WorldInputs, data: EvalData, seed: int, cfg: StudyConfig) -> dict[str, Any]:
    """The base's image tower + a linear head over the concepts, trained with cross-entropy on the train
    split's concept labels (the fine-tunes' renders and augmentation), early-stopped on val twin
    accuracy (patience in epochs); scored with the head's logits in place of prompt similarities, under
    the phrasing key "head". A reference for what the tower can separate, not a bound."""

    import torch
    import torch.nn.functional as F


    torch.manual_seed(seed)
    bb = create_backbone(inputs.base)
    train_m = read_manifest(inputs.dataset, check_images=False).split("train")
    ds = CulTwinDataset(train_m, bb.preprocess_train, seed=seed, cache_images=True)
    concepts = sorted(set(data.twin["test"].concepts) | set(data.twin["val"].concepts))
    cidx = {c: i for i, c in enumerate(concepts)}
    keep = [i for i, c in enumerate(ds.concept_ids) if c in cidx]
    size = image_size(bb)
    with torch.no_grad():
        dim = bb.encode_image(torch.zeros(1, 3, *size)).shape[1]
    head = torch.nn.Linear(dim, len(concepts))
    params = [p for n, p in bb.model.named_parameters() if n.startswith("visual.")]
    lr = float(cfg.oracle.get("lr", 3e-4))
    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": head.parameters(), "lr": 1e-2}], weight_decay=0.0)
    bs = int(cfg.recipe["data"]["batch_size"])
    rng = np.random.default_rng([seed, 11])

    def logits(split: str) -> dict[str, Any]:
        sp = data.twin[split]
        refs = RefDataset(sp.images, bb.preprocess_eval, size)
        bb.eval()
        with torch.no_grad():
            out = torch.cat([head(bb.encode_image(torch.stack([refs[i][1] for i in range(s, min(len(refs), s + 128))]),
                                                  normalize=True)).float() for s in range(0, len(refs), 128)])
        bb.train()
        return score_twin(out[:, [cidx[c] for c in sp.concepts]].numpy(), sp)

    best, best_state, stale, curve = -1.0, None, 0, []
    for epoch in range(int(cfg.oracle.get("max_epochs", 30))):
        ds.set_epoch(epoch)
        bb.train()
        order = rng.permutation(keep)
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            items = [ds[int(i)] for i in idx]
            x = torch.stack([it["image"] for it in items])
            y = torch.tensor([cidx[ds.concept_ids[int(i)]] for i in idx])
            # normalized features with a fixed scale: the head sees what the contrastive model sees
            loss = F.cross_entropy(head(bb.encode_image(x, normalize=True)) * 10.0, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = 100 * float(np.nanmean(logits("val")["twin_correct"]))
        curve.append(round(val, 2))
        if val > best:
            best, stale = val, 0
            best_state = (copy.deepcopy(bb.model.state_dict()), copy.deepcopy(head.state_dict()), epoch + 1)
        else:
            stale += 1
            if stale >= int(cfg.oracle.get("patience", 5)):
                break
    bb.model.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    return {**{split: {"twin": {"head": logits(split)}} for split in ("val", "test", "shift") if split in data.twin},
            "settings": {"epochs": best_state[2], "val_curve": curve}}


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def boot_draws(n_seeds: int, n_clusters: int, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities of a two-level bootstrap: (n_boot, n_seeds) seed counts and (n_boot, n_clusters)
    cluster counts, each resampled with replacement. Reusing the same draws for two rows pairs them."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    clusters = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    w = np.stack([np.bincount(r, minlength=n_seeds) for r in seeds]).astype(float)
    m = np.stack([np.bincount(r, minlength=n_clusters) for r in clusters]).astype(float)
    return w, m


def boot_means(values: np.ndarray, clusters: np.ndarray, w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the pooled mean of `values` (n_seeds, N) (NaN = not counted) under the
    draws (w: seed counts, m: cluster counts). clusters (N,): 0..n_clusters-1."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    n_cl = m.shape[1]
    sums = np.stack([np.bincount(clusters, weights=np.where(o, r, 0.0), minlength=n_cl) for r, o in zip(v, ok)])
    counts = np.stack([np.bincount(clusters, weights=o.astype(float), minlength=n_cl) for o in ok])
    num = np.einsum("bs,sg,bg->b", w, sums, m)
    den = np.einsum("bs,sg,bg->b", w, counts, m)
    return num / np.maximum(den, 1e-12)


def _point(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.nansum(v) / max(1, (~np.isnan(v)).sum()))


def _cluster_ids(clusters: np.ndarray) -> tuple[np.ndarray, int]:
    ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
    return inv, len(ids)


def mean_ci(values: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` (n_seeds, N) with a 95% interval resampling seeds and clusters together."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    keep = ~np.isnan(values).all(0)  # items never scored (images without a twin) are no cluster's members
    values, clusters = values[:, keep], np.asarray(clusters)[keep]
    inv, k = _cluster_ids(clusters)
    w, m = boot_draws(values.shape[0], k, n_boot, seed)
    boots = boot_means(values, inv, w, m)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return _point(values), float(lo), float(hi)


def _paired_boots(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int):
    """Bootstrap replicates of the means of a and b (each (n_seeds, N), seeds aligned by index; a one-seed
    b, like the base, is reused for every seed) under the same seed and cluster draws, and their points."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = np.atleast_2d(np.asarray(b, dtype=float))
    keep = ~(np.isnan(a).all(0) & np.isnan(b).all(0))
    a, b, clusters = a[:, keep], b[:, keep], np.asarray(clusters)[keep]
    inv, k = _cluster_ids(clusters)
    n = max(a.shape[0], b.shape[0])
    w, m = boot_draws(n, k, n_boot, seed)
    one = np.ones((n_boot, 1))  # a one-seed row (the base) has no seed to resample
    ra = boot_means(a, inv, w if a.shape[0] == n else one, m)
    rb = boot_means(b, inv, w if b.shape[0] == n else one, m)
    return ra, rb, _point(a), _point(b)


def paired_diff(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """a - b (each (n_seeds, N), seeds aligned by index; a row of b may be reused when b has one seed,
    like the base) with a paired 95% interval: the same seed and cluster draws for both."""
    ra, rb, pa, pb = _paired_boots(a, b, clusters, n_boot, seed)
    lo, hi = np.quantile(ra - rb, [0.025, 0.975])
    return pa - pb, float(lo), float(hi)


def paired_ratio(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a paired 95% interval (the same draws as paired_diff): e.g. a row's twin
    accuracy as a fraction of the reference's, items of both scored on the same test images."""
    ra, rb, pa, pb = _paired_boots(a, b, clusters, n_boot, seed)
    lo, hi = np.quantile(ra / np.maximum(rb, 1e-12), [0.025, 0.975])
    return pa / max(pb, 1e-12), float(lo), float(hi)


def paired_probe_diff(model: np.ndarray, base: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """General-probe accuracy of a model (n_seeds, M) minus the base's (M,), paired over probe images
    (and seeds): (difference, low, high) as fractions."""
    base = np.asarray(base, dtype=float)[None]
    return paired_diff(model, base, np.arange(base.shape[1]), n_boot, seed)


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def load_records(out: Path) -> dict[str, dict]:
    recs = {}
    for f in sorted((out / "runs").rglob("record.json")):
        try:
            recs[f.parent.relative_to(out / "runs").as_posix()] = json.loads(f.read_text())
        except (OSError, ValueError):
            logger.warning("unreadable record %s (skipped)", f.name)
    return recs


def rows_of(recs: dict[str, dict]) -> dict[str, list[dict]]:
    """Row key -> its records (one per seed), seed-sorted. Keys: base, oracle, <grid>/<variant>,
    <grid>/<variant>+wise (the WiSE-FT alpha chosen on val, read on test); tuning runs are not rows."""
    rows: dict[str, list[dict]] = {}
    for r in recs.values():
        if r["kind"] == "tune":
            continue
        key = r["kind"] if r["kind"] in ("base", "oracle") else f"{r['grid']}/{r['name']}"
        rows.setdefault(key, []).append(r)
        if "wise" in r:
            read = {d: r["wise"][d] for d in DOMAINS if d in r["wise"]}
            rows.setdefault(key + "+wise", []).append({**{k: v for k, v in r.items() if k not in DOMAINS}, **read,
                                                       "alpha": r["wise"]["alpha"]})
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in rows.items()}


def family_of(cfg: StudyConfig, key: str) -> str:
    """'plain' for a row trained with the plain CLIP loss (no twin signal), else 'cultureclip'."""
    grid, _, name = key.partition("/")
    v = cfg.grids.get(grid, Grid([], {})).variants.get(name.removesuffix("+wise"), {})
    return "plain" if {**cfg.recipe.get("loss", {}), **v.get("loss", {})}.get("name") == "clip" else "cultureclip"


def _twin(rec: dict, split: str, phrasing: str) -> dict:
    t = rec[split]["twin"]
    return t.get(phrasing) or t["head"]


def row_summary(recs: list[dict], data: EvalData, cfg: StudyConfig, split: str = "test") -> dict[str, Any]:
    """Seed-mean metrics (percent) with 95% intervals over twin groups and seeds."""
    sp = data.twin[split]
    row: dict[str, Any] = {"seeds": len(recs), "seed_list": [r["seed"] for r in recs]}
    phrasings = [p for p in cfg.phrasings if p in recs[0][split]["twin"]] or ["head"]
    for ph in phrasings:
        tc = np.array([_twin(r, split, ph)["twin_correct"] for r in recs], dtype=float)
        p, lo, hi = mean_ci(tc, sp.groups, cfg.n_boot)
        row[f"twin_acc[{ph}]"] = (100 * p, 100 * lo, 100 * hi)
        row[f"twin_acc_per_seed[{ph}]"] = [100 * _point(x) for x in tc]
    head = cfg.headline if cfg.headline in phrasings else phrasings[0]
    row["twin_acc"] = row[f"twin_acc[{head}]"]
    grp = np.array([_twin(r, split, head)["pair_group"] for r in recs], dtype=float)
    row["group_score"] = tuple(100 * x for x in mean_ci(grp, sp.pair_groups, cfg.n_boot))
    con = np.array([_twin(r, split, head)["concept_correct"] for r in recs], dtype=float)
    row["concept_acc1"] = tuple(100 * x for x in mean_ci(con, sp.groups, cfg.n_boot))
    if all("probe" in r[split] for r in recs):
        pr = np.array([r[split]["probe"] for r in recs], dtype=float)
        row["probe_acc"] = tuple(100 * x for x in mean_ci(pr, np.arange(pr.shape[1]), cfg.n_boot))
    return row


METRIC_FIELDS = {"twin_acc": "twin_correct", "group_score": "pair_group"}  # per-item twin fields; "probe_acc": the probe


def _aligned(a: list[dict], b: list[dict]) -> tuple[list[dict], list[dict]]:
    """Two rows' records paired by seed: the seeds both have (the base is one model: reused for every seed
    of the other row)."""
    if any(r["kind"] == "base" for r in a + b):
        return a, b
    seeds = {r["seed"] for r in a} & {r["seed"] for r in b}
    return [r for r in a if r["seed"] in seeds], [r for r in b if r["seed"] in seeds]


def paired_rows(a: list[dict], b: list[dict], data: EvalData, cfg: StudyConfig, split: str = "test",
                metric: str = "twin_acc", ratio: bool = False) -> tuple[float, float, float, int]:
    """Row a minus row b (points; `ratio`: a / b in percent) with a paired 95% interval on one test domain:
    the same seed draws for both (seeds paired by number) and the same item draws (twin groups for twin
    accuracy, connected pair sets for the group score, images for the general probe). Also the number of
    seeds paired (0: none in common, values NaN)."""
    a, b = _aligned(a, b)
    if not a or not b:
        return math.nan, math.nan, math.nan, 0
    if metric == "probe_acc":
        va, vb = (np.array([r[split]["probe"] for r in rr], dtype=float) for rr in (a, b))
        clusters = np.arange(va.shape[1])
    else:
        va, vb = (np.array([_twin(r, split, cfg.headline)[METRIC_FIELDS[metric]] for r in rr], dtype=float)
                  for rr in (a, b))
        sp = data.twin[split]
        clusters = sp.pair_groups if metric == "group_score" else sp.groups
    v = (paired_ratio if ratio else paired_diff)(va, vb, clusters, cfg.n_boot)
    return (*(100 * x for x in v), max(len(a), len(b)))


def _fmt(t, digits: int = 1) -> str:
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "-"
    p, lo, hi = t
    return f"{p:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def row_label(key: str, recs: list[dict]) -> str:
    if key == "base":
        return "base (web-like CLIP)"
    if key == "oracle":
        eps = [r["settings"]["epochs"] for r in recs]
        return f"oracle reference: supervised tower + head, early-stopped on val ({'/'.join(map(str, eps))} epochs)"
    if key.endswith("+wise"):
        return f"{key[:-5]} + WiSE-FT (alpha on val: {'/'.join(str(r['alpha']) for r in recs)})"
    return key


def results_table(rows: dict[str, list[dict]], data: EvalData, cfg: StudyConfig):
    """The results table (one line per row and test domain, `domain` column first) and the per-domain
    summaries {split: {row key: summary}}. A row is read on a domain when all its records have it; its
    general-probe difference is paired with the base's on the same domain's probe."""
    import pandas as pd

    table, summaries = [], {}
    for split, domain in DOMAINS.items():
        if split not in data.twin or split not in rows["base"][0]:
            continue
        base_probe = np.array(rows["base"][0][split]["probe"], dtype=float)
        ref = row_summary(rows["oracle"], data, cfg, split) if "oracle" in rows and split in rows["oracle"][0] else None
        own = summaries.setdefault(split, {})
        for key, rr in rows.items():
            if not all(split in r for r in rr):
                continue
            s = own[key] = row_summary(rr, data, cfg, split)
            line = {"domain": domain, "row": row_label(key, rr), "seeds": s["seeds"], "twin_acc": _fmt(s["twin_acc"]),
                    "group_score": _fmt(s["group_score"]), "concept_acc1": _fmt(s["concept_acc1"])}
            for ph in cfg.phrasings:
                if f"twin_acc[{ph}]" in s and ph != cfg.headline:
                    line[f"twin_acc {ph}"] = f"{s[f'twin_acc[{ph}]'][0]:.1f}"
            if "probe_acc" in s:
                line["probe_acc"] = _fmt(s["probe_acc"])
                if key != "base":
                    pr = np.array([r[split]["probe"] for r in rr], dtype=float)
                    d = paired_probe_diff(pr, base_probe, cfg.n_boot)
                    s["probe_diff"] = tuple(100 * x for x in d)
                    s["probe_diff_half_width"] = 50 * (d[2] - d[1])
                    line["probe_diff_vs_base"] = f"{_fmt(s['probe_diff'])} (±{s['probe_diff_half_width']:.1f})"
            if key not in ("base", "oracle"):
                s["twin_diff_vs_base"] = paired_rows(rr, rows["base"], data, cfg, split)[:3]
                line["twin_acc - base (paired)"] = _fmt(s["twin_diff_vs_base"])
            if ref and key != "oracle":
                s["reference_fraction"] = paired_rows(rr, rows["oracle"], data, cfg, split, ratio=True)[:3]
                line["twin_acc / reference"] = _fmt(s["reference_fraction"], 0)
            per_seed = s.get(f"twin_acc_per_seed[{cfg.headline}]") or s.get("twin_acc_per_seed[head]", [])
            line["per seed"] = " / ".join(f"{x:.1f}" for x in per_seed)
            table.append(line)
    df = pd.DataFrame(table)
    last = ["twin_acc - base (paired)", "group_score", "concept_acc1", "probe_acc", "probe_diff_vs_base",
            "twin_acc / reference", "per seed"]
    first = ["domain", "row", "seeds", "twin_acc"] + [c for c in df.columns if c.startswith("twin_acc ")
                                                      and c not in last]
    df = df[[c for c in first + last if c in df.columns]].rename(columns={"twin_acc": f"twin_acc {cfg.headline} (headline)"})
    return df, summaries


def build_report(out: Path, inputs: WorldInputs, cfg: StudyConfig, wall_seconds: float | None = None) -> dict[str, Any]:
    """results.md/.csv, diffs.md/.csv, choices.json, pareto (val) and summary.json under `out`
    (`wall_seconds`: the measured time of the run that made the records)."""
    import pandas as pd

    recs = load_records(out)
    if not recs:
        raise RuntimeError(f"no finished runs under {out / 'runs'}; run the study first")
    data = load_eval_data(inputs, cfg)
    rows = rows_of(recs)
    if "base" not in rows:
        raise RuntimeError("the base has no record yet; run the study (the base is its first run)")
    df, summaries = results_table(rows, data, cfg)
    df.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(_markdown(df) + "\n")
    diffs = [d for split in DOMAINS if split in data.twin for d in claimed_differences(rows, data, cfg, split)]
    pd.DataFrame(diffs).to_csv(out / "diffs.csv", index=False)
    (out / "diffs.md").write_text(_markdown(pd.DataFrame(diffs)) + "\n" if diffs else "(no pairs finished)\n")
    choices = json.loads((out / "choices.json").read_text()) if (out / "choices.json").is_file() else {}
    points = pareto_points(recs, cfg)
    if points:
        fig = pareto_figure(points)
        write_figure(fig, out / "pareto_val.html")
        try:
            write_figure(fig, out / "pareto_val.png")
        except FigureExportError as e:
            logger.warning("PNG skipped: %s", e)
    summary = {"rows": dict(summaries["test"]), "rows_shifted": dict(summaries.get("shift", {})), "differences": diffs,
               "domains": DOMAIN_NOTE, "choices": choices, "choices_at_sweep_edge": sweep_edge_report(out, cfg, choices), "targets": targets(rows, summaries["test"], data, cfg,
                                                                              summaries.get("shift")),
               "n_runs": len(recs),
               "phrasing_overlap": phrasing_overlap(data, Path(inputs.pretrain), Path(inputs.dataset)),
               "probe_test_images": int(len(data.probe_split["test"])),
               "shift_probe_images": int(len(data.shift_probe_images))}
    if wall_seconds is not None:
        summary["wall_seconds"] = round(wall_seconds, 1)
    _write_json(out / "summary.json", summary)
    return summary


def claimed_differences(rows: dict[str, list[dict]], data: EvalData, cfg: StudyConfig,
                        split: str = "test") -> list[dict]:
    """CultureCLIP minus every other row, and each extra pair of the config (`differences`), on twin
    accuracy (headline) and group score, paired over twin groups and the seeds both rows have, on one
    test domain (`split`: "test" rendered, "shift" the second domain)."""
    out = []
    cc_key = next((k for k in rows if k.endswith("/cultureclip")), None)
    pairs = [(cc_key, k) for k in rows if cc_key and k not in ("base", "oracle", cc_key)]
    pairs += [(a, b) for a, b in cfg.differences if a in rows and b in rows]
    for key_a, key in pairs:
        a, b = _aligned(rows[key_a], rows[key])
        if not a or not b or not all(split in r for r in a + b):
            continue
        metrics = ["twin_acc", "group_score"] + (["probe_acc"] if all("probe" in r[split] for r in a + b) else [])
        for metric in metrics:
            d, lo, hi, n = paired_rows(a, b, data, cfg, split, metric)
            out.append({"domain": DOMAINS[split], "difference": f"{key_a} - {key}", "metric": metric, "seeds": n,
                        "value": round(d, 1), "lo": round(lo, 1), "hi": round(hi, 1),
                        "significant": bool(lo > 0 or hi < 0),
                        "claimable": bool(n >= cfg.claim_seeds and (lo > 0 or hi < 0))})
    return out


def targets(rows: dict[str, list[dict]], summaries: dict[str, dict], data: EvalData, cfg: StudyConfig,
            shifted: dict[str, dict] | None = None) -> list[dict]:
    """The restated target: among rows with >= claim_seeds seeds whose *val* probe shows no significant
    paired drop against the base, the best *val* twin accuracy (headline); its test numbers, whether
    CultureCLIP's best beats plain fine-tuning's best (paired, test), and its fraction of the reference."""
    out = []
    base_val = np.array(rows["base"][0]["val"]["probe"], dtype=float)

    def val_ok(rr: list[dict]) -> tuple[bool, float]:
        probes = np.array([r["val"]["probe"] for r in rr], dtype=float)
        _, _, hi = paired_probe_diff(probes, base_val, cfg.n_boot)
        twin = float(np.mean([np.nanmean(_twin(r, "val", cfg.headline)["twin_correct"]) for r in rr]))
        return hi >= 0, 100 * twin

    def best_of(family: str) -> tuple[str, float] | None:
        cands = []
        for key, rr in rows.items():
            if key in ("base", "oracle") or len(rr) < cfg.claim_seeds:
                continue
            if family_of(cfg, key) != family:
                continue
            if key.endswith("+wise"):  # its val numbers are those of the chosen alpha
                ok = all(r["wise"]["val_curve"][str(r["alpha"])]["ok"] for r in rr)
                twin = float(np.mean([r["wise"]["val_curve"][str(r["alpha"])]["twin_acc"] for r in rr]))
            else:
                ok, twin = val_ok(rr)
            if ok:
                cands.append((key, twin))
        return max(cands, key=lambda c: c[1]) if cands else None

    best_cc, best_plain = best_of("cultureclip"), best_of("plain")
    if best_cc is None:
        out.append({"target": "best twin accuracy (held-out phrasing) with no significant general-probe drop, "
                              f"chosen on val, >= {cfg.claim_seeds} seeds", "value": "no qualifying row yet",
                    "met": None})
        return out
    s = summaries[best_cc[0]]
    out.append({"target": "best CultureCLIP-family row with no significant val-probe drop (chosen on val)",
                "value": f"{best_cc[0]}: test twin {s['twin_acc'][0]:.1f}, probe diff "
                         f"{_fmt(s.get('probe_diff'))}", "met": bool(s.get("probe_diff") and s["probe_diff"][2] >= 0)})
    if best_plain:
        d, lo, hi, _ = paired_rows(rows[best_cc[0]], rows[best_plain[0]], data, cfg)
        out.append({"target": "under the constraint, CultureCLIP beats plain CLIP fine-tuning (paired interval excludes 0)",
                    "value": f"{best_cc[0]} - {best_plain[0]}: {d:.1f} [{lo:.1f}, {hi:.1f}]", "met": bool(lo > 0)})
    if "oracle" in rows:
        frac, lo, hi, _ = paired_rows(rows[best_cc[0]], rows["oracle"], data, cfg, ratio=True)
        out.append({"target": "moonshot: under the constraint, >= 90% of the converged reference's twin accuracy "
                              "(paired 95% interval; met when its lower end is >= 90)",
                    "value": f"{frac:.1f} [{lo:.1f}, {hi:.1f}]", "met": bool(lo >= 90)})
    for key in (best_cc[0], best_plain and best_plain[0]):
        if key:
            d, lo, hi, _ = paired_rows(rows[key], rows["base"], data, cfg)
            out.append({"target": f"under the constraint, the {family_of(cfg, key)} family's row gains twin accuracy "
                                  "over the base (paired interval excludes 0)",
                        "value": f"{key} - base: {d:.1f} [{lo:.1f}, {hi:.1f}]", "met": bool(lo > 0)})
    if shifted and best_cc[0] in shifted and "base" in shifted:
        sh, b = shifted[best_cc[0]], shifted["base"]
        out.append({"target": "the same row on the shifted domain (never trained on): twin accuracy vs the base's, "
                              "general-probe difference",
                    "value": f"{best_cc[0]}: twin {_fmt(sh['twin_acc'])} vs base {_fmt(b['twin_acc'])}, probe diff "
                             f"{_fmt(sh.get('probe_diff'))}", "met": None})
    return out


def _markdown(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.tolist()) + " |")
    return "\n".join(lines)


def pareto_points(recs: dict[str, dict], cfg: StudyConfig) -> list[dict]:
    """(val probe acc, val twin acc) per finished row (seed mean) and per WiSE-FT alpha (seed mean): the
    figure that choices are read from, so on val."""
    pts: dict[str, list] = {}
    for r in recs.values():
        if r["kind"] in ("oracle", "tune") or "val" not in r or "probe" not in r["val"]:
            continue
        key = "base" if r["kind"] == "base" else f"{r['grid']}/{r['name']}"
        pts.setdefault(key, []).append((100 * float(np.mean(r["val"]["probe"])),
                                        100 * float(np.nanmean(r["val"]["twin"][cfg.headline]["twin_correct"]))))
        for alpha, c in r.get("wise", {}).get("val_curve", {}).items():
            pts.setdefault(f"{key} a={alpha}", []).append((c["probe_acc"], c["twin_acc"]))
    out = []
    for key, v in pts.items():
        fam = "base" if key == "base" else "plain" if family_of(cfg, key.split(" a=")[0]) == "plain" else "twin-aware"
        out.append({"name": key, "family": fam, "kind": "wise" if " a=" in key else "variant", "n": len(v),
                    "attr_acc": float(np.mean([p[0] for p in v])), "twin_acc": float(np.mean([p[1] for p in v]))})
    return out


def frontier(points: list[dict]) -> list[dict]:
    """The non-dominated points (higher probe AND twin accuracy are better), by probe accuracy."""
    best = []
    for p in sorted(points, key=lambda p: (-p["attr_acc"], -p["twin_acc"])):
        if not best or p["twin_acc"] > best[-1]["twin_acc"]:
            best.append(p)
    return sorted(best, key=lambda p: p["attr_acc"])


def pareto_figure(points: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = {"plain": "#7f7f7f", "twin-aware": "#1f77b4", "base": "#000000"}
    base = [p for p in points if p["family"] == "base"]
    for fam in ("plain", "twin-aware"):
        own = [p for p in points if p["family"] == fam]
        if not own:
            continue
        f = frontier(own + base)
        fig.add_trace(go.Scatter(x=[p["attr_acc"] for p in f], y=[p["twin_acc"] for p in f], mode="lines+text",
                                 line=dict(color=colors[fam], dash="dot" if fam == "plain" else "solid"),
                                 text=[p["name"].split("/")[-1] if p["family"] != "base" and p["kind"] == "variant"
                                       else "" for p in f],
                                 textposition="top center", textfont=dict(size=9, color=colors[fam]),
                                 name=f"frontier: {fam} (+ base)"))
        fig.add_trace(go.Scatter(x=[p["attr_acc"] for p in own], y=[p["twin_acc"] for p in own], mode="markers",
                                 text=[f"{p['name']} (n={p['n']})" for p in own], hoverinfo="text",
                                 marker=dict(color=colors[fam], size=8, symbol=["circle" if p["kind"] == "variant" else
                                                                                 "diamond-open" for p in own]),
                                 name=fam))
    for p in base:
        fig.add_trace(go.Scatter(x=[p["attr_acc"]], y=[p["twin_acc"]], mode="markers+text", text=["base"],
                                 textposition="bottom center", marker=dict(color="black", size=11, symbol="square"),
                                 name="base"))
    fig.update_layout(title="Offline twin world, val split: twin accuracy (held-out phrasing) vs general probe<br>"
                            "<sup>each point: the mean over its runs' seeds (n in the hover); diamonds: WiSE-FT "
                            "alphas (alpha in the hover); frontier variants named</sup>",
                      xaxis_title="general probe accuracy, val half (%)", yaxis_title="twin accuracy, val (%)",
                      width=900, height=620, template="plotly_white")
    return fig


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _variant_items(v: dict[str, Any]) -> tuple:
    return tuple(sorted((k, json.dumps(x, sort_keys=True)) for k, x in v.items()))


def tuning_jobs(cfg: StudyConfig) -> list[Job]:
    t = cfg.tune
    return [Job("tune", "tune", f"{fam}_lr{lr:g}_e{ep}", int(t.get("seed", 0)), _variant_items(v), (float(lr), int(ep)))
            for fam, v in t["families"].items() for lr, ep in itertools.product(t["lr"], t["epochs"])]


def choose_settings(out: Path, cfg: StudyConfig) -> dict[str, dict]:
    """Per family the (lr, epochs) with the best val twin accuracy (headline phrasing) among its tuning
    runs; ties go to fewer epochs, then the lower lr. Written to choices.json."""
    choices = {}
    for fam in cfg.tune["families"]:
        cands = []
        for job in tuning_jobs(cfg):
            if not job.name.startswith(fam + "_lr"):
                continue
            p = record_path(out, job)
            if not p.is_file():
                raise RuntimeError(f"tuning run {job.run} has no record; rerun the study")
            rec = json.loads(p.read_text())
            twin = 100 * float(np.nanmean(rec["val"]["twin"][cfg.headline]["twin_correct"]))
            cands.append((twin, -job.choice[1], -job.choice[0], job))
        twin, _, _, job = max(cands, key=lambda c: c[:3])
        choices[fam] = {"lr": job.choice[0], "epochs": job.choice[1], "val_twin_acc": round(twin, 2),
                        "candidates": {c[3].name: round(c[0], 2) for c in cands}}
    _write_json(out / "choices.json", choices)
    return choices


def choices_at_edge(choices: dict[str, dict], cfg: StudyConfig) -> dict[str, list[str]]:
    """Per family the settings val chose at the largest value of its sweep (`lr`, `epochs`): a choice
    there says the sweep may be too narrow, so a larger value might score better on val still."""
    t = cfg.tune
    edge = {}
    for fam, ch in choices.items():
        at = [k for k in ("lr", "epochs") if len(t[k]) > 1 and float(ch[k]) >= max(map(float, t[k]))]
        if at:
            edge[fam] = at
    return edge


def widening_jobs(cfg: StudyConfig, choices: dict[str, dict]) -> list[Job]:
    """For each family val chose at the edge of its sweep: the tuning runs one step beyond it (lr x 3,
    epochs x 2, and both), same seed and variant as its sweep. Read on val only; they change no choice
    (the grids keep what the configured sweep chose): they say whether that sweep was wide enough."""
    t, jobs = cfg.tune, []
    for fam, at in choices_at_edge(choices, cfg).items():
        ch = choices[fam]
        lrs = [float(ch["lr"])] + ([3 * max(map(float, t["lr"]))] if "lr" in at else [])
        eps = [int(ch["epochs"])] + ([2 * max(map(int, t["epochs"]))] if "epochs" in at else [])
        for lr, ep in itertools.product(lrs, eps):
            if (lr, ep) != (float(ch["lr"]), int(ch["epochs"])):
                jobs.append(Job("tune", "tune", f"{fam}_lr{lr:g}_e{ep}", int(t.get("seed", 0)),
                                _variant_items(t["families"][fam]), (lr, ep)))
    return jobs


def sweep_edge_report(out: Path, cfg: StudyConfig, choices: dict[str, dict]) -> dict[str, dict]:
    """Per family chosen at its sweep's edge: which edge, the chosen setting's val twin accuracy, and that
    of each widening run finished so far (`--widen`): a higher one says the sweep was too narrow."""
    rep = {}
    for fam, at in choices_at_edge(choices, cfg).items():
        widened = {}
        for job in widening_jobs(cfg, {fam: choices[fam]}):
            p = record_path(out, job)
            if p.is_file():
                rec = json.loads(p.read_text())
                widened[job.name] = round(100 * float(np.nanmean(rec["val"]["twin"][cfg.headline]["twin_correct"])), 2)
        rep[fam] = {"at_largest": at, "chosen_val_twin_acc": choices[fam]["val_twin_acc"], "widened_val_twin_acc": widened}
    return rep


def grid_jobs(cfg: StudyConfig, choices: dict[str, dict], grids: list[str] | None = None) -> list[Job]:
    """(variant, seed) jobs of the grids, seed-major so a partial study has every variant's first seed."""
    jobs = []
    for gname, g in cfg.grids.items():
        if grids and gname not in grids:
            continue
        for seed in g.seeds:
            for name, v in g.variants.items():
                fam = v.get("family", "cultureclip")
                ch = choices[fam]
                lr = float(v.get("optim", {}).get("lr", ch["lr"]))
                jobs.append(Job("finetune", gname, name, seed, _variant_items(v), (lr, int(ch["epochs"])),
                                wise=name in cfg.wise_for))
    return jobs


def _pool(workers: int):
    """`workers` spawned processes (one torch thread each), or None for in-process runs; one pool serves
    every phase of a study, so the workers import torch and open_clip once."""
    if workers <= 1:
        return contextlib.nullcontext(None)

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)


def _run_all(jobs: list[Job], out: Path, inputs: WorldInputs, cfg: StudyConfig, pool, t0: float) -> None:
    inputs_fp = inputs_fingerprint(inputs)
    fps = {j: job_fingerprint(j, cfg, inputs_fp) for j in jobs}
    jobs = [j for j in jobs if not job_done(out, j, fps[j])]
    logger.info("%d job(s) to run %s", len(jobs), "in the worker processes" if pool else "in this process")
    if pool is None:
        for j in jobs:
            run_job(j, str(out), inputs, cfg, fps[j])
        return
    futures = {pool.submit(run_job, j, str(out), inputs, cfg, fps[j]): j for j in jobs}
    for f in as_completed(futures):
        try:
            logger.info("finished %s (%.0fs since start)", f.result(), time.time() - t0)
        except Exception:  # noqa: BLE001 - one failed run must not lose the others
            logger.exception("run %s failed", futures[f].run)


def run_study(out: Path, cfg: StudyConfig, world_dir: Path, workers: int = 2, grids: list[str] | None = None,
              progress: bool = False, widen: bool = False) -> dict[str, Any]:
    """Build (or reuse) the world's inputs; base, oracle and tuning runs; the choices on val; the grids;
    (`widen`: the tuning runs one step beyond a choice at its sweep's edge, on val); the report."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    inputs = world_inputs(world_dir, cfg.preset, 0, progress)
    _write_json(out / "inputs.json", {k: _relative(v, out) if v else "" for k, v in dataclasses.asdict(inputs).items()})
    logger.info("world inputs ready in %.0fs", time.time() - t0)
    first = [Job("base", "", "base", 0, (), ())]
    first += [Job("oracle", "oracle", "oracle", s, (), ()) for s in cfg.oracle.get("seeds", [])]
    with _pool(workers) as pool:
        _run_all(first + tuning_jobs(cfg), out, inputs, cfg, pool, t0)
        choices = choose_settings(out, cfg)
        logger.info("chosen on val: %s", {k: (v["lr"], v["epochs"]) for k, v in choices.items()})
        jobs = grid_jobs(cfg, choices, grids)
        if any(json.loads(dict(j.variant).get("captions", '"context"')) == "plain" for j in jobs):
            plain_caption_dataset(inputs, out)
        _run_all(jobs, out, inputs, cfg, pool, t0)
        if widen:
            _run_all(widening_jobs(cfg, choices), out, inputs, cfg, pool, t0)
    return build_report(out, inputs, cfg, time.time() - t0)


def _relative(path: str, out: Path) -> str:
    """A world input's path relative to the study folder (the pair can move together)."""

    return os.path.relpath(Path(path).resolve(), Path(out).resolve())


def _worker_init() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("world").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m world.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="study config (default configs/world/study.yaml; --quick: "
                                                   "configs/world/study_quick.yaml)")
    ap.add_argument("--out", default=None, help="default artifacts/world-study (quick: artifacts/world-study-quick)")
    ap.add_argument("--world", default=None, help="world build folder to reuse/build (default artifacts/world; "
                                                  "quick: <out>/world)")
    ap.add_argument("--quick", action="store_true", help="the quick config: smoke world, 1 seed, few steps")
    ap.add_argument("--grid", action="append", default=None, help="run only this grid (repeatable)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    ap.add_argument("--widen", action="store_true", help="also run, on val only, the tuning settings one step "
                                                         "beyond a choice at its sweep's edge (changes no choice)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("world", "synth", "cultureclip"):
        logging.getLogger(name).setLevel(logging.INFO)
    # absolute (not resolved: a symlinked folder stays one): world.build stores a step's result relative
    # to the world only when it is given an absolute path, so a relative --out failed on its first rerun
    out = Path(args.out or ROOT / "artifacts" / ("world-study-quick" if args.quick else "world-study")).absolute()
    world_dir = Path(args.world or (out / "world" if args.quick else ROOT / "artifacts" / "world")).absolute()
    try:
        cfg = load_study_config(args.config or CONFIGS["quick" if args.quick else "full"])
        if args.grid and set(args.grid) - set(cfg.grids):
            raise StudyConfigError(f"--grid {sorted(set(args.grid) - set(cfg.grids))}: grids are {sorted(cfg.grids)}")
        if args.report_only:
            inputs = WorldInputs(**{k: str(out / v) if v else "" for k, v in json.loads((out / "inputs.json").read_text()).items()})
            before = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
            # the measured time of the run that made these records is kept (a rebuilt report measures nothing)
            summary = build_report(out, inputs, cfg, before.get("wall_seconds"))
        else:
            summary = run_study(out, cfg, world_dir, args.workers, args.grid, widen=args.widen)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"world study: {e}", file=sys.stderr)
        return 2
    print((out / "results.md").read_text())
    print((out / "diffs.md").read_text())
    print(json.dumps(summary["targets"], indent=2))
    for fam, e in summary.get("choices_at_sweep_edge", {}).items():
        print(f"note: val chose {fam}'s largest {' and '.join(e['at_largest'])} of the sweep (val twin "
              f"{e['chosen_val_twin_acc']}); one step beyond, on val: {e['widened_val_twin_acc'] or 'not run (--widen)'}")
    print(f"-> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
