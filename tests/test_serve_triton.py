"""Open Inference Protocol (v2) conformance with a real client: tritonclient's HTTP client against qagent serve.

tritonclient sends tensors with the binary tensor extension by default (a JSON part, then the
tensors' bytes, sized by ``Inference-Header-Content-Length``) and asks for binary outputs; the
JSON-only form is checked too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from test_serve import call, handmade_policy, serving
from tritonclient.utils import InferenceServerException

from qagent.serve import Policy


@pytest.fixture
def cartpole(exported_cartpole):
    policy = Policy.load(exported_cartpole[1].path)
    with serving(policy, model_name="cartpole", max_batch=64, workers=2) as srv:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.server_address[1]}")
        yield policy, srv, client
        client.close()


def observations(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.5, size=(count, 4)).astype(np.float32)


def test_readiness_and_metadata(cartpole):
    policy, _, client = cartpole
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cartpole") and client.is_model_ready("cartpole", "1")
    assert not client.is_model_ready("pong")
    server = client.get_server_metadata()
    assert server["name"] == "qagent" and "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("cartpole")
    assert model["inputs"] == [{"name": "obs", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"]: o["datatype"] for o in model["outputs"]} == {"q_values": "FP32", "action": "INT64"}
    with pytest.raises(InferenceServerException, match="unknown model 'pong'"):
        client.get_model_metadata("pong")


@pytest.mark.parametrize(
    ("binary_input", "binary_outputs"),
    [(True, None), (False, None), (True, False), (False, True), (True, "mixed")],
    ids=["binary-default", "json-in-binary-out", "binary-in-json-out", "json-in-binary-outputs", "mixed-outputs"],
)
def test_infer_gives_the_policys_actions_and_q_values(cartpole, binary_input, binary_outputs):
    policy, _, client = cartpole
    obs = observations(16)
    tensor = triton.InferInput("obs", list(obs.shape), "FP32")
    tensor.set_data_from_numpy(obs, binary_data=binary_input)
    if binary_outputs is None:
        outputs = None  # the client then asks for every output in binary
    else:
        q_binary = binary_outputs if binary_outputs != "mixed" else False
        action_binary = binary_outputs if binary_outputs != "mixed" else True
        outputs = [
            triton.InferRequestedOutput("q_values", binary_data=q_binary),
            triton.InferRequestedOutput("action", binary_data=action_binary),
        ]
    result = client.infer("cartpole", [tensor], outputs=outputs, request_id="r-7", model_version="1")
    assert result.get_response()["id"] == "r-7"
    np.testing.assert_array_equal(result.as_numpy("action"), policy.act(obs))
    np.testing.assert_allclose(result.as_numpy("q_values"), policy.q_values(obs), rtol=1e-6)
    assert result.as_numpy("q_values").dtype == np.float32 and result.as_numpy("action").dtype == np.int64


def test_one_output_only(cartpole):
    policy, _, client = cartpole
    obs = observations(3, seed=1)
    tensor = triton.InferInput("obs", [3, 4], "FP32")
    tensor.set_data_from_numpy(obs)
    result = client.infer("cartpole", [tensor], outputs=[triton.InferRequestedOutput("action")])
    np.testing.assert_array_equal(result.as_numpy("action"), policy.act(obs))
    assert result.as_numpy("q_values") is None


def test_uint8_frames_in_binary(tmp_path):
    """Atari-like frames: the tensor's bytes travel as they are (84x84x4 uint8 is 28 kB, not 100 kB of JSON)."""
    weights = np.random.default_rng(3).normal(size=(4 * 6 * 6, 2)).astype(np.float32)
    policy = Policy.load(handmade_policy(tmp_path / "frames.onnx", [4, 6, 6], "uint8", weights))
    frames = np.random.default_rng(4).integers(0, 256, size=(5, 4, 6, 6), dtype=np.uint8)
    with serving(policy, model_name="frames") as srv:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.server_address[1]}")
        tensor = triton.InferInput("obs", [5, 4, 6, 6], "UINT8")
        tensor.set_data_from_numpy(frames)
        result = client.infer("frames", [tensor])
        np.testing.assert_array_equal(result.as_numpy("action"), policy.act(frames))
        wrong = triton.InferInput("obs", [5, 4, 6, 6], "FP32")
        wrong.set_data_from_numpy(frames.astype(np.float32))
        with pytest.raises(InferenceServerException, match="does not match the model's 'UINT8'"):
            client.infer("frames", [wrong])
        client.close()


def binary_request(obs: np.ndarray, header_size: int | None = None, declared: int | None = None, **extra) -> tuple:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "obs",
                    "shape": list(obs.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": obs.nbytes if declared is None else declared},
                    **extra,
                }
            ]
        }
    ).encode()
    size = len(head) if header_size is None else header_size
    return head + obs.tobytes(), {"Inference-Header-Content-Length": str(size)}


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("header past the body", 400, "Inference-Header-Content-Length is"),
        ("header not a number", 400, "Inference-Header-Content-Length is '12x'"),
        ("declared size wrong", 400, "binary_data_size is 8, but 64 bytes follow"),
        ("data and bytes", 400, "both 'data' and binary_data_size"),
        ("bytes without a declared size", 400, "no input has binary_data_size"),
        ("too few bytes for the shape", 422, "needs 80"),
        ("binary_data not a bool", 400, "binary_data must be true or false"),
    ],
)
def test_malformed_binary_requests_get_4xx(cartpole, case, status, message):
    _, srv, _ = cartpole
    obs = observations(4)
    path = "/v2/models/cartpole/infer"
    if case == "header past the body":
        raw, headers = binary_request(obs, header_size=10_000)
    elif case == "header not a number":
        raw, headers = binary_request(obs)
        headers["Inference-Header-Content-Length"] = "12x"
    elif case == "declared size wrong":
        raw, headers = binary_request(obs, declared=8)
    elif case == "data and bytes":
        raw, headers = binary_request(obs, data=[0.0] * 16)
    elif case == "bytes without a declared size":
        head = json.dumps({"inputs": [{"name": "obs", "shape": [4, 4], "datatype": "FP32", "data": [0.0] * 16}]})
        raw, headers = head.encode() + b"\0" * 8, {"Inference-Header-Content-Length": str(len(head))}
    elif case == "too few bytes for the shape":
        raw, headers = binary_request(np.zeros((5, 4), np.float32)[:4].copy())
        raw = raw.replace(b'"shape": [4, 4]', b'"shape": [5, 4]')
        headers["Inference-Header-Content-Length"] = str(len(raw) - 64)
    else:
        body = {
            "inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}],
            "outputs": [{"name": "action", "parameters": {"binary_data": "yes"}}],
        }
        raw, headers = json.dumps(body).encode(), {}
    got, payload, _ = call(srv.server_address[1], "POST", path, raw=raw, headers=headers)
    assert got == status and message in payload["error"], payload
    assert call(srv.server_address[1], "GET", "/v2/health/ready")[0] == 200  # still serving
