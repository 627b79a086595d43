"""Building a run's parts from its config: env spaces, agent, exploration strategy."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from qagent.agents.exploration import ExplorationStrategy
from qagent.agents.prioritized import PrioritizedReplay
from qagent.agents.replay import Replay, ReplayBuffer, replay_bytes
from qagent.config import ReplayConfig, RunConfig
from qagent.envs.factory import frame_stack_of, make_env
from qagent.errors import ConfigError
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


def make_replay(
    replay: ReplayConfig,
    space: gym.Space,
    gamma: float,
    num_envs: int,
    seed: int,
    stack: int | None = None,
    section: str = "replay",
) -> Replay:
    """A replay memory as ``replay`` (a replay config section, named ``section`` in errors) says."""
    needed, memory = replay_bytes(replay.capacity, space, stack), physical_memory()
    if memory is not None and needed > memory:
        raise ConfigError(
            f"{section}.capacity={replay.capacity:,} needs {needed / 2**30:,.1f} GiB of memory, "
            f"more than this machine has ({memory / 2**30:,.1f} GiB)",
            hint=f"lower {section}.capacity (1,000,000 Atari transitions take about 7 GiB)",
        )
    try:
        storage = ReplayBuffer(replay.capacity, space, gamma, num_envs, stack, replay.n_step, seed=seed)
    except ValueError as exc:
        raise ConfigError(f"{section}.capacity: {exc}", hint=f"raise {section}.capacity") from None
    except MemoryError:
        raise ConfigError(
            f"{section}.capacity={replay.capacity:,} ({needed / 2**30:,.1f} GiB) could not be allocated",
            hint=f"lower {section}.capacity",
        ) from None
    if replay.prioritized:
        return PrioritizedReplay(storage, replay.alpha, replay.beta, replay.priority_eps, seed=seed + 1)
    return storage


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, where the OS says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def seed_streams(seed: int, n: int) -> list[int]:
    """``n`` independent seeds derived from the run's seed (below 2**30, as ALE wants int32)."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [int(c.generate_state(1)[0]) % 2**30 for c in children]
