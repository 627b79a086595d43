"""Ape-X-style collection on Ray: N actor processes feed the learner's memory (``--actors N``).

Horgan et al. 2018 ("Distributed Prioritized Experience Replay") split DQN into many actors that
act with a recent copy of the network and one learner that owns the replay memory. Here that
is one more collector of the one training loop (:class:`qagent.training.loop.Trainer`):

- each actor process (:class:`ActorWorker`) builds the run's envs and the agent's own
  :class:`~qagent.agents.base.Actor`, acting with a CPU copy of the policy; instead of a memory
  the actor writes to a :class:`MemoryRecorder`, whose ``add`` calls travel to the learner in
  chunks of ``distributed.chunk_steps`` vector steps (frames stay uint8, as the envs give them),
  with initial priorities (one-step TD errors) when replay is prioritized;
- the learner (:class:`RayCollector`) applies those calls to the agent's memory, each actor's
  envs being their own streams of it, so n-step windows and de-duplicated frames work as in
  one process, for every agent (h-DQN's two memories included);
- at most ``distributed.max_in_flight`` chunks per actor are requested and not yet taken:
  the back-pressure that holds the replay ratio at the agent's own schedule, as the loop
  calls ``agent.learn`` per env step taken, whoever collected it;
- every ``distributed.publish_every`` updates the learner puts a weights snapshot in Ray's
  object store once and hands its reference to each actor with its next request;
- an actor process that dies is started again (``actors/restarts``) and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import time
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qagent.agents.base import Memory, Policy
from qagent.config import RunConfig, resolve_config
from qagent.envs.factory import frame_stack_of
from qagent.errors import QAgentError
from qagent.training.collector import Episode
from qagent.training.ray_cluster import ray_session

MAX_FAILURES_IN_ROW = 3  # an actor that dies this often without delivering a chunk is a bug, not bad luck
SCHEDULE_SECONDS = 300  # for Ray to place and build an actor (it waits while no CPU is free)


def _ray_failures() -> tuple[type[BaseException], ...]:
    """What a chunk's reference raises when its actor process or its node is gone."""
    import ray

    return (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)


class MemoryRecorder:
    """Stands in for an agent's memory in an actor process: records each ``add``.

    An actor writes through ``memory.add(...)`` or through a part of its memory
    (``memory.meta.add(...)`` for h-DQN's D2); the recorder keeps the path and the arrays, and
    :func:`apply_calls` repeats them on the learner's real memory.
    """

    def __init__(self, path: tuple[str, ...] = (), log: list[tuple] | None = None) -> None:
        self._path = path
        self._log: list[tuple] = [] if log is None else log

    def __getattr__(self, name: str) -> MemoryRecorder:
        if name.startswith("_"):
            raise AttributeError(name)
        return MemoryRecorder((*self._path, name), self._log)

    def add(self, *arrays: np.ndarray, envs: np.ndarray | None = None, **named: np.ndarray | None) -> None:
        """Record one ``add`` (copied: the collector reuses its arrays), with its named arrays (D1's goals)."""
        copied = tuple(np.array(a) for a in arrays)
        extra = {key: None if value is None else np.array(value) for key, value in named.items()}
        self._log.append((self._path, copied, None if envs is None else np.array(envs), extra))

    def __len__(self) -> int:
        return 0

    def drain(self) -> list[tuple]:
        """The calls recorded since the last drain."""
        calls = list(self._log)
        self._log.clear()
        return calls


def apply_calls(
    memory: Memory, calls: list[tuple], first_stream: int, priorities: list[np.ndarray | None] | None = None
) -> None:
    """Repeat an actor's recorded ``add`` calls on ``memory``, its envs being streams ``first_stream, ...``.

    :param priorities: per call, the initial priorities of its transitions (prioritized replay), or None.
    """
    for k, (path, arrays, envs, named) in enumerate(calls):
        target: Any = memory
        for name in path:
            target = getattr(target, name)
        rows = len(arrays[1])
        local = np.arange(rows) if envs is None else envs
        slots, _ = target.add(*arrays, envs=first_stream + local, **named)
        if priorities is not None and priorities[k] is not None:
            target.update_priorities(slots, priorities[k])


def initial_priorities(policy: Policy, calls: list[tuple], gamma: float) -> list[np.ndarray | None]:
    """Ape-X's initial priorities: each transition's one-step |TD error| under the acting network.

    Only for writes to the memory itself (a flat replay of ``(obs, action, reward, next_obs,
    terminated, truncated)``); writes to parts of a memory (h-DQN's) get the learner's default,
    the largest priority so far. One forward pass covers the whole chunk.
    """
    flat = [k for k, call in enumerate(calls) if call[0] == ()]
    out: list[np.ndarray | None] = [None] * len(calls)
    if not flat:
        return out
    obs, action, reward, next_obs, terminated = (
        np.concatenate([calls[k][1][field] for k in flat]) for field in range(5)
    )
    q = policy.q_values(np.concatenate([obs, next_obs]))
    q_taken = q[np.arange(len(obs)), np.asarray(action, dtype=np.int64)]
    target = reward + gamma * (1.0 - terminated.astype(np.float32)) * q[len(obs) :].max(axis=1)
    td = np.abs(target - q_taken)
    start = 0
    for k in flat:
        rows = len(calls[k][1][1])
        out[k] = td[start : start + rows]
        start += rows
    return out


@dataclasses.dataclass
class ActorStreams:
    """What ``agent.make_memory`` needs to size the learner's memory for every actor's envs.

    :param probe: one real vector env of the run (it tells the spaces and the frame stack that
        the replay de-duplicates).
    :param num_envs: envs over all actors: one memory stream each.
    """

    probe: Any
    num_envs: int

    @property
    def single_observation_space(self) -> Any:
        return self.probe.single_observation_space

    @property
    def single_action_space(self) -> Any:
        return self.probe.single_action_space

    @property
    def frame_stack(self) -> int | None:
        return frame_stack_of(self.probe)


def apex_epsilon(index: int, actors: int, base: float, alpha: float) -> float:
    """Ape-X's fixed epsilon of actor ``index`` of ``actors``: ``base ** (1 + alpha * i / (N - 1))``."""
    if actors == 1:
        return base
    return base ** (1.0 + alpha * index / (actors - 1))


@dataclasses.dataclass
class Chunk:
    """What an actor sends after ``env_steps`` env steps."""

    index: int
    calls: list[tuple]
    priorities: list[np.ndarray | None] | None
    """Initial priorities per call (prioritized replay), or None."""
    episodes: list[Episode]
    env_steps: int
    seconds: float
    version: int
    """The learner's update count when the weights the actor acted with were published."""
    metrics: dict[str, float]
    epsilon: float | None


class ActorWorker:
    """One actor process: the run's envs, the agent's actor with a CPU policy copy, a recorder.

    Ray makes it a remote class (:func:`remote_worker`); it is a plain class so it can also be
    run in-process.
    """

    def __init__(
        self,
        config: dict[str, Any],
        plugins: list[str],
        index: int,
        seed: int,
        weights: dict[str, Any],
        version: int,
        overrides: list[str],
    ) -> None:
        import torch

        from qagent.envs.factory import make_vector_env
        from qagent.plugins.discovery import load_builtins, load_plugins
        from qagent.training.build import build_agent, build_exploration
        from qagent.training.collector import Collector

        torch.set_num_threads(1)  # one core per actor; the learner has its own
        load_builtins()
        load_plugins(plugins, ambient=False)
        run_config = resolve_config(config, overrides)
        self.index = index
        seeds = [int(s.generate_state(1)[0]) % 2**30 for s in np.random.SeedSequence(seed).spawn(3)]
        self.envs = make_vector_env(run_config.env, run_config.env.num_envs, training=True)
        agent = build_agent(run_config, self.envs.single_observation_space, self.envs.single_action_space)
        exploration = build_exploration(run_config, agent.n_actions, seed=seeds[0])
        exploration.prepare(agent)
        self.policy: Policy = agent.policy
        self.policy.load_weights(weights)
        self.version = version
        gamma = getattr(run_config.agent, "gamma", None)
        self.td_gamma = float(gamma) if run_config.replay.prioritized and gamma is not None else None
        self.recorder = MemoryRecorder()
        self.actor = agent.actor(exploration, self.envs, self.recorder, seeds[1])
        self.collector = Collector(self.envs, self.actor, seed=seeds[2])

    def pid(self) -> int:
        return os.getpid()

    def collect(
        self, vector_steps: int, step: int, weights: dict[str, Any] | None = None, version: int | None = None
    ) -> Chunk:
        """Take ``vector_steps`` steps from global env step ``step`` (with new weights, if given)."""
        if weights is not None:
            self.policy.load_weights(weights)
            self.version = int(version or 0)
        t0 = time.perf_counter()
        episodes = self.collector.collect(vector_steps, step)
        calls = self.recorder.drain()
        priorities = None
        if self.td_gamma is not None:
            priorities = initial_priorities(self.policy, calls, self.td_gamma)
        return Chunk(
            index=self.index,
            calls=calls,
            priorities=priorities,
            episodes=episodes,
            env_steps=vector_steps * self.collector.num_envs,
            seconds=time.perf_counter() - t0,
            version=self.version,
            metrics=self.actor.metrics(step),
            epsilon=self.actor.epsilon(step),
        )


def remote_worker() -> Any:
    """:class:`ActorWorker` as a Ray actor class, one CPU each."""
    import ray

    return ray.remote(num_cpus=1, max_restarts=0)(ActorWorker)


class RemoteActors:
    """The learner's view of its actors where the loop expects its actor: metrics, epsilon, summary.

    Each actor reports with every chunk; the values logged are the mean over actors of the
    latest reports, plus the collection's own figures (see :meth:`RayCollector.metrics`).
    """

    def __init__(self, collection: RayCollector) -> None:
        self.collection = collection
        self.latest: dict[int, tuple[dict[str, float], float | None]] = {}
        """Per actor, the metrics and epsilon of its newest chunk (not the chunk: its arrays live in Ray's store)."""

    def metrics(self, step: int) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for metrics, _ in self.latest.values():
            for key, value in metrics.items():
                sums.setdefault(key, []).append(float(value))
        out = {key: sum(values) / len(values) for key, values in sums.items()}
        return {**out, **self.collection.metrics()}

    def epsilon(self, step: int) -> float | None:
        first = self.latest.get(0)
        return first[1] if first is not None else None

    def summary(self) -> dict[str, Any]:
        return {"actors": self.collection.actors, "actor_restarts": self.collection.restarts}

    def state_dict(self) -> dict[str, Any]:
        return {}  # actors start afresh when a distributed run resumes (see RayCollector)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class RayCollector:
    """Collects with ``distributed.actors`` Ray actor processes into ``memory``.

    It plays the part of the background collector in :class:`~qagent.training.loop.Trainer`:
    :meth:`collect_to`, :meth:`publish`, :meth:`paused`, :meth:`stop` and ``collected``.
    A resumed run starts its actors afresh (new episodes, seeds drawn from the resumed step);
    the learner, its memory and every counter continue.

    :param status_file: where the actors' process ids and restarts are written (RUN_DIR/actors.json).
    """

    def __init__(
        self, config: RunConfig, plugins: list[str], memory: Memory, seed: int, status_file: Path | None = None
    ) -> None:
        if importlib.util.find_spec("ray") is None:  # before the run starts, so it leaves nothing behind
            raise QAgentError("distributed.actors (--actors) needs Ray", hint="pip install 'qagent[ray]'")
        dist = config.distributed
        self.config = config
        self.plugins = list(plugins)
        self.memory = memory
        self.seed = seed
        self.status_file = status_file
        self.actors = dist.actors
        self.per_actor = config.env.num_envs
        self.num_envs = self.actors * self.per_actor
        self.collected = 0
        self.restarts = 0
        self.reports = RemoteActors(self)
        self._workers: list[Any] = []
        self._pids: list[int] = []
        self._spawned = [0] * self.actors
        self._failures = [0] * self.actors
        self._queues: list[deque] = []  # per actor, its chunks requested and not yet taken, oldest first
        self._sent_version = [-1] * self.actors
        self._version = 0  # the learner's updates when the newest snapshot was published
        self._updates = 0  # the learner's updates now
        self._weights_ref: Any = None
        self._ray = contextlib.ExitStack()
        self._window = self._new_window()

    # ------------------------------------------------------------------ lifecycle

    def start(self, collected: int, policy: Policy, updates: int) -> None:
        """Start Ray (unless it runs already) and the actors, acting with ``policy``'s weights."""
        import ray

        dist = self.config.distributed
        self.collected = collected
        self._ray.enter_context(ray_session(dist.address, dist.num_cpus or self.actors + 1))
        self._version = self._updates = updates
        self._weights_ref = ray.put(policy.weights())
        self._worker_class = remote_worker()
        self._workers = [None] * self.actors
        self._pids = [0] * self.actors
        self._queues = [deque() for _ in range(self.actors)]
        pending = {i: self._launch(i) for i in range(self.actors)}
        try:
            ready = ray.get(list(pending.values()), timeout=SCHEDULE_SECONDS)
        except ray.exceptions.GetTimeoutError:
            raise QAgentError(
                f"the {self.actors} actors did not all start within {SCHEDULE_SECONDS} s: Ray has "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs for them, one each",
                hint="use fewer --actors, or more CPUs (distributed.num_cpus, or a larger cluster)",
            ) from None
        except _ray_failures() as exc:
            raise QAgentError(
                f"an actor could not start: {_last_line(exc)}",
                hint="run without --actors to see the error in this process",
            ) from None
        for i, pid in zip(pending, ready, strict=True):
            self._started(i, pid)
        self._window = self._new_window()

    def _launch(self, i: int) -> Any:
        """Create actor ``i`` (again); returns the reference of its process id, ready once it is built."""
        dist = self.config.distributed
        overrides = []
        if dist.apex_epsilon:
            eps = apex_epsilon(i, self.actors, dist.apex_base, dist.apex_alpha)
            overrides = [f"exploration.start={eps}", f"exploration.end={eps}"]
        seed = [self.seed, i, self._spawned[i], self.collected]
        self._spawned[i] += 1
        worker = self._worker_class.remote(
            self.config.to_dict(), self.plugins, i, seed, self._weights_ref, self._version, overrides
        )
        self._workers[i] = worker
        self._sent_version[i] = self._version
        return worker.pid.remote()

    def _started(self, i: int, pid: int) -> None:
        """Actor ``i`` runs: its streams' episodes in progress (a dead actor's, a resumed run's) end,
        and it gets its first chunks to collect."""
        self._pids[i] = int(pid)
        self._write_status()
        end_episodes = getattr(self.memory, "end_episodes", None)
        if end_episodes is not None:
            end_episodes(np.arange(i * self.per_actor, (i + 1) * self.per_actor))
        for _ in range(self.config.distributed.max_in_flight):
            self._request(i)

    def _request(self, i: int) -> None:
        worker = self._workers[i]
        weights = version = None
        if self._sent_version[i] != self._version:
            weights, version = self._weights_ref, self._version
            self._sent_version[i] = self._version
        ref = worker.collect.remote(self.config.distributed.chunk_steps, self.collected, weights, version)
        self._queues[i].append(ref)

    def _restart(self, i: int, exc: BaseException) -> None:
        """Replace dead actor ``i``; give up after ``MAX_FAILURES_IN_ROW`` deaths without a chunk."""
        import ray

        while True:
            self._failures[i] += 1
            if self._failures[i] >= MAX_FAILURES_IN_ROW:
                raise QAgentError(
                    f"actor {i} died {self._failures[i]} times in a row: {_last_line(exc)}",
                    hint="run without --actors to see the error in this process",
                )
            self._queues[i].clear()
            with contextlib.suppress(Exception):
                ray.kill(self._workers[i], no_restart=True)
            self.restarts += 1
            warnings.warn(f"actor {i} died ({_last_line(exc)}); starting it again", stacklevel=3)
            try:
                pid = ray.get(self._launch(i), timeout=SCHEDULE_SECONDS)
            except (*_ray_failures(), ray.exceptions.GetTimeoutError) as again:
                exc = again
                continue
            self._started(i, pid)
            return

    def stop(self) -> None:
        """Stop every actor (and the local Ray that :meth:`start` started); safe after a failed start."""
        import ray

        for worker in self._workers:
            if worker is not None:
                with contextlib.suppress(Exception):
                    ray.kill(worker, no_restart=True)
        self._workers, self._queues, self._weights_ref = [], [], None
        self._ray.close()

    # ------------------------------------------------------------------ the collector's part in the loop

    def collect_to(self, target: int) -> list[Episode]:
        """Take actors' chunks into the memory until ``target`` env steps are collected.

        Each actor's chunks are taken in the order it collected them (its memory streams
        continue from one chunk to the next); the episodes they finished are recorded at ``target``.
        """
        import ray

        episodes: list[Episode] = []
        while self.collected < target:
            heads = {queue[0]: i for i, queue in enumerate(self._queues) if queue}
            ready, _ = ray.wait(list(heads), num_returns=1)
            i = heads[ready[0]]
            self._queues[i].popleft()
            try:
                chunk: Chunk = ray.get(ready[0])
            except _ray_failures() as exc:
                self._restart(i, exc)
                continue
            self._failures[i] = 0
            apply_calls(self.memory, chunk.calls, i * self.per_actor, chunk.priorities)
            self.collected += chunk.env_steps
            episodes.extend(dataclasses.replace(e, step=target) for e in chunk.episodes)
            self.reports.latest[i] = (chunk.metrics, chunk.epsilon)
            self._window["env_steps"] += chunk.env_steps
            self._window["lag"] += self._updates - chunk.version
            self._window["chunks"] += 1
            self._request(i)
        return episodes

    def publish(self, policy: Policy, updates: int) -> None:
        """A new weights snapshot for the actors once ``publish_every`` updates have passed."""
        import ray

        self._updates = updates
        self._window["updates"] = updates
        if self._window["start"] is None:
            self._window["start"] = updates
        if updates - self._version < self.config.distributed.publish_every:
            return
        self._version = updates
        self._weights_ref = ray.put(policy.weights())

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing to hold: chunks reach the memory only inside :meth:`collect_to`, on the learner's thread."""
        yield

    # ------------------------------------------------------------------ reporting

    def _new_window(self) -> dict[str, Any]:
        return {"time": time.perf_counter(), "env_steps": 0, "lag": 0, "chunks": 0, "updates": None, "start": None}

    def metrics(self) -> dict[str, float]:
        """Collection figures since the last call: actor env steps/s, learner updates/s, replay ratio, lag."""
        w, now = self._window, time.perf_counter()
        seconds = max(now - w["time"], 1e-9)
        out = {"actors/env_steps_per_second": w["env_steps"] / seconds, "actors/restarts": float(self.restarts)}
        if w["chunks"]:
            out["actors/weight_lag_updates"] = w["lag"] / w["chunks"]
        if w["updates"] is not None and w["start"] is not None:
            updates = w["updates"] - w["start"]
            out["learner/updates_per_second"] = updates / seconds
            if w["env_steps"]:
                out["learner/replay_ratio"] = updates / w["env_steps"]
        last = w["updates"]
        self._window = self._new_window()
        self._window["start"] = self._window["updates"] = last
        return out

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        status = {"pids": self._pids, "restarts": self.restarts}
        tmp = self.status_file.with_name(f".{self.status_file.name}.tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.status_file)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"actors": self.actors, "restarts": self.restarts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restarts = int(state.get("restarts", 0))


def _last_line(exc: BaseException) -> str:
    """The last line of a Ray error, which names the cause (the lines before are its traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
