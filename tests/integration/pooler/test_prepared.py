"""Protocol-level prepared statements through a pool of 2: across backend switches, shared on
the server by every client that prepares the same SQL, closed and prepared again, and intact
after an error in the middle of a pipelined batch.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from psycopg import errors

from multigres.testing.pooler import PoolerProcess, RawClient, error_fields
from tests.integration.pooler.conftest import Turns, holding

pytestmark = pytest.mark.integration

QUERIES: list[tuple[str, Callable[[int], Any]]] = [
    ("SELECT %s::int + 1", lambda r: r + 1),
    ("SELECT %s::text || 'x'", lambda r: f"{r}x"),
    ("SELECT count(*) FROM generate_series(1, %s::int)", lambda r: r),
]


async def test_psycopg_prepared_across_switches_and_shared(pooler: PoolerProcess) -> None:
    turns = Turns(4)

    async def run(i: int) -> set[int]:
        pids = set()
        async with await pooler.aconnect(prepare_threshold=0) as conn:
            for r in range(1, 13):
                await turns.start(i, r)
                async with conn.transaction():
                    for sql, want in QUERIES:
                        cur = await conn.execute(sql, (r,), prepare=True)
                        assert await cur.fetchone() == (want(r),)
                    cur = await conn.execute("SELECT pg_backend_pid()")
                    row = await cur.fetchone()
                    assert row is not None
                    pids.add(row[0])
                    await asyncio.sleep(turns.HOLD)
        return pids

    results = await asyncio.gather(*(turns.run(run(i)) for i in range(4)))
    for i, pids in enumerate(results):
        assert len(pids) == 2, f"client {i} never switched backends"

    # On each backend, one server-side statement per distinct SQL, whatever the clients.
    async def census() -> tuple[int, list[tuple[str, int]]]:
        async with await pooler.aconnect(prepare_threshold=None) as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT statement, count(*)::int FROM pg_prepared_statements"
                    " WHERE NOT from_sql GROUP BY statement ORDER BY statement")
                rows = await cur.fetchall()
                cur = await conn.execute("SELECT pg_backend_pid()")
                pid = await cur.fetchone()
                await asyncio.sleep(0.1)
        assert pid is not None
        return pid[0], rows

    seen = await asyncio.gather(census(), census())
    assert {pid for pid, _ in seen} == set().union(*results)
    for _, rows in seen:
        by_sql = dict(rows)
        for sql, _ in QUERIES:
            assert by_sql[sql.replace("%s", "$1")] == 1, rows
        assert all(n == 1 for n in by_sql.values()), rows


async def test_asyncpg_prepares_everything(pooler: PoolerProcess) -> None:
    turns = Turns(4)

    async def run(i: int) -> set[int]:
        conn = await asyncpg_connect(pooler.dsn())
        pids = set()
        try:
            # asyncpg prepares with Parse, Describe and Flush: the backend stays with the
            # client (an open batch: Postgres holds its implicit transaction) up to the next
            # Sync, which the first execution sends.
            stmt = await conn.prepare("SELECT $1::int * 2, pg_backend_pid()")
            await stmt.fetchrow(0)
            for r in range(10):
                await turns.start(i, r)
                async with conn.transaction():
                    row = await stmt.fetchrow(r)
                    assert row[0] == 2 * r
                    pids.add(row[1])
                    assert await conn.fetchval("SELECT $1::text", f"c{i}") == f"c{i}"
                    await asyncio.sleep(turns.HOLD)
                assert await conn.fetchval("SELECT $1::int + $2::int", r, i) == r + i
        finally:
            await conn.close()
        return pids

    results = await asyncio.gather(*(turns.run(run(i)) for i in range(4)))
    for i, pids in enumerate(results):
        assert len(pids) == 2, f"client {i} never switched backends"


async def asyncpg_connect(dsn: str) -> Any:
    return await asyncpg.connect(dsn)


def _parse(name: bytes, sql: bytes) -> tuple[bytes, bytes]:
    return b"P", name + b"\0" + sql + b"\0" + b"\0\0"


def _bind(name: bytes) -> tuple[bytes, bytes]:
    return b"B", b"\0" + name + b"\0" + b"\0\0\0\0\0\0"


def _execute() -> tuple[bytes, bytes]:
    return b"E", b"\0" + struct.pack("!i", 0)


def _close(name: bytes) -> tuple[bytes, bytes]:
    return b"C", b"S" + name + b"\0"


def _sync() -> tuple[bytes, bytes]:
    return b"S", b""


def _batch(raw: RawClient, *msgs: tuple[bytes, bytes]) -> list[tuple[str, bytes]]:
    raw.send_raw(b"".join(t + struct.pack("!i", len(p) + 4) + p for t, p in msgs))
    return raw.until_ready()


def _values(answer: list[tuple[str, bytes]]) -> list[str]:
    """The first column of each DataRow, and 'E<sqlstate>' for errors."""
    out = []
    for t, payload in answer:
        if t == "D":
            (n,) = struct.unpack_from("!i", payload, 2)
            out.append(payload[6:6 + n].decode())
        elif t == "E":
            out.append("E" + error_fields(payload)["C"])
    return out


def _raw_pid(raw: RawClient) -> int:
    return int(_values(raw.query("SELECT pg_backend_pid()"))[0])


def test_close_and_parse_again_across_backends(pooler: PoolerProcess) -> None:
    with RawClient.to(pooler) as raw:
        answer = _batch(raw, _parse(b"s1", b"SELECT 'one'"), _bind(b"s1"), _execute(), _sync())
        assert [t for t, _ in answer] == ["1", "2", "D", "C", "Z"]
        first = _raw_pid(raw)
        with holding(pooler, first):
            # On the other backend: the pooler prepares s1 there first, unseen.
            answer = _batch(raw, _bind(b"s1"), _execute(), _sync())
            assert [t for t, _ in answer] == ["2", "D", "C", "Z"]
            assert _values(answer) == ["one"]
            second = _raw_pid(raw)
            assert second != first
            answer = _batch(raw, _close(b"s1"), _sync())
            assert [t for t, _ in answer] == ["3", "Z"]
            answer = _batch(raw, _bind(b"s1"), _execute(), _sync())
            assert _values(answer) == ["E26000"]
        # Back on the first backend, where s1's server statement was never closed.
        with holding(pooler, second):
            assert _raw_pid(raw) == first
            answer = _batch(raw, _bind(b"s1"), _execute(), _sync())
            assert _values(answer) == ["E26000"]
            answer = _batch(raw, _parse(b"s1", b"SELECT 'two'"), _bind(b"s1"), _execute(),
                            _sync())
            assert _values(answer) == ["two"]
            # The same name for the first SQL again, on a backend that still has it.
            answer = _batch(raw, _close(b"s1"), _parse(b"s1", b"SELECT 'one'"), _bind(b"s1"),
                            _execute(), _sync())
            assert [t for t, _ in answer] == ["3", "1", "2", "D", "C", "Z"]
            assert _values(answer) == ["one"]


def test_error_mid_batch_with_injected_parse(pooler: PoolerProcess) -> None:
    with RawClient.to(pooler) as raw, pooler.connect() as other:
        _batch(raw, _parse(b"a", b"SELECT 'a'"), _sync())
        first = _raw_pid(raw)
        with holding(pooler, first):
            # On the other backend: 'a' is prepared there by the pooler (answer swallowed)
            # after the client's own unnamed Parse; then an error skips 'b's Parse.
            answer = _batch(
                raw,
                _parse(b"", b"SELECT 'u'"), _bind(b""), _execute(),
                _bind(b"a"), _execute(),
                _parse(b"", b"SELECT 1/0"), _bind(b""), _execute(),
                _parse(b"b", b"SELECT 'b'"), _bind(b"b"), _execute(),
                _sync(),
            )
            # (1/0 fails when the unnamed statement is planned, at Bind.)
            assert [t for t, _ in answer] == [
                "1", "2", "D", "C", "2", "D", "C", "1", "E", "Z"]
            assert _values(answer) == ["u", "a", "E22012"]
            # 'b' was never made, as on a direct connection; 'a' works.
            assert _values(_batch(raw, _bind(b"b"), _execute(), _sync())) == ["E26000"]
            assert _values(_batch(raw, _bind(b"a"), _execute(), _sync())) == ["a"]
            answer = _batch(raw, _parse(b"b", b"SELECT 'b'"), _bind(b"b"), _execute(), _sync())
            assert _values(answer) == ["b"]
        # Another client prepares the same SQL on both backends: shared statements work.
        for _ in range(3):
            assert other.execute("SELECT 'a'", prepare=True).fetchone() == ("a",)
            assert other.execute("SELECT 'b'", prepare=True).fetchone() == ("b",)
        assert _values(_batch(raw, _bind(b"a"), _execute(), _sync())) == ["a"]


def test_pipeline_error_keeps_prepared_statements(pooler: PoolerProcess) -> None:
    with pooler.connect(prepare_threshold=0) as conn, pooler.connect() as other:
        for r in range(6):
            with pytest.raises(errors.DivisionByZero), conn.pipeline():
                c1 = conn.execute("SELECT %s::int * 10", (r,), prepare=True)
                conn.execute("SELECT 1/0")
                conn.execute("SELECT %s::text", ("never",), prepare=True)
            assert c1.fetchone() == (r * 10,)
            with conn.pipeline():
                c1 = conn.execute("SELECT %s::int * 10", (r,), prepare=True)
                c2 = conn.execute("SELECT %s::text", ("runs",), prepare=True)
            assert c1.fetchone() == (r * 10,)
            assert c2.fetchone() == ("runs",)
            # Move conn to the other backend now and then.
            if r % 2:
                other.execute("BEGIN")
                other.execute("SELECT 1")
            else:
                other.execute("COMMIT")


def test_sql_level_prepare_execute_deallocate(pooler: PoolerProcess) -> None:
    with pooler.connect() as conn:
        conn.execute("PREPARE q(int) AS SELECT $1 * 3")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        for r in range(3):
            assert conn.execute(f"EXECUTE q({r})").fetchone() == (r * 3,)
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid
        conn.execute("DEALLOCATE q")
        with pytest.raises(errors.InvalidSqlStatementName):
            conn.execute("EXECUTE q(1)")


def test_describe_statement_on_new_backend(pooler: PoolerProcess) -> None:
    with RawClient.to(pooler) as raw:
        _batch(raw, _parse(b"d", b"SELECT $1::int AS n, 'x'::text AS t"), _sync())
        with holding(pooler, _raw_pid(raw)):
            answer = _batch(raw, (b"D", b"Sd\0"), _sync())
            assert [t for t, _ in answer] == ["t", "T", "Z"]


def test_psycopg_named_statement_survives_discard_all(pooler: PoolerProcess) -> None:
    """DISCARD ALL deallocates the client's statements; psycopg prepares them again."""
    with pooler.connect(prepare_threshold=0) as conn:
        assert conn.execute("SELECT %s::int", (1,), prepare=True).fetchone() == (1,)
        conn.execute("DISCARD ALL")
        assert conn.execute("SELECT %s::int", (2,), prepare=True).fetchone() == (2,)


def test_pooled_statement_names_do_not_reach_other_clients(pooler: PoolerProcess) -> None:
    with pooler.connect(prepare_threshold=0) as a, RawClient.to(pooler) as raw:
        a.execute("SELECT 'secret'", prepare=True)
        # psycopg named it _pg3_0; that name means nothing for another client.
        assert _values(_batch(raw, _bind(b"_pg3_0"), _execute(), _sync())) == ["E26000"]



def test_close_skipped_after_an_error_keeps_the_statement(pooler: PoolerProcess) -> None:
    with RawClient.to(pooler) as raw:
        _batch(raw, _parse(b"k", b"SELECT 'kept'"), _sync())
        answer = _batch(raw, _parse(b"", b"SELECT 1/0"), _bind(b""), _execute(), _close(b"k"),
                        _sync())
        assert [t for t, _ in answer] == ["1", "E", "Z"]
        # Postgres skipped the Close: 'k' is still there, on any backend.
        assert _values(_batch(raw, _bind(b"k"), _execute(), _sync())) == ["kept"]
        with holding(pooler, _raw_pid(raw)):
            assert _values(_batch(raw, _bind(b"k"), _execute(), _sync())) == ["kept"]


def test_psycopg_deallocates_old_statements(pooler: PoolerProcess) -> None:
    """psycopg (with libpq < 17) evicts prepared statements with SQL DEALLOCATE name: the name
    is the client's protocol-level one, which the pooler maps to its server name."""
    with pooler.connect(prepare_threshold=0) as conn, pooler.connect() as other:
        conn.prepared_max = 2
        for r in range(3):
            for i in range(6):
                assert conn.execute(f"SELECT {i} + %s::int", (r,)).fetchone() == (i + r,)
                if i == 3:
                    # On the other backend for a while: the statements to evict are not
                    # prepared there.
                    other.execute("BEGIN" if r % 2 else "SELECT 1")
            other.execute("ROLLBACK") if r % 2 else None
        conn.execute("DEALLOCATE ALL")
        assert conn.execute("SELECT 9 + %s::int", (1,)).fetchone() == (10,)
    with RawClient.to(pooler) as raw:
        _batch(raw, _parse(b"p1", b"SELECT 'p1'"), _sync())
        answer = raw.query("DEALLOCATE p1")
        assert [t for t, _ in answer] == ["C", "Z"] and answer[0][1] == b"DEALLOCATE\0"
        assert _values(_batch(raw, _bind(b"p1"), _execute(), _sync())) == ["E26000"]
        assert _values(raw.query("DEALLOCATE p1")) == ["E26000"]


def test_messages_after_the_error_of_their_batch(pooler: PoolerProcess) -> None:
    """Messages of a failed batch sent after its error came back are skipped by Postgres
    too: a statement the pooler prepares for them there must not count as prepared."""

    def send(raw: RawClient, *msgs: tuple[bytes, bytes]) -> None:
        raw.send_raw(b"".join(t + struct.pack("!i", len(p) + 4) + p for t, p in msgs))

    with RawClient.to(pooler) as raw:
        _batch(raw, _parse(b"a", b"SELECT 'a'"), _sync())
        with holding(pooler, _raw_pid(raw)):
            send(raw, _parse(b"", b"SELECT 1/0"), _bind(b""), _execute(), (b"H", b""))
            assert [raw.recv()[0] for _ in range(2)] == ["1", "E"]
            send(raw, _bind(b"a"), _execute(), _parse(b"b", b"SELECT 'b'"), _sync())
            assert [t for t, _ in raw.until_ready()] == ["Z"]
            assert _values(_batch(raw, _bind(b"a"), _execute(), _sync())) == ["a"]
            assert _values(_batch(raw, _bind(b"b"), _execute(), _sync())) == ["E26000"]
            answer = _batch(raw, _parse(b"c", b"SELECT 'c'"), _bind(b"c"), _execute(), _sync())
            assert [t for t, _ in answer] == ["1", "2", "D", "C", "Z"]
