"""Making a replay memory from a replay config section: sized, checked against RAM, prioritized or not."""

from __future__ import annotations

import os

import gymnasium as gym

from qagent.agents.replay.buffer import Replay, ReplayBuffer, replay_bytes
from qagent.agents.replay.prioritized import PrioritizedReplay
from qagent.config import ReplayConfig
from qagent.errors import ConfigError


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
