"""Torch-free inference: run an exported ONNX policy with numpy and onnxruntime.

This package imports only the standard library, numpy and onnxruntime, so a game server can
ship a policy without PyTorch, gymnasium, MLflow or click (a test checks this).

    from qagent.serve import Policy
    policy = Policy.load("pong.onnx")
    action = policy.act(observation)

The policy classes are imported on first use: training shares this package's metadata and
goal modules, and must work where onnxruntime (the ``serve`` extra) is not installed. Every
name is taken from :mod:`qagent.serve.hierarchy`, which imports the rest, so ``Policy.load``
knows the hierarchical policy class whatever name was asked for first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HierarchicalPolicy", "HierarchicalSession", "InputError", "Policy", "PolicyLoadError", "PolicySession"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'qagent.serve' has no attribute {name!r}")
    from qagent.serve import hierarchy

    return getattr(hierarchy, name)
