"""Serving an exported h-DQN: one ONNX file with both networks, the goal test in its metadata.

The graph takes ``obs`` (for the meta-controller) and ``controller_obs`` (the observation with
its goal, encoded as the metadata's ``hierarchy.goal_encoding`` says, see
:mod:`qagent.serve.goals`) and returns ``q_values`` and ``action`` (the controller's) and
``meta_q_values``. A session keeps the current goal
(:class:`GoalKeeper`): it asks the meta-controller for a new one when the goal test says the
current one is reached, when the option times out or a life is lost (the goals that just
failed are barred from that choice; the session carries them). The test reads the *goal
input*: the observation itself when the goal space says ``"input": "observation"``, else a
vector the client sends as ``goal_input`` with each observation (for example the Atari RAM;
docs/hdqn.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qagent.serve import metadata as md
from qagent.serve.goals import GoalEncoding, GoalKeeper, GoalTest, choose_goal
from qagent.serve.policy import Failure, InputError, Policy, PolicyLoadError, PolicySession, check_graph_tensor  # noqa: F401 - re-exported by qagent.serve

CONTROLLER_INPUT = "controller_obs"
META_OUTPUT = "meta_q_values"


class HierarchicalPolicy(Policy, section="hierarchy"):
    """An exported h-DQN: goals from the meta-controller, actions from the controller."""

    graph_inputs = (md.INPUT_NAME, CONTROLLER_INPUT)
    graph_outputs = (*md.OUTPUT_NAMES, META_OUTPUT)

    def _read_metadata(self, fail: Failure) -> None:
        super()._read_metadata(fail)
        hierarchy = self.metadata["hierarchy"]
        if not isinstance(hierarchy, dict) or not isinstance(hierarchy.get("goal_space"), dict):
            raise fail("its metadata's 'hierarchy' has no 'goal_space'")
        try:
            self.test = GoalTest(hierarchy["goal_space"])
            self.encoding = GoalEncoding.from_description(
                hierarchy.get("goal_encoding"), self.metadata["observation"], self.test.n_goals
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise fail(f"its metadata's hierarchy is not a goal space qagent.serve can run ({exc})") from None
        self.goals = self.test.goals
        self.n_goals = self.test.n_goals
        for key in ("max_option_steps", "retry_failed_after"):
            steps = hierarchy.get(key)
            if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
                raise fail(f"its metadata's {key} {steps!r} is not a positive integer")
        self.max_option_steps: int | None = hierarchy.get("max_option_steps")
        self.retry_failed_after: int | None = hierarchy.get("retry_failed_after")

    def _check_graph(self, fail: Failure) -> None:
        super()._check_graph(fail)
        inputs = {arg.name: arg for arg in self._session.get_inputs()}
        outputs = {arg.name: arg for arg in self._session.get_outputs()}
        check_graph_tensor(
            inputs[CONTROLLER_INPUT], self.encoding.dtype.name, (None, *self.encoding.shape), fail, "the goal encoding"
        )
        check_graph_tensor(outputs[META_OUTPUT], "float32", (None, self.n_goals), fail, "the number of goals")

    def _run(self, batch: np.ndarray, controller_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q_values, actions, meta_q = self._session.run(
            ["q_values", "action", META_OUTPUT], {"obs": batch, CONTROLLER_INPUT: controller_obs}
        )
        return q_values, actions, meta_q

    def meta_q_values(self, batch: np.ndarray) -> np.ndarray:
        """``float32[B, n_goals]`` for a prepared batch."""
        return self._run(batch, self.encoding.zeros())[2]

    def controller_q_values(self, batch: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``float32[B, n_actions]`` for a prepared batch, each row pursuing its goal."""
        return self._run(batch[:1], self.encoding(batch, goals))[0]

    def goal_input(self, obs: np.ndarray, goal_input: Any = None) -> np.ndarray | None:
        """The goal test's input for one prepared observation: given, or the observation itself."""
        if goal_input is not None:
            try:
                return self.test.check_input(goal_input)
            except ValueError as exc:
                raise InputError(f"goal_input: {exc}") from None
        if self.test.input == "observation":
            return self.test.check_input(obs)
        return None

    def choose_goals(self, batch: np.ndarray, goal_inputs: list[Any] | None = None) -> np.ndarray:
        """The meta-controller's greedy goal for each observation (valid goals only, when the test can run)."""
        meta_q = self.meta_q_values(batch)
        goals = np.zeros(len(batch), dtype=np.int64)
        for i in range(len(batch)):
            x = self.goal_input(batch[i], None if goal_inputs is None else goal_inputs[i])
            valid = self.test.valid(x) if x is not None else np.ones(self.n_goals, dtype=bool)
            goals[i] = choose_goal(meta_q[i], valid)
        return goals

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stateless acting: each observation's greedy goal, then the controller's greedy action."""
        return self.predict_with_goals(batch)[:2]

    def predict_with_goals(
        self, batch: np.ndarray, goal_inputs: list[Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(actions, q_values, goals)`` for a prepared batch."""
        goals = self.choose_goals(batch, goal_inputs)
        q_values = self.controller_q_values(batch, goals)
        return q_values.argmax(axis=1), q_values, goals

    def session(self) -> HierarchicalSession:
        return HierarchicalSession(self)


class HierarchicalSession(PolicySession):
    """One episode of an h-DQN: frame stacking (if any) and the current goal."""

    policy: HierarchicalPolicy

    def __init__(self, policy: HierarchicalPolicy) -> None:
        super().__init__(policy)
        self.keeper = GoalKeeper(policy.test, policy.max_option_steps, policy.retry_failed_after)
        self.new_goal = False

    def reset(self) -> None:
        super().reset()
        self.keeper.reset()

    def _step(self, frame: Any, goal_input: Any) -> tuple[int, np.ndarray]:
        """``(action, q_values)`` for the next observation; ``goal_input`` when the goal test needs it."""
        obs = self.observation(frame)
        x = self.policy.goal_input(obs, goal_input)
        if x is None:
            raise InputError(
                f"this policy's goal test reads the game state: send 'goal_input' (a vector of at least "
                f"{self.policy.test.input_size} numbers, see the metadata's hierarchy.goal_space) with each step"
            )
        goal, self.new_goal = self.keeper.step(x, lambda: self.policy.meta_q_values(obs[None])[0])
        q_values = self.policy.controller_q_values(obs[None], np.array([goal]))[0]
        self.steps += 1
        return int(q_values.argmax()), q_values

    def snapshot(self) -> Any:
        return super().snapshot(), self.keeper.state(), self.new_goal

    def restore(self, state: Any) -> None:
        base, keeper, self.new_goal = state
        self.keeper.load_state(keeper)
        super().restore(base)

    @property
    def goal(self) -> str | None:
        """The current goal's name (None before the first step)."""
        return None if self.keeper.goal is None else self.policy.goals[self.keeper.goal]

    def info(self) -> dict[str, Any]:
        return {"goal": self.goal, "goal_index": self.keeper.goal, "new_goal": self.new_goal}
