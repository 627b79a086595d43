"""h-DQN: a meta-controller that picks goals and a controller that reaches them.

Kulkarni et al. 2016, "Hierarchical Deep Reinforcement Learning: Integrating Temporal
Abstraction and Intrinsic Motivation". The agent holds two ordinary DQN learners and a goal
space (:mod:`qagent.envs.goals`) rather than being a kind of DQN:

- the meta-controller ``Q2(s, g)`` values the goals in a state and learns from D2, one
  transition ``(s0, g, F, s_end)`` per option (``F`` the extrinsic reward summed over it);
- the controller ``Q1((s, g), a)`` sees the observation with its goal (the goal's one-hot
  code appended to a vector, or goal planes stacked on an image, see
  :class:`~qagent.serve.goals.GoalEncoding`, so any torso serves it) and learns from D1,
  one transition per step with the internal critic's reward (``intrinsic_reward`` when
  the goal is reached, minus ``step_penalty`` every step). An
  option ends when its goal is reached (terminal for the controller), when the episode ends,
  or after ``max_option_steps``.

Each level is a :class:`DQNAgent` with its own config (double, dueling, noisy, optimizer,
schedule), and each memory is a replay config (prioritized, n-step), so the Rainbow
components apply to either level. The loop lives in :mod:`qagent.training.hdqn_loop`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch

from qagent.agents.dqn import DQNAgent, DQNConfig
from qagent.agents.exploration import linear_schedule
from qagent.config import (
    AgentConfig,
    NetworkConfig,
    NonNegativeInt,
    PositiveInt,
    Probability,
    ReplayConfig,
    Section,
)
from qagent.envs.goals import GoalSpace
from qagent.envs.spaces import describe_observation_space
from qagent.errors import ConfigError
from qagent.plugins.registries import GOAL_SPACES, register_agent
from qagent.serve.goals import GoalEncoding, GoalKeeper, GoalTest, is_image


class Annealing(Section):
    """Epsilon annealed linearly from ``start`` to ``end`` over ``steps`` env steps."""

    start: Probability = 1.0
    """Epsilon at the first step."""
    end: Probability = 0.1
    """Epsilon after the decay."""
    steps: PositiveInt = 50_000
    """Env steps over which epsilon decays (counted from the end of controller pre-training for the meta level)."""

    def at(self, step: int) -> float:
        return linear_schedule(max(step, 0), self.start, self.end, self.steps)


def _level(**overrides: Any) -> DQNConfig:
    """A level's defaults: small batches and frequent updates, as the paper's tabular runs use."""
    base = {"lr": 2.5e-4, "batch_size": 32, "learning_starts": 1000, "train_freq": 1, "target_update_interval": 500}
    return DQNConfig(**{**base, **overrides})


class HDQNConfig(AgentConfig):
    """h-DQN: a goal space, a controller and a meta-controller, each level a DQN with its own settings."""

    name: str = "hdqn"
    goal_space: str = "state-index"
    """Registered goal space (``qagent plugins list --kind goal-space``)."""
    goal_space_kwargs: dict[str, Any] = {}
    """Options of the goal space."""
    controller: DQNConfig = _level()
    """The controller Q1((s, g), a): any DQN option (double, dueling, lr, schedule); its memory D1 is ``replay``."""
    meta: DQNConfig = _level()
    """The meta-controller Q2(s, g): any DQN option; its memory D2 is ``agent.meta_replay``."""
    meta_replay: ReplayConfig = ReplayConfig(capacity=50_000)
    """D2, the meta-controller's memory of options (prioritized and n-step apply here too)."""
    intrinsic_reward: float = 1.0
    """The internal critic's reward when the controller reaches its goal."""
    step_penalty: float = 0.0
    """Subtracted from the intrinsic reward on every step (0 in the paper)."""
    max_option_steps: PositiveInt | None = None
    """End an option that has not reached its goal after this many steps (None: only at the episode's end)."""
    meta_epsilon: Annealing = Annealing()
    """The meta-controller's epsilon (epsilon_2), annealed after controller pre-training."""
    controller_epsilon: Literal["anneal", "success-rate"] = "anneal"
    """``anneal``: one schedule (``controller_annealing``); ``success-rate``: per goal, 1 - its recent success rate."""
    controller_annealing: Annealing = Annealing()
    """The controller's epsilon (epsilon_1) when ``controller_epsilon`` is ``anneal``."""
    success_window: PositiveInt = 100
    """Recent attempts per goal behind its success rate (logged, and epsilon_1 with ``success-rate``)."""
    success_epsilon_min: Probability = 0.1
    """The lowest epsilon_1 a goal gets from its success rate."""
    goal_encoding: Literal["auto", "vector", "planes", "mask"] = "auto"
    """How the controller sees its goal: ``vector`` (one-hot after the flat observation, for vector torsos),
    ``planes`` (a constant plane per goal on an image), ``mask`` (a plane marking where the goal is, from
    the goal space); ``auto``: ``mask`` on images when the goal space has masks, else ``planes`` on images,
    else ``vector``."""
    pretrain_steps: NonNegativeInt = 0
    """Env steps of controller pre-training with random goals (epsilon_2 = 1, no meta updates) before joint training."""

    def check(self, run: Any) -> None:
        if self.goal_space not in GOAL_SPACES:
            GOAL_SPACES.get(self.goal_space)  # raises with close matches
        for key, level in (("controller", self.controller), ("meta", self.meta)):
            if level.name != "dqn":
                raise ConfigError(
                    f"agent.{key}.name must be 'dqn': each level is a DQN learner, configured by its options",
                    hint=f"set agent.{key}.double / dueling / noisy; PER and n-step live in the replay configs",
                )
        total = run.train.total_steps
        self.controller.check_learner(run.replay.capacity, total, "agent.controller", "replay")
        self.meta.check_learner(self.meta_replay.capacity, total, "agent.meta", "agent.meta_replay")
        if self.pretrain_steps >= run.train.total_steps:
            raise ConfigError(
                f"agent.pretrain_steps ({self.pretrain_steps}) leaves no joint training in train.total_steps "
                f"({run.train.total_steps})",
                hint="lower agent.pretrain_steps or raise train.total_steps",
            )
        if (
            run.exploration.name != "epsilon-greedy"
            or run.exploration.model_dump() != type(run.exploration)().model_dump()
        ):
            raise ConfigError(
                "h-DQN explores with its own epsilons; the exploration section does not apply",
                hint="set agent.meta_epsilon and agent.controller_epsilon / agent.controller_annealing instead",
            )


@register_agent("hdqn")
class HDQNAgent:
    """Hierarchical DQN (Kulkarni et al. 2016): a meta-controller over goals, a controller over actions."""

    Config = HDQNConfig
    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {"replay": {"capacity": 100_000}}

    def __init__(
        self,
        config: HDQNConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        network_config: NetworkConfig,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.goal_space: GoalSpace = GOAL_SPACES.get(config.goal_space)(observation_space, **config.goal_space_kwargs)
        self.goal_description = {**self.goal_space.describe(config.goal_space), "kwargs": config.goal_space_kwargs}
        self.test = self.goal_space.test
        self.goals = self.test.goals
        self.n_goals = self.test.n_goals
        try:
            self.observation = describe_observation_space(observation_space)
        except ValueError as exc:
            raise ConfigError(f"h-DQN: {exc}", hint="use a Discrete or Box observation space") from None
        self.encoding = self._goal_encoding(config.goal_encoding)
        self.controller_space = _space_of(self.encoding)
        self.controller = DQNAgent(config.controller, self.controller_space, action_space, network_config, device)
        self.meta = DQNAgent(config.meta, observation_space, gym.spaces.Discrete(self.n_goals), network_config, device)
        self.n_actions = self.controller.n_actions
        self.policy = HierarchicalPolicy(self)

    def _goal_encoding(self, requested: str) -> GoalEncoding:
        masks = self.goal_space.masks()
        kind = requested
        if requested == "auto":
            kind = "vector" if not is_image(self.observation) else "mask" if masks is not None else "planes"
        try:
            return GoalEncoding(kind, self.observation, self.n_goals, masks)
        except ValueError as exc:
            hint = (
                "use agent.goal_encoding=vector (or auto) with vector observations"
                if not is_image(self.observation)
                else f"the {self.config.goal_space} goal space has no masks for this observation: use planes"
            )
            raise ConfigError(f"agent.goal_encoding: {exc}", hint=hint) from None

    @staticmethod
    def trainer_class() -> type:
        from qagent.training.hdqn_loop import HDQNTrainer

        return HDQNTrainer

    @property
    def updates(self) -> int:
        return self.controller.updates + self.meta.updates

    def controller_obs(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The controller's inputs for a batch of observations and their goals."""
        return self.encoding(obs, goals)

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "meta": self.meta.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.meta.load_state_dict(state["meta"])


def _space_of(encoding: GoalEncoding) -> gym.spaces.Box:
    """The controller's observation space: bytes stay bytes (0..255), anything else is unbounded floats."""
    if encoding.dtype == np.uint8:
        return gym.spaces.Box(0, 255, encoding.shape, np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, encoding.shape, encoding.dtype.type)


class HierarchicalPolicy:
    """The acting half of :class:`HDQNAgent`: meta Q-values over goals, controller Q-values over actions."""

    def __init__(self, agent: HDQNAgent) -> None:
        self.agent = agent

    def meta_q_values(self, obs: np.ndarray) -> np.ndarray:
        """``float32[batch, n_goals]``."""
        return self.agent.meta.policy.q_values(obs)

    def controller_q_values(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``float32[batch, n_actions]`` for each observation pursuing its goal."""
        return self.agent.controller.policy.q_values(self.agent.controller_obs(obs, goals))

    def actor(self) -> HierarchicalActor:
        """An evaluation actor: greedy goals, goals kept until reached (see :class:`GoalKeeper`)."""
        a = self.agent
        return HierarchicalActor(
            self.meta_q_values, self.controller_q_values, a.goal_space, a.test, a.config.max_option_steps
        )

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[HierarchicalPolicy]:
        with self.agent.meta.policy.evaluation_mode(), self.agent.controller.policy.evaluation_mode():
            yield self


class HierarchicalActor:
    """Acts in a batch of envs with a goal per env, as a served session does.

    :param meta_q: ``obs_batch -> q_BG``.
    :param controller_q: ``(obs_batch, goals) -> q_BA``.
    :param goal_space: reads each env's goal input.
    """

    def __init__(
        self,
        meta_q: Callable[[np.ndarray], np.ndarray],
        controller_q: Callable[[np.ndarray, np.ndarray], np.ndarray],
        goal_space: GoalSpace,
        test: GoalTest,
        max_option_steps: int | None,
    ) -> None:
        self.meta_q = meta_q
        self.controller_q = controller_q
        self.goal_space = goal_space
        self.test = test
        self.max_option_steps = max_option_steps
        self.keepers: list[GoalKeeper] = []

    def reset(self, mask: np.ndarray) -> None:
        if len(self.keepers) != len(mask):
            self.keepers = [GoalKeeper(self.test, self.max_option_steps) for _ in mask]
        for i in np.flatnonzero(mask):
            self.keepers[i].reset()

    def goals(self, obs: np.ndarray, envs: list[gym.Env]) -> np.ndarray:
        """Each env's goal for this step (a new one where the last was reached)."""
        goals = np.zeros(len(obs), dtype=np.int64)
        for i, keeper in enumerate(self.keepers):
            x = self.goal_space.goal_input(envs[i], obs[i])
            goals[i] = keeper.step(x, lambda i=i: self.meta_q(obs[i : i + 1])[0])[0]
        return goals

    def __call__(self, obs: np.ndarray, envs: list[gym.Env]) -> np.ndarray:
        return self.controller_q(obs, self.goals(obs, envs)).argmax(axis=1)


class GoalStats:
    """Per-goal choices and outcomes of recent options: success rates and the per-goal epsilon_1."""

    def __init__(self, n_goals: int, window: int) -> None:
        self.outcomes = [deque(maxlen=window) for _ in range(n_goals)]
        self.chosen = np.zeros(n_goals, dtype=np.int64)

    def record(self, goal: int, reached: bool) -> None:
        self.outcomes[goal].append(bool(reached))

    def success_rate(self, goal: int) -> float | None:
        outcomes = self.outcomes[goal]
        return sum(outcomes) / len(outcomes) if outcomes else None

    def epsilon(self, goal: int, floor: float) -> float:
        """1 - the goal's recent success rate, at least ``floor``; 1 before its first attempt."""
        rate = self.success_rate(goal)
        return 1.0 if rate is None else max(floor, 1.0 - rate)

    def state_dict(self) -> dict[str, Any]:
        return {"outcomes": [list(o) for o in self.outcomes], "chosen": self.chosen.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for outcomes, saved in zip(self.outcomes, state["outcomes"], strict=True):
            outcomes.clear()
            outcomes.extend(bool(x) for x in saved)
        self.chosen[:] = state["chosen"]
