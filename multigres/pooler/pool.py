"""A pool of server connections for one (user, database).

Idle backends are kept most-recently-used last, so the hottest backend (warm caches, already
prepared statements) is handed out first, and a client's previous backend when it is idle
(affinity: what it prepared and set is still there, and pg_backend_pid() stays the same).
Clients that find no idle backend wait in FIFO order, each with its own deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from multigres._cy.poolcore import PoolCore
from multigres.pooler.errors import PoolerError
from multigres.wire import sqlstate as codes

if TYPE_CHECKING:
    from multigres.pooler.backend import Backend


class Waiter(Protocol):
    """A client waiting for a backend."""

    def on_backend(self, backend: Backend) -> None: ...
    def on_backend_error(self, error: PoolerError) -> None: ...


Connector = Callable[["Pool"], "asyncio.Future[Backend]"]


class Pool(PoolCore):
    def __init__(
        self,
        user: str,
        database: str,
        size: int,
        connector: Connector,
        *,
        wait_timeout: float = 120.0,
        lifetime: float = 3600.0,
        idle_timeout: float = 600.0,
    ) -> None:
        self.user = user
        self.database = database
        self.size = size
        self._connector = connector
        self.wait_timeout = wait_timeout
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout
        self.idle: dict[Backend, None] = {}  # insertion-ordered set, MRU last
        self.active: set[Backend] = set()
        self.connecting = 0
        # Waiting clients and when each began to wait (time.monotonic()).
        self.waiters: deque[tuple[Waiter, float]] = deque()
        self._wait_timer: asyncio.TimerHandle | None = None
        self.paused = False
        # Stats for SHOW POOLS / metrics.
        self.total_waits = 0
        self.total_wait_time = 0.0
        self.max_wait = 0.0
        self.connect_errors = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.database)

    # -- checkout ---------------------------------------------------------------------------

    def _arm_wait_timer(self) -> None:
        """The waits share one timer, armed for the earliest deadline (a timer per wait would
        cost a heap insert and a cancel on every checkout of a busy pool)."""
        if not self.waiters or self.wait_timeout <= 0:
            return
        first = min(t for _, t in self.waiters)
        delay = max(0.0, first + self.wait_timeout - time.monotonic())
        self._wait_timer = asyncio.get_running_loop().call_later(delay, self._wait_expired)

    def cancel_wait(self, waiter: Waiter) -> None:
        for i, (w, _) in enumerate(self.waiters):
            if w is waiter:
                del self.waiters[i]
                return

    def _wait_expired(self) -> None:
        """Fail the waits past the wait timeout; arm the timer for the next deadline."""
        self._wait_timer = None
        timeout = self.wait_timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        expired = [w for w, started in self.waiters if started + timeout <= now]
        if expired:
            self.waiters = deque((w, t) for w, t in self.waiters if t + timeout > now)
        self._arm_wait_timer()
        for waiter in expired:
            waiter.on_backend_error(
                PoolerError(
                    codes.TOO_MANY_CONNECTIONS,
                    f"no server connection became free within {timeout:g} s "
                    f"(pool for user {self.user!r}, database {self.database!r} has "
                    f"{self.size} connections, all busy)",
                    hint="raise --pool-size or --query-wait-timeout, or shorten transactions",
                )
            )

    def _grow(self) -> None:
        """Open backends for waiters while under the size limit."""
        while self.waiters and self.total() < self.size and not self.paused:
            needed = len(self.waiters) - self.connecting
            if needed <= 0:
                return
            self.connecting += 1
            fut = self._connector(self)
            fut.add_done_callback(self._connected)

    def _connected(self, fut: asyncio.Future[Backend]) -> None:
        self.connecting -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.connect_errors += 1
            # 08001: no server connection, so nothing of the client's ran (the gateway
            # retries such a statement elsewhere).
            err = exc if isinstance(exc, PoolerError) else PoolerError(
                codes.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                f"could not connect to the server: {exc}"
            )
            # Nothing else will come for the waiters if no backend is left or coming.
            if not self.active and not self.idle and not self.connecting:
                while self.waiters:
                    waiter, _ = self.waiters.popleft()
                    waiter.on_backend_error(err)
            elif self.waiters:
                waiter, _ = self.waiters.popleft()
                waiter.on_backend_error(err)
            return
        backend = fut.result()
        self.idle[backend] = None
        self._dispatch()

    # -- return -----------------------------------------------------------------------------

    def forget(self, backend: Backend) -> None:
        """``backend`` is gone (closed, broken): make room for a new one."""
        self.active.discard(backend)
        self.idle.pop(backend, None)
        self._grow()

    # -- maintenance ------------------------------------------------------------------------

    def reap(self, now: float) -> None:
        """Close idle backends past their idle timeout or lifetime."""
        for backend in list(self.idle):
            too_old = self.lifetime > 0 and now - backend.created_at > self.lifetime
            too_idle = self.idle_timeout > 0 and now - backend.last_used > self.idle_timeout
            if too_old or too_idle:
                del self.idle[backend]
                backend.close()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._grow()
        self._dispatch()

    def close_idle(self) -> None:
        for backend in list(self.idle):
            backend.close()
        self.idle.clear()
