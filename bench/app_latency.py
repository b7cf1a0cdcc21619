"""Per-query latency of the demo's classification path with 1,000 candidate labels.

Three ways to answer one query (one uploaded image, 1,000 labels), same model, medians over repeats:
  cached     the demo: validated image load -> one image forward -> cosine vs the cached label bank
  per-call   a typical Space: the 1,000 label prompts are encoded on every call, then the image
  bare       only the image forward pass (preprocess + encode_image), the floor

Goals: per-call / cached >= 20x, cached / bare <= 1.3x. Prints a markdown table (and --out writes it).

    python -m bench.app_latency [--model SPEC] [--labels 1000] [--repeats 20] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORLD_BASE = Path("artifacts/world/models/base")


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(model: str, n_labels: int = 1000, repeats: int = 20, slow_repeats: int = 3, device: str | None = None) -> dict:
    """Measure the three paths; returns seconds per query and the two ratios."""
    import torch
    from PIL import Image

    from cultureclip.backbone import create_backbone, default_device
    from cultureclip.inference import Embedder
    from demo.validation import load_image

    dev = device or default_device()
    emb = Embedder(create_backbone(model, device=dev))
    labels = [f"concept number {i}, a cultural item" for i in range(n_labels)]
    templates = ("a photo of {}.",)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "query.jpg"
        Image.effect_noise((640, 480), 60).convert("RGB").save(path, quality=90)
        pil = load_image(path)

        def sync():
            if dev.startswith("cuda"):
                torch.cuda.synchronize()

        def cached():
            bank = emb.label_bank(labels, templates)
            probs = emb.zero_shot(emb.embed_images([load_image(path)]), bank)
            probs.topk(5)
            sync()

        def per_call():
            bank = torch.nn.functional.normalize(emb.embed_texts([templates[0].format(x) for x in labels]), dim=-1)
            probs = emb.zero_shot(emb.embed_images([load_image(path)]), bank)
            probs.topk(5)
            sync()

        def bare():
            emb.embed_images([pil])
            sync()

        emb.label_bank(labels, templates)  # the demo embeds each label set once (first query of a label set)
        for fn in (bare, cached):  # warm-up
            fn()
        tb, tc = [], []
        for _ in range(repeats):  # interleaved, so load from other processes hits both alike
            tb.append(_median_s(bare, 1))
            tc.append(_median_s(cached, 1))
        t_bare, t_cached = statistics.median(tb), statistics.median(tc)
        t_call = _median_s(per_call, slow_repeats)
    return {"model": model, "device": dev, "labels": n_labels, "threads": torch.get_num_threads(),
            "cached_s": t_cached, "per_call_s": t_call, "bare_s": t_bare,
            "speedup_vs_per_call": t_call / t_cached, "overhead_vs_bare": t_cached / t_bare}


def to_markdown(r: dict) -> str:
    ok1 = "✅" if r["speedup_vs_per_call"] >= 20 else "❌"
    ok2 = "✅" if r["overhead_vs_bare"] <= 1.3 else "❌"
    return "\n".join([
        f"Model `{r['model']}` on {r['device']} ({r['threads']} threads), {r['labels']:,} candidate labels, median per query:",
        "",
        "| path | latency (ms) | ratio | goal |",
        "|---|---:|---:|---|",
        f"| cached label bank (this demo) | {r['cached_s'] * 1e3:.1f} | 1.00x | |",
        f"| labels encoded on every call (typical Space) | {r['per_call_s'] * 1e3:.1f} | "
        f"{r['speedup_vs_per_call']:.1f}x slower | >= 20x {ok1} |",
        f"| bare image forward pass | {r['bare_s'] * 1e3:.1f} | cached = {r['overhead_vs_bare']:.2f}x of it | <= 1.3x {ok2} |",
    ])


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(prog="python -m bench.app_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help=f"model spec (default: {WORLD_BASE} if built, else open_clip:ViT-B-32 random init)")
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--slow-repeats", type=int, default=3, help="repeats of the slow per-call path")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or (str(WORLD_BASE) if WORLD_BASE.is_dir() else "open_clip:ViT-B-32")
    r = run(model, args.labels, args.repeats, args.slow_repeats, args.device)
    md = to_markdown(r)
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(md + "\n", encoding="utf-8")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
