"""The page a visitor sees while the app starts: served on the app's own port within a second of `python app.py`,
with what the app is doing (loading the models, embedding the label banks, rendering the example dataset), until
the app itself serves; the page then loads the app. API calls meanwhile get HTTP 503 with the same words.

    with StartingPage(host, port):       # a placeholder on the port while the app starts
        services = build_services(args)  # its log lines are the progress shown
        demo = build_demo(services)
    demo.launch(server_name=host, server_port=port)   # the page polls / and loads the app when it answers
"""
from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

MARKER = "cultureclip-starting"  # the placeholder's pages carry it; the app's do not
SHOWN_LOGGERS = ("demo", "cultureclip", "synth", "eval_suite")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="{marker}" content="1"><title>CultureCLIP is starting</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style>
body {{font-family: system-ui, sans-serif; max-width: 42rem; margin: 4rem auto; padding: 0 1rem; color: #222;}}
.bar {{height: 6px; background: #eee; border-radius: 3px; overflow: hidden;}}
.bar div {{height: 100%; width: 40%; background: #f08c00; animation: slide 1.6s infinite ease-in-out;}}
@keyframes slide {{0% {{margin-left: -40%;}} 100% {{margin-left: 100%;}}}}
#steps {{color: #555; font-size: 0.9rem; white-space: pre-wrap; overflow-wrap: anywhere;}}
</style></head><body>
<h1>CultureCLIP — telling cultural twins apart</h1>
<p>The demo is starting: <b id="now">{now}</b> (<span id="elapsed">{elapsed}</span> s so far; the first start on a
CPU takes about a minute, later starts a few seconds). This page opens the demo by itself when it is ready.</p>
<div class="bar"><div></div></div>
<p id="steps">{steps}</p>
<script>
async function poll() {{
  try {{
    const r = await fetch(location.pathname + "?status=1", {{cache: "no-store"}});
    const t = await r.text();
    if (!t.includes("{marker}")) {{ location.reload(); return; }}
    const s = JSON.parse(t);
    document.getElementById("now").textContent = s.now;
    document.getElementById("elapsed").textContent = s.elapsed;
    document.getElementById("steps").textContent = s.steps.join("\\n");
  }} catch (e) {{}}  /* between this page and the app the port is briefly closed: try again */
  setTimeout(poll, 1500);
}}
setTimeout(poll, 1500);
</script></body></html>
"""


class _Progress(logging.Handler):
    """The app's recent INFO log lines, without server paths: what the starting page shows."""

    def __init__(self, keep: int = 6):
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.INFO or record.name.split(".")[0] not in SHOWN_LOGGERS:
            return
        try:
            from .validation import scrub_paths

            self.lines.append(scrub_paths(record.getMessage())[:240])
        except Exception:  # noqa: BLE001 - progress is best effort
            pass


class StartingPage:
    """A placeholder HTTP server on (host, port) while the app starts; `stop()` frees the port for the app."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, int(port)
        self.t0 = time.monotonic()
        self.progress = _Progress()
        self._server: ThreadingHTTPServer | None = None
        self.served = False  # whether the placeholder got the port

    def status(self) -> dict:
        steps = list(self.progress.lines)
        return {MARKER: True, "now": steps[-1] if steps else "starting", "steps": steps,
                "elapsed": int(time.monotonic() - self.t0)}

    def start(self) -> "StartingPage":
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                st = page.status()
                if self.path.split("?")[0] == "/" and "status=1" not in self.path:
                    body = PAGE.format(marker=MARKER, now=html.escape(st["now"]), elapsed=st["elapsed"],
                                       steps=html.escape("\n".join(st["steps"]))).encode()
                    self._send(200, "text/html; charset=utf-8", body)
                elif self.path.split("?")[0] == "/":
                    self._send(200, "application/json", json.dumps(st).encode())
                else:  # the API and the app's assets: not yet
                    self._send(503, "application/json", json.dumps({
                        "error": f"The demo is starting ({st['now']}); try again in a few seconds."}).encode())

            do_POST = do_GET  # noqa: N815

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if code == 503:
                    self.send_header("Retry-After", "5")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet: the app's log is for the app
                pass

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as e:  # the port is taken: the app's own launch says so; no placeholder
            logger.warning("no starting page on %s:%s (%s)", self.host, self.port, e)
            return self
        self.served = True
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="starting-page", daemon=True).start()
        logging.getLogger().addHandler(self.progress)
        logger.info("starting page on http://%s:%s/ until the app serves", self.host, self.port)
        return self

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.progress)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StartingPage":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
