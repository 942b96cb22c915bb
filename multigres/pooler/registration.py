"""The pooler's record in the topology (``--topo HOST:PORT --cell C --database D ...``).

At start the pooler writes its Pooler record (where it listens, the Postgres it owns, its
shard, and the role and serving state its first health poll found). It follows its health
monitor and rewrites the record when role or serving state change, and on shutdown marks it
``not_serving``: the record stays, so the orchestrator still knows the instance. The
topology being down never stops the pooler: the write is retried with the next change and at
least every ``RETRY`` seconds until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket

from multigres.pooler.config import PoolerConfig
from multigres.pooler.health import PRIMARY, SERVING, HealthMonitor, HealthState
from multigres.topo.errors import TopoError
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import Pooler, PoolerRole, ServingState
from multigres.topo.server import TopoServer

log = logging.getLogger("multigres.pooler.topo")

RETRY = 5.0


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

    async def write(self, st: HealthState) -> bool:
        """Write the whole record (the pooler owns it); False if the topology is down."""
        key = (st.role, st.serving_state)
        try:
            await self.topo.update_pooler(self.record(st))
        except (TopoError, OSError) as e:
            log.warning("cannot write pooler record %s/%s to the topology at %s: %s",
                        self.config.cell, self.pooler_id, self.config.topo, e)
            return False
        if key != self.written:
            log.info("topology: pooler %s is %s, %s", self.pooler_id, st.role or "(role unknown)",
                     st.serving_state)
        self.written = key
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
