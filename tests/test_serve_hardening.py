"""The server under hostile input: request framing, malformed bodies, policies that lie, resource limits.

Each test here failed before the fix it covers. Servers are real (127.0.0.1, a free port) and
stop by themselves; nothing is timed.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, run_qagent
from onnx import TensorProto, helper
from test_serve import call, exchange, handmade_policy, http_request, serving

from qagent.serve import Policy, PolicyLoadError
from qagent.serve import metadata as md
from qagent.serve.__main__ import main as serve_main
from qagent.serve.http import PolicyServer, ServerOptions

OBS = [0.5, -1.0, 2.0]


@pytest.fixture
def policy(tmp_path) -> Policy:
    """q = obs @ W for a 3-vector observation and 2 actions: fast, exact, and easy to overflow."""
    weights = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]], np.float32)
    return Policy.load(handmade_policy(tmp_path / "linear.onnx", [3], "float32", weights))


@pytest.fixture
def server(policy):
    with serving(policy, model_name="linear", max_body_bytes=64 * 1024, max_batch=8, workers=2) as srv:
        yield srv


def act_request(obs=OBS, close: bool = True) -> bytes:
    return http_request(
        "POST", "/v1/act", json.dumps({"obs": obs}).encode(), {"Connection": "close"} if close else None
    )


def expected_act(policy: Policy, obs=OBS) -> dict:
    return {"actions": [policy.act(obs)], "q_values": [policy.q_values(obs).tolist()]}


def wait_until(condition) -> None:
    """Poll ``condition`` a bounded number of times (a state another thread reaches; nothing is timed)."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("the server never got there")


def error_of(response: tuple[int, dict[str, str], bytes]) -> str:
    """The message of a JSON error answer (and that it is one)."""
    status, headers, body = response
    assert headers["content-type"] == "application/json", body
    payload = json.loads(body)
    assert 400 <= status < 500 and isinstance(payload["error"], str) and payload["error"], payload
    return payload["error"]


# ---------------------------------------------------------------------- framing (defect 2)

SMUGGLED = http_request("POST", "/v1/act", json.dumps({"obs": [9.0, 9.0, 9.0]}).encode())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/v1/metadata", 200),
        ("DELETE", "/v1/sessions/nope", 404),
        ("POST", "/v3/nowhere", 404),  # unknown path
        ("POST", "/healthz", 405),  # wrong method
        ("BREW", "/healthz", 405),  # unknown method
        ("GET", "/v1/act", 405),
    ],
)
def test_a_body_is_read_never_answered_as_a_second_request(server, method, path, status):
    """The body holds a whole request; answering it would give the next client request the wrong answer."""
    answers = exchange(server.server_address[1], http_request(method, path, SMUGGLED) + act_request())
    assert [a[0] for a in answers] == [status, 200]
    if status >= 400:
        error_of(answers[0])
    assert json.loads(answers[1][2]) == expected_act(server.policy)


def test_error_pages_are_json_with_a_status_line(server):
    port = server.server_address[1]
    cases = [
        (b"GET /healthz\r\n", "HTTP/0.9"),  # HTTP/0.9: used to wait for headers forever, then answer without a status
        (b"HELLO\r\n\r\n", "malformed request line"),
        (b"GET /a b HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET /healthz HTTP/x.y\r\n\r\n", "request version"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", "speaks HTTP/1.1"),
        (b"G(T /healthz HTTP/1.1\r\n\r\n", "not an HTTP method"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "header line is longer than 65536"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", "longer than 65536"),
    ]
    for request, message in cases:
        answers = exchange(port, request + act_request())
        assert len(answers) == 1 and answers[0][1]["connection"] == "close", (request[:40], answers)
        assert message in error_of(answers[0]), request[:40]
        assert "hint" in json.loads(answers[0][2])


def test_unknown_methods_get_405_or_404(server):
    port = server.server_address[1]
    status, headers, _ = exchange(port, http_request("BREW", "/healthz", headers={"Connection": "close"}))[0]
    assert status == 405 and headers["allow"] == "GET"
    assert exchange(port, http_request("BREW", "/coffee", headers={"Connection": "close"}))[0][0] == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Content-Length: ten", 400),
        ("Content-Length: -1", 400),
        ("Content-Length: +4", 400),
        ("Content-Length: 4_0", 400),  # int() would read 40
        ("Content-Length: 4\r\nContent-Length: 5", 400),  # two lengths: which one frames the body?
        ("Content-Length: " + "9" * 30, 400),
        ("Content-Length: 1000000000000", 413),
        ("Transfer-Encoding: chunked", 411),
        ("Transfer-Encoding: chunked\r\nContent-Length: 4", 411),
        ("Expect: 100-continue\r\nContent-Length: 1000000000", 413),  # refused before 100 Continue
        ("Content-Length : 2", 400),  # not a header to http.server: the body would be the next request
        ("X: 1\r\nno colon", 400),
    ],
)
def test_framing_the_server_cannot_trust_closes_the_connection(server, headers, status):
    request = f"POST /v1/act HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode() + b"{}" + act_request()
    answers = exchange(server.server_address[1], request)
    assert len(answers) == 1 and answers[0][0] == status and answers[0][1]["connection"] == "close"
    error_of(answers[0])


def test_a_body_that_ends_early_is_a_400(server):
    request = b"POST /v1/act HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b'{"obs": [1'
    answers = exchange(server.server_address[1], request, half_close=True)
    assert len(answers) == 1 and "ended after 10 of 100 bytes" in error_of(answers[0])


def test_blank_lines_before_a_request_are_ignored(server):
    answers = exchange(server.server_address[1], b"\r\n\r\n" + act_request())
    assert len(answers) == 1 and json.loads(answers[0][2]) == expected_act(server.policy)


def test_a_refused_body_does_not_reset_the_connection_before_the_answer(server):
    """413 on a body the client sent whole: the server drains it before closing, so the client reads the 413."""
    big = json.dumps({"obs": [0.0] * 40_000}).encode()  # ~ 160 KB, over the 64 KiB limit
    for _ in range(5):
        answers = exchange(server.server_address[1], http_request("POST", "/v1/act", big))
        assert [a[0] for a in answers] == [413]


# ---------------------------------------------------------------------- malformed input (defect 3)


def test_q_values_that_overflow_are_a_422_not_a_500(server):
    port = server.server_address[1]
    huge = [3e38, 3e38, 3e38]  # finite float32, but 3e38 * 2 + 3e38 * 1 is not
    assert not np.isfinite(server.policy.q_values(huge)).all()
    status, answer, _ = call(port, "POST", "/v1/act", {"obs": [OBS, huge]})
    assert status == 422 and "not finite for observation 1" in answer["error"]
    v2 = {"inputs": [{"name": "obs", "shape": [1, 3], "datatype": "FP32", "data": huge}]}
    status, answer, _ = call(port, "POST", "/v2/models/linear/infer", v2)
    assert status == 422 and "overflow" in answer["error"]


def test_a_session_step_that_fails_leaves_the_session_as_it_was(tmp_path):
    weights = np.zeros((8, 2), np.float32)
    weights[0, 0] = 1.0  # q[0] = the oldest frame's first value
    weights[6, 1] = 2.0  # q[1] = twice the newest frame's first value: 3e38 overflows
    policy = Policy.load(handmade_policy(tmp_path / "stack.onnx", [4, 2], "float32", weights, frame_stack=4))
    with serving(policy) as srv:
        port = srv.server_address[1]
        sid = call(port, "POST", "/v1/sessions")[1]["session_id"]
        assert call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": [1.0, 0.0]})[1]["q_values"] == [1.0, 2.0]
        status, answer, _ = call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": [3e38, 0.0]})
        assert status == 422 and "the session did not advance" in answer["error"]
        assert call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": [np.nan, 0.0]})[0] == 422
        status, step, _ = call(port, "POST", f"/v1/sessions/{sid}/act", {"obs": [2.0, 0.0]})
        assert (status, step["q_values"], step["step"]) == (200, [1.0, 4.0], 2)  # frames 1, 1, 1, 2


def test_json_nested_deeper_than_python_recurses(server):
    port = server.server_address[1]
    deep = b'{"obs": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    status, answer, _ = call(port, "POST", "/v1/act", raw=deep)
    assert status == 400 and "nested too deeply" in answer["error"]
    status, answer, _ = call(port, "POST", "/v1/act", raw=b'{"obs": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}")
    assert status == 422


@pytest.mark.parametrize("shape", [[2**32, 2**32], [10**20], [1, 2**62, 2**62], [1] * 200, [-1, 3], [1.5, 3]])
def test_v2_shapes_that_overflow_are_refused(server, shape):
    port = server.server_address[1]
    v2 = {"inputs": [{"name": "obs", "shape": shape, "datatype": "FP32", "data": []}]}
    status, answer, _ = call(port, "POST", "/v2/models/linear/infer", v2)
    assert status in (400, 413, 422) and answer["error"]
    b64 = {"obs_b64": "", "shape": shape, "dtype": "float32"}
    status, answer, _ = call(port, "POST", "/v1/act", b64)
    assert status in (400, 413, 422) and answer["error"]


@pytest.mark.parametrize("outputs", [[{"name": ["action"]}], [{"name": 1}], [{"name": {"a": 1}}], [{}], "action"])
def test_v2_output_names_must_be_strings(server, outputs):
    v2 = {"inputs": [{"name": "obs", "shape": [1, 3], "datatype": "FP32", "data": OBS}], "outputs": outputs}
    status, answer, _ = call(server.server_address[1], "POST", "/v2/models/linear/infer", v2)
    assert status == 400 and "string names" in answer["error"]


def test_v2_other_unhashable_or_unserialisable_fields(server):
    port = server.server_address[1]
    tensor = {"name": "obs", "shape": [1, 3], "datatype": "FP32", "data": OBS}
    for changed, status in (({"datatype": ["FP32"]}, 422), ({"name": ["obs"]}, 400)):
        answer = call(port, "POST", "/v2/models/linear/infer", {"inputs": [{**tensor, **changed}]})
        assert answer[0] == status, answer[1]
    raw = json.dumps({"inputs": [tensor]})[:-1] + ', "id": NaN}'  # echoing NaN back is not JSON
    assert call(port, "POST", "/v2/models/linear/infer", raw=raw.encode())[0] == 400
    assert call(port, "POST", "/v2/models/linear/infer", {"inputs": [tensor], "id": {"a": 1}})[0] == 400


# ---------------------------------------------------------------------- policies that lie (defect 3)


def edited_policy(path: Path, edit=None, graph=None) -> Path:
    """The linear policy with its metadata changed by ``edit(meta)`` or its graph replaced."""
    model = onnx.load(str(path))
    meta = json.loads(model.metadata_props[0].value)
    if edit is not None:
        edit(meta)
    if graph is not None:
        model = graph
    del model.metadata_props[:]
    model.metadata_props.add(key=md.METADATA_KEY, value=json.dumps(meta))
    out = path.with_name(f"edited-{len(list(path.parent.iterdir()))}.onnx")
    onnx.save(model, str(out))
    return out


def fixed_batch_graph() -> onnx.ModelProto:
    """A graph whose input has a batch of exactly 1 (not a qagent export)."""
    nodes = [
        helper.make_node("MatMul", ["obs", "w"], ["q_values"]),
        helper.make_node("ArgMax", ["q_values"], ["action"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 3])],
        [
            helper.make_tensor_value_info("q_values", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("action", TensorProto.INT64, [1]),
        ],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.0] * 6)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def set_in(section: str, key: str, value):
    def edit(meta):
        meta[section][key] = value

    return edit


LYING_POLICIES = [
    ("no observation", lambda m: m.pop("observation"), "no 'observation' section"),
    ("observation not an object", lambda m: m.update(observation=[3]), "no 'observation' section"),
    ("complex dtype", set_in("observation", "dtype", "complex64"), "dtype 'complex64', which qagent.serve cannot"),
    ("bool dtype", set_in("observation", "dtype", "bool"), "cannot serve"),
    ("unknown dtype", set_in("observation", "dtype", "float128"), "cannot serve"),
    ("dtype not a string", set_in("observation", "dtype", ["float32"]), "cannot serve"),
    ("inputs disagree", set_in("observation", "dtype", "uint8"), "inputs say 'obs' is float32, its observation"),
    (
        "other dtype than the graph",
        lambda m: [m["observation"].update(dtype="uint8"), m["inputs"]["obs"].update(dtype="uint8")],
        "'obs' is float32, but the metadata says uint8",
    ),
    ("other shape than the graph", set_in("observation", "shape", [4]), "has shape ['batch', 3]"),
    ("more axes than the graph", set_in("observation", "shape", [3, 1]), "observation shape"),
    ("shape not a list", set_in("observation", "shape", "3"), "not a list of positive integers"),
    ("huge shape", set_in("observation", "shape", [2**20, 2**20]), "larger than qagent.serve serves"),
    ("no action section", lambda m: m.pop("action"), "no 'action' section"),
    ("more actions than the graph", lambda m: m["action"].update(n=3, meanings=None), "(the number of actions)"),
    ("action count a string", set_in("action", "n", "2"), "no 'action' section"),
    ("meanings not strings", set_in("action", "meanings", [1, 2]), "action meanings"),
    ("frame stack of another size", set_in("preprocessing", "frame_stack", 4), "frame_stack 4"),
    ("v2 input dtype unknown", lambda m: m["inputs"]["obs"].update(dtype="complex64"), "inputs['obs']"),
    ("v2 outputs not an object", lambda m: m.update(outputs=[1]), "'outputs' is not an object"),
    ("hierarchy without goals", lambda m: m.update(hierarchy={"goal_space": {}}), "hierarchy is not a goal space"),
    ("hierarchy not an object", lambda m: m.update(hierarchy=[1]), "'hierarchy' has no 'goal_space'"),
]


@pytest.mark.parametrize(("name", "edit", "message"), LYING_POLICIES, ids=[p[0] for p in LYING_POLICIES])
def test_a_policy_whose_metadata_does_not_fit_is_refused_at_load(policy, name, edit, message):
    with pytest.raises(PolicyLoadError, match="re-export it") as info:
        Policy.load(edited_policy(Path(policy.path), edit))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
        ('{"format": "qagent-policy", "format_version": [1]}', "not an integer"),
        ('{"format": "qagent-policy", "format_version": 99}', "newer than this qagent reads"),
        ('{"format": "qagent-policy", "format_version": 1, "evaluation": {"mean": NaN}}', "NaN is not JSON"),
    ],
)
def test_metadata_that_is_not_policy_metadata_is_refused_at_load(policy, text, message):
    model = onnx.load(str(policy.path))
    model.metadata_props[0].value = text
    path = Path(policy.path).with_name("odd.onnx")
    onnx.save(model, str(path))
    with pytest.raises(PolicyLoadError, match=message):
        Policy.load(path)


def test_a_graph_with_a_fixed_batch_is_refused_at_load(policy):
    with pytest.raises(PolicyLoadError, match="fixed batch size of 1"):
        Policy.load(edited_policy(Path(policy.path), graph=fixed_batch_graph()))


def test_serve_prints_one_line_and_exits_2_for_a_policy_it_cannot_serve(policy, tmp_path):
    bad = edited_policy(Path(policy.path), lambda m: m.pop("observation"))
    module = subprocess.run([sys.executable, "-m", "qagent.serve", str(bad)], capture_output=True, text=True)
    assert module.returncode == 2 and "Traceback" not in module.stderr
    assert module.stderr.count("\n") == 1 and module.stderr.startswith("error: ") and "'observation'" in module.stderr
    cli = run_qagent("serve", str(bad), "--port", "0", cwd=tmp_path)
    assert cli.returncode == 2 and cli.stderr == module.stderr


# ---------------------------------------------------------------------- resource limits (defect 4)


def test_request_bytes_in_flight_are_capped(policy):
    """A body that would exceed the in-flight budget waits, then gets 503 with Retry-After; its body is drained."""
    with serving(policy, max_body_bytes=64 * 1024, max_inflight_bytes=64 * 1024, inflight_wait=0.0) as srv:
        port = srv.server_address[1]
        body = json.dumps({"obs": OBS}).encode()
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(b"POST /v1/act HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (60_000 + len(body)))
        wait_until(lambda: srv.body_budget.in_use)  # the server holds the slow body's 60 KB
        assert srv.body_budget.in_use == 60_000 + len(body)
        answers = exchange(
            port, http_request("POST", "/v1/act", json.dumps({"obs": [OBS] * 2000}).encode()) + act_request()
        )
        assert [a[0] for a in answers] == [503, 200]  # the refused body was read and dropped: no desync
        assert answers[0][1]["retry-after"] == "1" and "busy" in json.loads(answers[0][2])["error"]
        slow.sendall(body + b" " * 60_000)
        status = slow.recv(100).split()[1]
        slow.close()
        assert status == b"200"
        assert exchange(port, act_request())[0][0] == 200
        wait_until(lambda: srv.body_budget.in_use == 0)


def test_the_batch_limit_is_checked_before_arrays_are_built(server):
    port = server.server_address[1]
    status, answer, _ = call(port, "POST", "/v1/act", {"obs": [["x", "y", "z"]] * 9})  # text, but 9 > 8
    assert status == 413 and "batch of 9" in answer["error"]
    v2 = {"inputs": [{"name": "obs", "shape": [9, 3], "datatype": "FP32", "data": "x"}]}
    assert call(port, "POST", "/v2/models/linear/infer", v2)[0] == 413
    b64 = {"obs_b64": "!!", "shape": [9, 3], "dtype": "float32"}
    assert call(port, "POST", "/v1/act", b64)[0] == 413
    v2 = {"inputs": [{"name": "obs", "shape": [1, 3], "datatype": "FP32", "data": [0.0] * 10}]}
    assert call(port, "POST", "/v2/models/linear/infer", v2)[0] == 422


def test_session_creations_over_http_evict_the_least_recently_used(policy):
    with serving(policy, max_sessions=3) as srv:
        port = srv.server_address[1]
        first, second, *_ = [call(port, "POST", "/v1/sessions")[1]["session_id"] for _ in range(3)]
        assert call(port, "POST", f"/v1/sessions/{first}/act", {"obs": OBS})[0] == 200  # first is fresh again
        created = [call(port, "POST", "/v1/sessions") for _ in range(2)]
        assert [c[0] for c in created] == [201, 201]  # never 429
        assert call(port, "POST", f"/v1/sessions/{second}/act", {"obs": OBS})[0] == 404
        assert call(port, "POST", f"/v1/sessions/{first}/act", {"obs": OBS})[0] == 200  # used, so kept
        assert len(srv.sessions) == 3


def test_the_listen_backlog_holds_a_burst_of_connections(policy):
    """With the old backlog of 5, the 7th connection to a busy server waited for a SYN retry."""
    srv = PolicyServer(policy, ("127.0.0.1", 0), ServerOptions())  # listening, not accepting yet
    sockets = []
    try:
        for _ in range(100):
            sock = socket.socket()
            sock.settimeout(2)
            sockets.append(sock)
            sock.connect(srv.server_address)
    finally:
        for sock in sockets:
            sock.close()
        srv.server_close()
    assert srv.request_queue_size >= 128


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "argument --port: must be between 0 and 65535, got 70000"),
        (["--port", "-1"], "argument --port: must be between 0 and 65535"),
        (["--port", "http"], "argument --port: invalid int value: 'http'"),
        (["--workers", "0"], "argument --workers: must be between 1 and 1024, got 0"),
        (["--max-body", "0"], "argument --max-body: must be between 1 and"),
        (["--max-body", "-5"], "argument --max-body: must be between 1 and"),
        (["--max-batch", "0"], "argument --max-batch: must be at least 1"),
        (["--session-ttl", "nan"], "argument --session-ttl: must be a positive number of seconds"),
        (["--max-sessions", "0"], "argument --max-sessions: must be at least 1"),
        (["--max-body", "100", "--max-inflight", "50"], "--max-inflight: must be at least --max-body (100)"),
    ],
)
def test_serve_options_out_of_range_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        serve_main(["policy.onnx", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_server_options_check_their_values():
    with pytest.raises(ValueError, match="max_inflight_bytes must be at least 100"):
        ServerOptions(max_body_bytes=100, max_inflight_bytes=10)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ServerOptions(workers=0)
    assert ServerOptions(max_body_bytes=100).max_inflight_bytes == 400


# ---------------------------------------------------------------------- trust


def test_plugins_named_in_the_metadata_are_never_imported(policy, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    plugin = tmp_path / "qagent_canary_plugin.py"
    plugin.write_text(f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('imported by the server')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["qagent_canary_plugin", str(plugin), "os:system"]
    path = edited_policy(Path(policy.path), lambda m: m.update(plugins=names, env={"id": "qagent_canary_plugin:Env"}))
    loaded = Policy.load(path)
    assert loaded.metadata["plugins"] == names
    with serving(loaded, model_name="canary") as srv:
        port = srv.server_address[1]
        assert call(port, "GET", "/v1/metadata")[1]["plugins"] == names
        assert call(port, "POST", "/v1/act", {"obs": OBS})[0] == 200
        assert call(port, "GET", "/v2/models/canary")[0] == 200
    assert "qagent_canary_plugin" not in sys.modules and not marker.exists()
    probe = (  # a fresh interpreter, where the plugin is importable: loading and serving leave it alone
        "import sys; from qagent.serve import Policy; from qagent.serve.http import PolicyServer;"
        "PolicyServer(Policy.load(sys.argv[1]), ('127.0.0.1', 0)).server_close();"
        "print('qagent_canary_plugin' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
    )
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr
    assert not marker.exists()


def test_serve_has_no_dynamic_imports():
    """Nothing in qagent.serve imports a name it read: every import is a fixed one of its own modules."""
    for source in (ROOT / "qagent" / "serve").glob("*.py"):
        text = source.read_text()
        words = (
            "__import__",
            "runpy",
            "exec(",
            "eval(",
            "pickle",
            "importlib",
        )
        for word in words:
            assert word not in text, f"{source.name} uses {word}"


def test_b64_dtypes_are_numbers_only(server):
    port = server.server_address[1]
    for dtype in ("object", "U4", "V12", "M8", "(3,)f4", "f4,f4", "complex64", "[('a', 'f4')]"):
        body = {"obs_b64": base64.b64encode(bytes(12)).decode(), "shape": [3], "dtype": dtype}
        status, answer, _ = call(port, "POST", "/v1/act", body)
        assert status == 422 and answer["error"], dtype


def test_a_silent_client_is_disconnected_and_others_are_served(policy, monkeypatch):
    """The watchdog drops a client that stops mid-request; the event loop serves everyone else meanwhile."""
    import qagent.serve.http as serve_http

    monkeypatch.setattr(serve_http, "CLIENT_TIMEOUT", 1.0)
    with serving(policy, model_name="linear") as srv:
        port = srv.server_address[1]
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        silent.sendall(b"POST /v1/act HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # 99 bytes owed
        started = time.monotonic()
        assert call(port, "POST", "/v1/act", {"obs": OBS})[0] == 200  # not held up by the silent one
        assert silent.recv(100) == b""  # dropped without an answer
        assert 1.0 <= time.monotonic() - started < 5.0
        silent.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_concurrent_clients_get_their_own_answers(policy, workers):
    """On the loop or on worker threads, answers go to the request that asked, batch by batch."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(workers)
    batches = [rng.normal(size=(int(rng.integers(1, 8)), 3)).astype(np.float32) for _ in range(64)]
    with serving(policy, model_name="linear", workers=workers) as srv:
        port = srv.server_address[1]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda b: call(port, "POST", "/v1/act", {"obs": b.tolist()})[1], batches))
    for batch, answer in zip(batches, answers):
        np.testing.assert_allclose(answer["q_values"], policy.q_values(batch), rtol=1e-6)
        assert answer["actions"] == policy.act(batch).tolist()
