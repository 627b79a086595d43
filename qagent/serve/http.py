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

Request bodies are read as JSON whatever their Content-Type (so ``curl -d`` works).
Bad requests get a 4xx answer with ``{"error": "..."}``, never a 5xx: malformed JSON, missing
fields, wrong shapes or dtypes, NaN or infinity, unknown models or sessions, wrong methods and
bodies over the size limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qagent.serve import metadata as md
from qagent.serve.hierarchy import HierarchicalPolicy
from qagent.serve.policy import InputError, Policy, PolicySession, as_numeric_array


class HttpError(Exception):
    """An answer other than 200, with a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class ServerOptions:
    """Limits and settings of a :class:`PolicyServer`."""

    model_name: str = "policy"
    """The name clients use in v2 URLs."""
    max_body_bytes: int = 8 << 20
    """Larger request bodies are refused with 413 before they are read."""
    max_batch: int = 4096
    """Larger batches are refused with 413."""
    session_ttl: float = 600.0
    """Seconds a session may stay idle before it expires."""
    max_sessions: int = 10_000
    """Open sessions at most; more are refused with 429."""
    workers: int = os.cpu_count() or 1
    """Inferences run at the same time (threads; extra requests wait their turn)."""
    access_log: bool = False
    """Log every request to stderr."""


class SessionStore:
    """Sessions by id; a session idle for ``ttl`` seconds expires."""

    def __init__(
        self, policy: Policy, ttl: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: dict[str, tuple[PolicySession, threading.Lock, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._sessions)

    def _purge(self) -> None:
        now = self.clock()
        for sid in [sid for sid, (_, _, used) in self._sessions.items() if now - used > self.ttl]:
            del self._sessions[sid]

    def create(self) -> str:
        with self._lock:
            self._purge()
            if len(self._sessions) >= self.max_sessions:
                raise HttpError(429, f"too many open sessions ({self.max_sessions}); delete finished ones")
            sid = uuid.uuid4().hex
            self._sessions[sid] = (self.policy.session(), threading.Lock(), self.clock())
            return sid

    def get(self, sid: str) -> tuple[PolicySession, threading.Lock]:
        with self._lock:
            self._purge()
            if sid not in self._sessions:
                raise HttpError(404, f"unknown or expired session {sid!r}")
            session, lock, _ = self._sessions[sid]
            self._sessions[sid] = (session, lock, self.clock())
            return session, lock

    def delete(self, sid: str) -> None:
        with self._lock:
            if self._sessions.pop(sid, None) is None:
                raise HttpError(404, f"unknown or expired session {sid!r}")


class PolicyServer(ThreadingHTTPServer):
    """Serves ``policy`` at ``address`` (port 0 picks a free port; see :attr:`url`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, policy: Policy, address: tuple[str, int], options: ServerOptions | None = None) -> None:
        self.policy = policy
        self.options = options or ServerOptions()
        self.sessions = SessionStore(policy, self.options.session_ttl, self.options.max_sessions)
        self.inference = threading.BoundedSemaphore(max(1, self.options.workers))
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


class PolicyRequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests; every answer is JSON."""

    server: PolicyServer
    protocol_version = "HTTP/1.1"
    server_version = "qagent-serve"
    timeout = 30  # seconds a client may stay silent mid-request (slow clients cannot pin threads)
    disable_nagle_algorithm = True  # else headers and body wait on the client's delayed ACK (~40 ms)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self, method: str) -> None:
        self.server.track(+1)
        try:
            name, params = self._route(method)
            body = self._read_body(required=name not in BODY_OPTIONAL) if method == "POST" else None
            status, payload = getattr(self, name)(body, **params)
            self._send(status, payload)
        except HttpError as exc:
            self._send(exc.status, {"error": exc.message}, exc.headers)
        except InputError as exc:
            self._send(422, {"error": str(exc)})
        except Exception:  # noqa: BLE001 - a bug: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self._send(500, {"error": "internal server error"})
        finally:
            self.server.track(-1)

    def _route(self, method: str) -> tuple[str, dict[str, str]]:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if method not in methods:
                    allowed = ", ".join(sorted(methods))
                    raise HttpError(405, f"{method} is not allowed on {path}; use {allowed}", {"Allow": allowed})
                return methods[method], {k: v for k, v in match.groupdict().items()}
        raise HttpError(404, f"no endpoint at {path}; see GET /v1/metadata and the v2 routes")

    def _read_body(self, required: bool) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "chunked request bodies are not supported; send a Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if required:
                self.close_connection = True
                raise HttpError(411, "a POST body needs a Content-Length header")
            return {}
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HttpError(400, f"invalid Content-Length {length_header!r}") from None
        if length > self.server.options.max_body_bytes:
            self.close_connection = True  # the body stays unread
            raise HttpError(
                413, f"request body of {length} bytes exceeds the limit of {self.server.options.max_body_bytes}"
            )
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self.close_connection = True
            raise HttpError(400, "request body ended early")
        if not raw:
            if required:
                raise HttpError(400, "request body is empty; send a JSON object")
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HttpError(400, f"request body must be a JSON object, not {type(body).__name__}")
        return body

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.options.access_log:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ observations

    def _observation(self, body: dict[str, Any]) -> np.ndarray:
        """``obs`` from ``{"obs": ...}`` or ``{"obs_b64": ..., "shape": ..., "dtype": ...}``."""
        if "obs" in body:
            return as_numeric_array(body["obs"])
        if "obs_b64" in body:
            return decode_b64(body)
        raise HttpError(400, "missing field 'obs' (or 'obs_b64' with 'shape' and 'dtype')")

    def _checked_batch(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        batch, single = self.server.policy.prepare(obs)
        if len(batch) > self.server.options.max_batch:
            raise HttpError(
                413, f"a batch of {len(batch)} observations exceeds the limit of {self.server.options.max_batch}"
            )
        return batch, single

    # ------------------------------------------------------------------ v1

    def health(self, body: None) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    def v1_metadata(self, body: None) -> tuple[int, Any]:
        return 200, self.server.policy.metadata

    def v1_act(self, body: dict[str, Any]) -> tuple[int, Any]:
        batch, single = self._checked_batch(self._observation(body))
        policy = self.server.policy
        if isinstance(policy, HierarchicalPolicy):
            goal_inputs = body.get("goal_input")
            if goal_inputs is not None and single:
                goal_inputs = [goal_inputs]
            if goal_inputs is not None and (not isinstance(goal_inputs, list) or len(goal_inputs) != len(batch)):
                raise HttpError(400, "'goal_input' must hold one vector per observation")
            with self.server.inference:
                actions, q_values, goals = policy.predict_with_goals(batch, goal_inputs)
            names = [policy.goals[g] for g in goals]
            return 200, {"actions": actions.tolist(), "q_values": q_values.tolist(), "goals": names}
        actions, q_values = self.server.predict(batch)
        return 200, {"actions": actions.tolist(), "q_values": q_values.tolist()}

    def session_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        sid = self.server.sessions.create()
        stack = self.server.policy.frame_stack
        return 201, {"session_id": sid, "ttl_seconds": self.server.options.session_ttl, "frame_stack": stack}

    def session_act(self, body: dict[str, Any], sid: str) -> tuple[int, Any]:
        session, lock = self.server.sessions.get(sid)
        obs = self._observation(body)
        with lock, self.server.inference:
            action, q_values = session.step(obs, body.get("goal_input"))
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
            raise HttpError(404, f"unknown model {name!r}; this server serves {expected!r}")
        if version not in (None, "1"):
            raise HttpError(404, f"unknown version {version!r} of model {name!r}; the only version is '1'")

    def v2_server(self, body: None) -> tuple[int, Any]:
        return 200, {
            "name": "qagent",
            "version": self.server.policy.metadata.get("qagent_version", ""),
            "extensions": [],
        }

    def v2_live(self, body: None) -> tuple[int, Any]:
        return 200, {"live": True}

    def v2_ready(self, body: None) -> tuple[int, Any]:
        return 200, {"ready": True}

    def v2_model(self, body: None, name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        meta = self.server.policy.metadata
        inputs = [
            {"name": key, "datatype": md.V2_DATATYPES[spec["dtype"]], "shape": spec["shape"]}
            for key, spec in meta["inputs"].items()
        ]
        outputs = [
            {"name": key, "datatype": md.V2_DATATYPES[spec["dtype"]], "shape": spec["shape"]}
            for key, spec in meta["outputs"].items()
        ]
        return 200, {
            "name": name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": inputs,
            "outputs": outputs,
        }

    def v2_model_ready(self, body: None, name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        return 200, {"name": name, "ready": True}

    def v2_infer(self, body: dict[str, Any], name: str, version: str | None) -> tuple[int, Any]:
        self._model(name, version)
        obs = v2_input(body, self.server.policy)
        wanted = v2_requested_outputs(body)
        batch, _ = self._checked_batch(obs)
        actions, q_values = self.server.predict(batch)
        tensors = {"q_values": (q_values, "FP32"), "action": (actions, "INT64")}
        outputs = [
            {"name": key, "datatype": datatype, "shape": list(array.shape), "data": array.reshape(-1).tolist()}
            for key, (array, datatype) in tensors.items()
            if key in wanted
        ]
        answer: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": outputs}
        if "id" in body:
            answer["id"] = body["id"]
        return 200, answer


def decode_b64(body: dict[str, Any]) -> np.ndarray:
    """A raw little-endian array from ``obs_b64``, ``shape`` and ``dtype``."""
    shape, dtype = body.get("shape"), body.get("dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise HttpError(400, "obs_b64 needs 'shape', a list of non-negative integers")
    if not isinstance(dtype, str):
        raise HttpError(400, "obs_b64 needs 'dtype', a numpy dtype name such as 'uint8' or 'float32'")
    try:
        np_dtype = np.dtype(dtype).newbyteorder("<")
    except TypeError:
        raise InputError(f"unknown dtype {dtype!r}") from None
    if np_dtype.kind not in "biuf":
        raise InputError(f"dtype {dtype!r} is not numeric")
    payload = body["obs_b64"]
    if not isinstance(payload, str):
        raise HttpError(400, "obs_b64 must be a base64 string")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, "obs_b64 is not valid base64") from None
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if len(raw) != expected:
        raise InputError(f"obs_b64 holds {len(raw)} bytes; shape {shape} of {dtype} needs {expected}")
    return np.frombuffer(raw, dtype=np_dtype).reshape(shape)


def v2_input(body: dict[str, Any], policy: Policy) -> np.ndarray:
    """The ``obs`` tensor of a v2 inference request, checked against the model's input."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HttpError(400, "a v2 request needs 'inputs', a non-empty list of tensors")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise HttpError(400, f"the model takes one input, {md.INPUT_NAME!r}")
    tensor = inputs[0]
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise HttpError(400, f"input tensor is missing {key!r}")
    if tensor["name"] != md.INPUT_NAME:
        raise HttpError(400, f"unknown input {tensor['name']!r}; the model's input is {md.INPUT_NAME!r}")
    expected = md.V2_DATATYPES[policy.observation_dtype.name]
    if tensor["datatype"] != expected:
        raise InputError(f"datatype {tensor['datatype']!r} does not match the model's {expected!r}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise HttpError(400, "'shape' must be a list of non-negative integers")
    data = as_numeric_array(tensor["data"])
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise InputError(f"'data' holds {data.size} values; shape {shape} needs {int(np.prod(shape))}")
    return data.reshape(shape)


def v2_requested_outputs(body: dict[str, Any]) -> set[str]:
    requested = body.get("outputs")
    if requested is None:
        return set(md.OUTPUT_NAMES)
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        raise HttpError(400, "'outputs' must be a list of {\"name\": ...} objects")
    names = {o["name"] for o in requested}
    unknown = names - set(md.OUTPUT_NAMES)
    if unknown:
        raise HttpError(400, f"unknown outputs {sorted(unknown)}; the model has {list(md.OUTPUT_NAMES)}")
    return names


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
    meta = policy.metadata
    announce(
        f"serving {path} ({meta['agent']} on {meta['env']['id']}) at {server.url} as model "
        f"'{server.options.model_name}'; Ctrl-C or SIGTERM stops"
    )
    try:
        server.serve_forever(poll_interval=0.1)
        server.drain()
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
