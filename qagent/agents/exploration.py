"""Exploration strategies: given a batch's Q-values and the step, choose actions.

A strategy is a small object with its own random generator, whose state is checkpointed.
Q-values arrive as :class:`ActionValues`, computed on first use, so a strategy that explores
on every env of a step (early epsilon-greedy) costs no forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

import numpy as np

from qagent.config import ExplorationConfig, PositiveInt, Probability
from qagent.errors import ConfigError
from qagent.plugins.registries import register_exploration


class ActionValues:
    """The Q-values of a batch of observations, computed on first access of :attr:`values`.

    :param obs: the observations (leading batch axis); strategies may use them (counts).
    :param compute: ``obs -> q_BA``; called at most once.
    """

    def __init__(self, obs: np.ndarray, compute: Callable[[np.ndarray], np.ndarray], n_actions: int) -> None:
        self.obs = obs
        self.n_actions = n_actions
        self._compute = compute

    def __len__(self) -> int:
        return len(self.obs)

    @cached_property
    def values(self) -> np.ndarray:
        return self._compute(self.obs)

    def greedy(self) -> np.ndarray:
        return self.values.argmax(axis=1)


def linear_schedule(step: int, start: float, end: float, duration: int) -> float:
    """Arithmetic interpolation from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    fraction = min(1.0, step / duration) if duration > 0 else 1.0
    return start + fraction * (end - start)


def exponential_schedule(step: int, start: float, end: float, duration: int) -> float:
    """Geometric interpolation from ``start`` to ``end`` (both > 0) over ``duration`` steps, then ``end``."""
    fraction = min(1.0, step / duration) if duration > 0 else 1.0
    return start * math.exp(fraction * math.log(end / start))


SCHEDULES: dict[str, Callable[[int, float, float, int], float]] = {
    "linear": linear_schedule,
    "exponential": exponential_schedule,
}


class ExplorationStrategy:
    """Base class: override :meth:`select`; keep any extra state in :meth:`state_dict`.

    :param config: the strategy's validated ``Config``.
    :param n_actions: size of the discrete action space.
    :param total_steps: the run's length in env steps (for schedules given as fractions).
    :param seed: seed of the strategy's random generator.
    """

    Config: type[ExplorationConfig] = ExplorationConfig

    def __init__(self, config: ExplorationConfig, n_actions: int, total_steps: int, seed: int = 0) -> None:
        self.config = config
        self.n_actions = n_actions
        self.total_steps = total_steps
        self.rng = np.random.default_rng(seed)

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        """Actions (int64, one per observation) at env step ``step``."""
        raise NotImplementedError

    def metrics(self, step: int) -> dict[str, float]:
        """Values worth logging at ``step`` (e.g. ``{"epsilon": 0.3}``)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


@register_exploration("greedy")
class Greedy(ExplorationStrategy):
    """Always the action with the highest Q-value (no exploration)."""

    class Config(ExplorationConfig):
        name: str = "greedy"

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        return q.greedy()


@register_exploration("epsilon-greedy")
class EpsilonGreedy(ExplorationStrategy):
    """A uniformly random action with probability epsilon, annealed linearly or exponentially."""

    class Config(ExplorationConfig):
        name: str = "epsilon-greedy"
        schedule: Literal["linear", "exponential"] = "linear"
        """``linear`` interpolates arithmetically, ``exponential`` geometrically (needs end > 0)."""
        start: Probability = 1.0
        """Epsilon at step 0."""
        end: Probability = 0.05
        """Epsilon after the decay."""
        fraction: Probability = 0.1
        """Decay length as a fraction of ``train.total_steps`` (ignored when decay_steps is set)."""
        decay_steps: PositiveInt | None = None
        """Decay length in env steps."""

        def check(self, run: Any) -> None:
            if self.schedule == "exponential" and (self.start <= 0 or self.end <= 0):
                raise ConfigError(
                    "exploration.schedule 'exponential' needs exploration.start and exploration.end above 0",
                    hint="use exploration.schedule=linear to decay to 0",
                )

    config: Config

    def __init__(self, config: Config, n_actions: int, total_steps: int, seed: int = 0) -> None:
        super().__init__(config, n_actions, total_steps, seed)
        self.duration = config.decay_steps or int(config.fraction * total_steps)
        self.schedule = SCHEDULES[config.schedule]

    def epsilon(self, step: int) -> float:
        c = self.config
        return self.schedule(step, c.start, c.end, self.duration)

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        n = len(q)
        explore = self.rng.random(n) < self.epsilon(step)
        if not explore.any():
            return q.greedy()
        random_actions = self.rng.integers(0, self.n_actions, size=n)
        return random_actions if explore.all() else np.where(explore, random_actions, q.greedy())

    def metrics(self, step: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(step)}
