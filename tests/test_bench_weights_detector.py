"""bench/weights_detector.py runs end to end on a tiny model, so the script cannot rot."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import weights_detector  # noqa: E402


def test_bench_measures_every_row_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert weights_detector.main(["--size", "tiny", "--format", "both", "--labels", "20", "--repeats", "3",
                                  "--content-repeats", "1", "--out", str(out)]) == 0
    text = out.read_text()
    for fmt in ("hf", "open_clip"):
        assert f"tiny ({fmt})" in text
    for row in ("revision, unchanged (per lookup)", "sha256 of every weight", "vectorized digest",
                "catalog bank hit (20 labels", "text forward, 8 prompts, plain copy"):
        assert text.count(row) == 2
    assert "revision / sha256" in capsys.readouterr().out
