"""Reasons to hold a backend: a client keeps its backend (same pg_backend_pid) while a reason
holds, and releases it as soon as the reason ends.

Pool size 1 and a short wait timeout: while A holds the only backend, B's query waits and
fails with 53300 (which proves A holds it); once A's reason ends, B runs on that same backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from multigres.pgctld.instance import PgInstance
from multigres.testing.pooler import PoolerProcess, RawClient
from tests.integration.pooler.conftest import module_pooler

pytestmark = pytest.mark.integration

WAIT = 0.4


@pytest.fixture(scope="module")
def pool1(pg: PgInstance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolerProcess]:
    with module_pooler(pg, tmp_path_factory, pool_size=1,
                       args=["--query-wait-timeout", str(WAIT)]) as p:
        yield p


def _pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _assert_held(other: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.TooManyConnections) as info:
        other.execute("SELECT 1")
    assert "no server connection became free" in str(info.value)


# (name, statements that start the reason, statements that end it)
REASONS = [
    ("transaction", ["BEGIN", "SELECT 1"], ["COMMIT"]),
    ("failed transaction", ["BEGIN", "SELECT 1/0"], ["ROLLBACK"]),
    ("temp table, dropped", ["CREATE TEMP TABLE r_tt (x int)"], ["DROP TABLE r_tt"]),
    ("temp table, DISCARD TEMP", ["CREATE TEMPORARY TABLE r_tt2 AS SELECT 1 AS x"],
     ["DISCARD TEMP"]),
    ("temp table of two, both dropped", ["CREATE TEMP TABLE r_a (x int)",
                                         "CREATE TEMP TABLE r_b (x int)", "DROP TABLE r_a"],
     ["DROP TABLE r_b"]),
    ("LISTEN", ["LISTEN r_chan"], ["UNLISTEN r_chan"]),
    ("LISTEN two", ["LISTEN r_c1", "LISTEN r_c2"], ["UNLISTEN *"]),
    ("advisory lock", ["SELECT pg_advisory_lock(77)"], ["SELECT pg_advisory_unlock(77)"]),
    ("two advisory locks", ["SELECT pg_advisory_lock(78)", "SELECT pg_advisory_lock(79)",
                            "SELECT pg_advisory_unlock(78)"], ["SELECT pg_advisory_unlock(79)"]),
    ("lock taken twice", ["SELECT pg_advisory_lock(80)", "SELECT pg_advisory_lock(80)",
                          "SELECT pg_advisory_unlock(80)"], ["SELECT pg_advisory_unlock(80)"]),
    ("try lock", ["SELECT pg_try_advisory_lock(81)"], ["SELECT pg_advisory_unlock_all()"]),
    ("shared lock", ["SELECT pg_advisory_lock_shared(82)"],
     ["SELECT pg_advisory_unlock_shared(82)"]),
    ("SQL PREPARE", ["PREPARE r_p AS SELECT 1", "EXECUTE r_p"], ["DEALLOCATE r_p"]),
    ("SQL PREPARE in a rolled back transaction", ["BEGIN", "PREPARE r_q AS SELECT 1",
                                                   "ROLLBACK"], ["DEALLOCATE PREPARE r_q"]),
    ("WITH HOLD cursor", ["BEGIN", "DECLARE r_cur CURSOR WITH HOLD FOR SELECT 1", "COMMIT",
                          "FETCH r_cur"], ["CLOSE r_cur"]),
    ("set_config with a parameter", ["SELECT set_config('work_mem', $1, false)"],
     ["DISCARD ALL"]),
]


@pytest.mark.parametrize(("start", "end"), [r[1:] for r in REASONS], ids=[r[0] for r in REASONS])
def test_reason_holds_backend_until_it_ends(
    pool1: PoolerProcess, start: list[str], end: list[str]
) -> None:
    with pool1.connect() as a, pool1.connect() as b:
        for stmt in start:
            try:
                if "$1" in stmt:
                    a.execute(stmt.replace("$1", "%s"), ("5MB",))
                else:
                    a.execute(stmt)
            except errors.DivisionByZero:
                pass
        if a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            pid = a.info.backend_pid  # no query runs in a failed transaction
        else:
            pid = _pid(a)
            assert _pid(a) == pid
        _assert_held(b)
        for stmt in end:
            a.execute(stmt)
        # Released: B runs on the only backend, and A again after it.
        assert _pid(b) == pid
        assert _pid(a) == pid


REASONS_THAT_DO_NOT_HOLD = [
    ("try lock not taken", "SELECT pg_try_advisory_lock(90)"),
    ("transaction-level lock", "SELECT pg_advisory_xact_lock(91)"),
    ("temp table in a rolled back transaction",
     "BEGIN; CREATE TEMP TABLE r_x (x int); ROLLBACK"),
    ("LISTEN in a rolled back transaction", "BEGIN; LISTEN r_n; ROLLBACK"),
    ("WITH HOLD cursor in a rolled back transaction",
     "BEGIN; DECLARE r_h CURSOR WITH HOLD FOR SELECT 1; ROLLBACK"),
    ("cursor without hold", "BEGIN; DECLARE r_w CURSOR FOR SELECT 1; COMMIT"),
    ("SET LOCAL", "BEGIN; SET LOCAL work_mem = '9MB'; COMMIT"),
    ("set_config local", "SELECT set_config('work_mem', '9MB', true)"),
    ("set_config for the session, followed", "SELECT set_config('work_mem', '9MB', false)"),
    ("session characteristics, followed",
     "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
]


@pytest.mark.parametrize("stmt", [r[1] for r in REASONS_THAT_DO_NOT_HOLD],
                         ids=[r[0] for r in REASONS_THAT_DO_NOT_HOLD])
def test_no_reason_no_hold(pool1: PoolerProcess, direct: psycopg.Connection[Any],
                           stmt: str) -> None:
    with pool1.connect() as a, pool1.connect() as b:
        if "(90)" in stmt:
            # Someone else holds it, so A's try fails.
            direct.execute("SELECT pg_advisory_lock(90)")
        a.execute(stmt)
        pid = _pid(a)
        assert _pid(b) == pid
        direct.execute("SELECT pg_advisory_unlock_all()")


def test_copy_and_extended_batch_hold_until_done(pool1: PoolerProcess) -> None:
    with pool1.connect() as a, pool1.connect() as b:
        a.execute("CREATE TABLE IF NOT EXISTS r_copy (x int)")
        with a.cursor() as cur, cur.copy("COPY r_copy FROM STDIN") as copy:
            copy.write_row((1,))
            _assert_held(b)
            copy.write_row((2,))
        assert _pid(b) == _pid(a)
        a.execute("DROP TABLE r_copy")
    # An extended-protocol batch holds its backend up to its Sync, even while idle.
    with RawClient.to(pool1) as raw, pool1.connect() as b:
        raw.send(b"P", b"\0SELECT pg_backend_pid()\0\0\0")
        raw.send(b"B", b"\0\0\0\0\0\0\0\0")
        raw.send(b"E", b"\0\0\0\0\0")
        raw.send(b"H")  # Flush: the answers come, the batch stays open
        assert [raw.recv()[0] for _ in range(4)] == ["1", "2", "D", "C"]
        _assert_held(b)
        raw.send(b"S")
        assert raw.until_ready()[-1] == ("Z", b"I")
        b.execute("SELECT 1")
