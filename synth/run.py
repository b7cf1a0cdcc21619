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
from typing import Any, Literal

from cultureclip.config import ConfigError, find_preset, load_config, validate_config
from cultureclip.steps import fingerprint

from .catalog import Catalog, load_catalog
from .catalog.schema import Twin, parse_concept
from .engine import ProcessInfo, atomic_write_text, iter_records, process_info, run_stage, wait_for_done
from .generators import create_generator
from .llm import create_backend
from .stages.captions import CaptionStage
from .stages.concepts import ConceptStage
from .stages.export import ExportStage
from .stages.filter import FilterConfig, FilterStage, TransformersVLMJudge
from .stages.images import ImageStage
from .stages.twins import TwinStage

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
    return load_catalog(list(paths)) if paths else load_catalog()


def select_concepts(cfg: SynthConfig, generated: list[dict] | None = None) -> list[dict]:
    """The concepts to caption: the curated catalog filtered by cfg.catalog (+ generated ones when asked)."""
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


def load_generated(out: Path, planned: dict[str, "PlannedStage"], timeout: float) -> list[dict]:
    """Generated concepts and twins of this run (waits for every shard of those stages)."""
    recs: list[dict] = []
    for name in ("concepts", "twins"):
        p = planned.get(name)
        if p is None or not (out / name / "fingerprint.json").exists():
            continue
        n = len(p.stage.plan(None))
        wait_for_done(out, name, range(n), timeout, p.fingerprint)
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


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlannedStage:
    """A stage to run and its fingerprint: its settings hashed with its upstream's fingerprint, so a changed
    setting anywhere upstream gives every stage below it another fingerprint.

    Planning only builds these (stage objects load their models on first use); it never runs a stage,
    writes a file or changes its inputs. ``run`` executes the plan."""

    name: str
    stage: Any
    fingerprint: str
    upstream: str | None = None
    upstream_fingerprint: str | None = None

    @property
    def expected(self) -> dict[str, str]:
        """The fingerprint this stage requires of the upstream shards it reads."""
        return {self.upstream: self.upstream_fingerprint} if self.upstream else {}


def _below(up: PlannedStage, name: str, stage: Any) -> PlannedStage:
    return PlannedStage(name, stage, fingerprint({name: stage.settings(), "upstream": up.fingerprint}),
                        up.name, up.fingerprint)


def plan_concepts(cfg: SynthConfig, backend, curated_ids: set[str]) -> PlannedStage:
    c = cfg.concepts
    st = ConceptStage(backend, c.cultures, c.categories, c.titles, curated_ids, c.max_attempts, c.items_per_shard)
    return PlannedStage("concepts", st, fingerprint({"concepts": st.settings()}))


def plan_twins(cfg: SynthConfig, backend, curated_ids: set[str], selection: list[dict], generated: list[dict],
               concepts: PlannedStage | None) -> PlannedStage:
    """The twins stage. selection: the catalog concepts (twins.source catalog/all); generated: the concepts
    stage's records (twins.source generated/all)."""
    sources: list[dict] = []
    if cfg.twins.source in ("generated", "all"):
        if concepts is None:
            raise ValueError("twins.source=generated needs the concepts stage (add it to --stages)")
        sources += generated
    if cfg.twins.source in ("catalog", "all"):
        sources += selection
    st = TwinStage(backend, sources, curated_ids | {s["id"] for s in sources}, cfg.twins.max_attempts,
                   cfg.twins.items_per_shard)
    return PlannedStage("twins", st, fingerprint({"twins": st.settings(),
                                                     "upstream": concepts.fingerprint if concepts else None}))


def generated_fingerprint(generation: dict[str, PlannedStage]) -> str | None:
    """One fingerprint for the generated concepts and twins the captions may include."""
    fp = generation["concepts"].fingerprint if "concepts" in generation else None
    if "twins" in generation:
        fp = fingerprint([fp, generation["twins"].fingerprint])
    return fp


def plan_caption_chain(cfg: SynthConfig, concepts: list[dict], *, generated_fp: str | None = None,
                       last: str = "export", backend=None, generator=None, embedder=None,
                       vlm=None) -> list[PlannedStage]:
    """captions -> images -> filter -> export, up to ``last``, from the config alone.

    backend/generator/embedder/vlm: objects to use instead of building them from cfg (tests, notebooks).
    The caption stage is planned with cfg.llm whether or not it runs, so a later job that runs only the
    image stages expects exactly the fingerprint the captions job wrote."""

    order = ("captions", "images", "filter", "export")
    if last not in order:
        raise ValueError(f"last must be one of {order}, got {last!r}")
    c = cfg.captions
    cap = CaptionStage(concepts, backend or create_backend(asdict(cfg.llm)), c.n, c.max_words, c.max_attempts,
                       cfg.run.concepts_per_shard, c.require_culture, c.batch_size)
    chain = [PlannedStage("captions", cap, fingerprint({
        "captions": cap.settings(), "generated": generated_fp if cfg.catalog.include_generated else None}))]
    if last == "captions":
        return chain
    n_shards = len(cap.plan(None))  # images, filter and export map captions shard i to their shard i
    i = cfg.images
    im = ImageStage(generator or create_generator(asdict(cfg.generator)), i.per_caption, i.width, i.height,
                    i.negative_prompt, i.batch_size, i.writer_threads, n_shards=n_shards)
    chain.append(_below(chain[-1], "images", im))
    if last == "images":
        return chain
    if vlm is None and cfg.filter.vlm_model:
        vlm = TransformersVLMJudge(cfg.filter.vlm_model)
    fl = FilterStage(FilterConfig(**asdict(cfg.filter)), vlm=vlm, embedder=embedder, n_shards=n_shards)
    chain.append(_below(chain[-1], "filter", fl))
    if last == "filter":
        return chain
    e = cfg.export
    ex = ExportStage(e.dir, e.val, e.test, e.group_by, e.holdout_twin_pairs, e.seed, e.title,
                     run_info={"captions": cap.settings()["backend"], "n_captions": c.n, "images": im.settings(),
                               "filter": fl.settings(), "concepts": len(concepts)}, n_shards=n_shards)
    chain.append(_below(chain[-1], "export", ex))
    return chain


# ----------------------------------------------------------------------------- entry point
def run(cfg: SynthConfig, stages: list[str], overwrite: bool = False, proc: ProcessInfo | None = None,
        **objects) -> dict:
    """Run the requested stages in pipeline order; returns {stage: StageSummary}.

    objects: backend, generator, embedder, vlm to use instead of building them from cfg."""


    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    extra = sorted(set(objects) - {"backend", "generator", "embedder", "vlm"})
    if extra:
        raise TypeError(f"run() got unexpected object(s) {extra}; valid: backend, generator, embedder, vlm")
    cfg = validate_config(cfg)
    proc = proc or process_info()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timeout = cfg.run.wait_timeout if cfg.run.wait_timeout is not None else (0.0 if proc.world_size == 1 else 3600.0)
    want = [s for s in STAGES if s in stages]
    t0 = time.monotonic()
    summaries: dict = {}

    def execute(p: PlannedStage) -> None:
        summaries[p.name] = run_stage(p.stage, out, p.fingerprint, proc=proc, overwrite=overwrite,
                                      wait_timeout=timeout, progress=cfg.run.progress, expected=p.expected)

    backend = objects.get("backend") or create_backend(asdict(cfg.llm))  # lazy: loads on its first request
    curated_ids = set(_curated(tuple(cfg.catalog.paths or ())).concepts)
    selection = select_concepts(cfg)

    # 1. generated concepts, then twins: each one's plan reads the records of the one before it
    generation: dict[str, PlannedStage] = {}
    if "concepts" in want or (out / "concepts" / "fingerprint.json").exists():
        generation["concepts"] = plan_concepts(cfg, backend, curated_ids)
        if "concepts" in want:
            execute(generation["concepts"])
    if "twins" in want or ((out / "twins" / "fingerprint.json").exists() and "concepts" in generation):
        made = (load_generated(out, {"concepts": generation["concepts"]}, timeout)
                if cfg.twins.source != "catalog" and "concepts" in generation else [])
        generation["twins"] = plan_twins(cfg, backend, curated_ids, selection, made, generation.get("concepts"))
        if "twins" in want:
            execute(generation["twins"])
    if proc.is_main and {"concepts", "twins"} & set(want):
        write_generated_catalog(out, load_generated(out, generation, timeout))

    # 2. captions -> images -> filter -> export (planned whole up to the last requested stage)
    rest = [s for s in want if s not in ("concepts", "twins")]
    if rest:
        concepts = selection
        if cfg.catalog.include_generated:
            concepts = select_concepts(cfg, load_generated(out, generation, timeout) if generation else None)
        chain = plan_caption_chain(cfg, concepts, generated_fp=generated_fingerprint(generation), last=rest[-1],
                                   backend=backend, generator=objects.get("generator"),
                                   embedder=objects.get("embedder"), vlm=objects.get("vlm"))
        for p in chain:
            if p.name in rest:
                execute(p)
    log.info("done in %.1fs: %s", time.monotonic() - t0, ", ".join(
        f"{k}={v.records}" for k, v in summaries.items()))
    return summaries


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m synth.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a preset name (smoke, world, sdxl_qwen: configs/synth/, installed with the "
                   "package) or a YAML path")
    p.add_argument("--stages", default="captions,images,filter,export",
                   help=f"comma-separated, from {','.join(STAGES)}")
    p.add_argument("--out", help="run folder (overrides the config's `out`)")
    p.add_argument("--overwrite", action="store_true", help="recompute stages whose settings changed")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. captions.n=5")
    return p.parse_args(argv), []


def main(argv: list[str] | None = None) -> int:
    args, _ = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    try:
        cfg = load_config(SynthConfig, find_preset("synth", args.config), overrides)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    run(cfg, stages, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
