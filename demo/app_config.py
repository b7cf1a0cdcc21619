"""Command line + environment -> `DemoServices` for app.py (kept here so tests can call it).

Precedence: flags, then CULTURECLIP_* environment variables (for a Space), then defaults: the paper's
models when the hub is reachable, else the bundled offline twin world at artifacts/world/.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .services import HUB_BASE, HUB_TUNED, HUB_WISE_BASE, WORLD_DIR, DemoConfig, DemoServices, ServiceError

logger = logging.getLogger(__name__)

ENV = {
    "base": "CULTURECLIP_BASE",
    "tuned": "CULTURECLIP_TUNED",
    "dataset": "CULTURECLIP_DATASET",
    "results": "CULTURECLIP_RESULTS",
    "wise_base": "CULTURECLIP_WISE_BASE",
    "world": "CULTURECLIP_WORLD",
    "eval_on_start": "CULTURECLIP_EVAL_ON_START",
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
    p.add_argument("--wise-base", help="base weights in the tuned model's format, for WiSE-FT blending "
                   f"(env {ENV['wise_base']}; default: --base, or {HUB_WISE_BASE} with the hub defaults)")
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
                   help=f"evaluate both models on the dataset's test split at startup, in the background "
                   f"(env {ENV['eval_on_start']}=1); results are cached by weights hash")
    return p.parse_args(argv)


def _pick(args: argparse.Namespace, key: str) -> str | None:
    val = getattr(args, key, None)
    return val if val else (os.environ.get(ENV[key]) or None)


def resolve_config(args: argparse.Namespace, hub: bool | None = None) -> DemoConfig:
    """Fill models/data from flags, env and defaults (the offline world when no hub is reachable)."""
    base, tuned = _pick(args, "base"), _pick(args, "tuned")
    dataset, results, wise = _pick(args, "dataset"), _pick(args, "results"), _pick(args, "wise_base")
    world = Path(_pick(args, "world") or WORLD_DIR)
    offline = False
    if not (base and tuned):
        if hub is None:
            from cultureclip.backbone import hub_reachable

            hub = hub_reachable()
        if hub:
            if not base and not tuned:
                wise = wise or HUB_WISE_BASE
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
                      eval_on_start=bool(getattr(args, "eval_on_start", False))
                      or os.environ.get(ENV["eval_on_start"], "").strip().lower() in TRUE)


def build_services(args: argparse.Namespace, hub: bool | None = None) -> DemoServices:
    """Resolve the config and check it (loading the models unless --no-preload): fail fast and clearly."""
    cfg = resolve_config(args, hub)
    services = DemoServices(cfg)
    try:
        for note in services.check(load_models=not getattr(args, "no_preload", False)):
            logger.warning(note)
    except ServiceError as e:
        raise ConfigError(str(e)) from e
    return services
