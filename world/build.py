"""Build the bundled offline cultural twin world end to end, deterministically from a seed.

    python -m world.build [--out artifacts/world] [--preset full|smoke] [--seed 0] [--force]

Steps (each cached: a step whose preset fields and input content did not change is skipped on rerun,
wherever the world folder now lies):
1. pretrain data: "web-like" data for a base CLIP: random culture-free flag designs with generic
   appearance captions, plus renders of the world's real flags captioned like alt-text: the appearance
   ("a flag with three vertical stripes, blue, yellow and red") or a name that the web attaches to
   that look, drawn from the flag's look-alike group (so, like web CLIP, the base links a name to a
   look but cannot tell twins apart);
2. base: a tiny CLIP pretrained from scratch on it with `cultureclip.train`;
3. CulTwin world dataset: `synth.run` with template captions, the procedural `WorldRenderer`, the
   filters (reference CLIP = the base) and export (held-out test renders);
4. CultureCLIP: the base fine-tuned on the CulTwin train split with the twin-aware loss, plus ablations
   (no twin negatives, concept term only, caption term only, LoRA);
5. evaluation with `eval_suite` (twin accuracy, N-way concept accuracy, general attribute accuracy on
   held-out generic designs), then tables and figures.
`world.study` asks for the inputs of steps 1-3 only (``inputs_only``), plus its general probe: 16,000
more held-out generic designs (step ``probe``), split by the study into val and test parts, and its
second test domain (step ``domain``, `world.domain`: the concepts and generic designs drawn another way).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cultureclip.config import load_config, validate_config
from cultureclip.fileio import atomic_write_bytes, atomic_write_text, move_path, remove_path
from cultureclip.steps import Marker, content_fingerprint, done, fingerprint, write_marker
from cultureclip.train import TrainConfig, train
from eval_suite.run import EvalConfig, run_sweep
from eval_suite.tables import load_frame, summary_table, to_markdown, write_table
from synth.run import SynthConfig
from synth.run import run as synth_run
from synth.world import CATALOG_PATH, SYNTH_PRESET
from synth.world import specs as S
from synth.world.render import WorldRenderer, generic_sample
from synth.world.shift import SHIFT_VERSION
from world.domain import build_domain
from world.rows import manifest_row, world_concepts, write_manifest

logger = logging.getLogger("world.build")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Preset:
    size: int = 48
    generic_train: int = 5000
    flag_renders: int = 30  # per concept, pretraining
    attribute_test: int = 600
    probe_images: int = 16000  # world.study's general probe (val and test parts), built only for the study
    domain_images: int = 20  # per concept, world.study's second test domain (world.domain), built only for it
    domain_probe: int = 4000  # culture-free designs of the second domain (its general probe)
    captions: int = 10
    images_per_caption: int = 2
    difficulty: float = 0.5
    pretrain_epochs: int = 5
    pretrain_batch: int = 128
    pretrain_lr: float = 2e-3
    finetune_epochs: int = 5
    finetune_batch: int = 32
    finetune_lr: float = 3e-4
    replay_ratio: float = 0.5  # generic pretraining rows mixed into fine-tuning (keeps general ability)
    w_keep: float = 0.0
    lora_lr: float = 2e-3
    arch: str = "CultureCLIP-World"
    ablations: list[str] = field(default_factory=lambda: ["no_twin_negatives", "concept_only", "caption_only", "lora"])
    flags: list[str] | None = None  # restrict to these concept ids (+ twins)


PRESETS = {
    "full": Preset(),
    "smoke": Preset(generic_train=1000, flag_renders=12, attribute_test=200, probe_images=400, domain_images=12,
                    domain_probe=300, captions=6, images_per_caption=3,
                    pretrain_epochs=4, finetune_epochs=16, ablations=[], replay_ratio=0.5,
                    flags=["flag_chad", "flag_romania", "flag_indonesia", "flag_monaco", "flag_norway",
                           "flag_iceland", "flag_senegal", "flag_mali", "flag_ireland", "flag_cote_divoire"]),
}


MARKER = "DONE.json"  # a step folder's `cultureclip.steps` done-marker


def _cached(folder: Path, settings: dict, force: bool) -> Marker | None:
    """The step's done-marker when it holds the fingerprint of `settings` (a marker of an older build
    with the same settings is upgraded in place), else None."""
    return None if force else done(folder / MARKER, fingerprint(settings))


def _mark(folder: Path, settings: dict, produced: dict) -> None:
    write_marker(folder / MARKER, fingerprint(settings), produced, settings)


def _relative(result: Any, out: Path) -> Any:
    """A step's result as stored in its marker: a path under `out` relative to it (the world can move)."""
    if isinstance(result, (str, Path)):  # a relative path is relative to the working folder, like a relative `out`
        rel = os.path.relpath(os.path.abspath(result), os.path.abspath(out))
        if not rel.startswith(".."):
            return rel
    return result


def _resolve(stored: Any, out: Path) -> Any:
    return str(out / stored) if isinstance(stored, str) and not Path(stored).is_absolute() else stored


def run_step(name: str, folder: Path, fn, settings: dict, out: Path, force: bool = False,
             timings: dict | None = None, clear: bool = True) -> Any:
    """Run one cached build step: skipped when `folder/DONE.json` holds the fingerprint of `settings`
    (preset fields and the *content* fingerprints of its inputs: no absolute path), else `folder` is
    cleared (`clear`; a symlinked folder is unlinked, its target untouched) and `fn()` runs. Paths in
    the stored result are relative to `out`, so a moved or copied world reuses every step."""
    marker = _cached(folder, settings, force)
    if marker is not None:
        logger.info("%s: cached (%s)", name, folder.name)
        return _resolve(marker.produced.get("result"), out)
    t0 = time.time()
    if clear or folder.is_symlink():
        remove_path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = fn()
    seconds = round(time.time() - t0, 1)
    if timings is not None:
        timings[name] = seconds
    _mark(folder, settings, {"result": _relative(result, out), "seconds": seconds})
    return result


# the preset fields each step depends on (a change reruns that step and, through content fingerprints,
# whatever reads its output; nothing else)
STEP_FIELDS = {
    "pretrain_data": ("size", "generic_train", "flag_renders", "difficulty", "flags"),
    "attributes": ("size", "attribute_test", "difficulty"),
    "probe": ("size", "probe_images", "difficulty"),
    "domain": ("size", "domain_images", "domain_probe", "flags"),
    "base": ("arch", "pretrain_epochs", "pretrain_batch", "pretrain_lr"),
    "dataset": ("size", "captions", "images_per_caption", "difficulty", "flags"),
    "finetune": ("arch", "finetune_epochs", "finetune_batch", "finetune_lr", "replay_ratio", "w_keep", "lora_lr"),
    "eval": (),
}


def step_settings(step: str, preset: "Preset", seed: int, deps: dict | None = None) -> dict:
    kind = "finetune" if step.startswith("finetune_") else step
    return {"step": step, "seed": seed, "preset": {k: getattr(preset, k) for k in STEP_FIELDS[kind]},
            "deps": deps or {}}


# --------------------------------------------------------------------------------------------------
# Step 1: pretraining data (and the held-out generic attribute test)
# --------------------------------------------------------------------------------------------------


def build_pretrain_data(out: Path, preset: Preset, seed: int, progress: bool = True) -> Path:
    import numpy as np
    from tqdm.auto import tqdm

    (out / "images").mkdir(parents=True, exist_ok=True)
    concepts = world_concepts(preset)
    rng = np.random.default_rng([seed, 1])
    renderer = WorldRenderer(difficulty=preset.difficulty)
    rows = []
    n_total = preset.generic_train + preset.flag_renders * len(concepts)
    bar = tqdm(total=n_total, desc="pretrain data", disable=not progress, dynamic_ncols=True)
    for i in range(preset.generic_train):
        img, cap = generic_sample(seed * 1_000_003 + i, preset.size, preset.size, preset.difficulty)
        rel = f"images/generic_{i:06d}.png"
        img.save(out / rel)
        cid = "cap_" + hashlib.sha1(cap.encode()).hexdigest()[:12]  # same caption = same positive
        rows.append(manifest_row(f"g{i}", rel, cid, cap, cap, "train", out, {"model": "generic_sample", "seed": i}))
        bar.update(1)
    for cid in sorted(concepts):
        c = concepts[cid]
        group = [cid] + [t for t in c.twin_ids if t in concepts]
        appearance = S.SPECS[cid].appearance
        for k in range(preset.flag_renders):
            s = int(rng.integers(2**31))
            img = renderer.render(cid, s, preset.size, preset.size)
            rel = f"images/{cid}_{k:03d}.png"
            img.save(out / rel)
            said = concepts[group[int(rng.integers(len(group)))]].culture_name  # the web's loose naming
            r = rng.random()
            if r < 0.4:
                cap = appearance
            elif r < 0.8:
                cap = f"the flag of {said}"
            else:
                cap = f"{appearance}, the flag of {said}"
            pid = "cap_" + hashlib.sha1(cap.encode()).hexdigest()[:12]
            rows.append(manifest_row(f"{cid}-{k}", rel, pid, cap, cap, "train", out, {"model": "WorldRenderer", "seed": s}))
            bar.update(1)
    bar.close()
    write_manifest(rows, out)
    return out


def build_attribute_test(out: Path, preset: Preset, seed: int, n: int | None = None, offset: int = 10**9) -> Path:
    """Held-out generic designs (new seeds) as a CulTwin-format set: concept = appearance caption.
    n/offset: another set of the same kind (the study's probe: preset.probe_images from seed offset 2e9,
    disjoint from the pretraining data and the attribute test)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(preset.attribute_test if n is None else n):
        img, cap = generic_sample(offset + seed * 1_000_003 + i, preset.size, preset.size, preset.difficulty)
        rel = f"images/attr_{i:05d}.png"
        img.save(out / rel)
        cid = "cap_" + hashlib.sha1(cap.encode()).hexdigest()[:12]
        rows.append(manifest_row(f"a{i}", rel, cid, cap, cap, "test", out, {"model": "generic_sample", "seed": i}, name=cap))
    write_manifest(rows, out)
    return out


# --------------------------------------------------------------------------------------------------
# Steps 2 and 4: training
# --------------------------------------------------------------------------------------------------


def train_config(settings: dict[str, Any], progress: bool):
    """A typed `TrainConfig` from section -> {field: value} (e.g. {"optim": {"lr": 1e-3}, "seed": 0});
    choices are checked as when a YAML loads."""
    cfg = TrainConfig(progress=progress)
    for key, value in settings.items():
        if isinstance(value, dict):
            setattr(cfg, key, dataclasses.replace(getattr(cfg, key), **value))
        else:
            setattr(cfg, key, value)
    validate_config(cfg)
    return cfg


def merge_settings(*parts: dict[str, Any]) -> dict[str, Any]:
    """Nested settings dicts merged left to right (sections merged key by key, other values replaced)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _train(settings: dict[str, Any], progress: bool) -> dict:
    return train(train_config(settings, progress))


def pretrain_base(data: Path, run_dir: Path, preset: Preset, seed: int, progress: bool) -> Path:
    s = _train({
        "model": {"spec": f"open_clip:{preset.arch}"}, "lora": {"enabled": False},
        "data": {"dataset": str(data), "val_split": "", "batch_size": preset.pretrain_batch, "twin_batching": False,
                 "check_images": False, "cache_images": True},
        "optim": {"lr": preset.pretrain_lr, "epochs": preset.pretrain_epochs, "warmup_steps": 50, "weight_decay": 0.1},
        "loss": {"w_cap": 1.0, "w_con": 0.0}, "out_dir": str(run_dir), "seed": seed, "mixed_precision": "no",
        "keep_last": 1, "log_every": 50,
    }, progress)
    return Path(s["export"])


FINETUNES: dict[str, dict[str, Any]] = {
    "cultureclip": {},
    # two separate switches: twin negatives in the loss, twin-aware batching in the sampler
    "no_twin_negatives": {"loss": {"twin_negatives": False}},
    "no_twin_batching": {"data": {"twin_batching": False}},
    "concept_only": {"loss": {"w_cap": 0.0, "w_con": 1.0}},
    "caption_only": {"loss": {"w_cap": 1.0, "w_con": 0.0}},
    "lora": {"lora": {"enabled": True, "r": 8, "alpha": 16.0, "dropout": 0.0}},
}


def finetune_settings(name: str, base: Path, dataset: Path, run_dir: Path, preset: Preset, seed: int,
                      replay: Path | None = None) -> dict[str, Any]:
    """The world's fine-tuning recipe for variant `name` (section -> fields, for `train_config`)."""
    extra: dict[str, Any] = {}
    if replay is not None and preset.replay_ratio > 0:
        extra = merge_settings(extra, {"data": {"replay_dataset": str(replay), "replay_ratio": preset.replay_ratio}})
    if preset.w_keep > 0:
        extra = merge_settings(extra, {"loss": {"w_keep": preset.w_keep}})
    lr = preset.lora_lr if name == "lora" else preset.finetune_lr
    return merge_settings({
        "model": {"spec": str(base)}, "lora": {"enabled": False},
        "data": {"dataset": str(dataset), "batch_size": preset.finetune_batch, "check_images": False,
                 "cache_images": True},
        "optim": {"lr": lr, "epochs": preset.finetune_epochs, "warmup_steps": 20, "weight_decay": 0.0},
        "loss": {"w_cap": 0.7, "w_con": 0.3}, "out_dir": str(run_dir), "seed": seed, "mixed_precision": "no",
        "keep_last": 1, "log_every": 20,
    }, FINETUNES[name], extra)


def finetune(name: str, base: Path, dataset: Path, run_dir: Path, preset: Preset, seed: int, progress: bool,
             replay: Path | None = None) -> Path:
    s = _train(finetune_settings(name, base, dataset, run_dir, preset, seed, replay), progress)
    return Path(s["export"])


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _copy_catalog(dataset: Path) -> None:
    """Ship the world's catalog inside the dataset (dataset/catalog/), where the demo looks for concept facts."""
    atomic_write_bytes(dataset / "catalog" / "world.yaml", CATALOG_PATH.read_bytes())


def _publish(exported: Path, dest: Path) -> str:
    """Move a run's exported model folder to models/<name> (its folder name becomes the results tag)."""
    return str(move_path(exported, dest))


def synth_config(out: Path, preset: Preset, reference: Path | None):
    """The world's typed `SynthConfig`: the `configs/synth/world.yaml` preset with this build's fields set
    (output folders, caption and image counts, image size, renderer difficulty, concepts, reference CLIP);
    choices are checked as when a YAML loads."""
    cfg = load_config(SynthConfig, SYNTH_PRESET)
    cfg = dataclasses.replace(
        cfg,
        out=str(out / "synth"),
        catalog=dataclasses.replace(cfg.catalog, concepts=list(preset.flags)) if preset.flags else cfg.catalog,
        captions=dataclasses.replace(cfg.captions, n=preset.captions),
        images=dataclasses.replace(cfg.images, per_caption=preset.images_per_caption, width=preset.size,
                                   height=preset.size),
        generator=dataclasses.replace(cfg.generator, kwargs={"difficulty": preset.difficulty}),
        filter=dataclasses.replace(cfg.filter, clip_model=str(reference)) if reference is not None else cfg.filter,
        export=dataclasses.replace(cfg.export, dir=str(out / "dataset")),
    )
    return validate_config(cfg)


def _finetune_job(job: tuple) -> tuple[str, float]:
    """One fine-tune in its own process (spawned): 1 torch thread, no progress bar."""
    import torch

    name, base, dataset, run_dir, preset, seed, replay, dest = job
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.time()
    remove_path(run_dir)
    path = _publish(finetune(name, Path(base), Path(dataset), Path(run_dir), preset, seed, False, Path(replay)), Path(dest))
    return path, round(time.time() - t0, 1)


def build(out: Path, preset_name: str = "full", seed: int = 0, force: bool = False, progress: bool = True,
          workers: int | None = None, inputs_only: bool = False) -> dict:
    """Build every artifact under `out`; returns a summary (paths, timings, headline numbers).

    Every step is keyed on the preset fields it uses and on the content of its inputs (`content_fingerprint`),
    never on an absolute path: a world moved, copied or reached through a symlink is reused as it is.
    inputs_only: stop after the inputs every fine-tune needs, plus the study's general probe and second
    test domain, and return their paths (``pretrain``, ``attributes``, ``probe``, ``base``, ``dataset``,
    ``domain``): what `world.study` builds on."""
    preset = PRESETS[preset_name]
    workers = workers or min(2, os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, folder: Path, fn, deps: dict | None = None, clear: bool = True):
        return run_step(name, folder, fn, step_settings(name, preset, seed, deps), out, force, timings, clear)

    pre = out / "pretrain"
    step("pretrain_data", pre, lambda: str(build_pretrain_data(pre, preset, seed, progress)))
    attr = out / "attributes"
    step("attributes", attr, lambda: str(build_attribute_test(attr, preset, seed)))
    base_run = out / "runs" / "base"
    base = Path(step("base", base_run,
                     lambda: _publish(pretrain_base(pre, base_run, preset, seed, progress), out / "models" / "base"),
                     {"data": content_fingerprint(pre / "manifest.parquet")}))
    models = {"base": base}

    def make_dataset():
        cfg = synth_config(out, preset, base)
        synth_run(cfg, ["captions", "images", "filter", "export"], overwrite=True)
        _copy_catalog(out / "dataset")
        return str(out / "dataset")

    dataset = Path(step("dataset", out / "synth_done", make_dataset, {"base": content_fingerprint(base)}, clear=False))
    if inputs_only:
        probe = out / "probe"
        step("probe", probe, lambda: str(build_attribute_test(probe, preset, seed, preset.probe_images, 2 * 10**9)))
        domain = out / "domain"  # its twin links come from the catalog: keyed on its content too
        step("domain", domain, lambda: str(build_domain(domain, preset, seed)),
             {"shift_version": SHIFT_VERSION, "catalog": content_fingerprint(CATALOG_PATH)})
        return {"pretrain": str(pre), "attributes": str(attr), "probe": str(probe), "base": str(base),
                "dataset": str(dataset), "domain": str(domain), "timings_s": timings}
    # fine-tunes: independent runs, 1 torch thread each (deterministic whatever the core count), run
    # `workers` at a time in separate processes (small models use 2 processes better than 2 threads)
    names = ["cultureclip"] + list(preset.ablations)
    deps = {"dataset": content_fingerprint(dataset / "manifest.parquet"), "base": content_fingerprint(base),
            "replay": content_fingerprint(pre / "manifest.parquet")}
    todo = []
    for name in names:
        st = step_settings(f"finetune_{name}", preset, seed, deps)
        run_dir = out / "runs" / name
        marker = _cached(run_dir, st, force)
        if marker is not None:
            models[name] = Path(_resolve(marker.produced["result"], out))
        else:
            todo.append((name, st, run_dir))
    if todo:
        t0 = time.time()
        jobs = [(n, str(base), str(dataset), str(r), preset, seed, str(pre), str(out / "models" / n)) for n, _, r in todo]
        workers = max(1, min(workers, len(jobs)))
        if workers == 1:
            done = [_finetune_job(j) for j in jobs]
        else:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                done = list(ex.map(_finetune_job, jobs))
        for (name, st, run_dir), (path, secs) in zip(todo, done):
            models[name] = Path(path)
            timings[f"finetune_{name}"] = secs
            _mark(run_dir, st, {"result": _relative(path, out), "seconds": secs})
        timings["finetunes_wall"] = round(time.time() - t0, 1)
        logger.info("fine-tunes done in %.0fs (%d process(es))", timings["finetunes_wall"], workers)
    results = out / "results"

    def evaluate():
        specs = {str(p): n for n, p in models.items()}
        run_sweep(EvalConfig(
            models=list(specs), benchmarks=["cultwin", "world_attributes"],
            roots={"cultwin": str(dataset), "world_attributes": str(attr)},
            names=specs, roles={p: "base" if n == "base" else "tuned" for p, n in specs.items()},
            out=str(results), batch_size=128, num_workers=0, cache_dir=str(out / "cache" / "embeddings"),
            progress=progress))
        return str(results)

    step("eval", out / "eval_done", evaluate,
         {"models": {m: content_fingerprint(p) for m, p in models.items()}, "dataset": content_fingerprint(dataset / "manifest.parquet"),
          "attributes": content_fingerprint(attr / "manifest.parquet")})
    report = write_report(out, results)
    summary = {"models": {k: str(v) for k, v in models.items()}, "dataset": str(dataset), "results": str(results),
               "report": str(report), "timings_s": timings}
    atomic_write_text(out / "world.json", json.dumps(summary, indent=2))
    return summary


HEADLINE = [("cultwin", "twin_acc", "twin accuracy"), ("cultwin", "twin_group_score", "twin group score"),
            ("cultwin", "concept_acc1", "N-way concept acc@1"), ("world_attributes", "concept_acc1", "general attribute acc@1")]


def headline_table(results: Path):
    """Model x headline metric (percent) from the results folder, base first."""
    import pandas as pd

    rows = {}
    for f in sorted(Path(results).glob("*.json")):
        r = json.loads(f.read_text())
        model = (r.get("model_identity") or {}).get("name")
        if not model:
            raise ValueError(f"{f.name} has no model_identity.name; re-run the evaluation (make offline-world)")
        for bench, metric, label in HEADLINE:
            if r["benchmark"] == bench and metric in r["metrics"] and r["metrics"][metric] is not None:
                rows.setdefault(model, {})[label] = 100 * r["metrics"][metric]
    order = ["base", "cultureclip", "no_twin_negatives", "concept_only", "caption_only", "lora"]
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df.reindex([m for m in order if m in df.index] + sorted(set(df.index) - set(order)))
    return df[[label for _, _, label in HEADLINE if label in df.columns]]


def write_report(out: Path, results: Path) -> Path:
    """Tables (Markdown/CSV) and figures for the README from the results folder."""
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    frame = load_frame(results)
    write_table(summary_table(frame), rep / "summary", formats=("csv", "md"))
    head = headline_table(results)
    head.index.name = "model"
    atomic_write_text(rep / "headline.md", to_markdown(head.reset_index()) + "\n")
    atomic_write_text(rep / "headline.csv", head.to_csv())
    try:
        from eval_suite.figures import benchmark_bars, write_figure

        fig = benchmark_bars(frame)
        write_figure(fig, rep / "world_bars.html")
        write_figure(fig, rep / "world_bars.png")
    except Exception as e:  # noqa: BLE001 - figures are optional extras for the report (PNG needs chromium)
        logger.warning("figure export skipped: %s", e)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m world.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "artifacts" / "world"))
    ap.add_argument("--preset", default="full", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild every step")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("synth", "cultureclip", "eval_suite"):
        logging.getLogger(name).setLevel(logging.INFO)
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()
    summary = build(Path(args.out), args.preset, args.seed, args.force, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"offline world built in {time.time() - t0:.0f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
