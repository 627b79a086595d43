"""What the HTTP server holds across requests, and the bounds on it.

:class:`ByteBudget` caps the request bytes being read and parsed at once over all
connections; :class:`SessionStore` keeps per-episode sessions, least recently used first, with
an idle timeout and a maximum count. The budget lives on the server's event loop; the session
store guards its state with a lock, as endpoints may run on worker threads. The server
(:mod:`qagent.serve.http`) only creates and calls them.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from qagent.serve.errors import HttpError
from qagent.serve.policy import Policy, PolicySession


class ByteBudget:
    """Bytes in flight over all requests: :meth:`acquire` waits (briefly) for room, :meth:`release` frees it.

    Used from the server's event loop only, so it needs no lock: waiters are futures that a
    release wakes to look again.
    """

    def __init__(self, capacity: int, wait: float) -> None:
        self.capacity = capacity
        self.wait = wait
        self.in_use = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, size: int) -> bool:
        """Take ``size`` bytes (at most :attr:`capacity`); False when there was no room in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while self.in_use + size > self.capacity:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass
class _Session:
    state: PolicySession
    lock: threading.Lock
    used: float


class SessionStore:
    """Sessions by id, least recently used first; a session idle for ``ttl`` seconds expires.

    At ``max_sessions``, creating a session ends the least recently used one, so a burst of
    creations can never lock new clients out. Expiry pops from the old end while the oldest is
    expired: O(1) amortised per call, never a scan.
    """

    def __init__(
        self, policy: Policy, ttl: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self.evicted = 0
        """Sessions ended early to make room for new ones."""
        self._sessions: collections.OrderedDict[str, _Session] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge(self.clock())
            return len(self._sessions)

    def _purge(self, now: float) -> None:
        sessions = self._sessions
        while sessions and now - next(iter(sessions.values())).used > self.ttl:
            sessions.popitem(last=False)

    def create(self) -> str:
        state = self.policy.session()
        with self._lock:
            now = self.clock()
            self._purge(now)
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
                self.evicted += 1
            sid = uuid.uuid4().hex
            self._sessions[sid] = _Session(state, threading.Lock(), now)
            return sid

    def get(self, sid: str) -> tuple[PolicySession, threading.Lock]:
        with self._lock:
            now = self.clock()
            self._purge(now)
            entry = self._sessions.get(sid)
            if entry is None:
                raise _unknown_session(sid)
            entry.used = now
            self._sessions.move_to_end(sid)
            return entry.state, entry.lock

    def delete(self, sid: str) -> None:
        with self._lock:
            if self._sessions.pop(sid, None) is None:
                raise _unknown_session(sid)


def _unknown_session(sid: str) -> HttpError:
    shown = sid if len(sid) <= 64 else sid[:64] + "..."
    return HttpError(
        404,
        f"unknown session {shown!r}: it never existed, expired, was deleted or was ended to make room",
        hint="create a session with POST /v1/sessions",
    )
