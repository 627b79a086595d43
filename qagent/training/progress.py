"""The training progress bar (rich): steps, steps/s, recent return, epsilon and loss.

It writes to stderr and redraws at most a few times a second; with ``enabled=False`` only
messages are printed (for logs and CI).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


class LogConsole(Console):
    """A console that may lose its reader (a closed pipe, a killed ``tee``) without ending the run.

    Rich's default exits the program on a broken pipe, and a run would end FAILED at its next log
    line, losing the steps since its last checkpoint. This one goes quiet instead, and points the
    stream at /dev/null so Python's own writes to it (and its flush at exit) do not fail either;
    the run's files (``episodes.csv``, ``evaluations.jsonl``, ``run.json``) still record everything.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no file descriptor: quiet is enough
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
            os.close(devnull)


class TrainingProgress:
    """Context manager around a rich :class:`Progress` for one training run."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or LogConsole(stderr=True)
        self.enabled = enabled
        self._last_draw = 0.0
        self._progress = Progress(
            TextColumn("[bold blue]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("ε {task.fields[eps]}"),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, sps="-", ret="-", eps="-", loss="-")

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(
        self,
        step: int,
        steps_per_second: float | None = None,
        recent_return: float | None = None,
        epsilon: float | None = None,
        loss: float | None = None,
        force: bool = False,
    ) -> None:
        """Move the bar to ``step`` and refresh the figures (at most 5 times a second)."""
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        self._progress.update(
            self._task,
            completed=step,
            sps=_fmt(steps_per_second, ".0f"),
            ret=_fmt(recent_return, ".1f"),
            eps=_fmt(epsilon, ".3f"),
            loss=_fmt(loss, ".4f"),
        )

    def print(self, message: str) -> None:
        """A line above the bar (or a plain line when the bar is off)."""
        self.console.print(message, highlight=False)
