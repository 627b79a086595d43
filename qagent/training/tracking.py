"""Experiment tracking: one MLflow run per training run, metrics logged in batches.

MLflow is imported only when tracking starts (it takes about a second), never by
``qagent --help`` or the serving path. With no URI set anywhere, MLflow's own default store
is used (``./mlflow.db``), so ``mlflow ui`` in the same folder shows the runs.

Tracking must never lose a run: if the store fails mid-run, qagent warns once and goes on;
the run directory still holds the config, checkpoints, evaluations and episodes.

A run killed with ``kill -9`` and resumed keeps every point exactly once in MLflow. The tracker
counts the points it has been given per metric, the loop flushes before each checkpoint and
stores those counts in it, so on resume the store holds, per metric, the checkpoint's count plus
whatever the killed process flushed after it. The resumed run replays the same steps, and its
tracker drops that many first points of each metric: the ones the store has already.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qagent.errors import QAgentError

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
MAX_PARAMS = 100  # ... and on params per call


class Tracker:
    """Receives a run's params, metrics and artifacts; this base class drops them (tracking off)."""

    run_id: str | None = None

    def __init__(self) -> None:
        self.logged: dict[str, int] = {}  # points given per metric, since the run began

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """Open a new run."""

    def resume(self, run_id: str, tags: Mapping[str, str], logged: Mapping[str, int] | None = None) -> None:
        """Reopen an earlier run, to continue it from a checkpoint.

        :param logged: the checkpoint's :attr:`logged` counts; points the store holds beyond
            them are the ones the resumed run replays, and are not logged again.
        """

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics at env step ``step``; they are written in batches."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file."""

    def flush(self) -> None:
        """Write queued metrics now."""

    def finish(self, status: str = "FINISHED") -> None:
        """Flush and close the run with ``status`` (FINISHED, KILLED or FAILED)."""

    def describe(self) -> str:
        """Where the run can be seen, for the user."""
        return "tracking disabled"


class MLflowTracker(Tracker):
    """Tracks to MLflow through ``MlflowClient`` (no global fluent-API state).

    :param uri: tracking URI; None means ``MLFLOW_TRACKING_URI`` or MLflow's default.
    :param experiment: experiment name, created if missing.
    :param flush_seconds: write queued metrics at least this often.
    """

    def __init__(self, uri: str | None, experiment: str, flush_seconds: float = 10.0) -> None:
        super().__init__()
        import mlflow
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # after the import, which sets mlflow's own level
            logging.getLogger(name).setLevel(logging.WARNING)

        self.uri = uri or mlflow.get_tracking_uri()
        self.experiment_name = experiment
        self.flush_seconds = flush_seconds
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()
        self._broken = False
        self._replayed: dict[str, int] = {}  # per metric, points a resumed run gives that the store has
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
            raise QAgentError(
                f"cannot open the MLflow tracking store {self.uri!r}: {_first_line(exc)}",
                hint="check --tracking-uri or MLFLOW_TRACKING_URI, or train with --no-track",
            ) from None

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS])

    def resume(self, run_id: str, tags: Mapping[str, str], logged: Mapping[str, int] | None = None) -> None:
        try:
            stored = self.client.get_run(run_id).data.metrics
        except Exception as exc:  # noqa: BLE001
            raise QAgentError(
                f"cannot continue MLflow run {run_id} in {self.uri!r}: {_first_line(exc)}",
                hint="resume with the tracking URI the run was started with, or with --no-track",
            ) from None
        self.run_id = run_id
        if isinstance(logged, Mapping) and all(isinstance(v, int) for v in logged.values()):
            self.logged = {str(k): v for k, v in logged.items()}
            for key in stored:
                extra = len(self.client.get_metric_history(run_id, key)) - self.logged.get(key, 0)
                if extra > 0:
                    self._replayed[key] = extra
        self.client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        for key, value in metrics.items():
            self.logged[key] = self.logged.get(key, 0) + 1
            if self._replayed.get(key):
                self._replayed[key] -= 1  # the store has this point from before the kill
                continue
            self._pending.append(Metric(key, float(value), stamp, step))
        if len(self._pending) >= MAX_BATCH or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if self._broken or self.run_id is None:
            return
        try:
            for i in range(0, len(pending), MAX_BATCH):
                self.client.log_batch(self.run_id, metrics=pending[i : i + MAX_BATCH])
        except Exception as exc:  # noqa: BLE001 - keep training; the run directory has the records
            self._fail(exc)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._broken or self.run_id is None:
            return
        try:
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        if self._broken or self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def describe(self) -> str:
        return f"MLflow run {self.run_id} (experiment {self.experiment_name!r}) in {self.uri}"

    def _fail(self, exc: Exception) -> None:
        self._broken = True
        warnings.warn(
            f"MLflow logging failed ({_first_line(exc)}); training goes on and the run directory keeps its records",
            stacklevel=3,
        )


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def make_tracker(enabled: bool, uri: str | None, experiment: str) -> Tracker:
    """An :class:`MLflowTracker`, or the no-op :class:`Tracker` when tracking is off."""
    return MLflowTracker(uri, experiment) if enabled else Tracker()
