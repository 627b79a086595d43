"""Exploration strategies and their schedules."""

from __future__ import annotations

import numpy as np
import pytest

from qagent.agents.exploration import ActionValues, EpsilonGreedy, Greedy, exponential_schedule, linear_schedule
from qagent.config import resolve_config
from qagent.plugins import EXPLORATIONS


def test_linear_schedule():
    assert linear_schedule(0, 1.0, 0.1, 100) == pytest.approx(1.0)
    assert linear_schedule(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_schedule(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_schedule(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_schedule(5, 1.0, 0.1, 0) == pytest.approx(0.1)


def test_exponential_schedule_is_geometric():
    assert exponential_schedule(0, 1.0, 0.01, 100) == pytest.approx(1.0)
    assert exponential_schedule(50, 1.0, 0.01, 100) == pytest.approx(0.1)  # halfway in log space
    assert exponential_schedule(100, 1.0, 0.01, 100) == pytest.approx(0.01)
    assert exponential_schedule(500, 1.0, 0.01, 100) == pytest.approx(0.01)


def make(overrides: list[str], total: int = 1000, seed: int = 0):
    config = resolve_config({}, overrides)
    return EXPLORATIONS.get(config.exploration.name)(config.exploration, 4, total, seed=seed)


def values(q: np.ndarray, calls: list[int] | None = None) -> ActionValues:
    def compute(obs):
        if calls is not None:
            calls.append(1)
        return np.repeat(q[None], len(obs), axis=0)

    return ActionValues(np.zeros((len(q) and 1000, 2)), compute, n_actions=4)


def test_epsilon_follows_the_configured_schedule():
    strategy = make(["exploration.start=1.0", "exploration.end=0.1", "exploration.fraction=0.5"], total=1000)
    assert strategy.epsilon(0) == pytest.approx(1.0)
    assert strategy.epsilon(250) == pytest.approx(0.55)
    assert strategy.metrics(500) == {"epsilon": pytest.approx(0.1)}
    by_steps = make(["exploration.decay_steps=10", "exploration.schedule=exponential", "exploration.end=0.01"])
    assert by_steps.epsilon(5) == pytest.approx(0.1)


def test_epsilon_greedy_explores_at_the_right_rate():
    strategy = make(["exploration.start=0.3", "exploration.end=0.3"])
    q = np.array([0.0, 0.0, 1.0, 0.0])
    actions = np.concatenate([strategy.select(values(q), step=0) for _ in range(20)])
    greedy_share = np.mean(actions == 2)
    assert greedy_share == pytest.approx(0.7 + 0.3 / 4, abs=0.02)  # greedy, or random that lands on it
    assert set(np.unique(actions)) == {0, 1, 2, 3}


def test_full_exploration_never_computes_q_values():
    strategy = make(["exploration.start=1.0", "exploration.end=1.0"])
    calls: list[int] = []
    strategy.select(values(np.zeros(4), calls), step=0)
    assert calls == []
    greedy = Greedy(Greedy.Config(), 4, 100)
    assert greedy.select(values(np.array([0.0, 3.0, 1.0, 2.0]), calls), step=0).tolist() == [1] * 1000
    assert calls == [1]


def test_state_round_trip_gives_the_same_draws():
    a = make(["exploration.start=0.5", "exploration.end=0.5"], seed=7)
    a.select(values(np.zeros(4)), 0)
    state = a.state_dict()
    expected = a.select(values(np.zeros(4)), 1)
    b = make(["exploration.start=0.5", "exploration.end=0.5"], seed=99)
    b.load_state_dict(state)
    assert np.array_equal(b.select(values(np.zeros(4)), 1), expected)


def test_registered_strategies_are_exploration_strategies():
    assert EXPLORATIONS.get("epsilon-greedy") is EpsilonGreedy
    assert EXPLORATIONS.get("greedy") is Greedy
