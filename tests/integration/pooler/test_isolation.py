"""Session isolation through a small pool: what one client sets, prepares, creates or locks is
never seen by another, and each client keeps its own session across backend switches.

Pool size 2 with more concurrent clients than that, each holding its backend a little inside
every transaction, so that a client's consecutive transactions land on different backends;
every test records pg_backend_pid() per transaction and asserts that it varies (a lone client
handed back its own backend would prove nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import errors

from multigres.testing.pooler import PoolerProcess
from tests.integration.pooler.conftest import Turns

pytestmark = pytest.mark.integration

CLIENTS = 4
ROUNDS = 12


def _settings_query() -> str:
    return (
        "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('TimeZone'),"
        " current_setting('application_name'), current_setting('work_mem'),"
        " current_setting('myapp.client', true), current_user::text, session_user::text,"
        " (SELECT v FROM marker)"
    )


async def _settings_client(pooler: PoolerProcess, i: int, turns: Turns) -> set[int]:
    conn = await pooler.aconnect(options=f"-c work_mem={i + 2}MB",
                                 application_name=f"start{i}")
    try:
        await conn.execute(f"SET search_path TO s{i}, public")
        await conn.execute(f"SET TIME ZONE 'Etc/GMT+{i}'")
        await conn.execute(f"SET application_name = 'app{i}'")
        await conn.execute(f"SET myapp.client = 'c{i}'")
        if i % 4 == 1:
            await conn.execute("SET ROLE reader")
            user, session_user = "reader", "postgres"
        elif i % 4 == 2:
            await conn.execute("SET SESSION AUTHORIZATION alice")
            user = session_user = "alice"
        elif i % 4 == 3:
            await conn.execute("SET SESSION AUTHORIZATION bob")
            await conn.execute("SET ROLE writer")
            user, session_user = "writer", "bob"
        else:
            user = session_user = "postgres"
        expected = (f"s{i}, public", f"Etc/GMT+{i}", f"app{i}", f"{i + 2}MB", f"c{i}", user,
                    session_user, f"s{i}")
        pids = set()
        for r in range(ROUNDS):
            if r == ROUNDS // 2:
                # Half way: a change must follow the client too.
                await conn.execute(f"SET work_mem = '{i + 20}MB'")
                expected = (*expected[:3], f"{i + 20}MB", *expected[4:])
            await turns.start(i, r)
            async with conn.transaction():
                row = await (await conn.execute(_settings_query())).fetchone()
                await asyncio.sleep(turns.HOLD)
            assert row is not None
            pids.add(row[0])
            assert tuple(row[1:]) == expected, f"client {i} round {r}"
            # Between transactions too (autocommit statement on any backend).
            row = await (await conn.execute(_settings_query())).fetchone()
            assert row is not None and tuple(row[1:]) == expected, f"client {i} round {r}"
            pids.add(row[0])
        assert conn.info.parameter_status("application_name") == f"app{i}"
        assert conn.info.parameter_status("TimeZone") == f"Etc/GMT+{i}"
        return pids
    finally:
        await conn.close()


async def _settings_clients(pooler: PoolerProcess) -> list[set[int]]:
    turns = Turns(CLIENTS)
    return list(await asyncio.gather(
        *(turns.run(_settings_client(pooler, i, turns)) for i in range(CLIENTS))))


async def test_settings_roles_follow_each_client(pooler: PoolerProcess) -> None:
    results = await _settings_clients(pooler)
    for i, pids in enumerate(results):
        assert len(pids) >= 2, f"client {i} always ran on one backend: nothing was proven"
    # Every backend served several clients.
    assert len(set().union(*results)) == 2


async def test_new_client_sees_server_defaults(
    pooler: PoolerProcess, direct: psycopg.Connection[Any]
) -> None:
    """After clients with settings left, a fresh client sees none of them, on every backend."""
    tz = direct.execute("SHOW TimeZone").fetchone()
    assert tz is not None
    await _settings_clients(pooler)
    turns = Turns(3)

    async def fresh(i: int) -> set[int]:
        pids = set()
        async with await pooler.aconnect() as conn:
            for r in range(6):
                await turns.start(i, r)
                async with conn.transaction():
                    row = await (await conn.execute(
                        "SELECT pg_backend_pid(), current_setting('search_path'),"
                        " current_setting('work_mem'), current_user::text, session_user::text,"
                        " current_setting('TimeZone'), current_setting('application_name'),"
                        " current_setting('myapp.client', true)"
                    )).fetchone()
                    await asyncio.sleep(turns.HOLD)
                assert row is not None
                pids.add(row[0])
                assert row[1:7] == ('"$user", public', "4MB", "postgres", "postgres", tz[0],
                                    ""), row
                # A custom setting that was set and reset reads '' (Postgres keeps its
                # placeholder): the value of another client never shows.
                assert row[7] in (None, "")
        return pids

    results = await asyncio.gather(*(turns.run(fresh(i)) for i in range(3)))
    for i, pids in enumerate(results):
        assert len(pids) == 2, f"client {i} never switched backends"


# -- RESET, RESET ALL, DISCARD ALL, rolled-back SET, SET LOCAL: parity with a direct session ----

# Each step: a statement (or None), then the SHOW results compared with a direct connection.
PARITY_SCRIPT: list[str | list[str]] = [
    "SET work_mem = '20MB'",
    "SET application_name = 'changed'",
    "RESET work_mem",
    "SET work_mem = '21MB'",
    "RESET ALL",
    "SET work_mem = '22MB'",
    "SET search_path = s1",
    "DISCARD ALL",
    ["BEGIN", "SET work_mem = '30MB'", "ROLLBACK"],
    ["BEGIN", "SET LOCAL work_mem = '31MB'", "COMMIT"],
    ["BEGIN", "SET work_mem = '32MB'", "SELECT 1/0", "COMMIT"],
    ["BEGIN", "SET work_mem = '33MB'", "SAVEPOINT a", "SET work_mem = '34MB'",
     "ROLLBACK TO SAVEPOINT a", "COMMIT"],
    ["BEGIN", "SAVEPOINT a", "SET work_mem = '35MB'", "RELEASE a", "COMMIT"],
    ["BEGIN", "SET work_mem = '36MB'", "SAVEPOINT b", "SELECT 1/0", "ROLLBACK TO b",
     "COMMIT"],
    "SET work_mem TO DEFAULT",
    "SET TIME ZONE 'Asia/Tokyo'",
    "RESET TIME ZONE",
    "SET application_name = 'x'",
    "RESET application_name",
    "SET myapp.k = 'v'",
    "RESET myapp.k",
    "SET myapp.k = 'w'",
    "SET work_mem = '37MB'; SELECT 1/0",
    "SET work_mem = '38MB'; RESET ALL",
    "SELECT set_config('work_mem', '39MB', true)",
    # A RESET inside a transaction shows the startup value at once, and commits or not.
    ["SET work_mem = '40MB'", "BEGIN", "RESET work_mem", "?", "COMMIT"],
    ["SET work_mem = '41MB'", "BEGIN", "RESET ALL", "?", "ROLLBACK"],
    # RESET ALL leaves the role and session authorization alone; DISCARD ALL does not.
    "SET ROLE reader",
    "RESET ALL",
    "SET SESSION AUTHORIZATION alice",
    "SET ROLE reader",
    "RESET ALL",
    "RESET ROLE",
    "SET ROLE reader",
    "SET SESSION AUTHORIZATION bob",
    "RESET SESSION AUTHORIZATION",
    "SET ROLE writer",
    "DISCARD ALL",
    ["BEGIN", "SET ROLE reader", "ROLLBACK"],
    ["BEGIN", "SET SESSION AUTHORIZATION alice", "COMMIT"],
    "SET SESSION AUTHORIZATION DEFAULT",
    "SET ROLE reader",
    "SET ROLE NONE",
    # set_config follows the client like SET; a list given as a string stays a list.
    "SELECT set_config('work_mem', '42MB', false)",
    "SELECT set_config('search_path', 's1, s3', false)",
    ["BEGIN", "SELECT set_config('work_mem', '43MB', false)", "ROLLBACK"],
    "RESET search_path",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
    "RESET ALL",
    # Comments in a SET never swallow the settings applied after it on another backend.
    "SET application_name = 'c' -- trailing comment",
    "SET work_mem = '44MB' -- trailing comment",
    "SET search_path = s1 /* inline */, s3",
    "SET TIME ZONE 'Asia/Tokyo'",
]
SHOW = ("SELECT current_setting('work_mem'), current_setting('application_name'),"
        " current_setting('search_path'), current_setting('TimeZone'),"
        " current_user::text || '/' || session_user::text"
        " || current_setting('default_transaction_isolation')"
        " || current_setting('default_transaction_read_only'),"
        " current_setting('myapp.k', true), pg_backend_pid()")


def _show(conn: psycopg.Connection[Any], out: list[tuple[Any, ...]], pids: set[int]) -> None:
    row = conn.execute(SHOW).fetchone()
    assert row is not None
    # A custom setting that was set then reset reads '' on a backend where it was set before
    # (by anyone), NULL on a fresh one.
    out.append((*row[:5], row[5] or ""))
    pids.add(row[6])


def _run_script(
    conn: psycopg.Connection[Any], extended: bool = False
) -> tuple[list[tuple[Any, ...]], set[int]]:
    """Run PARITY_SCRIPT; ``extended``: each statement alone in a pipeline (Parse, Bind,
    Execute, Sync) instead of a simple Query."""
    out: list[tuple[Any, ...]] = []
    pids: set[int] = set()
    for step in PARITY_SCRIPT:
        for stmt in [step] if isinstance(step, str) else step:
            if stmt == "?":
                _show(conn, out, pids)
                continue
            try:
                if extended and ";" not in stmt:
                    with conn.pipeline():
                        conn.execute(stmt)
                else:
                    conn.execute(stmt)
            except psycopg.Error as e:
                out.append(("error", stmt, e.sqlstate))
        for _ in range(2):
            _show(conn, out, pids)
    return out, pids


def _busy(pooler: PoolerProcess, stop: list[bool]) -> None:
    with pooler.connect() as conn:
        while not stop[0]:
            with conn.transaction():
                conn.execute("SELECT pg_sleep(0.003)")


@pytest.mark.parametrize(("startup", "extended"), [
    ("options", False), ("plain", False), ("options", True)])
def test_reset_discard_rollback_parity(
    pooler: PoolerProcess, direct: psycopg.Connection[Any], pg: Any, startup: str,
    extended: bool,
) -> None:
    """The same script on a direct connection and through the pooler gives the same SHOW
    results, while other clients make the pooled one switch backends."""
    import threading

    kwargs: dict[str, Any] = {}
    if startup == "options":
        kwargs = {"options": "-c work_mem=7MB -c search_path=s2", "application_name": "startapp"}
    with psycopg.connect(pg.endpoint().conninfo(), autocommit=True, **kwargs) as conn:
        want, _ = _run_script(conn, extended)
    stop = [False]
    threads = [threading.Thread(target=_busy, args=(pooler, stop)) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with pooler.connect(**kwargs) as conn:
            got, pids = _run_script(conn, extended)
    finally:
        stop[0] = True
        for t in threads:
            t.join()
    assert got == want
    assert len(pids) == 2


# -- state that pins: never visible to another client ---------------------------------------


async def _pid(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_pinned_state_is_invisible_to_others(pooler: PoolerProcess) -> None:
    """A's temp table, SQL prepared statement and advisory lock: B and C (sharing the other
    backend) see none of it, and neither does anyone on A's backend after A leaves."""
    a = await pooler.aconnect()
    b = await pooler.aconnect()
    c = await pooler.aconnect()
    try:
        await a.execute("CREATE TEMP TABLE tt_a (x int)")
        await a.execute("INSERT INTO tt_a VALUES (1)")
        await a.execute("PREPARE pa AS SELECT 'from a'")
        await a.execute("SELECT pg_advisory_lock(4242)")
        a_pid = await _pid(a)
        for conn in (b, c, b, c):
            assert await _pid(conn) != a_pid
            with pytest.raises(errors.UndefinedTable):
                await conn.execute("SELECT * FROM tt_a")
            with pytest.raises(errors.InvalidSqlStatementName):
                await conn.execute("EXECUTE pa")
            row = await (await conn.execute("SELECT pg_try_advisory_lock(4242)")).fetchone()
            assert row == (False,)
        await a.close()
        # A's backend is cleaned (DISCARD ALL) and back in the pool: B and C use both.

        turns = Turns(2)

        async def check(i: int, conn: psycopg.AsyncConnection[Any]) -> set[int]:
            pids = set()
            for r in range(8):
                await turns.start(i, r)
                async with conn.transaction():
                    pids.add(await _pid(conn))
                    assert await (await conn.execute(
                        "SELECT to_regclass('tt_a') IS NULL")).fetchone() == (True,)
                    cur = await conn.execute(
                        "SELECT count(*) FROM pg_prepared_statements WHERE from_sql")
                    assert await cur.fetchone() == (0,)
                    await asyncio.sleep(turns.HOLD)
            return pids

        pids = set().union(
            *await asyncio.gather(turns.run(check(0, b)), turns.run(check(1, c))))
        assert a_pid in pids
        row = await (await b.execute("SELECT pg_try_advisory_lock(4242)")).fetchone()
        assert row == (True,)
        await b.execute("SELECT pg_advisory_unlock_all()")
    finally:
        for conn in (a, b, c):
            await conn.close()


async def test_protocol_prepared_statements_are_per_client(pooler: PoolerProcess) -> None:
    """Clients using the same statement names for different SQL each run their own."""
    turns = Turns(3)

    async def run(i: int) -> set[int]:
        pids = set()
        async with await pooler.aconnect(prepare_threshold=0) as conn:
            for r in range(10):
                # psycopg names these _pg3_0, _pg3_1, ... in every connection alike.
                await turns.start(i, r)
                async with conn.transaction():
                    cur = await conn.execute(
                        f"SELECT 'client{i}', %s::int, pg_backend_pid()", (r,))
                    row = await cur.fetchone()
                    assert row is not None and row[:2] == (f"client{i}", r)
                    pids.add(row[2])
                    cur = await conn.execute(f"SELECT {i} + %s::int", (r,))
                    assert await cur.fetchone() == (i + r,)
                    await asyncio.sleep(turns.HOLD)
        return pids

    results = await asyncio.gather(*(turns.run(run(i)) for i in range(3)))
    for i, pids in enumerate(results):
        assert len(pids) >= 2, f"client {i} never switched backends"


async def test_listen_of_one_client_reaches_no_other(pooler: PoolerProcess) -> None:
    a = await pooler.aconnect()
    b = await pooler.aconnect()
    try:
        await a.execute("LISTEN chan_a")
        await b.execute("SELECT 1")
        cur = await b.execute("SELECT count(*) FROM pg_listening_channels()")
        assert await cur.fetchone() == (0,)
        await a.close()
        for _ in range(4):
            cur = await b.execute("SELECT count(*) FROM pg_listening_channels()")
            assert await cur.fetchone() == (0,)
    finally:
        await a.close()
        await b.close()
