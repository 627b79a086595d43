"""The collector: steps vectorized envs with an agent's actor and keeps the episode bookkeeping.

It is one half of the collector/learner split: the actor (:class:`qagent.agents.base.Actor`)
chooses the actions and writes what it saw to the agent's memory; the collector steps the envs,
resets them, and records finished episodes. It never touches a network or an optimizer, so
every agent (h-DQN included) collects through this one class.

Every episode starts from a seed drawn from the collector's own generator, and the actions
taken since that reset are kept. A checkpoint stores both, so a resumed run rebuilds each
env's state by replaying its current episode: exact for any env that is deterministic
given its seed (all gymnasium classic-control and ALE envs are). When the loss of a life ends
an episode (Atari, training), the game goes on after the reset; the log then records the reset
and keeps the game's seed.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from qagent.agents.base import Actor, Policy, Transition
from qagent.agents.replay import Batch, Replay

RESET = -1  # in an env's action log: a reset that continued the game (a lost life)


@dataclass(frozen=True)
class Episode:
    """A finished training episode, as recorded by ``RecordEpisodeStatistics``."""

    step: int
    """Env step (over all envs) at which it ended."""
    ret: float
    length: int
    shaped: float | None = None
    """The shaped return, when rewards are shaped (``ret`` is always the env's own)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """More per-episode metrics from the actor (h-DQN's intrinsic return), logged at ``step``."""


class Collector:
    """Steps ``envs`` (autoreset disabled) with ``actor``.

    :param envs: vector env whose sub-envs report ``info["episode"]`` at episode ends.
    :param actor: chooses actions and writes transitions to its agent's memory.
    :param seed: seeds the generator that draws each episode's reset seed.
    """

    def __init__(self, envs: gym.vector.VectorEnv, actor: Actor, seed: int) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.actor = actor
        self.seed_rng = np.random.default_rng(seed)
        self.episode_seeds = np.zeros(self.num_envs, dtype=np.int64)
        self.actions: list[list[int]] = [[] for _ in range(self.num_envs)]
        everyone = np.ones(self.num_envs, dtype=bool)
        self.obs = self._reset(everyone, everyone)
        actor.episodes_started(everyone, self.obs)

    def _reset(self, mask: np.ndarray, real: np.ndarray, obs: np.ndarray | None = None) -> np.ndarray:
        """Reset the envs in ``mask``; ``real`` ones start a new game from a fresh seed.

        The others ended on a lost life (Atari in training): their reset continues the game,
        so the replay log records it instead of starting over.
        """
        seeds = self.seed_rng.integers(0, 2**31 - 1, size=self.num_envs)
        self.episode_seeds[real] = seeds[real]
        for i in np.flatnonzero(mask):
            if real[i]:
                self.actions[i] = []
            else:
                self.actions[i].append(RESET)
        # A lost life is reset without a seed: the seed is what tells a new game (see qagent.envs.atari).
        reset_seeds = [int(s) if r else None for s, r in zip(seeds, real, strict=True)]
        reset_obs, _ = self.envs.reset(seed=reset_seeds, options={"reset_mask": mask})
        if obs is None:
            return reset_obs
        obs[mask] = reset_obs[mask]
        return obs

    def collect(self, vector_steps: int, step: int) -> list[Episode]:
        """Take ``vector_steps`` steps in every env, starting at global env step ``step``.

        :returns: the episodes (whole games) that ended, in order.
        """
        episodes: list[Episode] = []
        n, actor = self.num_envs, self.actor
        for k in range(vector_steps):
            now = step + k * n
            actions = actor.act(self.obs, now)
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
            actor.observe(Transition(self.obs, actions, reward, next_obs, terminated, truncated))
            for i in range(n):
                self.actions[i].append(int(actions[i]))
            done = terminated | truncated
            if done.any():
                finished = done & info.get("_episode", np.zeros(n, dtype=bool))
                if finished.any():
                    stats, shaped = info["episode"], info.get("shaped_return")
                    indices = np.flatnonzero(finished)
                    for i, metrics in zip(indices, actor.episodes_ended(indices), strict=True):
                        shaped_i = None if shaped is None else float(shaped[i])
                        episodes.append(Episode(now + n, float(stats["r"][i]), int(stats["l"][i]), shaped_i, metrics))
                next_obs = self._reset(done, finished, next_obs)
                actor.episodes_started(done, next_obs)
            self.obs = next_obs
        return episodes

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed_rng": self.seed_rng.bit_generator.state,
            "episode_seeds": [int(s) for s in self.episode_seeds],
            "actions": [list(a) for a in self.actions],
            "obs": np.array(self.obs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild every env's current episode by replaying its actions from its seed."""
        if "seed_rng" not in state:  # saved by actors on Ray (distributed.actors): their episodes are gone
            warnings.warn(
                "the checkpoint's episodes were collected by Ray actors; these envs start new ones", stacklevel=2
            )
            return
        self.seed_rng.bit_generator.state = state["seed_rng"]
        self.episode_seeds[:] = state["episode_seeds"]
        self.actions = [list(a) for a in state["actions"]]
        saved_obs = np.asarray(state["obs"], dtype=self.obs.dtype)
        sub_envs = getattr(self.envs, "envs", None)
        replay = getattr(self.envs, "replay_episodes", None)  # ale-py's vector env replays all envs at once
        if sub_envs is None and replay is None:
            raise TypeError("resuming needs a SyncVectorEnv (its sub-envs are replayed one by one)")
        if replay is not None:
            obs = replay([int(s) for s in self.episode_seeds], self.actions, RESET)
        else:
            obs = np.array(self.obs)
            for i, env in enumerate(sub_envs):
                obs_i, _ = env.reset(seed=int(self.episode_seeds[i]))
                for action in self.actions[i]:
                    obs_i = env.reset()[0] if action == RESET else env.step(action)[0]
                obs[i] = obs_i
        diverged = np.array([not np.array_equal(obs[i], saved_obs[i]) for i in range(self.num_envs)])
        self.obs = obs
        if diverged.any():
            warnings.warn(
                f"env {self.envs.spec.id if self.envs.spec else ''} did not replay to its saved state "
                "(it is not deterministic under seeding); those episodes restart",
                stacklevel=2,
            )
            self.obs = self._reset(diverged, diverged, self.obs)
            self.actor.episodes_started(diverged, self.obs)


class SharedReplay:
    """A replay memory written by the collector thread and read by the learner, under one lock.

    Uniform sampling gathers a whole training round at its first batch (one fancy-index per
    array), so the collector waits only for that copy, never for gradient steps.
    """

    def __init__(self, inner: Replay) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def add(self, *transition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            return self.inner.add(*transition)

    def sample_many(self, count: int, batch_size: int, progress: float = 0.0) -> Iterator[Batch]:
        batches = self.inner.sample_many(count, batch_size, progress)
        while True:  # each batch under the lock; prioritized sampling draws lazily, after priority updates
            with self.lock:
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    def update_priorities(self, indices: np.ndarray, priorities: Any) -> None:
        with self.lock:
            self.inner.update_priorities(indices, priorities)

    def save(self, path: Path) -> None:
        with self.lock:
            self.inner.save(path)

    def load(self, path: Path) -> None:
        with self.lock:
            self.inner.load(path)

    def __len__(self) -> int:
        return len(self.inner)


class SharedPolicy:
    """A copy of the learner's policy that a collector thread acts with and the learner refreshes.

    The lock makes each refresh whole: an acting step sees the old weights or the new ones.
    """

    def __init__(self, policy: Policy) -> None:
        self.inner = policy.copy()
        self.lock = threading.Lock()

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.inner.q_values(obs)

    def load_weights(self, weights: dict[str, Any]) -> None:
        with self.lock:
            self.inner.load_weights(weights)


class BackgroundCollector:
    """Runs a :class:`Collector` in a thread, up to ``lead`` env steps ahead of the learner.

    Its actor acts with a :class:`SharedPolicy`, refreshed by :meth:`publish` after each
    training round, so collection and learning overlap on two cores. The order of events then
    depends on thread timing: runs are not bit-for-bit reproducible, unlike the serial loop.

    :param collector: the collector to drive (its actor's memory should be a :class:`SharedReplay`).
    :param policy: the policy its actor acts with.
    :param collected: env steps collected so far.
    :param lead: how many env steps the collector may run ahead of what the learner asked for.
    """

    def __init__(self, collector: Collector, policy: SharedPolicy, collected: int, lead: int) -> None:
        self.collector = collector
        self.policy = policy
        self.collected = collected
        self.lead = lead
        self._limit = collected
        self._episodes: list[Episode] = []
        self._cond = threading.Condition()
        self._stopping = self._paused = self._busy = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qagent-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping or (not self._paused and self.collected < self._limit))
                    if self._stopping:
                        return
                    self._busy, step = True, self.collected
                episodes = self.collector.collect(1, step)
                with self._cond:
                    self.collected += self.collector.num_envs
                    self._episodes.extend(episodes)
                    self._busy = False
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the learner's thread
            with self._cond:
                self._error, self._busy = exc, False
                self._cond.notify_all()

    def collect_to(self, target: int) -> list[Episode]:
        """Let the collector run to ``target + lead``; wait until it has reached ``target``.

        :returns: the episodes finished since the last call.
        """
        with self._cond:
            self._limit = max(self._limit, target + self.lead)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.collected >= target or self._error is not None)
            if self._error is not None:
                raise self._error
            episodes, self._episodes = self._episodes, []
        return episodes

    def publish(self, policy: Policy, updates: int) -> None:
        """Give the collector's actor the learner's current weights."""
        self.policy.load_weights(policy.weights())

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the collector between two env steps (for a consistent checkpoint)."""
        with self._cond:
            self._paused = True
            self._cond.wait_for(lambda: not self._busy)
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
