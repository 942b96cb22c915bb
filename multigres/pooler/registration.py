"""The pooler's record in the topology (``--topo HOST:PORT --cell C --database D ...``).

The record has other writers (``multigres cluster start`` adds the pgctld data directory, a
switchover sets roles), so the pooler changes only the fields it owns, with a
compare-and-set read-modify-write, and never rewrites the whole record: at start where it
listens (``host``, ``port``, ``grpc_port``), the Postgres it owns and its shard, with the
role and serving state its first health poll found; after that only ``role`` and
``serving_state``, when they change. A missing record is created whole. On shutdown it marks
the record ``not_serving``: the record stays, so the orchestrator still knows the instance.
The topology being down never stops the pooler: the write is retried with the next change and
at least every ``RETRY`` seconds until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable

from multigres.pooler.config import PoolerConfig
from multigres.pooler.health import PRIMARY, SERVING, HealthMonitor, HealthState
from multigres.topo.errors import NodeExists, NoNode, TopoError
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import Pooler, PoolerRole, ServingState
from multigres.topo.server import TopoServer, pooler_path

log = logging.getLogger("multigres.pooler.topo")

RETRY = 5.0
# Attempts at "update, else create" when another writer creates or deletes the record between
# the two.
WRITE_ATTEMPTS = 3


def default_pooler_id(config: PoolerConfig, port: int) -> str:
    """``<cell>-<host>-<port>``: unique per machine and port, stable across restarts."""
    host = socket.gethostname() if config.listen_host in ("", "0.0.0.0", "::") else \
        config.listen_host
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{config.cell}-{host}-{port}")


def advertised_host(config: PoolerConfig) -> str:
    if config.listen_host in ("", "0.0.0.0", "::"):
        return socket.getfqdn()
    return config.listen_host


class Registration:
    def __init__(self, config: PoolerConfig, pooler_id: str, port: int, grpc_port: int,
                 health: HealthMonitor) -> None:
        assert config.topo is not None and config.database is not None
        self.config = config
        self.pooler_id = pooler_id
        self.port = port
        self.grpc_port = grpc_port
        self.health = health
        self.topo = TopoServer(EtcdConn(config.topo, root=config.topo_root))
        self.written: tuple[str, str] | None = None
        self.registered = False  # the start-time fields (addresses, shard) are written
        self._task: asyncio.Task[None] | None = None

    def record(self, st: HealthState) -> Pooler:
        cfg = self.config
        assert cfg.database is not None
        return Pooler(
            id=self.pooler_id, cell=cfg.cell, host=advertised_host(cfg), port=self.port,
            pg_host=cfg.pg_host, pg_port=cfg.pg_port, database=cfg.database,
            tablegroup=cfg.tablegroup, shard=cfg.shard,
            role=PoolerRole.PRIMARY if st.role == PRIMARY else PoolerRole.REPLICA,
            serving_state=ServingState.SERVING if st.serving_state == SERVING
            else ServingState.NOT_SERVING,
            grpc_port=self.grpc_port,
        )

    def _change(self, st: HealthState) -> Callable[[Pooler], None]:
        """What this pooler sets on an existing record: the start-time fields until they
        are written once, then role and serving state alone."""
        mine = self.record(st)
        at_start = not self.registered

        def change(p: Pooler) -> None:
            if at_start:
                p.host, p.port, p.grpc_port = mine.host, mine.port, mine.grpc_port
                p.pg_host, p.pg_port = mine.pg_host, mine.pg_port
                p.database, p.tablegroup, p.shard = mine.database, mine.tablegroup, mine.shard
            p.role, p.serving_state = mine.role, mine.serving_state

        return change

    async def _put(self, st: HealthState) -> None:
        """Update the fields this pooler owns; create the whole record if there is none."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await self.topo.update_pooler_fields(self.config.cell, self.pooler_id,
                                                     self._change(st))
                return
            except NoNode:
                pass
            rec = self.record(st)
            try:
                # Not create_pooler: that needs the cell's record, and a pooler may register
                # before anyone created the cell.
                await self.topo.conn.create(pooler_path(rec.cell, rec.id), rec.to_json())
                return
            except NodeExists:
                # Created by another writer in between: update theirs.
                if attempt == WRITE_ATTEMPTS - 1:
                    raise

    async def write(self, st: HealthState) -> bool:
        """Write the fields this pooler owns; False if the topology is down."""
        key = (st.role, st.serving_state)
        try:
            await self._put(st)
        except (TopoError, OSError) as e:
            log.warning("cannot write pooler record %s/%s to the topology at %s: %s",
                        self.config.cell, self.pooler_id, self.config.topo, e)
            return False
        if key != self.written:
            log.info("topology: pooler %s is %s, %s", self.pooler_id, st.role or "(role unknown)",
                     st.serving_state)
        self.written = key
        self.registered = True
        return True

    async def start(self) -> None:
        """Register in the background: an unreachable topology must not delay serving."""
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        # After the first health poll, so that the record says the real role.
        ok = await self.write(await self.health.first_poll())
        while True:
            st = await self.health.changed(RETRY)
            if not ok or (st.role, st.serving_state) != self.written:
                ok = await self.write(st)

    async def close(self, deadline: float = 3.0) -> None:
        """Mark the record not serving (best effort, within ``deadline``), disconnect."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            async with asyncio.timeout(deadline):
                await self.topo.update_pooler_fields(
                    self.config.cell, self.pooler_id, _not_serving)
        except (TopoError, OSError, TimeoutError) as e:
            log.warning("cannot mark pooler %s not serving in the topology: %s",
                        self.pooler_id, e)
        try:
            await self.topo.close()
        except Exception:  # closing a connection to an unreachable etcd may fail; it is gone
            pass


def _not_serving(p: Pooler) -> None:
    p.serving_state = ServingState.NOT_SERVING
