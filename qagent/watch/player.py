"""One policy playing one env, a step at a time, with what a person watching wants to see.

The policy acts through a :mod:`qagent.serve` session, as a game server would: the env stacks
frames itself and the session stacks them again from each newest frame, and an h-DQN session
keeps its goal and its failed-goal bars. Each step gives the rendered frame (PNG), the
Q-values, the chosen action, the return so far and, for a hierarchy, the goal, where it is on
the frame and the goals chosen so far this episode.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np

from qagent.config import EnvConfig
from qagent.envs.factory import make_env
from qagent.training.evaluation import exported_goal_space

MAX_SHOWN_OBSERVATION = 4096
"""Observations up to this many numbers travel with each step (the page can show them; tests check Q-values)."""
GOAL_HISTORY = 20
"""Goals of the episode kept for the page, the newest last."""


def png_base64(frame: np.ndarray) -> str:
    """An RGB frame as a base64 PNG (the page shows it as a data URL)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Player:
    """Plays episodes of ``env_config`` with ``policy`` (a :class:`qagent.serve.Policy`).

    Episode ``j`` after :meth:`reset` with ``seed`` starts from seed ``seed + j``, as evaluation's do.
    """

    def __init__(self, policy: Any, env_config: EnvConfig, label: str) -> None:
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # classic-control envs render through pygame
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames are drawn off screen
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        self.policy = policy
        self.label = label
        self.env_id = env_config.id
        self.env = make_env(env_config, training=False, render_mode="rgb_array")
        hierarchy = policy.metadata.get("hierarchy")
        self.goal_space = None if hierarchy is None else exported_goal_space(hierarchy["goal_space"], env_config)
        self.meanings = policy.metadata.get("action", {}).get("meanings") or [
            str(a) for a in range(int(self.env.action_space.n))
        ]
        self.session = policy.session()
        self.rng = np.random.default_rng(0)
        self.seed = 0
        self.episode = 0
        self.episodes_done: list[float] = []
        self.last: dict[str, Any] = {}

    def reset(self, seed: int, epsilon: float = 0.0) -> dict[str, Any]:
        """Start over from episode seed ``seed``; returns the first view."""
        self.seed, self.episode, self.episodes_done = seed, 0, []
        self.rng = np.random.default_rng([seed, 2])
        return self._new_episode(epsilon)

    def _new_episode(self, epsilon: float) -> dict[str, Any]:
        self.obs, _ = self.env.reset(seed=self.seed + self.episode)
        self.session.reset()
        self.steps, self.total, self.goals_chosen, self.done = 0, 0.0, [], False
        self.q_values, self.action, self.explored = self._decide(epsilon)
        return self._view(reward=0.0)

    def _decide(self, epsilon: float) -> tuple[np.ndarray, int, bool]:
        """The session's step for the current observation, then a random action with probability ``epsilon``."""
        if hasattr(self.session, "keeper"):
            self.session.keeper.explore(epsilon, self.rng)
        obs = np.asarray(self.obs)
        frame = obs[-1] if self.policy.frame_stack else obs
        goal_input = None if self.goal_space is None else self.goal_space.goal_input(self.env, obs)
        action, q_values = self.session.step(frame, goal_input)
        info = self.session.info()
        if info.get("new_goal") or (info.get("goal") and not self.goals_chosen):
            self.goals_chosen = [*self.goals_chosen, info["goal"]][-GOAL_HISTORY:]
        explored = bool(epsilon) and self.rng.random() < epsilon
        if explored:
            action = int(self.rng.integers(len(self.meanings)))
        return q_values, action, explored

    def step(self, epsilon: float) -> dict[str, Any]:
        """Take the chosen action; the next view (a finished episode's last frame, then a new episode)."""
        if self.done:
            self.episode += 1
            return self._new_episode(epsilon)
        self.obs, reward, terminated, truncated, info = self.env.step(self.action)
        self.steps += 1
        self.total += float(reward)
        self.done = bool(terminated or truncated)
        if self.done:
            episode = info.get("episode")
            self.episodes_done.append(float(episode["r"]) if episode else self.total)
        else:
            self.q_values, self.action, self.explored = self._decide(epsilon)
        return self._view(reward=float(reward))

    def _view(self, reward: float) -> dict[str, Any]:
        """What the page shows for the current state (the Q-values are those of the observation shown)."""
        obs = np.asarray(self.obs)
        info = self.session.info()
        view: dict[str, Any] = {
            "label": self.label,
            "frame": png_base64(np.asarray(self.env.render())),
            "episode": self.episode + 1,
            "seed": self.seed + self.episode,
            "step": self.steps,
            "reward": reward,
            "return": self.total,
            "done": self.done,
            "returns": self.episodes_done[-10:],
            "q_values": None if self.done else [float(q) for q in self.q_values],
            "action": None if self.done else self.action,
            "explored": False if self.done else self.explored,
            "meanings": self.meanings,
            "obs": obs.tolist() if obs.size <= MAX_SHOWN_OBSERVATION else None,
        }
        if self.goal_space is not None:
            regions = self.goal_space.regions(self.env)
            goal_index = info.get("goal_index")
            view["goal"] = info.get("goal")
            view["goal_region"] = None if regions is None or goal_index is None else regions[goal_index]
            view["goal_history"] = self.goals_chosen
        self.last = view
        return view

    def close(self) -> None:
        self.env.close()
