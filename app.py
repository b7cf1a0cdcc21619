"""CultureCLIP demo: `python app.py [--base SPEC --tuned SPEC --dataset PATH --results DIR]` (see demo/)."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from demo.cli import main  # noqa: E402 - the env above must be set before gradio is imported

if __name__ == "__main__":
    sys.exit(main())
