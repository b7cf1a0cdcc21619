"""`cultureclip-app` / `python app.py`: parse flags/env, fail fast on bad models or folders, serve the app."""
from __future__ import annotations

import logging
import os
import sys

from demo.app_config import ConfigError, build_services, parse_args
from demo.starting import StartingPage
from demo.ui import build_demo, launch_kwargs


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = parse_args(argv)
    # the model choice, loading and warm-start progress go to the log (and to the starting page)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    page = None
    if os.environ.get("CULTURECLIP_STARTING_PAGE", "1") != "0":
        # visitors get a page with the startup's progress at once, not a refused connection for a minute
        page = StartingPage(host, port).start()
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
