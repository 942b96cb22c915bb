"""A plain BEGIN is answered by the pooler and reaches Postgres with the transaction's first
statement: no server connection is held through the client's think time after BEGIN, and the
transaction is the same as on Postgres directly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from multigres.testing.pooler import PoolerProcess

pytestmark = pytest.mark.integration

MakePooler = Callable[..., PoolerProcess]


@pytest.fixture
def table(make_table: Callable[[str], str]) -> str:
    return make_table("public.defer_begin")


def test_begin_holds_no_backend_until_the_first_statement(make_pooler: MakePooler,
                                                          table: str) -> None:
    pooler = make_pooler(pool_size=1, args=["--query-wait-timeout", "0.5"])
    with pooler.connect() as a, pooler.connect() as b:
        cur = a.execute("BEGIN")
        assert cur.statusmessage == "BEGIN"
        assert a.info.transaction_status == TransactionStatus.INTRANS
        # The only backend is free: another client runs meanwhile.
        assert b.execute("SELECT 1").fetchone() == (1,)
        a.execute(f"INSERT INTO {table} VALUES (1, 'a')")
        # Now a's transaction holds it (uncommitted: nobody else sees the row).
        with pytest.raises(errors.TooManyConnections):
            b.execute("SELECT 1")
        assert a.execute(f"SELECT v FROM {table}").fetchall() == [("a",)]
        a.execute("ROLLBACK")
        assert a.info.transaction_status == TransactionStatus.IDLE  # type: ignore[comparison-overlap]
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_transaction_commits_and_rolls_back(pooler: PoolerProcess, table: str,
                                            direct: psycopg.Connection[Any]) -> None:
    with pooler.connect() as conn:
        for begin in ("begin", "BEGIN WORK;", "  Begin Transaction ; ", "START TRANSACTION"):
            cur = conn.execute(begin)
            expected = "START TRANSACTION" if begin.startswith("START") else "BEGIN"
            assert cur.statusmessage == expected
            conn.execute(f"INSERT INTO {table} VALUES (1, %s)", (begin,))
            conn.execute("ROLLBACK")
        assert direct.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {table} VALUES (2, 'kept')")
        # The transaction is one on Postgres: its id stays the same.
        xid = conn.execute("SELECT txid_current()").fetchone()
        assert conn.execute("SELECT txid_current()").fetchone() == xid
        conn.execute("COMMIT")
        assert direct.execute(f"SELECT v FROM {table}").fetchall() == [("kept",)]


def test_begin_then_commit_alone_and_a_second_begin(pooler: PoolerProcess) -> None:
    with pooler.connect() as conn:
        conn.execute("BEGIN")
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
        assert conn.info.transaction_status == TransactionStatus.IDLE
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("BEGIN")
        # As on Postgres: a BEGIN inside a transaction is a warning, not an error.
        conn.execute("BEGIN")
        assert notices == ["there is already a transaction in progress"]
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_begin_with_options_is_not_deferred(make_pooler: MakePooler) -> None:
    pooler = make_pooler(pool_size=1, args=["--query-wait-timeout", "0.3"])
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        assert a.execute("SHOW transaction_isolation").fetchone() == ("serializable",)
        with pytest.raises(errors.TooManyConnections):
            b.execute("SELECT 1")
        a.execute("COMMIT")
        # A bad option is Postgres's error, at once.
        with pytest.raises(errors.SyntaxError):
            a.execute("BEGIN ISOLATION LEVEL sideways")
        assert a.info.transaction_status == TransactionStatus.IDLE


def test_deferred_begin_keeps_the_session_settings(make_pooler: MakePooler) -> None:
    # Two clients with different settings share one backend: the deferred BEGIN goes after
    # the settings are restored, so they hold inside the transaction and after its end.
    pooler = make_pooler(pool_size=1)
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("SET statement_timeout = '7s'")
        b.execute("SET statement_timeout = '9s'")
        a.execute("BEGIN")
        b.execute("SELECT 1")
        assert a.execute("SHOW statement_timeout").fetchone() == ("7s",)
        a.execute("ROLLBACK")
        assert b.execute("SHOW statement_timeout").fetchone() == ("9s",)
        assert a.execute("SHOW statement_timeout").fetchone() == ("7s",)


def test_no_backend_for_the_first_statement_fails_the_transaction(
        make_pooler: MakePooler) -> None:
    pooler = make_pooler(pool_size=1, args=["--query-wait-timeout", "0.3"])
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        b.execute("BEGIN")
        with pytest.raises(errors.TooManyConnections):
            b.execute("SELECT 1")
        # b was told its transaction began: now it is a failed one, as after any error.
        assert b.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            b.execute("SELECT 2")
        b.execute("ROLLBACK")
        a.execute("COMMIT")
        assert b.execute("SELECT 3").fetchone() == (3,)


def test_client_leaving_after_begin_leaks_nothing(make_pooler: MakePooler) -> None:
    pooler = make_pooler(pool_size=1)
    a = pooler.connect()
    a.execute("BEGIN")
    a.close()
    with pooler.connect() as b:
        assert b.info.transaction_status == TransactionStatus.IDLE
        assert b.execute("SELECT 1").fetchone() == (1,)
        b.execute("BEGIN")
        b.execute("SELECT 1")
        b.execute("COMMIT")


def test_defer_begin_off(make_pooler: MakePooler) -> None:
    pooler = make_pooler(pool_size=1, args=["--defer-begin", "off",
                                            "--query-wait-timeout", "0.3"])
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("BEGIN")
        start = time.monotonic()
        with pytest.raises(errors.TooManyConnections):
            b.execute("SELECT 1")
        assert time.monotonic() - start >= 0.25
        a.execute("COMMIT")
        assert b.execute("SELECT 1").fetchone() == (1,)
