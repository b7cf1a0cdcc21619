"""Evaluation throughput: our zero-shot pipeline vs a bare forward pass and vs clip_benchmark.

Same model, same images (a class-folder tree of JPEGs written to a temp folder), same batch size and
DataLoader workers. Rows (images/s, and the ratio to the bare forward pass; goal >= 0.9x):
- bare forward: the image tower alone on already-preprocessed tensors held in memory (the ceiling);
- ours: `create_benchmark("zeroshot").evaluate(...)`: decode + preprocess in workers + forward + text
  bank + scoring (embedding cache off);
- clip_benchmark: `clip_benchmark.metrics.zeroshot_classification.evaluate` over a torchvision-style
  dataset with the same transform and DataLoader.

    python bench/eval_throughput.py --images 256 --batch-size 32 --num-workers 2
    python bench/eval_throughput.py --model open_clip:ViT-B-32 --images 512   # a real architecture
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench.eval_throughput")

def make_model_dir(folder: Path) -> Path:
    """A small ViT (224 px, patch 32, 4 layers) saved as an open_clip folder: realistic preprocessing cost."""
    from cultureclip.testing import save_open_clip

    return save_open_clip(folder, "small-224", seed=0)


def make_images(root: Path, n: int, classes: int = 8, size: int = 320) -> Path:
    """n JPEGs (size x size, noisy, ~20-30 kB like web photos) in `classes` class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class_{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i:05d}.jpg", quality=85)
    return root


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_bare(backbone, pixels: torch.Tensor, batch_size: int, device: str = "cpu") -> float:
    """Seconds for the image tower alone over preprocessed pixels (already on the device)."""
    pixels = pixels.to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), amp:
        for i in range(0, len(pixels), batch_size):
            backbone.encode_image(pixels[i: i + batch_size])
    _sync(device)
    return time.perf_counter() - t0


def time_bare_loader(backbone, root: Path, batch_size: int, workers: int, device: str = "cpu") -> float:
    """Seconds for the minimal loop over the same files: DataLoader decoding + preprocessing + image forward."""
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(root), transform=backbone.preprocess_eval)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device.startswith("cuda"))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), amp:
        for x, _ in loader:
            backbone.encode_image(x.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - t0


def time_ours(spec: str, root: Path, batch_size: int, workers: int, device: str = "cpu") -> tuple[float, dict]:
    from cultureclip.backbone import create_backbone
    from cultureclip.inference import Embedder
    from eval_suite.benchmarks import create_benchmark

    emb = Embedder(create_backbone(spec, device=device), batch_size=batch_size)
    bench = create_benchmark("zeroshot", root=root, templates=["a photo of a {c}."])  # the peer's one template
    bench.load()
    t0 = time.perf_counter()
    res = bench.evaluate(emb, n_boot=0, keep_samples=False, num_workers=workers, progress=False)
    return time.perf_counter() - t0, res.metrics


def time_clip_benchmark(backbone, root: Path, batch_size: int, workers: int, device: str = "cpu") -> tuple[float, dict] | None:
    try:
        from clip_benchmark.metrics import zeroshot_classification as cb
    except ImportError:
        return None
    from torchvision.datasets import ImageFolder

    def acc(output, target, topk=(1,)):  # clip_benchmark 1.6.2's accuracy, numpy>=2.4-safe
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]

    cb.accuracy = acc
    ds = ImageFolder(str(root), transform=backbone.preprocess_eval)
    classnames = [c.replace("_", " ") for c in ds.classes]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers)
    t0 = time.perf_counter()
    m = cb.evaluate(backbone, loader, backbone.tokenize, classnames, ["a photo of a {c}."], device, amp=device.startswith("cuda"))
    return time.perf_counter() - t0, m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model spec (default: a small 224-px ViT built in a temp folder)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--repeats", type=int, default=2, help="runs per pipeline; the best (least disturbed) counts")
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda, for all pipelines)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from cultureclip.backbone import create_backbone

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = args.model or str(make_model_dir(tmp / "model"))
        root = make_images(tmp / "images", args.images)
        backbone = create_backbone(spec, device=args.device)
        from PIL import Image

        files = sorted(root.rglob("*.jpg"))
        pixels = torch.stack([backbone.preprocess_eval(Image.open(f).convert("RGB")) for f in files])
        time_bare(backbone, pixels[: args.batch_size], args.batch_size, args.device)  # warm-up
        bare = min(time_bare(backbone, pixels, args.batch_size, args.device) for _ in range(args.repeats))
        bare_loader = min(time_bare_loader(backbone, root, args.batch_size, args.num_workers, args.device)
                          for _ in range(args.repeats))
        runs = [time_ours(spec, root, args.batch_size, args.num_workers, args.device) for _ in range(args.repeats)]
        ours, ours_m = min(r[0] for r in runs), runs[0][1]
        peer_runs = [time_clip_benchmark(backbone, root, args.batch_size, args.num_workers, args.device)
                     for _ in range(args.repeats)]
        peer = None if peer_runs[0] is None else (min(r[0] for r in peer_runs), peer_runs[0][1])
        n = len(files)
        rows = [("bare forward (preprocessed tensors, no decoding)", bare, None),
                ("bare loop: DataLoader decode + forward (the reference)", bare_loader, None),
                ("ours (eval_suite zeroshot)", ours, ours_m["acc1"])]
        if peer:
            rows.append(("clip_benchmark zeroshot_classification", peer[0], peer[1]["acc1"]))
        print(f"\n{n} images, batch {args.batch_size}, {args.num_workers} DataLoader workers, best of {args.repeats}, "
              f"torch threads {torch.get_num_threads()}, model {Path(spec).name if not args.model else spec}\n")
        print("| pipeline | seconds | images/s | vs bare loop | acc1 |")
        print("|---|---:|---:|---:|---:|")
        for name, secs, a in rows:
            print(f"| {name} | {secs:.2f} | {n / secs:.1f} | {bare_loader / secs:.2f}x | {'' if a is None else f'{a:.4f}'} |")
        if peer:
            print(f"\nours vs clip_benchmark: {peer[0] / ours:.2f}x the speed; acc1 equal: "
                  f"{abs(peer[1]['acc1'] - ours_m['acc1']) < 1e-3}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
