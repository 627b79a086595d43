"""MiniGrid games (``MiniGrid-*`` and ``BabyAI-*`` ids; the ``minigrid`` extra).

MiniGrid observes a dict (an egocentric 7x7 view, a direction and a mission string), which a
value network cannot take as it is. MiniGrid's own wrappers (``FullyObsWrapper``,
``ImgObsWrapper``) give the grid encoding; ``env.minigrid.observation`` then picks its form:

- ``flat`` (default): each cell one-hot encoded (object type and state; the agent's cell
  holds its direction), flattened to float32 -- small MLPs learn from it quickly in small rooms;
- ``onehot-image``: the same one-hot codes as ``(15, H, W)`` uint8 planes (255 = on), for a
  convolutional torso (``grid-cnn``), whose weights do not grow with the room;
- ``image``: the ``(3, H, W)`` uint8 grid encoding (type, color, state).

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


def one_hot_cells(observation: np.ndarray) -> np.ndarray:
    """The grid encoding ``(H, W, 3)`` -> ``(H, W, 15)`` bool: each cell's object type and state, one-hot."""
    types = np.eye(OBJECT_TYPES, dtype=bool)[observation[..., 0]]
    states = np.eye(STATES, dtype=bool)[np.minimum(observation[..., 2], STATES - 1)]
    return np.concatenate([types, states], axis=-1)


class OneHotGrid(gym.ObservationWrapper):
    """The grid encoding ``(H, W, 3)`` -> float32 one-hot of object type and state per cell, flattened."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, _ = env.observation_space.shape
        size = height * width * (OBJECT_TYPES + STATES)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return one_hot_cells(observation).reshape(-1).astype(np.float32)


class OneHotImage(gym.ObservationWrapper):
    """The grid encoding ``(H, W, 3)`` -> ``(15, H, W)`` uint8 one-hot planes (255 = on), channels first."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, _ = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (OBJECT_TYPES + STATES, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(one_hot_cells(observation).transpose(2, 0, 1)).astype(np.uint8) * np.uint8(255)


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
    forms = {"flat": OneHotGrid, "onehot-image": OneHotImage, "image": ChannelsFirst}
    return forms[config.observation](env)
