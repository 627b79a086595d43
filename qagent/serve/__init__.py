"""Torch-free inference: run an exported ONNX policy with numpy and onnxruntime.

This package imports only the standard library, numpy and onnxruntime, so a game server can
ship a policy without PyTorch, gymnasium, MLflow or click (a test checks this).

    from qagent.serve import Policy
    policy = Policy.load("pong.onnx")
    action = policy.act(observation)

The policy classes are imported on first use: training shares this package's metadata and
goal modules, and must work where onnxruntime (the ``serve`` extra) is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HierarchicalPolicy": "qagent.serve.hierarchy",
    "HierarchicalSession": "qagent.serve.hierarchy",
    "InputError": "qagent.serve.policy",
    "Policy": "qagent.serve.policy",
    "PolicyLoadError": "qagent.serve.policy",
    "PolicySession": "qagent.serve.policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qagent.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
