"""A deliberately simple replay memory, the oracle the real one is tested against.

It keeps every transition whole (both observations), in arrival order, with its env, and
computes n-step returns with plain Python loops over each env's own sequence.
"""

from __future__ import annotations

import numpy as np
import torch


class NaiveReplay:
    def __init__(self, gamma: float, n_step: int = 1) -> None:
        self.gamma, self.n_step = gamma, n_step
        self.rows: list[dict] = []
        self.by_env: dict[int, list[int]] = {}

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        for i in range(len(action)):
            self.by_env.setdefault(i, []).append(len(self.rows))
            self.rows.append(
                {
                    "env": i,
                    "obs": np.array(obs[i]),
                    "action": int(action[i]),
                    "reward": float(reward[i]),
                    "next_obs": np.array(next_obs[i]),
                    "terminated": bool(terminated[i]),
                    "truncated": bool(truncated[i]),
                }
            )

    def transition(self, tid: int) -> tuple:
        """(obs, action, n-step return, next obs, discount) of transition ``tid``."""
        row = self.rows[tid]
        sequence = self.by_env[row["env"]]
        position = sequence.index(tid)
        total, discount = 0.0, 1.0
        for k in range(self.n_step):
            step = self.rows[sequence[position + k]]
            total += discount * step["reward"]
            discount *= self.gamma
            if step["terminated"]:
                return row["obs"], row["action"], total, step["next_obs"], 0.0
            if step["truncated"] or k == self.n_step - 1:
                return row["obs"], row["action"], total, step["next_obs"], discount
        raise AssertionError("unreachable")

    def get(self, ids) -> dict[str, torch.Tensor]:
        rows = [self.transition(int(t)) for t in ids]
        obs, action, ret, next_obs, discount = zip(*rows, strict=True)
        return {
            "obs": torch.from_numpy(np.stack(obs)),
            "action": torch.tensor(action, dtype=torch.int64),
            "reward": torch.tensor(ret, dtype=torch.float32),
            "next_obs": torch.from_numpy(np.stack(next_obs)),
            "discount": torch.tensor(discount, dtype=torch.float32),
        }
