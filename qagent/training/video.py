"""Evaluation videos: the raw RGB frames of whole evaluation episodes, as GIF or MP4.

Frames come from the env's own ``render()`` (``render_mode="rgb_array"``), so an Atari video
shows the full-color 210x160 screen, not the 84x84 grayscale frames the network sees. Episode
``j`` starts from seed ``seed + j``, as in :mod:`qagent.training.evaluation`, so a video shows the
episodes an evaluation with the same seed scores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qagent.agents.base import EvalActor, explore_goals
from qagent.config import EnvConfig
from qagent.envs.factory import make_env
from qagent.errors import ConfigError
from qagent.training.results import EvalResult

FORMATS = (".gif", ".mp4")


def check_video_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"video file {path} must end in .gif or .mp4")
    return path


def record_video(
    actor: EvalActor,
    env_config: EnvConfig,
    path: str | Path,
    *,
    episodes: int = 1,
    seed: int = 0,
    epsilon: float = 0.0,
    fps: int = 30,
) -> EvalResult:
    """Play ``episodes`` episodes, write their frames to ``path`` (.gif or .mp4), return their scores.

    :param actor: plays the episodes (``policy.evaluator()``).
    """
    path = check_video_path(path)
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # classic-control envs render through pygame
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("videos need imageio", hint="pip install 'qagent[video]'") from None
    env = make_env(env_config, training=False, render_mode="rgb_array")
    rng = np.random.default_rng(seed)
    explore_goals(actor, epsilon, seed)
    n_actions = int(env.action_space.n)
    frames: list[np.ndarray] = []
    returns, lengths = [], []
    try:
        for j in range(episodes):
            obs, _ = env.reset(seed=seed + j)
            actor.reset(np.ones(1, dtype=bool))
            frames.append(np.asarray(env.render()))
            done = False
            while not done:
                action = int(actor(np.asarray(obs)[None], [env])[0])
                if epsilon and rng.random() < epsilon:
                    action = int(rng.integers(n_actions))
                obs, _, terminated, truncated, info = env.step(action)
                frames.append(np.asarray(env.render()))
                done = terminated or truncated
            returns.append(float(info["episode"]["r"]))
            lengths.append(int(info["episode"]["l"]))
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        try:
            imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
        except (ImportError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot write {path}: {exc}", hint="pip install imageio-ffmpeg, or write a .gif"
            ) from None
    return EvalResult(returns, lengths, seed=seed, epsilon=epsilon, extra={"video": str(path), "frames": len(frames)})
