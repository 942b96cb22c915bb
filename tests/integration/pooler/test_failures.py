"""Failures: a backend that dies under its client, a client that leaves mid-transaction.

A backend killed mid-transaction gives its client an error of class 08, the client's
connection goes on (the next transaction runs on a new backend), the pool heals and other
clients see nothing. A client that leaves mid-transaction has its transaction rolled back
before its backend serves anyone else.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from multigres.testing.pooler import PoolerProcess, RawClient, error_fields
from tests.integration.pooler.conftest import later

pytestmark = pytest.mark.integration

MakePooler = Callable[..., PoolerProcess]


@pytest.fixture
def table(make_table: Callable[[str], str]) -> str:
    return make_table("fail_t")


def _kill(direct: psycopg.Connection[Any], pid: int) -> None:
    assert direct.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    # Wait until it is gone, so that the pooler has seen the connection close.
    for _ in range(100):
        if direct.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                          (pid,)).fetchone() == (0,):
            return
        time.sleep(0.02)


@pytest.mark.parametrize("idle", [True, False], ids=["idle-in-tx", "mid-query"])
def test_backend_killed_mid_transaction(
    make_pooler: MakePooler, direct: psycopg.Connection[Any], table: str, idle: bool
) -> None:
    pooler = make_pooler(pool_size=2)
    with pooler.connect() as conn, pooler.connect() as other:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO fail_t VALUES (1, 'lost')")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        if idle:
            _kill(direct, pid[0])
            with pytest.raises(psycopg.OperationalError) as info:
                conn.execute("INSERT INTO fail_t VALUES (2, 'after')")
        else:
            with later(0.3, _kill, direct, pid[0]), \
                    pytest.raises(psycopg.OperationalError) as info:
                conn.execute("SELECT pg_sleep(5)")
        assert info.value.sqlstate is not None and info.value.sqlstate.startswith("08")
        assert "rolled back" in str(info.value)
        # As after any error in a transaction: the client rolls back, and goes on.
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with pytest.raises(errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.execute("ROLLBACK")
        assert not conn.closed
        with conn.transaction():
            conn.execute("INSERT INTO fail_t VALUES (3, 'next')")
        assert other.execute("SELECT 1").fetchone() == (1,)
    assert direct.execute("SELECT id FROM fail_t ORDER BY id").fetchall() == [(3,)]


def test_commit_after_lost_transaction_does_not_commit(
    make_pooler: MakePooler, direct: psycopg.Connection[Any], table: str
) -> None:
    """A COMMIT that follows the error is a ROLLBACK, as for any failed transaction."""
    pooler = make_pooler(pool_size=2)
    with RawClient.to(pooler) as raw:
        raw.query("BEGIN")
        raw.query("INSERT INTO fail_t VALUES (1, 'lost')")
        pid = raw.query("SELECT pg_backend_pid()")
        (n,) = struct.unpack_from("!i", pid[1][1], 2)
        _kill(direct, int(pid[1][1][6:6 + n]))
        answer = raw.query("INSERT INTO fail_t VALUES (2, 'x')")
        assert [t for t, _ in answer] == ["E", "Z"]
        assert error_fields(answer[0][1])["C"].startswith("08")
        assert answer[-1] == ("Z", b"E")
        answer = raw.query("SELECT 1")
        assert error_fields(answer[0][1])["C"] == "25P02"
        answer = raw.query("COMMIT")
        assert [t for t, _ in answer] == ["C", "Z"]
        assert answer[0][1] == b"ROLLBACK\0"
        assert answer[-1] == ("Z", b"I")
        assert raw.query("SELECT 1")[-1] == ("Z", b"I")
    assert direct.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)


def test_backend_killed_while_idle_is_replaced_unseen(
    make_pooler: MakePooler, direct: psycopg.Connection[Any]
) -> None:
    pooler = make_pooler(pool_size=1)
    with pooler.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        _kill(direct, pid[0])
        time.sleep(0.1)
        # Not in a transaction: nothing was lost, the next statement runs on a new backend.
        now = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert now is not None and now != pid


def test_pool_heals_after_backends_die(
    make_pooler: MakePooler, direct: psycopg.Connection[Any]
) -> None:
    pooler = make_pooler(pool_size=2)
    conns = [pooler.connect() for _ in range(4)]
    try:
        for conn in conns:
            conn.execute("SELECT 1")
        rows = direct.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = '' AND usename ="
            " 'postgres' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND client_port IS NOT NULL").fetchall()
        for (pid,) in rows:
            direct.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.3)
        for _ in range(3):
            for conn in conns:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in conns:
            conn.close()


def test_pipelined_batches_when_backend_dies(
    make_pooler: MakePooler, direct: psycopg.Connection[Any]
) -> None:
    """Every batch in flight gets its error and ReadyForQuery: the client never hangs."""
    pooler = make_pooler(pool_size=2)
    with RawClient.to(pooler) as raw:
        pid = raw.query("SELECT pg_backend_pid()")
        (n,) = struct.unpack_from("!i", pid[1][1], 2)
        backend = int(pid[1][1][6:6 + n])
        kinds = []
        with later(0.3, _kill, direct, backend):
            raw.send_raw(b"".join(
                b"Q" + struct.pack("!i", len(q) + 5) + q + b"\0"
                for q in (b"SELECT pg_sleep(3)", b"SELECT 2", b"SELECT 3")))
            for _ in range(3):
                kinds.append([t for t, _ in raw.until_ready()])
        assert kinds[0][-2:] == ["E", "Z"]
        assert kinds[1:] == [["E", "Z"], ["E", "Z"]]
        assert raw.query("SELECT 4")[-1] == ("Z", b"I")


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_leaving_mid_transaction_rolls_back(
    make_pooler: MakePooler, direct: psycopg.Connection[Any], table: str, how: str
) -> None:
    pooler = make_pooler(pool_size=1)
    with RawClient.to(pooler) as raw:
        raw.query("BEGIN")
        raw.query("INSERT INTO fail_t VALUES (1, 'uncommitted')")
        raw.query("SELECT pg_advisory_xact_lock(4711)")
        raw.query("LOCK TABLE fail_t IN ACCESS EXCLUSIVE MODE")
        pid = raw.query("SELECT pg_backend_pid()")
        if how == "reset":
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Gone. The next client gets the same backend, with nothing of that transaction.
    with pooler.connect() as conn:
        got = conn.execute("SELECT pg_backend_pid()").fetchone()
        (n,) = struct.unpack_from("!i", pid[1][1], 2)
        assert got == (int(pid[1][1][6:6 + n]),)
        assert conn.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)
        assert conn.execute("SELECT pg_try_advisory_xact_lock(4711)").fetchone() == (True,)
    assert direct.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)
    # The table lock is gone too.
    direct.execute("SET lock_timeout = '1s'")
    direct.execute("INSERT INTO fail_t VALUES (2, 'x')")
    direct.execute("RESET lock_timeout")


def test_client_leaving_mid_query_frees_its_backend(
    make_pooler: MakePooler, direct: psycopg.Connection[Any], table: str
) -> None:
    pooler = make_pooler(pool_size=1, args=["--query-wait-timeout", "5"])
    raw = RawClient.to(pooler)
    raw.query("BEGIN")
    raw.query("INSERT INTO fail_t VALUES (1, 'uncommitted')")
    raw.send(b"Q", b"SELECT pg_sleep(30)\0")
    time.sleep(0.2)
    raw.close()
    with pooler.connect() as conn:
        start = time.monotonic()
        assert conn.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)
        assert time.monotonic() - start < 3
    assert direct.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)
