"""The acting half of a Q-learning agent: observations -> Q-values -> greedy actions.

This is what collection and evaluation call and what export writes to ONNX; it knows
nothing about targets, losses or optimizers.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from qagent.agents.base import Exportable, GreedyActor


class QPolicy:
    """Wraps a Q-network for acting on numpy observations (batched, leading axis).

    :param network: maps a batch of raw observations to ``q_BA``; on the CPU or a GPU.
    :param resample_noise: new noise before each acting step (noisy networks).
    """

    def __init__(self, network: nn.Module, resample_noise: bool = False) -> None:
        self.network = network
        self.resample_noise = resample_noise
        self.device = next(network.parameters()).device

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Expected Q-values, ``float32[batch, n_actions]``.

        Noisy networks draw fresh noise for every step they act on in training mode; in eval
        mode they use their mean weights.
        """
        with torch.inference_mode():
            if self.resample_noise and self.network.training:
                self.network.reset_noise()
            return self.network(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions, ``int64[batch]``."""
        return self.q_values(obs).argmax(axis=1)

    def evaluator(self) -> GreedyActor:
        return GreedyActor(self.q_values)

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[QPolicy]:
        """Switch the network to eval mode inside the block (noisy layers use their means)."""
        was_training = self.network.training
        self.network.eval()
        try:
            yield self
        finally:
            self.network.train(was_training)

    def copy(self) -> QPolicy:
        """A copy on the CPU: acting on small batches is faster there than a round trip to a GPU."""
        return QPolicy(copy.deepcopy(self.network).cpu().requires_grad_(False), self.resample_noise)

    def weights(self) -> dict[str, Any]:
        """CPU tensors, whatever device the network is on (they travel to actors and threads)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}

    def load_weights(self, weights: dict[str, Any]) -> None:
        with torch.no_grad():
            for mine, theirs in zip(self.network.state_dict().values(), weights.values(), strict=True):
                mine.copy_(theirs)


class PolicyModule(nn.Module):
    """``obs -> (q_values, action)``: a Q-network as written to ONNX."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_values = self.network(obs)
        return q_values, q_values.argmax(dim=1)


def q_network_exportable(network: nn.Module) -> Exportable:
    """A Q-network taking observations, as export writes it: ``obs -> (q_values, action)``."""
    from qagent.serve import metadata as md

    return Exportable(PolicyModule(network).eval(), lambda obs: (obs,), [md.INPUT_NAME], list(md.OUTPUT_NAMES))
