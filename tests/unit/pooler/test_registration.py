"""multigres.pooler.registration: the pooler writes only the fields of its Pooler record that
it owns, so what other writers put there (the data directory, a switchover's role) stays."""

from __future__ import annotations

import asyncio
from typing import cast

from multigres.pooler.config import PoolerConfig
from multigres.pooler.health import (
    NOT_SERVING,
    PRIMARY,
    REPLICA,
    SERVING,
    HealthMonitor,
    HealthState,
)
from multigres.pooler.registration import Registration
from multigres.topo.memory import MemoryConn
from multigres.topo.records import Pooler, PoolerRole, ServingState
from multigres.topo.server import TopoServer


def _registration(topo: TopoServer) -> Registration:
    config = PoolerConfig(pg_host="10.0.0.5", pg_port=5433, topo="127.0.0.1:1",
                          cell="zone1", database="db1", tablegroup="tg1", shard="0")
    reg = Registration(config, "zone1-100", 6432, 7000, cast(HealthMonitor, None))
    reg.topo = topo
    return reg


def test_creates_the_record_when_absent() -> None:
    async def run() -> Pooler:
        topo = TopoServer(MemoryConn())
        reg = _registration(topo)
        assert await reg.write(HealthState(role=PRIMARY, serving_state=SERVING))
        return await topo.get_pooler("zone1", "zone1-100")

    rec = asyncio.run(run())
    assert (rec.host, rec.port, rec.grpc_port) == ("127.0.0.1", 6432, 7000)
    assert (rec.pg_host, rec.pg_port) == ("10.0.0.5", 5433)
    assert (rec.database, rec.tablegroup, rec.shard) == ("db1", "tg1", "0")
    assert (rec.role, rec.serving_state) == (PoolerRole.PRIMARY, ServingState.SERVING)


def test_keeps_the_fields_others_wrote() -> None:
    async def run() -> list[Pooler]:
        topo = TopoServer(MemoryConn())
        # Written by `multigres cluster start` before the pooler runs.
        await topo.update_pooler(Pooler(
            id="zone1-100", cell="zone1", host="old-host", port=1, pg_host="10.0.0.5",
            pg_port=5433, database="db1", tablegroup="tg1", shard="0",
            role=PoolerRole.REPLICA, serving_state=ServingState.NOT_SERVING,
            pgctld_data_dir="/data/zone1-100"))
        reg = _registration(topo)
        seen = []
        assert await reg.write(HealthState(role=PRIMARY, serving_state=SERVING))
        seen.append(await topo.get_pooler("zone1", "zone1-100"))

        # Someone else moves the address (e.g. a later cluster config): a role change of
        # the running pooler writes the role alone.
        def moved(p: Pooler) -> None:
            p.host = "elsewhere"

        await topo.update_pooler_fields("zone1", "zone1-100", moved)
        assert await reg.write(HealthState(role=REPLICA, serving_state=NOT_SERVING))
        seen.append(await topo.get_pooler("zone1", "zone1-100"))
        return seen

    started, changed = asyncio.run(run())
    assert started.pgctld_data_dir == "/data/zone1-100"
    assert (started.host, started.port, started.grpc_port) == ("127.0.0.1", 6432, 7000)
    assert (started.role, started.serving_state) == (PoolerRole.PRIMARY, ServingState.SERVING)
    assert changed.pgctld_data_dir == "/data/zone1-100"
    assert changed.host == "elsewhere"
    assert (changed.role, changed.serving_state) == (PoolerRole.REPLICA,
                                                     ServingState.NOT_SERVING)


def test_topology_down_is_reported_not_raised() -> None:
    async def run() -> bool:
        conn = MemoryConn()
        await conn.close()
        return await _registration(TopoServer(conn)).write(
            HealthState(role=PRIMARY, serving_state=SERVING))

    assert asyncio.run(run()) is False
