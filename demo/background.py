"""Visitors first: background work (label banks, the dataset index, the launch evaluation, WiSE-FT blend
banks) pauses while a visitor's request is running, so a query during the index build is about as fast
as a warm one on a 2-core Space.

`VisitorGate.visitor()` brackets each request (DemoBlocks.process_api does it for every event);
background code calls `gate.pause()` between small batches, and `gate.install(model)` adds the same check
before every transformer block of a model, so a background forward stops within one block (~1/12 of a
forward) when a request arrives. Only background threads pause: threads named with `BACKGROUND_PREFIX`
(every thread the app starts: `background_thread`). A pause lasts until no request is active, at most
`max_pause_s` at a time, so a stream of requests slows background work down but never stops it.

    gate = VisitorGate()
    gate.install(embedder.backbone)          # background forwards yield between blocks
    with gate.visitor():                     # around a request
        ...
    background_thread(work, "index").start() # work() runs as background (pauses for visitors)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BACKGROUND_PREFIX = "cultureclip-"


def is_background(thread: threading.Thread | None = None) -> bool:
    """True for the app's background threads (named `cultureclip-...`)."""
    return (thread or threading.current_thread()).name.startswith(BACKGROUND_PREFIX)


def background_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread whose work yields to visitors (its name carries BACKGROUND_PREFIX)."""
    return threading.Thread(target=target, name=BACKGROUND_PREFIX + name, daemon=True)


class VisitorGate:
    """Counts visitors' requests in flight; background threads wait in `pause()` while there is one."""

    def __init__(self, max_pause_s: float = 30.0):
        self.max_pause_s = float(max_pause_s)
        self._active = 0
        self._cond = threading.Condition()
        self.pauses = 0  # how many times a background thread waited (for tests and the log)
        self.paused_s = 0.0

    @property
    def active(self) -> int:
        return self._active

    @contextmanager
    def visitor(self) -> Iterator[None]:
        """Bracket one visitor's request: background threads pause until it ends."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    @contextmanager
    def away(self) -> Iterator[None]:
        """Inside a visitor's request that waits for background work it asked for (the Evaluate button's
        progress loop): release the hold while waiting, else that work would pause for the very request
        waiting on it."""
        with self._cond:
            held = self._active > 0
            if held:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()
        try:
            yield
        finally:
            if held:
                with self._cond:
                    self._active += 1

    def pause(self) -> float:
        """Called by background work between small steps: wait while a visitor's request is active (at most
        `max_pause_s`). Returns the seconds waited; a no-op (0.0) outside background threads."""
        if not self._active or not is_background():
            return 0.0
        t0 = time.perf_counter()
        with self._cond:
            if self._active:
                self.pauses += 1
                self._cond.wait_for(lambda: self._active == 0, timeout=self.max_pause_s)
        waited = time.perf_counter() - t0
        self.paused_s += waited
        return waited

    def install(self, model: Any) -> int:
        """Check `pause()` before every block of every `nn.ModuleList` in `model` (the transformer layers of
        both towers, open_clip's or transformers'), so a background forward yields mid-model. Installed once
        per model; returns the number of hooked blocks. The hook is a plain function, so `copy.deepcopy`
        of the model (a WiSE-FT blend) keeps it without copying the gate."""
        import torch

        if getattr(model, "_cultureclip_gate_id", None) == id(self):  # also set on deep copies (hooks copied)
            return 0
        gate = self

        def hook(_module, _args):
            if gate._active:
                gate.pause()

        n = 0
        for m in model.modules():
            if isinstance(m, torch.nn.ModuleList):
                for block in m:
                    block.register_forward_pre_hook(hook)
                    n += 1
        model._cultureclip_gate_id = id(self)
        return n


class GateMiddleware:
    """ASGI middleware: every plain HTTP request (the page, its assets, config, uploads, files) holds the gate
    while it is served, so a page load is not slowed by background work either. Long-lived streams (the
    queue's event stream, heartbeats, the REST API's result stream `GET /gradio_api/call/<name>/<event_id>`)
    are left out: they would hold it for as long as a tab is open, or as long as a client waits for a result,
    and the work behind that result (the event itself) already holds it through `DemoBlocks.process_api`.
    Before, an API client waiting on `/evaluate` held the gate, so the live evaluation it waited for paused
    for it at every transformer block (240 s instead of seconds on the test world)."""

    STREAMS = ("/queue/data", "/heartbeat", "/stream")

    def __init__(self, app: Any, gate: VisitorGate):
        self.app, self.gate = app, gate

    @classmethod
    def is_stream(cls, scope: dict) -> bool:
        """A long-lived request that waits on work rather than doing any (see the class note)."""
        path = scope.get("path", "")
        if any(s in path for s in cls.STREAMS):
            return True
        parts = path.rstrip("/").split("/")
        # GET .../call/<name>/<event_id>: the result stream (POST .../call/<name> starts the event: short)
        return scope.get("method") == "GET" and len(parts) >= 3 and parts[-3] == "call"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or self.is_stream(scope):
            await self.app(scope, receive, send)
            return
        with self.gate.visitor():
            await self.app(scope, receive, send)
