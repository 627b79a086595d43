"""Stopping a server on SIGINT or SIGTERM: what ``qagent serve`` and ``qagent watch`` share."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def shutdown_on_signals(shutdown: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM calls ``shutdown`` once, from another thread.

    ``shutdown`` waits for the serving loop to return, so it cannot run in the signal handler,
    which interrupts that loop's own thread. The previous handlers come back afterwards.
    """
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
