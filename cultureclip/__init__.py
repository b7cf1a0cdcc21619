"""CultureCLIP: culture-aware CLIP fine-tuning with cultural twins as hard negatives.

Importing this package is cheap and side-effect free: heavy modules (open_clip, transformers,
peft, accelerate) are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"
