"""The bundled offline twin world: real flags drawn from their published specifications.

- `specs`: the designs (geometry + colours + honesty notes) and generic appearance captions.
- `render`: `WorldRenderer` (an ImageGenerator), `render_design`, `generic_sample`.
- `catalog.yaml`: the world's concepts in the synthesis catalog format (`load_world_catalog`).
"""
from __future__ import annotations

from pathlib import Path

from cultureclip.config import config_dir

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
# the world's synthesis recipe (a synth.run preset); the world build and the demo dataset set the rest
SYNTH_PRESET = config_dir() / "synth" / "world.yaml"


def load_world_catalog_raw() -> list[dict]:
    """The raw catalog entries (list of dicts) of the world, as stored in catalog.yaml."""
    import yaml

    with open(CATALOG_PATH, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, list):
        raise ValueError(f"{CATALOG_PATH} must hold a YAML list of concepts")
    return data
