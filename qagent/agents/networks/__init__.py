"""Q-networks: registered torsos that turn observations into features, and the heads on top."""

from qagent.agents.networks.heads import NoisyLinear, QHead
from qagent.agents.networks.torsos import (
    MLP,
    CategoricalQNetwork,
    ImpalaCNN,
    NatureCNN,
    QNetwork,
    QuantileQNetwork,
    Torso,
    apply_spectral_norm,
    build_torso,
)

__all__ = [
    "MLP",
    "CategoricalQNetwork",
    "ImpalaCNN",
    "NatureCNN",
    "NoisyLinear",
    "QHead",
    "QNetwork",
    "QuantileQNetwork",
    "Torso",
    "apply_spectral_norm",
    "build_torso",
]
