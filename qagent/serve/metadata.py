"""The metadata a qagent ONNX policy carries, and how to read it back.

Export writes one JSON document under the key ``qagent`` of the model's ``metadata_props``.
It says what the model expects and what it was trained on, so a game can use the file with
nothing but numpy and onnxruntime::

    {
      "format": "qagent-policy", "format_version": 1, "qagent_version": "0.1.0",
      "agent": "dqn", "env": {"id": "CartPole-v1", "kwargs": {}, "max_episode_steps": null},
      "observation": {"space": "Box", "shape": [4], "dtype": "float32", "low": [...], "high": [...]},
      "action": {"space": "Discrete", "n": 2, "meanings": null},
      "preprocessing": {"frame_stack": null},
      "inputs": {"obs": {...}}, "outputs": {"q_values": ..., "action": ...},
      "training": {"steps": 50000, "episodes": 326, "updates": 24448},
      "evaluation": {"mean": 500.0, "std": 0.0, "episodes": 100, "step": 50000},
      "config_hash": "...", "exported_at": "..."
    }

Infinite bounds are written as the strings ``"inf"`` and ``"-inf"`` (JSON has no infinity);
bounds that are the same everywhere are written once, as a number.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

METADATA_KEY = "qagent"
FORMAT = "qagent-policy"
FORMAT_VERSION = 1
INPUT_NAME = "obs"
OUTPUT_NAMES = ("q_values", "action")

# numpy dtype name -> Open Inference Protocol (KServe v2) datatype
V2_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def encode_bound(values: np.ndarray) -> Any:
    """A Box bound as JSON: one number if uniform, else a nested list; infinities as strings."""
    array = np.asarray(values, dtype=np.float64)
    if array.size and np.all(array == array.flat[0]):
        return _encode_number(float(array.flat[0]))
    return [encode_bound(row) for row in array] if array.ndim > 1 else [_encode_number(float(v)) for v in array]


def decode_bound(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`encode_bound`, broadcast to ``shape``."""
    array = np.asarray(_decode_numbers(value), dtype=np.float64)
    return np.broadcast_to(array, shape)


def _encode_number(x: float) -> float | str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _decode_numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_numbers(v) for v in value]
    if isinstance(value, str):
        return float(value)
    return value


def dumps(metadata: dict[str, Any]) -> str:
    """Serialize metadata as strict JSON (no NaN or Infinity literals)."""
    return json.dumps(metadata, allow_nan=False, sort_keys=False)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str) -> dict[str, Any]:
    """Parse metadata; a ``ValueError`` with a message when it is not a qagent policy's metadata.

    The document is data: what it names (plugins, modules) is never imported.
    """
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("the qagent metadata is nested too deeply to be policy metadata") from None
    except ValueError as exc:
        raise ValueError(f"the qagent metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not qagent policy metadata")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"policy metadata has format_version {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise ValueError(f"policy metadata version {version} is newer than this qagent reads")
    return data
