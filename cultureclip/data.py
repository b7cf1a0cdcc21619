"""CulTwin manifest reading and validation, the twin-aware batch sampler, dataset and collate.

Manifest (ARCHITECTURE.md): `<dataset>/manifest.parquet` with one row per image and images under the
dataset folder. `read_manifest` checks it and lists the first offending rows when something is wrong.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .image import to_rgb
from .twins import twins_by_concept  # noqa: F401  (pairs -> twins per concept: cultureclip.twins)

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "image_id", "image_path", "concept_id", "concept_name", "culture", "region", "category",
    "caption", "concept_prompt", "twin_concept_ids", "split",
)
OPTIONAL_COLUMNS = ("generator", "scores", "sha256")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS  # the column order writers use
MAX_LISTED = 10


class ManifestError(ValueError):
    """The manifest is malformed; the message lists the first offending rows and how to fix them."""


def _rows_msg(problem: str, rows: list[str], fix: str) -> str:
    shown = "\n  ".join(rows[:MAX_LISTED])
    more = f"\n  ... and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"{problem} ({len(rows)} row(s)):\n  {shown}{more}\nFix: {fix}"


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return []
        if s.startswith("["):
            return [str(x) for x in json.loads(s)]
        return [x.strip() for x in s.split(",") if x.strip()]
    if isinstance(v, float) and np.isnan(v):
        return []
    return [str(x) for x in list(v)]


def _image_ok(path: Path) -> str | None:
    """None if the file is a readable image, else the reason."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() does not decode; load() catches truncated data
            im.load()
        return None
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad image
        return f"{type(e).__name__}: {e}"


def twin_pairs(concept_ids: Iterable[Any], twin_lists: Iterable[Any]) -> list[tuple[str, str]]:
    """The twin pairs a manifest's rows name: sorted unordered pairs (a, b), a < b, both present in the rows.

    ``concept_ids`` and ``twin_lists`` are parallel columns (``frame["concept_id"]``,
    ``frame["twin_concept_ids"]``, or the same fields of records). The one definition used by export,
    training validation, evaluation and the demo; `cultureclip.twins` works from these pairs.
    """
    ids = [str(c) for c in concept_ids]
    lists = [_as_list(t) for t in twin_lists]
    present = set(ids)
    return sorted({tuple(sorted((c, str(t)))) for c, ts in zip(ids, lists) for t in ts
                   if str(t) in present and str(t) != c})


def concept_prompts(concept_ids: Iterable[Any], prompts: Iterable[Any], names: Iterable[Any] | None = None) -> dict[str, str]:
    """concept id -> its concept prompt (the first row's; its name when the prompt is empty)."""
    out: dict[str, str] = {}
    rows = zip(concept_ids, prompts, names) if names is not None else ((c, p, None) for c, p in zip(concept_ids, prompts))
    for cid, prompt, name in rows:
        text = "" if prompt is None or (isinstance(prompt, float) and np.isnan(prompt)) else str(prompt)
        out.setdefault(str(cid), text or str(name or cid))
    return out


@dataclass
class Manifest:
    """A validated manifest: the frame plus the dataset root and what was skipped."""

    frame: Any  # pandas.DataFrame
    root: Path
    skipped: list[dict] = field(default_factory=list)

    def split(self, name: str) -> "Manifest":
        df = self.frame[self.frame["split"] == name].reset_index(drop=True)
        if len(df) == 0:
            raise ManifestError(f"split {name!r} is empty in {self.root}; splits present: {sorted(self.frame['split'].unique())}")
        return Manifest(df, self.root, self.skipped)

    def image_path(self, i: int) -> Path:
        return self.root / self.frame["image_path"].iat[i]

    def fingerprint(self) -> str:
        """Hash of (image_id, sha256/path, caption, split) of every row: identifies the data a run saw."""
        h = hashlib.sha256()
        cols = [c for c in ("image_id", "sha256", "image_path", "caption", "split") if c in self.frame.columns]
        for row in self.frame[cols].astype(str).itertuples(index=False):
            h.update("\x1f".join(row).encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.frame)


def read_manifest(
    path: str | Path,
    check_images: bool = True,
    skip_bad_images: bool = False,
) -> Manifest:
    """Read and validate `<dataset>/manifest.parquet` (or a direct path to a .parquet file).

    check_images: open every image (catches missing, truncated and non-image files).
    skip_bad_images: drop rows with missing/unreadable images (counted in `.skipped`) instead of failing.
    """
    import pandas as pd

    path = Path(path)
    file = path / "manifest.parquet" if path.is_dir() else path
    if not file.is_file():
        raise ManifestError(
            f"no manifest at {file}. A CulTwin dataset folder holds manifest.parquet and images/; "
            "build one with `python -m synth.run --config configs/synth/smoke.yaml` or `make offline-world`."
        )
    root = file.parent
    try:
        df = pd.read_parquet(file)
    except Exception as e:  # noqa: BLE001
        raise ManifestError(f"{file} is not a readable Parquet file: {type(e).__name__}: {e}") from e

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{file} lacks required column(s) {missing} (found: {list(map(str, df.columns))}); required: "
            f"{list(REQUIRED_COLUMNS)}. "
            "Re-export the dataset with `synth.run --stages export`."
        )
    df = df.reset_index(drop=True)
    df["twin_concept_ids"] = [_as_list(v) for v in df["twin_concept_ids"]]

    empty = [f"row {i} image_id={df['image_id'].iat[i]!r}: empty {c}" for c in ("image_id", "image_path", "concept_id", "caption")
             for i in np.flatnonzero(df[c].isna().to_numpy() | (df[c].astype(str).str.strip() == "").to_numpy())]
    if empty:
        raise ManifestError(_rows_msg(f"{file}: required values are empty", empty, "fill the values or drop the rows"))
    dup = df["image_id"][df["image_id"].duplicated()].tolist()
    if dup:
        raise ManifestError(_rows_msg(f"{file}: duplicate image_id", [repr(d) for d in dup], "image ids must be unique"))
    bad_split = [f"row {i}: split={s!r}" for i, s in enumerate(df["split"]) if s not in ("train", "val", "test")]
    if bad_split:
        raise ManifestError(_rows_msg(f"{file}: invalid split values", bad_split, "use train, val or test"))

    concepts = set(df["concept_id"].astype(str))
    bad_twins = [
        f"row {i} image_id={df['image_id'].iat[i]!r} concept={df['concept_id'].iat[i]!r}: twin {t!r} names no concept in the manifest"
        for i, twins in enumerate(df["twin_concept_ids"]) for t in twins if t not in concepts
    ]
    if bad_twins:
        raise ManifestError(_rows_msg(
            f"{file}: twin_concept_ids name unknown concepts", bad_twins,
            "every twin id must be the concept_id of some row; export twins together or drop the links",
        ))
    self_twins = [f"row {i}: concept {c!r} lists itself as twin" for i, (c, ts) in enumerate(zip(df["concept_id"], df["twin_concept_ids"])) if c in ts]
    if self_twins:
        raise ManifestError(_rows_msg(f"{file}: self-twins", self_twins, "a twin must be a different concept"))

    bad_paths = []
    bad_images = []
    root_resolved = root.resolve()
    for i, rel in enumerate(df["image_path"].astype(str)):
        p = (root / rel).resolve()
        if root_resolved not in p.parents:
            bad_paths.append(f"row {i} image_id={df['image_id'].iat[i]!r}: image_path {rel!r} points outside the dataset folder")
            continue
        if not p.is_file():
            bad_images.append((i, f"row {i} image_id={df['image_id'].iat[i]!r}: missing file {rel}"))
        elif check_images:
            reason = _image_ok(p)
            if reason:
                bad_images.append((i, f"row {i} image_id={df['image_id'].iat[i]!r}: unreadable image {rel} ({reason})"))
    if bad_paths:
        raise ManifestError(_rows_msg(f"{file}: unsafe image paths", bad_paths, "image_path must be relative to the dataset folder"))
    skipped: list[dict] = []
    if bad_images:
        if not skip_bad_images:
            raise ManifestError(_rows_msg(
                f"{file}: missing or unreadable images", [m for _, m in bad_images],
                "restore the files, or pass skip_bad_images=True (train: data.skip_bad_images=true) to skip and count them",
            ))
        drop = [i for i, _ in bad_images]
        skipped = [{"row": i, "image_id": str(df["image_id"].iat[i]), "reason": m} for i, m in bad_images]
        logger.warning("skipping %d missing/unreadable images in %s", len(drop), file)
        df = df.drop(index=drop).reset_index(drop=True)
    return Manifest(df, root, skipped)


def mix_replay(train: Manifest, replay: Manifest, ratio: float, seed: int = 0, epoch: int = 0) -> Manifest:
    """Train rows plus round(ratio x len(train)) rows of `replay` (sampled without replacement, seeded;
    `epoch` > 0 draws another sample per epoch, epoch 0 the run's first).

    Replay rows keep no twin links; their concept ids are prefixed so they never collide with the train
    split's concepts. Image paths become absolute so both datasets' files resolve."""
    import pandas as pd

    if ratio < 0:
        raise ValueError(f"replay_ratio must be >= 0, got {ratio}")
    n = min(len(replay), int(round(ratio * len(train))))
    rng = np.random.default_rng([seed, 7] if epoch == 0 else [seed, 7, epoch])
    pick = replay.frame.iloc[np.sort(rng.choice(len(replay), size=n, replace=False))].copy()
    pick["concept_id"] = "replay:" + pick["concept_id"].astype(str)
    pick["twin_concept_ids"] = [[] for _ in range(len(pick))]
    pick["image_path"] = [str((replay.root / p).resolve()) for p in pick["image_path"]]
    pick["split"] = train.frame["split"].iat[0]
    own = train.frame.copy()
    own["image_path"] = [str((train.root / p).resolve()) for p in own["image_path"]]
    frame = pd.concat([own, pick], ignore_index=True)
    return Manifest(frame, train.root, train.skipped + replay.skipped)


# --------------------------------------------------------------------------------------------------
# Twin-aware batch sampler
# --------------------------------------------------------------------------------------------------


class TwinBatchSampler:
    """Yields batches (lists of row indices) in which both sides of a twin pair sit together.

    Each epoch: images of every concept are shuffled; twin pairs are visited in a shuffled order and
    each visit takes `per_side` images from both sides as one unit, until no pair has both sides left;
    leftover images become single units. Units are shuffled and packed into batches without splitting.
    Every image appears exactly once per epoch (single process). Deterministic for (seed, epoch).

    Distributed: batches are built for the GLOBAL batch (batch_size * num_replicas) so twins meet across
    ranks after feature gathering; rank r takes the r-th contiguous slice. The last global batch is padded
    with images from the epoch's start so every rank runs the same number of steps.
    With ``local=True`` (a loss that does not gather: ``loss.negatives=local``) each rank's batch is packed
    on its own, so both sides of a pair sit in one rank's batch; rank r takes batches r, r + N, ...; the
    last batch is padded and the batch count rounded up to a multiple of N with batches from the epoch's start.
    """

    def __init__(
        self,
        concept_ids: Sequence[str],
        twin_concept_ids: Sequence[Sequence[str]],
        batch_size: int,
        seed: int = 0,
        per_side: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        local: bool = False,
    ):
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 so a twin pair fits in one batch")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.per_side = max(1, int(per_side))
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = drop_last
        self.epoch = 0
        self.by_concept: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(concept_ids):
            self.by_concept[str(c)].append(i)
        self.n = len(concept_ids)
        pairs = set()
        for c, twins in zip(concept_ids, twin_concept_ids):
            for t in twins:
                if str(t) in self.by_concept and str(t) != str(c):
                    pairs.add(tuple(sorted((str(c), str(t)))))
        self.pairs = sorted(pairs)
        self.local = bool(local)
        self.global_batch = self.batch_size * self.num_replicas
        self.pack = self.batch_size if self.local else self.global_batch  # the items that meet in one softmax
        if 2 * self.per_side > self.pack:
            raise ValueError("per_side too large for the batch size")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pools = {c: list(rng.permutation(idx)) for c, idx in sorted(self.by_concept.items())}
        units: list[list[int]] = []
        active = list(self.pairs)
        while active:
            order = rng.permutation(len(active))
            still = []
            for j in order:
                a, b = active[j]
                if len(pools[a]) >= 1 and len(pools[b]) >= 1:
                    k = min(self.per_side, len(pools[a]), len(pools[b]))
                    unit = pools[a][:k] + pools[b][:k]
                    pools[a], pools[b] = pools[a][k:], pools[b][k:]
                    units.append([int(x) for x in unit])
                    if pools[a] and pools[b]:
                        still.append(active[j])
            active = still
        for c in sorted(pools):
            units.extend([[int(x)] for x in pools[c]])
        units = [units[i] for i in rng.permutation(len(units))]
        batches: list[list[int]] = []
        cur: list[int] = []
        pending: list[list[int]] = []  # units that did not fit: start the next batch
        for u in units:
            if len(cur) + len(u) <= self.pack:
                cur.extend(u)
            else:
                pending.append(u)  # later, smaller units may still fill this batch
            if len(cur) == self.pack:
                batches.append(cur)
                cur = []
                while pending and len(cur) + len(pending[0]) <= self.pack:
                    cur.extend(pending.pop(0))
        for u in pending:
            if len(cur) + len(u) > self.pack:
                batches.append(cur)
                cur = []
            cur.extend(u)
        if cur:
            batches.append(cur)
        return batches

    def _padded_batches(self) -> list[list[int]]:
        """The epoch's packed batches, full-size when several ranks must step together (or drop_last);
        in local mode also a multiple of num_replicas in number."""
        batches = self._global_batches()
        if self.num_replicas > 1 or self.drop_last:
            if self.drop_last:
                batches = [b for b in batches if len(b) == self.pack]
            else:
                flat_start = [i for b in batches for i in b]
                for b in batches:
                    if len(b) < self.pack:
                        need = self.pack - len(b)
                        b.extend(flat_start[:need] if need <= len(flat_start) else (flat_start * (need // max(1, len(flat_start)) + 1))[:need])
        if self.local and self.num_replicas > 1:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % self.num_replicas]
            else:
                extra = -len(batches) % self.num_replicas
                batches = batches + [list(batches[i % len(batches)]) for i in range(extra)] if batches else batches
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._padded_batches()
        if self.local:
            yield from batches[self.rank :: self.num_replicas]
            return
        for b in batches:
            if self.num_replicas == 1:
                yield b
            else:
                yield b[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        """Batches (steps) per epoch for this rank."""
        if self.local:
            return len(self._padded_batches()) // self.num_replicas
        batches = self._global_batches()
        return sum(1 for b in batches if len(b) == self.pack) if self.drop_last else len(batches)


# --------------------------------------------------------------------------------------------------
# Dataset and collate
# --------------------------------------------------------------------------------------------------


class CulTwinDataset(torch.utils.data.Dataset):
    """Items for the twin-aware loss: image, caption, concept index, concept prompt, twin caption/prompt.

    The twin caption is a caption of one of the concept's twins, chosen deterministically per
    (seed, epoch, item), with up to ``TWIN_CANDIDATES`` other captions of that twin in random order
    (`twin_caption_candidates`: the trainer takes the first one the batch does not already hold);
    items whose concept has no twin in the manifest get `has_twin=False`. With ``twin_images`` an
    image of the same twin concept (another row, `twin_image_index`) is loaded too.
    """

    TWIN_CANDIDATES = 4

    def __init__(self, manifest: Manifest, transform: Callable[[Image.Image], torch.Tensor], seed: int = 0,
                 skip_bad_images: bool = False, cache_images: bool = False, twin_images: bool = False):
        self.m = manifest
        self.cache_images = cache_images  # keep decoded images in memory (small datasets, many epochs)
        self._cache: dict[int, Image.Image] = {}
        df = manifest.frame
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.skip_bad_images = skip_bad_images
        self.bad_images = 0
        self.concepts = sorted(df["concept_id"].astype(str).unique())
        self.concept_index = {c: i for i, c in enumerate(self.concepts)}
        self.concept_ids = df["concept_id"].astype(str).tolist()
        self.captions = df["caption"].astype(str).tolist()
        self.twin_concept_ids = [list(t) for t in df["twin_concept_ids"]]  # per row: its twins' concept ids
        prompts: dict[str, str] = {}
        caps: dict[str, list[str]] = defaultdict(list)
        for c, p, cap in zip(self.concept_ids, df["concept_prompt"].astype(str), self.captions):
            prompts.setdefault(c, p)
            caps[c].append(cap)
        self.prompt_of = prompts
        self.captions_of = {c: sorted(set(v)) for c, v in caps.items()}
        self.twin_images = twin_images
        self.rows_of: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.concept_ids):
            self.rows_of[c].append(i)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.m)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i])

    def _load(self, i: int) -> Image.Image:
        img = self._cache.get(i)
        if img is None:
            with Image.open(self.m.image_path(i)) as im:
                img = to_rgb(im)
            if self.cache_images:
                self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> dict | None:
        path = self.m.image_path(i)
        try:
            img = self._load(i)
        except Exception as e:  # noqa: BLE001
            if not self.skip_bad_images:
                raise ManifestError(f"unreadable image {path} (row {i}): {e}. Set skip_bad_images to skip such rows.") from e
            self.bad_images += 1
            return None
        c = self.concept_ids[i]
        twins = [t for t in self.twin_concept_ids[i] if t in self.captions_of]
        rng = self._rng(i)
        item = {
            "index": i,
            "image": self.transform(img),
            "caption": self.captions[i],
            "concept_id": self.concept_index[c],
            "prompt": self.prompt_of[c],
            "has_twin": bool(twins),
            "twin_caption": "",
            "twin_prompt": "",
            "twin_concept_id": -1,
            "twin_caption_candidates": [],
        }
        if twins:
            t = twins[int(rng.integers(len(twins)))]
            caps = self.captions_of[t]
            item["twin_caption"] = caps[int(rng.integers(len(caps)))]
            order = rng.permutation(len(caps))[: self.TWIN_CANDIDATES]
            item["twin_caption_candidates"] = [caps[int(k)] for k in order]
            item["twin_prompt"] = self.prompt_of[t]
            item["twin_concept_id"] = self.concept_index[t]
            if self.twin_images:
                rows = self.rows_of[t]
                r = rows[int(rng.integers(len(rows)))]
                try:
                    item["twin_image"] = self.transform(self._load(r))
                    item["twin_image_index"] = r
                except Exception as e:  # noqa: BLE001 - a bad twin image only loses that negative
                    if not self.skip_bad_images:
                        raise ManifestError(f"unreadable image {self.m.image_path(r)} (row {r}): {e}. "
                                            "Set skip_bad_images to skip such rows.") from e
        return item


@dataclass
class CulTwinBatch:
    """A twin-aware batch from ``collate``: B items (and M twin images), one name per idea, the names the loss
    uses (``cultureclip.loss.LossInputs``). Concept ids here are indices into the dataset's sorted concepts;
    texts stay strings (tokenized by the trainer with the backbone's tokenizer)."""

    index: Tensor  # (B,) dataset rows
    images: Tensor  # (B, 3, H, W)
    captions: list[str]
    concept_ids: Tensor  # (B,) long
    prompts: list[str]  # each item's concept prompt
    has_twin: Tensor  # (B,) bool
    twin_captions: list[str]  # one caption of the item's twin ("" without a twin)
    twin_prompts: list[str]
    twin_concept_ids: Tensor  # (B,) long: the twin's concept, -1 without a twin
    twin_caption_candidates: list[list[str]]  # captions of the twin to choose one outside the batch from
    twin_images: Tensor | None  # (M, 3, H, W): one image of the twin for the items that have one, or None
    twin_image_index: Tensor  # (M,) their dataset rows
    twin_image_concept_ids: Tensor  # (M,) their concepts


def collate(items: list[dict | None]) -> CulTwinBatch | None:
    """Stack images; keep texts as lists. None when every item was skipped (unreadable images)."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    twins = [it for it in items if "twin_image" in it]
    return CulTwinBatch(
        index=torch.tensor([it["index"] for it in items]),
        images=torch.stack([it["image"] for it in items]),
        captions=[it["caption"] for it in items],
        concept_ids=torch.tensor([it["concept_id"] for it in items], dtype=torch.long),
        prompts=[it["prompt"] for it in items],
        has_twin=torch.tensor([it["has_twin"] for it in items], dtype=torch.bool),
        twin_captions=[it["twin_caption"] for it in items],
        twin_prompts=[it["twin_prompt"] for it in items],
        twin_concept_ids=torch.tensor([it["twin_concept_id"] for it in items], dtype=torch.long),
        twin_caption_candidates=[it.get("twin_caption_candidates", []) for it in items],
        twin_images=torch.stack([it["twin_image"] for it in twins]) if twins else None,
        twin_image_index=torch.tensor([it["twin_image_index"] for it in twins], dtype=torch.long),
        twin_image_concept_ids=torch.tensor([it["twin_concept_id"] for it in twins], dtype=torch.long),
    )
