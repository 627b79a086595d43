"""The stochastic decision process of Kulkarni et al. (2016), h-DQN's first experiment.

Six states s1..s6 (observed as indices 0..5); every episode starts in s2 and ends on reaching
s1. "left" always moves one state left; "right" moves right with probability 0.5 and left
otherwise (in s6 a successful "right" stays in s6). Reaching s1 pays 1.00 if s6 was visited
during the episode, else 0.01, so the reward depends on history the observation does not
show. The best policy goes right until s6 (from s2 it gets there one time in five) and then
left, for an expected 0.2 * 1 + 0.8 * 0.01 = 0.208.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qagent.plugins.registries import register_env

LEFT, RIGHT = 0, 1


@register_env("stochastic-decision-process")
class StochasticDecisionProcess(gym.Env):
    """Kulkarni et al.'s six-state process: 1.00 for reaching s1 after visiting s6, else 0.01."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        n_states: int = 6,
        start: int = 2,
        right_success: float = 0.5,
        max_steps: int | None = 200,
        reward_visited: float = 1.0,
        reward_unvisited: float = 0.01,
    ) -> None:
        if n_states < 3 or not 1 < start < n_states:
            raise ValueError("need at least 3 states and a start strictly between s1 and the last state")
        self.n_states = n_states
        self.start = start - 1  # 1-based in the paper, 0-based as an observation
        self.right_success = right_success
        self.max_steps = max_steps
        self.reward_visited = reward_visited
        self.reward_unvisited = reward_unvisited
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(2)
        self.state = self.start
        self.visited_last = False
        self.steps = 0

    def get_action_meanings(self) -> list[str]:
        return ["LEFT", "RIGHT"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.state, self.visited_last, self.steps = self.start, False, 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        if int(action) == RIGHT and self.np_random.random() < self.right_success:
            self.state = min(self.state + 1, self.n_states - 1)
        else:
            self.state -= 1
        self.steps += 1
        self.visited_last |= self.state == self.n_states - 1
        terminated = self.state == 0
        reward = (self.reward_visited if self.visited_last else self.reward_unvisited) if terminated else 0.0
        truncated = not terminated and self.max_steps is not None and self.steps >= self.max_steps
        return self.state, reward, terminated, truncated, {"visited_last": self.visited_last}


def optimal_value(n_states: int = 6, start: int = 2, right_success: float = 0.5, tolerance: float = 1e-12) -> float:
    """Value iteration over (state, visited-the-last-state) pairs: the undiscounted optimum from ``start``.

    The flag makes the process Markov; the result is the best expected return any policy,
    with memory, can get (0.208 for the paper's process).
    """
    p = right_success
    last = n_states - 1
    value = np.zeros((n_states, 2))  # V[s, visited]; s1 (index 0) is terminal
    while True:
        new = np.zeros_like(value)
        for s in range(1, n_states):
            for visited in (0, 1):

                def outcome(nxt: int, visited: int = visited, value: np.ndarray = value) -> float:
                    flag = int(visited or nxt == last)
                    if nxt == 0:
                        return 1.0 if flag else 0.01
                    return value[nxt, flag]

                left = outcome(s - 1)
                right = p * outcome(min(s + 1, last)) + (1 - p) * outcome(s - 1)
                new[s, visited] = max(left, right)
        if np.abs(new - value).max() < tolerance:
            return float(new[start - 1, 0])
        value = new
