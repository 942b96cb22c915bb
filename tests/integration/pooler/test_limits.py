"""Limits and timeouts: each with its SQLSTATE and a message a person can act on, and the
pooler (and its other clients) fine afterwards."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from multigres.testing.pooler import LoginError, PoolerProcess, RawClient, error_fields

pytestmark = pytest.mark.integration

MakePooler = Callable[..., PoolerProcess]


def _pooler_pids(direct: psycopg.Connection[Any], user: str) -> set[int]:
    rows = direct.execute(
        "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
        (user,)).fetchall()
    return {r[0] for r in rows}


def test_max_client_connections(make_pooler: MakePooler) -> None:
    pooler = make_pooler(args=["--max-client-conn", "3"])
    conns = [pooler.connect() for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError) as info:
            pooler.connect()
        assert "too many clients" in str(info.value)
        assert "max_client_conn = 3" in str(info.value)
        with pytest.raises(LoginError) as login:
            RawClient.to(pooler)
        assert login.value.sqlstate == "53300"
        conns.pop().close()
        # Room again once one leaves.
        with pooler.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        for conn in conns:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in conns:
            conn.close()


def test_pool_exhausted_within_wait_timeout(make_pooler: MakePooler) -> None:
    pooler = make_pooler(pool_size=1, args=["--query-wait-timeout", "0.3"])
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        start = time.monotonic()
        with pytest.raises(errors.TooManyConnections) as info:
            b.execute("SELECT 1")
        assert 0.25 < time.monotonic() - start < 3
        msg = str(info.value)
        assert "no server connection became free within 0.3 s" in msg
        assert "user 'postgres', database 'postgres'" in msg
        assert info.value.diag.message_hint is not None
        # The session goes on once the backend is free.
        a.execute("COMMIT")
        assert b.execute("SELECT 2").fetchone() == (2,)
        # In an extended-protocol query too (the rest of the batch is skipped).
        a.execute("BEGIN")
        a.execute("SELECT 1")  # (a plain BEGIN alone takes no backend)
        with pytest.raises(errors.TooManyConnections):
            b.execute("SELECT %s::int", (1,))
        a.execute("COMMIT")
        assert b.execute("SELECT %s::int", (3,)).fetchone() == (3,)


def test_idle_transaction_timeout(make_pooler: MakePooler, direct: psycopg.Connection[Any]) -> None:
    direct.execute("CREATE TABLE IF NOT EXISTS idle_tx (x int)")
    pooler = make_pooler(pool_size=1, args=["--idle-transaction-timeout", "0.5"])
    with pooler.connect() as conn:
        before = conn.execute("SELECT pg_backend_pid()").fetchone()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO idle_tx VALUES (1)")
        conn.execute("SELECT pg_advisory_xact_lock(555)")
        time.sleep(1.2)
        with pytest.raises(errors.IdleInTransactionSessionTimeout) as info:
            conn.execute("SELECT 1")
        assert info.value.sqlstate == "25P03", info.value
        assert "idle-in-transaction timeout" in str(info.value)
        assert conn.closed
    # Rolled back on the server: no row, no lock; and the backend serves the next client.
    assert direct.execute("SELECT count(*) FROM idle_tx").fetchone() == (0,)
    assert direct.execute("SELECT pg_try_advisory_lock(555)").fetchone() == (True,)
    direct.execute("SELECT pg_advisory_unlock_all()")
    with pooler.connect() as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == before
        # A transaction that is busy, not idle, is not timed out.
        with conn.transaction():
            conn.execute("SELECT pg_sleep(0.8)")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    direct.execute("DROP TABLE idle_tx")


def test_query_timeout(make_pooler: MakePooler) -> None:
    pooler = make_pooler(args=["--query-timeout", "0.5"])
    with pooler.connect() as conn, pooler.connect() as other:
        start = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as info:
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - start < 3
        assert info.value.sqlstate == "57014"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Statements under the limit run, on a connection that stays usable.
        assert other.execute("SELECT 1 FROM pg_sleep(0.2)").fetchone() == (1,)
        with conn.transaction():
            conn.execute("SELECT pg_sleep(0.3)")
            conn.execute("SELECT pg_sleep(0.3)")


def test_max_message_size(make_pooler: MakePooler) -> None:
    pooler = make_pooler(args=["--max-message-size", str(1 << 20)])
    with pooler.connect() as other:
        # The header declares 2 MB: refused at once, before the body comes.
        with RawClient.to(pooler) as raw:
            raw.send_raw(b"Q" + struct.pack("!i", (2 << 20) + 4) + b"SELECT '")
            answer = raw.read_all()
        assert [t for t, _ in answer] == ["E"]
        fields = error_fields(answer[0][1])
        assert fields["C"] in ("08P01", "54000")
        assert fields["S"] == "FATAL"
        assert "over the limit of 1048576 bytes" in fields["M"]
        # A driver sending such a query gets an error, and its connection is closed.
        conn = pooler.connect()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT '" + "x" * (2 << 20) + "'")
        assert conn.closed
        # Just under the limit is fine.
        with pooler.connect() as conn:
            big = "y" * ((1 << 20) - 100)
            assert conn.execute(f"SELECT length('{big}')").fetchone() == (len(big),)
        assert other.execute("SELECT 1").fetchone() == (1,)


def test_server_lifetime_replaces_backends(
    make_pooler: MakePooler, direct: psycopg.Connection[Any]
) -> None:
    pooler = make_pooler(pool_size=2, args=["--server-lifetime", "1"])
    with pooler.connect(user="carol", password="carol") as conn:
        first = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert first is not None
        assert first[0] in _pooler_pids(direct, "carol")
        time.sleep(2.5)
        # Closed while idle once past its lifetime: a new backend serves the client.
        now = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert now is not None and now != first
        assert first[0] not in _pooler_pids(direct, "carol")
        # A backend in use is not closed under its client: a transaction longer than the
        # lifetime runs to its end on one backend.
        with conn.transaction():
            a = conn.execute("SELECT pg_backend_pid()").fetchone()
            time.sleep(1.5)
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == a


def test_server_idle_timeout_closes_idle_backends(
    make_pooler: MakePooler, direct: psycopg.Connection[Any]
) -> None:
    pooler = make_pooler(pool_size=2, args=["--server-idle-timeout", "1"])
    with pooler.connect(user="carol", password="carol") as conn:
        conn.execute("SELECT 1")
        assert _pooler_pids(direct, "carol")
        deadline = time.monotonic() + 5
        while _pooler_pids(direct, "carol") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pooler_pids(direct, "carol")
        # And the client goes on, on a new one.
        assert conn.execute("SELECT 7").fetchone() == (7,)


@pytest.mark.parametrize(("user", "password"), [
    ("postgres", "wrong"), ("nosuchuser", "postgres"), ("alice", "bob")])
def test_bad_login_is_28P01(pooler: PoolerProcess, user: str, password: str) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        pooler.connect(user=user, password=password)
    assert f'password authentication failed for user "{user}"' in str(info.value)
    with pytest.raises(LoginError) as login:
        RawClient.to(pooler, user=user, password=password)
    assert login.value.sqlstate == "28P01"


def test_unknown_database_passes_3D000(pooler: PoolerProcess) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        pooler.connect(dbname="nosuchdb")
    assert 'database "nosuchdb" does not exist' in str(info.value)
    with pytest.raises(LoginError) as login:
        RawClient.to(pooler, database="nosuchdb")
    assert login.value.sqlstate == "3D000"
    # The pooler goes on serving.
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_other_clients_unaffected_by_a_dropped_login(pooler: PoolerProcess) -> None:
    with pooler.connect() as conn:
        for payload in (b"", struct.pack("!i", 8)[:3]):
            with socket.create_connection((pooler.host, pooler.port)) as s:
                s.sendall(payload)
        t = threading.Thread(target=lambda: conn.execute("SELECT pg_sleep(0.1)"))
        t.start()
        t.join()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_bad_startup_setting_fails_like_postgres(pooler: PoolerProcess) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        pooler.connect(options="-c work_mem=bogus")
    assert 'invalid value for parameter "work_mem"' in str(info.value)
    with pytest.raises(LoginError) as login:
        RawClient.to(pooler, startup={"options": "-c work_mem=bogus"})
    assert login.value.sqlstate == "22023"
    # The backend it was tried on serves the next client, with nothing of it.
    with pooler.connect() as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("4MB",)
