"""Memory-lean replay for stacked frames: each frame is stored once.

Atari observations are stacks of the last k frames, so consecutive observations share k-1 of
them. Storing stacks (twice, for obs and next_obs) costs 2k times the frames; this buffer keeps
each 84x84 frame once and rebuilds stacks when sampling, as Dopamine and OpenAI Baselines do.
A 1M-transition buffer takes about 7.1 GB instead of 56 GB.

Each env writes its own stream of slots. A slot holds one frame, its position in the episode
(frames since the episode's first, capped at k-1) and, when a transition starts from that
frame, the action, reward and termination. An episode's frames are stored in order, its final
frame included (the true next observation of the last transition), then the next episode's
first frame. A stack reaches back at most k-1 slots and never past its episode's first frame,
which it repeats instead, exactly as gymnasium's ``FrameStackObservation`` pads a new episode.
So no stack mixes frames of two episodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from qagent.agents.replay import Batch
from qagent.errors import CheckpointError

STATE_ARRAYS = ("frames", "episode_pos", "action", "reward", "terminated", "valid", "transition_id")


class FrameReplayBuffer:
    """Uniform replay over stacked-frame observations, storing each frame once.

    :param capacity: slots in total (about one per transition), split evenly between envs.
    :param observation_space: a ``Box`` of shape ``(k, H, W)`` (k stacked frames).
    :param gamma: discount factor, applied as the per-sample ``discount``.
    :param num_envs: envs writing to the buffer (one stream each).
    :param seed: seed of the sampling generator.
    """

    def __init__(
        self, capacity: int, observation_space: gym.Space, gamma: float, num_envs: int = 1, seed: int = 0
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"frame replay needs (stack, height, width) observations, not {observation_space}")
        self.stack = int(observation_space.shape[0])
        self.frame_shape = tuple(observation_space.shape[1:])
        self.gamma = float(gamma)
        self.num_envs = num_envs
        self.per_env = int(capacity) // num_envs
        if self.per_env <= self.stack:
            raise ValueError(f"replay capacity {capacity} is too small for {num_envs} envs of {self.stack} frames")
        self.capacity = self.per_env * num_envs
        slots = self.capacity
        self.frames = np.zeros((slots, *self.frame_shape), dtype=observation_space.dtype)
        self.episode_pos = np.zeros(slots, dtype=np.uint8)
        self.action = np.zeros(slots, dtype=np.int32)
        self.reward = np.zeros(slots, dtype=np.float32)
        self.terminated = np.zeros(slots, dtype=np.bool_)
        self.valid = np.zeros(slots, dtype=np.bool_)  # a transition starts at this slot
        self.transition_id = np.full(slots, -1, dtype=np.int64)  # order of arrival, for tests and debugging
        self.head = np.zeros(num_envs, dtype=np.int64)  # next local slot to write, per stream
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per stream
        self.in_episode = np.zeros(num_envs, dtype=np.bool_)  # the stream's newest frame continues an episode
        self.transitions = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Transitions that can be sampled now (about the slots filled)."""
        return int(self.valid.sum())

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in STATE_ARRAYS)

    # ------------------------------------------------------------------ writing

    def _write_frame(self, env: int, frame: np.ndarray, pos: int) -> int:
        slot = env * self.per_env + int(self.head[env])
        self.frames[slot] = frame
        self.episode_pos[slot] = pos
        self.valid[slot] = False
        self.transition_id[slot] = -1
        self.head[env] = (self.head[env] + 1) % self.per_env
        self.written[env] += 1
        return slot

    def _newest(self, env: int) -> int:
        return env * self.per_env + int((self.head[env] - 1) % self.per_env)

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Store one transition per env; only the newest frame of each stack is new."""
        for i in range(len(action)):
            if not self.in_episode[i]:
                self._write_frame(i, obs[i][-1], 0)  # the episode's first frame
                self.in_episode[i] = True
            slot = self._newest(i)
            self.action[slot] = action[i]
            self.reward[slot] = reward[i]
            self.terminated[slot] = terminated[i]
            self.valid[slot] = True
            self.transition_id[slot] = self.transitions
            self.transitions += 1
            pos = min(int(self.episode_pos[slot]) + 1, self.stack - 1)
            self._write_frame(i, next_obs[i][-1], pos)  # the true next frame, also at an episode's end
            if terminated[i] or truncated[i]:
                self.in_episode[i] = False

    # ------------------------------------------------------------------ reading

    def _usable(self, slots: np.ndarray) -> np.ndarray:
        """Slots whose transition is complete and whose stack is still in the buffer."""
        env, local = np.divmod(slots, self.per_env)
        age = (self.head[env] - 1 - local) % self.per_env  # 0 for the newest slot of its stream
        filled = np.minimum(self.written[env], self.per_env)
        return self.valid[slots] & (age >= 1) & (age + self.episode_pos[slots] <= filled - 1)

    def sample_indices(self, count: int) -> np.ndarray:
        """``count`` usable slots, uniformly at random, with replacement."""
        if not self.valid.any():
            raise RuntimeError("cannot sample from an empty replay buffer")
        filled = np.minimum(self.written, self.per_env)
        out: list[np.ndarray] = []
        needed, attempts = count, 0
        while needed > 0:
            attempts += 1
            if attempts > 20 and not self._usable(np.flatnonzero(self.valid)).any():
                raise RuntimeError("no complete transition to sample yet")
            env = self.rng.choice(self.num_envs, size=needed * 2, p=filled / filled.sum())
            local = (self.rng.random(needed * 2) * filled[env]).astype(np.int64)
            slots = env * self.per_env + local
            slots = slots[self._usable(slots)][:needed]
            out.append(slots)
            needed -= len(slots)
        return np.concatenate(out)

    def _stacks(self, slots: np.ndarray) -> np.ndarray:
        """The k-frame observation ending at each slot, padded with its episode's first frame."""
        env, local = np.divmod(slots, self.per_env)
        back = np.maximum(np.arange(1 - self.stack, 1)[None, :], -self.episode_pos[slots].astype(np.int64)[:, None])
        rows = env[:, None] * self.per_env + (local[:, None] + back) % self.per_env
        return self.frames[rows]

    def _next(self, slots: np.ndarray) -> np.ndarray:
        env, local = np.divmod(slots, self.per_env)
        return env * self.per_env + (local + 1) % self.per_env

    def get(self, slots: np.ndarray) -> Batch:
        """The transitions starting at ``slots``, as a batch."""
        discount = np.where(self.terminated[slots], 0.0, self.gamma).astype(np.float32)
        return Batch(
            obs=torch.from_numpy(self._stacks(slots)),
            action=torch.from_numpy(self.action[slots].astype(np.int64)),
            reward=torch.from_numpy(self.reward[slots]),
            next_obs=torch.from_numpy(self._stacks(self._next(slots))),
            discount=torch.from_numpy(discount),
            weights=None,
            indices=slots,
        )

    def sample(self, batch_size: int) -> Batch:
        return self.get(self.sample_indices(batch_size))

    def sample_many(self, count: int, batch_size: int) -> Iterator[Batch]:
        """``count`` batches for one round of gradient steps, gathered at once."""
        whole = self.get(self.sample_indices(count * batch_size))
        for i in range(count):
            yield whole.slice(i * batch_size, (i + 1) * batch_size)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the buffer (compressed ``.npz``, no pickled objects), atomically."""
        meta = {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "transitions": self.transitions,
            "rng": self.rng.bit_generator.state,
        }
        arrays = {name: getattr(self, name) for name in (*STATE_ARRAYS, "head", "written", "in_episode")}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if (meta["capacity"], meta["num_envs"]) != (self.capacity, self.num_envs):
                    raise CheckpointError(
                        f"replay buffer {path} holds {meta['capacity']} slots for {meta['num_envs']} envs; "
                        f"the run wants {self.capacity} for {self.num_envs}",
                        hint="resume with the replay.capacity and env.num_envs the run was started with",
                    )
                for name in (*STATE_ARRAYS, "head", "written", "in_episode"):
                    getattr(self, name)[...] = data[name]
                self.transitions = int(meta["transitions"])
                self.rng.bit_generator.state = meta["rng"]
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
            raise CheckpointError(f"replay buffer {path} is unreadable: {exc}") from None
