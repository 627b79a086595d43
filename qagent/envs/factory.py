"""Environment construction: registered env plugins or any gymnasium id, single or vectorized.

Vector envs run with gymnasium's autoreset disabled: the collector resets finished envs
itself, so the true final observation of every episode reaches the replay buffer and every
episode starts from a seed the run controls (which makes runs reproducible and resumable).
Training envs of ALE games may instead be ale-py's own vector env (``env.vectorization``,
:mod:`qagent.envs.ale_vector`), behind the same contract.
"""

from __future__ import annotations

import difflib
import importlib
from functools import partial
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

from qagent.config import EnvConfig
from qagent.envs.ale_vector import AleVectorEnv, atari_vector_limits
from qagent.envs.atari import is_atari, make_atari
from qagent.envs.minigrid import is_minigrid, make_minigrid
from qagent.envs.shaping import shape
from qagent.errors import ConfigError, UnknownNameError
from qagent.plugins.registries import ENVS

# gymnasium ids whose registration lives in an optional package: prefix -> (module, extra)
OPTIONAL_ID_PACKAGES: dict[str, tuple[str, str]] = {
    "ALE/": ("ale_py", "atari"),
    "MiniGrid-": ("minigrid", "minigrid"),
    "BabyAI-": ("minigrid", "minigrid"),
}


def _register_optional_ids(env_id: str) -> None:
    for prefix, (module_name, extra) in OPTIONAL_ID_PACKAGES.items():
        if not env_id.startswith(prefix) and not (module_name == "ale_py" and "NoFrameskip" in env_id):
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"env {env_id!r} needs the {module_name!r} package",
                hint=f"pip install 'qagent[{extra}]'",
            ) from None
        if module_name == "ale_py":
            module.ALEInterface.setLoggerMode(module.LoggerMode.Error)  # no banner on every env
            gym.register_envs(module)


def gymnasium_spec(env_id: str) -> gym.envs.registration.EnvSpec | None:
    """The gymnasium spec for ``env_id``, registering optional id families first; None if unknown."""
    _register_optional_ids(env_id)
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        return None


def check_env_id(env_id: str) -> None:
    """Raise :class:`UnknownNameError` with close matches if ``env_id`` names nothing."""
    if env_id in ENVS or gymnasium_spec(env_id) is not None:
        return
    gym_ids = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, sorted(ENVS.names()) + gym_ids, n=3, cutoff=0.6)
    message = f"unknown env {env_id!r}"
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    raise UnknownNameError(message, hint="use a gymnasium id such as CartPole-v1 or a name from 'qagent plugins list'")


def make_env(config: EnvConfig, *, training: bool = True, render_mode: str | None = None) -> gym.Env:
    """One environment with episode statistics (``info["episode"]`` at the end of each episode).

    ALE games get the standard DQN preprocessing (:mod:`qagent.envs.atari`); their statistics
    are those of the full game, so with the loss of a life as terminal (training), episodes
    that end on a lost life carry no ``info["episode"]``.

    :param training: False for evaluation copies (plugins and Atari preprocessing may differ).
    :param render_mode: passed to the env, e.g. ``"rgb_array"`` for videos.
    """
    check_env_id(config.id)
    kwargs: dict[str, Any] = dict(config.kwargs)
    atari = config.id not in ENVS and is_atari(gymnasium_spec(config.id))
    if atari and config.max_episode_steps is not None:
        raise ConfigError(
            "env.max_episode_steps does not apply to ALE games", hint="cap episodes with env.atari.max_frames"
        )
    try:
        if atari:
            env = make_atari(config.id, config.atari, training=training, render_mode=render_mode, kwargs=kwargs)
        elif is_minigrid(config.id) and config.id not in ENVS:
            env = make_minigrid(config.id, config.minigrid, render_mode, kwargs)
        else:
            if render_mode is not None:
                kwargs["render_mode"] = render_mode
            env = ENVS.get(config.id)(**kwargs) if config.id in ENVS else gym.make(config.id, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"env {config.id!r} rejected env.kwargs {config.kwargs}: {exc}") from None
    except Exception as exc:
        from qagent.plugins.discovery import blamed_plugin

        if blamed_plugin(exc) is not None:
            raise  # the CLI names the plugin and its line
        raise ConfigError(
            f"env {config.id!r} failed to start: {type(exc).__name__}: {str(exc).strip()[:300]}",
            hint="check env.kwargs, or the env's own requirements",
        ) from None
    if not atari:
        if config.max_episode_steps is not None:
            env = TimeLimit(env, max_episode_steps=config.max_episode_steps)
        env = RecordEpisodeStatistics(env)
    if training and config.shaping.potential is not None:
        env = shape(env, config.shaping, config.shaping.gamma or 0.99)  # outside the raw-return statistics
    return env


def frame_stack_of(env: gym.Env | gym.vector.VectorEnv) -> int | None:
    """How many frames each observation stacks (``FrameStackObservation`` in the chain), or None.

    A vector env answers for its sub-envs: its own ``frame_stack`` (:class:`AleVectorEnv`), else
    its first sub-env's (``SyncVectorEnv``).
    """
    if not isinstance(env, gym.Env):
        stack = getattr(env, "frame_stack", None)
        if stack is not None:
            return int(stack)
        sub_envs = getattr(env, "envs", None)
        return frame_stack_of(sub_envs[0]) if sub_envs else None
    layer: gym.Env = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.FrameStackObservation):
            return int(layer.stack_size)
        layer = layer.env
    return None


def make_vector_env(config: EnvConfig, num_envs: int, *, training: bool = True) -> gym.vector.VectorEnv:
    """``num_envs`` copies stepped together, without autoreset (the caller resets finished envs).

    Training envs of ALE games are ale-py's ``AtariVectorEnv`` (:class:`AleVectorEnv`) when
    ``env.vectorization`` is ``ale``, or ``auto`` and it plays as the wrapper chain does;
    otherwise, and for evaluation (which needs each env, ``envs.envs``), a ``SyncVectorEnv``.
    """
    if training and config.vectorization != "gymnasium":
        check_env_id(config.id)
        spec = None if config.id in ENVS else gymnasium_spec(config.id)
        limits = atari_vector_limits(config, spec, exact=config.vectorization == "auto")
        if not limits:
            return AleVectorEnv(config, spec, num_envs, training=True)
        if config.vectorization == "ale":
            raise ConfigError(
                "env.vectorization=ale: ale-py's AtariVectorEnv cannot " + "; nor ".join(limits),
                hint="use env.vectorization=auto or gymnasium (the wrapper chain)",
            )
    return gym.vector.SyncVectorEnv(
        [partial(make_env, config, training=training) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
