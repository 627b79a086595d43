"""Replay memory: a preallocated numpy ring buffer with uniform sampling.

Each slot holds ``(obs, action, reward, next_obs, terminated)``. ``next_obs`` is the true
next observation, also at the end of an episode (the collector never lets a reset
observation stand in for it), so truncated transitions bootstrap correctly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from qagent.errors import CheckpointError


@dataclass
class Batch:
    """A sampled batch as tensors, ready for the learner.

    :param discount: factor on the next state's value, ``gamma ** n`` or 0 at termination.
    :param weights: importance-sampling weights; None for uniform sampling (all ones).
    :param indices: buffer slots, for replay schemes that update priorities.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    discount: torch.Tensor
    weights: torch.Tensor | None
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` (views, no copies)."""
        s = slice(start, stop)
        weights = None if self.weights is None else self.weights[s]
        rows = (self.obs[s], self.action[s], self.reward[s], self.next_obs[s], self.discount[s])
        return Batch(*rows, weights, self.indices[s])


def observation_layout(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one stored observation."""
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), np.dtype(space.dtype)
    raise TypeError(f"unsupported observation space {space}")


class Replay(Protocol):
    """What the training loop needs of a replay memory."""

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:  # noqa: ANN001
        """Store one transition per env."""

    def sample_many(self, count: int, batch_size: int) -> Iterator[Batch]:
        """The batches of one training round."""

    def save(self, path: Path) -> None:
        """Write the contents and sampler state."""

    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote."""

    def __len__(self) -> int: ...


class ReplayBuffer:
    """Uniform replay over the last ``capacity`` transitions.

    :param capacity: number of transitions kept.
    :param observation_space: space of a single observation (sets shape and dtype).
    :param gamma: discount factor, applied as the per-sample ``discount``.
    :param seed: seed of the sampling generator (its state is part of :meth:`state_dict`).
    """

    def __init__(self, capacity: int, observation_space: gym.Space, gamma: float, seed: int = 0) -> None:
        self.capacity = int(capacity)
        self.gamma = float(gamma)
        shape, dtype = observation_layout(observation_space)
        self.obs = np.zeros((self.capacity, *shape), dtype=dtype)
        self.next_obs = np.zeros((self.capacity, *shape), dtype=dtype)
        self.action = np.zeros(self.capacity, dtype=np.int64)
        self.reward = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.bool_)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray | None = None,
    ) -> None:
        """Store one transition per env (each argument has a leading env axis).

        ``truncated`` marks episode ends that still bootstrap; this buffer needs only
        ``terminated``, since ``next_obs`` is always the true next observation.
        """
        n = len(action)
        if n == 1 or self.pos + n <= self.capacity:
            slots: slice | np.ndarray = slice(self.pos, self.pos + n)
        else:
            slots = (self.pos + np.arange(n)) % self.capacity
        self.obs[slots] = obs
        self.action[slots] = action
        self.reward[slots] = reward
        self.next_obs[slots] = next_obs
        self.terminated[slots] = terminated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_indices(self, batch_size: int) -> np.ndarray:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        return self.rng.integers(0, self.size, size=batch_size)

    def get_indices(self, idx: np.ndarray) -> Batch:
        """The transitions stored in slots ``idx``."""
        discount = np.where(self.terminated[idx], 0.0, self.gamma).astype(np.float32)
        return Batch(
            obs=torch.from_numpy(self.obs[idx]),
            action=torch.from_numpy(self.action[idx]),
            reward=torch.from_numpy(self.reward[idx]),
            next_obs=torch.from_numpy(self.next_obs[idx]),
            discount=torch.from_numpy(discount),
            weights=None,
            indices=idx,
        )

    def sample(self, batch_size: int) -> Batch:
        """Draw ``batch_size`` transitions uniformly, with replacement."""
        return next(self.sample_many(1, batch_size))

    def sample_many(self, count: int, batch_size: int) -> Iterator[Batch]:
        """``count`` batches for one round of gradient steps.

        Uniform sampling does not depend on what the learner does between batches, so the whole
        round is gathered at once: one fancy-index per array instead of one per batch. Replay
        schemes whose sampling follows the learner (priorities) yield batch by batch instead.
        """
        whole = self.get_indices(self.sample_indices(count * batch_size))
        for i in range(count):
            yield whole.slice(i * batch_size, (i + 1) * batch_size)

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: contents, write position, sampler state."""
        n = self.size
        return {
            "obs": self.obs[:n],
            "next_obs": self.next_obs[:n],
            "action": self.action[:n],
            "reward": self.reward[:n],
            "terminated": self.terminated[:n],
            "pos": self.pos,
            "capacity": self.capacity,
            "rng": self.rng.bit_generator.state,
        }

    def save(self, path: Path) -> None:
        """Write the buffer to ``path`` (a ``.npz`` file, no pickled objects), atomically."""
        state = self.state_dict()
        state["rng"] = json.dumps(state["rng"])  # big integers survive JSON, not numpy
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in state.items()})
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Restore contents and sampler state written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["capacity"]) != self.capacity:
                    raise CheckpointError(
                        f"replay buffer {path} holds capacity {int(data['capacity'])}, the run wants {self.capacity}",
                        hint="resume with the replay.capacity the run was started with",
                    )
                n = len(data["action"])
                for key in ("obs", "next_obs", "action", "reward", "terminated"):
                    getattr(self, key)[:n] = data[key]
                self.size = n
                self.pos = int(data["pos"])
                self.rng.bit_generator.state = json.loads(str(data["rng"]))
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
            raise CheckpointError(f"replay buffer {path} is unreadable: {exc}") from None
