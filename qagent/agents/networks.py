"""Q-networks: a registered torso that turns observations into features, and a head.

Torsos take raw observations as the environment gives them (float vectors, integer states,
uint8 frames) and do any scaling themselves, so an exported ONNX file takes the same raw
inputs. A head maps features to one Q-value per action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from qagent.config import NetworkConfig, PositiveInt
from qagent.errors import ConfigError
from qagent.plugins.registries import NETWORKS, register_network

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
}


class Torso(nn.Module):
    """Base class of network torsos: ``forward(obs_B...) -> features_BF``.

    Subclasses define a nested ``Config`` (a :class:`NetworkConfig`) and set
    :attr:`output_dim` in ``__init__(observation_space, config)``.
    """

    Config: type[NetworkConfig] = NetworkConfig
    output_dim: int


class OneHot(nn.Module):
    """Integer states -> one-hot float vectors (for ``Discrete`` observation spaces)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(obs.long().reshape(-1), self.n).float()


class FlattenFloat(nn.Module):
    """Any numeric array -> a flat float vector, scaled by ``scale`` (1/255 for uint8)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1).float()
        return x * self.scale if self.scale != 1.0 else x


def vector_encoder(observation_space: gym.Space) -> tuple[nn.Module | None, int]:
    """The input layer for a vector torso and its width: one-hot, flatten, /255 for bytes.

    None when observations already are float32 vectors (one module call less per forward).
    """
    if isinstance(observation_space, gym.spaces.Discrete):
        return OneHot(int(observation_space.n)), int(observation_space.n)
    if isinstance(observation_space, gym.spaces.Box):
        width = int(np.prod(observation_space.shape))
        if observation_space.dtype == np.float32 and len(observation_space.shape) == 1:
            return None, width
        scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
        return FlattenFloat(scale), width
    raise ConfigError(
        f"the mlp network does not support {type(observation_space).__name__} observations",
        hint="flatten the observation with a gymnasium wrapper or register a network for it",
    )


@register_network("mlp")
class MLP(Torso):
    """Fully connected layers; flattens Box observations and one-hot encodes Discrete ones."""

    class Config(NetworkConfig):
        name: str = "mlp"
        hidden_sizes: list[PositiveInt] = [256, 256]
        """Width of each hidden layer."""
        activation: Literal["relu", "tanh", "elu", "gelu", "silu"] = "relu"
        """Non-linearity after each hidden layer."""

    def __init__(self, observation_space: gym.Space, config: Config) -> None:
        super().__init__()
        self.encoder, width = vector_encoder(observation_space)
        self.layers = nn.ModuleList()
        for size in config.hidden_sizes:
            self.layers.append(nn.Linear(width, size))
            width = size
        self.activation = ACTIVATIONS[config.activation]
        self.output_dim = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Functional calls on the layers' parameters: a third of the module calls of
        # nn.Sequential, which matters at CartPole sizes where call overhead rivals the math.
        x = obs if self.encoder is None else self.encoder(obs)
        for layer in self.layers:
            x = self.activation(nn.functional.linear(x, layer.weight, layer.bias))
        return x


class QNetwork(nn.Module):
    """A torso followed by a linear head: ``obs -> q_BA`` (one Q-value per action)."""

    def __init__(self, torso: Torso, n_actions: int) -> None:
        super().__init__()
        self.torso = torso
        self.head = nn.Linear(torso.output_dim, n_actions)
        self.n_actions = n_actions

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


def build_torso(observation_space: gym.Space, config: NetworkConfig) -> Torso:
    """Instantiate the registered torso named by ``config.name``."""
    torso_cls = NETWORKS.get(config.name)
    torso = torso_cls(observation_space, config)
    if not isinstance(getattr(torso, "output_dim", None), int):
        raise ConfigError(f"network {config.name!r} did not set an integer output_dim")
    return torso
