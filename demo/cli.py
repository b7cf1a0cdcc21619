"""`cultureclip-app` / `python app.py`: parse flags/env, fail fast on bad models or folders, serve the app.

The starting page (demo.starting, standard library only) is up before anything heavy loads: the app's own
modules (torch, transformers, gradio behind them) are imported after it, the one deliberate exception to
"imports at module top" (tests/test_dependencies.py accepts an import marked `# lazy:` with its reason)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from demo.starting import StartingPage


def address(argv: list[str] | None) -> tuple[str, int]:
    """Host and port from --host/--port or the environment, without importing the app (for the starting page)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    known, _ = p.parse_known_args(argv)
    host = known.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    try:
        port = known.port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    except ValueError:
        port = 7860  # parse_args names the bad value below
    return host, port


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # the model choice, loading and warm-start progress go to the log (and to the starting page)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    wants_help = any(a in ("-h", "--help") for a in (sys.argv[1:] if argv is None else argv))
    host, port = address(argv)
    page = None
    if os.environ.get("CULTURECLIP_STARTING_PAGE", "1") != "0" and not wants_help:
        # visitors get a page with the startup's progress at once, not a refused connection for a minute
        page = StartingPage(host, port).start()
    try:
        from demo.app_config import ConfigError, build_services, parse_args  # lazy: after the starting page is up
        from demo.ui import build_demo, launch_kwargs  # lazy: after the starting page is up

        args = parse_args(argv)
        try:
            services = build_services(args)
            demo = build_demo(services)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    finally:
        if page is not None:
            page.stop()
    served = page is not None and page.served  # the placeholder had the port: the app takes it over
    demo.launch(**launch_kwargs(services, server_name=args.host or (host if served else None),
                                server_port=args.port or (port if served else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
