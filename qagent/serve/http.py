"""An HTTP server for one policy: qagent's v1 API and the Open Inference Protocol (v2).

Built on asyncio and the standard library alone: one event loop reads every connection, so 16
keep-alive clients cost no threads fighting over the GIL (the threaded ``http.server`` design
answered half as many requests, with a tail four times as long; docs/serving.md has the figures),
and the server still adds no dependency to a game server and starts in milliseconds. The policy
runs on the loop, or on ``workers`` threads for networks large enough to be worth it.

Endpoints (all JSON):

=======  ======================================  ==========================================
GET      /healthz                                liveness
GET      /v1/metadata                            the policy's metadata
POST     /v1/act                                 ``{"obs": ...}`` (one or a batch), or
                                                 ``{"obs_b64", "shape", "dtype"}`` (raw bytes)
POST     /v1/sessions                            new session (per-episode state)
POST     /v1/sessions/{id}/act                   one step of the session's episode
POST     /v1/sessions/{id}/reset                 start a new episode in the session
DELETE   /v1/sessions/{id}                       end the session
GET      /v2, /v2/health/live, /v2/health/ready  Open Inference Protocol (KServe / Triton)
GET      /v2/models/{name}[/versions/1][/ready]  model metadata and readiness
POST     /v2/models/{name}[/versions/1]/infer    inference
=======  ======================================  ==========================================

Request bodies are read as JSON whatever their Content-Type (so ``curl -d`` works). v2 infer
also takes and gives the binary tensor extension (``Inference-Header-Content-Length``; the
``binary_data_size`` and ``binary_data`` parameters), which ``tritonclient`` uses by default.
Bad requests get a 4xx answer with ``{"error": "..."}`` (and a ``"hint"`` where one helps),
never a 500: malformed request lines and headers, malformed JSON, missing fields, wrong shapes
or dtypes, NaN or infinity, Q-values that overflow, unknown models or sessions, wrong methods
and bodies over the size limit. The one 5xx is 503 (with ``Retry-After``) when more request
bytes are in flight than ``max_inflight_bytes`` allows.

Framing: every request's declared body is read (GET and DELETE, unknown paths and wrong
methods included) or the connection is closed after the answer, so a body never turns into a
second request. Transfer-Encoding (chunked bodies) is refused and closes the connection.
A client silent for 30 seconds mid-request is disconnected.

Request payloads are checked in :mod:`qagent.serve.payloads`, header lines in
:mod:`qagent.serve.headers`; the byte budget and the session store are in :mod:`qagent.serve.limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qagent.serve import metadata as md
from qagent.serve.errors import HttpError
from qagent.serve.headers import MAX_LINE, HeaderReader, Headers
from qagent.serve.hierarchy import HierarchicalPolicy
from qagent.serve.limits import ByteBudget, SessionStore
from qagent.serve.payloads import (
    BINARY_HEADER,
    check_finite,
    decode_b64,
    nested_batch_size,
    parse_json_body,
    split_binary_body,
    v2_input,
    v2_requested_outputs,
)
from qagent.serve.policy import InputError, Policy, as_numeric_array
from qagent.serve.signals import shutdown_on_signals

REQUEST_LINE_HINT = "send 'METHOD /path HTTP/1.1', then the headers, then an empty line"
LINGER_SECONDS = 1.0
"""After its answer, a closing connection reads and drops what the client still sends for this long."""
CLIENT_TIMEOUT = 30.0
"""Seconds a client may stay silent mid-request (slow clients cannot hold the server's memory)."""
METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
"""An HTTP method: an RFC 9110 token (any other method gets a 405 or 404 from the routes)."""
VERSION_NUMBER = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")
SERVER = "qagent-serve"

_date = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


def run_loop(main: Any) -> None:
    """``asyncio.run``, on uvloop's faster event loop where it is installed (the ``serve`` extra has it)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


@dataclass
class ServerOptions:
    """Limits and settings of a :class:`PolicyServer`."""

    model_name: str = "policy"
    """The name clients use in v2 URLs."""
    max_body_bytes: int = 8 << 20
    """Larger request bodies are refused with 413 before they are read."""
    max_inflight_bytes: int | None = None
    """Request body bytes being read and parsed at once, over all connections (default: 4 x
    ``max_body_bytes``). Parsing JSON costs several times a body's size, so this bounds the
    server's memory; a request that does not fit waits up to ``inflight_wait`` seconds, then
    gets 503 with ``Retry-After``."""
    inflight_wait: float = 1.0
    """Seconds a request waits for room under ``max_inflight_bytes``."""
    max_batch: int = 4096
    """Larger batches are refused with 413 (counted before any array is built)."""
    session_ttl: float = 600.0
    """Seconds a session may stay idle before it expires."""
    max_sessions: int = 10_000
    """Open sessions at most; creating one more ends the least recently used."""
    workers: int = 1
    """Threads that run the policy: 1 runs it on the event loop (fastest for small networks); more
    let large networks (Atari CNNs) infer on several cores while the loop reads other requests."""
    listen_backlog: int = 1024
    """Connections the kernel queues before the server accepts them."""
    access_log: bool = False
    """Log every request to stderr."""

    def __post_init__(self) -> None:
        if self.max_inflight_bytes is None:
            self.max_inflight_bytes = 4 * self.max_body_bytes
        problems = [
            f"{name} must be at least {low}, got {value!r}"
            for name, value, low in (
                ("max_body_bytes", self.max_body_bytes, 1),
                ("max_inflight_bytes", self.max_inflight_bytes, self.max_body_bytes),
                ("max_batch", self.max_batch, 1),
                ("max_sessions", self.max_sessions, 1),
                ("workers", self.workers, 1),
                ("listen_backlog", self.listen_backlog, 1),
            )
            if not value >= low
        ]
        if not (self.session_ttl > 0 and math.isfinite(self.session_ttl)):
            problems.append(f"session_ttl must be a positive number of seconds, got {self.session_ttl!r}")
        if not (self.inflight_wait >= 0 and math.isfinite(self.inflight_wait)):
            problems.append(f"inflight_wait must be a number of seconds >= 0, got {self.inflight_wait!r}")
        if problems:
            raise ValueError("; ".join(problems))


class PolicyServer:
    """Serves ``policy`` at ``address`` (port 0 picks a free port; see :attr:`url`).

    The socket listens from construction on; :meth:`serve_forever` runs the event loop in the
    calling thread until :meth:`shutdown` (from any other thread), then lets requests in flight
    finish (up to 10 s).
    """

    def __init__(self, policy: Policy, address: tuple[str, int], options: ServerOptions | None = None) -> None:
        self.policy = policy
        self.options = options or ServerOptions()
        self.sessions = SessionStore(policy, self.options.session_ttl, self.options.max_sessions)
        self.body_budget = ByteBudget(int(self.options.max_inflight_bytes or 0), self.options.inflight_wait)
        self.request_queue_size = self.options.listen_backlog
        self.socket = socket.create_server(address, backlog=self.request_queue_size)
        self.server_address = self.socket.getsockname()
        self.active = 0
        self._executor = ThreadPoolExecutor(self.options.workers) if self.options.workers > 1 else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._done = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Answer requests until :meth:`shutdown` (``poll_interval`` is accepted for http.server's callers)."""
        self._done.clear()
        try:
            run_loop(self._serve())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned (call it from another thread)."""
        with self._lock:
            self._stopping = True
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            self._done.wait()

    def server_close(self) -> None:
        self.socket.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def _serve(self) -> None:
        stop = asyncio.Event()
        with self._lock:
            if self._stopping:
                return
            self._loop, self._stop = asyncio.get_running_loop(), stop
        connections: dict[asyncio.Task[Any], Connection] = {}

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections[task] = client = Connection(self, reader, writer)
            try:
                await client.run()
            except asyncio.CancelledError:
                pass  # the server stopped: asyncio's stream callback would report a cancelled task as an error
            finally:
                connections.pop(task, None)

        async def watchdog() -> None:
            """Drop clients silent past their deadline (mid-request, or idle between requests)."""
            loop = asyncio.get_running_loop()
            while True:
                await asyncio.sleep(1.0)
                now = loop.time()
                for client in list(connections.values()):
                    if client.deadline < now:
                        client.writer.transport.abort()

        server = await asyncio.start_server(connection, sock=self.socket, limit=MAX_LINE + 1)
        patrol = asyncio.create_task(watchdog())
        try:
            await stop.wait()
        finally:
            patrol.cancel()
            server.close()
            deadline = time.monotonic() + 10.0
            while self.active and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            with self._lock:
                self._loop = self._stop = None

    async def call(self, handler: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        """Run an endpoint: on the loop, or on a worker thread when there are several."""
        if self._executor is None:
            return handler()
        return await asyncio.get_running_loop().run_in_executor(self._executor, handler)


Route = tuple[re.Pattern[str], dict[str, str]]
VERSION = r"(?:/versions/(?P<version>[^/]+))?"
ROUTES: list[Route] = [
    (re.compile(r"/healthz"), {"GET": "health"}),
    (re.compile(r"/v1/metadata"), {"GET": "v1_metadata"}),
    (re.compile(r"/v1/act"), {"POST": "v1_act"}),
    (re.compile(r"/v1/sessions"), {"POST": "session_create"}),
    (re.compile(r"/v1/sessions/(?P<sid>[^/]+)"), {"DELETE": "session_delete"}),
    (re.compile(r"/v1/sessions/(?P<sid>[^/]+)/act"), {"POST": "session_act"}),
    (re.compile(r"/v1/sessions/(?P<sid>[^/]+)/reset"), {"POST": "session_reset"}),
    (re.compile(r"/v2"), {"GET": "v2_server"}),
    (re.compile(r"/v2/health/live"), {"GET": "v2_live"}),
    (re.compile(r"/v2/health/ready"), {"GET": "v2_ready"}),
    (re.compile(rf"/v2/models/(?P<name>[^/]+){VERSION}"), {"GET": "v2_model"}),
    (re.compile(rf"/v2/models/(?P<name>[^/]+){VERSION}/ready"), {"GET": "v2_model_ready"}),
    (re.compile(rf"/v2/models/(?P<name>[^/]+){VERSION}/infer"), {"POST": "v2_infer"}),
]
BODY_OPTIONAL = {"session_create", "session_reset"}
BINARY_ROUTES = {"v2_infer"}
"""Routes that take the binary tensor extension (a JSON part, then tensor bytes)."""


@dataclass
class RawAnswer:
    """An answer that is not (only) JSON: the v2 binary tensor extension's."""

    data: bytes
    headers: dict[str, str]


@dataclass
class Request:
    """One request's head, as :class:`Connection` read it."""

    method: str
    target: str
    version: str
    headers: Headers


class Connection:
    """One client's connection: reads requests one after another and answers each."""

    def __init__(self, server: PolicyServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.close = False
        self.request: Request | None = None
        self.loop = asyncio.get_running_loop()
        self.deadline = math.inf
        """When the client's time for its current read or write runs out (the server's watchdog looks)."""
        sock = writer.get_extra_info("socket")
        if sock is not None:  # else the headers and a small body wait on the client's delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def run(self) -> None:
        try:
            while not self.close:
                await self.one_request()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to tell anyone
        finally:
            self.deadline = math.inf
            await self.linger_and_close()

    def patience(self) -> None:
        """Give the client CLIENT_TIMEOUT seconds for the next read or write; then the watchdog drops it.

        A deadline the server's watchdog checks once a second: cheaper than a timeout per await
        (a task each) or a timer per read, which cost more than the policy's inference.
        """
        self.deadline = self.loop.time() + CLIENT_TIMEOUT

    async def read_line(self) -> bytes:
        """A line with its ending (the partial line at the end of the stream); longer than MAX_LINE: over."""
        self.patience()
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:
            return b"x" * (MAX_LINE + 1)

    async def one_request(self) -> None:
        """Read one request and answer it; any method goes to the routes (so unknown ones get a 405)."""
        self.request = None
        line = await self.read_line()
        for _ in range(8):  # RFC 9112 2.2: ignore empty lines before a request line
            if line not in (b"\r\n", b"\n"):
                break
            line = await self.read_line()
        if not line:
            self.close = True
            return
        if len(line) > MAX_LINE:
            await self.refuse(414, f"the request line is longer than {MAX_LINE} bytes")
            return
        if await self.read_head(line):
            await self.dispatch()

    async def read_head(self, line: bytes) -> bool:
        """The request line and headers; False when a refusal was sent instead."""
        text = str(line, "iso-8859-1").rstrip("\r\n")
        words = text.split()
        if len(words) != 3:
            what = "an HTTP/0.9 request line" if len(words) == 2 else f"a malformed request line {text!r}"
            await self.refuse(400, f"{what[:200]}; qagent serve speaks HTTP/1.1")
            return False
        method, target, version = words
        number = VERSION_NUMBER.fullmatch(version)
        if number is None:
            await self.refuse(400, f"bad request version {version[:40]!r}")
            return False
        major_minor = int(number[1]), int(number[2])
        if major_minor >= (2, 0):
            await self.refuse(400, f"invalid HTTP version ({version[5:45]}); qagent serve speaks HTTP/1.1")
            return False
        if not METHOD.fullmatch(method):
            await self.refuse(400, f"{method[:50]!r} is not an HTTP method")
            return False
        self.close = major_minor < (1, 1)
        reader = HeaderReader()
        try:
            while not reader.feed(await self.read_line()):
                pass
        except HttpError as exc:
            await self.refuse(exc.status, exc.message)
            return False
        headers = reader.headers
        self.request = Request(
            method, "/" + target.lstrip("/") if target.startswith("//") else target, version, headers
        )
        connection = (headers.get("Connection") or "").lower()
        if connection in ("close", "keep-alive"):
            self.close = connection == "close"
        if (headers.get("Expect") or "").lower() == "100-continue" and major_minor >= (1, 1):
            try:
                self.body_length()  # refuse a body the client has not sent yet when it would be refused anyway
            except HttpError as exc:
                await self.answer(exc.status, json.dumps(exc.payload()).encode(), exc.headers)
                return False
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def body_length(self) -> int:
        """The declared body size; an error that closes the connection when the framing is not one we read."""
        headers = self.request.headers if self.request else Headers([])
        if "Transfer-Encoding" in headers:
            self.close = True
            raise HttpError(
                411,
                "Transfer-Encoding (chunked request bodies) is not supported",
                hint="send the body with a Content-Length header",
            )
        values = {value.strip() for value in headers.get_all("Content-Length") or []}
        if not values:
            return 0
        value = values.pop()
        if values or not re.fullmatch(r"[0-9]{1,19}", value):
            self.close = True
            shown = ", ".join(repr(v[:40]) for v in sorted({value, *values}))
            raise HttpError(400, f"invalid Content-Length {shown}", hint="one Content-Length: the body's size in bytes")
        length = int(value)
        limit = self.server.options.max_body_bytes
        if length > limit:
            self.close = True  # the body stays unread
            raise HttpError(
                413,
                f"request body of {length} bytes exceeds the limit of {limit}",
                hint="send fewer observations per request, or obs_b64 for images (see --max-body)",
            )
        return length

    async def read_body(self, length: int, keep: bool = True) -> bytes:
        """``length`` body bytes (dropped in pieces when not ``keep``); an early end closes the connection."""
        chunks, left = [], length
        while left:
            self.patience()
            chunk = await self.reader.read(min(left, 1 << 20))
            if not chunk:
                self.close = True
                raise HttpError(400, f"request body ended after {length - left} of {length} bytes")
            left -= len(chunk)
            if keep:
                chunks.append(chunk)
        return b"".join(chunks)

    async def dispatch(self) -> None:
        request = self.request
        assert request is not None
        server = self.server
        server.active += 1
        reserved = 0
        try:
            try:
                length = self.body_length()
                if length:
                    if not await server.body_budget.acquire(length):
                        await self.read_body(length, keep=False)
                        raise HttpError(
                            503,
                            "the server is busy: it is reading as many request bytes as it may (--max-inflight)",
                            {"Retry-After": "1"},
                            hint="retry in a second",
                        )
                    reserved = length
                raw = await self.read_body(length)
                name, params = route(request.method, request.target)
                body, binary = None, b""
                if request.method == "POST":
                    if "Content-Length" not in request.headers and name not in BODY_OPTIONAL:
                        self.close = True
                        raise HttpError(411, "a POST body needs a Content-Length header")
                    if name in BINARY_ROUTES:
                        raw, binary = split_binary_body(raw, request.headers.get(BINARY_HEADER))
                    body = parse_json_body(raw, required=name not in BODY_OPTIONAL)
                endpoint = getattr(Endpoints(server, binary), name)
                status, payload = await server.call(functools.partial(endpoint, body, **params))
                if isinstance(payload, RawAnswer):
                    headers, data = payload.headers, payload.data
                else:
                    headers, data = {}, json.dumps(payload, allow_nan=False).encode()
            except HttpError as exc:
                status, headers, data = exc.status, exc.headers, json.dumps(exc.payload()).encode()
            except InputError as exc:
                status, headers, data = 422, {}, json.dumps({"error": str(exc)}).encode()
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                self.close = True
                raise
            except Exception:  # noqa: BLE001 - a bug: say so, keep serving
                traceback.print_exc(file=sys.stderr)
                status, headers, data = 500, {}, json.dumps({"error": "internal server error"}).encode()
            await self.answer(status, data, headers)
        finally:
            if reserved:
                server.body_budget.release(reserved)
            server.active -= 1

    async def refuse(self, status: int, message: str) -> None:
        """A refusal of the request line or headers: JSON like every answer, then the connection closes."""
        self.close = True
        await self.answer(status, json.dumps({"error": message, "hint": REQUEST_LINE_HINT}).encode(), {})

    async def answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        """The whole answer in one write."""
        lines = [
            status_line(status),
            f"Server: {SERVER}",
            f"Date: {http_date()}",
            f"Content-Type: {headers.pop('Content-Type', 'application/json')}",
            f"Content-Length: {len(data)}",
        ]
        if self.close:
            lines.append("Connection: close")
        lines += [f"{key}: {value}" for key, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        head_only = self.request is not None and self.request.method == "HEAD"
        self.writer.write(head if head_only else head + data)
        self.patience()
        await self.writer.drain()
        if self.server.options.access_log:
            line = f"{self.request.method} {self.request.target} {self.request.version}" if self.request else "-"
            peer = self.writer.get_extra_info("peername") or ("-",)
            print(f'{peer[0]} - - [{http_date()}] "{line[:200]}" {status} -', file=sys.stderr)

    async def linger_and_close(self) -> None:
        """Close gracefully: stop sending, then drop what the client still sends (bounded in bytes and time).

        Closing a socket with unread bytes makes the kernel reset the connection, and a client may
        then lose the answer it was about to read (a 413, say).
        """
        writer = self.writer
        try:
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
                left = 2 * self.server.options.max_body_bytes + (64 << 10)
                deadline = time.monotonic() + LINGER_SECONDS
                while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                    chunk = await asyncio.wait_for(self.reader.read(min(64 << 10, left)), remaining)
                    if not chunk:
                        break
                    left -= len(chunk)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), LINGER_SECONDS)


@functools.lru_cache(maxsize=64)
def status_line(status: int) -> str:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    return f"HTTP/1.1 {status} {reason}"


def route(method: str, target: str) -> tuple[str, dict[str, str]]:
    """The endpoint's name and URL parameters for a method and target; 404 or 405 otherwise."""
    try:
        path = urlsplit(target).path.rstrip("/") or "/"
    except ValueError:  # "http://[" is not a URL
        raise HttpError(400, f"invalid request target {target[:100]!r}") from None
    for pattern, methods in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if method not in methods:
                allowed = ", ".join(sorted(methods))
                raise HttpError(405, f"{method[:50]} is not allowed on {path[:200]}; use {allowed}", {"Allow": allowed})
            return methods[method], {k: v for k, v in match.groupdict().items()}
    raise HttpError(
        404, f"no endpoint at {path[:200]}", hint="see GET /v1/metadata and the v2 routes in docs/serving.md"
    )


class Endpoints:
    """The endpoints: each takes the parsed body (and URL parameters) and returns ``(status, payload)``."""

    def __init__(self, server: PolicyServer, binary: bytes = b"") -> None:
        self.server = server
        self.binary = binary
        """The bytes after a v2 request's JSON part (the binary tensor extension)."""

    # ------------------------------------------------------------------ observations

    def _observation(self, body: dict[str, Any], rank: int | None = None) -> np.ndarray:
        """``obs`` from ``{"obs": ...}`` or ``{"obs_b64": ..., "shape": ..., "dtype": ...}``.

        With ``rank`` (a batch's axes), a batch over the limit is refused before its array is built.
        """
        if "obs" in body:
            obs = body["obs"]
            if rank is not None:
                self._check_batch_size(nested_batch_size(obs, rank))
            return as_numeric_array(obs)
        if "obs_b64" in body:
            return decode_b64(body, rank, self._check_batch_size)
        raise HttpError(400, "missing field 'obs' (or 'obs_b64' with 'shape' and 'dtype')")

    def _check_batch_size(self, size: int | None) -> None:
        limit = self.server.options.max_batch
        if size is not None and size > limit:
            raise HttpError(
                413,
                f"a batch of {size} observations exceeds the limit of {limit}",
                hint="split the batch (see --max-batch)",
            )

    def _checked_batch(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        batch, single = self.server.policy.prepare(obs)
        self._check_batch_size(len(batch))
        return batch, single

    @property
    def _batch_rank(self) -> int:
        return len(self.server.policy.observation_shape) + 1

    # ------------------------------------------------------------------ v1

    def health(self, body: None) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    def v1_metadata(self, body: None) -> tuple[int, Any]:
        return 200, self.server.policy.metadata

    def v1_act(self, body: dict[str, Any]) -> tuple[int, Any]:
        batch, single = self._checked_batch(self._observation(body, self._batch_rank))
        policy = self.server.policy
        if isinstance(policy, HierarchicalPolicy):
            goal_inputs = body.get("goal_input")
            if goal_inputs is not None and single:
                goal_inputs = [goal_inputs]
            if goal_inputs is not None and (not isinstance(goal_inputs, list) or len(goal_inputs) != len(batch)):
                raise HttpError(400, "'goal_input' must hold one vector per observation")
            actions, q_values, goals = policy.predict_with_goals(batch, goal_inputs)
            check_finite(q_values)
            names = [policy.goals[g] for g in goals]
            return 200, {"actions": actions.tolist(), "q_values": q_values.tolist(), "goals": names}
        actions, q_values = self.server.policy.predict(batch)
        check_finite(q_values)
        return 200, {"actions": actions.tolist(), "q_values": q_values.tolist()}

    def session_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        sid = self.server.sessions.create()
        stack = self.server.policy.frame_stack
        return 201, {"session_id": sid, "ttl_seconds": self.server.options.session_ttl, "frame_stack": stack}

    def session_act(self, body: dict[str, Any], sid: str) -> tuple[int, Any]:
        session, lock = self.server.sessions.get(sid)
        obs = self._observation(body)
        with lock:
            before = session.snapshot()
            action, q_values = session.step(obs, body.get("goal_input"))
            try:
                check_finite(q_values, " (the session did not advance)")
            except InputError:
                session.restore(before)
                raise
            step = session.steps
            info = session.info()
        return 200, {"action": action, "q_values": q_values.tolist(), "step": step, **info}

    def session_reset(self, body: dict[str, Any], sid: str) -> tuple[int, Any]:
        session, lock = self.server.sessions.get(sid)
        with lock:
            session.reset()
        return 200, {"session_id": sid, "reset": True}

    def session_delete(self, body: None, sid: str) -> tuple[int, Any]:
        self.server.sessions.delete(sid)
        return 200, {"deleted": sid}

    # ------------------------------------------------------------------ v2 (Open Inference Protocol)

    def _model(self, name: str, version: str | None) -> None:
        expected = self.server.options.model_name
        if name != expected:
            raise HttpError(404, f"unknown model {name[:100]!r}; this server serves {expected!r}")
        if version not in (None, "1"):
            raise HttpError(404, f"unknown version {version[:100]!r} of model {name!r}; the only version is '1'")

    def v2_server(self, body: None) -> tuple[int, Any]:
        return 200, {
            "name": "qagent",
            "version": str(self.server.policy.metadata.get("qagent_version", "")),
            "extensions": ["binary_tensor_data"],
        }

    def v2_live(self, body: None) -> tuple[int, Any]:
        return 200, {"live": True}

    def v2_ready(self, body: None) -> tuple[int, Any]:
        return 200, {"ready": True}

    def v2_model(self, body: None, name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        meta = self.server.policy.metadata
        tensors = {
            section: [
                {"name": key, "datatype": md.V2_DATATYPES[spec["dtype"]], "shape": spec["shape"]}
                for key, spec in meta.get(section, {}).items()
            ]
            for section in ("inputs", "outputs")
        }
        return 200, {"name": name, "versions": ["1"], "platform": "onnxruntime_onnx", **tensors}

    def v2_model_ready(self, body: None, name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        return 200, {"name": name, "ready": True}

    def v2_infer(self, body: dict[str, Any], name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        request_id = body.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise HttpError(400, "'id' must be a string")
        wanted = v2_requested_outputs(body)
        obs = v2_input(body, self.server.policy, self._check_batch_size, self.binary)
        batch, _ = self._checked_batch(obs)
        actions, q_values = self.server.policy.predict(batch)
        check_finite(q_values)
        tensors = {"q_values": (q_values.astype("<f4"), "FP32"), "action": (actions.astype("<i8"), "INT64")}
        outputs, blobs = [], []
        for key, (array, datatype) in tensors.items():
            if key not in wanted:
                continue
            output: dict[str, Any] = {"name": key, "datatype": datatype, "shape": list(array.shape)}
            if wanted[key]:
                blobs.append(array.tobytes())
                output["parameters"] = {"binary_data_size": len(blobs[-1])}
            else:
                output["data"] = array.reshape(-1).tolist()
            outputs.append(output)
        answer: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": outputs}
        if request_id is not None:
            answer["id"] = request_id
        if not blobs:
            return 200, answer
        head = json.dumps(answer, allow_nan=False).encode()
        headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(head))}
        return 200, RawAnswer(b"".join([head, *blobs]), headers)


def run_server(
    path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    options: ServerOptions | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the policy at ``path`` until SIGINT or SIGTERM, then finish requests in flight."""
    policy = Policy.load(path)
    server = PolicyServer(policy, (host, port), options)
    with shutdown_on_signals(server.shutdown):
        announce(
            f"serving {path} ({policy.describe()}) at {server.url} as model "
            f"'{server.options.model_name}'; Ctrl-C or SIGTERM stops"
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()
