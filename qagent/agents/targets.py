"""Bootstrapped targets and TD losses as pure functions (tested on hand-made batches).

``discount`` is the factor on the next state's value, per sample: ``gamma ** n`` for an
n-step transition, and 0 when the episode terminated inside it. Truncated transitions keep
their discount, so a time limit bootstraps from the true next observation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_next_values(next_q_target_BA: torch.Tensor) -> torch.Tensor:
    """Vanilla DQN (Mnih et al. 2015): ``max_a' Q_target(s', a')``."""
    return next_q_target_BA.max(dim=1).values


def double_next_values(next_q_online_BA: torch.Tensor, next_q_target_BA: torch.Tensor) -> torch.Tensor:
    """Double DQN (van Hasselt et al. 2016): ``Q_target(s', argmax_a' Q_online(s', a'))``."""
    best_B1 = next_q_online_BA.argmax(dim=1, keepdim=True)
    return next_q_target_BA.gather(1, best_B1).squeeze(1)


def td_target(reward_B: torch.Tensor, discount_B: torch.Tensor, next_values_B: torch.Tensor) -> torch.Tensor:
    """``r + discount * V(s')``, with ``discount = 0`` at termination."""
    return reward_B + discount_B * next_values_B


def elementwise_td_loss(td_error_B: torch.Tensor, kind: str = "huber", delta: float = 1.0) -> torch.Tensor:
    """Per-sample loss of the TD error: Huber (smooth L1 with threshold ``delta``) or squared."""
    if kind == "huber":
        return F.huber_loss(td_error_B, torch.zeros_like(td_error_B), reduction="none", delta=delta)
    if kind == "mse":
        return td_error_B.square()
    raise ValueError(f"unknown loss {kind!r}; expected 'huber' or 'mse'")
