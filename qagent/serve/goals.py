"""Goal tests and controller inputs of h-DQN, in numpy alone (shared by training and serving).

A goal space describes each goal declaratively, so an exported hierarchy carries its goal
test in its metadata and :mod:`qagent.serve` runs it without the goal space's code:

- the *goal input* is a vector read from the game's state: the observation itself
  (``"input": "observation"``) or something the client sends along with it
  (``"input": "client"``, for example the Atari RAM);
- a goal is *reached* when all its clauses ``[index, low, high]`` hold, that is
  ``low <= x[index] <= high``;
- a goal is *valid* (the meta-controller may pick it) when it is not reached and all its
  ``requires`` clauses hold (a door that needs a key in the inventory).

The controller sees the observation as a flat float vector (one-hot for a discrete state,
bytes scaled to [0, 1]) followed by the one-hot code of its goal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Clause = tuple[int, float, float]


def _clause_arrays(clauses: list[list[Clause]], n_goals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten per-goal clause lists into (goal, index, low, high) arrays."""
    rows = [(g, int(i), float(lo), float(hi)) for g in range(n_goals) for i, lo, hi in (clauses[g] if clauses else [])]
    if not rows:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    goal, index, low, high = zip(*rows, strict=True)
    return np.array(goal), np.array(index), np.array(low), np.array(high)


class GoalTest:
    """Which goals a goal input reaches, and which the meta-controller may choose.

    :param description: a goal space's description (``goals``, ``reached_when``, ``requires``).
    """

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = description
        self.goals: list[str] = list(description["goals"])
        self.n_goals = len(self.goals)
        self.input: str = description.get("input", "observation")
        reached = description["reached_when"]
        if len(reached) != self.n_goals or any(not c for c in reached):
            raise ValueError("every goal needs at least one clause in 'reached_when'")
        self._reached = _clause_arrays(reached, self.n_goals)
        self._requires = _clause_arrays(description.get("requires") or [], self.n_goals)
        self.input_size = 1 + max(int(i) for clauses in reached for i, _, _ in clauses)

    @staticmethod
    def _holds(arrays: tuple[np.ndarray, ...], x: np.ndarray, n_goals: int) -> np.ndarray:
        goal, index, low, high = arrays
        ok = np.ones(n_goals, dtype=bool)
        if len(goal):
            value = x[index].astype(np.float64)
            failed = goal[(value < low) | (value > high)]
            ok[failed] = False
        return ok

    def check_input(self, x: Any) -> np.ndarray:
        """The goal input as a flat numeric vector, long enough for every clause."""
        array = np.asarray(x).reshape(-1)
        if array.dtype.kind not in "biuf" or array.size < self.input_size:
            raise ValueError(
                f"the goal input must be a vector of at least {self.input_size} numbers, "
                f"got {array.size} of dtype {array.dtype}"
            )
        return array

    def reached(self, x: np.ndarray) -> np.ndarray:
        """``bool[n_goals]``: the goals reached in the state ``x`` describes."""
        return self._holds(self._reached, x, self.n_goals)

    def valid(self, x: np.ndarray) -> np.ndarray:
        """``bool[n_goals]``: goals worth pursuing from ``x`` (all of them when none is)."""
        ok = ~self.reached(x) & self._holds(self._requires, x, self.n_goals)
        return ok if ok.any() else np.ones(self.n_goals, dtype=bool)


def choose_goal(q_G: np.ndarray, valid: np.ndarray) -> int:
    """The valid goal with the highest meta Q-value (ties to the lowest index)."""
    return int(np.argmax(np.where(valid, q_G, -np.inf)))


def observation_features(obs: np.ndarray, observation: dict[str, Any]) -> np.ndarray:
    """A batch of observations as flat float32 rows: one-hot for discrete states, bytes / 255."""
    obs = np.asarray(obs)
    if observation.get("space") == "Discrete":
        n = int(observation["n"])
        return np.eye(n, dtype=np.float32)[obs.astype(np.int64).reshape(-1)]
    flat = obs.reshape(obs.shape[0], -1).astype(np.float32)
    return flat / np.float32(255.0) if observation.get("dtype") == "uint8" else flat


def controller_input(obs: np.ndarray, goals: np.ndarray, observation: dict[str, Any], n_goals: int) -> np.ndarray:
    """The controller's input for a batch: observation features, then the goals' one-hot codes."""
    codes = np.eye(n_goals, dtype=np.float32)[np.asarray(goals, dtype=np.int64).reshape(-1)]
    return np.concatenate([observation_features(obs, observation), codes], axis=1)


def controller_width(observation: dict[str, Any], n_goals: int) -> int:
    """Width of the controller's input vector."""
    if observation.get("space") == "Discrete":
        return int(observation["n"]) + n_goals
    return int(np.prod(observation["shape"], dtype=np.int64)) + n_goals


class GoalKeeper:
    """One episode's current goal: kept until reached (or ``max_option_steps`` pass), then chosen anew.

    The choice is the meta-controller's greedy goal among the valid ones; training, evaluation
    and served sessions all step through this class, so they pick the same goals.
    """

    def __init__(self, test: GoalTest, max_option_steps: int | None = None) -> None:
        self.test = test
        self.max_option_steps = max_option_steps
        self.goal: int | None = None
        self.option_steps = 0

    def reset(self) -> None:
        """A new episode: no goal yet."""
        self.goal, self.option_steps = None, 0

    def due(self, x: np.ndarray) -> bool:
        """Whether the current option is over in the state whose goal input is ``x``."""
        if self.goal is None:
            return True
        timed_out = self.max_option_steps is not None and self.option_steps >= self.max_option_steps
        return timed_out or bool(self.test.reached(x)[self.goal])

    def step(self, goal_input: Any, meta_q: Any) -> tuple[int, bool]:
        """The goal for this step and whether it was just chosen; ``meta_q()`` gives the meta Q-values."""
        x = self.test.check_input(goal_input)
        chosen = self.due(x)
        if chosen:
            self.goal = choose_goal(np.asarray(meta_q()), self.test.valid(x))
            self.option_steps = 0
        self.option_steps += 1
        return int(self.goal), chosen
