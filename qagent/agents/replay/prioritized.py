"""Proportional prioritized replay (Schaul et al. 2016) on top of :class:`ReplayBuffer`.

Transition i is sampled with probability ``P(i) = p_i^alpha / sum_k p_k^alpha``, where
``p_i = |delta_i| + eps`` (or the learner's per-sample loss, for distributional agents), and
its update is weighted by ``w_i = (N P(i))^-beta / max_k w_k`` to undo the bias; beta anneals
to 1 over training. New transitions get the largest priority seen so far, so each is replayed
at least once soon.

A sum tree gives the proportional draws and a min tree the largest weight, both in
O(log N) per transition, vectorized over a batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from qagent.agents.replay.buffer import Batch, ReplayBuffer
from qagent.errors import CheckpointError


class SegmentTree:
    """A tree over ``capacity`` leaves, each node the sum (or min) of its children.

    Nodes have ``fanout`` children (32 by default): a 1M-leaf tree is 4 levels deep, so an
    update or a batch of draws costs a handful of vectorized numpy calls.

    :param capacity: number of leaves.
    :param op: ``np.add`` for sums, ``np.minimum`` for minima.
    :param neutral: the value of an empty leaf (0 for sums, inf for minima).
    """

    def __init__(self, capacity: int, op: np.ufunc, neutral: float, fanout: int = 32) -> None:
        self.capacity, self.op, self.neutral, self.fanout = capacity, op, neutral, fanout
        self.levels: list[np.ndarray] = []  # leaves first; each level padded to a multiple of fanout
        size = capacity
        while True:
            padded = -(-size // fanout) * fanout
            self.levels.append(np.full(padded, neutral, dtype=np.float64))
            if padded == fanout:
                break
            size = padded // fanout
        self.levels.append(np.full(1, neutral, dtype=np.float64))  # the root

    @property
    def root(self) -> float:
        return float(self.levels[-1][0])

    @property
    def leaves(self) -> np.ndarray:
        return self.levels[0][: self.capacity]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` and recompute their ancestors (last write wins)."""
        if len(indices) == 0:
            return
        nodes = np.asarray(indices, dtype=np.int64)
        self.levels[0][nodes] = values
        for child, parent in zip(self.levels[:-1], self.levels[1:], strict=True):
            nodes = nodes // self.fanout  # repeated parents just recompute the same value
            groups = child.reshape(-1, self.fanout)[nodes]
            parent[nodes] = self.op.reduce(groups, axis=1)

    def find_prefix(self, prefix: np.ndarray) -> np.ndarray:
        """For sum trees: the leaf where each cumulative sum ``prefix`` falls (vectorized descent)."""
        nodes = np.zeros(len(prefix), dtype=np.int64)
        prefix = np.array(prefix, dtype=np.float64)
        for level in reversed(self.levels[:-1]):
            children = level.reshape(-1, self.fanout)[nodes]
            cumulative = np.cumsum(children, axis=1)
            choice = np.minimum((cumulative <= prefix[:, None]).sum(axis=1), self.fanout - 1)
            prefix -= np.where(choice > 0, cumulative[np.arange(len(nodes)), choice - 1], 0.0)
            nodes = nodes * self.fanout + choice
        return np.minimum(nodes, self.capacity - 1)


class PrioritizedReplay:
    """Prioritized sampling over a :class:`ReplayBuffer`'s slots.

    :param storage: holds the transitions (any observations, stacks, n-step windows).
    :param alpha: priority exponent (0 is uniform sampling).
    :param beta: importance-sampling exponent at the start of training; annealed to 1.
    :param eps: added to every priority so none is zero.
    :param seed: seed of the sampling generator.
    """

    def __init__(
        self, storage: ReplayBuffer, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6, seed: int = 0
    ) -> None:
        self.storage = storage
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.sums = SegmentTree(storage.capacity, np.add, 0.0)
        self.mins = SegmentTree(storage.capacity, np.minimum, np.inf)
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.storage)

    def _set(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        scaled = np.power(priorities, self.alpha)
        self.sums.update(slots, scaled)
        self.mins.update(slots, np.where(priorities > 0, scaled, np.inf))

    def add(
        self, *transition: np.ndarray, envs: np.ndarray | None = None, continues: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        transition_slots, fresh_slots = self.storage.add(*transition, envs=envs, continues=continues)
        self._set(fresh_slots, np.zeros(len(fresh_slots)))  # no transition starts there yet
        self._set(transition_slots, np.full(len(transition_slots), self.max_priority))
        return transition_slots, fresh_slots

    def end_episodes(self, envs: np.ndarray) -> None:
        self.storage.end_episodes(envs)

    def beta_at(self, progress: float) -> float:
        """beta annealed linearly from its start value to 1 as training progresses."""
        return self.beta + (1.0 - self.beta) * min(max(progress, 0.0), 1.0)

    def sample_indices(self, count: int) -> np.ndarray:
        """``count`` usable slots drawn in proportion to their priority, with replacement."""
        if self.sums.root <= 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        out: list[np.ndarray] = []
        needed, attempts = count, 0
        while needed > 0:
            attempts += 1
            if attempts > 20 and not self.storage.usable(np.flatnonzero(self.storage.valid)).any():
                raise RuntimeError("no complete transition to sample yet")
            # stratified: one draw per equal segment of the total, as in Schaul et al.
            bounds = (np.arange(needed) + self.rng.random(needed)) * (self.sums.root / needed)
            slots = self.sums.find_prefix(bounds)
            slots = slots[self.storage.usable(slots)]
            out.append(slots)
            needed -= len(slots)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def weights(self, slots: np.ndarray, beta: float) -> np.ndarray:
        """Importance weights ``(N P(i))^-beta``, divided by the largest in the buffer."""
        total, n = self.sums.root, max(len(self.storage), 1)
        probabilities = self.sums.leaves[slots] / total
        smallest = self.mins.root / total
        return np.power(n * probabilities, -beta) / np.power(n * smallest, -beta)

    def sample_many(self, count: int, batch_size: int, progress: float = 0.0) -> Iterator[Batch]:
        """Batches drawn one at a time, each after the previous one's priorities were updated."""
        beta = self.beta_at(progress)
        for _ in range(count):
            slots = self.sample_indices(batch_size)
            batch = self.storage.get(slots)
            batch.weights = torch.from_numpy(self.weights(slots, beta).astype(np.float32))
            yield batch

    def update_priorities(self, indices: np.ndarray, priorities: torch.Tensor | np.ndarray) -> None:
        """New priorities (|TD errors| or per-sample losses) for the slots of a sampled batch."""
        values = priorities.detach().cpu().numpy() if isinstance(priorities, torch.Tensor) else np.asarray(priorities)
        values = np.abs(values.astype(np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(values.max()))
        self._set(np.asarray(indices), values)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        meta = {**self.storage.meta(), "max_priority": self.max_priority, "per_rng": self.rng.bit_generator.state}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f, meta=np.array(json.dumps(meta)), priorities=self.sums.leaves, **self.storage.arrays()
            )
        tmp.replace(path)

    def load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                self.storage.restore(meta, data)
                if "priorities" not in data:
                    raise CheckpointError(
                        f"replay buffer {path} holds no priorities", hint="resume with replay.prioritized=false"
                    )
                scaled = data["priorities"]
                self.sums.update(np.arange(len(scaled)), scaled)
                self.mins.update(np.arange(len(scaled)), np.where(scaled > 0, scaled, np.inf))
                self.max_priority = float(meta["max_priority"])
                self.rng.bit_generator.state = meta["per_rng"]
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"replay buffer {path} is unreadable: {exc}") from None
