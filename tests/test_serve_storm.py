"""A storm: malformed requests of every kind, mixed with valid ones, from 16 threads at once.

Every malformed request goes out on its own raw socket followed by a valid request on the
same connection, so the test sees whether the server desynchronised (answered a body as a
request, or lost the follow-up) as well as its status. Valid requests also go over keep-alive
connections, GETs and DELETEs among them carrying bodies that hold whole requests. The loop is
bounded in count; nothing is timed. The bar: no 5xx, and no answer that differs from
``Policy`` run locally on the same observation.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import math
import random
import threading
from dataclasses import dataclass

import numpy as np
from test_serve import exchange, http_request, serving

from qagent.serve import Policy

THREADS = 16
V2 = "/v2/models/cartpole/infer"
ZEROS = [0.0, 0.0, 0.0, 0.0]
SMUGGLED = http_request("POST", "/v1/sessions") + http_request("GET", "/v1/metadata")
"""A body that is itself two requests: answering it would shift every later answer on the connection."""


@dataclass
class Case:
    """A malformed (or odd but valid) request and what the server must answer."""

    name: str
    request: bytes
    status: int | None
    """The status of the first answer; None: any status below 500."""
    keep_alive: bool | None = True
    """True: the follow-up on the same connection must be answered; False: the connection must close."""
    half_close: bool = False
    answer: dict | None = None
    """For a 2xx case, the body it must answer."""


def post(path: str, body, headers: dict[str, str] | None = None) -> bytes:
    return http_request("POST", path, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)


def v2(**changes) -> dict:
    return {"inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32", "data": ZEROS, **changes}]}


def b64(shape, dtype="float32", payload: bytes | str = b"") -> dict:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return {"obs_b64": text, "shape": shape, "dtype": dtype}


def raw(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def http_level_cases() -> list[Case]:
    ok = {"status": "ok"}
    length = "POST /v1/act HTTP/1.1\nHost: x\n{}\n\n"
    return [
        Case("garbage request line", raw("HELLO\n\n"), 400, False),
        Case("HTTP/0.9 GET", raw("GET /healthz\n"), 400, False),
        Case("HTTP/0.9 POST", raw("POST /v1/act\n"), 400, False),
        Case("four-word request line", raw("GET /a b HTTP/1.1\n\n"), 400, False),
        Case("malformed version", raw("GET /healthz HTTP/x.y\n\n"), 400, False),
        Case("not HTTP", raw("GET /healthz FTP/1.1\n\n"), 400, False),
        Case("HTTP/2.0", raw("GET /healthz HTTP/2.0\n\n"), 400, False),
        Case("HTTP/3.1", raw("GET /healthz HTTP/3.1\n\n"), 400, False),
        Case("binary junk", bytes(range(256)) + b"\r\n\r\n", 400, False),
        Case("NUL in the path", raw("GET /\0 HTTP/1.1\nHost: x\n\n"), 404),
        Case("unknown method", raw("BREW /healthz HTTP/1.1\nHost: x\n\n"), 405),
        Case("unknown method, unknown path", raw("BREW /coffee HTTP/1.1\nHost: x\n\n"), 404),
        Case("unknown method with a smuggled body", http_request("BREW", "/v1/act", SMUGGLED), 405),
        Case("method that is not a token", raw("G(T /healthz HTTP/1.1\nHost: x\n\n"), 400, False),
        Case("overlong method", raw("A" * 100 + " /healthz HTTP/1.1\nHost: x\n\n"), 400, False),
        Case("lowercase method", raw("get /healthz HTTP/1.1\nHost: x\n\n"), 405),
        Case("Content-Length not a number", raw(length.format("Content-Length: ten")), 400, False),
        Case("negative Content-Length", raw(length.format("Content-Length: -1")), 400, False),
        Case("signed Content-Length", raw(length.format("Content-Length: +2")) + b"{}", 400, False),
        Case("Content-Length with an underscore", raw(length.format("Content-Length: 1_0")), 400, False),
        Case("two Content-Lengths", raw(length.format("Content-Length: 2\nContent-Length: 3")) + b"{}", 400, False),
        Case("the same Content-Length twice", raw(length.format("Content-Length: 2\nContent-Length: 2")) + b"{}", 400),
        Case("Content-Length of 30 digits", raw(length.format("Content-Length: " + "9" * 30)), 400, False),
        Case("Content-Length over the limit", raw(length.format("Content-Length: 1000000000000")), 413, False),
        Case("chunked body", raw(length.format("Transfer-Encoding: chunked")) + b"2\r\n{}\r\n0\r\n\r\n", 411, False),
        Case("chunked and Content-Length", raw(length.format("Transfer-Encoding: chunked\nContent-Length: 2")), 411, False),
        Case("Transfer-Encoding identity", raw(length.format("Transfer-Encoding: identity")), 411, False),
        Case("Expect 100-continue over the limit", raw(length.format("Expect: 100-continue\nContent-Length: 10000000")), 413, False),
        Case("header line too long", raw("GET /healthz HTTP/1.1\nX: " + "a" * 70_000 + "\n\n"), 431, False),
        Case("too many headers", raw("GET /healthz HTTP/1.1\n" + "X: y\n" * 150 + "\n"), 431, False),
        Case("request line too long", raw("GET /" + "a" * 70_000 + " HTTP/1.1\n\n"), 414, False),
        Case("body ends early", raw(length.format("Content-Length: 100")) + b'{"obs": [', 400, False, half_close=True),
        Case("POST without Content-Length", raw("POST /v1/act HTTP/1.1\nHost: x\n\n"), 411, False),
        Case("body over the limit, sent whole", post("/v1/act", {"obs": [ZEROS] * 20_000}), 413, False),
        Case("GET with a smuggled request", http_request("GET", "/healthz", SMUGGLED), 200, answer=ok),
        Case("DELETE with a smuggled request", http_request("DELETE", "/v1/sessions/nope", SMUGGLED), 404),
        Case("POST to an unknown path with a request inside", post("/v3/act", SMUGGLED), 404),
        Case("POST to a GET path with a body", post("/healthz", SMUGGLED), 405),
        Case("PUT with a body", http_request("PUT", "/v1/act", SMUGGLED), 405),
        Case("PATCH", http_request("PATCH", "/v1/sessions"), 405),
        Case("OPTIONS", http_request("OPTIONS", "/v2"), 405),
        Case("TRACE", http_request("TRACE", "/healthz"), 405),
        Case("CONNECT", raw("CONNECT 127.0.0.1:80 HTTP/1.1\nHost: x\n\n"), None),
        Case("header without a colon", raw("GET /healthz HTTP/1.1\nnocolon\n\n"), 400, False),
        Case("space before a header's colon", raw(length.format("Content-Length : 2")) + b"{}", 400, False),
        Case("NUL in a header name", raw(length.format("Content-Length\0: 2")) + b"{}", 400, False),
        Case("folded Content-Length", raw(length.format("Content-Length: 2\n 2")) + b"{}", 400, False),
        Case("target that is not a URL", raw("GET http://[/healthz HTTP/1.1\nHost: x\n\n"), 400),
        Case("blank lines before the request", b"\r\n\r\n" + http_request("GET", "/healthz"), 200, answer=ok),
        Case("Expect 100-continue, small body", http_request("GET", "/healthz", b"{}", {"Expect": "100-continue"}), 200, answer=ok),
        Case("absolute-form target", raw("GET http://127.0.0.1/healthz HTTP/1.1\nHost: x\n\n"), 200, answer=ok),
        Case("HTTP/1.0 keep-alive", raw("GET /healthz HTTP/1.0\nConnection: keep-alive\n\n"), 200, answer=ok),
    ]  # fmt: skip


def body_cases(policy: Policy) -> list[Case]:
    deep = b'{"obs": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    cases = [
        Case("invalid JSON", post("/v1/act", b"{bad"), 400),
        Case("truncated JSON", post("/v1/act", b'{"obs": [1, 2'), 400),
        Case("JSON array", post("/v1/act", b"[1, 2]"), 400),
        Case("JSON string", post("/v1/act", b'"obs"'), 400),
        Case("JSON null", post("/v1/act", b"null"), 400),
        Case("empty body", http_request("POST", "/v1/act", headers={"Content-Length": "0"}), 400),
        Case("not UTF-8", post("/v1/act", b'\xff\xfe{"obs"\xff'), 400),
        Case("JSON nested 30,000 deep", post("/v1/act", deep), 400),
        Case("obs nested 500 deep", post("/v1/act", b'{"obs": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}"), 422),
        Case("a 5,000-digit number", post("/v1/act", b'{"obs": [' + b"9" * 5000 + b", 0, 0, 0]}"), 400),
        Case("missing obs", post("/v1/act", {"observation": ZEROS}), 400),
        Case("obs null", post("/v1/act", {"obs": None}), 422),
        Case("obs an object", post("/v1/act", {"obs": {"a": 1}}), 422),
        Case("obs a string", post("/v1/act", {"obs": "0 0 0 0"}), 422),
        Case("wrong shape", post("/v1/act", {"obs": [1, 2, 3]}), 422),
        Case("text values", post("/v1/act", {"obs": ["a", "b", "c", "d"]}), 422),
        Case("booleans", post("/v1/act", {"obs": [True, False, True, False]}), 422),
        Case("NaN", post("/v1/act", b'{"obs": [NaN, 0, 0, 0]}'), 422),
        Case("Infinity", post("/v1/act", b'{"obs": [Infinity, 0, 0, 0]}'), 422),
        Case("-Infinity in a batch", post("/v1/act", b'{"obs": [[0, 0, 0, 0], [0, -Infinity, 0, 0]]}'), 422),
        Case("1e400 (infinite once parsed)", post("/v1/act", b'{"obs": [1e400, 0, 0, 0]}'), 422),
        Case("1e300 (infinite as float32)", post("/v1/act", {"obs": [1e300, 0, 0, 0]}), 422),
        Case("integers too big for any dtype", post("/v1/act", {"obs": [10**30, 0, 0, 0]}), 422),
        Case("ragged batch", post("/v1/act", {"obs": [[1, 2, 3, 4], [1, 2]]}), 422),
        Case("empty batch", post("/v1/act", {"obs": []}), 422),
        Case("batch over the limit", post("/v1/act", {"obs": [ZEROS] * 65}), 413),
        Case("batch over the limit, of text", post("/v1/act", {"obs": [["a"] * 4] * 65}), 413),
        Case("bad base64", post("/v1/act", b64([4], payload="###")), 400),
        Case("base64 of the wrong size", post("/v1/act", b64([4], payload=b"12345678")), 422),
        Case("base64 without shape", post("/v1/act", {"obs_b64": "AAAA", "dtype": "float32"}), 400),
        Case("base64 without dtype", post("/v1/act", {"obs_b64": "AAAA", "shape": [4]}), 400),
        Case("base64 dtype a list", post("/v1/act", b64([4], dtype=["float32"])), 400),
        Case("base64 unknown dtype", post("/v1/act", b64([1], dtype="complex-ish")), 422),
        Case("base64 object dtype", post("/v1/act", b64([1], dtype="object")), 422),
        Case("base64 structured dtype", post("/v1/act", b64([1], dtype="f4,f4")), 422),
        Case("base64 shape [2**32, 2**32]", post("/v1/act", b64([2**32, 2**32])), 413),
        Case("base64 shape [10**20]", post("/v1/act", b64([10**20])), 422),
        Case("base64 shape [1, 2**62, 2**62]", post("/v1/act", b64([1, 2**62, 2**62])), 422),
        Case("base64 negative shape", post("/v1/act", b64([-4])), 400),
        Case("base64 shape of 100 axes", post("/v1/act", b64([1] * 100)), 400),
        Case("base64 payload not a string", post("/v1/act", {"obs_b64": 7, "shape": [4], "dtype": "float32"}), 400),
        Case("base64 of NaN", post("/v1/act", b64([4], payload=np.full(4, np.nan, np.float32).tobytes())), 422),
        Case("v2 without inputs", post(V2, {"outputs": []}), 400),
        Case("v2 inputs not a list", post(V2, {"inputs": {"name": "obs"}}), 400),
        Case("v2 empty inputs", post(V2, {"inputs": []}), 400),
        Case("v2 two inputs", post(V2, {"inputs": v2()["inputs"] * 2}), 400),
        Case("v2 input not an object", post(V2, {"inputs": [1]}), 400),
        Case(
            "v2 input without data", post(V2, {"inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32"}]}), 400
        ),
        Case("v2 input name a list", post(V2, v2(name=["obs"])), 400),
        Case("v2 unknown input name", post(V2, v2(name="x")), 400),
        Case("v2 wrong datatype", post(V2, v2(datatype="FP64")), 422),
        Case("v2 datatype a list", post(V2, v2(datatype=["FP32"])), 422),
        Case("v2 shape [2**32, 2**32]", post(V2, v2(shape=[2**32, 2**32], data=[])), 413),
        Case("v2 shape [10**20]", post(V2, v2(shape=[10**20], data=[])), 422),
        Case("v2 shape [1, 2**62, 2**62]", post(V2, v2(shape=[1, 2**62, 2**62], data=[])), 422),
        Case("v2 shape not a list", post(V2, v2(shape="1,4")), 400),
        Case("v2 shape of booleans", post(V2, v2(shape=[True, 4])), 400),
        Case("v2 data and shape disagree", post(V2, v2(shape=[2, 4])), 422),
        Case("v2 data longer than its shape", post(V2, v2(data=[0.0] * 9)), 422),
        Case("v2 text data", post(V2, v2(data=["a"] * 4)), 422),
        Case("v2 NaN data", post(V2, json.dumps(v2()).replace("0.0", "NaN").encode()), 422),
        Case("v2 output name a list", post(V2, v2() | {"outputs": [{"name": ["action"]}]}), 400),
        Case("v2 output name a number", post(V2, v2() | {"outputs": [{"name": 1}]}), 400),
        Case("v2 outputs not a list", post(V2, v2() | {"outputs": "action"}), 400),
        Case("v2 unknown output", post(V2, v2() | {"outputs": [{"name": "value"}]}), 400),
        Case("v2 id NaN", post(V2, json.dumps(v2() | {"id": 0}).replace('"id": 0', '"id": NaN').encode()), 400),
        Case("v2 id an object", post(V2, v2() | {"id": {"a": [1]}}), 400),
        Case("v2 unknown model", post("/v2/models/pong/infer", v2()), 404),
        Case("v2 unknown version", post("/v2/models/cartpole/versions/7/infer", v2()), 404),
        Case("v2 metadata of an unknown model", http_request("GET", "/v2/models/pong"), 404),
        Case("unknown session act", post("/v1/sessions/nope/act", {"obs": ZEROS}), 404),
        Case("unknown session reset", post("/v1/sessions/nope/reset", {}), 404),
        Case("very long session id", post("/v1/sessions/" + "x" * 5000 + "/act", {"obs": ZEROS}), 404),
        Case("unknown path", http_request("GET", "/v3/everything"), 404),
        Case("root path", http_request("GET", "/"), 404),
        Case("path below an endpoint", post("/v1/act/more", {"obs": ZEROS}), 404),
        Case("GET on a POST path", http_request("GET", "/v1/act"), 405),
        Case("POST on v2 model metadata", post("/v2/models/cartpole", v2()), 405),
    ]
    huge = next(
        (
            list(signs)
            for signs in itertools.product([3e38, -3e38, 0.0], repeat=4)
            if not np.isfinite(policy.q_values(list(signs))).all()
        ),
        None,
    )
    if huge is not None:  # this network overflows on it: the answer must be a 422, not a 500
        cases.append(Case("Q-values that overflow", post("/v1/act", {"obs": huge}), 422))
    return cases


class Checker:
    """Collects what went wrong, from any thread."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.problems: list[str] = []
        self.statuses: list[int] = []
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def record(self, name: str, statuses: list[int], problem: str | None = None) -> None:
        with self._lock:
            self.seen.add(name)
            self.statuses.extend(statuses)
            if problem:
                self.problems.append(f"{name}: {problem}")

    def act_answer(self, obs: np.ndarray) -> dict:
        return {"actions": self.policy.act(obs).tolist(), "q_values": self.policy.q_values(obs).tolist()}

    def same_act(self, answer: dict, obs: np.ndarray) -> bool:
        want = self.act_answer(obs)
        return answer.get("actions") == want["actions"] and np.allclose(
            answer.get("q_values"), want["q_values"], rtol=1e-6, atol=1e-6
        )


def run_malformed(port: int, case: Case, rng: np.random.Generator, checker: Checker) -> None:
    obs = rng.standard_normal((1, 4)).astype(np.float32)
    follow_up = http_request("POST", "/v1/act", json.dumps({"obs": obs.tolist()}).encode(), {"Connection": "close"})
    try:
        answers = exchange(port, case.request + (b"" if case.half_close else follow_up), case.half_close)
    except (OSError, AssertionError) as exc:  # a reset, or bytes that are not HTTP answers
        checker.record(case.name, [], f"no proper answer: {exc!r}")
        return
    answers = [a for a in answers if a[0] >= 200]  # 100 Continue
    statuses = [a[0] for a in answers]
    problem = None
    if not answers:
        problem = "no answer"
    else:
        status, headers, body = answers[0]
        payload = json.loads(body) if headers.get("content-type") == "application/json" else None
        if case.status is not None and status != case.status:
            problem = f"status {status}, expected {case.status}: {body[:200]!r}"
        elif status >= 500:
            problem = f"status {status}"
        elif status >= 400 and not (isinstance(payload, dict) and isinstance(payload.get("error"), str)):
            problem = f"not a JSON error: {body[:200]!r}"
        elif case.answer is not None and payload != case.answer:
            problem = f"answered {payload!r}"
        elif case.keep_alive is False and (len(answers) != 1 or headers.get("connection") != "close"):
            problem = f"kept the connection: {statuses}"
        elif case.keep_alive and not case.half_close and len(answers) != 2:
            problem = f"the follow-up was lost or another answer appeared: {statuses}"
        elif len(answers) > 2:
            problem = f"more answers than requests: {statuses}"
        elif len(answers) == 2 and not (answers[1][0] == 200 and checker.same_act(json.loads(answers[1][2]), obs)):
            problem = f"wrong answer to the follow-up: {answers[1][0]} {answers[1][2][:200]!r}"
    checker.record(case.name, statuses, problem)


def run_valid(conn: http.client.HTTPConnection, kind: str, rng: np.random.Generator, checker: Checker) -> None:
    """One valid exchange on a keep-alive connection; GETs and DELETEs carry bodies that hold requests."""
    statuses: list[int] = []

    def send(method: str, path: str, body=None) -> dict:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data)
        response = conn.getresponse()
        statuses.append(response.status)
        return json.loads(response.read())

    batch = rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32)
    problem = None
    if kind == "get with a body, then act":
        if send("GET", "/healthz", SMUGGLED) != {"status": "ok"}:
            problem = "healthz"
        elif not checker.same_act(send("POST", "/v1/act", {"obs": batch.tolist()}), batch):
            problem = "act after a GET with a body"
    elif kind == "metadata with a body":
        if send("GET", "/v1/metadata", SMUGGLED) != checker.policy.metadata:
            problem = "metadata"
    elif kind == "act":
        if not checker.same_act(send("POST", "/v1/act", {"obs": batch[0].tolist()}), batch[:1]):
            problem = "single act"  # one observation answers as a batch of one
    elif kind == "batch act":
        if not checker.same_act(send("POST", "/v1/act", {"obs": batch.tolist()}), batch):
            problem = "batch act"
    elif kind == "base64 act":
        body = {"obs_b64": base64.b64encode(batch.tobytes()).decode(), "shape": list(batch.shape), "dtype": "float32"}
        if not checker.same_act(send("POST", "/v1/act", body), batch):
            problem = "base64 act"
    elif kind == "v2":
        body = v2(shape=list(batch.shape), data=batch.ravel().tolist()) | {"id": "r"}
        answer = send("POST", V2, body)
        outputs = {o["name"]: o["data"] for o in answer.get("outputs", [])}
        want = checker.act_answer(batch)
        if answer.get("id") != "r" or outputs.get("action") != want["actions"]:
            problem = f"v2 {answer}"
        elif not np.allclose(outputs["q_values"], np.ravel(want["q_values"]), rtol=1e-6, atol=1e-6):
            problem = "v2 q_values"
    elif kind == "session":
        sid = send("POST", "/v1/sessions")["session_id"]
        bad = send("POST", f"/v1/sessions/{sid}/act", {"obs": [1, 2, 3]})  # a 422 that must not count as a step
        step = send("POST", f"/v1/sessions/{sid}/act", {"obs": batch[0].tolist()})
        reset = send("POST", f"/v1/sessions/{sid}/reset")
        deleted = send("DELETE", f"/v1/sessions/{sid}", SMUGGLED)
        want = checker.act_answer(batch[:1])
        if statuses != [201, 422, 200, 200, 200] or "error" not in bad:
            problem = f"session statuses {statuses}"
        elif step["action"] != want["actions"][0] or step["step"] != 1:
            problem = f"session step {step}"
        elif not np.allclose(step["q_values"], want["q_values"][0], rtol=1e-6, atol=1e-6):
            problem = "session q_values"
        elif reset != {"session_id": sid, "reset": True} or deleted != {"deleted": sid}:
            problem = "session reset or delete"
    checker.record(f"valid: {kind}", statuses, problem)


VALID = ["get with a body, then act", "metadata with a body", "act", "batch act", "base64 act", "v2", "session"]


def test_a_storm_of_malformed_requests_gets_4xx_and_leaves_valid_answers_right(exported_cartpole):
    policy = Policy.load(exported_cartpole[1].path)
    cases = http_level_cases() + body_cases(policy)
    assert len(cases) >= 100 and len({c.name for c in cases}) == len(cases)
    rounds = math.ceil(2 * len(cases) / THREADS)  # every malformed kind at least twice
    checker = Checker(policy)
    options = dict(model_name="cartpole", max_body_bytes=256 << 10, max_inflight_bytes=64 << 20, max_batch=64)
    with serving(policy, workers=4, **options) as srv:
        port = srv.server_address[1]

        def client(worker: int) -> None:
            rng = np.random.default_rng(worker)
            order = random.Random(worker)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                for i in range(rounds):
                    run_malformed(port, cases[(i * THREADS + worker) % len(cases)], rng, checker)
                    run_valid(conn, order.choice(VALID), rng, checker)
            except Exception as exc:  # noqa: BLE001 - reported below with the rest
                checker.record(f"client {worker}", [], f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(w,)) for w in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(srv.sessions) == 0  # every valid session was deleted; no smuggled one was created
    assert not checker.problems, "\n".join(checker.problems[:20])
    assert not [s for s in checker.statuses if s >= 500]
    assert {c.name for c in cases} <= checker.seen and {f"valid: {k}" for k in VALID} <= checker.seen
    assert sum(1 for s in checker.statuses if 400 <= s < 500) >= len(cases)
