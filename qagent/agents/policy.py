"""The acting half of an agent: observations -> Q-values -> greedy actions.

This is what collection and evaluation call and what export writes to ONNX; it knows
nothing about targets, losses or optimizers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


class QPolicy:
    """Wraps a Q-network for acting on numpy observations (batched, leading axis).

    :param network: maps a batch of raw observations to ``q_BA``.
    :param resample_noise: new noise before each acting step (noisy networks).
    """

    def __init__(self, network: nn.Module, resample_noise: bool = False) -> None:
        self.network = network
        self.resample_noise = resample_noise

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Expected Q-values, ``float32[batch, n_actions]``.

        Noisy networks draw fresh noise for every step they act on in training mode; in eval
        mode they use their mean weights.
        """
        with torch.inference_mode():
            if self.resample_noise and self.network.training:
                self.network.reset_noise()
            return self.network(torch.as_tensor(obs)).numpy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions, ``int64[batch]``."""
        return self.q_values(obs).argmax(axis=1)

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[QPolicy]:
        """Switch the network to eval mode inside the block (noisy layers use their means)."""
        was_training = self.network.training
        self.network.eval()
        try:
            yield self
        finally:
            self.network.train(was_training)
