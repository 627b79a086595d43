"""MiniGrid games (``MiniGrid-*`` and ``BabyAI-*`` ids; the ``minigrid`` extra).

MiniGrid observes a dict (an egocentric 7x7 view, a direction and a mission string), which a
value network cannot take as it is. ``env.minigrid.observation`` picks one of two forms:

- ``flat`` (default): each cell one-hot encoded (object type and state; the agent's cell
  holds its direction), flattened to float32 -- small MLPs learn from it quickly;
- ``image``: the ``(3, H, W)`` uint8 grid encoding (type, color, state), for a CNN torso.

``env.minigrid.fully_observable`` (default) shows the whole grid instead of the agent's view.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qagent.config import MiniGridConfig

OBJECT_TYPES = 11  # minigrid.core.constants.OBJECT_TO_IDX: unseen .. agent
STATES = 4  # door states (open, closed, locked), or the agent's direction (0..3)


def is_minigrid(env_id: str) -> bool:
    return env_id.startswith(("MiniGrid-", "BabyAI-"))


class OneHotGrid(gym.ObservationWrapper):
    """The grid encoding ``(H, W, 3)`` -> float32 one-hot of object type and state per cell, flattened."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, _ = env.observation_space.shape
        size = height * width * (OBJECT_TYPES + STATES)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        self._types = np.eye(OBJECT_TYPES, dtype=np.float32)
        self._states = np.eye(STATES, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        types = self._types[observation[..., 0]]
        states = self._states[np.minimum(observation[..., 2], STATES - 1)]
        return np.concatenate([types, states], axis=-1).reshape(-1)


class ChannelsFirst(gym.ObservationWrapper):
    """``(H, W, C)`` -> ``(C, H, W)``, the layout of qagent's CNN torsos."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1))


def make_minigrid(env_id: str, config: MiniGridConfig, render_mode: str | None, kwargs: dict[str, Any]) -> gym.Env:
    from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper

    env = gym.make(env_id, render_mode=render_mode, **kwargs)
    if config.fully_observable:
        env = FullyObsWrapper(env)
    env = ImgObsWrapper(env)
    return OneHotGrid(env) if config.observation == "flat" else ChannelsFirst(env)
