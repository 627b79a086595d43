"""How a training run stops early: signals, exit codes and the run's final status.

Inside the loop, the first Ctrl-C or SIGTERM asks for a stop after the current chunk, so the
checkpoint is consistent (:func:`stop_on_interrupt`). Outside it (startup, the final evaluation,
writing artifacts), SIGTERM raises :class:`Terminated` as Ctrl-C raises ``KeyboardInterrupt``
(:func:`terminate_raises`), so the run still reaches a final status (KILLED) instead of dying
with its MLflow run RUNNING. Either way the process exits as shells expect: 128 + the signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, its sibling
    """SIGTERM arrived where the loop could not stop gracefully."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def exit_code(signum: int) -> int:
    """The exit status a shell expects of a process stopped by ``signum`` (130, 143)."""
    return 128 + int(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (instead of killing the process)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest(threading.Event):
    """Set by the first stop signal; remembers which signal it was."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_interrupt(say: Any) -> Iterator[StopRequest]:
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current chunk; a second aborts.

    :param say: ``say(message)`` tells the user (the progress bar's ``print``).
    """
    stop = StopRequest()
    if not _in_main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)
        stop.signum = signum
        stop.set()
        say("[yellow]stopping after this chunk and writing a checkpoint (Ctrl-C again to abort)[/]")

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
