"""Torch-free inference: run an exported ONNX policy with numpy and onnxruntime.

This package imports only the standard library, numpy and onnxruntime, so a game server can
ship a policy without PyTorch, gymnasium, MLflow or click (a test checks this).

    from qagent.serve import Policy
    policy = Policy.load("pong.onnx")
    action = policy.act(observation)
"""

from qagent.serve.hierarchy import HierarchicalPolicy, HierarchicalSession
from qagent.serve.policy import InputError, Policy, PolicyLoadError, PolicySession

__all__ = ["HierarchicalPolicy", "HierarchicalSession", "InputError", "Policy", "PolicyLoadError", "PolicySession"]
