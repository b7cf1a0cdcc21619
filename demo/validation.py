"""Input checks for the demo: every bad input becomes a `DemoInputError` with a message for the UI.

Nothing here raises anything else for user input, so a handler can catch one exception type and show
its message (never a traceback) while the app keeps serving.
"""
from __future__ import annotations

import ctypes
import io
import logging
import os
import platform
import re
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from cultureclip.image import has_alpha, to_rgb

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024  # also passed to launch(max_file_size=...)
MAX_PIXELS = 40_000_000  # refuse anything larger than ~40 MP before decoding (decompression bombs)
MAX_SIDE = 1024  # larger images are downscaled before the model sees them (it crops to ~224 anyway)
MAX_LABELS = 1000
MAX_LABEL_CHARS = 200
MAX_QUERY_CHARS = 300


class DemoInputError(ValueError):
    """Bad user input; the message is shown in the UI as is."""


@dataclass
class LabelList:
    """Cleaned candidate labels plus notes to show the user (dropped duplicates, cap applied...)."""

    labels: list[str]
    notes: list[str] = field(default_factory=list)


def _clean_text(text: str) -> str:
    """NFC-normalize, drop control characters, collapse whitespace (unicode letters are kept as is)."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t ")
    return " ".join(text.split())


def parse_labels(raw: str | list[str] | None, max_labels: int = MAX_LABELS) -> LabelList:
    """Candidate labels from a comma/newline separated string or a list.

    Empty entries are dropped, duplicates (case-insensitive) removed, over-long labels cut and the
    list capped at `max_labels`, each with a note. Raises DemoInputError when nothing is left."""
    if raw is None:
        items: list[str] = []
    elif isinstance(raw, str):
        items = raw.replace("\r", "\n").replace("\n", ",").split(",")
    elif isinstance(raw, (list, tuple)):
        items = [str(x) for x in raw if x is not None]
    else:
        raise DemoInputError(f"labels must be text, got {type(raw).__name__}")
    notes: list[str] = []
    seen: set[str] = set()
    labels: list[str] = []
    dups = 0
    cut = 0
    for item in items:
        label = _clean_text(item)
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS:
            label = label[:MAX_LABEL_CHARS].rstrip()
            cut += 1
        key = label.casefold()
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        labels.append(label)
    if not labels:
        raise DemoInputError(
            "No candidate labels: pick concepts from the catalog or type labels separated by commas "
            "(at least two, to compare)."
        )
    if dups:
        notes.append(f"Removed {dups} duplicate label(s).")
    if cut:
        notes.append(f"Shortened {cut} label(s) to {MAX_LABEL_CHARS} characters.")
    if len(labels) > max_labels:
        notes.append(
            f"{len(labels):,} labels given; only the first {max_labels:,} are used (the limit per query). "
            "Narrow the list with the catalog filters."
        )
        labels = labels[:max_labels]
    if len(labels) == 1:
        notes.append("Only one label: its probability is always 100%. Add at least one alternative.")
    return LabelList(labels, notes)


def clean_query(text: str | None) -> str:
    """A search query: cleaned, non-empty, at most MAX_QUERY_CHARS characters."""
    if not isinstance(text, str):
        raise DemoInputError("Type a text query: describe the image to look for.")
    q = _clean_text(text)
    if not q:
        raise DemoInputError("The query is empty: type what to look for (the suggestions below are in the dataset).")
    return q[:MAX_QUERY_CHARS]


def _open_checked(src, max_side: int = MAX_SIDE) -> Image.Image:
    """Open lazily (header only), refuse bombs before any pixel is decoded.

    Pillow's own warning (above ~89 MP) is not ours to show: a legit large JPEG is decoded at reduced
    scale (JPEG draft mode, up to 1/8 per side) and the MAX_PIXELS limit applies to what is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
    except Image.DecompressionBombError as e:
        raise DemoInputError(
            f"Image refused: it declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels, more than "
            "the server decodes safely (this protects it from decompression bombs). Resize it and try again."
        ) from e
    except UnidentifiedImageError as e:
        raise DemoInputError(
            "This file is not an image PIL can read. Upload a JPEG, PNG, WebP, GIF or BMP picture."
        ) from e
    except (OSError, ValueError, SyntaxError) as e:
        raise DemoInputError(f"Could not read the image ({type(e).__name__}): upload a valid picture.") from e
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DemoInputError("The image has no pixels.")
    if img.format == "JPEG" and max(w, h) > 2 * max_side:
        try:
            img.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale: fast and small
        except (OSError, ValueError) as e:
            raise DemoInputError(f"Could not read the image ({type(e).__name__}): upload a valid picture.") from e
    dw, dh = img.size  # the size that will be decoded
    if dw * dh > MAX_PIXELS:
        raise DemoInputError(
            f"Image refused: {w}x{h} = {w * h / 1e6:.0f} megapixels is more than the {MAX_PIXELS / 1e6:.0f} MP "
            "limit (this protects the server from decompression bombs). Resize it and try again."
        )
    return img


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
LARGE_DECODE_PIXELS = 4_000_000  # after decoding more than this, freed heap memory is handed back (see release_memory)


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """Right after decoding: an integer box reduction to about 2x `max_side`, so the full-size buffer
    is dropped before any conversion or copy (a 40 MP RGBA PNG would otherwise be copied 3-4 times)."""
    factor = max(img.size) // (2 * max_side)
    if factor < 2:
        return img
    if img.mode not in ("RGB", "RGBA", "L", "LA") or (has_alpha(img) and img.mode not in ("RGBA", "LA")):
        img = to_rgb(img)  # the shared policy: to RGB before any resize (palettes, colour keys, CMYK, ...)
    # RGBA/LA are reduced with premultiplied alpha, which commutes with compositing onto white later
    return img.reduce(factor)


_LIBC: Any = None


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc's `malloc_trim`); a no-op elsewhere.

    Pillow allocates large images in 16 MB blocks; once glibc's dynamic mmap threshold has grown, such
    blocks come from the heap and stay in the process after they are freed, so RSS would only grow."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                _LIBC = ctypes.CDLL("libc.so.6")
            except OSError:
                _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def load_image(src, max_side: int = MAX_SIDE, max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """A safe RGB PIL image from an upload path, raw bytes (an inline upload) or a PIL image; downscaled
    to at most `max_side` while decoding (JPEG draft, then a box reduction), so at most one full-size
    buffer exists per call and it is released before returning.

    Raises DemoInputError for missing/empty/huge/non-image/corrupt/truncated files and bombs."""
    if src is None:
        raise DemoInputError("No image: upload, paste or pick an example image first.")
    own = True  # may we modify `img` in place
    if isinstance(src, Image.Image):
        img = src
        own = False
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise DemoInputError(f"Image refused: {w}x{h} is more than the {MAX_PIXELS / 1e6:.0f} MP limit.")
        if w <= 0 or h <= 0:
            raise DemoInputError("The image has no pixels.")
    elif isinstance(src, (bytes, bytearray, memoryview)):
        size = len(src)
        if size == 0:
            raise DemoInputError("The image is empty (0 bytes).")
        if size > max_bytes:
            raise DemoInputError(f"The image is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        img = _open_checked(io.BytesIO(bytes(src)), max_side)
    else:
        if not isinstance(src, (str, os.PathLike)):
            raise DemoInputError(f"Expected an image upload, got {type(src).__name__}.")
        path = Path(src)
        if not path.is_file():
            raise DemoInputError("The uploaded file is missing on the server; upload it again.")
        size = path.stat().st_size
        if size == 0:
            raise DemoInputError("The uploaded file is empty (0 bytes).")
        if size > max_bytes:
            raise DemoInputError(f"The file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        img = _open_checked(path, max_side)
    large = img.size[0] * img.size[1] > LARGE_DECODE_PIXELS
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img.load()
        orientation = img.getexif().get(0x0112, 1)  # EXIF orientation, applied after shrinking
        shrunk = _shrink(img, max_side)
        if shrunk is not img:
            if own:
                img.close()  # the full-size buffer goes now
            img, own = shrunk, True
        if img.mode != "RGB" or has_alpha(img):  # plain RGB is kept as is (no full-size copy)
            img, own = to_rgb(img), True  # the one alpha policy (composite onto white), shared with eval and training
        if orientation in _TRANSPOSE:
            img, own = img.transpose(_TRANSPOSE[orientation]), True
        if max(img.size) > max_side:
            if not own:
                img = img.copy()
            img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    except DemoInputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise DemoInputError(
            f"The image is corrupt or truncated and cannot be decoded ({type(e).__name__}). Upload a complete file."
        ) from e
    finally:
        if large:
            release_memory()
    return img


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when `path` resolves to a location inside folder `root` (symlinks resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except (ValueError, OSError):
        return False


_ABS_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"<>|]+/)+([^\s/'\"<>|]*)")


def scrub_paths(text: str) -> str:
    """A message without absolute server paths: each `/a/b/c.png` becomes `c.png` (shown to users)."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a server folder)", str(text))


def clean_int(value, name: str, lo: int, hi: int) -> int:
    """A whole number from a slider or an API call, clamped to [lo, hi]; NaN, text or None -> DemoInputError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{name} must be a whole number from {lo} to {hi}; got {str(value)[:40]!r}.") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise DemoInputError(f"{name} must be a whole number from {lo} to {hi}; got {v}.")
    return int(min(hi, max(lo, round(v))))
