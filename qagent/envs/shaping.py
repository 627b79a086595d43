"""Potential-based reward shaping (Ng, Harada and Russell 1999).

The shaped reward ``r + gamma * Phi(s') - Phi(s)``, with ``Phi(terminal) = 0``, leaves the
optimal policy unchanged (``Q*_shaped = Q* - Phi``) while it can speed learning up. Potentials
are plugins: ``@register_potential("name")`` on a function ``phi(obs, **kwargs) -> float``, its
keyword arguments set from ``env.shaping.kwargs``. Shaping applies to training envs only;
evaluation reports the env's own returns, and training logs both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from qagent.config import ShapingConfig
from qagent.errors import ConfigError
from qagent.plugins.registries import POTENTIALS, register_potential


def shaped_reward(reward: float, phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """``r + gamma * Phi(s') - Phi(s)``, where a terminal ``s'`` has potential 0."""
    return reward + gamma * (0.0 if terminated else phi_next) - phi


class PotentialShaping(gym.Wrapper):
    """Adds ``gamma * Phi(s') - Phi(s)`` to every reward; reports the shaped return in
    ``info["shaped_return"]`` when an episode ends (the raw return stays in ``info["episode"]``)."""

    def __init__(self, env: gym.Env, potential: Callable[[Any], float], gamma: float) -> None:
        super().__init__(env)
        self.potential = potential
        self.gamma = gamma
        self.phi = 0.0
        self.shaped_return = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.phi = float(self.potential(obs))
        self.shaped_return = 0.0
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi_next = 0.0 if terminated else float(self.potential(obs))
        shaped = shaped_reward(float(reward), self.phi, phi_next, self.gamma, terminated)
        self.phi = phi_next
        self.shaped_return += shaped
        if terminated or truncated:
            info = {**info, "shaped_return": self.shaped_return}
        return obs, shaped, terminated, truncated, info


def shape(env: gym.Env, config: ShapingConfig, gamma: float) -> gym.Env:
    """``env`` with the configured potential's shaping."""
    potential = POTENTIALS.get(config.potential)
    return PotentialShaping(env, functools.partial(potential, **config.kwargs), config.gamma or gamma)


@register_potential("cartpole-upright")
def cartpole_upright(obs: np.ndarray, scale: float = 1.0) -> float:
    """CartPole: higher the closer the pole is to upright, 0 at the 12-degree failure angle."""
    if np.shape(obs) != (4,):
        raise ConfigError("potential 'cartpole-upright' needs CartPole's 4-number observations")
    return scale * (1.0 - abs(float(obs[2])) / 0.2095)
