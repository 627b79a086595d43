"""Distributional agents: C51, QR-DQN, and Rainbow (C51 with every other component).

Each overrides only the network and the two learning hooks (target, loss); acting and export
see expected Q-values, so nothing downstream knows the difference. The per-sample loss doubles
as the priority for prioritized replay, as in Rainbow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from qagent.agents.dqn import DQNAgent, DQNConfig, LossOutput
from qagent.agents.networks import CategoricalQNetwork, QuantileQNetwork
from qagent.agents.replay.buffer import Batch
from qagent.agents.targets import categorical_projection, quantile_huber_loss
from qagent.config import PositiveFloat, PositiveInt
from qagent.errors import ConfigError
from qagent.plugins.registries import register_agent


class C51Config(DQNConfig):
    name: str = "c51"
    atoms: PositiveInt = 51
    """Atoms of the return distribution's support."""
    v_min: float = -10.0
    """Lowest return on the support."""
    v_max: float = 10.0
    """Highest return on the support."""

    def check(self, run: Any) -> None:
        super().check(run)
        if self.v_min >= self.v_max or self.atoms < 2:
            raise ConfigError("agent.v_min must be below agent.v_max and agent.atoms at least 2")


@register_agent("c51")
class C51Agent(DQNAgent):
    """C51 (Bellemare et al. 2017): a categorical return distribution on 51 atoms, cross-entropy loss."""

    Config = C51Config
    config: C51Config

    def build_network(self) -> CategoricalQNetwork:
        support = torch.linspace(self.config.v_min, self.config.v_max, self.config.atoms)
        return CategoricalQNetwork(self.build_torso(), self.n_actions, support, **self.head_options())

    def _next_action(self, batch: Batch, next_target_q: torch.Tensor) -> torch.Tensor:
        """Greedy next action: by the online network's expected Q (double) or the target's."""
        next_q = self.q_net(batch.next_obs) if self.config.double else next_target_q
        return next_q.argmax(dim=1)

    def compute_target(self, batch: Batch) -> torch.Tensor:
        """The projected distribution of ``r + discount * Z(s', a*)``, shape ``(batch, atoms)``."""
        with torch.no_grad():
            log_probs = self.target_net.log_probabilities(batch.next_obs)
            probs = log_probs.exp()
            next_target_q = (probs * self.target_net.support).sum(-1)
            best = self._next_action(batch, next_target_q)
            next_probs = probs[torch.arange(len(batch)), best]
            return categorical_projection(next_probs, batch.reward, batch.discount, self.target_net.support)

    def compute_loss(self, batch: Batch, target: torch.Tensor) -> LossOutput:
        """Cross-entropy between the projected target and the predicted distribution."""
        log_probs = self.q_net.log_probabilities(batch.obs)[torch.arange(len(batch)), batch.action]
        per_sample = -(target * log_probs).sum(-1)
        loss = (per_sample if batch.weights is None else batch.weights * per_sample).mean()
        q_taken = (log_probs.detach().exp() * self.q_net.support).sum(-1)
        return LossOutput(loss, per_sample.detach(), q_taken)


class QRConfig(DQNConfig):
    name: str = "qr-dqn"
    quantiles: PositiveInt = 200
    """Quantiles of the return distribution per action (Dopamine uses 200)."""
    kappa: PositiveFloat = 1.0
    """Threshold of the quantile Huber loss."""


@register_agent("qr-dqn")
class QRDQNAgent(DQNAgent):
    """QR-DQN (Dabney et al. 2018): N quantiles of the return, quantile Huber loss (kappa = 1)."""

    Config = QRConfig
    config: QRConfig

    def build_network(self) -> QuantileQNetwork:
        return QuantileQNetwork(self.build_torso(), self.n_actions, atoms=self.config.quantiles, **self.head_options())

    def compute_target(self, batch: Batch) -> torch.Tensor:
        """Target quantiles ``r + discount * theta_j(s', a*)``, shape ``(batch, quantiles)``."""
        with torch.no_grad():
            next_quantiles = self.target_net.quantiles(batch.next_obs)
            next_q = self.q_net(batch.next_obs) if self.config.double else next_quantiles.mean(-1)
            best = next_q.argmax(dim=1)
            chosen = next_quantiles[torch.arange(len(batch)), best]
            return batch.reward[:, None] + batch.discount[:, None] * chosen

    def compute_loss(self, batch: Batch, target: torch.Tensor) -> LossOutput:
        quantiles = self.q_net.quantiles(batch.obs)[torch.arange(len(batch)), batch.action]
        per_sample = quantile_huber_loss(quantiles, target, self.config.kappa)
        loss = (per_sample if batch.weights is None else batch.weights * per_sample).mean()
        return LossOutput(loss, per_sample.detach(), quantiles.detach().mean(-1))


@register_agent("rainbow")
class RainbowAgent(C51Agent):
    """Rainbow (Hessel et al. 2018): C51 with double targets, dueling, noisy nets, 3-step PER."""

    class Config(C51Config):
        name: str = "rainbow"
        double: bool = True
        dueling: bool = True
        noisy: bool = True
        lr: PositiveFloat = 6.25e-5
        adam_eps: PositiveFloat = 1.5e-4

    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "replay": {"prioritized": True, "n_step": 3, "alpha": 0.5},
        "exploration": {"name": "noisy"},
    }
