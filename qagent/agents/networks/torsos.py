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

from qagent.agents.networks.heads import NoisyLinear, QHead
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


def conv_output_dim(layers: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Width of ``layers``' flattened output for one input of ``input_shape``."""
    with torch.no_grad():
        return int(layers(torch.zeros(1, *input_shape)).reshape(1, -1).shape[1])


def image_shape(observation_space: gym.Space, network: str) -> tuple[int, int, int]:
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 3):
        raise ConfigError(
            f"the {network} network needs (channels, height, width) image observations, not {observation_space}",
            hint="use network.name=mlp for vector observations",
        )
    return tuple(int(d) for d in observation_space.shape)  # type: ignore[return-value]


@register_network("nature-cnn")
class NatureCNN(Torso):
    """The DQN paper's convolutional torso (Mnih et al. 2015); uint8 frames are divided by 255 inside."""

    class Config(NetworkConfig):
        name: str = "nature-cnn"
        features: PositiveInt = 512
        """Width of the fully connected layer after the convolutions."""

    def __init__(self, observation_space: gym.Space, config: Config) -> None:
        super().__init__()
        channels, height, width = image_shape(observation_space, "nature-cnn")
        self.scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(conv_output_dim(self.convs, (channels, height, width)), config.features)
        self.output_dim = config.features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.convs(obs.float() * self.scale)))


class ResidualBlock(nn.Module):
    """relu -> conv -> relu -> conv, plus the input (IMPALA)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


@register_network("impala-cnn")
class ImpalaCNN(Torso):
    """IMPALA's residual convolutional torso (Espeholt et al. 2018); uint8 frames are divided by 255 inside."""

    class Config(NetworkConfig):
        name: str = "impala-cnn"
        channels: list[PositiveInt] = [16, 32, 32]
        """Channels of each of the three conv-pool-residual stacks."""
        features: PositiveInt = 256
        """Width of the fully connected layer after the stacks."""

    def __init__(self, observation_space: gym.Space, config: Config) -> None:
        super().__init__()
        shape = image_shape(observation_space, "impala-cnn")
        self.scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
        layers: list[nn.Module] = []
        previous = shape[0]
        for channels in config.channels:
            layers += [
                nn.Conv2d(previous, channels, kernel_size=3, padding=1),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                ResidualBlock(channels),
                ResidualBlock(channels),
            ]
            previous = channels
        self.stacks = nn.Sequential(*layers, nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(conv_output_dim(self.stacks, shape), config.features)
        self.output_dim = config.features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.stacks(obs.float() * self.scale)))


@register_network("grid-cnn")
class GridCNN(Torso):
    """A small convolutional torso for grid worlds (MiniGrid's ``onehot-image`` cells).

    3x3 convolutions with padding: the first keeps the grid's size, each later one halves it, so a
    25x25 room and a 5x5 one both end in a few cells of features. The filters are shared across
    the grid, so what the controller learns about walking to an object in one place holds in every
    other place, which a fully connected torso on the flat grid has to learn anew per cell.
    """

    class Config(NetworkConfig):
        name: str = "grid-cnn"
        channels: list[PositiveInt] = [32, 64, 64]
        """Channels of each 3x3 convolution (the first at stride 1, the others at stride 2)."""
        features: PositiveInt = 256
        """Width of the fully connected layer after the convolutions."""

    def __init__(self, observation_space: gym.Space, config: Config) -> None:
        super().__init__()
        shape = image_shape(observation_space, "grid-cnn")
        self.scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
        layers: list[nn.Module] = []
        previous = shape[0]
        for i, channels in enumerate(config.channels):
            layers += [nn.Conv2d(previous, channels, kernel_size=3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            previous = channels
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(conv_output_dim(self.convs, shape), config.features)
        self.output_dim = config.features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.convs(obs.float() * self.scale)))


class QNetwork(nn.Module):
    """A torso, then a head: ``obs -> q_BA``, one expected Q-value per action.

    :param torso: a registered torso (see :func:`build_torso`).
    :param n_actions: number of actions.
    :param atoms: numbers the head gives per action (1: a Q-value).
    :param dueling: dueling value and advantage streams.
    :param noisy: noisy linear layers in the head.
    """

    def __init__(
        self,
        torso: Torso,
        n_actions: int,
        *,
        atoms: int = 1,
        dueling: bool = False,
        noisy: bool = False,
        sigma0: float = 0.5,
    ) -> None:
        super().__init__()
        self.torso = torso
        self.head = QHead(torso.output_dim, n_actions, atoms, dueling, noisy, sigma0)
        self.n_actions = n_actions
        self.noisy = noisy

    def outputs(self, obs: torch.Tensor) -> torch.Tensor:
        """The head's raw ``(batch, actions, atoms)`` outputs."""
        return self.head(self.torso(obs))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.outputs(obs).squeeze(-1)

    def reset_noise(self) -> None:
        """New noise for every noisy layer (a no-op without noisy layers)."""
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise()


class CategoricalQNetwork(QNetwork):
    """A return distribution per action on a fixed support of atoms (C51, Bellemare et al. 2017)."""

    def __init__(self, torso: Torso, n_actions: int, support: torch.Tensor, **head: object) -> None:
        super().__init__(torso, n_actions, atoms=len(support), **head)  # type: ignore[arg-type]
        self.register_buffer("support", support.clone().float())

    def log_probabilities(self, obs: torch.Tensor) -> torch.Tensor:
        """``log p(z_i | s, a)``, shape ``(batch, actions, atoms)``."""
        return torch.log_softmax(self.outputs(obs), dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Expected Q-values: the mean of each action's distribution."""
        return (torch.softmax(self.outputs(obs), dim=-1) * self.support).sum(-1)


class QuantileQNetwork(QNetwork):
    """N quantiles of the return per action (QR-DQN, Dabney et al. 2018)."""

    def quantiles(self, obs: torch.Tensor) -> torch.Tensor:
        """Quantile values, shape ``(batch, actions, quantiles)``."""
        return self.outputs(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Expected Q-values: the mean of each action's quantiles."""
        return self.outputs(obs).mean(-1)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Constrain every linear and convolutional layer of ``module`` to spectral norm 1.

    Applied to the torso, it bounds the features' Lipschitz constant, the contraction argument
    of the seeds' notes (keep gamma times the product of the layers' norms below 1); the head
    stays free to reach the scale of the returns.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear | nn.Conv2d):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


def build_torso(observation_space: gym.Space, config: NetworkConfig) -> Torso:
    """Instantiate the registered torso named by ``config.name``."""
    torso_cls = NETWORKS.get(config.name)
    torso = torso_cls(observation_space, config)
    if not isinstance(getattr(torso, "output_dim", None), int):
        raise ConfigError(f"network {config.name!r} did not set an integer output_dim")
    return torso
