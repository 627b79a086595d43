"""DQN variants and their parts: networks, targets, replay, exploration, the acting policy.

Importing this package registers the built-in agents, networks and exploration strategies.
"""

from qagent.agents.distributional import C51Agent, C51Config, QRConfig, QRDQNAgent, RainbowAgent
from qagent.agents.dqn import DQNAgent, DQNConfig, LossOutput, UpdateResult
from qagent.agents.exploration import ActionValues, EpsilonGreedy, ExplorationStrategy, Greedy
from qagent.agents.hdqn import HDQNAgent, HDQNConfig
from qagent.agents.networks import MLP, QNetwork, Torso, build_torso
from qagent.agents.policy import QPolicy
from qagent.agents.replay.buffer import Batch, ReplayBuffer
from qagent.agents.replay.prioritized import PrioritizedReplay
from qagent.agents.variants import DoubleDQN, DuelingDQN, NoisyDQN, NStepDQN, PrioritizedDQN

__all__ = [
    "MLP",
    "C51Agent",
    "C51Config",
    "DoubleDQN",
    "DuelingDQN",
    "NStepDQN",
    "NoisyDQN",
    "PrioritizedDQN",
    "QRConfig",
    "QRDQNAgent",
    "RainbowAgent",
    "ActionValues",
    "Batch",
    "DQNAgent",
    "DQNConfig",
    "HDQNAgent",
    "HDQNConfig",
    "EpsilonGreedy",
    "ExplorationStrategy",
    "Greedy",
    "LossOutput",
    "QNetwork",
    "PrioritizedReplay",
    "QPolicy",
    "ReplayBuffer",
    "Torso",
    "UpdateResult",
    "build_torso",
]
