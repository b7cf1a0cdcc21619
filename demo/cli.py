"""`cultureclip-app` / `python app.py`: parse flags/env, fail fast on bad models or folders, serve the app."""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import logging

    from demo.app_config import ConfigError, build_services, parse_args

    args = parse_args(argv)
    # the model choice, loading and warm-start progress go to the log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        services = build_services(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from demo.ui import build_demo, launch_kwargs

    build_demo(services).launch(**launch_kwargs(services, server_name=args.host, server_port=args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
