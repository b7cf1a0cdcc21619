"""No weights file is ever unpickled: torch.load only with weights_only=True; no pickle on user data."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("cultureclip", "synth", "eval_suite", "demo", "bench") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]


def test_no_unsafe_deserialization():
    offenders = []
    for p in SOURCES:
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{p.relative_to(ROOT)}: torch.load without weights_only=True")
        for bad in ("pickle.load(", "pickle.loads(", "joblib.load(", "np.load(", "allow_pickle=True"):
            for line_no, line in enumerate(text.splitlines(), 1):
                if bad in line and "allow_pickle=False" not in line:
                    offenders.append(f"{p.relative_to(ROOT)}:{line_no}: {bad}")
    assert not offenders, "\n".join(offenders)
