"""Building a run's parts from its config: env spaces, agent, exploration strategy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from qagent.agents.exploration import ExplorationStrategy
from qagent.agents.replay.buffer import Replay
from qagent.agents.replay.factory import make_replay
from qagent.config import RunConfig
from qagent.envs.factory import frame_stack_of, make_env
from qagent.plugins.registries import AGENTS, EXPLORATIONS


def probe_spaces(config: RunConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of the run's env (makes and closes one copy)."""
    env = make_env(config.env, training=False)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def build_agent(config: RunConfig, observation_space: gym.Space, action_space: gym.Space, device: str = "cpu"):  # noqa: ANN201
    """The registered agent named by ``config.agent.name``."""
    agent_cls = AGENTS.get(config.agent.name)
    return agent_cls(config.agent, observation_space, action_space, config.network, device=device)


def build_exploration(config: RunConfig, n_actions: int, seed: int) -> ExplorationStrategy:
    """The registered strategy named by ``config.exploration.name``."""
    strategy_cls = EXPLORATIONS.get(config.exploration.name)
    return strategy_cls(config.exploration, n_actions, config.train.total_steps, seed=seed)


def build_replay(config: RunConfig, envs: gym.vector.VectorEnv, seed: int) -> Replay:
    """The run's replay memory: observations stored once (frames, when they are stacked),
    n-step returns, and proportional priorities when asked for."""
    sub_envs = getattr(envs, "envs", None)
    stack = frame_stack_of(sub_envs[0]) if sub_envs is not None else None
    return make_replay(
        config.replay, envs.single_observation_space, config.agent.gamma, envs.num_envs, seed, stack, "replay"
    )


def seed_streams(seed: int, n: int) -> list[int]:
    """``n`` independent seeds derived from the run's seed (below 2**30, as ALE wants int32)."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [int(c.generate_state(1)[0]) % 2**30 for c in children]
