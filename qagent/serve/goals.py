"""Goal tests and controller inputs of h-DQN, in numpy alone (shared by training and serving).

A goal space describes each goal declaratively, so an exported hierarchy carries its goal
test in its metadata and :mod:`qagent.serve` runs it without the goal space's code:

- the *goal input* is a vector read from the game's state: the observation itself
  (``"input": "observation"``) or something the client sends along with it
  (``"input": "client"``, for example the Atari RAM);
- a goal is *reached* when all its clauses ``[index, low, high]`` hold, that is
  ``low <= x[index] <= high``;
- a goal is *valid* (the meta-controller may pick it) when it is not reached and all its
  ``requires`` clauses hold (a door that needs a key in the inventory);
- ``"lives"`` (optional) is the goal input's index of the game's lives counter: a lost life
  ends the option in progress as a failure.

An option fails when it times out (``max_option_steps``) or a life is lost. A goal whose option
timed out is barred from the meta-controller's next choices (:class:`FailedGoals`) until an
option succeeds, a life is lost or ``retry_failed_after`` steps pass, so a greedy hierarchy
cannot stall by choosing, again and again, a goal its controller cannot reach from where it is.

The controller sees the observation with its goal (:class:`GoalEncoding`): a flat vector with
the goal's one-hot code appended, or, for image observations, the image with goal planes
stacked on its channels (one per goal, or a mask of where the goal is).
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
        lives = description.get("lives")
        if lives is not None and not (isinstance(lives, int) and not isinstance(lives, bool) and lives >= 0):
            raise ValueError(f"'lives' must be an index into the goal input, not {lives!r}")
        self.lives_index: int | None = lives
        requires = description.get("requires") or []
        indices = [int(i) for clauses in [*reached, *requires] for i, _, _ in clauses]
        self.input_size = 1 + max([*indices, lives or 0])

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

    def lives(self, x: np.ndarray) -> float | None:
        """The lives counter in the goal input (a drop is a lost life), or None for games without lives."""
        return None if self.lives_index is None else float(x[self.lives_index])

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


def is_image(observation: dict[str, Any]) -> bool:
    """A ``(channels, height, width)`` Box: goals can be drawn into it as extra planes."""
    return observation.get("space") == "Box" and len(observation["shape"]) == 3


GOAL_ENCODINGS = ("vector", "planes", "mask", "observed-mask")


class GoalEncoding:
    """How the controller sees an observation together with its goal.

    - ``vector``: the observation's features as a flat float vector, then the goal's one-hot
      code; for vector torsos such as ``mlp``.
    - ``planes``: an image observation (channels first) keeps its shape and gets one constant
      plane per goal, on for the current goal; any torso takes it, convolutional ones included.
    - ``mask``: an image observation gets one plane that is on where the goal is (a rectangle
      ``[row0, row1, col0, col1)`` per goal from the goal space), as the paper's Montezuma
      controller saw it.
    - ``observed-mask``: an image observation gets one plane read from its own channels: per
      goal, the maximum of the channels that show where it is now (MiniGrid's one-hot planes: the
      box's channel for ``box``), so goals that move from episode to episode are marked too, and
      walking to a marked cell is one skill for every goal.

    Image encodings keep the observation's dtype ("on" is 255 for bytes, 1 otherwise), so a
    torso scales goal planes like frames and the replay memory stores bytes.

    :param kind: one of :data:`GOAL_ENCODINGS`.
    :param observation: the observation space's description (:mod:`qagent.envs.spaces`).
    :param masks: per goal, its rectangle in the observation (``mask`` only).
    :param channels: per goal, the observation's channels that show where it is (``observed-mask`` only).
    """

    def __init__(
        self,
        kind: str,
        observation: dict[str, Any],
        n_goals: int,
        masks: list[list[int]] | None = None,
        channels: list[list[int]] | None = None,
    ) -> None:
        if kind not in GOAL_ENCODINGS:
            raise ValueError(f"unknown goal encoding {kind!r}; choose from {', '.join(GOAL_ENCODINGS)}")
        if kind != "vector" and not is_image(observation):
            raise ValueError(
                f"the {kind!r} goal encoding draws goals into image observations (channels, height, width), "
                f"not {observation.get('space')} observations of shape {observation.get('shape')}"
            )
        if kind == "mask" and (masks is None or len(masks) != n_goals):
            raise ValueError("the 'mask' goal encoding needs a rectangle per goal from the goal space")
        if kind == "observed-mask" and (
            channels is None
            or len(channels) != n_goals
            or any(not 0 <= c < observation["shape"][0] for goal in channels for c in goal)
        ):
            raise ValueError(
                "the 'observed-mask' goal encoding needs, per goal, channels of the observation that show where it is"
            )
        self.kind = kind
        self.observation = observation
        self.n_goals = n_goals
        self.masks = [[int(v) for v in m] for m in masks] if kind == "mask" else None
        self.channels = [[int(c) for c in goal] for goal in channels] if kind == "observed-mask" else None
        if kind == "vector":
            width = (
                int(observation["n"]) if observation.get("space") == "Discrete" else int(np.prod(observation["shape"]))
            )
            self.shape: tuple[int, ...] = (width + n_goals,)
            self.dtype = np.dtype(np.float32)
        else:
            depth, height, width = observation["shape"]
            self.shape = (depth + (n_goals if kind == "planes" else 1), height, width)
            self.dtype = np.dtype(observation["dtype"])
            if kind == "observed-mask":  # the plane is read from the observation itself
                self._shows = np.zeros((n_goals, depth), dtype=bool)
                for g, goal_channels in enumerate(self.channels):
                    self._shows[g, goal_channels] = True
            else:  # one fixed plane (or set of planes) per goal
                self._planes = np.zeros((n_goals, self.shape[0] - depth, height, width), dtype=self.dtype)
                on = 255 if self.dtype == np.uint8 else 1
                for g in range(n_goals):
                    if kind == "planes":
                        self._planes[g, g] = on
                    else:
                        row0, row1, col0, col1 = self.masks[g]
                        self._planes[g, 0, row0:row1, col0:col1] = on

    @classmethod
    def from_description(
        cls, description: dict[str, Any] | None, observation: dict[str, Any], n_goals: int
    ) -> GoalEncoding:
        """The encoding an exported hierarchy's metadata names (``vector`` in files that name none)."""
        description = description or {"kind": "vector"}
        return cls(description["kind"], observation, n_goals, description.get("masks"), description.get("channels"))

    def describe(self) -> dict[str, Any]:
        """For the export metadata: the kind and, for ``mask``, the rectangles (``observed-mask``: the channels)."""
        described: dict[str, Any] = {"kind": self.kind}
        if self.masks is not None:
            described["masks"] = self.masks
        if self.channels is not None:
            described["channels"] = self.channels
        return described

    def __call__(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The controller's input for a batch of observations and their goals."""
        goals = np.asarray(goals, dtype=np.int64).reshape(-1)
        if self.kind == "vector":
            codes = np.eye(self.n_goals, dtype=np.float32)[goals]
            return np.concatenate([observation_features(obs, self.observation), codes], axis=1)
        obs = np.asarray(obs, dtype=self.dtype)
        if self.kind == "observed-mask":
            shows = self._shows[goals][:, :, None, None]  # (batch, channels, 1, 1): the goal's channels
            return np.concatenate([obs, np.where(shows, obs, 0).max(axis=1, keepdims=True)], axis=1)
        return np.concatenate([obs, self._planes[goals]], axis=1)

    def zeros(self, batch: int = 1) -> np.ndarray:
        """A placeholder input (when only the meta-controller's outputs are wanted)."""
        return np.zeros((batch, *self.shape), dtype=self.dtype)


class FailedGoals:
    """Goals whose option just timed out, barred from the meta-controller's choice until something changes.

    :param retry_after: steps after which a barred goal may be chosen again (None: only when
        :meth:`clear` is called: an option succeeded, a life was lost, a new episode began).
    """

    def __init__(self, n_goals: int, retry_after: int | None = None) -> None:
        self.retry_after = retry_after
        self.failed_at = np.full(n_goals, -1, dtype=np.int64)  # the step each goal failed at, -1: not barred
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1

    def fail(self, goal: int) -> None:
        self.failed_at[goal] = self.steps

    def clear(self) -> None:
        self.failed_at[:] = -1

    def barred(self) -> np.ndarray:
        barred = self.failed_at >= 0
        if self.retry_after is not None:
            barred &= self.steps - self.failed_at < self.retry_after
        return barred

    def allowed(self, valid: np.ndarray) -> np.ndarray:
        """The valid goals not barred; when every one is, the bars are lifted and a new round begins."""
        ok = valid & ~self.barred()
        if ok.any():
            return ok
        self.clear()
        return valid

    def state(self) -> tuple[list[int], int]:
        return self.failed_at.tolist(), self.steps

    def load_state(self, state: tuple[list[int], int]) -> None:
        self.failed_at[:], self.steps = state[0], int(state[1])


class GoalKeeper:
    """One episode's current goal: kept until reached, a life is lost or ``max_option_steps`` pass.

    The next goal is the meta-controller's greedy goal among the valid ones that did not just
    fail (:class:`FailedGoals`), or a random one of those with probability ``epsilon``
    (:meth:`explore`). Evaluation and served sessions step through this class, so they pick
    the same goals; training's actor applies the same rules to its batch of envs.
    """

    def __init__(
        self, test: GoalTest, max_option_steps: int | None = None, retry_failed_after: int | None = None
    ) -> None:
        self.test = test
        self.max_option_steps = max_option_steps
        self.failed = FailedGoals(test.n_goals, retry_failed_after)
        self.goal: int | None = None
        self.option_steps = 0
        self.lives: float | None = None  # the lives counter at the previous step
        self.epsilon = 0.0
        self.rng: np.random.Generator | None = None

    def explore(self, epsilon: float, rng: np.random.Generator) -> None:
        """Choose a random allowed goal with probability ``epsilon`` (the evaluation protocol's)."""
        self.epsilon, self.rng = float(epsilon), rng

    def reset(self) -> None:
        """A new episode: no goal yet, nothing barred."""
        self.goal, self.option_steps, self.lives = None, 0, None
        self.failed.clear()

    def _option_over(self, x: np.ndarray) -> bool:
        """Whether the current option is over in the state whose goal input is ``x`` (and what it teaches)."""
        lives, self.lives = self.lives, self.test.lives(x)
        if self.goal is None:
            return True
        if (lives is not None and self.lives is not None and self.lives < lives) or self.test.reached(x)[self.goal]:
            self.failed.clear()  # a new situation: a life lost, or a goal reached
            return True
        if self.max_option_steps is not None and self.option_steps >= self.max_option_steps:
            self.failed.fail(self.goal)
            return True
        return False

    def _choose(self, meta_q: Any, x: np.ndarray) -> int:
        allowed = self.failed.allowed(self.test.valid(x))
        if self.epsilon > 0 and self.rng is not None and self.rng.random() < self.epsilon:
            return int(self.rng.choice(np.flatnonzero(allowed)))
        return choose_goal(np.asarray(meta_q()), allowed)

    def step(self, goal_input: Any, meta_q: Any) -> tuple[int, bool]:
        """The goal for this step and whether it was just chosen; ``meta_q()`` gives the meta Q-values."""
        x = self.test.check_input(goal_input)
        chosen = self._option_over(x)
        if chosen:
            self.goal = self._choose(meta_q, x)
            self.option_steps = 0
        self.option_steps += 1
        self.failed.tick()
        return int(self.goal), chosen

    def state(self) -> tuple[Any, ...]:
        return self.goal, self.option_steps, self.lives, self.failed.state()

    def load_state(self, state: tuple[Any, ...]) -> None:
        self.goal, self.option_steps, self.lives, failed = state
        self.failed.load_state(failed)
