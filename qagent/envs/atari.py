"""Atari (ALE) games with the standard DQN preprocessing, from well-kept wrappers.

The chain, in the common order (Mnih et al. 2015; Machado et al. 2018):

1. the ALE env with frame skip 1 (skipping happens below), sticky actions (p = 0.25 by
   default for ``ALE/*-v5`` ids, 0 for ``*NoFrameskip-v4``) and a 108k-frame episode cap;
2. gymnasium's ``RecordEpisodeStatistics``, so returns are always those of the full game;
3. Stable-Baselines3's Atari wrappers, in its ``AtariWrapper``'s order: up to 30 no-ops on
   reset, frame skip 4 with a max over the last two frames, loss of a life as terminal
   (training only; a *seeded* reset always starts a new game, see :func:`episodic_life`),
   FIRE on reset for games that need it, 84x84 grayscale, rewards clipped to their sign
   (training only);
4. gymnasium's ``FrameStackObservation``: the last 4 frames, oldest first, as ``(4, 84, 84)``
   uint8 (channels first), the first frame of an episode repeated to fill the stack.

Evaluation copies (``training=False``) keep the game going across lives and the rewards
unclipped, so evaluation returns are game scores.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import FrameStackObservation, RecordEpisodeStatistics, ReshapeObservation

from qagent.config import AtariConfig
from qagent.errors import ConfigError


def is_atari(spec: gym.envs.registration.EnvSpec | None) -> bool:
    """Whether a gymnasium spec belongs to the Arcade Learning Environment."""
    entry = getattr(spec, "entry_point", "") if spec is not None else ""
    return isinstance(entry, str) and entry.startswith("ale_py")


def make_atari(
    env_id: str,
    config: AtariConfig,
    *,
    training: bool,
    render_mode: str | None = None,
    kwargs: dict[str, Any] | None = None,
) -> gym.Env:
    """An ALE game with the preprocessing above; ``kwargs`` go to ``gymnasium.make``."""
    try:
        from stable_baselines3.common import atari_wrappers as sb3
    except ImportError:
        raise ConfigError(
            f"env {env_id!r} needs Stable-Baselines3's Atari wrappers and OpenCV", hint="pip install 'qagent[atari]'"
        ) from None
    sticky = config.sticky_actions
    if sticky is None:
        sticky = 0.25 if env_id.startswith("ALE/") else 0.0
    options = {
        "frameskip": 1,
        "repeat_action_probability": sticky,
        "max_num_frames_per_episode": config.max_frames,
        **(kwargs or {}),
    }
    if render_mode is not None:
        options["render_mode"] = render_mode
    if config.observation == "ram":
        return _ram_game(env_id, config, options, training)
    env = RecordEpisodeStatistics(gym.make(env_id, **options))
    if config.noop_max > 0:
        env = sb3.NoopResetEnv(env, noop_max=config.noop_max)
    if config.frame_skip > 1:
        env = sb3.MaxAndSkipEnv(env, skip=config.frame_skip)
    if training and config.terminal_on_life_loss:
        env = episodic_life(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = sb3.FireResetEnv(env)
    env = sb3.WarpFrame(env, width=config.screen_size, height=config.screen_size)
    if training and config.clip_rewards:
        env = sb3.ClipRewardEnv(env)
    env = ReshapeObservation(env, (config.screen_size, config.screen_size))
    return FrameStackObservation(env, config.frame_stack)


def _ram_game(env_id: str, config: AtariConfig, options: dict[str, Any], training: bool) -> gym.Env:
    """The same chain on the 128-byte RAM: the emulator repeats each action (no max over frames,
    which means nothing for memory bytes), and the RAM is the observation, unstacked."""
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, FireResetEnv, NoopResetEnv

    env = gym.make(env_id, **{**options, "obs_type": "ram", "frameskip": config.frame_skip})
    env = RecordEpisodeStatistics(env)
    if config.noop_max > 0:
        env = NoopResetEnv(env, noop_max=config.noop_max)
    if training and config.terminal_on_life_loss:
        env = episodic_life(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    if training and config.clip_rewards:
        env = ClipRewardEnv(env)
    return env


def episodic_life(env: gym.Env) -> gym.Env:
    """Loss of a life as terminal (SB3's ``EpisodicLifeEnv``), where a seeded reset starts a new game.

    SB3's wrapper continues the game on any reset after a step that did not end it, and FIRE on
    reset takes such steps, so a reset with a seed could leave the old game running. A resumed
    run rebuilds each env's episode from its seed, which needs the new game; lost lives are
    reset without a seed (see :class:`qagent.training.collector.Collector`) and go on as before.
    """
    return _episodic_life_class()(env)


@functools.cache
def _episodic_life_class() -> type[gym.Wrapper]:
    from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv

    class EpisodicLife(EpisodicLifeEnv):
        __doc__ = episodic_life.__doc__

        def reset(self, **kwargs: Any) -> Any:
            if kwargs.get("seed") is not None:
                self.was_real_done = True
            return super().reset(**kwargs)

    return EpisodicLife
