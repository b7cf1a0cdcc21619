"""Evaluate models on benchmarks: `python -m eval_suite.run --models SPEC ... --benchmarks NAME ... --out results/`.

For each (model, benchmark): load the benchmark (adapter), embed its images in batches with a
DataLoader that decodes in worker processes (features cached on disk in safetensors, keyed by the
model's weight hash, the dataset fingerprint and the preprocessing), score, and write
`results/<benchmark>__<model_tag>.json` atomically. `--skip-existing` skips pairs whose result file
already exists with the same model and evaluation settings, so an interrupted sweep resumes.

Under `accelerate launch --num_processes N`, each process embeds every N-th image; the main process
merges the parts and scores, so the numbers equal a single-process run.

The configuration is an `EvalConfig` loaded the way training and synthesis load theirs
(`cultureclip.config.load_config`): defaults <- `--config PRESET|YAML` <- `key=value` overrides
(`models=[a,b]`, `roots.geode=/data/geode`, `options.worldcuisines.kb_root=PATH`, `n_boot=0`). The
flags (`--models`, `--root NAME=PATH`, `--n-boot`, ...) are aliases that become overrides (table `ALIASES`);
positional `key=value` overrides come after them. Choice fields (`precision`, `protocol`) are checked at load.

Examples:
    python -m eval_suite.run --config smoke
    python -m eval_suite.run --config smoke n_boot=0 precision=bf16 roots.geode=/data/geode
    python -m eval_suite.run --models open_clip:ViT-B-32@openai hf:lukahh/cultureclip_lora_0315_100k_32_07_03 \\
        --benchmarks crope globalrg_retrieval imagenet1k --root imagenet1k=/data/wds_imagenet1k --out results/
    accelerate launch --num_processes 2 -m eval_suite.run --config smoke --out results/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cultureclip.backbone import create_backbone, default_device
from cultureclip.checkpoint import checkpoint_sha, model_identity
from cultureclip.config import ConfigError, find_preset, load_config, validate_config
from cultureclip.inference import Embedder
from eval_suite.benchmarks import BENCHMARKS, BenchmarkError, create_benchmark
from eval_suite.benchmarks.classification import templates_option
from eval_suite.benchmarks.embedding import embed_image_refs
from eval_suite.cache import EmbeddingCache, cache_key, preprocess_signature
from eval_suite.results import (
    ResultError,
    hash_config,
    make_result,
    model_tag,
    read_result,
    result_filename,
    write_result,
)

logger = logging.getLogger(__name__)

Protocol = Literal["official", "paper"]  # the protocols benchmarks define (`Benchmark.protocols`)


@dataclass
class EvalConfig:
    """Everything that defines a sweep (YAML preset keys = these fields)."""

    models: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # model spec -> display name (else the checkpoint's)
    roles: dict[str, str] = field(default_factory=dict)  # model spec -> role, e.g. base | tuned
    benchmarks: list[str] = field(default_factory=list)
    out: str = "results"
    roots: dict[str, str] = field(default_factory=dict)  # benchmark -> local folder
    protocol: Literal["", Protocol] = ""  # default for every benchmark that has it ("" = each one's own)
    protocols: dict[str, Protocol] = field(default_factory=dict)  # benchmark -> protocol
    options: dict[str, dict] = field(default_factory=dict)  # benchmark -> adapter options
    batch_size: int = 64
    num_workers: int = 2
    cache_dir: str = ""  # default: <out>/.embedding_cache
    no_cache: bool = False
    skip_existing: bool = False
    n_boot: int = 1000
    device: str = ""  # default: cuda if available (or the accelerate process's device)
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    progress: bool = True


# ---------------------------------------------------------------------------------------------
# distributed helpers (accelerate when launched with it; a single process otherwise)
# ---------------------------------------------------------------------------------------------
class _Dist:
    """Rank/world from the launcher's environment (`accelerate launch` and torchrun both set WORLD_SIZE,
    RANK, LOCAL_RANK); torch.distributed (nccl on GPU, gloo on CPU) only provides the barrier."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self._pg = False
        if self.world > 1:
            import torch
            import torch.distributed as td

            if not td.is_initialized():
                use_cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU") != "1"
                td.init_process_group("nccl" if use_cuda else "gloo")
                self._pg = True

    @property
    def device(self) -> str | None:
        import torch

        if self.world > 1 and torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU") != "1":
            return f"cuda:{self.local_rank}"
        return "cpu" if self.world > 1 else None

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self._pg:
            import torch.distributed as td

            td.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# the command line: --config PRESET|YAML, key=value overrides, and flags that are aliases of overrides
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alias:
    """A flag that stands for an override of one `EvalConfig` field.

    form: "value" (`--n-boot 0` -> `n_boot=0`), "list" (`--models A B` -> `models=["A", "B"]`),
    "entry" (repeatable; `--root NAME=PATH` -> `roots.NAME=PATH`; an item without `=` sets `fallback`
    instead: `--protocol paper` -> `protocol=paper`), "true" / "false" (`--no-cache` -> `no_cache=true`)."""

    flag: str
    field: str
    form: Literal["value", "list", "entry", "true", "false"]
    help: str = ""
    metavar: str | None = None
    fallback: str = ""


ALIASES: tuple[Alias, ...] = (
    Alias("--models", "models", "list", "model specs (open_clip:ARCH@TAG, hf:ORG/NAME, a folder, ...)", "SPEC"),
    Alias("--benchmarks", "benchmarks", "list", "benchmark names (see --list)", "NAME"),
    Alias("--out", "out", "value", "results folder"),
    Alias("--name", "names", "entry", "display name of a model (recorded in its results)", "SPEC=NAME"),
    Alias("--role", "roles", "entry", "role of a model, e.g. base or tuned (recorded in its results)", "SPEC=ROLE"),
    Alias("--root", "roots", "entry", "local folder of a benchmark", "NAME=PATH"),
    Alias("--protocol", "protocols", "entry", "official or paper, for all benchmarks or one (NAME=PROTO)",
          "PROTO|NAME=PROTO", fallback="protocol"),
    Alias("--option", "options", "entry", "adapter option, e.g. worldcuisines.kb_root=/data/kb", "NAME.KEY=VALUE"),
    Alias("--skip-existing", "skip_existing", "true", "skip pairs already evaluated"),
    Alias("--batch-size", "batch_size", "value"),
    Alias("--num-workers", "num_workers", "value", "DataLoader decoding workers"),
    Alias("--cache-dir", "cache_dir", "value"),
    Alias("--no-cache", "no_cache", "true", "do not read/write the embedding cache"),
    Alias("--n-boot", "n_boot", "value", "bootstrap resamples for CIs (0 = none)"),
    Alias("--device", "device", "value"),
    Alias("--precision", "precision", "value"),
    Alias("--no-progress", "progress", "false", "hide progress bars"),
)


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(EvalConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(EvalConfig)}


def check_aliases(aliases: tuple[Alias, ...] = ALIASES) -> None:
    """The alias table matches `EvalConfig`: every field has exactly one flag, and each flag's form fits its
    field's type (a list, a mapping, a bool, or a single value). Raises RuntimeError otherwise."""
    types_ = _field_types()
    problems = []
    covered = [a.field for a in aliases] + [a.fallback for a in aliases if a.fallback]
    for name in sorted(set(types_) ^ set(covered)):
        problems.append(f"{name}: {'no flag' if name in types_ else 'not an EvalConfig field'}")
    problems += [f"{name}: more than one flag" for name in sorted({n for n in covered if covered.count(n) > 1})]
    for a in aliases:
        tp = types_.get(a.field)
        origin = typing.get_origin(tp) or tp
        want = {"list": list, "entry": dict, "true": bool, "false": bool}.get(a.form)
        if tp is not None and (origin is not want if want else origin in (list, dict, bool)):
            problems.append(f"{a.flag}: form {a.form!r} does not fit {a.field}: {tp}")
        if a.fallback and a.fallback in types_ and typing.get_origin(types_[a.fallback]) in (list, dict):
            problems.append(f"{a.flag}: fallback {a.fallback} must be a single value")
    if problems:
        raise RuntimeError("eval_suite.run.ALIASES does not match EvalConfig: " + "; ".join(problems))


def _dest(alias: Alias) -> str:
    return "alias_" + alias.flag.lstrip("-").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    check_aliases()
    types_ = _field_types()
    p = argparse.ArgumentParser(prog="python -m eval_suite.run", description=__doc__.split("\n\n")[0],
                                epilog="Overrides: any EvalConfig field as key=value, e.g. n_boot=0 models=[a,b] "
                                       "roots.geode=/data/geode options.worldcuisines.kb_root=PATH.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="preset name in configs/eval/ (e.g. smoke) or a YAML path")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="EvalConfig overrides (applied after the flags)")
    for a in ALIASES:
        choices = list(typing.get_args(types_[a.field])) if typing.get_origin(types_[a.field]) is Literal else None
        metavar = a.metavar or ("|".join(choices) if choices else a.field.upper())
        if a.form in ("true", "false"):
            same = f"same as {a.field}={a.form}"
        elif a.form == "entry":
            same = f"same as {a.fallback}=VALUE or {a.field}.NAME=VALUE" if a.fallback else f"same as {a.field}.{metavar}"
        elif a.form == "list":
            same = f"same as {a.field}=[{metavar},...]"
        else:
            same = f"same as {a.field}={metavar}"
        kw: dict[str, Any] = {"dest": _dest(a), "help": f"{a.help} ({same})" if a.help else same}
        if a.form in ("true", "false"):
            kw["action"] = "store_true"
        else:
            kw["metavar"] = metavar
            if a.form == "list":
                kw["nargs"] = "+"
            elif a.form == "entry":
                kw["action"] = "append"
            if choices:
                kw["choices"] = choices
                del kw["metavar"]
        p.add_argument(a.flag, **kw)
    p.add_argument("--list", action="store_true", help="list benchmarks and their protocols, then exit")
    return p


_OVERRIDE_RE = re.compile(r"^([A-Za-z_]\w*)(\.[^=]*)?=")


def _is_override(item: str) -> bool:
    m = _OVERRIDE_RE.match(item)
    return bool(m) and m.group(1) in _field_types()


def alias_overrides(args: argparse.Namespace) -> list[str]:
    """The `key=value` overrides the given flags stand for (in table order), then the positional ones.

    A `--models`/`--benchmarks` list takes every word after it, so `--models A B n_boot=0` hands the
    trailing `field=...` words back to the overrides."""
    out: list[str] = []
    late: list[str] = []
    for a in ALIASES:
        val = getattr(args, _dest(a), None)
        if val is None or val is False:
            continue
        if a.form == "list":
            late += [v for v in val if _is_override(v)]
            val = [v for v in val if not _is_override(v)]
            if val:
                out.append(f"{a.field}={json.dumps(val)}")
        elif a.form == "value":
            out.append(f"{a.field}={val}")
        elif a.form in ("true", "false"):
            out.append(f"{a.field}={a.form}")
        else:
            for item in val:
                if "=" in item:
                    out.append(f"{a.field}.{item}")
                elif a.fallback:
                    out.append(f"{a.fallback}={item}")
                else:
                    raise SystemExit(f"{a.flag} expects {a.metavar}, got {item!r}")
    return out + late + list(getattr(args, "overrides", None) or [])


def preset_path(name: str) -> Path:
    """`--config NAME` (a preset in configs/eval/, installed with the package) or a YAML path."""
    try:
        return find_preset("eval", name)
    except ConfigError as e:
        raise SystemExit(str(e)) from None


def check_eval_config(cfg: EvalConfig) -> EvalConfig:
    """Check a config however it was built (loaded or in code): field types and choices, and root names.

    Raises `cultureclip.config.ConfigError` naming the field and the valid choices."""
    cfg = validate_config(cfg)
    unknown = sorted(set(cfg.roots) - root_names())
    if unknown:
        raise ConfigError(f"roots (--root NAME=PATH, roots.NAME=PATH or the preset's roots) names no benchmark: "
                          f"{unknown}; choose from {sorted(root_names())}")
    for name, opts in cfg.options.items():  # prompt templates are checked here, not at the first embedding
        if opts.get("templates"):
            try:
                templates_option(opts["templates"], name)
            except BenchmarkError as exc:
                raise ConfigError(f"options.{name}.templates: {exc}") from None
    return cfg


def load_eval_config(config: str | None = None, overrides: list[str] | None = None) -> EvalConfig:
    """Defaults <- preset YAML <- `key=value` overrides, checked (`check_eval_config`)."""
    return check_eval_config(load_config(EvalConfig, preset_path(config) if config else None, overrides))


def resolve_config(args: argparse.Namespace) -> EvalConfig:
    """The sweep's config from parsed arguments (preset, flags as overrides, overrides); SystemExit with the
    reason when it does not load."""
    try:
        cfg = load_eval_config(args.config, alias_overrides(args))
    except ConfigError as exc:
        raise SystemExit(f"eval config: {exc}") from None
    if not cfg.models or not cfg.benchmarks:
        raise SystemExit("give at least one model and one benchmark (--models SPEC / models=[SPEC], --benchmarks NAME / "
                         "benchmarks=[NAME]) or a --config preset")
    return cfg


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def make_benchmark(cfg: EvalConfig, name: str):
    cls = BENCHMARKS.get(name)
    proto = cfg.protocols.get(name) or (cfg.protocol if cls and cfg.protocol in cls.protocols else None)
    options = dict(cfg.options.get(name, {}))
    for key, root_name in (cls.root_options if cls else {}).items():  # e.g. --root worldcuisines_kb=PATH
        if root_name in cfg.roots and key not in options:
            options[key] = cfg.roots[root_name]
    return create_benchmark(name, root=cfg.roots.get(name), protocol=proto, **options)


def root_names() -> set[str]:
    """Names `--root NAME=PATH` accepts: every benchmark, plus the extra roots some need (worldcuisines_kb)."""
    return set(BENCHMARKS) | {r for cls in BENCHMARKS.values() for r in cls.root_options.values()}


def eval_config_for(cfg: EvalConfig, bench) -> dict[str, Any]:
    """The settings that change a result's numbers (hashed into `config_hash`)."""
    return {"benchmark": bench.name, "protocol": bench.protocol,
            "options": {k: str(v) for k, v in sorted(bench.options.items())},
            "root": str(cfg.roots.get(bench.name) or bench.hub_id or ""), "n_boot": cfg.n_boot,
            "precision": cfg.precision}


def _existing_ok(path: Path, model: str, config_hash: str) -> bool:
    if not path.is_file():
        return False
    try:
        r = read_result(path)
    except ResultError as exc:
        logger.warning("re-running: %s", exc)
        return False
    return r.get("model") == model and r.get("config_hash") == config_hash


def embed_benchmark(cfg: EvalConfig, dist: _Dist, embedder, bench, model_sha: str, callback=None):
    """Image features (N, D) and valid flags for a benchmark: from cache, or embedded (split over ranks).

    callback(done, total) is called after each batch (e.g. a progress display)."""
    import numpy as np
    import torch

    data = bench.load()
    n = len(data.images)
    cache = EmbeddingCache(cfg.cache_dir or Path(cfg.out) / ".embedding_cache")
    key = cache_key(model_sha, bench.fingerprint(), preprocess_signature(embedder.backbone))
    if not cfg.no_cache:
        hit = cache.load(key, n)
        if hit is not None:
            logger.info("%s: %d image features from cache %s", bench.name, n, cache.path(key))
            return hit[0], hit[1], 0.0
    t0 = time.perf_counter()
    indices = list(range(dist.rank, n, dist.world)) if dist.world > 1 else None
    feats, valid = embed_image_refs(embedder, data.images, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                    progress=cfg.progress and dist.is_main, desc=bench.name, indices=indices,
                                    callback=callback)
    seconds = time.perf_counter() - t0
    if dist.world > 1:  # exchange shards through the cache folder (any world size, any data size)
        part = f".part{dist.rank}of{dist.world}"
        cache.save(key, feats, valid, part=part)
        dist.barrier()
        if dist.is_main:
            feats = torch.zeros_like(feats)
            valid = np.zeros(n, dtype=bool)
            for r in range(dist.world):
                got = cache.load(key, n, part=f".part{r}of{dist.world}")
                if got is None:
                    raise RuntimeError(f"embedding part of rank {r} is missing in {cache.folder}")
                mine = np.arange(r, n, dist.world)
                feats[mine] = got[0][mine]
                valid[mine] = got[1][mine]
        dist.barrier()
        cache.remove(key, part=part)
    if dist.is_main and not cfg.no_cache:
        cache.save(key, feats, valid, metadata={"benchmark": bench.name, "model_sha": model_sha, "n": n})
    return feats, valid, seconds


def score_and_write(cfg: EvalConfig, bench, embedder, spec: str, sha: str, path: Path, ecfg: dict[str, Any],
                    feats, valid, embed_seconds: float, world_size: int = 1, benchmark_name: str | None = None,
                    extra: dict[str, Any] | None = None, identity: dict[str, Any] | None = None) -> Path:
    """Score one benchmark from its image features and write the result JSON (atomically); returns its path.

    benchmark_name overrides the adapter's name in the result (e.g. the demo's live evaluation);
    identity is the model's `cultureclip.checkpoint.model_identity` (recorded with its train config)."""
    t0 = time.perf_counter()
    scored = bench.evaluate(embedder, image_features=feats, valid=valid, n_boot=cfg.n_boot)
    fields = scored.result_fields()
    fields["extra"] = {**fields["extra"], "dataset_fingerprint": bench.fingerprint(),
                       "embed_seconds": round(embed_seconds, 3), "score_seconds": round(time.perf_counter() - t0, 3),
                       "world_size": world_size, "batch_size": cfg.batch_size, "num_workers": cfg.num_workers,
                       **(extra or {})}
    if benchmark_name:
        fields["benchmark"] = benchmark_name
    result = make_result(model=spec, checkpoint_sha=sha, eval_config=ecfg, model_identity=identity,
                         model_config=(identity or {}).get("train_config"), **fields)
    out = write_result(path, result)
    logger.info("%s on %s: %s = %s", spec, result["benchmark"], result["main_metric"],
                result["metrics"].get(result["main_metric"]))
    return out


def evaluate_one(cfg: EvalConfig, embedder, bench, spec: str, path: Path, *, sha: str | None = None,
                 ecfg: dict[str, Any] | None = None, identity: dict[str, Any] | None = None, reuse: bool = False,
                 compute: bool = True, benchmark_name: str | None = None, extra: dict[str, Any] | None = None,
                 callback=None, dist: _Dist | None = None) -> Path | None:
    """Evaluate one model (an `Embedder`, named by `spec`) on one benchmark adapter and write the result JSON
    at `path` (atomically); returns the path, or None on a non-main process. The sweep and the demo's live
    evaluation both evaluate through it.

    sha: the weights hash (default: `checkpoint_sha`); ecfg: the settings that change the numbers (default:
    `eval_config_for`); reuse: return `path` without computing when it already holds this model's result
    with these settings and weights; compute=False: only look (None when no such result exists);
    callback(done, total): embedding progress."""
    sha = sha or checkpoint_sha(embedder.backbone)
    ecfg = eval_config_for(cfg, bench) if ecfg is None else ecfg
    name = benchmark_name or bench.name
    if (reuse or not compute) and _existing_ok(path, spec, hash_config({"benchmark": name, "task": bench.task, **ecfg})) \
            and read_result(path).get("checkpoint_sha") == sha:
        logger.info("%s on %s: reused %s", spec, name, path)
        return path
    if not compute:
        return None
    dist = dist or _Dist()
    feats, valid, seconds = embed_benchmark(cfg, dist, embedder, bench, sha, callback=callback)
    if not dist.is_main:
        return None
    return score_and_write(cfg, bench, embedder, spec, sha, path, ecfg, feats, valid, seconds, world_size=dist.world,
                           benchmark_name=benchmark_name, identity=identity, extra=extra)


def run_sweep(cfg: EvalConfig) -> list[Path]:
    """Evaluate every model on every benchmark; returns the result files written (main process)."""
    import torch

    cfg = check_eval_config(cfg)  # a config built in code gets the checks a loaded one had
    dist = _Dist()
    out = Path(cfg.out)
    written: list[Path] = []
    failures: list[str] = []
    benches = {}
    for name in cfg.benchmarks:
        benches[name] = make_benchmark(cfg, name)  # unknown names/protocols fail before any model loads
    for spec in cfg.models:
        todo = []
        for name, bench in benches.items():
            path = out / result_filename(name, model_tag(spec))
            ecfg = eval_config_for(cfg, bench)
            if cfg.skip_existing and _existing_ok(path, spec, hash_config({"benchmark": name, "task": bench.task, **ecfg})):
                logger.info("skip %s (exists: %s)", name, path)
                continue
            todo.append((bench, path, ecfg))
        if not todo:
            continue
        device = cfg.device or dist.device or default_device()
        backbone = create_backbone(spec, device=device, precision=cfg.precision)
        embedder = Embedder(backbone, batch_size=cfg.batch_size)
        sha = checkpoint_sha(backbone)
        identity = model_identity(backbone, name=cfg.names.get(spec), role=cfg.roles.get(spec), weights_sha=sha)
        for bench, path, ecfg in todo:
            try:
                bench.load()
            except Exception as exc:  # a missing benchmark must not stop the sweep
                failures.append(f"{bench.name}: {exc}")
                logger.error("%s", exc)
                continue
            done = evaluate_one(cfg, embedder, bench, spec, path, sha=sha, ecfg=ecfg, identity=identity, dist=dist)
            if done is not None:
                written.append(done)
        del embedder, backbone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    dist.barrier()
    dist.close()
    if failures:
        raise BenchmarkRunError("some benchmarks could not run:\n  " + "\n  ".join(failures))
    return written


class BenchmarkRunError(RuntimeError):
    """One or more benchmarks failed; the others were still evaluated and written."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags and `key=value` overrides in any order (`--config smoke n_boot=0 --out x precision=bf16`)."""
    return build_parser().parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        for name, cls in sorted(BENCHMARKS.items()):
            hubs = ",".join(h for h in (cls.hub_id, *cls.hub_alternatives) if h) or "-"
            extra = "".join(f" root:{r}" for r in cls.root_options.values())
            print(f"{name:20s} protocols={','.join(cls.protocols)} hub={hubs} env={cls.env_var}{extra}")
        return 0
    cfg = resolve_config(args)
    try:
        files = run_sweep(cfg)
    except BenchmarkRunError as exc:
        logger.error("%s", exc)
        return 1
    for f in files:
        logger.info("wrote %s", f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
