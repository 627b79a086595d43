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

from qagent.config import ExplorationConfig, PositiveFloat, PositiveInt, Probability
from qagent.errors import ConfigError, PluginError
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

    def prepare(self, agent: Any) -> None:
        """Called with the freshly built agent, before a resumed run loads its state; it may use the
        agent interface only (e.g. :meth:`~qagent.agents.base.Agent.optimistic_start`)."""

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


def checked_actions(strategy: ExplorationStrategy, actions: Any, count: int) -> np.ndarray:
    """``actions`` as int64 if they are ``count`` integers in ``[0, n_actions)``; else a clear error.

    A strategy is plugin code, and a float or out-of-range action would otherwise reach the
    env (or the replay buffer) and fail far from its cause, or not fail at all.
    """
    array = np.asarray(actions)
    problem = None
    if array.shape != (count,):
        problem = f"an array of shape {array.shape}, expected ({count},): one action per env"
    elif array.dtype.kind not in "iu":
        problem = f"actions of dtype {array.dtype}, expected integers"
    elif count and (array.min() < 0 or array.max() >= strategy.n_actions):
        problem = f"action {int(array.max() if array.max() >= strategy.n_actions else array.min())}"
        problem += f", outside the env's actions 0..{strategy.n_actions - 1}"
    if problem is None:
        return array.astype(np.int64, copy=False)
    from qagent.plugins.registries import EXPLORATIONS

    name = strategy.config.name
    source = EXPLORATIONS.entry(name).source if name in EXPLORATIONS else type(strategy).__module__
    raise PluginError(
        f"exploration strategy {name!r} ({source}) returned {problem}",
        hint="select() must return one int64 action per observation, each in range(n_actions)",
    )


@register_exploration("greedy")
class Greedy(ExplorationStrategy):
    """Always the action with the highest Q-value (no exploration)."""

    class Config(ExplorationConfig):
        name: str = "greedy"

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        return q.greedy()


class ScheduleConfig(ExplorationConfig):
    """One parameter annealed from ``start`` to ``end`` over part of the run."""

    schedule: Literal["linear", "exponential"] = "linear"
    """``linear`` interpolates arithmetically, ``exponential`` geometrically (needs end > 0)."""
    start: float = 1.0
    end: float = 0.05
    fraction: Probability = 0.1
    """Decay length as a fraction of ``train.total_steps`` (ignored when decay_steps is set)."""
    decay_steps: PositiveInt | None = None
    """Decay length in env steps."""


class AnnealedStrategy(ExplorationStrategy):
    """A strategy whose one parameter (epsilon, a temperature) follows its config's schedule."""

    config: ScheduleConfig

    def __init__(self, config: ScheduleConfig, n_actions: int, total_steps: int, seed: int = 0) -> None:
        super().__init__(config, n_actions, total_steps, seed)
        self.duration = config.decay_steps or int(config.fraction * total_steps)

    def annealed(self, step: int) -> float:
        """The parameter's value at env step ``step``."""
        c = self.config
        return SCHEDULES[c.schedule](step, c.start, c.end, self.duration)


@register_exploration("epsilon-greedy")
class EpsilonGreedy(AnnealedStrategy):
    """A uniformly random action with probability epsilon, annealed linearly or exponentially."""

    class Config(ScheduleConfig):
        name: str = "epsilon-greedy"
        start: Probability = 1.0
        """Epsilon at step 0."""
        end: Probability = 0.05
        """Epsilon after the decay."""

        def check(self, run: Any) -> None:
            if self.schedule == "exponential" and (self.start <= 0 or self.end <= 0):
                raise ConfigError(
                    "exploration.schedule 'exponential' needs exploration.start and exploration.end above 0",
                    hint="use exploration.schedule=linear to decay to 0",
                )

    def epsilon(self, step: int) -> float:
        return self.annealed(step)

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        n = len(q)
        explore = self.rng.random(n) < self.epsilon(step)
        if not explore.any():
            return q.greedy()
        random_actions = self.rng.integers(0, self.n_actions, size=n)
        return random_actions if explore.all() else np.where(explore, random_actions, q.greedy())

    def metrics(self, step: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(step)}


@register_exploration("boltzmann")
class Boltzmann(AnnealedStrategy):
    """Actions sampled from softmax(Q / temperature), the temperature annealed (Boltzmann exploration)."""

    class Config(ScheduleConfig):
        name: str = "boltzmann"
        schedule: Literal["linear", "exponential"] = "exponential"
        """How the temperature moves from start to end."""
        start: PositiveFloat = 1.0
        """Temperature at step 0 (in units of Q)."""
        end: PositiveFloat = 0.01
        """Temperature after the decay."""
        fraction: Probability = 0.5
        """Decay length as a fraction of ``train.total_steps`` (ignored when decay_steps is set)."""

    def temperature(self, step: int) -> float:
        return self.annealed(step)

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        logits = q.values / self.temperature(step)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        cumulative = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True), axis=1)
        draws = self.rng.random((len(q), 1))
        return np.minimum((cumulative < draws).sum(axis=1), self.n_actions - 1)

    def metrics(self, step: int) -> dict[str, float]:
        return {"temperature": self.temperature(step)}


@register_exploration("noisy")
class NoisyExploration(ExplorationStrategy):
    """No action noise: greedy actions from Noisy Nets, which explore through their weights."""

    class Config(ExplorationConfig):
        name: str = "noisy"

        def check(self, run: Any) -> None:
            if not getattr(run.agent, "noisy", False):
                raise ConfigError(
                    "exploration 'noisy' adds no action noise and needs Noisy Nets to explore",
                    hint="set agent.noisy=true, use agent noisy-dqn or rainbow, or another exploration",
                )

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        return q.greedy()


@register_exploration("optimistic")
class OptimisticInitialization(ExplorationStrategy):
    """Greedy actions from a network that starts optimistic: every Q near r_max / (1 - gamma)."""

    class Config(ExplorationConfig):
        name: str = "optimistic"
        r_max: float = 1.0
        """Largest reward per step; initial Q-values are r_max / (1 - gamma)."""
        weight_scale: PositiveFloat = 0.01
        """The output layer's initial weights are scaled by this, so the bias dominates."""

    config: Config

    def prepare(self, agent: Any) -> None:
        agent.optimistic_start(self.config.r_max, self.config.weight_scale)

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        return q.greedy()


@register_exploration("ucb")
class UpperConfidenceBound(ExplorationStrategy):
    """Count-based UCB: argmax Q(s, a) + c sqrt(ln N(s) / N(s, a)), for discrete or hashable states."""

    class Config(ExplorationConfig):
        name: str = "ucb"
        c: PositiveFloat = 1.0
        """Weight of the exploration bonus."""
        decimals: int | None = None
        """Round float observations to this many decimals before counting (None: exact values)."""

    config: Config

    def __init__(self, config: Config, n_actions: int, total_steps: int, seed: int = 0) -> None:
        super().__init__(config, n_actions, total_steps, seed)
        self.counts: dict[bytes, np.ndarray] = {}

    def key(self, observation: np.ndarray) -> bytes:
        array = np.asarray(observation)
        if self.config.decimals is not None and array.dtype.kind == "f":
            array = np.round(array, self.config.decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
        return array.tobytes()

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        actions = np.empty(len(q), dtype=np.int64)
        values = q.values
        for i, observation in enumerate(q.obs):
            counts = self.counts.setdefault(self.key(observation), np.zeros(self.n_actions, dtype=np.int64))
            untried = np.flatnonzero(counts == 0)
            if len(untried):
                actions[i] = untried[self.rng.integers(len(untried))]
            else:
                bonus = self.config.c * np.sqrt(np.log(counts.sum()) / counts)
                actions[i] = int(np.argmax(values[i] + bonus))
            counts[actions[i]] += 1
        return actions

    def metrics(self, step: int) -> dict[str, float]:
        return {"ucb_states": float(len(self.counts))}

    def state_dict(self) -> dict[str, Any]:
        keys = list(self.counts)
        return {
            **super().state_dict(),
            "keys": [k.hex() for k in keys],
            "counts": np.stack([self.counts[k] for k in keys]) if keys else np.zeros((0, self.n_actions), np.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        counts = np.asarray(state["counts"])
        self.counts = {bytes.fromhex(k): counts[i].copy() for i, k in enumerate(state["keys"])}
