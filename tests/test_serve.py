"""qagent.serve: the torch-free Policy, sessions, and the HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qagent.serve import InputError, Policy, PolicyLoadError
from qagent.serve import metadata as md
from qagent.serve.errors import HttpError
from qagent.serve.http import PolicyServer, ServerOptions
from qagent.serve.limits import SessionStore


def test_serve_imports_no_training_stack():
    probe = (
        "import sys, qagent.serve, qagent.serve.http, qagent.serve.metadata; "
        "print(sorted(m for m in ('torch', 'gymnasium', 'mlflow', 'click') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- hand-made policies


def handmade_policy(
    path: Path, obs_shape: list[int], dtype: str, weights: np.ndarray, frame_stack: int | None = None
) -> Path:
    """q = flatten(float(obs)) @ weights; action = argmax q. Built with onnx.helper, no torch."""
    elem = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}[dtype]
    n_in, n_actions = weights.shape
    nodes = [
        helper.make_node("Cast", ["obs"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["q_values"]),
        helper.make_node("ArgMax", ["q_values"], ["action"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("obs", elem, ["batch", *obs_shape])],
        [
            helper.make_tensor_value_info("q_values", TensorProto.FLOAT, ["batch", n_actions]),
            helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"]),
        ],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [n_in, n_actions], weights.flatten().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {
        "format": md.FORMAT,
        "format_version": 1,
        "qagent_version": "test",
        "agent": "handmade",
        "env": {"id": "none", "kwargs": {}, "max_episode_steps": None},
        "observation": {"space": "Box", "shape": obs_shape, "dtype": dtype, "low": 0, "high": 255},
        "action": {"space": "Discrete", "n": n_actions, "meanings": ["LEFT", "RIGHT"][:n_actions]},
        "preprocessing": {"frame_stack": frame_stack},
        "inputs": {"obs": {"dtype": dtype, "shape": [-1, *obs_shape]}},
        "outputs": {
            "q_values": {"dtype": "float32", "shape": [-1, n_actions]},
            "action": {"dtype": "int64", "shape": [-1]},
        },
    }
    model.metadata_props.add(key=md.METADATA_KEY, value=md.dumps(meta))
    onnx.save(model, str(path))
    return path


def test_frame_stacking_session(tmp_path):
    weights = np.zeros((8, 2), np.float32)
    weights[0, 0] = 1.0  # q[0] = first value of the oldest frame
    weights[6, 1] = 1.0  # q[1] = first value of the newest frame
    policy = Policy.load(handmade_policy(tmp_path / "stack.onnx", [4, 2], "float32", weights, frame_stack=4))
    session = policy.session()
    assert session.frame_shape == (2,)
    seen = [session.step([float(t), 0.0])[1].tolist() for t in range(1, 7)]
    assert seen == [[1, 1], [1, 2], [1, 3], [1, 4], [2, 5], [3, 6]]  # first frame repeated, then a sliding window
    session.reset()
    assert session.step([9.0, 0.0])[1].tolist() == [9, 9] and session.steps == 1
    with pytest.raises(InputError, match=r"a session step takes one observation of shape \(2,\)"):
        session.act(np.zeros((4, 2)))


def test_uint8_policy_checks_dtype_and_range(tmp_path):
    policy = Policy.load(handmade_policy(tmp_path / "bytes.onnx", [3], "uint8", np.ones((3, 2), np.float32)))
    assert policy.q_values([1, 2, 3]).tolist() == [6.0, 6.0]
    assert policy.act(np.array([[0, 0, 255]], np.uint8)).tolist() == [0]
    with pytest.raises(InputError, match=r"must hold integers \(uint8\); got float64"):
        policy.act([0.5, 1.0, 2.0])
    with pytest.raises(InputError, match=r"must lie in \[0, 255\]"):
        policy.act([0, 0, 256])


def test_policy_shapes_and_errors(exported_cartpole):
    policy = Policy.load(exported_cartpole[1].path)
    assert isinstance(policy.act([0.0, 0.1, 0.0, -0.1]), int)
    assert policy.q_values(np.zeros(4)).shape == (2,)
    assert policy.q_values(np.zeros((5, 4), np.float64)).shape == (5, 2)
    assert policy.act(np.zeros((3, 4), np.int64)).shape == (3,)
    cases = [
        (np.zeros(3), r"shape \(3,\); expected \(4,\) for one observation or \(batch, 4\)"),
        (np.zeros((2, 2, 4)), "shape"),
        (np.zeros((0, 4)), "empty batch"),
        ([np.nan, 0, 0, 0], "NaN or infinite"),
        ([True, False, True, False], "not booleans"),
        (["a", "b", "c", "d"], "not text"),
        ([[1, 2, 3, 4], [1, 2]], "not a rectangular array"),
    ]
    for obs, message in cases:
        with pytest.raises(InputError, match=message):
            policy.act(obs)
    assert "CartPole-v1" in repr(policy)


def test_loading_errors(tmp_path):
    with pytest.raises(PolicyLoadError, match="no policy file"):
        Policy.load(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(PolicyLoadError, match="not a loadable ONNX model"):
        Policy.load(tmp_path / "junk.onnx")
    plain = handmade_policy(tmp_path / "plain.onnx", [2], "float32", np.eye(2, dtype=np.float32))
    model = onnx.load(str(plain))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(PolicyLoadError, match="without qagent metadata"):
        Policy.load(plain)


def test_session_store_expiry_and_least_recently_used_eviction(exported_cartpole):
    now = [0.0]
    store = SessionStore(Policy.load(exported_cartpole[1].path), ttl=10, max_sessions=2, clock=lambda: now[0])
    a = store.create()
    b = store.create()
    now[0] = 1.0
    store.get(a)  # a is now the most recently used
    c = store.create()  # at the cap: b, the least recently used, ends; nobody is locked out
    assert store.evicted == 1 and len(store) == 2
    with pytest.raises(HttpError) as info:
        store.get(b)
    assert info.value.status == 404 and "to make room" in info.value.message
    now[0] = 5.0
    store.get(a)  # touching keeps it alive
    now[0] = 12.0
    assert len(store) == 1  # c (last used at 1.0) expired; a (5.0) did not
    with pytest.raises(HttpError):
        store.get(c)
    now[0] = 30.0
    with pytest.raises(HttpError) as info:
        store.get(a)
    assert info.value.status == 404 and len(store) == 0


def test_a_burst_of_session_creations_locks_nobody_out(exported_cartpole):
    store = SessionStore(Policy.load(exported_cartpole[1].path), ttl=600, max_sessions=100)
    ids = [store.create() for _ in range(1000)]
    assert len(store) == 100 and store.evicted == 900
    store.get(ids[-1])
    store.create()  # a new client still gets a session
    with pytest.raises(HttpError):
        store.get(ids[0])


# ---------------------------------------------------------------------- the HTTP server


@contextlib.contextmanager
def serving(policy: Policy, **options):
    """A real server for ``policy`` on 127.0.0.1 (a free port) in a thread, stopped on exit."""
    srv = PolicyServer(policy, ("127.0.0.1", 0), ServerOptions(**options))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server(exported_cartpole):
    policy = Policy.load(exported_cartpole[1].path)
    with serving(policy, model_name="cartpole", max_body_bytes=64 * 1024, max_batch=64, workers=2) as srv:
        yield srv


def exchange(port: int, data: bytes, half_close: bool = False) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw ``data`` on a new connection, read until the server closes it, split the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    return split_responses(received)


def split_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """``(status, headers, body)`` of each HTTP/1.x response in ``data`` (none of them to a HEAD)."""
    responses = []
    while data:
        head, blank, rest = data.partition(b"\r\n\r\n")
        assert blank and head.startswith(b"HTTP/1."), f"not an HTTP response: {data[:120]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = {key.strip().lower(): value.strip() for key, value in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        assert len(rest) >= length, "response body cut short"
        responses.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (a Content-Length whenever there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def call(port: int, method: str, path: str, body=None, raw: bytes | None = None, headers=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    if own:
        conn.close()
    return response.status, payload, response


def test_every_endpoint(server):
    port = server.server_address[1]
    policy = server.policy
    obs = [0.01, -0.02, 0.03, 0.04]
    expected_action, expected_q = (a.tolist() for a in policy.predict(policy.prepare(obs)[0]))

    assert call(port, "GET", "/healthz")[:2] == (200, {"status": "ok"})
    status, meta, _ = call(port, "GET", "/v1/metadata")
    assert status == 200 and meta == policy.metadata
    assert call(port, "POST", "/v1/act", {"obs": obs})[:2] == (
        200,
        {"actions": expected_action, "q_values": expected_q},
    )
    status, answer, _ = call(port, "POST", "/v1/act", {"obs": [obs, obs]})
    assert status == 200 and answer["actions"] == expected_action * 2
    frames = np.asarray([obs, obs], np.float32)
    b64 = {"obs_b64": base64.b64encode(frames.tobytes()).decode(), "shape": [2, 4], "dtype": "float32"}
    assert call(port, "POST", "/v1/act", b64)[1]["actions"] == expected_action * 2

    status, created, _ = call(port, "POST", "/v1/sessions")
    assert status == 201 and created["frame_stack"] is None and created["ttl_seconds"] == 600.0
    sid = created["session_id"]
    status, step, _ = call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": obs})
    assert status == 200 and step == {"action": expected_action[0], "q_values": expected_q[0], "step": 1}
    assert call(port, "POST", f"/v1/sessions/{sid}/reset")[:2] == (200, {"session_id": sid, "reset": True})
    assert call(port, "DELETE", f"/v1/sessions/{sid}")[:2] == (200, {"deleted": sid})

    assert call(port, "GET", "/v2")[1]["name"] == "qagent"
    assert call(port, "GET", "/v2/health/live")[:2] == (200, {"live": True})
    assert call(port, "GET", "/v2/health/ready")[:2] == (200, {"ready": True})
    status, model, _ = call(port, "GET", "/v2/models/cartpole")
    assert status == 200 and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "obs", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in model["outputs"]] == ["q_values", "action"]
    assert call(port, "GET", "/v2/models/cartpole/versions/1/ready")[:2] == (200, {"name": "cartpole", "ready": True})
    request = {"id": "r1", "inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32", "data": obs}]}
    status, inferred, _ = call(port, "POST", "/v2/models/cartpole/infer", request)
    assert status == 200 and inferred["id"] == "r1" and inferred["model_name"] == "cartpole"
    outputs = {o["name"]: o for o in inferred["outputs"]}
    assert outputs["action"] == {"name": "action", "datatype": "INT64", "shape": [1], "data": expected_action}
    assert outputs["q_values"]["shape"] == [1, 2] and outputs["q_values"]["data"] == expected_q[0]
    only = {**request, "outputs": [{"name": "action"}]}
    assert [o["name"] for o in call(port, "POST", "/v2/models/cartpole/versions/1/infer", only)[1]["outputs"]] == [
        "action"
    ]


def raw_request(port: int, text: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(text)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            dict(line.split(b": ", 1) for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]).get(
                b"Content-Length", b"0"
            )
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


MALFORMED = [
    # (name, method, path, json body or raw bytes, expected status)
    ("invalid JSON", "POST", "/v1/act", b"{bad", 400),
    ("JSON that is not an object", "POST", "/v1/act", b"[1, 2]", 400),
    ("missing obs", "POST", "/v1/act", {"observation": [0, 0, 0, 0]}, 400),
    ("empty body", "POST", "/v1/act", b"", 400),
    ("wrong shape", "POST", "/v1/act", {"obs": [1, 2, 3]}, 422),
    ("wrong dtype (text)", "POST", "/v1/act", {"obs": ["a", "b", "c", "d"]}, 422),
    ("booleans", "POST", "/v1/act", {"obs": [True, False, True, False]}, 422),
    ("NaN", "POST", "/v1/act", b'{"obs": [NaN, 0, 0, 0]}', 422),
    ("infinity", "POST", "/v1/act", b'{"obs": [Infinity, 0, 0, 0]}', 422),
    ("ragged batch", "POST", "/v1/act", {"obs": [[1, 2, 3, 4], [1, 2]]}, 422),
    ("empty batch", "POST", "/v1/act", {"obs": []}, 422),
    ("batch over the limit", "POST", "/v1/act", {"obs": [[0, 0, 0, 0]] * 65}, 413),
    ("bad base64", "POST", "/v1/act", {"obs_b64": "###", "shape": [4], "dtype": "float32"}, 400),
    (
        "base64 of the wrong size",
        "POST",
        "/v1/act",
        {"obs_b64": base64.b64encode(b"12345678").decode(), "shape": [4], "dtype": "float32"},
        422,
    ),
    ("base64 without shape", "POST", "/v1/act", {"obs_b64": "AAAA", "dtype": "float32"}, 400),
    ("unknown dtype", "POST", "/v1/act", {"obs_b64": "AAAA", "shape": [1], "dtype": "complex-ish"}, 422),
    ("unknown model", "POST", "/v2/models/pong/infer", {"inputs": []}, 404),
    ("unknown model version", "GET", "/v2/models/cartpole/versions/7", None, 404),
    ("v2 without inputs", "POST", "/v2/models/cartpole/infer", {"outputs": []}, 400),
    (
        "v2 wrong datatype",
        "POST",
        "/v2/models/cartpole/infer",
        {"inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP64", "data": [0, 0, 0, 0]}]},
        422,
    ),
    (
        "v2 data and shape disagree",
        "POST",
        "/v2/models/cartpole/infer",
        {"inputs": [{"name": "obs", "shape": [2, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]},
        422,
    ),
    (
        "v2 unknown input name",
        "POST",
        "/v2/models/cartpole/infer",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]},
        400,
    ),
    (
        "v2 unknown output",
        "POST",
        "/v2/models/cartpole/infer",
        {
            "inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}],
            "outputs": [{"name": "value"}],
        },
        400,
    ),
    ("unknown session", "POST", "/v1/sessions/nope/act", {"obs": [0, 0, 0, 0]}, 404),
    ("delete unknown session", "DELETE", "/v1/sessions/nope", None, 404),
    ("wrong method", "GET", "/v1/act", None, 405),
    ("another wrong method", "PUT", "/healthz", None, 405),
    ("unknown path", "GET", "/v3/everything", None, 404),
    ("body over the size limit", "POST", "/v1/act", b"{" + b" " * (70 * 1024) + b"}", 413),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_4xx_with_a_message(server, name, method, path, body, status):
    port = server.server_address[1]
    raw = body if isinstance(body, bytes) else None
    got, payload, response = call(port, method, path, body=None if raw is not None else body, raw=raw)
    assert got == status, payload
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]
    if got == 405:
        assert response.getheader("Allow")


def test_malformed_framing_gets_4xx(server):
    port = server.server_address[1]
    no_length = b"POST /v1/act HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(port, no_length)[0] == 411
    bad_length = b"POST /v1/act HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    assert raw_request(port, bad_length)[0] == 400
    chunked = b"POST /v1/act HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert raw_request(port, chunked)[0] == 411


def test_mixed_concurrent_load_has_no_5xx_and_correct_answers(server):
    port = server.server_address[1]
    policy = server.policy
    rng = np.random.default_rng(0)
    invalid = [m for m in MALFORMED if m[4] not in (411, 413)]

    def client(worker: int) -> list[tuple[str, int, bool]]:
        local = random.Random(worker)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        results = []
        for i in range(125):
            kind = local.choice(["act", "batch", "v2", "session", "invalid", "invalid"])
            if kind in ("act", "batch", "v2"):
                obs = rng.standard_normal((local.randint(1, 16), 4)).astype(np.float32)
                want_actions, want_q = policy.predict(obs)
                if kind == "v2":
                    body = {
                        "inputs": [
                            {"name": "obs", "shape": list(obs.shape), "datatype": "FP32", "data": obs.ravel().tolist()}
                        ]
                    }
                    status, answer, _ = call(port, "POST", "/v2/models/cartpole/infer", body, conn=conn)
                    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
                    ok = outputs["action"] == want_actions.tolist() and np.allclose(outputs["q_values"], want_q.ravel())
                else:
                    status, answer, _ = call(port, "POST", "/v1/act", {"obs": obs.tolist()}, conn=conn)
                    ok = answer["actions"] == want_actions.tolist() and np.allclose(answer["q_values"], want_q)
                results.append((kind, status, ok and status == 200))
            elif kind == "session":
                status, created, _ = call(port, "POST", "/v1/sessions", conn=conn)
                sid = created["session_id"]
                obs = [0.0, 0.01 * i, 0.0, -0.01]
                status2, step, _ = call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": obs}, conn=conn)
                status3, _, _ = call(port, "DELETE", f"/v1/sessions/{sid}", conn=conn)
                ok = step["action"] == policy.act(obs) and (status, status2, status3) == (201, 200, 200)
                results.append((kind, max(status, status2, status3), ok))
            else:
                name, method, path, body, expected = local.choice(invalid)
                raw = body if isinstance(body, bytes) else None
                status, answer, _ = call(port, method, path, body=None if raw is not None else body, raw=raw, conn=conn)
                results.append((name, status, status == expected and "error" in answer))
        conn.close()
        return results

    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(client, range(8)) for r in batch]
    assert len(results) == 1000
    assert not [r for r in results if r[1] >= 500]
    wrong = [r for r in results if not r[2]]
    assert not wrong, wrong[:5]
    assert sum(1 for r in results if r[1] >= 400) > 100  # the mix really had invalid requests


def test_cli_serve_starts_and_stops_on_sigterm(exported_cartpole, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "qagent", "serve", str(exported_cartpole[1].path), "--port", "0", "--model-name", "cp"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "serving" in line and "as model 'cp'" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        port = int(url.rsplit(":", 1)[1])
        assert url.startswith("http://127.0.0.1:")
        assert call(port, "GET", "/v2/models/cp/ready")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


def test_cli_serve_errors(tmp_path, exported_cartpole):
    from conftest import run_qagent

    missing = run_qagent("serve", "missing.onnx", cwd=tmp_path)
    assert (
        missing.returncode == 2
        and "no policy file at missing.onnx" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_qagent("serve", str(exported_cartpole[1].path), "--port", str(port), cwd=tmp_path)
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    bad_option = run_qagent("serve", "x.onnx", "--port", "http", cwd=tmp_path)
    assert bad_option.returncode == 2 and "invalid int value" in bad_option.stderr


def test_example_client_plays_an_episode_through_the_server(exported_cartpole):
    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "serve_client.py"), str(exported_cartpole[1].path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "played one episode through the server" in result.stdout


def test_module_entry_point_serves_without_click(exported_cartpole):
    code = (
        "import sys, runpy; sys.argv = ['x', sys.argv[1], '--port', '0'];"
        "import threading, os, signal;"
        "threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start();"
        "runpy.run_module('qagent.serve', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(exported_cartpole[1].path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "serving" in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "qagent.serve", "missing.onnx"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no policy file")
