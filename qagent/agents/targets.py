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


def categorical_projection(
    next_probs_BN: torch.Tensor, reward_B: torch.Tensor, discount_B: torch.Tensor, support_N: torch.Tensor
) -> torch.Tensor:
    """Project the distribution of ``r + discount * Z`` back onto the support (C51).

    Bellemare et al. 2017, Algorithm 1: each atom ``z_j`` moves to ``Tz_j = r + discount z_j``,
    clipped to ``[v_min, v_max]``, and its probability is split between the two nearest atoms
    in proportion to closeness. With ``discount = 0`` (terminal) all mass lands on ``r``. It runs
    in float32 whatever precision the network gave (bfloat16 under ``train.amp``).
    """
    next_probs_BN = next_probs_BN.float()
    v_min, v_max = float(support_N[0]), float(support_N[-1])
    delta = (v_max - v_min) / (len(support_N) - 1)
    moved_BN = (reward_B[:, None] + discount_B[:, None] * support_N[None, :]).clamp(v_min, v_max)
    position_BN = (moved_BN - v_min) / delta
    lower, upper = position_BN.floor().long(), position_BN.ceil().long()
    projected = torch.zeros_like(next_probs_BN)
    # When an atom lands exactly on the support, lower == upper: all its mass goes to lower.
    projected.scatter_add_(1, lower, next_probs_BN * (upper.float() - position_BN + (lower == upper).float()))
    projected.scatter_add_(1, upper, next_probs_BN * (position_BN - lower.float()))
    return projected


def quantile_huber_loss(quantiles_BN: torch.Tensor, target_BM: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """Per-sample quantile Huber loss (QR-DQN, Dabney et al. 2018, eq. 10), shape ``(batch,)``.

    ``rho_tau(u) = |tau - 1{u < 0}| L_kappa(u) / kappa`` for every pair of predicted quantile
    ``i`` (at midpoint ``tau_i = (2i + 1) / 2N``) and target sample ``j``, summed over ``i`` and
    averaged over ``j``.
    """
    n = quantiles_BN.shape[1]
    taus_N = (torch.arange(n, dtype=quantiles_BN.dtype, device=quantiles_BN.device) + 0.5) / n
    u_BNM = target_BM[:, None, :] - quantiles_BN[:, :, None]
    abs_u = u_BNM.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u_BNM.square(), kappa * (abs_u - 0.5 * kappa))
    weight = (taus_N[None, :, None] - (u_BNM.detach() < 0).float()).abs()
    return (weight * huber / kappa).sum(dim=1).mean(dim=1)
