"""The bundled world's concepts as a CulTwin dataset at any resolution (the demo's default dataset).

    python -m synth.world.dataset --size 224 [--cache DIR]

`ensure_world_dataset(cache_dir, size)` renders every concept of the offline twin world (66 flags and
20 tartans, 64 twin pairs) through the ordinary synthesis pipeline (`synth.run`: template captions ->
`WorldRenderer` images -> blank-image filter -> export with a test split) at `size` x `size` pixels,
once. The result is cached under `cache_dir/world-<size>px-<key>/`, where the key hashes everything that
changes the pixels or the manifest (the recipe below, the renderer's settings, and the source of the
world's specs, tartans, renderer and catalog), so a changed world spec rebuilds and an unchanged one is
reused. A build happens in a temporary folder and is published by one directory rename after the
manifest passed `cultureclip.data.read_manifest`: a half-built dataset is never used.

The world's own 48 px dataset (`make offline-world`) is for the tiny world models; this one matches the
input resolution of whatever models are loaded (224 px for ViT-B/32).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cultureclip.config import load_config, validate_config
from cultureclip.data import read_manifest
from cultureclip.fileio import make_readable, remove_path, replace_dir
from cultureclip.steps import done, fingerprint, write_marker
from synth.run import SynthConfig, run
from synth.world import CATALOG_PATH, SYNTH_PRESET
from synth.world.render import RenderParams, WorldRenderer

logger = logging.getLogger(__name__)

WORLD_DIR = Path(__file__).resolve().parent
# what a rebuild depends on besides the recipe: the world's designs, renderer and catalog
SOURCE_FILES = ("specs.py", "tartans.py", "render.py", "catalog.yaml")
INFO_FILE = "world_dataset.json"
RECIPE_VERSION = 1  # bump when this module changes what it writes


@dataclass(frozen=True)
class Recipe:
    """How many images per concept and how they are split (defaults: 5 renders per concept, half test)."""

    captions: int = 5  # template captions per concept (one render each)
    images_per_caption: int = 1
    difficulty: float = 0.5  # WorldRenderer variation (0 clean .. 1 strong), as in the world build
    val: float = 0.0
    test: float = 0.5  # fraction of captions whose renders form the test split
    seed: str = "world-default"


def world_spec_version() -> str:
    """Hash of the world's specs, tartans, renderer and catalog sources (changes when a design changes)."""
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update(name.encode() + b"\0" + (WORLD_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _renderer(size: int, recipe: Recipe):

    # the design texture is sampled per pixel: keep it at least as wide as the image so 224 px renders
    # are as sharp as the 48 px ones (160 px is the world build's default)
    params = RenderParams.from_difficulty(recipe.difficulty)
    params = type(params)(**{**asdict(params), "texture_width": max(params.texture_width, int(size))})
    return WorldRenderer(difficulty=recipe.difficulty, params=params)


def dataset_settings(size: int, recipe: Recipe = Recipe()) -> dict:
    """What a dataset depends on: resolution + world spec version + recipe + renderer settings."""
    return {"size": int(size), "world": world_spec_version(), "recipe": asdict(recipe),
            "renderer": _renderer(size, recipe).settings(), "version": RECIPE_VERSION}


def dataset_key(size: int, recipe: Recipe = Recipe()) -> str:
    """Cache key: the `cultureclip.steps.fingerprint` of `dataset_settings` (12 chars; a cache made before
    the steps module hashed other bytes and is rendered again once, under its new name)."""
    return fingerprint(dataset_settings(size, recipe), 12)


def dataset_dir(cache_dir: str | os.PathLike, size: int, recipe: Recipe = Recipe()) -> Path:
    return Path(cache_dir) / f"world-{int(size)}px-{dataset_key(size, recipe)}"


def is_complete(folder: Path, settings: dict) -> bool:
    """A published dataset of these settings: its info file (a `cultureclip.steps` done-marker written before
    the rename, what was built under ``produced``) holds their fingerprint, and its manifest is there."""
    return done(folder / INFO_FILE, fingerprint(settings)) is not None and (folder / "manifest.parquet").is_file()


def ensure_world_dataset(cache_dir: str | os.PathLike, size: int, recipe: Recipe = Recipe(),
                         progress: bool = False) -> Path:
    """The dataset folder for `size` px: reused when published before, else built and published atomically."""
    size = int(size)
    if not 16 <= size <= 1024:
        raise ValueError(f"image size must be between 16 and 1024 px, got {size}")
    final, settings = dataset_dir(cache_dir, size, recipe), dataset_settings(size, recipe)
    if is_complete(final, settings):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".build-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    logger.info("rendering the world's concepts at %d px into %s (once; cached)", size, final)
    try:
        _build(work, size, recipe, progress)
        seconds = round(time.perf_counter() - t0, 2)

        frame = read_manifest(work / "dataset", check_images=True).frame  # the one validator, before publishing
        info = {"size": size, "key": final.name, "world_spec_version": world_spec_version(), "recipe": asdict(recipe),
                "images": int(len(frame)), "concepts": int(frame["concept_id"].nunique()),
                "splits": {k: int(v) for k, v in frame["split"].value_counts().sort_index().items()},
                "build_seconds": seconds}
        write_marker(work / "dataset" / INFO_FILE, fingerprint(settings), info, settings)

        make_readable(work / "dataset")
        replace_dir(work / "dataset", final, keep_existing=True)  # atomic publish; a lost race keeps the winner's
        if not is_complete(final, settings):
            raise RuntimeError(f"the world dataset {final.name} was published incomplete; delete it and retry")
        logger.info("world dataset at %d px: %d images of %d concepts in %.1fs", size, info["images"],
                    info["concepts"], seconds)
    finally:
        remove_path(work, ignore_errors=True)
    return final


def synth_config(work: Path, size: int, recipe: Recipe, progress: bool = False):
    """The typed `SynthConfig` of a demo dataset: the `configs/synth/world.yaml` preset with this build's
    fields set (no key=value strings: any folder name works); choices checked as when a YAML loads."""


    cfg = load_config(SynthConfig, SYNTH_PRESET)
    return validate_config(replace(
        cfg,
        out=str(work / "synth"),
        catalog=replace(cfg.catalog, paths=[str(CATALOG_PATH)]),
        captions=replace(cfg.captions, n=recipe.captions),
        images=replace(cfg.images, per_caption=recipe.images_per_caption, width=size, height=size),
        export=replace(cfg.export, dir=str(work / "dataset"), val=recipe.val, test=recipe.test, seed=recipe.seed,
                       title="CulTwin offline world (flags and tartans), rendered for the demo"),
        run=replace(cfg.run, progress=progress),
    ))


def _build(work: Path, size: int, recipe: Recipe, progress: bool) -> None:
    """synth.run with the world config: captions -> images -> filter (blank images only) -> export."""

    cfg = synth_config(work, size, recipe, progress)
    run(cfg, ["captions", "images", "filter", "export"], overwrite=True, generator=_renderer(size, recipe))
    (work / "dataset" / "catalog").mkdir(parents=True, exist_ok=True)
    shutil.copy2(CATALOG_PATH, work / "dataset" / "catalog" / "world.yaml")  # concept facts for the demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synth.world.dataset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224, help="image size in px (the models' input resolution)")
    ap.add_argument("--cache", default=os.environ.get("CULTURECLIP_CACHE") or str(Path.home() / ".cache" / "cultureclip"),
                    help="cache folder (default: $CULTURECLIP_CACHE or ~/.cache/cultureclip)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    path = ensure_world_dataset(Path(args.cache) / "datasets", args.size, progress=True)
    print(f"{path} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
