"""h-DQN: a meta-controller over goals and a controller over actions (Kulkarni et al. 2016)."""

from qagent.agents.hdqn.actor import GoalStats, HDQNExploration, HierarchicalActor
from qagent.agents.hdqn.agent import HDQNAgent
from qagent.agents.hdqn.config import HDQNConfig
from qagent.agents.hdqn.memory import HierarchicalMemory
from qagent.agents.hdqn.policy import HierarchicalEvalActor, HierarchicalPolicy

__all__ = [
    "GoalStats",
    "HDQNAgent",
    "HDQNConfig",
    "HDQNExploration",
    "HierarchicalActor",
    "HierarchicalEvalActor",
    "HierarchicalMemory",
    "HierarchicalPolicy",
]
