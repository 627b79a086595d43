"""Building a run's parts from its config (env spaces, agent, exploration), and loading a saved agent.

:func:`load_agent` is the one way evaluation, export and resume turn a checkpoint back into an
agent, with the same clear errors for missing, corrupt or mismatched files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from qagent.agents.base import Agent
from qagent.agents.exploration import ExplorationStrategy
from qagent.config import RunConfig, resolve_config
from qagent.envs.factory import make_env
from qagent.errors import CheckpointError
from qagent.plugins.registries import AGENTS, EXPLORATIONS
from qagent.training.checkpoint import load_run_checkpoint, mismatch_reason
from qagent.training.runs import RunDir


def probe_spaces(config: RunConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of the run's env (makes and closes one copy)."""
    env = make_env(config.env, training=False)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def build_agent(config: RunConfig, observation_space: gym.Space, action_space: gym.Space, device: str = "cpu") -> Agent:
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


@dataclass
class LoadedAgent:
    """An agent rebuilt from a checkpoint, with what it was loaded from."""

    agent: Agent
    config: RunConfig
    checkpoint: dict[str, Any]
    path: Path
    run: RunDir | None

    @property
    def step(self) -> int:
        return int(self.checkpoint["step"])


def restore_agent(agent: Agent, checkpoint: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's agent state into ``agent``; a mismatch is one clear :class:`CheckpointError`."""
    try:
        agent.load_state_dict(checkpoint["agent"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit the network its config builds: {mismatch_reason(exc)}",
            hint="resume with the network and agent settings the run was started with; was it written by "
            "another qagent version, or with a plugin that is not loaded?",
        ) from None


def load_agent(target: str | Path, checkpoint: dict[str, Any] | None = None) -> LoadedAgent:
    """The agent saved in a run directory (its newest checkpoint) or a checkpoint file, on the CPU.

    The checkpoint carries its resolved config, so the env's spaces and the network are rebuilt
    exactly; plugins it names must be loaded already (the CLI asks the user first).

    :param checkpoint: the checkpoint ``target`` resolves to, if the caller loaded it already.
    """
    if checkpoint is None:
        run, path, checkpoint = load_run_checkpoint(target)
    else:
        run, path = None, Path(target)
    config = resolve_config(checkpoint["config"])
    observation_space, action_space = probe_spaces(config)
    agent = build_agent(config, observation_space, action_space)
    restore_agent(agent, checkpoint, path)
    return LoadedAgent(agent, config, checkpoint, path, run)
