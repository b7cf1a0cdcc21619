"""The world study: the paper's claims one at a time on the offline twin world, seeded, with intervals.

    make world-study                            # the full grid -> artifacts/world-study/
    python -m world.study --quick               # 1 seed, the smoke world, 3 variants: minutes
    python -m world.study --report-only         # table + figure from the runs finished so far

Steps:
1. the world's inputs (pretraining data, held-out generic attribute test, base CLIP, CulTwin dataset)
   from `world.build` (reused when already built with the same settings);
2. fine-tunes of the base, one per (variant, seed), through `cultureclip.train.train` with a typed
   `TrainConfig`; each is evaluated right away (and WiSE-FT interpolations of it, for the Pareto
   figure); an oracle: the same image tower + a linear head trained supervised on the renders'
   concept labels (how separable each twin pair is at the world's resolution);
3. the report: per variant the seed-mean of twin accuracy, twin group score, N-way concept accuracy
   and general attribute accuracy with bootstrap 95% intervals (twin metrics resample *twin groups*,
   the connected look-alike sets, so the images of one pair are never split; attribute accuracy
   resamples images), twin accuracy as a fraction of the oracle's (overall and per pair), and the
   Pareto figure (twin vs general attribute accuracy).

Every run writes `runs/<run>/record.json` (atomic) and is skipped on rerun, so an interrupted study
resumes; `--report-only` reports whatever is finished. Fine-tunes run in `--workers` processes with
one torch thread each (the result does not depend on the number of processes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cultureclip.twins import TwinIndex, concept_scores, pair_matrices, twin_groups, twin_scores

logger = logging.getLogger("world.study")
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# What is trained
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One fine-tuning recipe (every field maps to one `TrainConfig` field; None = the world preset's)."""

    name: str
    label: str
    loss: str = "twin"  # twin | clip
    twin_batching: bool = True
    twin_negatives: bool = True
    w_cap: float = 0.7
    w_con: float = 0.3
    concept_direction: str = "image_to_prompt"
    lora_r: int = 0  # 0 = full fine-tuning
    lora_alpha: float = 16.0
    w_keep: float = 0.0
    replay_ratio: float | None = None
    family: str = "twin-aware"  # Pareto figure: "plain" (no twin signal at all) or "twin-aware"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("plain", "1. plain CLIP loss, random batches", loss="clip", twin_batching=False, twin_negatives=False,
            w_cap=1.0, w_con=0.0, family="plain"),
    Variant("batching", "2. + twin-aware batching (CLIP loss)", loss="clip", twin_negatives=False, w_cap=1.0, w_con=0.0),
    Variant("negatives", "3. + twin negatives (= caption term only)", w_cap=1.0, w_con=0.0),
    Variant("cultureclip", "4. + concept term (= CultureCLIP)"),
    Variant("concept_only", "concept term only", w_cap=0.0, w_con=1.0),
    Variant("symmetric", "CultureCLIP, symmetric concept term", concept_direction="symmetric"),
    Variant("lora_r4", "CultureCLIP, LoRA r=4 alpha=16 on q/v (paper)", lora_r=4, lora_alpha=16.0),
    Variant("lora_r16", "CultureCLIP, LoRA r=16 alpha=64 on q/v", lora_r=16, lora_alpha=64.0),
    Variant("keep1", "CultureCLIP + distillation w_keep=1", w_keep=1.0),
    Variant("replay0", "CultureCLIP, no replay", replay_ratio=0.0),
    Variant("replay1", "CultureCLIP, replay ratio 1.0", replay_ratio=1.0),
)}
MAIN = ("plain", "batching", "negatives", "cultureclip")


@dataclass
class Plan:
    """The grid: which variants with which seeds, WiSE-FT alphas, the oracle, the world preset."""

    preset: str = "full"
    seeds: dict[str, list[int]] = field(default_factory=dict)  # variant -> seeds
    wise_alphas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    wise_for: list[str] = field(default_factory=lambda: ["plain", "cultureclip"])
    oracle_seeds: list[int] = field(default_factory=lambda: [0])
    oracle_epochs: int = 10
    oracle_long_epochs: int = 30  # a second, longer-trained oracle: the bound is the stronger of the two
    finetune_epochs: int | None = None  # None = the preset's
    n_boot: int = 2000

    def runs(self) -> list[tuple[str, int]]:
        """(variant, seed) in the order they should run: every seed of the main four first (seed by
        seed), then the other variants in the order given, so a partial study still answers the
        main question with all its seeds."""
        out: list[tuple[str, int]] = []
        main = [n for n in MAIN if n in self.seeds]
        for k in range(max((len(self.seeds[n]) for n in main), default=0)):
            out += [(n, self.seeds[n][k]) for n in main if k < len(self.seeds[n])]
        for name, seeds in self.seeds.items():
            if name not in MAIN:
                out += [(name, s) for s in seeds]
        return out


def full_plan() -> Plan:
    """The default grid (sized for ~60-75 min on 2 contended CPU cores): 3 seeds for the four main
    variants, 1 seed for the others, WiSE-FT alphas on plain and CultureCLIP, one oracle."""
    seeds = {n: [0, 1, 2] for n in MAIN}
    for n in ("lora_r4", "symmetric", "concept_only", "lora_r16", "keep1", "replay1", "replay0"):
        seeds[n] = [0]
    return Plan(preset="full", seeds=seeds)


def quick_plan() -> Plan:
    return Plan(preset="smoke", seeds={"plain": [0], "cultureclip": [0], "lora_r4": [0]}, wise_alphas=[0.5],
                wise_for=["cultureclip"], oracle_epochs=4, finetune_epochs=4, n_boot=500)


# --------------------------------------------------------------------------------------------------
# Inputs, training, evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldInputs:
    pretrain: str
    attributes: str
    base: str
    dataset: str


def world_inputs(world_dir: Path, preset: str, seed: int = 0, progress: bool = False) -> WorldInputs:
    """The world's inputs from `world.build` (cached steps are reused)."""
    from world.build import build

    got = build(world_dir, preset, seed, progress=progress, inputs_only=True)
    return WorldInputs(got["pretrain"], got["attributes"], got["base"], got["dataset"])


def train_config(variant: Variant, seed: int, inputs: WorldInputs, run_dir: Path, preset_name: str,
                 epochs: int | None = None):
    """The `TrainConfig` of one fine-tune (the world build's fine-tuning settings + the variant)."""
    from cultureclip.train import TrainConfig
    from world.build import PRESETS

    p = PRESETS[preset_name]
    cfg = TrainConfig()
    cfg.model.spec = inputs.base
    cfg.lora.enabled = variant.lora_r > 0
    cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout = max(1, variant.lora_r), variant.lora_alpha, 0.0
    cfg.lora.targets = ["q", "v"]
    d = cfg.data
    d.dataset, d.batch_size, d.twin_batching = inputs.dataset, p.finetune_batch, variant.twin_batching
    d.check_images, d.cache_images = False, True
    replay = p.replay_ratio if variant.replay_ratio is None else variant.replay_ratio
    d.replay_dataset, d.replay_ratio = (inputs.pretrain, replay) if replay > 0 else ("", 0.0)
    o = cfg.optim
    o.lr = p.lora_lr if variant.lora_r > 0 else p.finetune_lr
    o.epochs = epochs or p.finetune_epochs
    o.warmup_steps, o.weight_decay = 20, 0.0
    loss = cfg.loss
    loss.name, loss.w_cap, loss.w_con, loss.w_keep = variant.loss, variant.w_cap, variant.w_con, variant.w_keep
    loss.twin_negatives, loss.concept_direction = variant.twin_negatives, variant.concept_direction
    cfg.out_dir, cfg.seed = str(run_dir), seed
    cfg.mixed_precision, cfg.keep_last, cfg.log_every, cfg.progress = "no", 1, 50, False
    return cfg


@dataclass
class EvalData:
    """Test images + texts of the CulTwin test split and of the generic attribute test."""

    twin: Any  # eval_suite TwinData
    attr: Any
    groups: np.ndarray  # (N_twin,) twin-group (connected look-alike set) index per test image; -1 none
    pair_groups: np.ndarray  # (P,) group index per pair


def load_eval_data(inputs: WorldInputs) -> EvalData:
    from eval_suite.benchmarks.cultwin import CulTwinBenchmark, WorldAttributesBenchmark

    twin = CulTwinBenchmark(root=inputs.dataset).load()
    attr = WorldAttributesBenchmark(root=inputs.attributes).load()
    comp = twin_groups(twin.pairs)
    groups = np.array([comp.get(c, -1) for c in twin.concept_ids])
    return EvalData(twin, attr, groups, np.array([comp[a] for a, _ in twin.pairs]))


def score_twin(sims: np.ndarray, data: EvalData) -> dict[str, Any]:
    """Per-image and per-pair twin scores from image x concept scores (N, C) ordered by sorted concept id.

    twin_correct (N,): own concept beats every twin present (NaN for images without a twin), eval_suite's
    twin_acc (`cultureclip.twins.twin_scores`); pair_group (P,): the Winoground group score of each pair's
    mean-score matrix (`cultureclip.twins.pair_matrices`); pair_correct/pair_n (P,): images of the pair whose
    own concept beats the pair's other one (the same rule with that one twin)."""
    from eval_suite import metrics as M

    t = data.twin
    index = TwinIndex.build(t.concept_texts, t.pairs)
    labels = index.labels(t.concept_ids)
    tw = twin_scores(sims, labels, index.twins_of)
    twin_correct = np.full(len(labels), np.nan)
    twin_correct[tw.rows.numpy()] = tw.correct.numpy().astype(float)
    pc, pn = [], []
    for a, b in index.pairs:
        rows = np.flatnonzero((labels == a) | (labels == b))
        pc.append(int(twin_scores(sims[rows], labels[rows], {a: [b], b: [a]}).correct.sum()))
        pn.append(len(rows))
    mats, _ = pair_matrices(sims, labels, index.pairs)
    group = M.winoground_scores(mats)["group"].astype(float)
    concept_correct = (sims.argmax(1) == labels).astype(float)
    return {"twin_correct": twin_correct.tolist(), "pair_group": group.tolist(), "pair_correct": pc, "pair_n": pn,
            "concept_correct": concept_correct.tolist()}


def evaluate_backbone(backbone, data: EvalData) -> dict[str, Any]:
    """Zero-shot scores of a CLIP backbone on the twin test split and the attribute test."""
    import torch

    from cultureclip.inference import Embedder
    from eval_suite.benchmarks.embedding import embed_image_refs

    backbone.eval()
    emb = Embedder(backbone, batch_size=128)
    with torch.no_grad():
        out = {}
        for key, d in (("twin", data.twin), ("attr", data.attr)):
            feats, valid = embed_image_refs(emb, d.images, progress=False)
            if not valid.all():
                raise RuntimeError(f"{int((~valid).sum())} unreadable {key} test images")
            out[key] = concept_scores(emb, feats, d.concept_texts).numpy()
    rec = score_twin(out["twin"], data)
    a = data.attr
    concepts = sorted(a.concept_texts)
    labels = np.array([concepts.index(c) for c in a.concept_ids])
    rec["attr_correct"] = (out["attr"].argmax(1) == labels).astype(float).tolist()
    return rec


def summary_of(rec: dict[str, Any]) -> dict[str, float]:
    """Point metrics (percent) of one record."""
    tc = np.array(rec["twin_correct"], dtype=float)
    out = {"twin_acc": 100 * float(np.nanmean(tc)), "twin_group_score": 100 * float(np.mean(rec["pair_group"])),
           "concept_acc1": 100 * float(np.mean(rec["concept_correct"]))}
    if "attr_correct" in rec:
        out["attr_acc"] = 100 * float(np.mean(rec["attr_correct"]))
    return out


def _write_json(path: Path, obj: Any) -> None:
    from cultureclip.fileio import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj))


@dataclass(frozen=True)
class Job:
    kind: str  # finetune | oracle | base
    variant: str
    seed: int
    out: str
    inputs: WorldInputs
    preset: str
    epochs: int | None
    wise_alphas: tuple[float, ...] = ()


def run_job(job: Job) -> str:
    """One fine-tune (+ WiSE-FT points) or oracle, evaluated; writes runs/<name>/record.json."""
    import torch

    torch.set_num_threads(1)
    from cultureclip.backbone import create_backbone

    name = run_name(job.kind, job.variant, job.seed)
    run_dir = Path(job.out) / "runs" / name
    rec_path = run_dir / "record.json"
    if rec_path.is_file():
        return name
    data = load_eval_data(job.inputs)
    t0 = time.time()
    if job.kind == "base":
        rec = evaluate_backbone(create_backbone(job.inputs.base), data)
    elif job.kind == "oracle":
        rec = train_oracle(job.inputs, data, job.seed, job.epochs or 10, job.preset)
    else:
        from cultureclip.train import train

        variant = VARIANTS[job.variant]
        work = run_dir / "train"
        shutil.rmtree(work, ignore_errors=True)
        summary = train(train_config(variant, job.seed, job.inputs, work, job.preset, job.epochs))
        tuned = create_backbone(summary["export"])
        rec = evaluate_backbone(tuned, data)
        rec["wise"] = {}
        if job.wise_alphas:
            from cultureclip.lora import wise_ft

            base_state = create_backbone(job.inputs.base).state_dict()
            tuned_state = {k: v.clone() for k, v in tuned.state_dict().items()}
            for alpha in job.wise_alphas:
                tuned.load_state_dict(wise_ft(base_state, tuned_state, alpha))
                rec["wise"][str(alpha)] = summary_of(evaluate_backbone(tuned, data))
        rec["train_seconds"] = round(time.time() - t0, 1)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # optimizer states: not needed after export
    rec.update({"kind": job.kind, "variant": job.variant, "seed": job.seed, "seconds": round(time.time() - t0, 1)})
    _write_json(rec_path, rec)
    logger.info("%s done in %.0fs: %s", name, time.time() - t0, summary_of(rec))
    return name


def run_name(kind: str, variant: str, seed: int) -> str:
    return "base" if kind == "base" else f"{variant}_s{seed}"


def train_oracle(inputs: WorldInputs, data: EvalData, seed: int, epochs: int, preset: str) -> dict[str, Any]:
    """The base's image tower + a linear head over the concepts, trained with cross-entropy on the
    train split's concept labels (same renders and augmentation as the fine-tunes); scored like a
    zero-shot model with the head's logits in place of prompt similarities."""
    import torch
    import torch.nn.functional as F

    from cultureclip.backbone import create_backbone
    from cultureclip.data import CulTwinDataset, read_manifest
    from eval_suite.benchmarks.embedding import RefDataset
    from world.build import PRESETS

    torch.manual_seed(seed)
    bb = create_backbone(inputs.base)
    train_m = read_manifest(inputs.dataset, check_images=False).split("train")
    ds = CulTwinDataset(train_m, bb.preprocess_train, seed=seed, cache_images=True)
    concepts = sorted(data.twin.concept_texts)
    cidx = {c: i for i, c in enumerate(concepts)}
    keep = [i for i, c in enumerate(ds.concept_ids) if c in cidx]
    with torch.no_grad():
        dim = bb.encode_image(torch.zeros(1, 3, *_img_size(bb))).shape[1]
    head = torch.nn.Linear(dim, len(concepts))
    params = [p for n, p in bb.model.named_parameters() if n.startswith("visual.")]
    opt = torch.optim.AdamW([{"params": params, "lr": PRESETS[preset].finetune_lr},
                             {"params": head.parameters(), "lr": 1e-2}], weight_decay=0.0)
    bs = PRESETS[preset].finetune_batch
    rng = np.random.default_rng([seed, 11])
    steps = epochs * math.ceil(len(keep) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    bb.train()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        order = rng.permutation(keep)
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            items = [ds[int(i)] for i in idx]
            x = torch.stack([it["image"] for it in items])
            y = torch.tensor([cidx[ds.concept_ids[int(i)]] for i in idx])
            # normalized features with a learned scale: the head sees what the contrastive model sees
            loss = F.cross_entropy(head(bb.encode_image(x, normalize=True)) * 10.0, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    bb.eval()
    refs = RefDataset(data.twin.images, bb.preprocess_eval, _img_size(bb))
    logits = []
    with torch.no_grad():
        for start in range(0, len(refs), 128):
            x = torch.stack([refs[i][1] for i in range(start, min(len(refs), start + 128))])
            logits.append(head(bb.encode_image(x, normalize=True)).float())
    return score_twin(torch.cat(logits).numpy(), data)


def _img_size(bb) -> tuple[int, int]:
    from eval_suite.benchmarks.embedding import _image_size

    return _image_size(bb)


# --------------------------------------------------------------------------------------------------
# Statistics and the report
# --------------------------------------------------------------------------------------------------


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      ci: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` (NaN = not counted) with a percentile CI that resamples whole clusters.

    Returns (point, low, high). With every item its own cluster this is the ordinary bootstrap."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    v, c = v[ok], np.asarray(clusters)[ok]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    ids, inv = np.unique(c, return_inverse=True)
    sums = np.bincount(inv, weights=v, minlength=len(ids))
    counts = np.bincount(inv, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    boots = sums[draw].sum(1) / counts[draw].sum(1)
    a = (1 - ci) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return float(v.mean()), float(lo), float(hi)


def load_records(out: Path) -> dict[str, dict]:
    recs = {}
    for f in sorted((out / "runs").glob("*/record.json")):
        try:
            recs[f.parent.name] = json.loads(f.read_text())
        except (OSError, ValueError):
            logger.warning("unreadable record %s (skipped)", f)
    return recs


def aggregate(recs: list[dict], data_groups: np.ndarray, pair_groups: np.ndarray, n_boot: int) -> dict[str, Any]:
    """Seed-mean metrics of one variant with cluster-bootstrap intervals (percent)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # images without a twin stay NaN
        tc = np.nanmean(np.array([r["twin_correct"] for r in recs], dtype=float), axis=0)
    grp = np.mean([r["pair_group"] for r in recs], axis=0)
    con = np.mean([r["concept_correct"] for r in recs], axis=0)
    row: dict[str, Any] = {"seeds": len(recs)}
    for key, vals, cl in (("twin_acc", tc, data_groups), ("twin_group_score", grp, pair_groups),
                          ("concept_acc1", con, np.arange(len(con)))):
        p, lo, hi = cluster_bootstrap(vals, cl, n_boot)
        row[key], row[key + "_lo"], row[key + "_hi"] = 100 * p, 100 * lo, 100 * hi
    if all("attr_correct" in r for r in recs):
        att = np.mean([r["attr_correct"] for r in recs], axis=0)
        p, lo, hi = cluster_bootstrap(att, np.arange(len(att)), n_boot)
        row["attr_acc"], row["attr_acc_lo"], row["attr_acc_hi"] = 100 * p, 100 * lo, 100 * hi
    per_seed = [summary_of(r)["twin_acc"] for r in recs]
    row["twin_acc_seed_sd"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    row["twin_acc_per_seed"] = " / ".join(f"{x:.1f}" for x in per_seed)
    row["pair_correct"] = np.sum([r["pair_correct"] for r in recs], axis=0).tolist()
    row["pair_n"] = np.sum([r["pair_n"] for r in recs], axis=0).tolist()
    return row


def _ci(row: dict, key: str) -> str:
    if key not in row or row[key] is None or (isinstance(row[key], float) and math.isnan(row[key])):
        return "-"
    return f"{row[key]:.1f} [{row[key + '_lo']:.1f}, {row[key + '_hi']:.1f}]"


def build_report(out: Path, inputs: WorldInputs | None, plan: Plan) -> dict[str, Any]:
    """results.csv / results.md / pairs.csv / pareto.{html,png} under `out` from the finished runs."""
    import pandas as pd

    recs = load_records(out)
    if not recs:
        raise RuntimeError(f"no finished runs under {out / 'runs'}; run the study first")
    if inputs is None:
        inputs = WorldInputs(**json.loads((out / "inputs.json").read_text()))
    data = load_eval_data(inputs)
    rows: dict[str, dict] = {}
    by_variant: dict[str, list[dict]] = {}
    for name, r in recs.items():
        key = "base" if r["kind"] == "base" else r["variant"]  # oracle records: "oracle" / "oracle_long"
        by_variant.setdefault(key, []).append(r)
    order = ["base", "oracle", "oracle_long"] + list(MAIN) + [n for n in VARIANTS if n not in MAIN]
    for key in [k for k in order if k in by_variant]:
        row = aggregate(by_variant[key], data.groups, data.pair_groups, plan.n_boot)
        row["label"] = {"base": "base (web-like CLIP)",
                        "oracle": f"oracle: supervised image tower + head, {plan.oracle_epochs} epochs",
                        "oracle_long": f"oracle: supervised image tower + head, {plan.oracle_long_epochs} epochs"}.get(
            key, VARIANTS[key].label if key in VARIANTS else key)
        rows[key] = row
    # the bound is the stronger oracle (an optimistic bound makes the fraction harder to meet, not easier)
    oracles = [k for k in ("oracle", "oracle_long") if k in rows]
    bound = max(oracles, key=lambda k: rows[k]["twin_acc"]) if oracles else None
    if bound:
        rows[bound]["label"] += " (the bound)"
    for key, row in rows.items():
        if bound and key not in oracles:
            row["twin_frac_of_oracle"] = 100 * row["twin_acc"] / rows[bound]["twin_acc"]
    table = pd.DataFrame([{"variant": k, **{c: v for c, v in r.items() if c not in ("pair_correct", "pair_n")}}
                          for k, r in rows.items()])
    table.to_csv(out / "results.csv", index=False)
    md = ["| variant | seeds | twin accuracy | twin group score | N-way concept acc@1 | general attribute acc@1 "
          "| twin acc / oracle | twin acc per seed |", "|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, r in rows.items():
        frac = f"{r['twin_frac_of_oracle']:.0f}%" if "twin_frac_of_oracle" in r else "-"
        md.append(f"| {r['label']} | {r['seeds']} | {_ci(r, 'twin_acc')} | {_ci(r, 'twin_group_score')} | "
                  f"{_ci(r, 'concept_acc1')} | {_ci(r, 'attr_acc')} | {frac} | {r['twin_acc_per_seed']} |")
    (out / "results.md").write_text("\n".join(md) + "\n")
    # per pair: pairwise twin accuracy of each main variant vs the oracle
    pairs = [f"{a} / {b}" for a, b in data.twin.pairs]
    ptab = pd.DataFrame({"pair": pairs})
    for key in ([bound] if bound else []) + ["cultureclip", "plain", "lora_r4"]:
        if key in rows:
            ptab["oracle" if key == bound else key] = (100 * np.array(rows[key]["pair_correct"])
                                                       / np.maximum(1, np.array(rows[key]["pair_n"])))
    if "oracle" in ptab and "cultureclip" in ptab:
        ptab["cultureclip_frac_of_oracle"] = 100 * ptab["cultureclip"] / ptab["oracle"].replace(0, np.nan)
    ptab.to_csv(out / "pairs.csv", index=False)
    (out / "pairs.md").write_text(_markdown(ptab) + "\n")
    points = pareto_points(recs, rows)
    pd.DataFrame(points).to_csv(out / "pareto.csv", index=False)
    fig = pareto_figure(points)
    from eval_suite.figures import FigureExportError, write_figure

    write_figure(fig, out / "pareto.html")
    try:
        write_figure(fig, out / "pareto.png")
    except FigureExportError as e:
        logger.warning("PNG skipped: %s", e)
    cc_wise: dict[float, dict] = {}
    for rec in recs.values():
        if rec.get("variant") == "cultureclip":
            for alpha, sm in rec.get("wise", {}).items():
                cc_wise.setdefault(float(alpha), []).append(sm)
    cc_wise = {a: {k: float(np.mean([x[k] for x in v])) for k in ("twin_acc", "attr_acc")} for a, v in cc_wise.items()}
    summary = {"rows": {k: {c: v for c, v in r.items() if c not in ("pair_correct", "pair_n")} for k, r in rows.items()},
               "targets": targets(rows, cc_wise), "n_runs": len(recs)}
    _write_json(out / "summary.json", summary)
    return summary


def _markdown(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.tolist()) + " |")
    return "\n".join(lines)


def pareto_points(recs: dict[str, dict], rows: dict[str, dict]) -> list[dict]:
    """(attribute acc, twin acc) per variant (seed mean) and per WiSE-FT alpha (seed mean)."""
    pts = []
    for key, r in rows.items():
        if key.startswith("oracle") or "attr_acc" not in r:
            continue
        fam = "base" if key == "base" else VARIANTS[key].family if key in VARIANTS else "twin-aware"
        pts.append({"name": key, "label": r["label"], "family": fam, "attr_acc": r["attr_acc"], "twin_acc": r["twin_acc"],
                    "kind": "variant"})
    wise: dict[tuple[str, str], list[dict]] = {}
    for rec in recs.values():
        for alpha, s in rec.get("wise", {}).items():
            wise.setdefault((rec["variant"], alpha), []).append(s)
    for (variant, alpha), ss in sorted(wise.items()):
        pts.append({"name": f"{variant} WiSE-FT a={alpha}", "label": f"{variant} WiSE-FT alpha {alpha}",
                    "family": VARIANTS[variant].family, "attr_acc": float(np.mean([s["attr_acc"] for s in ss])),
                    "twin_acc": float(np.mean([s["twin_acc"] for s in ss])), "kind": "wise"})
    return pts


def frontier(points: list[dict]) -> list[dict]:
    """The non-dominated points (higher attribute AND twin accuracy are better), by attribute acc."""
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
        fam_pts = [p for p in points if p["family"] == fam] + base
        if len(fam_pts) <= len(base):
            continue
        f = frontier(fam_pts)
        fig.add_trace(go.Scatter(x=[p["attr_acc"] for p in f], y=[p["twin_acc"] for p in f], mode="lines",
                                 line=dict(color=colors[fam], dash="dot" if fam == "plain" else "solid"),
                                 name=f"frontier: {fam} (+ base)"))
        own = [p for p in fam_pts if p["family"] == fam]
        fig.add_trace(go.Scatter(x=[p["attr_acc"] for p in own], y=[p["twin_acc"] for p in own], mode="markers+text",
                                 text=[p["name"] for p in own], textposition="top center", textfont=dict(size=9),
                                 marker=dict(color=colors[fam], size=9, symbol=["circle" if p["kind"] == "variant" else
                                                                                 "diamond-open" for p in own]),
                                 name=fam))
    for p in base:
        fig.add_trace(go.Scatter(x=[p["attr_acc"]], y=[p["twin_acc"]], mode="markers+text", text=["base"],
                                 textposition="bottom center", marker=dict(color="black", size=11, symbol="square"),
                                 name="base"))
    cc = [p for p in points if p["name"] == "cultureclip"]
    if cc:
        fig.add_trace(go.Scatter(x=[cc[0]["attr_acc"]], y=[cc[0]["twin_acc"]], mode="markers",
                                 marker=dict(color="#d62728", size=20, symbol="star"), name="CultureCLIP (README)"))
    fig.update_layout(title="Offline twin world: twin accuracy vs general attribute accuracy (seed means)",
                      xaxis_title="general attribute accuracy (%)", yaxis_title="twin accuracy (%)",
                      width=900, height=620, template="plotly_white")
    return fig


def full_ft_attr_at(twin: float, base: dict, tuned: dict, wise: dict[float, dict]) -> float | None:
    """General attribute accuracy of full fine-tuning at a given twin accuracy: linear interpolation
    along the WiSE-FT path base (alpha 0) -> alphas -> the tuned model (alpha 1); None outside it."""
    path = [(0.0, base["twin_acc"], base["attr_acc"])] + sorted(
        (float(a), w["twin_acc"], w["attr_acc"]) for a, w in wise.items()) + [(1.0, tuned["twin_acc"], tuned["attr_acc"])]
    for (_, t0, a0), (_, t1, a1) in zip(path, path[1:]):
        if min(t0, t1) <= twin <= max(t0, t1) and t0 != t1:
            return a0 + (a1 - a0) * (twin - t0) / (t1 - t0)
    return None


def wise_path(base: dict, tuned: dict, wise: dict[float, dict]) -> list[tuple[float, float, float]]:
    """(alpha, twin_acc, attr_acc) from the base (alpha 0) through the WiSE-FT points to the tuned model."""
    return [(0.0, base["twin_acc"], base["attr_acc"])] + sorted(
        (float(a), w["twin_acc"], w["attr_acc"]) for a, w in wise.items()) + [(1.0, tuned["twin_acc"], tuned["attr_acc"])]


def best_twin_within(attr_floor: float, path: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """The highest twin accuracy on the piecewise-linear WiSE-FT path whose attribute accuracy is at
    least `attr_floor`; returns (alpha, twin_acc) or None."""
    best = None
    for (al0, t0, a0), (al1, t1, a1) in zip(path, path[1:]):
        cands = [(al0, t0, a0), (al1, t1, a1)]
        if (a0 - attr_floor) * (a1 - attr_floor) < 0:  # the floor is crossed inside this segment
            f = (attr_floor - a0) / (a1 - a0)
            cands.append((al0 + f * (al1 - al0), t0 + f * (t1 - t0), attr_floor))
        for al, t, a in cands:
            if a >= attr_floor - 1e-9 and (best is None or t > best[1]):
                best = (al, t)
    return best


def targets(rows: dict[str, dict], wise: dict[float, dict] | None = None) -> list[dict]:
    """The issue's targets, measured: met or missed with the gap. `wise`: CultureCLIP's WiSE-FT
    points (alpha -> twin_acc / attr_acc), for LoRA vs full fine-tuning at equal twin accuracy."""
    out = []
    oracles = [rows[k] for k in ("oracle", "oracle_long") if k in rows]
    oracle = max(oracles, key=lambda r: r["twin_acc"]) if oracles else None
    cc, base = rows.get("cultureclip"), rows.get("base")
    if cc and oracle:
        frac = cc["twin_acc"] / oracle["twin_acc"] * 100
        out.append({"target": "CultureCLIP twin accuracy >= 90% of the oracle's", "value": round(frac, 1),
                    "met": frac >= 90, "gap": round(90 - frac, 1)})
    if cc and base and "attr_acc" in cc:
        drop = base["attr_acc"] - cc["attr_acc"]
        out.append({"target": "general attribute accuracy within 1 point of the base", "value": round(-drop, 1),
                    "met": drop <= 1, "gap": round(drop - 1, 1)})
        if oracle and wise:
            pick = best_twin_within(base["attr_acc"] - 1, wise_path(base, cc, wise))
            if pick:
                frac = 100 * pick[1] / oracle["twin_acc"]
                out.append({"target": "both at one point: attribute acc within 1 of the base AND twin acc >= 90% of "
                                      "the oracle's (best WiSE-FT alpha, interpolated)",
                            "value": f"alpha {pick[0]:.2f}: twin {pick[1]:.1f} = {frac:.0f}% of the oracle",
                            "met": frac >= 90, "gap": round(90 - frac, 1)})
    if cc:
        for k in ("plain", "batching", "negatives"):
            if k in rows:
                sep = cc["twin_group_score_lo"] > rows[k]["twin_group_score_hi"]
                out.append({"target": f"CultureCLIP above '{k}' on twin group score, intervals not overlapping",
                            "value": round(cc["twin_group_score"] - rows[k]["twin_group_score"], 1), "met": bool(sep),
                            "gap": round(rows[k]["twin_group_score_hi"] - cc["twin_group_score_lo"], 1)})
    if "lora_r4" in rows and "cultureclip" in rows and "attr_acc" in rows["lora_r4"] and base:
        lo = rows["lora_r4"]
        full = full_ft_attr_at(lo["twin_acc"], base, rows["cultureclip"], wise or {})
        if full is None:
            out.append({"target": "LoRA r=4 forgets less than full FT at equal twin accuracy",
                        "value": f"LoRA twin {lo['twin_acc']:.1f} is outside the full-FT WiSE-FT path", "met": None,
                        "gap": None})
        else:
            out.append({"target": "LoRA r=4 forgets less than full FT at equal twin accuracy",
                        "value": f"at twin {lo['twin_acc']:.1f}: LoRA attribute acc {lo['attr_acc']:.1f}, full FT "
                                 f"(WiSE-FT path, interpolated) {full:.1f}", "met": lo["attr_acc"] > full,
                        "gap": round(full - lo["attr_acc"], 1)})
    return out


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def jobs_for(plan: Plan, out: Path, inputs: WorldInputs) -> list[Job]:
    jobs = [Job("base", "base", 0, str(out), inputs, plan.preset, None)]
    runs = plan.runs()
    oracle = [Job("oracle", "oracle", s, str(out), inputs, plan.preset, plan.oracle_epochs) for s in plan.oracle_seeds]
    oracle += [Job("oracle", "oracle_long", s, str(out), inputs, plan.preset, plan.oracle_long_epochs)
               for s in plan.oracle_seeds if plan.oracle_long_epochs]
    for i, (name, seed) in enumerate(runs):
        # WiSE-FT points from the first seed only (each costs an evaluation)
        first = plan.seeds[name][0]
        jobs.append(Job("finetune", name, seed, str(out), inputs, plan.preset, plan.finetune_epochs,
                        tuple(plan.wise_alphas) if name in plan.wise_for and seed == first else ()))
        if i == len(MAIN) - 1 or (i == len(runs) - 1 and oracle):  # the oracle right after seed 0 of the main four
            jobs.extend(oracle)
            oracle = []
    return jobs


def run_study(out: Path, plan: Plan, world_dir: Path, workers: int = 2, progress: bool = False) -> dict[str, Any]:
    """Build (or reuse) the world's inputs, run every job not yet done, write the report."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    inputs = world_inputs(world_dir, plan.preset, 0, progress)
    _write_json(out / "inputs.json", dataclasses.asdict(inputs))
    _write_json(out / "plan.json", dataclasses.asdict(plan))
    logger.info("world inputs ready in %.0fs: %s", time.time() - t0, inputs)
    jobs = [j for j in jobs_for(plan, out, inputs)
            if not (out / "runs" / run_name(j.kind, j.variant, j.seed) / "record.json").is_file()]
    logger.info("%d job(s) to run with %d worker(s)", len(jobs), workers)
    if workers <= 1:
        for j in jobs:
            run_job(j)
    elif jobs:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
            futures = {ex.submit(run_job, j): j for j in jobs}
            for f in as_completed(futures):
                try:
                    logger.info("finished %s (%.0fs since start)", f.result(), time.time() - t0)
                except Exception:  # noqa: BLE001 - one failed run must not lose the others
                    j = futures[f]
                    logger.exception("run %s seed %d failed", j.variant, j.seed)
    summary = build_report(out, inputs, plan)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    _write_json(out / "summary.json", summary)
    return summary


def _worker_init() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("world").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m world.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="default artifacts/world-study (quick: artifacts/world-study-quick)")
    ap.add_argument("--world", default=None, help="world build folder to reuse/build (default artifacts/world; "
                                                  "quick: <out>/world)")
    ap.add_argument("--quick", action="store_true", help="1 seed, smoke world, 3 variants, few epochs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("world", "synth", "cultureclip"):
        logging.getLogger(name).setLevel(logging.INFO)
    plan = quick_plan() if args.quick else full_plan()
    out = Path(args.out or ROOT / "artifacts" / ("world-study-quick" if args.quick else "world-study"))
    world_dir = Path(args.world or (out / "world" if args.quick else ROOT / "artifacts" / "world"))
    try:
        if args.report_only:
            summary = build_report(out, None, plan)
        else:
            summary = run_study(out, plan, world_dir, args.workers)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"world study: {e}", file=sys.stderr)
        return 2
    print((out / "results.md").read_text())
    print(json.dumps(summary["targets"], indent=2))
    print(f"-> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
