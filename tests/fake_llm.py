"""A fake OpenAI-compatible chat server for tests (synth's `llm.backend=openai`): real HTTP on 127.0.0.1.

    with chat_server(lambda body, calls: (200, caption_answer(body))) as srv:
        cfg = smoke_config(..., "llm.backend=openai", f"llm.base_url={srv.url}")

`respond(body, calls)` gets the decoded request body and every body received so far (this one last) and
returns (HTTP status, message content); the server wraps the content as a chat completion.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import threading
from typing import Callable, Iterator

Respond = Callable[[dict, list], "tuple[int, str | None]"]


class ChatServer:
    def __init__(self, url: str, calls: list[dict]):
        self.url = url  # the base_url to configure: http://127.0.0.1:<port>/v1
        self.calls = calls  # every request body, in arrival order


def caption_request(body: dict) -> tuple[str, int]:
    """(concept name, number of captions asked for) from a caption stage request."""
    user = body["messages"][1]["content"]
    return user.split("Concept: ")[1].split(" (")[0], int(user.split("Write ")[1].split(" ")[0])


def caption_answer(body: dict, template: str = "{name} seen in scene {i}") -> str:
    """A valid answer: the JSON list of captions the request asks for."""
    name, n = caption_request(body)
    return json.dumps([template.format(name=name, i=i) for i in range(n)])


@contextlib.contextmanager
def chat_server(respond: Respond) -> Iterator[ChatServer]:
    calls: list[dict] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                calls.append(body)
                status, content = respond(body, list(calls))
            self.send_response(status)
            if content is None:
                self.end_headers()
                return
            data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield ChatServer(f"http://127.0.0.1:{srv.server_address[1]}/v1", calls)
    finally:
        srv.shutdown()
        srv.server_close()
