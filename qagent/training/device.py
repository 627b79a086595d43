"""Which device the learner runs on (``train.device``), checked before a run starts."""

from __future__ import annotations

import torch

from qagent.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when PyTorch sees a GPU, else the CPU; ``cuda[:N]`` only where that GPU exists.

    Checked when training starts, not when a config is read: a run trained on a GPU still
    evaluates and exports on a machine without one.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        why = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(
            f"train.device is {spec!r}, but {why}",
            hint="train with --device cpu (or auto), or install a CUDA build of PyTorch on a machine with a GPU",
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"train.device is {spec!r}, but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})",
            hint="pick one of them, or use --device cuda",
        )
    return device
