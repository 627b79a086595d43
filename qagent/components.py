"""Building a run's parts from its config: env spaces, agent, exploration strategy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from qagent.agents.exploration import ExplorationStrategy
from qagent.config import RunConfig
from qagent.envs.factory import make_env
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


def seed_streams(seed: int, n: int) -> list[int]:
    """``n`` independent seeds derived from the run's seed (below 2**30, as ALE wants int32)."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [int(c.generate_state(1)[0]) % 2**30 for c in children]
