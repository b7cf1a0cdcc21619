"""Command line + environment -> `DemoServices` for app.py (kept here so tests can call it).

Precedence: flags, then CULTURECLIP_* environment variables (for a Space), then defaults: the paper's
models when the hub is reachable or they are already in the local Hugging Face cache, else the bundled
offline twin world at artifacts/world/ (`choose_models` decides, and says why; `make app` prints it).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cultureclip.backbone import hub_reachable, spec_cached

from .config import HUB_BASE, HUB_TUNED, WORLD_DIR, DemoConfig, ServiceError
from .handlers import build_candidates, concept_of_label, example_pairs, featured_pairs
from .services import DemoServices

logger = logging.getLogger(__name__)

ENV = {
    "base": "CULTURECLIP_BASE",
    "tuned": "CULTURECLIP_TUNED",
    "dataset": "CULTURECLIP_DATASET",
    "results": "CULTURECLIP_RESULTS",
    "results_repo": "CULTURECLIP_RESULTS_REPO",
    "wise_base": "CULTURECLIP_WISE_BASE",
    "world": "CULTURECLIP_WORLD",
    "eval_on_start": "CULTURECLIP_EVAL_ON_START",  # 0: no evaluation at launch (default 1)
    "warm_start": "CULTURECLIP_WARM_START",  # 0: embed label banks on the first request instead
}
TRUE = ("1", "true", "yes", "on")


class ConfigError(RuntimeError):
    """The app cannot start; the message says what is wrong and how to fix it."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="CultureCLIP Gradio demo")
    p.add_argument("--base", help=f"base model spec (env {ENV['base']}; default {HUB_BASE} or the offline world)")
    p.add_argument("--tuned", help=f"CultureCLIP model spec (env {ENV['tuned']}; default {HUB_TUNED} or the offline world)")
    p.add_argument("--dataset", help=f"CulTwin dataset folder (env {ENV['dataset']})")
    p.add_argument("--results", help=f"folder of eval result JSONs (env {ENV['results']})")
    p.add_argument("--results-repo", help="a Hugging Face dataset repo of result JSONs, owner/name[@revision][/folder] "
                   f"(env {ENV['results_repo']}); read from the local HF cache when the hub is not reachable")
    p.add_argument("--wise-base", help="base weights in the tuned model's format, for WiSE-FT blending "
                   f"(env {ENV['wise_base']}; default: --base)")
    p.add_argument("--catalog", action="append", help="extra catalog YAML file/folder (repeatable)")
    p.add_argument("--world", help=f"offline world folder (env {ENV['world']}; default {WORLD_DIR})")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    p.add_argument("--host", default=None, help="server name (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="server port (default: GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--no-preload", action="store_true", help="load models on the first request instead of at startup")
    p.add_argument("--no-default-dataset", action="store_true",
                   help="without --dataset, do not render the bundled world's concepts as the dataset")
    p.add_argument("--cache-dir", help="cache for the default dataset and live evaluations "
                   "(env CULTURECLIP_CACHE; default ~/.cache/cultureclip)")
    p.add_argument("--eval-on-start", action="store_true",
                   help="evaluate both models on the dataset's test split at startup, in the background (the default; "
                   "results are cached on disk by weights hash, so a restart shows them at once)")
    p.add_argument("--no-eval-on-start", action="store_true",
                   help=f"do not evaluate at startup (env {ENV['eval_on_start']}=0); the Benchmarks tab offers a button")
    p.add_argument("--no-warm-start", action="store_true", help="embed the catalog label banks on the first request "
                   f"instead of at startup (env {ENV['warm_start']}=0); they are cached on disk either way")
    return p.parse_args(argv)


def _pick(args: argparse.Namespace, key: str) -> str | None:
    val = getattr(args, key, None)
    return val if val else (os.environ.get(ENV[key]) or None)


@dataclass(frozen=True)
class ModelChoice:
    """Which default models the app uses, and why (one sentence for the log and `make app`)."""

    hub_defaults: bool
    reason: str


def _hub_cache_dir() -> Path | None:
    """The HF hub cache to look in (None: huggingface_hub's own default, from HF_HOME / HF_HUB_CACHE)."""
    return None


def choose_models(hub: bool | None = None, base: str = HUB_BASE, tuned: str = HUB_TUNED) -> ModelChoice:
    """Hub defaults when the hub is reachable OR both default models are in the local HF cache (a Space
    with persistent storage, a machine that downloaded them once); else the offline world.

    hub: whether the hub is reachable (None: check, in <= 3 s; always False with HF_HUB_OFFLINE=1)."""
    if hub is None:
        hub = hub_reachable()
    if hub:
        return ModelChoice(True, f"the Hugging Face hub is reachable: using {base} and {tuned}")
    import huggingface_hub.constants as hc

    where = str(_hub_cache_dir() or hc.HF_HUB_CACHE)
    why = "HF_HUB_OFFLINE is set" if hc.HF_HUB_OFFLINE else "the Hugging Face hub is not reachable"
    missing = [s for s in (base, tuned) if not spec_cached(s, cache_dir=_hub_cache_dir())]
    if not missing:
        return ModelChoice(True, f"{why}, but {base} and {tuned} are in the local Hugging Face cache ({where}): using them")
    return ModelChoice(False, f"{why} and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the local "
                       f"Hugging Face cache ({where}; set HF_HOME to a cache that has them): using the bundled "
                       "offline twin world")


def resolve_config(args: argparse.Namespace, hub: bool | None = None) -> DemoConfig:
    """Fill models/data from flags, env and defaults (the offline world when no hub is reachable)."""
    base, tuned = _pick(args, "base"), _pick(args, "tuned")
    dataset, results, wise = _pick(args, "dataset"), _pick(args, "results"), _pick(args, "wise_base")
    results_repo = _pick(args, "results_repo")
    world = Path(_pick(args, "world") or WORLD_DIR)
    offline = False
    if not (base and tuned):
        choice = choose_models(hub)
        logger.info("default models: %s", choice.reason)
        if choice.hub_defaults:
            base, tuned = base or HUB_BASE, tuned or HUB_TUNED
        else:
            need = [world / "models" / "base", world / "models" / "cultureclip"]
            missing = [str(p) for p in need if not p.is_dir()]
            if missing:
                raise ConfigError(
                    "the Hugging Face hub is not reachable and the bundled offline twin world is missing "
                    f"({', '.join(missing)}). Build it with `make offline-world`, or pass --base/--tuned with local "
                    "model folders (and --dataset/--results)."
                )
            offline = True
            base, tuned = base or str(need[0]), tuned or str(need[1])
            if not dataset and (world / "dataset").is_dir():
                dataset = str(world / "dataset")
            if not results and (world / "results").is_dir():
                results = str(world / "results")
    return DemoConfig(base=base, tuned=tuned, dataset=Path(dataset) if dataset else None,
                      results=Path(results) if results else None, wise_base=wise,
                      catalog=[Path(c) for c in args.catalog] if getattr(args, "catalog", None) else None,
                      device=getattr(args, "device", None), offline_world=offline,
                      default_dataset=not getattr(args, "no_default_dataset", False),
                      cache_dir=Path(args.cache_dir) if getattr(args, "cache_dir", None) else None,
                      eval_on_start=eval_on_start(args), results_repo=results_repo)


def eval_on_start(args: argparse.Namespace) -> bool:
    """The launch evaluation is on unless --no-eval-on-start or CULTURECLIP_EVAL_ON_START=0 (--eval-on-start wins)."""
    if getattr(args, "eval_on_start", False):
        return True
    if getattr(args, "no_eval_on_start", False):
        return False
    return os.environ.get(ENV["eval_on_start"], "1").strip().lower() not in ("0", "false", "no", "off")


def build_services(args: argparse.Namespace, hub: bool | None = None) -> DemoServices:
    """Resolve the config and check it (loading the models unless --no-preload): fail fast and clearly."""
    cfg = resolve_config(args, hub)
    services = DemoServices(cfg)
    preload = not getattr(args, "no_preload", False)
    warm = preload and not getattr(args, "no_warm_start", False) and os.environ.get(ENV["warm_start"], "1") != "0"
    try:
        if warm and services.is_default_dataset:
            # the app serves once the models are loaded, a small first bank is embedded (the examples' concepts and
            # their twins) and the default dataset is rendered; the full catalog banks continue in the background
            services.base.get(), services.tuned.get(), services.concepts()  # fail fast; concepts: catalog only
            warm_start(services, start=False)  # the first bank now (a few seconds), the full ones after the render
            notes = services.check(load_models=True)  # renders the default dataset, alone on the CPU
            services.models.warm_first(first_label_set(services))  # the gallery's examples, now that they are known
            # the full banks start with the dataset index once the page is built (ui.build_demo: start_indexing)
        else:
            notes = services.check(load_models=preload)
            if warm:
                warm_start(services)
        for note in notes:
            logger.warning(note)
    except ServiceError as e:
        raise ConfigError(str(e)) from e
    return services


def warm_label_sets(services: DemoServices) -> list[list[str]]:
    """The label lists the first queries embed: Recognize's default candidates (every catalog concept)
    and the concept bank of the twin explorer / confusion map (the same prompts, by concept id)."""
    cs = services.concepts()
    if not cs:
        return []
    return [build_candidates(services, "", True).prompts, [cs[i].prompt for i in sorted(cs)]]


def first_label_set(services: DemoServices, n_examples: int = 8, n_pairs: int = 12) -> list[str]:
    """The catalog prompts embedded before the app serves: the concepts of the example gallery (once the dataset
    is there; else the first featured twin pairs, which it shows) and every twin of them, so a picked example's
    truth and its twin are always ranked."""
    cs = services.concepts()
    ids = {c for pair in featured_pairs(services)[:n_pairs] for c in pair}
    if services.has_dataset and services.data.manifest_loaded:
        ids |= {c.id for _, label in example_pairs(services, n_examples) if (c := concept_of_label(services, label))}
    ids |= {t for i in list(ids) for t in cs[i].twins}
    return sorted(cs[i].prompt for i in ids if i in cs)


def warm_start(services: DemoServices, start: bool = True) -> None:
    """The first label banks now, the full catalog's in the background (see DemoServices.warm_start)."""
    services.warm_start(warm_label_sets(services), first=first_label_set(services), start=start)


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.app_config`: print which default models `python app.py` would use, and why.

    Exit status 0: hub defaults (or models given in CULTURECLIP_BASE/TUNED); 1: the offline world."""
    argparse.ArgumentParser(prog="python -m demo.app_config", description=main.__doc__.split("\n")[0]).parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if os.environ.get(ENV["base"]) and os.environ.get(ENV["tuned"]):
        print(f"Models from {ENV['base']} and {ENV['tuned']}: {os.environ[ENV['base']]} and {os.environ[ENV['tuned']]}")
        return 0
    choice = choose_models()
    print(("Hub default models: " if choice.hub_defaults else "Offline twin world: ") + choice.reason)
    return 0 if choice.hub_defaults else 1


if __name__ == "__main__":
    sys.exit(main())
