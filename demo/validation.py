"""Input checks for the demo: every bad input becomes a `DemoInputError` with a message for the UI.

Nothing here raises anything else for user input, so a handler can catch one exception type and show
its message (never a traceback) while the app keeps serving.
"""
from __future__ import annotations

import logging
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

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
            "(e.g. 'gyoza, jiaozi, momo')."
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
        raise DemoInputError("Type a text query, e.g. 'a Mexican tamale on a banana leaf'.")
    q = _clean_text(text)
    if not q:
        raise DemoInputError("The query is empty: type what to look for, e.g. 'a tartan kilt'.")
    return q[:MAX_QUERY_CHARS]


def _open_checked(src) -> Image.Image:
    """Open lazily (header only), refuse bombs before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DemoInputError(f"Image refused: it declares too many pixels to decode safely ({e}).") from e
    except UnidentifiedImageError as e:
        raise DemoInputError(
            "This file is not an image PIL can read. Upload a JPEG, PNG, WebP, GIF or BMP picture."
        ) from e
    except (OSError, ValueError, SyntaxError) as e:
        raise DemoInputError(f"Could not read the image ({type(e).__name__}): upload a valid picture.") from e
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DemoInputError("The image has no pixels.")
    if w * h > MAX_PIXELS:
        raise DemoInputError(
            f"Image refused: {w}x{h} = {w * h / 1e6:.0f} megapixels is more than the {MAX_PIXELS / 1e6:.0f} MP "
            "limit (this protects the server from decompression bombs). Resize it and try again."
        )
    return img


def load_image(src, max_side: int = MAX_SIDE, max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """A safe RGB PIL image from an upload path or a PIL image; downscaled to at most `max_side`.

    Raises DemoInputError for missing/empty/huge/non-image/corrupt/truncated files and bombs."""
    if src is None:
        raise DemoInputError("No image: upload, paste or pick an example image first.")
    if isinstance(src, Image.Image):
        img = src
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise DemoInputError(f"Image refused: {w}x{h} is more than the {MAX_PIXELS / 1e6:.0f} MP limit.")
        if w <= 0 or h <= 0:
            raise DemoInputError("The image has no pixels.")
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
        img = _open_checked(path)
    try:
        if getattr(img, "format", None) == "JPEG" and max(img.size) > 2 * max_side:
            img.draft("RGB", (max_side, max_side))  # decode JPEGs at reduced scale: fast and small
        img.load()
        img = ImageOps.exif_transpose(img)
        if getattr(img, "is_animated", False):
            img.seek(0)
        if img.mode != "RGB" or has_alpha(img):  # plain RGB is kept as is (no full-size copy)
            img = to_rgb(img)  # the one alpha policy (composite onto white), shared with eval and training
        if max(img.size) > max_side:
            img = img.copy()
            img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    except DemoInputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise DemoInputError(
            f"The image is corrupt or truncated and cannot be decoded ({type(e).__name__}). Upload a complete file."
        ) from e
    return img


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when `path` resolves to a location inside folder `root` (symlinks resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except (ValueError, OSError):
        return False
