"""The collector: acts in vectorized envs and writes transitions to replay.

It is one half of the collector/learner split: it reads the policy (Q-values) and the
exploration strategy, and writes to the replay buffer; it never touches the optimizer.

Every episode starts from a seed drawn from the collector's own generator, and the actions
taken since that reset are kept. A checkpoint stores both, so a resumed run rebuilds each
env's state by replaying its current episode: exact for any env that is deterministic
given its seed (all gymnasium classic-control and ALE envs are). When the loss of a life ends
an episode (Atari, training), the game goes on after the reset; the log then records the reset
and keeps the game's seed.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from qagent.agents.exploration import ActionValues, ExplorationStrategy, checked_actions
from qagent.agents.replay.buffer import Batch, Replay

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


class Collector:
    """Steps ``envs`` (autoreset disabled) with the policy plus exploration.

    :param envs: vector env whose sub-envs report ``info["episode"]`` at episode ends.
    :param q_values: ``obs_batch -> q_BA``, the policy's Q-values.
    :param exploration: turns Q-values into actions.
    :param buffer: receives one transition per env per step.
    :param seed: seeds the generator that draws each episode's reset seed.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        q_values: Callable[[np.ndarray], np.ndarray],
        exploration: ExplorationStrategy,
        buffer: Replay,
        seed: int,
    ) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.q_values = q_values
        self.exploration = exploration
        self.buffer = buffer
        self.n_actions = int(envs.single_action_space.n)
        self.seed_rng = np.random.default_rng(seed)
        self.episode_seeds = np.zeros(self.num_envs, dtype=np.int64)
        self.actions: list[list[int]] = [[] for _ in range(self.num_envs)]
        everyone = np.ones(self.num_envs, dtype=bool)
        self.obs = self._reset(everyone, everyone)

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
        reset_obs, _ = self.envs.reset(seed=[int(s) for s in seeds], options={"reset_mask": mask})
        if obs is None:
            return reset_obs
        obs[mask] = reset_obs[mask]
        return obs

    def collect(self, vector_steps: int, step: int) -> list[Episode]:
        """Take ``vector_steps`` steps in every env, starting at global env step ``step``.

        :returns: the episodes (whole games) that ended, in order.
        """
        episodes: list[Episode] = []
        n = self.num_envs
        for k in range(vector_steps):
            now = step + k * n
            chosen = self.exploration.select(ActionValues(self.obs, self.q_values, self.n_actions), now)
            actions = checked_actions(self.exploration, chosen, n)
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
            self.buffer.add(self.obs, actions, reward, next_obs, terminated, truncated)
            for i in range(n):
                self.actions[i].append(int(actions[i]))
            done = terminated | truncated
            if done.any():
                finished = done & info.get("_episode", np.zeros(n, dtype=bool))
                if finished.any():
                    stats = info["episode"]
                    shaped = info.get("shaped_return")
                    for i in np.flatnonzero(finished):
                        shaped_i = None if shaped is None else float(shaped[i])
                        episodes.append(Episode(now + n, float(stats["r"][i]), int(stats["l"][i]), shaped_i))
                next_obs = self._reset(done, finished, next_obs)
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
        self.seed_rng.bit_generator.state = state["seed_rng"]
        self.episode_seeds[:] = state["episode_seeds"]
        self.actions = [list(a) for a in state["actions"]]
        saved_obs = np.asarray(state["obs"], dtype=self.obs.dtype)
        sub_envs = getattr(self.envs, "envs", None)
        if sub_envs is None:
            raise TypeError("resuming needs a SyncVectorEnv (its sub-envs are replayed one by one)")
        obs = np.array(self.obs)
        diverged = np.zeros(self.num_envs, dtype=bool)
        for i, env in enumerate(sub_envs):
            obs_i, _ = env.reset(seed=int(self.episode_seeds[i]))
            for action in self.actions[i]:
                obs_i = env.reset()[0] if action == RESET else env.step(action)[0]
            obs[i] = obs_i
            diverged[i] = not np.array_equal(obs[i], saved_obs[i])
        self.obs = obs
        if diverged.any():
            warnings.warn(
                f"env {self.envs.spec.id if self.envs.spec else ''} did not replay to its saved state "
                "(it is not deterministic under seeding); those episodes restart",
                stacklevel=2,
            )
            self.obs = self._reset(diverged, diverged, self.obs)


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


class BackgroundCollector:
    """Runs a :class:`Collector` in a thread, up to ``lead`` env steps ahead of the learner.

    It acts with its own copy of the online network, refreshed by :meth:`publish` after each
    training round, so collection and learning overlap on two cores. The order of events then
    depends on thread timing: runs are not bit-for-bit reproducible, unlike the serial loop.

    :param collector: the collector to drive (its buffer should be a :class:`SharedReplay`).
    :param network: the online network, copied for acting.
    :param collected: env steps collected so far.
    :param lead: how many env steps the collector may run ahead of what the learner asked for.
    """

    def __init__(self, collector: Collector, network: nn.Module, collected: int, lead: int) -> None:
        self.collector = collector
        self.collected = collected
        self.lead = lead
        self._acting = copy.deepcopy(network).requires_grad_(False)
        self._spare = copy.deepcopy(network).requires_grad_(False)
        self._net_lock = threading.Lock()
        collector.q_values = self._q_values
        self._limit = collected
        self._episodes: list[Episode] = []
        self._cond = threading.Condition()
        self._stopping = self._paused = self._busy = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qagent-collector", daemon=True)
        self._thread.start()

    def _q_values(self, obs: np.ndarray) -> np.ndarray:
        with self._net_lock, torch.inference_mode():
            return self._acting(torch.as_tensor(obs)).numpy()

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

    def publish(self, network: nn.Module) -> None:
        """Give the collector the learner's current weights (copied, then swapped in)."""
        with torch.no_grad():
            for spare, online in zip(self._spare.state_dict().values(), network.state_dict().values(), strict=True):
                spare.copy_(online)
        with self._net_lock:
            self._acting, self._spare = self._spare, self._acting

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
