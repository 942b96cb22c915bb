"""A topology watch sees a role change of a real Postgres within a second."""

from __future__ import annotations

import asyncio
import time

import pytest

from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.postgres import PgHarness
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import Cell, Pooler, PoolerRole, ServingState
from multigres.topo.server import TopoServer

pytestmark = pytest.mark.integration


async def test_watch_sees_promotion(pg_harness: PgHarness, etcd_server: ThrowawayEtcd) -> None:
    primary, (replica,) = pg_harness.shard(replicas=1, prefix="watched")
    async with TopoServer(EtcdConn(etcd_server.address, root="/rolechange")) as topo:
        await topo.create_cell(Cell("zone1"))
        for inst in (primary, replica):
            st = inst.status()
            await topo.create_pooler(Pooler(
                id=inst.spec.name, cell="zone1", host="127.0.0.1", port=0,
                pg_host="127.0.0.1", pg_port=inst.spec.port, database="postgres",
                tablegroup="default", shard="0", role=PoolerRole(st.role or "replica"),
                serving_state=ServingState.SERVING,
            ))
        seen: asyncio.Queue[tuple[str, PoolerRole, float]] = asyncio.Queue()

        async def watch() -> None:
            async with topo.watch_poolers("zone1") as changes:
                async for change in changes:
                    if change.record is not None:
                        seen.put_nowait((change.name, change.record.role, time.monotonic()))

        watcher = asyncio.create_task(watch())
        try:
            initial = {(await seen.get())[:2] for _ in range(2)}
            assert initial == {(primary.spec.name, PoolerRole.PRIMARY),
                               (replica.spec.name, PoolerRole.REPLICA)}
            await asyncio.to_thread(primary.stop)
            await asyncio.to_thread(replica.promote)
            assert replica.status().role == "primary"

            def to_primary(p: Pooler) -> None:
                p.role = PoolerRole.PRIMARY

            t0 = time.monotonic()
            await topo.update_pooler_fields("zone1", replica.spec.name, to_primary)
            name, role, at = await asyncio.wait_for(seen.get(), timeout=1.0)
            assert (name, role) == (replica.spec.name, PoolerRole.PRIMARY)
            assert at - t0 < 1.0
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
