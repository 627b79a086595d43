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
  option ends when its goal is reached (terminal for the controller), when a life is lost
  (a failure: terminal, no intrinsic reward), when the episode ends, or after
  ``max_option_steps`` (a failure that bars the goal from the next choices, see
  :class:`~qagent.serve.goals.FailedGoals`).

Each level is a :class:`DQNAgent` with its own config (double, dueling, noisy, optimizer,
schedule), and each memory is a replay config (prioritized, n-step), so the Rainbow
components apply to either level. Like every agent it trains in the one loop
(:mod:`qagent.training.loop`): its actor (:mod:`qagent.agents.hdqn.actor`) runs the options
and fills both memories, and :meth:`HDQNAgent.learn` trains both levels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from qagent.agents.base import Agent, Exportable, Span
from qagent.agents.dqn import DQNAgent
from qagent.agents.exploration import ExplorationStrategy
from qagent.agents.hdqn.actor import HDQNExploration, HierarchicalActor
from qagent.agents.hdqn.config import HDQNConfig
from qagent.agents.hdqn.memory import GoalReplay, HierarchicalMemory
from qagent.agents.hdqn.policy import HierarchicalModule, HierarchicalPolicy
from qagent.agents.replay import make_replay
from qagent.config import (
    NetworkConfig,
    RunConfig,
)
from qagent.envs.factory import frame_stack_of
from qagent.envs.goals import GoalSpace
from qagent.envs.spaces import describe_observation_space
from qagent.errors import ConfigError
from qagent.plugins.registries import GOAL_SPACES, register_agent
from qagent.serve import metadata as md
from qagent.serve.goals import GoalEncoding, is_image


@register_agent("hdqn")
class HDQNAgent(Agent):
    """Hierarchical DQN (Kulkarni et al. 2016): a meta-controller over goals, a controller over actions."""

    Config = HDQNConfig
    # Its actor reads goal inputs from each env, so ALE games keep gymnasium's vector env.
    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "replay": {"capacity": 100_000},
        "env": {"vectorization": "gymnasium"},
    }

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
        self.policy = HierarchicalPolicy(
            self.meta.policy,
            self.controller.policy,
            self.encoding,
            self.goal_space,
            config.max_option_steps,
            config.retry_failed_after,
        )

    def _goal_encoding(self, requested: str) -> GoalEncoding:
        masks = self.goal_space.masks()
        kind = requested
        if requested == "auto":
            kind = "vector" if not is_image(self.observation) else "mask" if masks is not None else "planes"
        try:
            return GoalEncoding(kind, self.observation, self.n_goals, masks, self.goal_space.channels())
        except ValueError as exc:
            hint = (
                "use agent.goal_encoding=vector (or auto) with vector observations"
                if not is_image(self.observation)
                else f"the {self.config.goal_space} goal space cannot place its goals in this observation: use planes"
            )
            raise ConfigError(f"agent.goal_encoding: {exc}", hint=hint) from None

    @property
    def updates(self) -> int:
        return self.controller.updates + self.meta.updates

    @property
    def train_every(self) -> int:
        return min(self.config.controller.train_freq, self.config.meta.train_freq)

    def controller_obs(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The controller's inputs for a batch of observations and their goals."""
        return self.encoding(obs, goals)

    def make_memory(self, config: RunConfig, envs: gym.vector.VectorEnv, seed: int) -> HierarchicalMemory:
        """D1 as the run's ``replay`` section says (frames stored once, goals beside them), D2 as
        ``agent.meta_replay`` says (whole observations: an option's start and end are not consecutive frames)."""
        c, n = self.config, envs.num_envs
        frames = make_replay(config.replay, self.observation_space, c.controller.gamma, n, seed, frame_stack_of(envs))
        d2 = make_replay(c.meta_replay, self.observation_space, c.meta.gamma, n, seed + 7, section="agent.meta_replay")
        return HierarchicalMemory(GoalReplay(frames, self.encoding), d2)

    def actor(
        self,
        exploration: ExplorationStrategy,
        envs: gym.vector.VectorEnv,
        memory: HierarchicalMemory,
        seed: int,
        policy: HierarchicalPolicy | None = None,
    ) -> HierarchicalActor:
        """An actor with h-DQN's own exploration (the run's strategy does not apply, see ``check``, but
        tells the run's length, for schedules given as fractions)."""
        total_steps = getattr(exploration, "total_steps", None)
        own = HDQNExploration(self.config, self.n_goals, self.n_actions, seed, total_steps)
        sub_envs = getattr(envs, "envs", None)
        if sub_envs is None:
            raise ConfigError("h-DQN reads goal inputs from each env", hint="use a SyncVectorEnv")
        return HierarchicalActor(policy or self.policy, own, list(sub_envs), memory, self.config, self.observation)

    def learn(self, memory: HierarchicalMemory, span: Span) -> dict[str, float]:
        """Both levels: the controller from D1, the meta-controller from D2 once pre-training is over."""
        c = self.config
        controller = self.controller.learn_level(memory.controller, span, min_size=c.controller.batch_size)
        meta = self.meta.learn_level(memory.meta, span, min_size=c.meta.batch_size, active=span.end > c.pretrain_steps)
        return {
            **{f"train/{k}": v for k, v in controller.items()},
            **{f"train/meta_{k}": v for k, v in meta.items()},
        }

    def exportable(self) -> Exportable:
        """Both networks in one graph, with the goal test and encoding in the metadata."""
        rng = np.random.default_rng(0)

        def make_inputs(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return obs, self.controller_obs(obs, rng.integers(0, self.n_goals, size=len(obs)))

        encoding = self.encoding
        metadata = {
            "hierarchy": {
                "goal_space": self.goal_description,
                "goal_encoding": encoding.describe(),
                "max_option_steps": self.config.max_option_steps,
                "retry_failed_after": self.config.retry_failed_after,
            },
            "inputs": {"controller_obs": {"dtype": encoding.dtype.name, "shape": [-1, *encoding.shape]}},
            "outputs": {"meta_q_values": {"dtype": "float32", "shape": [-1, self.n_goals]}},
        }
        module = HierarchicalModule(self.meta.q_net, self.controller.q_net).eval()
        return Exportable(
            module, make_inputs, [md.INPUT_NAME, "controller_obs"], [*md.OUTPUT_NAMES, "meta_q_values"], metadata
        )

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
