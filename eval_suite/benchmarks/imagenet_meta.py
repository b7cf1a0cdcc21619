"""ImageNet-1k class metadata: WordNet ids, CLIP class names, the 80 OpenAI templates, and a check
for class names that are really ids.

- Class names and templates are open_clip's (`open_clip.zero_shot_metadata`: `IMAGENET_CLASSNAMES`,
  `OPENAI_IMAGENET_TEMPLATES`, the names and prompts OpenAI's CLIP paper used).
- The WordNet-id order (`data/imagenet_wnids.txt`, sources in its header) is the sorted synset order,
  which is the label index of torchvision's `ImageFolder` on the val tree, of HF `imagenet-1k`'s
  `label` ClassLabel and of `IMAGENET_CLASSNAMES`.
"""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

WNID_RE = re.compile(r"^n\d{8}$")
_DATA = Path(__file__).resolve().parent / "data" / "imagenet_wnids.txt"


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order."""
    ids = tuple(ln.strip() for ln in _DATA.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.startswith("#"))
    if len(ids) != 1000 or any(not WNID_RE.match(w) for w in ids):  # pragma: no cover - shipped data
        raise RuntimeError(f"{_DATA.name} must list 1000 WordNet ids")
    return ids


@functools.lru_cache(maxsize=1)
def imagenet_classnames() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


@functools.lru_cache(maxsize=1)
def openai_templates() -> tuple[str, ...]:
    """The 80 OpenAI ImageNet prompt templates, with a `{c}` placeholder (clip_benchmark convention)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{c}") for t in OPENAI_IMAGENET_TEMPLATES)


def wnid_classnames(wnids: Sequence[str]) -> list[str] | None:
    """CLIP class names for ImageNet WordNet ids (None unless every id is one of the 1000)."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    if not wnids or any(w not in index for w in wnids):
        return None
    names = imagenet_classnames()
    return [names[index[w]] for w in wnids]


def is_imagenet_classlabel(names: Sequence[str]) -> bool:
    """True for a 1000-class ClassLabel in ImageNet order: HF `imagenet-1k` names its classes with the
    raw synset strings (`"tench, Tinca tinca"`), others with WordNet ids or the CLIP names."""
    if len(names) != 1000:
        return False
    first = [str(n).split(",")[0].strip().lower() for n in names[:3]]
    return (first == ["tench", "goldfish", "great white shark"] or list(names[:3]) == list(imagenet_wnids()[:3]))


def id_like(names: Sequence[str]) -> list[str]:
    """The class names that look like ids rather than words (WordNet ids, bare numbers, hashes)."""
    out = []
    for n in names:
        s = str(n).strip()
        if WNID_RE.match(s) or s.isdigit() or re.fullmatch(r"[0-9a-f]{16,}", s) or not any(c.isalpha() for c in s):
            out.append(s)
    return out


def warn_if_id_like(bench_name: str, names: Sequence[str], where: str) -> str | None:
    """Log a loud warning (and return its text) when class names look like ids: zero-shot prompts built
    from them ("a photo of a n01440764.") score near chance while looking like a valid run."""
    bad = id_like(names)
    if not bad:
        return None
    msg = (f"{bench_name}: {len(bad)} of {len(names)} class names look like ids, not words "
           f"(e.g. {bad[:3]}), read from {where}. Zero-shot prompts built from ids score near chance. "
           "Put one readable name per line (in class-index order) in classnames.txt beside the data, "
           "or use an ImageNet WordNet-id tree (mapped automatically).")
    logger.warning("%s", msg)
    return msg
