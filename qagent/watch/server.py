"""The watch page's server: one thread plays, every open page follows over server-sent events.

:class:`Show` steps every :class:`~qagent.watch.player.Player` in lockstep (two policies side by
side see the same episode seeds) at the chosen speed, and keeps the newest views as one JSON
event. :class:`WatchServer` (the standard library's threading HTTP server, as
:mod:`qagent.serve` uses) serves the page, streams the events (``GET /events``) and takes the
controls (``POST /control``). Nothing is fetched from elsewhere: the page is one HTML file in
this package.

======  ==========  ======================================================================
GET     /           the page
GET     /events     server-sent events: ``data: {"seq", "paused", "fps", "epsilon", "panes"}``
GET     /state      the newest event, once (JSON)
POST    /control    ``{"command": "pause" | "play" | "step"}``, ``{"command": "reset", "seed": N}``,
                    ``{"command": "speed", "fps": F}``, ``{"command": "epsilon", "epsilon": E}``
======  ==========  ======================================================================
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from qagent.watch.player import Player

MAX_FPS = 60.0
KEEPALIVE_SECONDS = 10.0
MAX_CONTROL_BYTES = 4096


class ControlError(ValueError):
    """A control request the show cannot follow (the page or a script sent something malformed)."""


class Show:
    """The players, the clock and the controls."""

    def __init__(self, players: list[Player], seed: int = 0, fps: float = 15.0, epsilon: float = 0.0) -> None:
        self.players = players
        self.fps, self.epsilon, self.seed = check_fps(fps), check_epsilon(epsilon), check_seed(seed)
        self.paused = False
        self._pending_steps = 0
        self._pending_reset: int | None = seed
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.seq = 0
        self.event = ""
        self._views: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="qagent-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=10)
        for player in self.players:
            player.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def control(self, request: Any) -> dict[str, Any]:
        """Apply one control request; the settings after it."""
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            raise ControlError('send {"command": ...}: pause, play, step, reset, speed or epsilon')
        command = request["command"]
        with self._changed:
            if command == "pause":
                self.paused = True
            elif command == "play":
                self.paused = False
            elif command == "step":
                self.paused = True
                self._pending_steps += 1
            elif command == "reset":
                self._pending_reset = check_seed(request.get("seed", self.seed))
            elif command == "speed":
                self.fps = check_fps(request.get("fps"))
            elif command == "epsilon":
                self.epsilon = check_epsilon(request.get("epsilon"))
            else:
                raise ControlError(f"unknown command {command[:40]!r}; use pause, play, step, reset, speed or epsilon")
            if self._views:
                self._publish(self._views)  # every page shows the new settings at once
            self._changed.notify_all()
            return self.settings()

    def settings(self) -> dict[str, Any]:
        return {"paused": self.paused, "fps": self.fps, "epsilon": self.epsilon, "seed": self.seed}

    def next_event(self, after: int, timeout: float) -> tuple[int, str] | None:
        """The newest event once its number is past ``after``; None after ``timeout`` seconds or on stop."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.seq <= after and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return None if self.stopping else (self.seq, self.event)

    def _run(self) -> None:
        while not self.stopping:
            with self._changed:
                while self.paused and not self._pending_steps and self._pending_reset is None and not self.stopping:
                    self._changed.wait()
                reset, self._pending_reset = self._pending_reset, None
                if reset is None and self._pending_steps:
                    self._pending_steps -= 1
                epsilon, delay = self.epsilon, 1.0 / self.fps
            if self.stopping:
                break
            started = time.monotonic()
            if reset is not None:
                self.seed = reset
                views = [player.reset(reset, epsilon) for player in self.players]
            else:
                views = [player.step(epsilon) for player in self.players]
            self._publish(views)
            if not self.paused:
                self._stopping.wait(max(0.0, delay - (time.monotonic() - started)))

    def _publish(self, views: list[dict[str, Any]]) -> None:
        with self._changed:
            self._views = views
            self.seq += 1
            self.event = json.dumps({"seq": self.seq, **self.settings(), "panes": views}, allow_nan=False)
            self._changed.notify_all()


def check_fps(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_FPS:
        raise ControlError(f"fps must be a number in (0, {MAX_FPS:g}], got {value!r}")
    return float(value)


def check_epsilon(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value <= 1 and math.isfinite(value)):
        raise ControlError(f"epsilon must be a number in [0, 1], got {value!r}")
    return float(value)


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ControlError(f"seed must be an integer in [0, 2^31), got {value!r}")
    return value


class WatchServer(ThreadingHTTPServer):
    """Serves the page and ``show``'s events at ``address`` (port 0 picks a free port; see :attr:`url`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, show: Show, address: tuple[str, int]) -> None:
        self.show = show
        self.page = resources.files("qagent.watch").joinpath("page.html").read_bytes()
        super().__init__(address, WatchRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class WatchRequestHandler(BaseHTTPRequestHandler):
    server: WatchServer
    protocol_version = "HTTP/1.1"
    server_version = "qagent-watch"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/events":
            self._stream()
        elif path == "/state":
            event = self.server.show.event
            self._send(200, (event or "{}").encode(), "application/json")
        else:
            self._json(404, {"error": f"no page at {path[:200]}", "hint": "open / for the page"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/control":
            self._json(404, {"error": f"no endpoint at {self.path[:200]}", "hint": "POST /control"})
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_CONTROL_BYTES:
            self.close_connection = True
            self._json(400, {"error": f"a control request needs a Content-Length of at most {MAX_CONTROL_BYTES}"})
            return
        try:
            request = json.loads(self.rfile.read(int(length)) or b"null")
            self._json(200, self.server.show.control(request))
        except (ValueError, RecursionError) as exc:
            self._json(400, {"error": str(exc)[:300] if isinstance(exc, ControlError) else "the body is not JSON"})

    def _stream(self) -> None:
        """Server-sent events until the page goes away or the show stops."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        show, seen = self.server.show, 0
        try:
            if show.event:  # the newest view at once, even when paused
                seen = show.seq
                self.wfile.write(f"id: {seen}\ndata: {show.event}\n\n".encode())
                self.wfile.flush()
            while not show.stopping:
                event = show.next_event(seen, KEEPALIVE_SECONDS)
                if event is None:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    seen = event[0]
                    self.wfile.write(f"id: {seen}\ndata: {event[1]}\n\n".encode())
                self.wfile.flush()
        except OSError:
            pass  # the page was closed

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass
