"""Decoding and checking the JSON bodies of requests, and the Q-values sent back.

Every check a client's payload passes before it reaches the policy lives here: the body is a
JSON object, a batch is counted before any array is built, shapes and dtypes are ones
:mod:`qagent.serve` serves, base64 and v2 tensors hold as many bytes or values as their shape
needs, and Q-values are finite (JSON has no infinity). Each failure is an :class:`HttpError`
(400) or an :class:`InputError` (422) that says what to send instead; the server
(:mod:`qagent.serve.http`) only routes and answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from qagent.serve import metadata as md
from qagent.serve.errors import HttpError
from qagent.serve.policy import MAX_RANK, SERVABLE_DTYPES, InputError, Policy, as_numeric_array


def parse_json_body(raw: bytes, required: bool) -> dict[str, Any]:
    """A request body as a JSON object; 400 with the reason when it is not one."""
    if not raw:
        if required:
            raise HttpError(400, "request body is empty; send a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        raise HttpError(400, "request body is nested too deeply to be a request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise HttpError(400, f"request body must be a JSON object, not {type(body).__name__}")
    return body


def nested_batch_size(obs: Any, rank: int) -> int | None:
    """The length of ``obs`` if it is nested ``rank`` lists deep (a batch), without building an array."""
    node, depth = obs, 0
    while isinstance(node, list) and node and depth < rank:
        node, depth = node[0], depth + 1
    return len(obs) if depth == rank else None


def check_finite(q_values: np.ndarray, note: str = "") -> None:
    """JSON has no infinity: Q-values that overflow float32 are an error for the request, not a 500."""
    finite = np.isfinite(q_values)
    if not finite.all():
        rows = np.flatnonzero(~finite.reshape(len(q_values), -1).all(axis=1)) if q_values.ndim > 1 else [0]
        raise InputError(
            f"the model's Q-values are not finite for observation {', '.join(map(str, rows[:8]))} of the request"
            f"{note}: the values overflow float32, so the observation lies far outside what the policy "
            "was trained on; send observations in the range of the training env's"
        )


def check_shape(shape: Any, what: str) -> list[int]:
    """A client's shape: a list of at most ``MAX_RANK + 1`` non-negative integers."""
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK + 1
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise HttpError(400, f"{what} must be a list of at most {MAX_RANK + 1} non-negative integers")
    return shape


def decode_b64(
    body: dict[str, Any], batch_rank: int | None = None, check_batch: Callable[[int | None], None] | None = None
) -> np.ndarray:
    """A raw little-endian array from ``obs_b64``, ``shape`` and ``dtype``.

    A ``shape`` of ``batch_rank`` axes is a batch: ``check_batch`` sees its size before anything is decoded.
    """
    shape = check_shape(body.get("shape"), "obs_b64 needs 'shape', which")
    dtype = body.get("dtype")
    if not isinstance(dtype, str):
        raise HttpError(400, "obs_b64 needs 'dtype', a numpy dtype name such as 'uint8' or 'float32'")
    try:
        np_dtype = np.dtype(dtype).newbyteorder("<")
    except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError or SyntaxError for odd strings
        raise InputError(f"unknown dtype {dtype[:40]!r}; use one of {', '.join(SERVABLE_DTYPES)}") from None
    if np_dtype.kind not in "biuf" or np_dtype.shape:
        raise InputError(f"dtype {dtype[:40]!r} is not numeric; use one of {', '.join(SERVABLE_DTYPES)}")
    if check_batch is not None and len(shape) == batch_rank:
        check_batch(shape[0])
    payload = body["obs_b64"]
    if not isinstance(payload, str):
        raise HttpError(400, "obs_b64 must be a base64 string")
    expected = math.prod(shape) * np_dtype.itemsize
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, "obs_b64 is not valid base64") from None
    if len(raw) != expected:
        raise InputError(f"obs_b64 holds {len(raw)} bytes; shape {shape} of {dtype} needs {expected}")
    return np.frombuffer(raw, dtype=np_dtype).reshape(shape)


BINARY_HEADER = "Inference-Header-Content-Length"
"""The binary tensor extension's header: the JSON part's size; tensor bytes follow it in the body."""


def split_binary_body(raw: bytes, header: str | None) -> tuple[bytes, bytes]:
    """A v2 body as its JSON part and the binary tensor bytes after it (none without ``header``)."""
    if header is None:
        return raw, b""
    value = header.strip()
    if not value.isdigit() or len(value) > 19 or not 0 < int(value) <= len(raw):
        raise HttpError(
            400,
            f"{BINARY_HEADER} is {value[:40]!r}, but the body holds {len(raw)} bytes",
            hint="the header gives the size in bytes of the JSON part, which the tensors' bytes follow",
        )
    size = int(value)
    return raw[:size], raw[size:]


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = holder.get("parameters", {})
    if not isinstance(parameters, dict):
        raise HttpError(400, f"'parameters' of {what} must be a JSON object")
    return parameters


def v2_input(
    body: dict[str, Any],
    policy: Policy,
    check_batch: Callable[[int | None], None] | None = None,
    binary: bytes = b"",
) -> np.ndarray:
    """The ``obs`` tensor of a v2 inference request, checked against the model's input.

    Its values are in ``data`` (JSON) or, with the binary tensor extension, are the
    ``binary_data_size`` bytes in ``binary`` (little-endian, row-major).
    """
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HttpError(400, "a v2 request needs 'inputs', a non-empty list of tensors")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise HttpError(400, f"the model takes one input, {md.INPUT_NAME!r}")
    tensor = inputs[0]
    binary_size = _parameters(tensor, "the input").get("binary_data_size")
    for key in ("name", "shape", "datatype") if binary_size is not None else ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise HttpError(400, f"input tensor is missing {key!r}")
    if tensor["name"] != md.INPUT_NAME:
        shown = repr(tensor["name"])[:60]
        raise HttpError(400, f"unknown input {shown}; the model's input is {md.INPUT_NAME!r}")
    expected = md.V2_DATATYPES[policy.observation_dtype.name]
    if tensor["datatype"] != expected:
        shown = repr(tensor["datatype"])[:40]
        raise InputError(f"datatype {shown} does not match the model's {expected!r}")
    shape = check_shape(tensor["shape"], "'shape'")
    if check_batch is not None and len(shape) == len(policy.observation_shape) + 1:
        check_batch(shape[0])
    size = math.prod(shape)
    if binary_size is not None:
        return _binary_tensor(binary, binary_size, "data" in tensor, shape, policy.observation_dtype)
    if binary:
        raise HttpError(400, f"the body has {len(binary)} bytes after its JSON part, but no input has binary_data_size")
    if isinstance(tensor["data"], list) and len(tensor["data"]) > size:  # counted before an array is built
        raise InputError(f"'data' holds more than the {size} values of shape {shape}")
    data = as_numeric_array(tensor["data"])
    if data.size != size:
        raise InputError(f"'data' holds {data.size} values; shape {shape} needs {size}")
    return data.reshape(shape)


def _binary_tensor(binary: bytes, declared: Any, has_data: bool, shape: list[int], dtype: np.dtype) -> np.ndarray:
    if has_data:
        raise HttpError(400, "the input has both 'data' and binary_data_size; send its values one way")
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
        raise HttpError(400, "binary_data_size must be a non-negative integer")
    if declared != len(binary):
        raise HttpError(
            400,
            f"binary_data_size is {declared}, but {len(binary)} bytes follow the JSON part",
            hint=f"{BINARY_HEADER} must be the JSON part's size in bytes",
        )
    needed = math.prod(shape) * dtype.itemsize
    if declared != needed:
        raise InputError(f"the binary input holds {declared} bytes; shape {shape} of {dtype.name} needs {needed}")
    return np.frombuffer(binary, dtype=dtype.newbyteorder("<")).reshape(shape)


def v2_requested_outputs(body: dict[str, Any]) -> dict[str, bool]:
    """The outputs a v2 request asks for, each with whether it wants the tensor's bytes (binary) rather than JSON."""
    default = _parameters(body, "the request").get("binary_data_output", False)
    if not isinstance(default, bool):
        raise HttpError(400, "binary_data_output must be true or false")
    requested = body.get("outputs")
    if requested is None:
        return dict.fromkeys(md.OUTPUT_NAMES, default)
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise HttpError(400, '\'outputs\' must be a list of {"name": "..."} objects with string names')
    names = {o["name"] for o in requested}
    unknown = names - set(md.OUTPUT_NAMES)
    if unknown:
        shown = sorted(name[:40] for name in unknown)[:5]
        raise HttpError(400, f"unknown outputs {shown}; the model has {list(md.OUTPUT_NAMES)}")
    wanted = {}
    for output in requested:
        parameters = _parameters(output, f"output {output['name'][:40]!r}")
        if "classification" in parameters:
            raise HttpError(400, "the classification extension is not supported; ask for 'q_values' and 'action'")
        binary = parameters.get("binary_data", default)
        if not isinstance(binary, bool):
            raise HttpError(400, "binary_data must be true or false")
        wanted[output["name"]] = binary
    return wanted
