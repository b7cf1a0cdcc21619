"""The one image-to-RGB policy, used by every path that feeds pixels to a model.

Evaluation, training, the synthesis filters and the demo all call `to_rgb` before any resize, so an
image gives the same pixels whichever backbone or entry point reads it.

Alpha policy: transparency is composited onto WHITE (how a browser shows a transparent PNG, and what
transformers' `CLIPImageProcessor` does). Palette images with a transparent colour count as
transparent.

High bit depth: 16-bit and 32-bit integer greyscale images (Pillow modes `I;16`, `I;16L`, `I;16B`,
`I;16N` and `I`: 16-bit PNGs and TIFFs, medical and scientific scans) are scaled to 8 bits before
conversion, because Pillow's `convert("RGB")` clips them at 255 and a 16-bit gradient comes out almost
all white. A 16-bit value v becomes round(v / 257), so 0 -> 0 and 65535 -> 255 (the full 16-bit range
onto the full 8-bit range, like `convert` does for 8-bit data). Mode `I` holds 16-bit files as often as
true 32-bit data: values within 0..65535 are scaled as 16-bit; any other range (negative, or above
65535) is stretched linearly from the image's own minimum and maximum to 0..255 (a constant image
becomes black).

Everything else (L, CMYK, YCbCr, palette without transparency, float `F`, ...) is converted with
Pillow's own `convert("RGB")`.

Converting before resizing matters: Pillow resizes palette ("P") images with nearest-neighbour
whatever filter is asked for, and resizes RGBA with premultiplied alpha, so resize-then-convert gives
other pixels than convert-then-resize.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND = (255, 255, 255)
# bump when the pixels `to_rgb` gives for some image change (embedding caches key on it)
POLICY_VERSION = 2  # 2: 16/32-bit integer images scaled to 8 bits (were clipped by Pillow)
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def has_alpha(img: Image.Image) -> bool:
    """True when the image carries transparency (an alpha band, or a palette/colour key)."""
    return "A" in img.getbands() or "a" in img.mode or img.info.get("transparency") is not None


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer greyscale image as 8-bit greyscale ("L"), scaled as the module doc says."""
    arr = np.asarray(img).astype(np.float64)  # (H, W); I;16B etc. come out in native order
    if arr.size == 0:
        return Image.new("L", img.size)
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode != "I" or (lo >= 0 and hi <= 65535):
        out = arr / 257.0  # 16-bit range -> 8-bit range
    elif hi > lo:
        out = (arr - lo) * (255.0 / (hi - lo))
    else:
        out = np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """A new, loaded RGB image (safe to use after the source file is closed); transparent pixels are
    composited onto white; 16/32-bit integer images are scaled to 8 bits first."""
    if img.mode in HIGH_BIT_MODES:
        return to_8bit(img).convert("RGB")
    if has_alpha(img):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")
