"""bench/train_peer.py runs end to end on a tiny model (2 steps a loop), so the script cannot rot."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import train_peer  # noqa: E402


def test_every_loop_trains_the_same_model_on_the_same_batches(tmp_path):
    bench = train_peer.build("tiny", batch=8, steps=2, device="cpu", amp="none", workers=0, work=tmp_path,
                             variants=list(train_peer.VARIANTS))
    timings = train_peer.run_rounds(bench, steps=2, warmup=0, repeats=1)

    for per_step in (timings.wall, timings.cpu):
        assert set(per_step) == set(train_peer.VARIANTS)
        assert all(len(v) == 1 and v[0] > 0 for v in per_step.values())
    # every loop took both optimizer steps
    assert len(bench.loops["peer"].loss.values) == 2
    assert all(bench.loops[k].progress.step == 2 for k in ("clip", "twin", "twin_lean"))
    # open_clip_train and our CLIP-loss loop start from the same weights, batch, tokens and loss
    first = train_peer.first_losses(bench)
    assert abs(first["peer"] - first["clip"]) < 1e-5 * abs(first["peer"])
    assert first["twin"] != first["clip"]  # the twin loss is a different objective
    tokenize_s = train_peer.tokenize_seconds(bench, steps=2)
    assert tokenize_s is not None and tokenize_s >= 0
    table = train_peer.report(timings, 8, first, tokenize_s)
    assert "| open_clip_train (train_one_epoch) |" in table and "goal >= 0.95" in table
    assert "tokenizing captions" in table
