"""Which poolers exist and which can serve: topology watches plus each pooler's health stream.

Pooler records come from watching every cell's poolers in the topology (no polling); for each
pooler with a gRPC port a task follows its Health stream (role, serving state, lag,
Postgres reachable). A pooler serves a session only while both its record and its latest
health say it serves; a broken stream means "unknown", which does not serve, and is retried.

The primary of a shard is the one its Shard record names (the record is written by whoever
changes primaries, after the promotion: fresher than a health poll, which can still say
"primary" for a demoted server that restarted between two polls); while the record says the
shard's primary is not serving (a switchover), there is none, and statements wait. Without a
Shard record (a pooler alone, in tests), the pooler whose health says primary is.

Waiting for a target (a restart, a failover) is ``await discovery.changed()``: every change
of a record or a health message wakes the waiters, who look again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from multigres._cy.gatecore import GateCounters
from multigres.gateway.follow import RETRY_MAX, RETRY_MIN, follow
from multigres.rpc.pooler_client import PoolerClient
from multigres.topo.errors import TopoError
from multigres.topo.records import Pooler, ServingState, Shard
from multigres.topo.server import RecordChange, TopoServer

UNSHARDED = "0"  # the shard name of an unsharded tablegroup
log = logging.getLogger("multigres.gateway")



@dataclass
class PoolerState:
    record: Pooler
    health: Any = None  # the last HealthResponse; None: not known (stream down)
    health_at: float = 0.0
    client: PoolerClient | None = None
    task: asyncio.Task[None] | None = None
    stream_error: str = ""
    grpc_address: str = field(default="")

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def role(self) -> str:
        """The role Postgres reports (through the health stream), else the record's."""
        if self.health is not None and self.health.role:
            return str(self.health.role)
        return str(self.record.role)

    @property
    def serving(self) -> bool:
        h = self.health
        return (self.record.port > 0 and self.record.serving_state == ServingState.SERVING
                and h is not None and h.serving_state == "serving" and h.pg_reachable
                and bool(h.role))

    @property
    def lag_seconds(self) -> float:
        return float(self.health.replication_lag_seconds) if self.health is not None else 0.0


class Discovery:
    def __init__(self, topo: TopoServer, cell: str) -> None:
        self.topo = topo
        self.cell = cell
        self.poolers: dict[tuple[str, str], PoolerState] = {}  # (cell, id) -> state
        # (database, tablegroup, shard) -> its record (None: watched, but absent)
        self.shards: dict[tuple[str, str, str], Shard | None] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rr = itertools.count()
        self.closed = False
        # counters.generation is bumped at every change: a session re-checks its pooler only
        # when it moved (read by the sessions' C path, gatecore).
        self.counters = GateCounters()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch every cell's poolers. Returns once the initial records are in (or the
        topology is unreachable: then the watches keep retrying in the background)."""
        try:
            cells = await self.topo.get_cell_names()
        except TopoError as e:
            log.warning("topology unreachable at start (%s); retrying", e)
            cells = [self.cell]
        if self.cell not in cells:
            cells.append(self.cell)
        ready = [asyncio.Event() for _ in cells]
        for cell, ev in zip(cells, ready, strict=True):
            self._tasks.append(asyncio.create_task(self._watch_cell(cell, ev)))
        try:
            async with asyncio.timeout(5):
                await asyncio.gather(*(ev.wait() for ev in ready))
        except TimeoutError:
            log.warning("topology watch not ready after 5 s; going on")

    async def close(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()
        for st in list(self.poolers.values()):
            await self._stop_health(st)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._notify()

    # -- change notification ----------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self.counters.generation

    def _notify(self) -> None:
        self.counters.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Wait until something changes (or ``within`` seconds pass)."""
        ev = self._changed
        try:
            async with asyncio.timeout(within):
                await ev.wait()
        except TimeoutError:
            pass

    # -- choosing a target ------------------------------------------------------------------

    # A target is a shard of a database: (tablegroup, shard name). None (the default) is the
    # database's unsharded tablegroup (its shard "0"): what an unsharded session talks to.

    def knows_database(self, database: str) -> bool:
        return any(st.record.database == database for st in self.poolers.values())

    def candidates(self, database: str, where: tuple[str, str] | None = None
                   ) -> list[PoolerState]:
        if where is None:
            return [st for st in self.poolers.values()
                    if st.record.database == database and st.record.shard == UNSHARDED]
        tg, shard = where
        return [st for st in self.poolers.values() if st.record.database == database
                and st.record.tablegroup == tg and st.record.shard == shard]

    def primary(self, database: str, where: tuple[str, str] | None = None
                ) -> PoolerState | None:
        """The serving primary of a shard of the database, if one is known."""
        for (db, tg, name), shard in self.shards.items():
            if db != database or shard is None:
                continue
            if (name != UNSHARDED) if where is None else ((tg, name) != where):
                continue
            if not shard.is_primary_serving:
                return None  # writes are being switched: wait
            if shard.primary_id:
                st = self.poolers.get((shard.primary_cell, shard.primary_id))
                return st if st is not None and st.serving else None
        found = [st for st in self.candidates(database, where)
                 if st.serving and st.role == "primary"]
        if len(found) > 1:
            # Two poolers report a primary (a switchover in progress, or a split brain that
            # the orchestrator has yet to fence): trust the topology's choice too.
            agreed = [st for st in found if st.record.role == "primary"]
            found = agreed or found
            found.sort(key=lambda st: -st.health_at)
        return found[0] if found else None

    def shard_names(self, database: str, tablegroup: str) -> list[str]:
        """The shards of a tablegroup that discovery knows (from poolers and Shard records)."""
        return sorted({name for (db, tg, name) in self.shards
                       if db == database and tg == tablegroup})

    def replicas(self, database: str, max_lag: float, where: tuple[str, str] | None = None
                 ) -> list[PoolerState]:
        """The serving replicas under ``max_lag`` seconds of lag, this cell's if any."""
        primary = self.primary(database, where)
        found = [st for st in self.candidates(database, where)
                 if st.serving and st.role == "replica" and st.lag_seconds < max_lag
                 and st is not primary]
        local = [st for st in found if st.record.cell == self.cell]
        return local or found

    def replica(self, database: str, max_lag: float, where: tuple[str, str] | None = None
                ) -> PoolerState | None:
        """A serving replica under ``max_lag`` seconds of lag, from this cell if one is."""
        pick = self.replicas(database, max_lag, where)
        if not pick:
            return None
        pick.sort(key=lambda st: st.id)
        return pick[next(self._rr) % len(pick)]

    def secret_source(self, database: str | None) -> PoolerState | None:
        """A pooler to ask for users' secrets: a primary, else any reachable one."""
        pool = ([st for st in self.poolers.values() if st.record.database == database]
                if database else list(self.poolers.values()))
        pool = [st for st in pool if st.record.grpc_port > 0]
        pool.sort(key=lambda st: (st.role != "primary", not st.serving, st.id))
        return pool[0] if pool else None

    # -- topology watch ---------------------------------------------------------------------

    async def _watch_cell(self, cell: str, ready: asyncio.Event) -> None:
        async def initial(changes: list[RecordChange[Pooler]]) -> None:
            seen = {c.name for c in changes}
            for key in [k for k in self.poolers if k[0] == cell and k[1] not in seen]:
                await self._remove(key)
            for change in changes:
                await self._apply(cell, change.name, change.record)

        async def changed(change: RecordChange[Pooler]) -> None:
            await self._apply(cell, change.name, change.record)

        await follow(f"poolers of cell {cell}", lambda: self.topo.watch_poolers(cell),
                     initial, changed, lambda: self.closed, ready)

    async def _apply(self, cell: str, name: str, record: Pooler | None) -> None:
        key = (cell, name)
        if record is None:
            await self._remove(key)
            return
        st = self.poolers.get(key)
        grpc_address = f"{record.host}:{record.grpc_port}" if record.grpc_port else ""
        if st is None:
            st = PoolerState(record)
            self.poolers[key] = st
        else:
            st.record = record
        key3 = (record.database, record.tablegroup, record.shard)
        if record.database and key3 not in self.shards:
            self.shards[key3] = None
            self._tasks.append(asyncio.create_task(self._watch_shard(*key3)))
        if st.grpc_address != grpc_address:
            await self._stop_health(st)
            st.grpc_address = grpc_address
            if grpc_address:
                st.client = PoolerClient(grpc_address)
                st.task = asyncio.create_task(self._follow_health(st))
        self._notify()

    async def _watch_shard(self, database: str, tablegroup: str, name: str) -> None:
        key = (database, tablegroup, name)

        async def initial(changes: list[RecordChange[Shard]]) -> None:
            for change in changes:
                self.shards[key] = change.record
            self._notify()

        async def changed(change: RecordChange[Shard]) -> None:
            self.shards[key] = change.record
            self._notify()

        await follow(f"shard {database}/{tablegroup}/{name}",
                     lambda: self.topo.watch_shard(database, tablegroup, name),
                     initial, changed, lambda: self.closed)

    async def _remove(self, key: tuple[str, str]) -> None:
        st = self.poolers.pop(key, None)
        if st is not None:
            await self._stop_health(st)
            self._notify()

    async def _stop_health(self, st: PoolerState) -> None:
        if st.task is not None:
            st.task.cancel()
            await asyncio.gather(st.task, return_exceptions=True)
            st.task = None
        if st.client is not None:
            await st.client.aclose()
            st.client = None
        st.health = None

    async def _follow_health(self, st: PoolerState) -> None:
        delay = RETRY_MIN
        client = st.client
        assert client is not None
        while True:
            call = client.health()
            try:
                async for msg in call:
                    st.health = msg
                    st.health_at = time.monotonic()
                    st.stream_error = ""
                    delay = RETRY_MIN
                    self._notify()
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as e:
                st.stream_error = str(e.details() if isinstance(e, grpc.aio.AioRpcError) else e)
            finally:
                call.cancel()
            if st.health is not None:
                st.health = None
                self._notify()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
