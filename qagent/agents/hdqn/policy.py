"""h-DQN's acting half: the meta-controller over goals, the controller over actions, the goal test.

Evaluation plays it through :class:`HierarchicalEvalActor`, which keeps each env's goal in a
:class:`~qagent.serve.goals.GoalKeeper`, as a served session does; export writes both networks
into one ONNX graph (:class:`HierarchicalModule`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from qagent.agents.policy import QPolicy
from qagent.envs.goals import GoalSpace
from qagent.serve.goals import GoalEncoding, GoalKeeper, GoalTest


class HierarchicalPolicy:
    """Both levels' :class:`QPolicy` with the goal encoding, the goal space and its test.

    :meth:`q_values` are the meta-controller's goal values; the controller's action values for
    observations pursuing goals are :meth:`controller_q_values`.
    """

    def __init__(
        self,
        meta: QPolicy,
        controller: QPolicy,
        encoding: GoalEncoding,
        goal_space: GoalSpace,
        max_option_steps: int | None,
        retry_failed_after: int | None = None,
    ) -> None:
        self.meta = meta
        self.controller = controller
        self.encoding = encoding
        self.goal_space = goal_space
        self.test: GoalTest = goal_space.test
        self.max_option_steps = max_option_steps
        self.retry_failed_after = retry_failed_after

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """``float32[batch, n_goals]``: the meta-controller's."""
        return self.meta.q_values(obs)

    def controller_q_values(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``float32[batch, n_actions]`` for each observation pursuing its goal."""
        return self.controller.q_values(self.encoding(obs, goals))

    def evaluator(self) -> HierarchicalEvalActor:
        """Greedy goals, each kept until its option ends (see :class:`GoalKeeper`), greedy actions."""
        return HierarchicalEvalActor(
            self.q_values,
            self.controller_q_values,
            self.goal_space,
            lambda: GoalKeeper(self.test, self.max_option_steps, self.retry_failed_after),
        )

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[HierarchicalPolicy]:
        with self.meta.evaluation_mode(), self.controller.evaluation_mode():
            yield self

    def copy(self) -> HierarchicalPolicy:
        return HierarchicalPolicy(
            self.meta.copy(),
            self.controller.copy(),
            self.encoding,
            self.goal_space,
            self.max_option_steps,
            self.retry_failed_after,
        )

    def weights(self) -> dict[str, Any]:
        return {"meta": self.meta.weights(), "controller": self.controller.weights()}

    def load_weights(self, weights: dict[str, Any]) -> None:
        self.meta.load_weights(weights["meta"])
        self.controller.load_weights(weights["controller"])


class HierarchicalEvalActor:
    """Acts in a batch of evaluation envs with a goal per env, as a served session does.

    :param meta_q: ``obs_batch -> q_BG``.
    :param controller_q: ``(obs_batch, goals) -> q_BA``.
    :param goal_space: reads each env's goal input.
    :param keeper: a new env's goal keeper.
    """

    def __init__(
        self,
        meta_q: Callable[[np.ndarray], np.ndarray],
        controller_q: Callable[[np.ndarray, np.ndarray], np.ndarray],
        goal_space: GoalSpace,
        keeper: Callable[[], GoalKeeper],
    ) -> None:
        self.meta_q = meta_q
        self.controller_q = controller_q
        self.goal_space = goal_space
        self.keeper = keeper
        self.keepers: list[GoalKeeper] = []
        self.epsilon, self.rng = 0.0, np.random.default_rng(0)

    def explore(self, epsilon: float, rng: np.random.Generator) -> None:
        """Goals too are random with probability ``epsilon`` (the evaluation protocol's, at both levels)."""
        self.epsilon, self.rng = epsilon, rng
        for keeper in self.keepers:
            keeper.explore(epsilon, rng)

    def reset(self, mask: np.ndarray) -> None:
        if len(self.keepers) != len(mask):
            self.keepers = [self.keeper() for _ in mask]
            for keeper in self.keepers:
                keeper.explore(self.epsilon, self.rng)
        for i in np.flatnonzero(mask):
            self.keepers[i].reset()

    def goals(self, obs: np.ndarray, envs: Sequence[gym.Env]) -> np.ndarray:
        """Each env's goal for this step (a new one where the last was reached)."""
        goals = np.zeros(len(obs), dtype=np.int64)
        for i, keeper in enumerate(self.keepers):
            x = self.goal_space.goal_input(envs[i], obs[i])
            goals[i] = keeper.step(x, lambda i=i: self.meta_q(obs[i : i + 1])[0])[0]
        return goals

    def __call__(self, obs: np.ndarray, envs: Sequence[gym.Env]) -> np.ndarray:
        return self.controller_q(obs, self.goals(obs, envs)).argmax(axis=1)


class HierarchicalModule(nn.Module):
    """``(obs, controller_obs) -> (q_values, action, meta_q_values)``: both networks of an h-DQN."""

    def __init__(self, meta: nn.Module, controller: nn.Module) -> None:
        super().__init__()
        self.meta_controller = meta  # not "meta": torch.fx nodes have a .meta of their own
        self.controller = controller

    def forward(self, obs: torch.Tensor, controller_obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q_values = self.controller(controller_obs)
        return q_values, q_values.argmax(dim=1), self.meta_controller(obs)
