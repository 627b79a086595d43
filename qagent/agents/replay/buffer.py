"""Replay memory: each observation stored once, in one stream per env; n-step returns on sampling.

Consecutive transitions share observations (``next_obs`` of one is ``obs`` of the next), and
with stacked frames (Atari) consecutive observations share all but one frame. So each env
writes a stream of slots, one per observation or frame, in order: an episode's observations,
its final one included (the true next observation of its last transition, so truncated
episodes bootstrap correctly), then the next episode's first. A slot from which a transition
starts also holds its action, reward and whether it terminated or was truncated.

With stacked frames (``stack=k``), a slot holds one frame and its position in the episode;
an observation is rebuilt from the last k frames, never reaching past its episode's first
frame, which it repeats instead, exactly as gymnasium's ``FrameStackObservation`` pads. A
1M-transition Atari buffer takes 7.1 GB instead of 56 GB for whole stacks.

With ``n_step > 1``, a sampled transition's return sums up to n discounted rewards, the window
cut where the episode terminates (no bootstrap) or is truncated (bootstrap from the true final
observation); transitions whose window reaches past the newest data wait until it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch

from qagent.errors import CheckpointError

STATE_ARRAYS = ("frames", "episode_pos", "action", "reward", "terminated", "truncated", "valid", "transition_id")
STREAM_ARRAYS = ("head", "written", "in_episode")


@dataclass
class Batch:
    """A sampled batch as tensors, ready for the learner.

    :param discount: factor on the next state's value: ``gamma ** n`` for an n-step
        transition, 0 when the episode terminated inside it.
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

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (the learner's; a no-op on the CPU)."""
        if device.type == "cpu":
            return self
        weights = None if self.weights is None else self.weights.to(device, non_blocking=True)
        rows = (self.obs, self.action, self.reward, self.next_obs, self.discount)
        return Batch(*(row.to(device, non_blocking=True) for row in rows), weights, self.indices)

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` (views, no copies)."""
        s = slice(start, stop)
        weights = None if self.weights is None else self.weights[s]
        rows = (self.obs[s], self.action[s], self.reward[s], self.next_obs[s], self.discount[s])
        return Batch(*rows, weights, self.indices[s])


class Replay(Protocol):
    """What the training loop needs of a replay memory."""

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        envs: np.ndarray | None = None,
        continues: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store one transition per env; returns the slots of the new transitions and of fresh frames."""

    def sample_many(self, count: int, batch_size: int, progress: float = 0.0) -> Iterator[Batch]:
        """The batches of one training round; ``progress`` is the fraction of training done."""

    def update_priorities(self, indices: np.ndarray, priorities: torch.Tensor | np.ndarray) -> None:
        """New priorities for sampled transitions (ignored by uniform replay)."""

    def save(self, path: Path) -> None:
        """Write the contents and sampler state."""

    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote."""

    def __len__(self) -> int: ...


def observation_layout(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one stored observation."""
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), np.dtype(space.dtype)
    raise TypeError(f"unsupported observation space {space}")


# Bytes per slot beside its frame: episode position, action, reward, two flags, valid, transition id.
SLOT_OVERHEAD_BYTES = 1 + 4 + 4 + 1 + 1 + 1 + 8


def replay_bytes(capacity: int, observation_space: gym.Space, stack: int | None = None) -> int:
    """Memory a :class:`ReplayBuffer` of ``capacity`` slots allocates (before priorities)."""
    shape, dtype = observation_layout(observation_space)
    frame_shape = shape[1:] if stack is not None else shape
    return int(capacity) * (int(np.prod(frame_shape, dtype=np.int64)) * dtype.itemsize + SLOT_OVERHEAD_BYTES)


class ReplayBuffer:
    """Uniform replay storing each observation (or frame) once.

    :param capacity: slots in total (about one per transition), split evenly between envs.
    :param observation_space: space of one observation.
    :param gamma: discount factor.
    :param num_envs: envs writing to the buffer (one stream each).
    :param stack: frames per observation when observations stack frames along their first
        axis (store each frame once); None stores whole observations.
    :param n_step: transitions per sampled return (1 for one-step targets).
    :param seed: seed of the sampling generator (its state is saved with the buffer).
    """

    def __init__(
        self,
        capacity: int,
        observation_space: gym.Space,
        gamma: float,
        num_envs: int = 1,
        stack: int | None = None,
        n_step: int = 1,
        seed: int = 0,
    ) -> None:
        shape, dtype = observation_layout(observation_space)
        if stack is not None and (len(shape) < 2 or shape[0] != stack):
            raise ValueError(f"observations of shape {shape} do not stack {stack} frames along their first axis")
        self.stack = stack or 1
        self.stacked = stack is not None
        self.frame_shape = shape[1:] if self.stacked else shape
        self.gamma = float(gamma)
        self.n_step = int(n_step)
        self.num_envs = num_envs
        self.per_env = int(capacity) // num_envs
        if self.per_env <= self.stack + self.n_step:
            raise ValueError(f"replay capacity {capacity} is too small for {num_envs} envs")
        self.capacity = self.per_env * num_envs
        slots = self.capacity
        self.frames = np.zeros((slots, *self.frame_shape), dtype=dtype)
        self.episode_pos = np.zeros(slots, dtype=np.uint8)  # frames since the episode's first, capped at stack-1
        self.action = np.zeros(slots, dtype=np.int32)
        self.reward = np.zeros(slots, dtype=np.float32)
        self.terminated = np.zeros(slots, dtype=np.bool_)
        self.truncated = np.zeros(slots, dtype=np.bool_)
        self.valid = np.zeros(slots, dtype=np.bool_)  # a transition starts at this slot
        self.transition_id = np.full(slots, -1, dtype=np.int64)  # order of arrival, for tests and debugging
        self.head = np.zeros(num_envs, dtype=np.int64)  # next local slot to write, per stream
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per stream
        self.in_episode = np.zeros(num_envs, dtype=np.bool_)  # the stream's newest slot continues an episode
        self.transitions = 0  # ever added
        self.count = 0  # stored now (valid slots)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Transitions stored."""
        return self.count

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in STATE_ARRAYS)

    # ------------------------------------------------------------------ writing

    def _write(self, env: int, observation: np.ndarray, pos: int) -> int:
        slot = env * self.per_env + int(self.head[env])
        self.frames[slot] = observation[-1] if self.stacked else observation
        self.episode_pos[slot] = pos
        self.count -= int(self.valid[slot])  # the transition that started here is overwritten
        self.valid[slot] = False
        self.transition_id[slot] = -1
        self.head[env] = (self.head[env] + 1) % self.per_env
        self.written[env] += 1
        return slot

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        envs: np.ndarray | None = None,
        continues: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store one transition per env (leading env axis on every argument).

        :param envs: the streams the rows belong to, when only some envs add a transition
            (h-DQN's meta-controller, whose options end at different times); default all, in order.
        :param continues: per row, whether the stream's observations go on after a transition that
            terminated or was truncated (h-DQN's controller: an option ends, the game does not), so
            the next transition starts from this one's next observation and frame stacks reach
            back across it; default: an ending transition ends its stream's episode.
        :returns: the slots now holding the new transitions, and the slots of the fresh
            observations written after them (no transition starts there yet).
        """
        n = len(action)
        transition_slots = np.empty(n, dtype=np.int64)
        fresh_slots = np.empty(n, dtype=np.int64)
        for row in range(n):
            i = row if envs is None else int(envs[row])
            if not self.in_episode[i]:
                self._write(i, obs[row], 0)  # the episode's first observation
                self.in_episode[i] = True
            slot = i * self.per_env + int((self.head[i] - 1) % self.per_env)
            self.action[slot] = action[row]
            self.reward[slot] = reward[row]
            self.terminated[slot] = terminated[row]
            self.truncated[slot] = truncated[row]
            self.valid[slot] = True
            self.count += 1
            self.transition_id[slot] = self.transitions
            self.transitions += 1
            pos = min(int(self.episode_pos[slot]) + 1, self.stack - 1)
            transition_slots[row] = slot
            fresh_slots[row] = self._write(i, next_obs[row], pos)  # the true next observation, also at an episode's end
            if (terminated[row] or truncated[row]) and not (continues is not None and continues[row]):
                self.in_episode[i] = False
        return transition_slots, fresh_slots

    def end_episodes(self, envs: np.ndarray) -> None:
        """The episodes in progress in streams ``envs`` stop here, cut off (truncated, so targets bootstrap).

        For streams whose writer was replaced (a restarted actor, a resumed run's new actors):
        the next transition then starts a new episode instead of continuing the old one.
        """
        for i in np.asarray(envs, dtype=np.int64):
            if self.in_episode[i]:
                last = i * self.per_env + int((self.head[i] - 2) % self.per_env)  # before the fresh observation
                self.truncated[last] = True
                self.in_episode[i] = False

    # ------------------------------------------------------------------ reading

    def _age(self, slots: np.ndarray) -> np.ndarray:
        """0 for each stream's newest slot, 1 for the one before, ..."""
        env, local = np.divmod(slots, self.per_env)
        return (self.head[env] - 1 - local) % self.per_env

    def _next(self, slots: np.ndarray) -> np.ndarray:
        env, local = np.divmod(slots, self.per_env)
        return env * self.per_env + (local + 1) % self.per_env

    def _window(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """n-step windows from ``slots``: ``(last slot, return, discount, complete)``."""
        ended = self.terminated | self.truncated
        last = slots.copy()
        returns = self.reward[slots].astype(np.float64)
        discount = np.where(self.terminated[slots], 0.0, self.gamma)
        open_ = ~ended[slots]
        complete = np.ones(len(slots), dtype=bool)
        for k in range(1, self.n_step):
            following = self._next(last)
            available = self.valid[following] & (self._age(following) >= 1)
            step = open_ & available
            complete &= ~(open_ & ~available)  # the episode goes on, but its next transition is not here yet
            returns += np.where(step, self.gamma**k * self.reward[following], 0.0)
            discount = np.where(step, np.where(self.terminated[following], 0.0, self.gamma ** (k + 1)), discount)
            last = np.where(step, following, last)
            open_ = step & ~ended[following]
        return last, returns, discount, complete

    def usable(self, slots: np.ndarray) -> np.ndarray:
        """Slots whose transition can be sampled: complete window, observation still in the buffer."""
        env = slots // self.per_env
        filled = np.minimum(self.written[env], self.per_env)
        age = self._age(slots)
        ok = self.valid[slots] & (age >= 1) & (age + self.episode_pos[slots] <= filled - 1)
        if self.n_step > 1 and ok.any():
            ok[ok] = self._window(slots[ok])[3]
        return ok

    def sample_indices(self, count: int) -> np.ndarray:
        """``count`` usable slots, uniformly at random, with replacement."""
        if not self.valid.any():
            raise RuntimeError("cannot sample from an empty replay buffer")
        filled = np.minimum(self.written, self.per_env)
        out: list[np.ndarray] = []
        needed, attempts = count, 0
        while needed > 0:
            attempts += 1
            if attempts > 20 and not self.usable(np.flatnonzero(self.valid)).any():
                raise RuntimeError("no complete transition to sample yet")
            env = self.rng.choice(self.num_envs, size=needed * 2, p=filled / filled.sum())
            local = (self.rng.random(needed * 2) * filled[env]).astype(np.int64)
            slots = env * self.per_env + local
            slots = slots[self.usable(slots)][:needed]
            out.append(slots)
            needed -= len(slots)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def observations(self, slots: np.ndarray) -> np.ndarray:
        """The observation at each slot (with stacking: the last k frames, padded with the episode's first)."""
        if not self.stacked:
            return self.frames[slots]
        env, local = np.divmod(slots, self.per_env)
        back = np.maximum(np.arange(1 - self.stack, 1)[None, :], -self.episode_pos[slots].astype(np.int64)[:, None])
        return self.frames[env[:, None] * self.per_env + (local[:, None] + back) % self.per_env]

    def get(self, slots: np.ndarray) -> Batch:
        """The (n-step) transitions starting at ``slots``, as a batch."""
        last, returns, discount, _ = self._window(slots) if self.n_step > 1 else (slots, self.reward[slots], None, None)
        if discount is None:
            discount = np.where(self.terminated[slots], 0.0, self.gamma)
        return Batch(
            obs=torch.from_numpy(self.observations(slots)),
            action=torch.from_numpy(self.action[slots].astype(np.int64)),
            reward=torch.from_numpy(np.asarray(returns, dtype=np.float32)),
            next_obs=torch.from_numpy(self.observations(self._next(last))),
            discount=torch.from_numpy(np.asarray(discount, dtype=np.float32)),
            weights=None,
            indices=slots,
        )

    def sample(self, batch_size: int) -> Batch:
        return self.get(self.sample_indices(batch_size))

    def sample_many(self, count: int, batch_size: int, progress: float = 0.0) -> Iterator[Batch]:
        """``count`` batches for one round of gradient steps, gathered at once.

        Uniform sampling does not depend on what the learner does between batches, so the
        round is gathered with one fancy-index per array instead of one per batch.
        """
        if count <= 0:
            return
        whole = self.get(self.sample_indices(count * batch_size))
        for i in range(count):
            yield whole.slice(i * batch_size, (i + 1) * batch_size)

    def update_priorities(self, indices: np.ndarray, priorities: torch.Tensor | np.ndarray) -> None:
        """Uniform replay has no priorities."""

    # ------------------------------------------------------------------ persistence

    def meta(self) -> dict:
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "stack": self.stack,
            "transitions": self.transitions,
            "rng": self.rng.bit_generator.state,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (*STATE_ARRAYS, *STREAM_ARRAYS)}

    def save(self, path: Path) -> None:
        """Write the buffer (compressed ``.npz``, no pickled objects), atomically."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(self.meta())), **self.arrays())
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote."""
        try:
            with np.load(path, allow_pickle=False) as data:
                self.restore(json.loads(str(data["meta"])), data)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
            raise CheckpointError(f"replay buffer {path} is unreadable: {exc}") from None

    def restore(self, meta: dict, data: dict) -> None:
        if (meta["capacity"], meta["num_envs"]) != (self.capacity, self.num_envs):
            raise CheckpointError(
                f"the saved replay buffer holds {meta['capacity']} slots for {meta['num_envs']} envs; "
                f"the run wants {self.capacity} for {self.num_envs}",
                hint="resume with the replay.capacity and env.num_envs the run was started with",
            )
        for name in (*STATE_ARRAYS, *STREAM_ARRAYS):
            getattr(self, name)[...] = data[name]
        self.transitions = int(meta["transitions"])
        self.count = int(self.valid.sum())
        self.rng.bit_generator.state = meta["rng"]
