"""Clients keep their connections while poolers restart and the primary changes.

Each test here breaks the cluster on purpose, so this module has its own cluster and the
tests run in order (the last one promotes the replica)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from .conftest import GatewayCluster, wait_until

pytestmark = pytest.mark.integration


def test_pooler_restart_outside_a_transaction(gw_cluster: GatewayCluster) -> None:
    """An idle session survives its pooler's restart: its next statement waits for the
    pooler and runs there, with the session's settings and prepared statements rebuilt."""
    conn = gw_cluster.connect()
    try:
        conn.execute("SET application_name = 'survivor'")
        for i in range(6):  # prepared by psycopg from the 5th run
            conn.execute("SELECT %s::int + 1", (i,))
        pooler = gw_cluster.poolers["zone1-gw1"]
        pooler.kill()
        time.sleep(0.5)  # the session is idle when its pooler dies (not a statement in flight)
        threading.Timer(1.0, pooler.start).start()
        t0 = time.monotonic()
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        assert time.monotonic() - t0 < 20
        assert conn.execute("SHOW application_name").fetchone() == ("survivor",)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    finally:
        conn.close()



def test_only_settings_that_took_are_rebuilt(gw_cluster: GatewayCluster) -> None:
    """A SET that failed changed nothing, and is not replayed on the next pooler (where it
    would fail again and strand the session); one done through the extended protocol pins
    the session (the gateway does not follow its executions), which is then told why."""
    conn = gw_cluster.connect()
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET statement_timeout = 'not a duration'")
        with pytest.raises(psycopg.errors.UndefinedTable):  # a named Parse that failed
            conn.execute("SELECT * FROM no_such_table_here WHERE 1 = %s", [1], prepare=True)
        for i in range(6):  # one that worked: prepared by psycopg from the 5th run
            conn.execute("SELECT %s::int", [i])
        conn.execute("SET lock_timeout = '7s'")
        pooler = gw_cluster.poolers["zone1-gw1"]
        pooler.kill()
        time.sleep(0.5)
        threading.Timer(0.5, pooler.start).start()
        assert conn.execute("SHOW lock_timeout").fetchone() == ("7s",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SELECT %s::int", [9]).fetchone() == (9,)
    finally:
        conn.close()
    conn = gw_cluster.connect()
    try:
        conn.execute("SELECT set_config('application_name', %s, false)", ["ext-set"])
        pooler = gw_cluster.poolers["zone1-gw1"]
        pooler.kill()
        time.sleep(0.5)
        with pytest.raises(psycopg.OperationalError) as e:
            conn.execute("SHOW application_name")
        assert "extended protocol" in str(e.value)
    finally:
        conn.close()
        gw_cluster.poolers["zone1-gw1"].start()

def test_transaction_cut_by_a_lost_pooler(gw_cluster: GatewayCluster) -> None:
    """The transaction gets 08006; the client rolls back and retries on the same
    connection; no statement of the broken transaction runs outside it."""
    with psycopg.connect(gw_cluster.primary.endpoint().conninfo(), autocommit=True) as pg:
        pg.execute("DROP TABLE IF EXISTS gw_cut")
        pg.execute("CREATE TABLE gw_cut (x int)")
    conn = gw_cluster.connect()
    try:
        conn.autocommit = False
        conn.execute("INSERT INTO gw_cut VALUES (1)")
        pooler = gw_cluster.poolers["zone1-gw1"]
        pooler.kill()
        with pytest.raises(psycopg.OperationalError) as e:
            conn.execute("INSERT INTO gw_cut VALUES (2)")
        assert e.value.sqlstate == "08006"
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("INSERT INTO gw_cut VALUES (3)")
        conn.rollback()
        pooler.start()
        conn.execute("INSERT INTO gw_cut VALUES (4)")
        conn.commit()
    finally:
        conn.close()
    with psycopg.connect(gw_cluster.primary.endpoint().conninfo(), autocommit=True) as pg:
        assert pg.execute("SELECT x FROM gw_cut").fetchall() == [(4,)]


def test_no_target_within_the_buffer_time(gw_cluster: GatewayCluster) -> None:
    """With no pooler for longer than buffer_timeout, the statement fails with 08006 and
    the connection stays usable."""
    conn = gw_cluster.connect(options="-c statement_timeout=0")
    try:
        pooler = gw_cluster.poolers["zone1-gw1"]
        pooler.kill()
        time.sleep(0.5)
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as e:
            conn.execute("SELECT 1")
        assert e.value.sqlstate == "08006"
        assert "no serving primary" in str(e.value)
        assert 9 < time.monotonic() - t0 < 25
        pooler.start()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        conn.close()


def test_postgres_restart_under_the_pooler(gw_cluster: GatewayCluster) -> None:
    """Postgres restarts while a session is idle: the pooler gets no server connection
    (08001) until it is back, and the gateway runs the statement again meanwhile."""
    conn = gw_cluster.connect()
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        gw_cluster.primary.stop()
        threading.Timer(1.5, gw_cluster.primary.start).start()
        assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        conn.close()


def test_new_primary(gw_cluster: GatewayCluster) -> None:
    """The primary's Postgres goes away and the replica is promoted: idle sessions move to
    the new primary at their next statement, and writes go there."""
    conn = gw_cluster.connect()
    replica_conn = gw_cluster.connect("postgres@replica")
    try:
        conn.execute("SET application_name = 'mover'")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        gw_cluster.primary.stop()
        gw_cluster.replica.promote()
        t0 = time.monotonic()
        conn.execute("CREATE TABLE IF NOT EXISTS gw_moved (x int)")
        conn.execute("INSERT INTO gw_moved VALUES (1)")
        assert time.monotonic() - t0 < 20
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert conn.execute("SHOW application_name").fetchone() == ("mover",)
        # The replica session had nowhere else to go: it follows to the primary it is on.
        wait_until(lambda: replica_conn.execute("SELECT 1").fetchone() == (1,))
    finally:
        conn.close()
        replica_conn.close()

