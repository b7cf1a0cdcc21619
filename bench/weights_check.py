"""What the weight-change detector costs: `cultureclip.weights.weights_digest` (a pass over every value, exact
after any write, `.data` included) on a real-size random ViT-B/32, against the sha256 pass results record,
the metadata walk the old detector used (identity, data_ptr, version counter: blind to `.data` writes) and a
bare one-image forward pass (what every classify pays anyway).

    python bench/weights_check.py [--device cpu|cuda] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import torch

from cultureclip.checkpoint import _hash_weights
from cultureclip.testing import build_open_clip
from cultureclip.weights import named_tensors, weights_digest


def _median_s(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    model = build_open_clip(args.model, seed=0).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    n_bytes = sum(t.numel() * t.element_size() for _, t in named_tensors(model))
    pixels = torch.randn(1, 3, 224, 224, device=args.device)

    def forward():
        with torch.no_grad():
            model.encode_image(pixels)

    for fn in (forward, lambda: weights_digest(model)):  # warm-up (threads, device weights)
        fn()
        sync()
    rows = {
        "metadata walk (old key: blind to .data writes)":
            _median_s(lambda: tuple((id(t), t.data_ptr(), t._version) for _, t in named_tensors(model)),
                      args.repeats * 10, sync),
        "weights_digest (every value)": _median_s(lambda: weights_digest(model), args.repeats, sync),
        "sha256 of every tensor (checkpoint_sha's pass)":
            _median_s(lambda: _hash_weights(types.SimpleNamespace(model=model)), max(1, args.repeats // 2), sync),
        "bare one-image forward": _median_s(forward, args.repeats, sync),
    }
    before = weights_digest(model)
    next(model.parameters()).data.view(-1)[12345] += 1  # one value through .data
    assert weights_digest(model) != before, "weights_digest missed a .data write"
    print(f"{args.model}, {n_bytes / 2**20:.0f} MiB of weights, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print("\n| check | ms | vs bare forward |\n|---|---:|---:|")
    for name, s in rows.items():
        print(f"| {name} | {s * 1e3:.2f} | {s / rows['bare one-image forward']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
