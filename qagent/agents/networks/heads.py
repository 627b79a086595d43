"""Q-network heads: plain or dueling, plain or noisy layers, one value or a distribution per action.

The head maps the torso's features to ``(batch, actions, atoms)`` numbers: ``atoms = 1`` for
a plain Q-value, the categorical logits for C51, the quantiles for QR-DQN. The networks in
:mod:`qagent.agents.networks` turn them into expected Q-values for acting and export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _scaled_noise(size: int) -> torch.Tensor:
    x = torch.randn(size)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian noise on its weights (Fortunato et al. 2018).

    ``w = mu_w + sigma_w * (f(eps_out) f(eps_in)^T)`` with ``f(x) = sign(x) sqrt(|x|)``; sigma
    starts at ``sigma0 / sqrt(in_features)``. In eval mode (evaluation, export) the layer uses
    its mean weights only, so a trained policy is deterministic.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        self.reset_noise()

    def reset_noise(self) -> None:
        """Draw fresh noise (from torch's seeded generator, so runs stay reproducible)."""
        self.eps_in.copy_(_scaled_noise(self.in_features))
        self.eps_out.copy_(_scaled_noise(self.out_features))

    @property
    def weight(self) -> torch.Tensor:
        """The mean weight: what the layer computes in eval mode (and what export writes)."""
        return self.weight_mu

    @property
    def bias(self) -> torch.Tensor:
        return self.bias_mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)


def linear(in_features: int, out_features: int, noisy: bool = False, sigma0: float = 0.5) -> nn.Module:
    return NoisyLinear(in_features, out_features, sigma0) if noisy else nn.Linear(in_features, out_features)


class QHead(nn.Module):
    """Features -> ``(batch, actions, atoms)``; dueling aggregates ``V + A - mean(A)`` per atom.

    :param features: width of the torso's output.
    :param n_actions: number of actions.
    :param atoms: numbers per action (1 for plain Q-values).
    :param dueling: separate value and advantage streams (Wang et al. 2016).
    :param noisy: noisy linear layers (Fortunato et al. 2018).
    """

    def __init__(
        self,
        features: int,
        n_actions: int,
        atoms: int = 1,
        dueling: bool = False,
        noisy: bool = False,
        sigma0: float = 0.5,
    ) -> None:
        super().__init__()
        self.n_actions, self.atoms, self.dueling = n_actions, atoms, dueling
        if dueling:
            self.value = linear(features, atoms, noisy, sigma0)
            self.advantage = linear(features, n_actions * atoms, noisy, sigma0)
        else:
            self.out = linear(features, n_actions * atoms, noisy, sigma0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.n_actions, self.atoms)
        if not self.dueling:
            return self.out(x).view(shape)
        value = self.value(x).view(x.shape[0], 1, self.atoms)
        advantage = self.advantage(x).view(shape)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def output_layers(self) -> list[nn.Module]:
        """The layers whose bias sets the head's output level (for optimistic initialization)."""
        return [self.value, self.advantage] if self.dueling else [self.out]
