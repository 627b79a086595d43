"""Plain descriptions of gymnasium spaces (for export metadata and goal encodings)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qagent.serve import metadata as md


def describe_observation_space(space: gym.Space) -> dict[str, Any]:
    """The space as JSON-able metadata: kind, shape, dtype and bounds (or the number of states)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"space": "Discrete", "shape": [], "dtype": "int64", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {
            "space": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": md.encode_bound(space.low),
            "high": md.encode_bound(space.high),
        }
    raise ValueError(f"cannot describe observation space {space}")
