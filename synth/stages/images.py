"""images: one image per (caption, k) from any ImageGenerator, seeded from the item id, written atomically."""
from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engine import (ShardResult, StageContext, atomic_write_bytes, chunk, content_id, seed_from_id,
                      sha256_file)
from ..generators import ImageGenerator, ImageRequest

log = logging.getLogger(__name__)


def encode_png(img) -> bytes:
    """PNG bytes with no metadata, so the same pixels always give the same bytes (and sha256)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class ImageStage:
    """Shard i of captions -> shard i of images. Finished images are reused after a crash (item-level resume)."""

    name = "images"
    upstream = "captions"

    def __init__(self, generator: ImageGenerator, per_caption: int = 1, width: int = 512, height: int = 512,
                 negative_prompt: str | None = None, batch_size: int = 8, writer_threads: int = 2,
                 n_shards: int = 0):
        self.generator, self.per_caption = generator, int(per_caption)
        self.width, self.height, self.negative_prompt = int(width), int(height), negative_prompt
        self.batch_size, self.writer_threads = max(1, int(batch_size)), max(1, int(writer_threads))
        self.n_shards = int(n_shards)  # the captions stage's shard count (shard i reads captions shard i)

    def settings(self) -> dict:
        return {"generator": self.generator.settings(), "name": self.generator.name, "per_caption": self.per_caption,
                "width": self.width, "height": self.height, "negative_prompt": self.negative_prompt}

    def plan(self, ctx: StageContext) -> list[list[Any]]:
        return [[i] for i in range(self.n_shards)]  # items are read from captions shard i when processed

    def requests_for(self, captions: list[dict]) -> list[tuple[dict, ImageRequest]]:
        out = []
        for rec in captions:
            for k in range(self.per_caption):
                image_id = content_id("image", rec["caption_id"], k)
                out.append((rec, ImageRequest(item_id=image_id, concept_id=rec["concept_id"], prompt=rec["caption"],
                                              seed=seed_from_id(image_id), negative_prompt=self.negative_prompt,
                                              width=self.width, height=self.height)))
        return out

    def process_shard(self, index: int, items: list[Any], ctx: StageContext) -> ShardResult:
        pairs = self.requests_for(ctx.read_shard(self.upstream, index))
        paths = {r.item_id: ctx.work / r.concept_id / f"{r.item_id}.png" for _, r in pairs}
        todo = [r for _, r in pairs if not paths[r.item_id].exists()]
        bar = ctx.bar(len(pairs), f"images shard {index}")
        bar.update(len(pairs) - len(todo))
        # PNG encoding + fsync run in threads so the GPU never waits for the disk.
        with ThreadPoolExecutor(self.writer_threads) as pool:
            futures = []
            for batch in chunk(todo, self.batch_size) if todo else []:
                images = self.generator.generate(batch)
                if len(images) != len(batch):
                    raise RuntimeError(f"{self.generator.name} returned {len(images)} images for {len(batch)} requests")
                for r, img in zip(batch, images):
                    futures.append(pool.submit(lambda p, im: atomic_write_bytes(p, encode_png(im)), paths[r.item_id], img))
                bar.update(len(batch))
                bar.set_postfix(generated=len(futures))
            for f in futures:
                f.result()
        bar.close()
        res = ShardResult(stats={"generated": len(todo), "reused": len(pairs) - len(todo)})
        settings = {**self.generator.settings(), "model": self.generator.name}
        for rec, r in pairs:
            p = paths[r.item_id]
            res.records.append({**rec, "image_id": r.item_id, "image_file": str(p.relative_to(ctx.out)),
                                "sha256": sha256_file(p), "generator": {**settings, "seed": r.seed, "width": r.width,
                                                                       "height": r.height,
                                                                       "negative_prompt": r.negative_prompt}})
        return res


def image_path(out: Path, rec: dict) -> Path:
    return Path(out) / rec["image_file"]
