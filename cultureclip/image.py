"""The one image-to-RGB policy, used by every path that feeds pixels to a model.

Evaluation, training, the synthesis filters and the demo all call `to_rgb` before any resize, so an
image gives the same pixels whichever backbone or entry point reads it.

Alpha policy: transparency is composited onto WHITE (how a browser shows a transparent PNG, and what
transformers' `CLIPImageProcessor` does). Palette images with a transparent colour count as
transparent. Everything else (L, CMYK, YCbCr, palette without transparency, ...) is converted with
Pillow's own `convert("RGB")`.

Converting before resizing matters: Pillow resizes palette ("P") images with nearest-neighbour
whatever filter is asked for, and resizes RGBA with premultiplied alpha, so resize-then-convert gives
other pixels than convert-then-resize.
"""
from __future__ import annotations

from PIL import Image

BACKGROUND = (255, 255, 255)


def has_alpha(img: Image.Image) -> bool:
    """True when the image carries transparency (an alpha band, or a palette/colour key)."""
    return "A" in img.getbands() or "a" in img.mode or img.info.get("transparency") is not None


def to_rgb(img: Image.Image) -> Image.Image:
    """A new, loaded RGB image (safe to use after the source file is closed); transparent pixels are
    composited onto white."""
    if has_alpha(img):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")
