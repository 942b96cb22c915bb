"""The health of the Postgres this pooler fronts: role, reachability, replication lag.

Polled through ONE dedicated psycopg connection (control plane only; clients' traffic never
waits on it) every ``health_interval`` seconds. The gRPC Health stream, /metrics and the
topology registration read :attr:`HealthMonitor.state` and wait on :meth:`changed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from multigres.pooler.config import PoolerConfig
from multigres.wire.auth import CredentialKind
from multigres.wire.userlist import UserlistError, load_userlist

log = logging.getLogger("multigres.pooler.health")

PRIMARY, REPLICA = "primary", "replica"
SERVING, NOT_SERVING = "serving", "not_serving"

# One round trip. On a replica, the lag in seconds is how old the last replayed transaction
# is, except when everything received has been replayed (an idle primary commits nothing,
# and its replicas are then not behind at all); the lag in bytes is WAL received but not yet
# replayed.
HEALTH_QUERY = """
SELECT r,
       CASE WHEN NOT r THEN 0
            WHEN pg_last_wal_receive_lsn() IS NOT NULL
                 AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8,
       CASE WHEN NOT r THEN 0
            ELSE COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(),
                                          pg_last_wal_replay_lsn()), 0)
       END::int8
FROM (SELECT pg_is_in_recovery() AS r) s
"""


@dataclass(frozen=True)
class HealthState:
    role: str = ""  # "" until Postgres has answered once
    serving_state: str = NOT_SERVING
    lag_seconds: float = 0.0
    lag_bytes: int = 0
    pg_reachable: bool = False
    error: str = ""
    timestamp: float = 0.0
    paused: bool = False

    def same_status(self, other: HealthState) -> bool:
        """Equal in what a watcher reacts to (everything but lag and time)."""
        return (self.role, self.serving_state, self.pg_reachable, self.paused) == (
            other.role, other.serving_state, other.pg_reachable, other.paused)


def pooler_password(config: PoolerConfig) -> str | None:
    """The password of ``--pg-user``: ``--pg-password``, or its plain-text userlist entry."""
    if config.pg_password is not None:
        return config.pg_password
    if config.userlist is not None:
        try:
            entry = load_userlist(config.userlist).get(config.pg_user)
        except (OSError, UserlistError):
            return None
        if entry is not None and entry.kind is CredentialKind.PLAINTEXT:
            return entry.secret
    return None


class HealthMonitor:
    def __init__(
        self, config: PoolerConfig, is_paused: Callable[[], bool] | None = None
    ) -> None:
        self.config = config
        self.state = HealthState()
        # A callable telling whether the pooler is paused (the parent asks its workers).
        self._is_paused = is_paused
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.polls = 0

    # -- watching ----------------------------------------------------------------------------

    async def changed(self, within: float) -> HealthState:
        """The state after the next change of status, or after ``within`` seconds."""
        event = self._changed
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            pass
        return self.state

    def _set(self, state: HealthState) -> None:
        old, self.state = self.state, state
        if not old.same_status(state):
            log.info("health: role=%s serving_state=%s%s", state.role or "?",
                     state.serving_state, f" ({state.error})" if state.error else "")
            event, self._changed = self._changed, asyncio.Event()
            event.set()

    def set_paused(self, paused: bool) -> None:
        if paused != self.state.paused:
            self._set(dataclasses.replace(self.state, paused=paused))

    # -- polling -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def first_poll(self, within: float = 5.0) -> HealthState:
        """Wait (at most ``within`` seconds) for the first poll's answer."""
        deadline = time.monotonic() + within
        while self.polls == 0 and time.monotonic() < deadline:
            await self.changed(0.05)
        return self.state

    async def stop(self) -> None:
        """Not serving from now on (shutdown); close the connection."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._set(dataclasses.replace(self.state, serving_state=NOT_SERVING,
                                      error="the pooler is shutting down"))
        await self._close_conn()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # a broken connection may fail to close; it is gone anyway
                pass

    async def _run(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            await self.poll()
            interval = self.config.health_interval
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def poll(self) -> HealthState:
        cfg = self.config
        timeout = max(2.0, 2 * cfg.health_interval)
        paused = self._is_paused() if self._is_paused is not None else False
        try:
            async with asyncio.timeout(timeout):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        host=cfg.server_host, port=cfg.pg_port, user=cfg.pg_user,
                        password=pooler_password(cfg), dbname=cfg.pg_database,
                        connect_timeout=max(1, int(timeout)), autocommit=True,
                        application_name="multipooler-health",
                    )
                cur = await self._conn.execute(HEALTH_QUERY)
                row = await cur.fetchone()
        except (psycopg.Error, OSError, TimeoutError) as e:
            await self._close_conn()
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if isinstance(e, TimeoutError):
                msg = f"Postgres did not answer the health query within {timeout:g} s"
            state = dataclasses.replace(
                self.state, serving_state=NOT_SERVING, pg_reachable=False, error=msg,
                timestamp=time.time(), paused=paused)
        else:
            assert row is not None
            in_recovery, lag_s, lag_b = row
            state = HealthState(
                role=REPLICA if in_recovery else PRIMARY,
                serving_state=NOT_SERVING if self._stopping else SERVING,
                lag_seconds=float(lag_s or 0.0),  # type: ignore[arg-type]
                lag_bytes=int(lag_b or 0),  # type: ignore[call-overload]
                pg_reachable=True, timestamp=time.time(), paused=paused,
            )
        self.polls += 1
        self._set(state)
        # Wake first_poll even when nothing changed.
        if self.polls == 1:
            event, self._changed = self._changed, asyncio.Event()
            event.set()
        return state
