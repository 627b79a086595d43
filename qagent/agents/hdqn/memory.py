"""h-DQN's two memories: D1 (the controller's steps, goals beside frames) and D2 (the options)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from qagent.agents.replay import Replay
from qagent.agents.replay.buffer import Batch
from qagent.errors import CheckpointError
from qagent.serve.goals import GoalEncoding


class GoalReplay:
    """D1: each observation stored once, as a flat agent's replay stores it, with its goal beside it.

    The controller's input (the observation with its goal appended or drawn in, see
    :class:`GoalEncoding`) is built when a batch is sampled, so a transition costs what a flat
    DQN's does plus two bytes, and stacked frames are stored once. An option that ends inside a
    game ends its transition (terminal or truncated for the controller) but not the stream
    (``continues``), so the next option's frame stacks reach back as the controller saw them.

    :param replay: the memory of raw observations (uniform or prioritized, n-step or not).
    :param encoding: how the controller sees an observation with its goal.
    """

    def __init__(self, replay: Replay, encoding: GoalEncoding) -> None:
        self.replay = replay
        self.encoding = encoding
        self.storage = getattr(replay, "storage", replay)
        self.goal = np.zeros(self.storage.capacity, dtype=np.int16)  # the goal of the transition at each slot

    def __len__(self) -> int:
        return len(self.replay)

    @property
    def nbytes(self) -> int:
        return self.storage.nbytes + self.goal.nbytes

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        envs: np.ndarray | None = None,
        *,
        goals: np.ndarray,
        continues: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store ``((obs, goal), action, r_int, (next_obs, goal))`` per row; ``continues``: the game goes on."""
        slots, fresh = self.replay.add(
            obs, action, reward, next_obs, terminated, truncated, envs=envs, continues=continues
        )
        self.goal[slots] = goals
        return slots, fresh

    def end_episodes(self, envs: np.ndarray) -> None:
        self.replay.end_episodes(envs)

    def inputs(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The controller's inputs for observations of the transitions at ``slots`` (their goals drawn in)."""
        return self.encoding(obs, self.goal[slots])

    def encode(self, batch: Batch) -> Batch:
        """A batch of raw observations as the controller's inputs (an option's goal holds to its end)."""
        batch.obs = torch.from_numpy(self.inputs(batch.obs.numpy(), batch.indices))
        batch.next_obs = torch.from_numpy(self.inputs(batch.next_obs.numpy(), batch.indices))
        return batch

    def sample_many(self, count: int, batch_size: int, progress: float = 0.0) -> Iterator[Batch]:
        for batch in self.replay.sample_many(count, batch_size, progress):
            yield self.encode(batch)

    def update_priorities(self, indices: np.ndarray, priorities: torch.Tensor | np.ndarray) -> None:
        self.replay.update_priorities(indices, priorities)

    @staticmethod
    def goals_path(path: Path) -> Path:
        return path.with_name(path.stem + "-goals" + path.suffix)

    def save(self, path: Path) -> None:
        self.replay.save(path)
        goals = self.goals_path(path)
        tmp = goals.with_name(goals.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, goal=self.goal)
        tmp.replace(goals)

    def load(self, path: Path) -> None:
        goals = self.goals_path(path)
        if not goals.is_file():
            raise CheckpointError(
                f"the controller's replay buffer {path} has no goals file {goals.name}: an earlier qagent "
                "wrote it, whose D1 stored whole controller inputs",
                hint="start the run anew, or resume it with the qagent version that wrote it",
            )
        self.replay.load(path)
        try:
            with np.load(goals, allow_pickle=False) as data:
                goal = data["goal"]
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
            raise CheckpointError(f"replay goals {goals} are unreadable: {exc}") from None
        if goal.shape != self.goal.shape or goal.dtype.kind not in "iu":
            raise CheckpointError(f"replay goals {goals} hold {goal.shape} {goal.dtype}, not one goal per slot")
        self.goal[...] = goal


class HierarchicalMemory:
    """D1 and D2 as one memory for the loop: its length is D1's; saving and loading handle both
    (D2 in a file next to D1's)."""

    def __init__(self, controller: GoalReplay, meta: Replay) -> None:
        self.controller = controller
        self.meta = meta

    def __len__(self) -> int:
        return len(self.controller)

    def end_episodes(self, envs: np.ndarray) -> None:
        self.controller.end_episodes(envs)
        self.meta.end_episodes(envs)

    @staticmethod
    def meta_path(path: Path) -> Path:
        return path.with_name(path.stem + "-meta" + path.suffix)

    def save(self, path: Path) -> None:
        self.controller.save(path)
        self.meta.save(self.meta_path(path))

    def load(self, path: Path) -> None:
        self.controller.load(path)
        self.meta.load(self.meta_path(path))
