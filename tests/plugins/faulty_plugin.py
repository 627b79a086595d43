"""Plugins that misbehave on purpose, for the tests of how qagent reports plugin failures.

Env ``faulty-cartpole`` is CartPole that fails as its kwargs say; exploration ``bad-actions``
returns actions of the kind its config names.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from qagent import register_env, register_exploration
from qagent.agents import ActionValues, ExplorationStrategy
from qagent.config import ExplorationConfig

made = 0


@register_env("faulty-cartpole")
class FaultyCartPole(gym.Wrapper):
    """CartPole that raises when made (the n-th copy), is slow to make, gives NaN rewards, or calls sys.exit."""

    def __init__(
        self, fail_on_make: int = 0, nan_after: int = 0, exit_after: int = 0, slow_make_marker: str = ""
    ) -> None:
        global made
        made += 1
        if slow_make_marker:
            Path(slow_make_marker).write_text("making")
            time.sleep(60)
        if fail_on_make and made >= fail_on_make:
            raise RuntimeError(f"cannot open the game window (copy {made})")
        super().__init__(gym.make("CartPole-v1"))
        self.nan_after, self.exit_after, self.steps = nan_after, exit_after, 0

    def step(self, action):
        self.steps += 1
        if self.exit_after and self.steps >= self.exit_after:
            sys.exit(0)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.nan_after and self.steps >= self.nan_after:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


@register_exploration("bad-actions")
class BadActions(ExplorationStrategy):
    """Returns actions of the wrong kind: float, shape, or range."""

    class Config(ExplorationConfig):
        name: str = "bad-actions"
        kind: str = "float"

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        n = len(q)
        if self.config.kind == "float":
            return np.full(n, 0.7)
        if self.config.kind == "shape":
            return np.zeros((n, 2), dtype=np.int64)
        return np.full(n, self.n_actions, dtype=np.int64)
