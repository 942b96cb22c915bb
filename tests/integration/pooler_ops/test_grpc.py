"""The gRPC control-plane service, through a grpc.aio client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from multigres.pgctld.instance import PgInstance
from multigres.rpc.pooler_client import PoolerClient
from multigres.testing.postgres import PgHarness

from .conftest import StartPooler

pytestmark = pytest.mark.integration


async def next_message(stream: Any, within: float = 5.0) -> Any:
    async with asyncio.timeout(within):
        return await stream.read()


async def test_health_stream_of_a_primary(ops_pg: PgInstance, start_pooler: StartPooler
                                          ) -> None:
    pooler = start_pooler(ops_pg, "--pooler-id", "zone1-p1", http=False)
    client = PoolerClient(f"127.0.0.1:{pooler.grpc_port}")
    try:
        stream = client.health()
        first = await next_message(stream)
        if first.role == "":  # the first poll had not answered yet
            first = await next_message(stream)
        assert first.pooler_id == "zone1-p1"
        assert first.role == "primary"
        assert first.serving_state == "serving"
        assert first.pg_reachable and first.error == ""
        assert first.replication_lag_seconds == 0 and first.replication_lag_bytes == 0
        # Then at least every second, without a change.
        t0 = time.monotonic()
        second = await next_message(stream, within=3)
        assert time.monotonic() - t0 < 2.5
        assert second.timestamp > first.timestamp
        stream.cancel()
    finally:
        await client.aclose()


async def test_health_of_a_replica(ops_shard: tuple[PgInstance, PgInstance],
                                   start_pooler: StartPooler) -> None:
    primary, replica = ops_shard
    pooler = start_pooler(replica, http=False)
    with psycopg.connect(primary.endpoint().conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (x int)")
        conn.execute("INSERT INTO lag_probe VALUES (1)")
    client = PoolerClient(f"127.0.0.1:{pooler.grpc_port}")
    try:
        stream = client.health()
        msg = await next_message(stream)
        while msg.role == "":
            msg = await next_message(stream)
        assert msg.role == "replica"
        assert msg.serving_state == "serving"
        assert msg.replication_lag_seconds >= 0 and msg.replication_lag_bytes >= 0
        stream.cancel()
        status = await client.status()
        assert status.role == "replica"
    finally:
        await client.aclose()


async def test_health_stream_reports_changes_at_once(pg_harness: PgHarness,
                                                     start_pooler: StartPooler) -> None:
    pg = pg_harness.primary()
    pooler = start_pooler(pg, "--health-interval", "0.5", http=False)
    client = PoolerClient(f"127.0.0.1:{pooler.grpc_port}")
    try:
        stream = client.health()
        msg = await next_message(stream)
        while msg.serving_state != "serving":
            msg = await next_message(stream)
        await asyncio.to_thread(pg.stop)
        while msg.serving_state == "serving":
            msg = await next_message(stream)
        assert not msg.pg_reachable and msg.error
        assert msg.role == "primary"  # the last role known
        await asyncio.to_thread(pg.start)
        while msg.serving_state != "serving":
            msg = await next_message(stream, within=15)
        assert msg.pg_reachable
        stream.cancel()
    finally:
        await client.aclose()


async def test_status(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--pooler-id", "p-status", http=False)
    conns = [await psycopg.AsyncConnection.connect(pooler.conninfo(), autocommit=True)
             for _ in range(3)]
    client = PoolerClient(f"127.0.0.1:{pooler.grpc_port}")
    try:
        await conns[0].execute("BEGIN")
        await conns[0].execute("SELECT 1")
        for c in conns[1:]:
            await c.execute("SELECT 1")
        status = await client.status()
        assert status.pooler_id == "p-status"
        assert status.version
        assert status.uptime_seconds > 0
        assert status.workers == 1
        assert status.pools == 1 and len(status.pool) == 1
        assert status.clients == 3
        assert status.clients_active == 1
        assert status.servers_active == 1
        assert status.servers >= 1
        p = status.pool[0]
        assert (p.user, p.database, p.size) == ("postgres", "postgres", 4)
        assert status.listen == f"127.0.0.1:{pooler.port}"
    finally:
        for c in conns:
            await c.close()
        await client.aclose()


async def test_user_secret(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    """The gateway authenticates clients against the users of Postgres: the pooler gives it
    their stored secrets (from its auth query)."""
    with psycopg.connect(ops_pg.endpoint().conninfo(), autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute("DROP ROLE IF EXISTS grpc_secret_user")
        conn.execute("CREATE ROLE grpc_secret_user LOGIN PASSWORD 'pw-1'")
        stored = conn.execute("SELECT rolpassword FROM pg_authid "
                              "WHERE rolname = 'grpc_secret_user'").fetchone()
    assert stored is not None
    pooler = start_pooler(ops_pg, http=False)
    client = PoolerClient(f"127.0.0.1:{pooler.grpc_port}")
    try:
        got = await client.user_secret("grpc_secret_user")
        assert got.found and got.kind == "scram-sha-256" and got.secret == stored[0]
        missing = await client.user_secret("no_such_user_here")
        assert not missing.found and missing.secret == ""
    finally:
        await client.aclose()
