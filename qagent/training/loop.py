"""The one training loop: collect, learn, log, evaluate, checkpoint. Every agent runs in it.

It speaks to the agent only through :class:`qagent.agents.base.Agent`: the agent's actor
collects (through one :class:`~qagent.training.collector.Collector`) into the agent's memory,
``agent.learn`` trains on it and returns its metrics, ``agent.policy`` is evaluated.

The loop is defined per env step, so stopping anywhere and resuming gives the same run:
collection runs in chunks that end on multiples of ``agent.train_every``; after env steps
``(t0, t1]`` have been collected, ``agent.learn`` gets that span and does whatever is due in it
(for DQN: one target update per multiple of ``agent.target_update_interval`` crossed, one round
of ``agent.gradient_steps`` per multiple of ``agent.train_freq``, once past
``agent.learning_starts``). This is Stable-Baselines3's schedule: the online network only
changes at training points, so a target update anywhere inside a chunk sees the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import qagent
from qagent.agents.base import Span
from qagent.config import RunConfig, flatten
from qagent.envs.factory import make_vector_env
from qagent.errors import CheckpointError, QAgentError
from qagent.training.build import build_agent, build_exploration, restore_agent, seed_streams
from qagent.training.checkpoint import FORMAT_VERSION, all_finite, load_run_checkpoint, save_checkpoint
from qagent.training.collector import BackgroundCollector, Collector, Episode, SharedPolicy, SharedReplay
from qagent.training.device import resolve_device
from qagent.training.distributed import ActorStreams, RayCollector
from qagent.training.evaluation import Evaluator
from qagent.training.progress import TrainingProgress
from qagent.training.runs import BUFFER_PATTERN, RunDir, write_atomically
from qagent.training.stopping import Terminated, stop_on_interrupt, terminate_raises
from qagent.training.tracking import Tracker


class NonFiniteError(QAgentError):
    """The loss or the Q-values became NaN or infinite: the run diverged."""


def configure_torch(threads: int | None) -> None:
    """Set the intra-op thread count and flush denormal floats to zero.

    Late in training, Adam's second-moment estimates and small weights become denormal
    floats, which slow CPU arithmetic severalfold; flushing them changes nothing that matters.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


@dataclasses.dataclass
class MetricWindow:
    """Sums and counts of the learner's metrics since the last log line (each ``learn`` call adds one)."""

    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def finite(self) -> bool:
        """False once any metric was NaN or infinite (the sums carry it)."""
        return all(math.isfinite(v) for v in self.sums.values())

    def means(self) -> dict[str, float]:
        return {key: self.sums[key] / self.counts[key] for key in self.sums}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {str(k): float(v) for k, v in state["sums"].items()}
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}


@dataclasses.dataclass
class TrainResult:
    """What a call to :meth:`Trainer.train` did."""

    run_dir: Path
    step: int
    episodes: int
    interrupted: bool
    train_seconds: float
    steps_trained: int
    last_eval: dict[str, Any] | None = None
    best_eval: dict[str, Any] | None = None
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    tracking: str = ""
    tracking_uri: str | None = None
    signal: int | None = None
    """The signal that stopped the run early (SIGINT, SIGTERM), if one did."""

    @property
    def steps_per_second(self) -> float:
        """Env steps per second of this call's training loop (evaluation left out)."""
        return self.steps_trained / max(self.train_seconds, 1e-9)


class Trainer:
    """Owns one run's envs, agent, actor, memory, collector, evaluator and records.

    :param config: the resolved run config.
    :param run: the run directory (created by the caller).
    :param tracker: MLflow or no-op tracker, already started or resumed by the caller.
    :param plugins: plugin specs in use, recorded in checkpoints so eval and resume find them.
    :param progress: draw the rich progress bar.
    """

    def __init__(
        self,
        config: RunConfig,
        run: RunDir,
        tracker: Tracker,
        *,
        plugins: list[str] | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.run = run
        self.tracker = tracker
        self.plugins = list(plugins or [])
        self.show_progress = progress
        configure_torch(config.train.torch_threads)
        self.device = resolve_device(config.train.device)
        seeds = seed_streams(config.seed, 5)
        self.eval_seed = seeds[4]
        self.background: BackgroundCollector | RayCollector | None = None
        self.build(seeds, self.device)
        self.evaluator = Evaluator(config.env, config.eval.num_envs)
        self.step = 0  # env steps the learner has reached
        self.collected = 0  # env steps collected (ahead of step with async collection)
        self.episodes = 0
        self.last_eval: dict[str, Any] | None = None
        self.best_eval: dict[str, Any] | None = None
        self.target_eval: dict[str, Any] | None = None  # the periodic evaluation that met eval.stop_at_*
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.window = MetricWindow()
        self._bar: TrainingProgress | None = None
        self._clock = (time.perf_counter(), 0)  # (time, step) at which steps/s counting restarted
        self._last_video_step = -1
        self._saved_step = -1  # step of the newest checkpoint written
        self._final_done = False  # the final evaluation and video of this run's length are done
        self._mid_chunk = False  # a chunk is half done: the state is not one to checkpoint
        self._warned_nonfinite = False

    def build(self, seeds: list[int], device: torch.device) -> None:
        """Make the envs, the agent, its memory, its actor and the collector."""
        config = self.config
        torch.manual_seed(seeds[0])
        actors = config.distributed.actors
        # With actors on Ray, the learner's envs are one probe for the spaces and wrappers.
        self.envs = make_vector_env(config.env, 1 if actors else config.env.num_envs, training=True)
        self.agent = build_agent(config, self.envs.single_observation_space, self.envs.single_action_space, device)
        self.exploration = build_exploration(config, self.agent.n_actions, seed=seeds[1])
        self.exploration.prepare(self.agent)
        if actors:
            streams = ActorStreams(self.envs, actors * config.env.num_envs)
            self.memory = self.agent.make_memory(config, streams, seed=seeds[2])
            self.collector = RayCollector(
                config, self.plugins, self.memory, seeds[3], status_file=self.run.root / "actors.json"
            )
            self.actor = self.collector.reports
            return
        memory = self.agent.make_memory(config, self.envs, seed=seeds[2])
        self.shared_policy = None
        if config.train.async_collection:
            memory, self.shared_policy = SharedReplay(memory), SharedPolicy(self.agent.policy)
        self.memory = memory
        self.actor = self.agent.actor(self.exploration, self.envs, memory, seeds[1], policy=self.shared_policy)
        self.collector = Collector(self.envs, self.actor, seed=seeds[3])

    # ------------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Train until ``train.total_steps`` or Ctrl-C, then checkpoint (and evaluate at the end)."""
        total = self.config.train.total_steps
        start_step, train_seconds = self.step, 0.0
        self._clock = (time.perf_counter(), self.step)
        if not self.done():
            self._final_done = False  # a run continued for longer evaluates at its new end
        if self.config.train.async_collection:
            lead = max(self.agent.train_every, self.collector.num_envs)
            self.shared_policy.load_weights(self.agent.policy.weights())  # restored weights, if resumed
            self.background = BackgroundCollector(self.collector, self.shared_policy, self.collected, lead)
        try:
            if self.config.distributed.actors:
                self.background = self.collector  # stopped below, even if starting fails
                self.collector.start(self.collected, self.agent.policy, self.agent.updates)
            with TrainingProgress(total, self.step, self.show_progress) as bar, stop_on_interrupt(bar.print) as stop:
                self._bar = bar
                while not self.done() and not stop.is_set():
                    t0 = time.perf_counter()
                    prev = self.step
                    self._mid_chunk = True
                    episodes = self.run_chunk()
                    train_seconds += time.perf_counter() - t0
                    self._after_chunk(prev, episodes)
                    self._mid_chunk = False
                interrupted = not self.done()
                bar.update(self.step, force=True)
        finally:
            if self.background is not None:
                self.background.stop()
                self.collected = self.background.collected
                self.background = None
        return self._finish(interrupted, start_step, train_seconds, signal=stop.signum)

    def done(self) -> bool:
        """Whether training reached ``train.total_steps``, ``train.max_episodes`` or an ``eval.stop_at_*`` target."""
        limit = self.config.train.max_episodes
        return (
            self.step >= self.config.train.total_steps
            or (limit is not None and self.episodes >= limit)
            or self.config.eval.target_met(self.target_eval)
        )

    def run_chunk(self) -> list[Episode]:
        """Collect up to the next training point, then let the agent learn what is due."""
        n, every = self.collector.num_envs, self.agent.train_every
        prev = self.step
        chunk_end = min(self.config.train.total_steps, (prev // every + 1) * every)
        target = prev + -(-(chunk_end - prev) // n) * n  # whole vector steps
        if self.background is not None:
            episodes = self.background.collect_to(target)
            self.collected = self.background.collected
        else:
            episodes = self.collector.collect(max(0, target - self.collected) // n, self.collected)
            self.collected = max(self.collected, target)
        self.step = target
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.train.amp):
            metrics = self.agent.learn(self.memory, Span(prev, self.step, self.config.train.total_steps))
        self.window.add(metrics)
        if self.background is not None and metrics:
            self.background.publish(self.agent.policy, self.agent.updates)
        return episodes

    def _check_finite(self) -> None:
        """Stop a diverged run before it writes a checkpoint (``train.on_nonfinite``)."""
        if self.window.finite():
            return
        message = f"the loss or the Q-values became NaN or infinite by step {self.step:,}: training diverged"
        if self.config.train.on_nonfinite == "stop":
            raise NonFiniteError(
                message,
                hint="lower agent.lr or set agent.max_grad_norm; train.on_nonfinite=warn trains on regardless",
            )
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(message + " (train.on_nonfinite=warn: training goes on)", stacklevel=2)

    def _after_chunk(self, prev: int, episodes: list[Episode]) -> None:
        """Records, logging, periodic evaluation and checkpoints due in ``(prev, step]``."""
        cfg = self.config
        self._check_finite()
        self._record_episodes(episodes)
        started, started_step = self._clock
        steps_per_second = (self.step - started_step) / max(time.perf_counter() - started, 1e-9)
        span = Span(prev, self.step, cfg.train.total_steps)
        if span.crossings(cfg.train.log_every):
            self._log_window(steps_per_second)
        if cfg.eval.every and span.crossings(cfg.eval.every):
            record = self.evaluate(cfg.eval.episodes)
            self._clock = (time.perf_counter(), self.step)  # steps/s leaves evaluation out
            if cfg.eval.target_met(record):
                self.target_eval = record
                self._print(
                    f"step {self.step:>9,}  the evaluation reached {cfg.eval.describe_targets()}: training stops"
                )
        if cfg.eval.video_every and span.crossings(cfg.eval.video_every):
            self.record_video()
        if cfg.train.checkpoint_every and span.crossings(cfg.train.checkpoint_every):
            self.save_checkpoint()
        if self._bar is not None:
            self._bar.update(
                self.step,
                steps_per_second,
                self._recent_return(),
                self.actor.epsilon(self.step),
                self.window.means().get("train/loss"),
            )

    def _finish(
        self, interrupted: bool, start_step: int, train_seconds: float, signal: int | None = None
    ) -> TrainResult:
        """Final evaluation (unless interrupted), checkpoint, artifacts and run status."""
        if interrupted:
            self._print(f"[yellow]interrupted at step {self.step}[/]; writing a checkpoint")
        elif not self._final_done:  # done already when a kill came after the final checkpoint
            if self.config.eval.final_episodes:
                self.evaluate(self.config.eval.final_episodes, final=True)
            if self.config.eval.video_every and self._last_video_step != self.step:
                self.record_video()
            self._final_done = True
        checkpoint = self.save_checkpoint()
        summary = self.actor.summary()
        if summary:
            self.run.update_meta(**summary)
        self.tracker.log_artifact(self.run.config_path)
        curve = self._plot_learning_curve()
        if curve is not None:
            self.tracker.log_artifact(curve)
        if not interrupted:
            self.tracker.log_artifact(checkpoint, "checkpoints")
        self.tracker.finish("KILLED" if interrupted else "FINISHED")
        steps_trained = self.step - start_step
        self.run.update_meta(
            status="interrupted" if interrupted else "finished",
            step=self.step,
            train_seconds=round(train_seconds, 3),
            steps_per_second=round(steps_trained / max(train_seconds, 1e-9), 1),
        )
        self.envs.close()
        self.evaluator.close()
        return TrainResult(
            run_dir=self.run.root,
            step=self.step,
            episodes=self.episodes,
            interrupted=interrupted,
            train_seconds=train_seconds,
            steps_trained=steps_trained,
            last_eval=self.last_eval,
            best_eval=self.best_eval,
            checkpoint=checkpoint,
            best_checkpoint=self.run.best_path if self.best_eval else None,
            tracking=self.tracker.describe(),
            tracking_uri=getattr(self.tracker, "uri", None),
            signal=signal if interrupted else None,
        )

    def abandon(self, exc: BaseException) -> None:
        """Leave the run in a final state after ``exc`` ended it early; never lose its records.

        A signal (Ctrl-C twice, SIGTERM outside the loop) marks it KILLED, anything else FAILED.
        A stop between chunks writes a checkpoint first if the newest one is older; a failure
        keeps the checkpoints there are, which were all written before it.
        """
        killed = isinstance(exc, (KeyboardInterrupt, Terminated))
        status = "KILLED" if killed else "FAILED"
        checkpoint = self.run.latest_checkpoint()
        with contextlib.suppress(Exception):
            if killed and not self._mid_chunk and self.step > self._saved_step and self.background is None:
                checkpoint = self.save_checkpoint()
        with contextlib.suppress(Exception):
            self.tracker.finish(status)
        reason = "stopped by a signal" if killed else f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        with contextlib.suppress(Exception):
            self.run.update_meta(status=status.lower(), step=self.step, error=reason)
        kept = f"; its last checkpoint is {checkpoint}" if checkpoint is not None else ""
        print(f"qagent: run {self.run.root} marked {status} at step {self.step:,}{kept}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            self.envs.close()
            self.evaluator.close()

    def _plot_learning_curve(self) -> Path | None:
        """RUN_DIR/learning_curve.png, if matplotlib is there and the run has episodes."""
        from qagent.errors import QAgentError

        try:
            from qagent.training.plotting import plot_runs

            return plot_runs([self.run.root], self.run.root / "learning_curve.png")
        except (ImportError, QAgentError):
            return None

    def _print(self, message: str) -> None:
        if self._bar is not None:
            self._bar.print(message)

    def _recent_return(self) -> float | None:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else None

    def _record_episodes(self, episodes: list[Episode]) -> None:
        if not episodes:
            return
        self.episodes += len(episodes)
        for e in episodes:
            self.recent_returns.append(e.ret)
            metrics = {"train/episode_return": e.ret, "train/episode_length": e.length}
            if e.shaped is not None:
                metrics["train/shaped_episode_return"] = e.shaped
            self.tracker.log_metrics({**metrics, **e.metrics}, e.step)
        self.run.append_episodes((e.step, e.ret, e.length) for e in episodes)

    def _log_window(self, steps_per_second: float) -> None:
        metrics = {
            **self.window.means(),
            **self.actor.metrics(self.step),
            "train/steps_per_second": steps_per_second,
            "train/updates": float(self.agent.updates),
        }
        self.tracker.log_metrics(metrics, self.step)
        self.window = MetricWindow()

    def evaluate(self, episodes: int, final: bool = False) -> dict[str, Any]:
        """Evaluate the online network; record the result on disk, in MLflow and on screen."""
        t0 = time.perf_counter()
        with self.agent.policy.evaluation_mode() as policy:
            result = self.evaluator.run(policy.evaluator(), episodes, self.eval_seed, self.config.eval.epsilon)
        record = {
            "step": self.step,
            **result.summary(),
            "protocol": result.protocol,
            "final": final,
            "seconds": time.perf_counter() - t0,
        }
        self.last_eval = record
        self.run.append_evaluation(record)
        self.tracker.log_metrics(
            {
                "eval/return_mean": record["mean"],
                "eval/return_std": record["std"],
                "eval/length_mean": record["mean_length"],
                "eval/success_rate": record["success_rate"],
            },
            self.step,
        )
        label = "final eval" if final else "eval"
        self._print(
            f"step {self.step:>9,}  {label}: return {record['mean']:.1f} ± {record['std']:.1f} over {episodes} episodes"
        )
        if self.config.train.keep_best and (self.best_eval is None or record["mean"] > self.best_eval["mean"]):
            self.best_eval = record
            self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            with self._collection_paused():
                save_checkpoint(self.run.best_path, self.state_dict(buffer_file=None))
        return record

    def record_video(self) -> Path:
        """One greedy evaluation episode as a video in RUN_DIR/videos/, logged to MLflow."""
        from qagent.training.video import record_video

        path = self.run.root / "videos" / f"step-{self.step:010d}.{self.config.eval.video_format}"
        with self.agent.policy.evaluation_mode() as policy:
            result = record_video(policy.evaluator(), self.config.env, path, seed=self.eval_seed)
        self.tracker.log_artifact(path, "videos")
        self._print(f"step {self.step:>9,}  video: return {result.mean:.1f}, {path}")
        self._last_video_step = self.step
        return path

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, buffer_file: str | None) -> dict[str, Any]:
        return {
            "qagent_version": qagent.__version__,
            "config": self.config.to_dict(),
            "plugins": self.plugins,
            "step": self.step,
            "collector_step": self.collected,
            "episodes": self.episodes,
            "agent": self.agent.state_dict(),
            "actor": self.actor.state_dict(),
            "collector": self.collector.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "buffer_file": buffer_file,
            "last_eval": self.last_eval,
            "best_eval": self.best_eval,
            "target_eval": self.target_eval,
            "mlflow_run_id": self.tracker.run_id,
            "tracking": {"logged": dict(self.tracker.logged)},
            "window": self.window.state_dict(),
            "final_done": self._final_done,
        }

    @contextlib.contextmanager
    def _collection_paused(self) -> Iterator[None]:
        """Hold the background collector (if any) so the state it shares is consistent."""
        if self.background is None:
            yield
            return
        with self.background.paused():
            self.collected = self.background.collected
            yield

    def save_checkpoint(self) -> Path:
        """Write a checkpoint for the current step (and the buffer with train.save_buffer)."""
        with self._collection_paused():
            return self._save_checkpoint()

    def _save_checkpoint(self) -> Path:
        buffer_file = None
        if self.config.train.on_nonfinite == "stop" and not all_finite(self.agent.state_dict()):
            raise NonFiniteError(
                f"the network's weights became NaN or infinite by step {self.step:,}, so no checkpoint was written",
                hint="lower agent.lr or set agent.max_grad_norm",
            )
        self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if self.config.train.save_buffer:
            buffer_path = self.run.buffer_path(self.step)
            self.memory.save(buffer_path)
            buffer_file = buffer_path.name
        path = self.run.checkpoint_path(self.step)
        # MLflow first: the store then holds every point the checkpoint's counts say were logged,
        # which is what a resumed tracker needs to log the replayed steps' points only once.
        self.tracker.flush()
        save_checkpoint(path, self.state_dict(buffer_file))
        self._saved_step = self.step
        self.run.prune(self.config.train.keep_checkpoints)
        self.run.update_meta(last_checkpoint=str(path.relative_to(self.run.root)), step=self.step)
        return path

    def restore(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Continue from ``checkpoint``, read from ``path`` (already loaded and checked for compatibility)."""
        restore_agent(self.agent, checkpoint, path)
        if checkpoint["actor"]:  # empty from a run whose actors ran on Ray: this one's start afresh
            self.actor.load_state_dict(checkpoint["actor"])
        self.collector.load_state_dict(checkpoint["collector"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        self.step = self._saved_step = int(checkpoint["step"])
        self.collected = int(checkpoint.get("collector_step", self.step))
        self.episodes = int(checkpoint["episodes"])
        self.last_eval = checkpoint.get("last_eval")
        self.best_eval = checkpoint.get("best_eval")
        self.target_eval = checkpoint.get("target_eval")
        self.window.load_state_dict(checkpoint["window"])  # the log window in progress, so logged means match
        self._final_done = bool(checkpoint.get("final_done", self.step >= self.config.train.total_steps))
        buffer_file = checkpoint.get("buffer_file")
        if buffer_file is not None and not (isinstance(buffer_file, str) and BUFFER_PATTERN.match(buffer_file)):
            raise CheckpointError(
                f"the checkpoint names a replay buffer file {str(buffer_file)[:100]!r}, not a buffer-STEP.npz"
            )
        if buffer_file:
            try:
                self.memory.load(self.run.checkpoint_dir / buffer_file)
            except CheckpointError as exc:
                earlier = [path for step, path in self.run.checkpoints() if step < self.step]
                if earlier and not exc.hint:
                    exc.hint = f"resume from an earlier checkpoint: qagent train --resume {earlier[-1]}"
                raise
        else:
            warnings.warn(
                "the checkpoint holds no replay buffer, so the resumed run starts with an empty one "
                "(train with --save-buffer for an exact resume)",
                stacklevel=2,
            )
        # A kill during the final stage left its evaluation record behind: it is done again.
        self.run.truncate_records(self.step, drop_final=not self._final_done)


# ---------------------------------------------------------------------- resume checks

# Config keys whose change makes a checkpoint unusable: they shape the network or the state.
SHAPE_KEYS = ("env.id", "env.kwargs", "env.num_envs", "agent.name", "network")


def incompatible_changes(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """Human-readable ``key: old -> new`` lines for changes that forbid resuming."""
    old_flat = flatten(saved)
    new_flat = config.flat()
    changes = []
    for key in sorted(set(old_flat) | set(new_flat)):
        if not any(key == k or key.startswith(k + ".") for k in SHAPE_KEYS):
            continue
        if old_flat.get(key) != new_flat.get(key):
            changes.append(f"{key} changed from {old_flat.get(key)!r} to {new_flat.get(key)!r}")
    return changes


# ---------------------------------------------------------------------- starting and resuming


def _tags(config: RunConfig, plugins: list[str], run: RunDir) -> dict[str, str]:
    from qagent.plugins.discovery import plugin_sources

    return {
        "qagent.version": qagent.__version__,
        "qagent.seed": str(config.seed),
        "qagent.env": config.env.id,
        "qagent.agent": config.agent.name,
        "qagent.plugins": ", ".join(plugin_sources()) or "none",
        "qagent.run_dir": str(run.root.resolve()),
        "qagent.config_hash": config.hash(),
    }


def start_training(
    config: RunConfig,
    *,
    runs_dir: str | Path = "runs",
    run_name: str | None = None,
    plugins: list[str] | None = None,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Create a run directory and an MLflow run, then train ``config`` from scratch.

    :param tags: extra MLflow tags, e.g. ``mlflow.parentRunId`` to nest the run under a sweep's trial.
    """
    from qagent.training.tracking import make_tracker

    plugins = list(plugins or [])
    name = run_name or RunDir.default_name(config.env.id, config.agent.name, config.seed)
    with terminate_raises():
        run = RunDir.create(Path(runs_dir), name)
        try:
            trainer = Trainer(config, run, Tracker(), plugins=plugins, progress=progress)
            tracker = make_tracker(config.tracking.enabled, config.tracking.uri, config.tracking.experiment)
        except BaseException:
            shutil.rmtree(run.root, ignore_errors=True)  # nothing ran: leave no empty run behind
            raise
        try:
            write_atomically(run.config_path, config.to_yaml())
            run.update_meta(name=run.root.name, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), status="starting")
            trainer.tracker = tracker
            tracker.start(run.root.name, config.flat(), {**_tags(config, plugins, run), **(tags or {})})
            run.update_meta(
                qagent_version=qagent.__version__,
                plugins=plugins,
                mlflow_run_id=tracker.run_id,
                tracking_uri=getattr(tracker, "uri", None),
                experiment=config.tracking.experiment if config.tracking.enabled else None,
                status="running",
            )
            return trainer.train()
        except BaseException as exc:
            trainer.abandon(exc)
            raise


def resume_training(
    target: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    tracking_uri: str | None = None,
    plugins: list[str] | None = None,
    progress: bool = True,
    loaded: tuple[RunDir | None, Path, dict[str, Any]] | None = None,
) -> TrainResult:
    """Continue the run in ``target`` (a run directory) from its newest checkpoint.

    ``overrides`` may change anything that leaves the saved state usable (total steps,
    learning rate, evaluation, ...); changes to the env or the network are refused.

    :param loaded: the result of ``load_run_checkpoint(target)``, if the caller has it already.
    """
    from qagent.config import resolve_config
    from qagent.training.tracking import make_tracker

    run, path, checkpoint = loaded or load_run_checkpoint(target)
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} was written by qagent {checkpoint.get('qagent_version', 'before 0.2')} "
            f"(checkpoint format {version}); this qagent resumes format {FORMAT_VERSION} only",
            hint="evaluate or export it as it is (qagent eval / qagent export), or start a new run",
        )
    missing = [key for key in ("actor", "collector", "window") if not isinstance(checkpoint.get(key), dict)]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed: its {', '.join(map(repr, missing))} state is missing or broken",
            hint="resume from an earlier checkpoint in the same folder, or evaluate or export this one",
        )
    if run is None:
        raise CheckpointError(
            f"cannot resume from {path}: it is not inside a run directory's checkpoints/ folder",
            hint="pass the run directory, e.g. qagent train --resume runs/<run-name>",
        )
    config = resolve_config(checkpoint["config"], overrides)
    changes = incompatible_changes(checkpoint["config"], config)
    saved_actors = flatten(checkpoint["config"]).get("distributed.actors", 0)
    if checkpoint.get("buffer_file") and saved_actors != config.distributed.actors:
        changes.append(  # the saved buffer has one stream per env of every actor
            f"distributed.actors changed from {saved_actors!r} to {config.distributed.actors!r} with a saved buffer"
        )
    if changes:
        raise CheckpointError(
            "cannot resume: " + "; ".join(changes) + ", and the saved state does not fit the new shape",
            hint="start a new run for a different env or network",
        )
    # A run killed in its final stage (evaluation, artifacts) resumes to finish it.
    finished = run.read_meta().get("status") == "finished"
    if checkpoint["step"] >= config.train.total_steps and finished:
        raise CheckpointError(
            f"run {run.root} already reached train.total_steps ({checkpoint['step']})",
            hint=f"continue it for longer with --set train.total_steps={2 * config.train.total_steps}",
        )
    limit = config.train.max_episodes
    if limit is not None and checkpoint["episodes"] >= limit and finished:
        raise CheckpointError(
            f"run {run.root} already reached train.max_episodes ({checkpoint['episodes']})",
            hint=f"continue it for longer with --set train.max_episodes={2 * limit}",
        )
    target = checkpoint.get("target_eval")
    if finished and config.eval.target_met(target):
        raise CheckpointError(
            f"run {run.root} stopped at step {checkpoint['step']:,}: its evaluation there reached "
            f"{config.eval.describe_targets()}",
            hint="continue it past the target with --set eval.stop_at_return=null --set eval.stop_at_success=null",
        )
    recorded = list(plugins) if plugins is not None else checkpoint.get("plugins", [])
    with terminate_raises():
        run.remove_stale_temporaries()
        trainer = Trainer(config, run, Tracker(), plugins=recorded, progress=progress)
        try:
            trainer.restore(checkpoint, path)  # a user error here leaves the run as it was
        except (KeyboardInterrupt, Terminated) as exc:
            trainer.abandon(exc)
            raise
        try:
            write_atomically(run.config_path, config.to_yaml())
            meta = run.read_meta()
            uri = tracking_uri or config.tracking.uri or meta.get("tracking_uri")
            tracker = make_tracker(config.tracking.enabled, uri, meta.get("experiment") or config.tracking.experiment)
            tags = {**_tags(config, trainer.plugins, run), "qagent.resumed_at_step": str(trainer.step)}
            run_id = checkpoint.get("mlflow_run_id") or meta.get("mlflow_run_id")
            trainer.tracker = tracker
            if run_id and config.tracking.enabled:
                tracking = checkpoint.get("tracking")
                tracker.resume(run_id, tags, logged=tracking.get("logged") if isinstance(tracking, dict) else None)
            else:
                tracker.start(run.root.name, config.flat(), tags)
            run.update_meta(status="running", mlflow_run_id=tracker.run_id, tracking_uri=getattr(tracker, "uri", None))
            return trainer.train()
        except BaseException as exc:
            trainer.abandon(exc)
            raise
