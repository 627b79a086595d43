"""h-DQN: a meta-controller over goals and a controller over actions (Kulkarni et al. 2016)."""

from qagent.agents.hdqn.agent import GoalStats, HDQNAgent, HDQNConfig

__all__ = ["GoalStats", "HDQNAgent", "HDQNConfig"]
