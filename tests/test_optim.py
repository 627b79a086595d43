"""FusedAdam.fast_step matches torch.optim.Adam bit for bit; clipping matches torch's."""

from __future__ import annotations

import torch
from torch import nn

from qagent.agents.optim import FusedAdam, clip_grad_norm


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))


def loss_of(net: nn.Module, step: int) -> torch.Tensor:
    torch.manual_seed(100 + step)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    return ((net(x) - y) ** 2).mean()


def test_fast_step_equals_adam_step_bitwise():
    reference, fast = make_net(), make_net()
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-6, fused=True)
    fast_opt = FusedAdam(fast.parameters(), lr=1e-2, eps=1e-6)
    for step in range(20):
        for net, opt, do in ((reference, ref_opt, ref_opt.step), (fast, fast_opt, fast_opt.fast_step)):
            opt.zero_grad()
            loss_of(net, step).backward()
            do()
        if step == 10:  # a changed lr is honoured, and reloading state keeps both in step
            for opt in (ref_opt, fast_opt):
                opt.param_groups[0]["lr"] = 3e-3
            fast_opt.load_state_dict(fast_opt.state_dict())
    for a, b in zip(reference.parameters(), fast.parameters()):
        assert torch.equal(a, b)
    assert fast_opt.state_dict()["state"][0]["step"].item() == 20


def test_clip_grad_norm_matches_torch():
    a, b = make_net(), make_net()
    for net in (a, b):
        loss_of(net, 0).backward()
        for p in net.parameters():
            p.grad.mul_(100)
    clip_grad_norm(list(a.parameters()), 0.5)
    nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-5, atol=1e-7)
    total = torch.sqrt(sum((p.grad**2).sum() for p in a.parameters()))
    assert abs(total.item() - 0.5) < 1e-4
