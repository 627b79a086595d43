"""Evaluation: run full episodes with a (nearly) greedy policy on separate env copies.

Episode ``j`` always starts from seed ``seed + j``, so two evaluations of the same policy with
the same seed see the same starting states, whatever ``num_envs`` is. Returns are the
environment's own episode returns (``RecordEpisodeStatistics``), not clipped or shaped ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from qagent.agents.base import EvalActor, GreedyActor, explore_goals
from qagent.config import EnvConfig
from qagent.envs.atari import is_atari
from qagent.envs.factory import gymnasium_spec, make_vector_env
from qagent.training.results import EvalResult

STANDARD_ATARI = {"epsilon": 0.05, "noop_max": 30, "max_frames": 108_000}
"""The standard Atari evaluation protocol: epsilon 0.05 (at every level of a hierarchy), up to 30
no-op starts, episodes capped at 108,000 emulator frames (30 minutes of play)."""


def describe_protocol(env_config: EnvConfig, epsilon: float) -> str:
    """The evaluation protocol in words, for every table: its epsilon, and for Atari its starts, cap and
    sticky actions (which the standard protocol leaves to the env: 0.25 for ``ALE/*-v5`` ids)."""
    exploring = "greedy (ε=0)" if epsilon == 0 else f"ε={epsilon:g}"
    if not is_atari(gymnasium_spec(env_config.id)):
        return exploring
    atari = env_config.atari
    sticky = atari.sticky_actions
    if sticky is None:
        sticky = 0.25 if env_config.id.startswith("ALE/") else 0.0
    settings = {"epsilon": epsilon, "noop_max": atari.noop_max, "max_frames": atari.max_frames}
    details = f"up to {atari.noop_max} no-op starts, {atari.max_frames:,}-frame cap, sticky actions {sticky:g}"
    if settings == STANDARD_ATARI:
        return f"standard Atari: ε={epsilon:g}, {details}"
    return f"{exploring}, {details}"


class SessionActor:
    """Acts through a served policy's sessions, one per env: how an exported h-DQN is evaluated.

    The envs stack frames themselves; a session stacks them again from the newest frame of
    each observation, as it would for a client sending one frame per step.

    :param goal_input: reads an env's goal input (the goal space's), for hierarchical policies.
    """

    def __init__(self, policy: Any, goal_input: Callable[[gym.Env, Any], np.ndarray] | None = None) -> None:
        self.policy = policy
        self.goal_input = goal_input
        self.sessions: list[Any] = []
        self.exploring: tuple[float, np.random.Generator] | None = None

    def explore(self, epsilon: float, rng: np.random.Generator) -> None:
        """Hierarchical sessions pick random goals with probability ``epsilon``."""
        self.exploring = (epsilon, rng)
        for session in self.sessions:
            if hasattr(session, "keeper"):
                session.keeper.explore(epsilon, rng)

    def reset(self, mask: np.ndarray) -> None:
        if len(self.sessions) != len(mask):
            self.sessions = [self.policy.session() for _ in mask]
            for session in self.sessions:
                if self.exploring is not None and hasattr(session, "keeper"):
                    session.keeper.explore(*self.exploring)
        for i in np.flatnonzero(mask):
            self.sessions[i].reset()

    def __call__(self, obs: np.ndarray, envs: list[gym.Env]) -> np.ndarray:
        actions = np.zeros(len(obs), dtype=np.int64)
        frames = obs[:, -1] if self.policy.frame_stack else obs
        for i, session in enumerate(self.sessions):
            goal_input = None if self.goal_input is None else self.goal_input(envs[i], obs[i])
            actions[i] = session.step(frames[i], goal_input)[0]
        return actions


class Evaluator:
    """Evaluation envs kept between evaluations (making Atari envs is not free).

    :param env_config: the run's env section (evaluation copies use ``training=False``).
    :param num_envs: episodes run side by side.
    """

    def __init__(self, env_config: EnvConfig, num_envs: int) -> None:
        self.env_config = env_config
        self.num_envs = num_envs
        self._envs = None

    def run(self, actor: EvalActor, episodes: int, seed: int, epsilon: float = 0.0) -> EvalResult:
        """Play ``episodes`` episodes with ``actor`` (``policy.evaluator()``); a random action with
        probability ``epsilon``."""
        k = min(self.num_envs, episodes)
        if self._envs is None or self._envs.num_envs != k:
            self.close()
            self._envs = make_vector_env(self.env_config, k, training=False)
        envs = self._envs
        n_actions = int(envs.single_action_space.n)
        rng = np.random.default_rng(seed)
        explore_goals(actor, epsilon, seed)
        returns = [0.0] * episodes
        lengths = [0] * episodes
        running = np.arange(k)  # episode index each env is playing, -1 when idle
        next_episode = k
        obs, _ = envs.reset(seed=[seed + j for j in range(k)])
        actor.reset(np.ones(k, dtype=bool))
        while (running >= 0).any():
            actions = actor(obs, envs.envs)
            if epsilon > 0:
                explore = rng.random(k) < epsilon
                actions = np.where(explore, rng.integers(0, n_actions, size=k), actions)
            next_obs, _, terminated, truncated, info = envs.step(actions)
            ended = terminated | truncated
            if ended.any():
                # autoreset is disabled: every finished env is reset, idle ones with unused seeds
                stats = info["episode"]
                seeds = [seed + episodes + i for i in range(k)]
                for i in np.flatnonzero(ended & (running >= 0)):
                    returns[running[i]] = float(stats["r"][i])
                    lengths[running[i]] = int(stats["l"][i])
                    running[i] = next_episode if next_episode < episodes else -1
                    if running[i] >= 0:
                        seeds[i] = seed + next_episode
                        next_episode += 1
                reset_obs, _ = envs.reset(seed=seeds, options={"reset_mask": ended})
                next_obs[ended] = reset_obs[ended]
                actor.reset(ended)
            obs = next_obs
        return EvalResult(
            returns, lengths, seed=seed, epsilon=epsilon, protocol=describe_protocol(self.env_config, epsilon)
        )

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


def evaluate_checkpoint(
    target: str,
    episodes: int,
    seed: int,
    epsilon: float | None = None,
    checkpoint: dict[str, Any] | None = None,
    video: str | Path | None = None,
    video_episodes: int = 1,
) -> EvalResult:
    """Load the policy in a run directory or checkpoint file and evaluate it.

    The checkpoint carries its resolved config, so the env and network are rebuilt exactly.

    :param epsilon: random actions (and goals); None uses the run's ``eval.epsilon``, so the
        result compares with the run's own evaluations (the standard protocol for Atari presets).
    :param checkpoint: the checkpoint ``target`` resolves to, if the caller loaded it already.
    :param video: also record the first ``video_episodes`` episodes to this .gif or .mp4 file.
    """
    from qagent.training.build import load_agent

    loaded = load_agent(target, checkpoint)
    with loaded.agent.policy.evaluation_mode() as policy:
        if epsilon is None:
            epsilon = loaded.config.eval.epsilon
        result = _evaluate(policy.evaluator, loaded.config.env, episodes, seed, epsilon, video, video_episodes)
    result.extra.update(
        {
            "checkpoint": str(loaded.path),
            "step": loaded.step,
            "env": loaded.config.env.id,
            "agent": loaded.config.agent.name,
        }
    )
    return result


def _evaluate(
    make_actor: Callable[[], EvalActor],
    env_config: EnvConfig,
    episodes: int,
    seed: int,
    epsilon: float,
    video: str | Path | None,
    video_episodes: int,
) -> EvalResult:
    if video is not None:
        from qagent.training.video import check_video_path

        check_video_path(video)  # before the evaluation, not after it
    evaluator = Evaluator(env_config, min(episodes, 10))
    try:
        result = evaluator.run(make_actor(), episodes, seed, epsilon)
    finally:
        evaluator.close()
    if video is not None:
        from qagent.training.video import record_video

        recorded = record_video(make_actor(), env_config, video, episodes=video_episodes, seed=seed, epsilon=epsilon)
        result.extra["video"] = recorded.extra["video"]
    return result


def evaluate_policy_file(
    path: str | Path,
    episodes: int,
    seed: int,
    epsilon: float | None = None,
    video: str | Path | None = None,
    video_episodes: int = 1,
) -> EvalResult:
    """Evaluate an exported ONNX policy through :mod:`qagent.serve` (no torch in the loop).

    The env is rebuilt from the file's metadata, so the same seeds give the same episodes as
    :func:`evaluate_checkpoint` on the checkpoint it came from; so does the default ``epsilon``
    (the run's ``eval.epsilon``, recorded in the file; 0 for files exported before it was).
    """
    from qagent.serve import Policy

    policy = Policy.load(path)
    meta = policy.metadata
    env_config = EnvConfig(**meta["env"])
    if epsilon is None:
        epsilon = float(meta.get("eval", {}).get("epsilon", 0.0))
    if "hierarchy" in meta:
        goal_input = exported_goal_space(meta["hierarchy"]["goal_space"], env_config).goal_input
        make_actor: Callable[[], EvalActor] = lambda: SessionActor(policy, goal_input)  # noqa: E731
    else:
        make_actor = lambda: GreedyActor(policy.q_values)  # noqa: E731
    result = _evaluate(make_actor, env_config, episodes, seed, epsilon, video, video_episodes)
    result.extra.update(
        {"policy": str(path), "step": meta["training"]["steps"], "env": meta["env"]["id"], "agent": meta["agent"]}
    )
    return result


def exported_goal_space(description: dict[str, Any], env_config: EnvConfig) -> Any:
    """The registered goal space an exported h-DQN names (it reads goal inputs from the env)."""
    from qagent.envs.factory import make_env
    from qagent.plugins.registries import GOAL_SPACES

    env = make_env(env_config, training=False)
    try:
        return GOAL_SPACES.get(description["name"])(env.observation_space, **description.get("kwargs", {}))
    finally:
        env.close()
