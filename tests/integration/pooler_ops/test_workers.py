"""--workers N: one port, N processes, cancels routed to the right worker, clean stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psycopg
import pytest

from multigres.netutil import port_in_use
from multigres.pgctld.instance import PgInstance
from multigres.procutil import pid_alive

from .conftest import StartPooler, wait_until

pytestmark = pytest.mark.integration

N_CLIENTS = 12


async def test_cancel_reaches_every_client_whichever_worker_gets_it(
    ops_pg: PgInstance, start_pooler: StartPooler
) -> None:
    pooler = start_pooler(ops_pg, "--workers", "2", pool_size=2 * N_CLIENTS)
    assert len(pooler.children()) == 2
    conns = [await psycopg.AsyncConnection.connect(pooler.conninfo(), autocommit=True)
             for _ in range(N_CLIENTS)]
    try:
        # The kernel spread the clients over both workers.
        clients = await pooler.aadmin("SHOW CLIENTS")
        workers = {c["worker"] for c in clients if c["database"] == "postgres"}
        assert workers == {"0", "1"}

        async def sleep_and_cancel(conn: psycopg.AsyncConnection[object]) -> float:
            query = asyncio.create_task(conn.execute("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            await conn.cancel_safe()
            with pytest.raises(psycopg.errors.QueryCanceled):
                await query
            return time.monotonic() - t0

        took = await asyncio.gather(*(sleep_and_cancel(c) for c in conns))
        assert max(took) < 5
        # Every connection is still usable.
        for c in conns:
            assert await (await c.execute("SELECT 1")).fetchone() == (1,)

        status, text = await asyncio.to_thread(pooler.http, "/metrics")
        assert status == 200
        metrics = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                   if line and not line.startswith("#")}
        assert metrics["multipooler_cancel_requests_total"] == N_CLIENTS
        # Each cancel's connection lands on a worker at random: with 12 of them, some
        # reached the other worker and were forwarded (all 12 direct: 1 in 4096).
        assert metrics["multipooler_cancel_requests_forwarded_total"] >= 1
        assert metrics["multipooler_workers"] == 2
    finally:
        for c in conns:
            await c.close()


async def test_console_and_pause_span_the_workers(ops_pg: PgInstance,
                                                  start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--workers", "2", pool_size=8)
    conns = [await psycopg.AsyncConnection.connect(pooler.conninfo(), autocommit=True)
             for _ in range(8)]
    try:
        for c in conns:
            await c.execute("SELECT 1")
        pools = await pooler.aadmin("SHOW POOLS")
        assert len(pools) == 1
        assert int(pools[0]["cl_active"]) == 8
        # --pool-size is for the whole pooler: each of 2 workers has half.
        assert pools[0]["pool_size"] == "8"
        servers = await pooler.aadmin("SHOW SERVERS")
        assert {s["worker"] for s in servers} == {"0", "1"}

        await pooler.aadmin("PAUSE")
        held = [asyncio.create_task(c.execute("SELECT 7")) for c in conns]
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in held)
        await pooler.aadmin("RESUME")
        for t in held:
            assert await (await asyncio.wait_for(t, 5)).fetchone() == (7,)
    finally:
        for c in conns:
            await c.close()


def test_sigterm_stops_every_worker(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--workers", "3", http=False, grpc=False)
    workers = pooler.children()
    assert len(workers) == 3
    with pooler.connect() as c:
        c.execute("SELECT 1")
        assert pooler.stop(signal.SIGTERM) == 0
    for pid in workers:
        assert not pid_alive(pid)
    assert not port_in_use(pooler.port)


def test_killing_the_parent_stops_every_worker(ops_pg: PgInstance,
                                                start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--workers", "2", http=False, grpc=False)
    workers = pooler.children()
    assert len(workers) == 2
    os.kill(pooler.pid, signal.SIGKILL)
    pooler.proc.wait()
    wait_until(lambda: not any(pid_alive(p) for p in workers), timeout=10,
               what="workers gone")
    wait_until(lambda: not port_in_use(pooler.port), timeout=5, what="port free")


def test_a_worker_that_dies_is_reported(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--workers", "2", http=False, grpc=False)
    w0, w1 = pooler.children()
    os.kill(w0, signal.SIGKILL)
    wait_until(lambda: "exited unexpectedly" in pooler.log_text(), what="death logged")
    # The other worker serves every new connection.
    for _ in range(6):
        with pooler.connect() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    assert pooler.proc.poll() is None
    os.kill(w1, signal.SIGKILL)
    # With no worker left the pooler exits with an error.
    assert pooler.proc.wait(10) == 1


def test_cancel_keys_carry_their_worker() -> None:
    import secrets

    from multigres.pooler.server import key_for_worker, worker_of_key

    for workers in (2, 3, 4, 7, 64):
        for w in range(workers):
            for _ in range(50):
                key = key_for_worker(secrets.randbits(31), w, workers)
                assert 0 <= key < 2**31  # a valid int32 on the wire
                assert worker_of_key(key, workers) == w
    assert key_for_worker(12345, 0, 1) == 12345


def test_shutdown_command(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--workers", "2", http=False, grpc=False)
    workers = pooler.children()
    try:
        pooler.admin("SHUTDOWN")
    except psycopg.OperationalError:
        pass  # the connection may close before the answer arrives
    assert pooler.proc.wait(15) == 0
    assert not any(pid_alive(p) for p in workers)
