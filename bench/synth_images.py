"""Images-stage throughput vs a bare diffusers pipeline call on the same prompts and batch (goal >= 0.9x).

    python bench/synth_images.py                       # tiny random SD pipeline built in a temp folder (CPU)
    python bench/synth_images.py --model stabilityai/sdxl-turbo --steps 4 --size 512 --n 64 --batch 8

The stage adds what a dataset needs on top of the bare call: PNG encoding, atomic writes, sha256,
records and a done-marker; PNG writing runs in threads so the accelerator keeps generating.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="diffusers hub id or folder (default: a tiny random SD pipeline)")
    p.add_argument("--n", type=int, default=32, help="images per measurement")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="alternating timed repeats; best of each is reported")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from cultureclip.steps import write_marker
    from synth.engine import atomic_write_json, atomic_write_jsonl, content_id, run_stage, ProcessInfo
    from synth.generators import DiffusersGenerator
    from synth.stages.images import ImageStage
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from synth.testing import build_tiny_sd_pipeline
            model = str(build_tiny_sd_pipeline(tmp / "tiny_sd"))
        gen = DiffusersGenerator(model, device=args.device, steps=args.steps, guidance=args.guidance,
                                 batch_size=args.batch)
        captions = [{"caption_id": content_id("bench", i), "caption": f"a photo of hanbok number {i}, silk jacket",
                     "concept_id": f"c{i % 4}", "caption_index": i} for i in range(args.n)]
        stage = ImageStage(gen, width=args.size, height=args.size, batch_size=args.batch, n_shards=1)
        reqs = [r for _, r in stage.requests_for(captions)]
        gen.generate(reqs[: args.batch])  # warm-up: load + first call (kernels, allocator)

        def bare() -> float:
            t = time.perf_counter()
            for i in range(0, len(reqs), args.batch):
                gen._call(reqs[i:i + args.batch])
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - t

        def staged(k: int) -> float:
            out = tmp / f"run{k}"
            atomic_write_jsonl(out / "captions" / "shard-00000.jsonl", captions)
            atomic_write_json(out / "captions" / "fingerprint.json", {"fingerprint": "bench"})
            write_marker(out / "captions" / "shard-00000.done", "bench")
            t = time.perf_counter()
            run_stage(stage, out, "images-bench", proc=ProcessInfo(), progress=False, expected={"captions": "bench"})
            return time.perf_counter() - t

        tb, ts = [], []
        for k in range(args.repeats):
            tb.append(bare())
            ts.append(staged(k))
        b, s = min(tb), min(ts)
        dev = gen.device
        print(f"\nimages stage vs bare pipeline call: {Path(model).name if args.model is None else model}, {args.n} images, "
              f"batch {args.batch}, {args.size}px, {args.steps} steps, device {dev}, best of {args.repeats}\n")
        print("| method | seconds | images/s | ratio vs bare |")
        print("|---|---:|---:|---:|")
        print(f"| bare `pipe(...)` calls | {b:.3f} | {args.n / b:.2f} | 1.00 |")
        print(f"| images stage (PNG + atomic write + sha256 + records) | {s:.3f} | {args.n / s:.2f} | {b / s:.2f} |")
        print(f"\ngoal >= 0.90x: {'met' if b / s >= 0.9 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
