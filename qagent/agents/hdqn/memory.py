"""h-DQN's two memories, D1 (the controller's steps) and D2 (the meta-controller's options), as one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qagent.agents.replay import Replay


class HierarchicalMemory:
    """D1 and D2 as one memory for the loop: its length is D1's; saving and loading handle both
    (D2 in a file next to D1's)."""

    def __init__(self, controller: Replay, meta: Replay) -> None:
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
