"""The pooler registers itself in the topology and keeps its record up to date."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from multigres.pgctld.instance import PgInstance
from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.postgres import PgHarness
from multigres.topo.errors import NoNode
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import Pooler, PoolerRole, ServingState
from multigres.topo.server import TopoServer

from .conftest import StartPooler

pytestmark = pytest.mark.integration


async def wait_record(ts: TopoServer, cell: str, pooler_id: str,
                      ok: Callable[[Pooler], bool], within: float = 15) -> Pooler:
    last: Pooler | None = None
    async with asyncio.timeout(within):
        while True:
            try:
                last = await ts.get_pooler(cell, pooler_id)
                if ok(last):
                    return last
            except NoNode:
                pass
            await asyncio.sleep(0.1)


def topo_args(etcd: ThrowawayEtcd, root: str, pooler_id: str, *more: str) -> list[str]:
    return ["--topo", etcd.address, "--topo-root", root, "--cell", "zone1",
            "--database", "db1", "--tablegroup", "tg1", "--shard", "0",
            "--pooler-id", pooler_id, *more]


async def test_register_follow_and_unregister(
    etcd_server: ThrowawayEtcd, pg_harness: PgHarness, start_pooler: StartPooler
) -> None:
    root = f"/ops-{uuid.uuid4().hex[:8]}"
    pg = pg_harness.primary()
    pooler = start_pooler(pg, *topo_args(etcd_server, root, "zone1-100",
                                         "--health-interval", "0.3"), http=False)
    ts = TopoServer(EtcdConn(etcd_server.address, root=root))
    try:
        rec = await wait_record(ts, "zone1", "zone1-100",
                                lambda p: p.serving_state == ServingState.SERVING)
        assert rec.role == PoolerRole.PRIMARY
        assert (rec.host, rec.port) == ("127.0.0.1", pooler.port)
        assert (rec.pg_host, rec.pg_port) == ("127.0.0.1", pg.spec.port)
        assert (rec.database, rec.tablegroup, rec.shard) == ("db1", "tg1", "0")
        assert rec.grpc_port == pooler.grpc_port
        assert rec.cell == "zone1" and rec.id == "zone1-100"

        # Postgres goes away: the record says so; and back.
        await asyncio.to_thread(pg.stop)
        rec = await wait_record(ts, "zone1", "zone1-100",
                                lambda p: p.serving_state == ServingState.NOT_SERVING)
        await asyncio.to_thread(pg.start)
        await wait_record(ts, "zone1", "zone1-100",
                          lambda p: p.serving_state == ServingState.SERVING)

        # Shutdown marks it not serving, and keeps it.
        assert await asyncio.to_thread(pooler.stop) == 0
        rec = await ts.get_pooler("zone1", "zone1-100")
        assert rec.serving_state == ServingState.NOT_SERVING
        assert rec.port == pooler.port
    finally:
        await ts.close()


async def test_replica_registers_as_replica(
    etcd_server: ThrowawayEtcd, ops_shard: tuple[PgInstance, PgInstance],
    start_pooler: StartPooler
) -> None:
    root = f"/ops-{uuid.uuid4().hex[:8]}"
    _, replica = ops_shard
    start_pooler(replica, *topo_args(etcd_server, root, "zone1-101"), http=False, grpc=False)
    ts = TopoServer(EtcdConn(etcd_server.address, root=root))
    try:
        rec = await wait_record(ts, "zone1", "zone1-101",
                                lambda p: p.serving_state == ServingState.SERVING)
        assert rec.role == PoolerRole.REPLICA
        assert rec.grpc_port == 0
    finally:
        await ts.close()


async def test_topology_down_does_not_stop_the_pooler(
    ops_pg: PgInstance, start_pooler: StartPooler
) -> None:
    from multigres.netutil import free_port

    dead = f"127.0.0.1:{free_port()}"
    pooler = start_pooler(ops_pg, "--topo", dead, "--database", "db1", http=False,
                          grpc=False)
    conn = await asyncio.to_thread(pooler.connect)
    try:
        assert (await asyncio.to_thread(conn.execute, "SELECT 1")).fetchone() == (1,)
    finally:
        conn.close()
    assert "cannot write pooler record" in pooler.log_text()
