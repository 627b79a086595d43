"""An example qagent plugin: one environment, one exploration strategy, one DQN variant.

Use it without installing anything:

    qagent plugins list --plugin examples/plugins/example_plugin.py
    qagent train --plugin examples/plugins/example_plugin.py \
        --env corridor --agent mellowmax-dqn --set exploration.name=ez-greedy --total-steps 3000
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from qagent import register_agent, register_env, register_exploration
from qagent.agents import ActionValues, DQNAgent, DQNConfig, ExplorationStrategy
from qagent.agents.replay.buffer import Batch
from qagent.agents.targets import td_target
from qagent.config import ExplorationConfig, PositiveFloat, PositiveInt, Probability


# --------------------------------------------------------------------------- an environment
class Corridor(gym.Env):
    """Walk right along a corridor of n cells; reward 1 at the far end, -0.01 per step."""

    def __init__(self, length: int = 8, max_steps: int = 50) -> None:
        self.length = length
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Discrete(length)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self.position = 0
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(0, self.length // 2))
        self.steps = 0
        return self.position, {}

    def step(self, action: int):
        self.position = max(0, self.position - 1) if action == 0 else self.position + 1
        self.steps += 1
        terminated = self.position >= self.length - 1
        truncated = not terminated and self.steps >= self.max_steps
        reward = 1.0 if terminated else -0.01
        return min(self.position, self.length - 1), reward, terminated, truncated, {}


@register_env("corridor")
def make_corridor(length: int = 8, max_steps: int = 50) -> gym.Env:
    """A corridor to walk along to the right (discrete states, two actions)."""
    return Corridor(length, max_steps)


# --------------------------------------------------------------------------- an exploration strategy
@register_exploration("ez-greedy")
class EzGreedy(ExplorationStrategy):
    """Temporally-extended epsilon-greedy (Dabney et al. 2021): random actions repeat for a while."""

    class Config(ExplorationConfig):
        name: str = "ez-greedy"
        epsilon: Probability = 0.1
        """Probability of starting a random action when none is repeating."""
        max_repeat: PositiveInt = 4
        """Repeat lengths are drawn uniformly from 1..max_repeat."""

    def __init__(self, config: Config, n_actions: int, total_steps: int, seed: int = 0) -> None:
        super().__init__(config, n_actions, total_steps, seed)
        self.repeat_action: np.ndarray | None = None  # per env; allocated on first use
        self.repeat_left: np.ndarray | None = None

    def select(self, q: ActionValues, step: int) -> np.ndarray:
        n = len(q)
        if self.repeat_left is None or len(self.repeat_left) != n:
            self.repeat_action = np.zeros(n, dtype=np.int64)
            self.repeat_left = np.zeros(n, dtype=np.int64)
        start = (self.repeat_left == 0) & (self.rng.random(n) < self.config.epsilon)
        self.repeat_action[start] = self.rng.integers(0, self.n_actions, size=int(start.sum()))
        self.repeat_left[start] = self.rng.integers(1, self.config.max_repeat + 1, size=int(start.sum()))
        repeating = self.repeat_left > 0
        self.repeat_left[repeating] -= 1
        return q.greedy() if not repeating.any() else np.where(repeating, self.repeat_action, q.greedy())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "repeat_action": self.repeat_action, "repeat_left": self.repeat_left}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.repeat_action = None if state["repeat_action"] is None else np.asarray(state["repeat_action"])
        self.repeat_left = None if state["repeat_left"] is None else np.asarray(state["repeat_left"])


# --------------------------------------------------------------------------- a DQN variant
def mellowmax(q_BA: torch.Tensor, omega: float) -> torch.Tensor:
    """Mellowmax (Asadi & Littman 2017): log(mean(exp(omega * q))) / omega, a soft maximum."""
    n = torch.tensor(float(q_BA.shape[1]))
    return (torch.logsumexp(omega * q_BA, dim=1) - torch.log(n)) / omega


class MellowmaxConfig(DQNConfig):
    name: str = "mellowmax-dqn"
    omega: PositiveFloat = 10.0
    """Mellowmax temperature: larger is closer to max."""


@register_agent("mellowmax-dqn")
class MellowmaxDQN(DQNAgent):
    """DQN whose targets use mellowmax instead of max over the next state's actions."""

    Config = MellowmaxConfig
    config: MellowmaxConfig

    def compute_target(self, batch: Batch) -> torch.Tensor:  # the only hook it overrides
        with torch.no_grad():
            next_values = mellowmax(self.target_net(batch.next_obs), self.config.omega)
            return td_target(batch.reward, batch.discount, next_values)
