"""An HTTP server for one policy: qagent's v1 API and the Open Inference Protocol (v2).

Built on the standard library's ``ThreadingHTTPServer``: it adds no dependency to a game
server, starts in milliseconds, and a thread per connection is plenty for a model that answers
in tens of microseconds (onnxruntime releases the GIL while it runs, so requests overlap).

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

Request payloads are checked in :mod:`qagent.serve.payloads`; the byte budget and the
session store are in :mod:`qagent.serve.limits`.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qagent.serve import metadata as md
from qagent.serve.errors import HttpError
from qagent.serve.headers import read_headers
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

REQUEST_LINE_HINT = "send 'METHOD /path HTTP/1.1', then the headers, then an empty line"
LINGER_SECONDS = 1.0
"""After its answer, a closing connection reads and drops what the client still sends for this long."""
VERSION_NUMBER = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")
METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
"""An HTTP method: an RFC 9110 token (any other method gets a 405 or 404 from the routes)."""


_date = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


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
    workers: int = os.cpu_count() or 1
    """Inferences run at the same time (threads; extra requests wait their turn)."""
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


class PolicyServer(ThreadingHTTPServer):
    """Serves ``policy`` at ``address`` (port 0 picks a free port; see :attr:`url`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, policy: Policy, address: tuple[str, int], options: ServerOptions | None = None) -> None:
        self.policy = policy
        self.options = options or ServerOptions()
        self.sessions = SessionStore(policy, self.options.session_ttl, self.options.max_sessions)
        self.inference = threading.BoundedSemaphore(max(1, self.options.workers))
        self.body_budget = ByteBudget(int(self.options.max_inflight_bytes or 0), self.options.inflight_wait)
        self.request_queue_size = self.options.listen_backlog  # socketserver's listen() backlog
        self.active = 0
        self._active_lock = threading.Lock()
        super().__init__(address, PolicyRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.inference:
            return self.policy.predict(batch)

    def track(self, delta: int) -> None:
        with self._active_lock:
            self.active += delta

    def drain(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout`` seconds) for requests in flight to finish."""
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.01)

    def shutdown_request(self, request: Any) -> None:
        """Close gracefully: stop sending, then drop what the client still sends (bounded in bytes and time).

        Closing a socket with unread bytes makes the kernel reset the connection, and a client may
        then lose the answer it was about to read (a 413, say).
        """
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(LINGER_SECONDS)
            left = 2 * self.options.max_body_bytes + (64 << 10)
            while left > 0:
                chunk = request.recv(min(64 << 10, left))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away or stalled: nothing to tell anyone
        super().handle_error(request, client_address)


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


class PolicyRequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests; every answer is JSON."""

    server: PolicyServer
    binary = b""
    """The bytes after a v2 request's JSON part (the binary tensor extension)."""
    protocol_version = "HTTP/1.1"
    server_version = "qagent-serve"
    timeout = 30  # seconds a client may stay silent mid-request (slow clients cannot pin threads)
    disable_nagle_algorithm = True  # else headers and body wait on the client's delayed ACK (~40 ms)

    # ------------------------------------------------------------------ framing

    def handle_one_request(self) -> None:
        """Read one request and answer it; any method goes to :meth:`_dispatch` (so unknown ones get a 405)."""
        try:
            line = self.rfile.readline(65537)
            for _ in range(8):  # RFC 9112 2.2: ignore empty lines before a request line
                if line not in (b"\r\n", b"\n"):
                    break
                line = self.rfile.readline(65537)
            self.raw_requestline = line
            if not line:
                self.close_connection = True
                return
            if len(line) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414, "the request line is longer than 65536 bytes")
                return
            if not self.parse_request():
                return  # the refusal is sent
            self._dispatch(self.command)
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True  # a read or a write timed out: drop the connection

    def parse_request(self) -> bool:
        """The request line and headers, as http.server reads them but stricter and faster.

        HTTP/0.9 is refused (before it waits for headers that never come), so is HTTP/2 and later;
        the method must be a token; headers are read by :func:`~qagent.serve.headers.read_headers`.
        """
        self.command, self.request_version, self.close_connection = None, "HTTP/1.0", True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3:
            what = "an HTTP/0.9 request line" if len(words) == 2 else f"a malformed request line {self.requestline!r}"
            self.send_error(400, f"{what[:200]}; qagent serve speaks HTTP/1.1")
            return False
        command, path, version = words
        number = VERSION_NUMBER.fullmatch(version)
        if number is None:
            self.send_error(400, f"bad request version {version[:40]!r}")
            return False
        major_minor = int(number[1]), int(number[2])
        if major_minor >= (2, 0):
            self.send_error(505, f"invalid HTTP version ({version[5:45]})")
            return False
        self.request_version, self.close_connection = version, major_minor < (1, 1)
        if not METHOD.fullmatch(command):
            self.send_error(400, f"{command[:50]!r} is not an HTTP method")
            return False
        self.command, self.path = command, "/" + path.lstrip("/") if path.startswith("//") else path
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment] - what the handler asks of headers
        except HttpError as exc:
            self.send_error(exc.status, exc.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection in ("close", "keep-alive"):
            self.close_connection = connection == "close"
        expect = (self.headers.get("Expect") or "").lower()
        return not (expect == "100-continue" and major_minor >= (1, 1) and not self.handle_expect_100())

    def handle_expect_100(self) -> bool:
        """Refuse a body the client has not sent yet (before ``100 Continue``) when it would be refused anyway."""
        try:
            self._body_length()
        except HttpError as exc:
            self._send(exc.status, exc.payload(), exc.headers)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (request line, headers) as JSON, like every answer; the connection closes."""
        self.close_connection = True
        if self.request_version in (None, "", "HTTP/0.9"):
            self.request_version = "HTTP/1.0"  # so a status line and headers are written
        text = message or self.responses.get(code, ("bad request",))[0]
        if code == 505:  # HTTP/2 and later
            code, text = 400, f"{text}; qagent serve speaks HTTP/1.1"
        elif code >= 500:
            code = 400
        if explain:
            text = f"{text}: {explain}"
        self._send(code, {"error": text, "hint": REQUEST_LINE_HINT})

    def _body_length(self) -> int:
        """The declared body size; an error that closes the connection when the framing is not one we read."""
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise HttpError(
                411,
                "Transfer-Encoding (chunked request bodies) is not supported",
                hint="send the body with a Content-Length header",
            )
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        value = values.pop()
        if values or not re.fullmatch(r"[0-9]{1,19}", value):
            self.close_connection = True
            shown = ", ".join(repr(v[:40]) for v in sorted({value, *values}))
            raise HttpError(400, f"invalid Content-Length {shown}", hint="one Content-Length: the body's size in bytes")
        length = int(value)
        limit = self.server.options.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise HttpError(
                413,
                f"request body of {length} bytes exceeds the limit of {limit}",
                hint="send fewer observations per request, or obs_b64 for images (see --max-body)",
            )
        return length

    def _read_exactly(self, length: int, keep: bool = True) -> bytes:
        """``length`` body bytes (dropped in pieces when not ``keep``); an early end closes the connection."""
        chunks, left = [], length
        while left:
            chunk = self.rfile.read(left if keep else min(left, 64 << 10))
            if not chunk:
                self.close_connection = True
                raise HttpError(400, f"request body ended after {length - left} of {length} bytes")
            left -= len(chunk)
            if keep:
                chunks.append(chunk)
        return b"".join(chunks)

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self, method: str) -> None:
        self.server.track(+1)
        reserved = 0
        try:
            try:
                length = self._body_length()
                if length:
                    if not self.server.body_budget.acquire(length):
                        self._read_exactly(length, keep=False)
                        raise HttpError(
                            503,
                            "the server is busy: it is reading as many request bytes as it may (--max-inflight)",
                            {"Retry-After": "1"},
                            hint="retry in a second",
                        )
                    reserved = length
                raw = self._read_exactly(length)
                name, params = self._route(method)
                body = None
                self.binary = b""
                if method == "POST":
                    if "Content-Length" not in self.headers and name not in BODY_OPTIONAL:
                        self.close_connection = True
                        raise HttpError(411, "a POST body needs a Content-Length header")
                    if name in BINARY_ROUTES:
                        raw, self.binary = split_binary_body(raw, self.headers.get(BINARY_HEADER))
                    body = parse_json_body(raw, required=name not in BODY_OPTIONAL)
                status, payload = getattr(self, name)(body, **params)
                if isinstance(payload, RawAnswer):
                    headers, data = payload.headers, payload.data
                else:
                    headers, data = {}, json.dumps(payload, allow_nan=False).encode()
            except HttpError as exc:
                status, headers, data = exc.status, exc.headers, json.dumps(exc.payload()).encode()
            except InputError as exc:
                status, headers, data = 422, {}, json.dumps({"error": str(exc)}).encode()
            except OSError:
                self.close_connection = True
                raise
            except Exception:  # noqa: BLE001 - a bug: say so, keep serving
                traceback.print_exc(file=sys.stderr)
                status, headers, data = 500, {}, json.dumps({"error": "internal server error"}).encode()
            self._send_bytes(status, data, headers)
        finally:
            if reserved:
                self.server.body_budget.release(reserved)
            self.server.track(-1)

    def _route(self, method: str) -> tuple[str, dict[str, str]]:
        try:
            path = urlsplit(self.path).path.rstrip("/") or "/"
        except ValueError:  # "http://[" is not a URL
            raise HttpError(400, f"invalid request target {self.path[:100]!r}") from None
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if method not in methods:
                    allowed = ", ".join(sorted(methods))
                    raise HttpError(
                        405, f"{method[:50]} is not allowed on {path[:200]}; use {allowed}", {"Allow": allowed}
                    )
                return methods[method], {k: v for k, v in match.groupdict().items()}
        raise HttpError(
            404, f"no endpoint at {path[:200]}", hint="see GET /v1/metadata and the v2 routes in docs/serving.md"
        )

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload, allow_nan=False).encode(), headers or {})

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        """The whole answer in one write (a status line and headers written apart cost a second syscall)."""
        self.log_request(status)
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {http_date()}",
            f"Content-Type: {headers.pop('Content-Type', 'application/json')}",
            f"Content-Length: {len(data)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        lines += [f"{key}: {value}" for key, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.options.access_log:
            super().log_message(format, *args)

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
            with self.server.inference:
                actions, q_values, goals = policy.predict_with_goals(batch, goal_inputs)
            check_finite(q_values)
            names = [policy.goals[g] for g in goals]
            return 200, {"actions": actions.tolist(), "q_values": q_values.tolist(), "goals": names}
        actions, q_values = self.server.predict(batch)
        check_finite(q_values)
        return 200, {"actions": actions.tolist(), "q_values": q_values.tolist()}

    def session_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        sid = self.server.sessions.create()
        stack = self.server.policy.frame_stack
        return 201, {"session_id": sid, "ttl_seconds": self.server.options.session_ttl, "frame_stack": stack}

    def session_act(self, body: dict[str, Any], sid: str) -> tuple[int, Any]:
        session, lock = self.server.sessions.get(sid)
        obs = self._observation(body)
        with lock, self.server.inference:
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
        actions, q_values = self.server.predict(batch)
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
    import signal

    policy = Policy.load(path)
    server = PolicyServer(policy, (host, port), options)
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    announce(
        f"serving {path} ({policy.describe()}) at {server.url} as model "
        f"'{server.options.model_name}'; Ctrl-C or SIGTERM stops"
    )
    try:
        server.serve_forever(poll_interval=0.1)
        server.drain()
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
