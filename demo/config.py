"""What the demo shows and where it comes from (`DemoConfig`), and the errors its state holders raise.

Below every other demo module: the holders (models, blends, dataset, index, results) and the live
evaluation import it, and nothing here imports them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cultureclip.bankcache import default_cache_dir

# The exact base the paper fine-tuned, in the same (transformers CLIPModel) format as its released
# checkpoint, so WiSE-FT blends the two loaded models key by key.
HUB_BASE = "hf:openai/clip-vit-base-patch32"
HUB_TUNED = "hf:lukahh/cultureclip_lora_0315_100k_32_07_03"
WORLD_DIR = Path("artifacts/world")


class ServiceError(RuntimeError):
    """A configured model, folder or file cannot be used; the message says what and how to fix it."""


class IndexNotReady(ServiceError):
    """The dataset images are still being embedded in the background; the message gives the progress."""


class BlendNotReady(ServiceError):
    """A WiSE-FT blend's label banks are still being embedded in the background; the message gives the progress."""


@dataclass
class DemoConfig:
    """Where models and data come from. Paths may be None (the matching tab then says so)."""

    base: str
    tuned: str
    dataset: Path | None = None
    results: Path | None = None
    results_repo: str | None = None  # a HF dataset repo of published results: owner/name[@revision][/folder]
    wise_base: str | None = None  # base weights in the tuned model's layout (None: `base`)
    catalog: list[Path] | None = None  # extra catalog YAML files/folders (default: synth's curated one)
    device: str | None = None  # None: cuda when available
    offline_world: bool = False  # show the offline-world banner
    base_name: str = "Base CLIP"
    tuned_name: str = "CultureCLIP"
    max_index_images: int = 20000  # images embedded for search / twin explorer
    batch_size: int = 64
    # label banks, the default dataset, live evaluations (None: CULTURECLIP_CACHE or ~/.cache/cultureclip)
    cache_dir: Path | None = None
    bank_cache_mb: int = 256
    # memory for WiSE-FT blends kept ready (None: 40% of the memory available at first use, at most 6 GB: every
    # slider alpha of a ViT-B/32 (9 x 0.6 GB) on a 16 GB Space, so a precomputed alpha answers like a warm query)
    blend_cache_mb: int | None = None
    # without `dataset`: render the bundled world's concepts at the models' resolution (synth.world.dataset)
    default_dataset: bool = True
    eval_on_start: bool = False  # evaluate both models on the dataset's test split at startup (background)

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset).expanduser() if self.dataset else None
        self.results = Path(self.results).expanduser() if self.results else None
        self.catalog = [Path(p) for p in self.catalog] if self.catalog else None
        if self.cache_dir:
            self.cache_dir = Path(self.cache_dir).expanduser()
        else:
            self.cache_dir = default_cache_dir()
