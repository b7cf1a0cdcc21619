"""`python -m synth.run`: build a CulTwin dataset, stage by stage, resumably.

    python -m synth.run --config configs/synth/smoke.yaml --stages captions,images,filter,export \
        [--out DIR] [--overwrite] [key=value ...]

Under ``accelerate launch`` (or any launcher that sets RANK/WORLD_SIZE) each process takes the shards
with ``index % WORLD_SIZE == RANK``; rank 0 also writes the shared outputs (generated catalog, export).
"""
from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from .engine import (ProcessInfo, atomic_write_text, fingerprint_of, iter_records, process_info, run_stage,
                     wait_for_done)

log = logging.getLogger(__name__)

STAGES = ("concepts", "twins", "captions", "images", "filter", "export")


# ----------------------------------------------------------------------------- config
@dataclass
class CatalogSection:
    paths: list[str] | None = None       # catalog YAML files/folders (default: the curated catalog)
    categories: list[str] | None = None  # keep only these categories
    concepts: list[str] | None = None    # keep only these concept ids
    limit: int | None = None             # keep the first N concepts (sorted by id) after the filters
    with_twins: bool = True              # add the twins of kept concepts so pairs stay whole
    include_generated: bool = False      # also caption <out>/generated/catalog.yaml (LLM concepts/twins)


@dataclass
class RunSection:
    concepts_per_shard: int = 8
    wait_timeout: float | None = None    # seconds to wait for other processes' shards (default 1 h with peers)
    progress: bool = True


@dataclass
class LLMSection:
    backend: Literal["template", "transformers", "openai"] = "template"
    model: str | None = None             # hub id / folder (transformers) or served model name (openai)
    device: str | None = None
    dtype: Literal["auto", "bf16", "bfloat16", "fp16", "float16", "fp32", "float32"] | None = None
    batch_size: int | None = None
    max_new_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    model_class: Literal["auto", "causal_lm", "image_text_to_text"] | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None


@dataclass
class ConceptsSection:
    cultures: list[str] = field(default_factory=list)   # ISO codes for the top-down grid
    categories: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)     # bottom-up: corpus page titles
    max_attempts: int = 3
    items_per_shard: int = 16


@dataclass
class TwinsSection:
    source: Literal["generated", "catalog", "all"] = "generated"  # which concepts get a proposed twin
    max_attempts: int = 3
    items_per_shard: int = 16


@dataclass
class CaptionsSection:
    n: int = 10
    max_words: int = 15
    max_attempts: int = 3
    require_culture: bool = False
    batch_size: int = 16


@dataclass
class GeneratorSection:
    kind: Literal["pattern", "diffusers", "python"] = "pattern"
    model: str | None = None
    device: str | None = None
    dtype: Literal["auto", "bf16", "fp16", "fp32"] | None = None
    steps: int | None = None
    guidance: float | None = None
    batch_size: int | None = None
    variant: str | None = None
    compile: bool | None = None
    pipeline_kwargs: dict | None = None
    target: str | None = None            # kind=python: "pkg.mod:Class"
    kwargs: dict | None = None


@dataclass
class ImagesSection:
    per_caption: int = 1
    width: int = 512
    height: int = 512
    negative_prompt: str | None = None
    batch_size: int = 8
    writer_threads: int = 2


@dataclass
class FilterSection:
    clip_model: str | None = None
    device: str = "auto"
    batch_size: int = 64
    min_clip_score: float | None = 0.20
    min_twin_margin: float | None = 0.0
    nsfw: bool = True
    nsfw_threshold: float = 0.5
    dedup_hamming: int | None = 4
    dedup_cosine: float | None = 0.97
    min_std: float | None = 2.0
    vlm_model: str | None = None
    vlm_question: str = "Does this image show {concept_name}? Answer yes or no."


@dataclass
class ExportSection:
    dir: str | None = None               # default <out>/dataset
    val: float = 0.05
    test: float = 0.05
    group_by: Literal["caption", "concept"] = "caption"
    holdout_twin_pairs: float = 0.0
    seed: str = "cultwin"
    title: str = "CulTwin dataset"


@dataclass
class SynthConfig:
    out: str = "runs/synth"
    catalog: CatalogSection = field(default_factory=CatalogSection)
    run: RunSection = field(default_factory=RunSection)
    llm: LLMSection = field(default_factory=LLMSection)
    concepts: ConceptsSection = field(default_factory=ConceptsSection)
    twins: TwinsSection = field(default_factory=TwinsSection)
    captions: CaptionsSection = field(default_factory=CaptionsSection)
    generator: GeneratorSection = field(default_factory=GeneratorSection)
    images: ImagesSection = field(default_factory=ImagesSection)
    filter: FilterSection = field(default_factory=FilterSection)
    export: ExportSection = field(default_factory=ExportSection)


# ----------------------------------------------------------------------------- concepts
def _concept_dicts(concepts: dict) -> list[dict]:
    """Catalog Concept objects -> dicts carrying the prompts the later stages need."""
    from .catalog import Catalog
    cat = Catalog(dict(concepts))
    out = []
    for c in concepts.values():
        d = c.to_dict()
        d["twin_ids"] = sorted(t.id for t in c.twins if t.id in concepts)
        d["concept_prompt"] = cat.concept_prompt(c.id)
        d["twin_prompts"] = [cat.concept_prompt(t) for t in d["twin_ids"]]
        out.append(d)
    return sorted(out, key=lambda d: d["id"])


@functools.lru_cache(maxsize=4)
def _curated(paths: tuple[str, ...]):
    """The curated catalog, loaded and validated once per process."""
    from .catalog import load_catalog
    return load_catalog(list(paths)) if paths else load_catalog()


def select_concepts(cfg: SynthConfig, generated: list[dict] | None = None) -> list[dict]:
    """The concepts to caption: the curated catalog filtered by cfg.catalog (+ generated ones when asked)."""
    from .catalog.schema import Twin, parse_concept
    c = cfg.catalog
    concepts = dict(_curated(tuple(c.paths or ())).concepts)
    keep = sorted(concepts)
    if c.categories:
        keep = [k for k in keep if concepts[k].category in set(c.categories)]
    if c.concepts:
        unknown = sorted(set(c.concepts) - set(concepts))
        if unknown:
            raise ValueError(f"catalog.concepts names unknown concept ids {unknown[:10]}; see "
                             "`python -m synth.catalog stats`")
        keep = [k for k in keep if k in set(c.concepts)]
    if c.limit is not None:
        keep = keep[: c.limit]
    if c.with_twins:
        keep = sorted(set(keep) | {t for k in keep for t in concepts[k].twin_ids if t in concepts})
    if generated:  # every generated concept of this run joins (the selection filters apply to the catalog)
        for raw in generated:
            con, problems = parse_concept({k: v for k, v in raw.items() if k not in ("twin_of", "item_id")},
                                          "generated")
            if con is None or con.id in concepts:
                continue
            concepts[con.id] = con
            keep.append(con.id)
        for raw in generated:  # reverse links live only in this run, never in the curated files
            src = raw.get("twin_of")
            if src and src["id"] in concepts and raw["id"] in concepts:
                s = concepts[src["id"]]
                if raw["id"] not in s.twin_ids:
                    concepts[s.id] = type(s)(**{**vars(s), "twins": [*s.twins, Twin(raw["id"], src["distinguishing"])]})
                    if s.id not in keep:
                        keep.append(s.id)
    if not keep:
        raise ValueError("the catalog selection is empty; loosen catalog.categories/concepts/limit")
    return _concept_dicts({k: concepts[k] for k in keep})


def load_generated(out: Path, stages: dict, fps: dict, timeout: float) -> list[dict]:
    """Generated concepts and twins of this run (waits for every shard of those stages)."""
    recs: list[dict] = []
    for name in ("concepts", "twins"):
        st = stages.get(name)
        if st is None or not (out / name / "fingerprint.json").exists():
            continue
        n = len(st.plan(None))
        wait_for_done(out, name, range(n), timeout, fps[name])
        recs += list(iter_records(out, name, n))
    seen: set[str] = set()
    uniq = []
    for r in recs:
        if r["id"] not in seen:
            seen.add(r["id"])
            uniq.append(r)
    return uniq


def write_generated_catalog(out: Path, generated: list[dict]) -> None:
    """<out>/generated/catalog.yaml in the catalog format (generated: true), for review before any merge."""
    import yaml
    gen_ids = {g["id"] for g in generated}
    by_id = {g["id"]: {k: v for k, v in g.items() if k not in ("twin_of", "item_id")} for g in generated}
    curated_links = []
    for g in generated:
        src = g.get("twin_of")
        if not src:
            continue
        if src["id"] in gen_ids:
            twins = by_id[src["id"]]["twins"]
            if g["id"] not in [t["id"] for t in twins]:
                twins.append({"id": g["id"], "distinguishing": src["distinguishing"]})
        else:
            curated_links.append({"concept": src["id"], "twin": g["id"], "distinguishing": src["distinguishing"]})
    text = ("# Generated by synth.run (LLM stages). NOT part of the curated catalog: review before moving any\n"
            "# entry into synth/catalog/data/. Load with load_catalog([...], include_generated=True).\n")
    text += yaml.safe_dump(list(by_id.values()), sort_keys=False, allow_unicode=True, width=110)
    atomic_write_text(out / "generated" / "catalog.yaml", text)
    atomic_write_text(out / "generated" / "curated_links.yaml",
                      "# Reverse twin links a curated concept would need (not applied to the curated files).\n"
                      + yaml.safe_dump(curated_links, sort_keys=False, allow_unicode=True, width=110))


# ----------------------------------------------------------------------------- building stages
def build_pipeline(cfg: SynthConfig, stages: list[str], out: Path, proc: ProcessInfo,
                   generator=None, backend=None, embedder=None, vlm=None,
                   overwrite: bool = False) -> tuple[dict, dict]:
    """Stage objects and their fingerprints (each chains its upstream's), for the requested stages.

    generator/backend/embedder/vlm: pass objects to use instead of building them from cfg (tests, notebooks).
    """
    from .generators import create_generator
    from .llm import create_backend
    from .stages.captions import CaptionStage
    from .stages.concepts import ConceptStage
    from .stages.export import ExportStage
    from .stages.filter import FilterConfig, FilterStage, TransformersVLMJudge
    from .stages.images import ImageStage
    from .stages.twins import TwinStage

    timeout = cfg.run.wait_timeout if cfg.run.wait_timeout is not None else (0.0 if proc.world_size == 1 else 3600.0)
    want = set(stages)
    llm_needed = want & {"concepts", "twins", "captions"}
    backend = backend or (create_backend(asdict(cfg.llm)) if llm_needed else None)
    objs: dict = {}
    fps: dict = {}
    curated_ids = {c["id"] for c in select_concepts(SynthConfig(catalog=CatalogSection(
        paths=cfg.catalog.paths, with_twins=False)))}
    gen_fp = None
    if "concepts" in want or (out / "concepts" / "fingerprint.json").exists():
        st = ConceptStage(backend or create_backend(asdict(cfg.llm)), cfg.concepts.cultures, cfg.concepts.categories,
                          cfg.concepts.titles, curated_ids, cfg.concepts.max_attempts, cfg.concepts.items_per_shard)
        objs["concepts"], fps["concepts"] = st, fingerprint_of({"concepts": st.settings()})
        gen_fp = fps["concepts"]
    if "twins" in want or ((out / "twins" / "fingerprint.json").exists() and "concepts" in objs):
        if cfg.twins.source not in ("generated", "catalog", "all"):
            raise ValueError(f"twins.source must be generated, catalog or all, got {cfg.twins.source!r}")
        sources: list[dict] = []
        if cfg.twins.source in ("generated", "all"):
            if "concepts" not in objs:
                raise ValueError("twins.source=generated needs the concepts stage (add it to --stages)")
            if "concepts" in want:
                run_stage(objs["concepts"], out, fps["concepts"], proc=proc, wait_timeout=timeout,
                          progress=cfg.run.progress, overwrite=overwrite)  # its output is this stage's input
                want.discard("concepts")
            sources += load_generated(out, {"concepts": objs["concepts"]}, fps, timeout)
        if cfg.twins.source in ("catalog", "all"):
            sources += select_concepts(cfg)
        st = TwinStage(backend or create_backend(asdict(cfg.llm)), sources, curated_ids | {s["id"] for s in sources},
                       cfg.twins.max_attempts, cfg.twins.items_per_shard)
        objs["twins"], fps["twins"] = st, fingerprint_of({"twins": st.settings(), "upstream": gen_fp})
        gen_fp = fingerprint_of([gen_fp, fps["twins"]])
    concepts = select_concepts(cfg)
    if cfg.catalog.include_generated:
        gen = load_generated(out, objs, fps, timeout) if objs else []
        concepts = select_concepts(cfg, gen)
    cap = CaptionStage(concepts, backend or create_backend({"backend": "template"}), cfg.captions.n,
                       cfg.captions.max_words, cfg.captions.max_attempts, cfg.run.concepts_per_shard,
                       cfg.captions.require_culture, cfg.captions.batch_size)
    n_shards = len(cap.plan(None))
    objs["captions"] = cap
    fps["captions"] = fingerprint_of({"captions": cap.settings(),
                                      "generated": gen_fp if cfg.catalog.include_generated else None})
    if want & {"images", "filter", "export"}:
        gen = generator or create_generator(asdict(cfg.generator))  # cheap: models load on first generate()
        im = ImageStage(gen, cfg.images.per_caption, cfg.images.width, cfg.images.height, cfg.images.negative_prompt,
                        cfg.images.batch_size, cfg.images.writer_threads)
        im.n_shards = n_shards
        objs["images"], fps["images"] = im, fingerprint_of({"images": im.settings(), "upstream": fps["captions"]})
        fc = FilterConfig(**{k: v for k, v in asdict(cfg.filter).items()})
        if vlm is None and cfg.filter.vlm_model:
            vlm = TransformersVLMJudge(cfg.filter.vlm_model)
        fl = FilterStage(fc, vlm=vlm, embedder=embedder)
        fl.n_shards = n_shards
        objs["filter"], fps["filter"] = fl, fingerprint_of({"filter": fl.settings(), "upstream": fps["images"]})
        ex = ExportStage(cfg.export.dir, cfg.export.val, cfg.export.test, cfg.export.group_by,
                         cfg.export.holdout_twin_pairs, cfg.export.seed, cfg.export.title,
                         run_info={"captions": cap.settings()["backend"], "n_captions": cfg.captions.n,
                                   "images": im.settings(), "filter": fl.settings(), "concepts": len(concepts)})
        ex.n_shards = n_shards
        objs["export"], fps["export"] = ex, fingerprint_of({"export": ex.settings(), "upstream": fps["filter"]})
    return objs, fps


# ----------------------------------------------------------------------------- entry point
def run(cfg: SynthConfig, stages: list[str], overwrite: bool = False, proc: ProcessInfo | None = None,
        **objects) -> dict:
    """Run the requested stages in pipeline order; returns {stage: StageSummary}."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    proc = proc or process_info()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timeout = cfg.run.wait_timeout if cfg.run.wait_timeout is not None else (0.0 if proc.world_size == 1 else 3600.0)
    t0 = time.monotonic()
    summaries = {}
    first = [s for s in STAGES if s in stages and s in ("concepts", "twins")]
    rest = [s for s in STAGES if s in stages and s not in first]
    for group in (first, rest):  # captions are planned only after the generated concepts exist
        if not group:
            continue
        objs, fps = build_pipeline(cfg, group, out, proc, overwrite=overwrite, **objects)
        for name in group:
            up = objs[name].upstream
            summaries[name] = run_stage(objs[name], out, fps[name], proc=proc, overwrite=overwrite,
                                        wait_timeout=timeout, progress=cfg.run.progress,
                                        expected={up: fps[up]} if up else {})
        if group is first and proc.is_main:
            write_generated_catalog(out, load_generated(out, objs, fps, timeout))
    log.info("done in %.1fs: %s", time.monotonic() - t0, ", ".join(
        f"{k}={v.records}" for k, v in summaries.items()))
    return summaries


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m synth.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML preset, e.g. configs/synth/smoke.yaml")
    p.add_argument("--stages", default="captions,images,filter,export",
                   help=f"comma-separated, from {','.join(STAGES)}")
    p.add_argument("--out", help="run folder (overrides the config's `out`)")
    p.add_argument("--overwrite", action="store_true", help="recompute stages whose settings changed")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. captions.n=5")
    return p.parse_args(argv), []


def main(argv: list[str] | None = None) -> int:
    from cultureclip.config import load_config
    args, _ = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    cfg = load_config(SynthConfig, args.config, overrides)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    run(cfg, stages, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
