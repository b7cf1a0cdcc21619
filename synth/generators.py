"""Image generators for the `images` stage: one small interface, several implementations.

`ImageRequest` and `ImageGenerator` are the contract between the synthesis engine and anything
that turns a prompt into pixels (a diffusers pipeline, the offline world's procedural renderer, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class ImageRequest:
    item_id: str            # content-hash id of the item (stable across runs)
    concept_id: str         # catalog concept id
    prompt: str             # the caption to render
    seed: int               # derived with hashlib from item_id; fully determines the image
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512


@runtime_checkable
class ImageGenerator(Protocol):
    name: str  # recorded in the manifest's generator.model field

    def settings(self) -> dict:
        """JSON-able settings that determine the output (part of the stage's config fingerprint)."""
        ...

    def generate(self, requests: list[ImageRequest]) -> list[Image.Image]:
        """Render one image per request, in order. Same request -> same pixels."""
        ...
