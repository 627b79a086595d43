"""ALE games stepped by ale-py's own vector env (``AtariVectorEnv``), with the contract of qagent's vector envs.

``AtariVectorEnv`` runs every game in C++ worker threads with the DQN preprocessing built in (frame
skip with a max over the last two frames, 84x84 grayscale, frame stack, no-ops and FIRE on reset,
sticky actions, the frame cap), 1.5 to 2 times as fast as gymnasium's vector env over the
wrapper chain of :mod:`qagent.envs.atari`. :class:`AleVectorEnv` gives it what the collector relies on:

- **no autoreset**: a finished env must be reset (``reset(seed=[...], options={"reset_mask": m})``)
  before its next step; a reset without a seed after a lost life (training) continues the game,
  any other reset starts a new game, seeded or not;
- **terminal on a lost life** (training, ``env.atari.terminal_on_life_loss``): computed here from
  the lives counter as Stable-Baselines3's ``EpisodicLifeEnv`` does, with the game left running;
- **episode statistics of whole games** in ``info["episode"]`` / ``info["_episode"]``, as
  gymnasium's ``RecordEpisodeStatistics`` under a ``SyncVectorEnv`` reports them: the raw score
  and the length in emulator frames, across lost lives;
- **rewards clipped** to their sign here (training), so the statistics keep the raw score;
- **frame stacks padded with the episode's first frame** (the C++ stack pads with zeros), as
  gymnasium's ``FrameStackObservation`` does and the replay memory assumes;
- **replay for resuming** (:meth:`AleVectorEnv.replay_episodes`): the sub-envs are not separate
  objects, so every env's episode is replayed from its seed in one lockstep pass.

What stays different from the chain (details of the preprocessing; docs/atari.md): 0 to
``noop_max - 1`` frames of no-ops and FIRE on a new game instead of 1 to ``noop_max`` no-ops
then FIRE and action 2 over a frame skip each (rewards during them are not in the score), the
max over the last two frames taken after the grayscale conversion instead of before (frames
differ only where those two frames differ), and the frame cap checked at the end of a step.
A lost life in training is the one difference in play: the chain then resets with NOOP (and
FIRE, action 2) steps the agent never sees; here the game simply goes on, since a vector env
cannot step one game alone. ``env.vectorization=auto`` therefore keeps the chain for games
with lives when a lost life ends training episodes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from qagent.config import EnvConfig

# What an ALE env's gymnasium kwargs (env.kwargs, and its spec's) may hold for AtariVectorEnv to build the same game.
KWARGS_KEYS = {"repeat_action_probability", "full_action_space", "max_num_frames_per_episode"}
SPEC_KEYS = {"game", "obs_type", "frameskip", *KWARGS_KEYS}  # the chain sets its own frame skip

RUNNING, LIFE_LOST, GAME_OVER = 0, 1, 2


def atari_vector_limits(config: EnvConfig, spec: gym.envs.registration.EnvSpec | None, *, exact: bool) -> list[str]:
    """What of ``config``'s training chain ``AtariVectorEnv`` cannot do, one phrase each; empty if it can.

    :param spec: the gymnasium spec of ``config.id`` (None for env plugins and unknown ids).
    :param exact: also count the lost-life reset, which it can only approximate (``env.vectorization=auto``).
    """
    kwargs = getattr(spec, "kwargs", None) or {}
    if spec is None or spec.entry_point != "ale_py.env:AtariEnv" or "game" not in kwargs:
        return [f"run {config.id!r}, which is not an ALE game"]
    limits = []
    if set(kwargs) - SPEC_KEYS:
        limits.append(f"make {config.id!r} with {sorted(set(kwargs) - SPEC_KEYS)} from its gymnasium spec")
    if kwargs.get("obs_type", "rgb") != "rgb":
        limits.append(f"give {config.id!r} {kwargs['obs_type']!r} observations")
    if extra := sorted(set(config.kwargs) - KWARGS_KEYS):
        limits.append(f"take env.kwargs {extra} (only {sorted(KWARGS_KEYS)})")
    if config.atari.observation != "pixels":
        limits.append(f"observe env.atari.observation={config.atari.observation} (pixels only)")
    if config.max_episode_steps is not None:
        limits.append("cap episodes by env.max_episode_steps (ALE games use env.atari.max_frames)")
    if config.shaping.potential is not None:
        limits.append("shape rewards (env.shaping wraps each env)")
    if exact and config.atari.terminal_on_life_loss and starting_lives(kwargs["game"]) > 0:
        limits.append(
            "reset after a lost life as the chain does (NOOP and FIRE steps the agent does not see), "
            "with env.atari.terminal_on_life_loss"
        )
    return limits


@functools.cache
def starting_lives(game: str) -> int:
    """Lives at the start of ``game`` (0 for games without lives, such as Pong)."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner
    ale = ale_py.ALEInterface()
    ale.loadROM(ale_py.roms.get_rom_path(game))
    return int(ale.lives())


class AleVectorEnv(gym.vector.VectorEnv):
    """``AtariVectorEnv`` with autoreset disabled, episodic life, whole-game statistics and replay.

    :param config: the env section (an ALE id that :func:`atari_vector_limits` accepts).
    :param spec: the gymnasium spec of ``config.id``.
    :param num_envs: games stepped together.
    :param training: lost lives end episodes and rewards are clipped, as ``env.atari`` says.
    :param num_threads: C++ worker threads; 0: one per env, at most one per core.
    """

    def __init__(
        self,
        config: EnvConfig,
        spec: gym.envs.registration.EnvSpec,
        num_envs: int,
        *,
        training: bool = True,
        num_threads: int = 0,
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv

        atari, kwargs = config.atari, config.kwargs  # as in the chain, env.kwargs win over env.atari and the spec
        sticky = atari.sticky_actions
        if sticky is None:
            sticky = 0.25 if config.id.startswith("ALE/") else 0.0
        self.max_frames = int(kwargs.get("max_num_frames_per_episode", atari.max_frames))
        self._vec = AtariVectorEnv(
            spec.kwargs["game"],
            num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=self.max_frames,  # counted after the reset's no-ops; see step
            repeat_action_probability=float(kwargs.get("repeat_action_probability", sticky)),
            full_action_space=bool(kwargs.get("full_action_space", spec.kwargs.get("full_action_space", False))),
            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,  # never reached: finished games are reset first
            img_height=atari.screen_size,
            img_width=atari.screen_size,
            stack_num=atari.frame_stack,
            frameskip=atari.frame_skip,
            maxpool=atari.frame_skip > 1,  # the chain has no max without a frame skip
            noop_max=atari.noop_max,
            use_fire_reset=True,  # FIRE on reset for games whose action set has it, as the chain does
            episodic_life=False,  # its lost life starts a new game; see step
            reward_clipping=False,  # clipped in step, so that the statistics keep the score
        )
        self.num_envs = num_envs
        self.single_observation_space = self._vec.single_observation_space
        self.single_action_space = self._vec.single_action_space
        self.observation_space = self._vec.observation_space
        self.action_space = self._vec.action_space
        self.metadata = {**self.metadata, "autoreset_mode": gym.vector.AutoresetMode.DISABLED}
        self.spec = spec
        self.frame_stack = atari.frame_stack
        """Frames per observation, for the replay memory (``frame_stack_of``)."""
        self.life_loss_ends = training and atari.terminal_on_life_loss
        self.clip_rewards = training and atari.clip_rewards
        self._obs = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._state = np.full(num_envs, GAME_OVER, dtype=np.int8)  # reset before the first step
        self._since_start = np.zeros(num_envs, dtype=np.int64)  # steps since the episode's first observation
        self._returns = np.zeros(num_envs)  # raw score of each game so far
        self._started = np.zeros(num_envs)  # perf_counter at each game's start

    # ------------------------------------------------------------------ the vector env

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the envs in ``options["reset_mask"]`` (all by default); ``seed`` as gymnasium's vector envs take it.

        An int seeds env ``i`` with ``seed + i``; a list gives each env its own (None: unseeded).
        An env whose episode ended on a lost life, reset without a seed, goes on with its game.
        """
        n = self.num_envs
        mask = np.ones(n, dtype=bool) if not options or options.get("reset_mask") is None else options["reset_mask"]
        mask = np.asarray(mask, dtype=bool)
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
        if len(seeds) != n or mask.shape != (n,):
            raise ValueError(f"expected {n} seeds and a reset mask of shape ({n},)")
        unseeded = np.array([s is None for s in seeds])
        new_game = mask & ~(unseeded & (self._state == LIFE_LOST))
        obs = np.array(self._obs)
        if new_game.any():
            chosen = [-1 if seeds[i] is None else seeds[i] % 2**31 for i in np.flatnonzero(new_game)]
            fresh, info = self._vec.reset(seed=np.array(chosen, dtype=np.int64), options={"reset_mask": new_game})
            obs[new_game] = fresh[new_game]
            self._lives[new_game] = info["lives"][new_game]
            self._returns[new_game] = 0.0
            self._started[new_game] = time.perf_counter()
        self._state[mask] = RUNNING
        self._since_start[mask] = 0
        self._obs = self._pad(obs)
        return np.array(self._obs), {"lives": self._lives.copy()}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; each finished env (``terminated | truncated``) must be reset before the next."""
        if (self._state != RUNNING).any():
            raise RuntimeError(f"reset envs {np.flatnonzero(self._state != RUNNING).tolist()} first (no autoreset)")
        actions = np.asarray(actions)
        if actions.dtype not in (np.int32, np.int64):
            actions = actions.astype(np.int64)
        obs, raw, terminated, truncated, info = self._vec.step(actions)
        truncated |= info["episode_frame_number"] >= self.max_frames  # the chain counts the reset's frames too
        raw = raw.astype(np.float64)
        self._returns += raw
        self._since_start += 1
        self._obs = obs = self._pad(obs)
        lives = info["lives"].astype(np.int64)
        lost = (lives > 0) & (lives < self._lives) if self.life_loss_ends else np.zeros(self.num_envs, dtype=bool)
        self._lives = lives
        over = terminated | truncated
        self._state = np.where(over, GAME_OVER, np.where(lost, LIFE_LOST, RUNNING)).astype(np.int8)
        if over.any():
            now = time.perf_counter()
            info["episode"] = {
                "r": np.where(over, self._returns, 0.0),
                "_r": over,
                "l": np.where(over, info["episode_frame_number"], 0).astype(np.int64),
                "_l": over,
                "t": np.where(over, np.round(now - self._started, 6), 0.0),
                "_t": over,
            }
            info["_episode"] = over
        reward = np.sign(raw) if self.clip_rewards else raw
        return obs, reward, terminated | lost, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self._vec.close()
        del self._vec  # the C++ threads stop when the interface goes

    # ------------------------------------------------------------------ resuming

    def replay_episodes(self, seeds: Sequence[int], logs: Sequence[Sequence[int]], continued: int = -1) -> np.ndarray:
        """Rebuild every env's episode: a reset with its seed, then its logged actions.

        The envs step together, so their replays are aligned at the end: an env with a shorter log
        starts later (until then it takes throwaway steps, which its seeded reset undoes).

        :param logs: each env's actions since its seeded reset; ``continued`` marks a reset after a lost life.
        :returns: the observations the envs are in afterwards.
        """
        n = self.num_envs
        steps = [sum(a != continued for a in log) for log in logs]
        total = max(steps, default=0)
        position = [0] * n  # next entry of each log
        for t in range(total + 1):
            starting = np.array([total - steps[i] == t for i in range(n)])
            if starting.any():
                chosen = [int(s) if go else None for s, go in zip(seeds, starting, strict=True)]
                self.reset(seed=chosen, options={"reset_mask": starting})
            playing = np.array([total - steps[i] <= t for i in range(n)])
            continuing = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(playing):
                while position[i] < len(logs[i]) and logs[i][position[i]] == continued:
                    continuing[i], position[i] = True, position[i] + 1
            idle = ~playing & (self._state != RUNNING)  # throwaway games that ended
            if (continuing | idle).any():
                self.reset(options={"reset_mask": continuing | idle})
            if t == total:
                break
            actions = np.zeros(n, dtype=np.int64)
            for i in np.flatnonzero(playing):
                actions[i], position[i] = logs[i][position[i]], position[i] + 1
            self.step(actions)
        return np.array(self._obs)

    # ------------------------------------------------------------------ internals

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        """Fill the stack slots from before each episode's start with its first frame (the C++ stack has zeros)."""
        k = self.frame_stack
        for i in np.flatnonzero(self._since_start < k - 1):
            first = k - 1 - self._since_start[i]
            obs[i, :first] = obs[i, first]
        return obs
