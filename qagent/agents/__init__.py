"""DQN variants and their parts: networks, targets, replay, exploration, the acting policy.

Importing this package registers the built-in agents, networks and exploration strategies.
"""

from qagent.agents.dqn import DQNAgent, DQNConfig, LossOutput, UpdateResult
from qagent.agents.exploration import ActionValues, EpsilonGreedy, ExplorationStrategy, Greedy
from qagent.agents.networks import MLP, QNetwork, Torso, build_torso
from qagent.agents.policy import QPolicy
from qagent.agents.prioritized import PrioritizedReplay
from qagent.agents.replay import Batch, ReplayBuffer

__all__ = [
    "MLP",
    "ActionValues",
    "Batch",
    "DQNAgent",
    "DQNConfig",
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
