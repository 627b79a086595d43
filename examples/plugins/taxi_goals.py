"""A goal space for gymnasium's Taxi-v4: drive to one of the four stands, or pick the passenger up.

Load it with ``--plugin examples/plugins/taxi_goals.py`` and train h-DQN on Taxi::

    qagent train --plugin examples/plugins/taxi_goals.py --env Taxi-v4 --agent hdqn \
        --set agent.goal_space=taxi-stands
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qagent import register_goal_space
from qagent.envs.goals import GoalSpace

STANDS = {"R": (0, 0), "G": (0, 4), "Y": (4, 0), "B": (4, 3)}
IN_TAXI = 4  # Taxi's passenger location when the passenger rides along


@register_goal_space("taxi-stands")
class TaxiStands(GoalSpace):
    """Reach stand R, G, Y or B, or have the passenger in the taxi."""

    # The goal test reads (taxi row, taxi column, passenger location, destination), which the
    # observation (one number out of 500) encodes; a served policy gets it from the client.
    input = "client"

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space)
        self.goals = [f"at-{name}" for name in STANDS] + ["passenger-aboard"]
        # A goal is reached when all its clauses (index, low, high) hold for the goal input.
        self.reached_when = [[(0, row, row), (1, col, col)] for row, col in STANDS.values()]
        self.reached_when.append([(2, IN_TAXI, IN_TAXI)])

    def goal_input(self, env: gym.Env, obs: Any) -> np.ndarray:
        return np.array(list(env.unwrapped.decode(int(obs))), dtype=np.int64)
