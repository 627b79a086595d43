"""Optimizer helpers for small networks, where per-call overhead rivals the arithmetic.

At CartPole sizes (a 4-256-256-2 MLP, batch 64) a gradient step takes about a millisecond on
one CPU core, and ``torch.optim``'s per-call bookkeeping (profiler hooks, grouping tensors by
device and dtype) costs a tenth of it. These helpers call the same kernels directly.
"""

from __future__ import annotations

import torch


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale gradients so their global L2 norm is at most ``max_norm``.

    The arithmetic of ``torch.nn.utils.clip_grad_norm_`` in three fused calls.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` with the fused kernel, plus :meth:`fast_step`.

    ``fast_step`` runs the same fused update as ``step`` on the optimizer's own state tensors,
    skipping the bookkeeping; its results are bitwise equal, and ``state_dict`` is an ordinary
    Adam state dict. It falls back to ``step`` whenever the fused kernel does not apply (first
    step, several parameter groups, AMSGrad, weight decay, tensors off the CPU).
    """

    def __init__(self, params, lr: float = 1e-3, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999)) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr, eps=eps, betas=betas, fused=True)
        self._lists: tuple[list[torch.Tensor], ...] | None = None

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lists = None  # state tensors were replaced

    def _fast_path(self) -> tuple[list[torch.Tensor], ...] | None:
        if self._lists is not None:
            return self._lists
        if len(self.param_groups) != 1 or not hasattr(torch, "_fused_adam_"):
            return None
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        states = [self.state.get(p, {}) for p in params]
        if group["amsgrad"] or group["weight_decay"] or group["maximize"] or not all(states):
            return None
        if any(p.device.type != "cpu" or p.is_sparse for p in params):
            return None
        self._lists = (
            params,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
        )
        return self._lists

    @torch.no_grad()
    def fast_step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        lists = self._fast_path()
        if lists is None or any(p.grad is None for p in lists[0]):
            self.step()
            return
        params, exp_avgs, exp_avg_sqs, steps = lists
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )
