"""The session-isolation matrix, run against any endpoint that pools sessions over a small
set of Postgres backends: the pooler directly (tests/integration/pooler/test_isolation.py) and
the gateway over a pooler (tests/integration/gateway/test_isolation.py).

What one client sets, prepares, creates or locks is never seen by another, and each client
keeps its own session across backend switches. The endpoint must sit over exactly
``Target.backends`` server connections (pool size 2) with more concurrent clients than that,
each holding its backend a little inside every transaction, so that a client's consecutive
transactions land on different backends; every case records pg_backend_pid() per transaction
and asserts that it varies (a lone client handed back its own backend would prove nothing).

The database needs the roles and schemas that tests/integration/pooler/conftest.py's
``_setup`` creates (alice, bob, carol; reader, writer; s0..s5 with a ``marker`` table each).

Each case is a plain callable ``case(target)``; ``cases()`` gives them as pytest parameters,
with an expected failure attached by name where an endpoint has a known bug.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from _pytest.mark.structures import ParameterSet
from psycopg import errors

from tests.integration.pooler.conftest import Turns

CLIENTS = 4
ROUNDS = 12
# A hung case fails with its traceback well before pytest-timeout's limit.
CASE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Target:
    """An endpoint under test. ``conninfo`` logs in as the superuser; ``direct`` is the same
    Postgres without anything in between (the baseline of the parity cases); ``backends``
    is the number of server connections the endpoint's pool has for one user and database."""

    name: str
    conninfo: str
    direct: str
    backends: int = 2

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Autocommit unless told otherwise; other keyword arguments are connection
        parameters (options, application_name, ...) or psycopg's (prepare_threshold)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo, **kwargs)

    async def aconnect(self, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        kwargs.setdefault("autocommit", True)
        return await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)


Case = Callable[[Target], None]
CASES: dict[str, Case] = {}


def _case(fn: Callable[[Target], Awaitable[None]]) -> Callable[[Target], Awaitable[None]]:
    """Register an async case under its name (without ``case_``)."""

    def run(target: Target) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(CASE_TIMEOUT):
                await fn(target)

        asyncio.run(bounded())

    CASES[fn.__name__.removeprefix("case_")] = run
    return fn


def cases(xfail: Mapping[str, str] | None = None) -> list[ParameterSet]:
    """The matrix as pytest parameters, ids = case names; ``xfail``: case name -> reason
    (strict: a case that starts to pass must have its mark removed)."""
    xfail = dict(xfail or {})
    unknown = set(xfail) - set(CASES)
    assert not unknown, f"no such isolation cases: {sorted(unknown)}"
    return [
        pytest.param(fn, id=name, marks=[pytest.mark.xfail(strict=True, reason=xfail[name])]
                     if name in xfail else [])
        for name, fn in CASES.items()
    ]


# -- settings and roles follow each client -----------------------------------------------------


def _settings_query() -> str:
    return (
        "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('TimeZone'),"
        " current_setting('application_name'), current_setting('work_mem'),"
        " current_setting('myapp.client', true), current_user::text, session_user::text,"
        " (SELECT v FROM marker)"
    )


async def _settings_client(target: Target, i: int, turns: Turns) -> set[int]:
    conn = await target.aconnect(options=f"-c work_mem={i + 2}MB",
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


async def _settings_clients(target: Target) -> list[set[int]]:
    turns = Turns(CLIENTS)
    return list(await asyncio.gather(
        *(turns.run(_settings_client(target, i, turns)) for i in range(CLIENTS))))


@_case
async def case_settings_roles_follow_each_client(target: Target) -> None:
    results = await _settings_clients(target)
    for i, pids in enumerate(results):
        assert len(pids) >= 2, f"client {i} always ran on one backend: nothing was proven"
    # Every backend served several clients.
    assert len(set().union(*results)) == target.backends


@_case
async def case_new_client_sees_server_defaults(target: Target) -> None:
    """After clients with settings left, a fresh client sees none of them, on every backend."""
    with psycopg.connect(target.direct, autocommit=True) as direct:
        tz = direct.execute("SHOW TimeZone").fetchone()
    assert tz is not None
    await _settings_clients(target)
    turns = Turns(3)

    async def fresh(i: int) -> set[int]:
        pids = set()
        async with await target.aconnect() as conn:
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
        assert len(pids) == target.backends, f"client {i} never switched backends"


# -- RESET, RESET ALL, DISCARD ALL, rolled-back SET, SET LOCAL: parity with a direct session ----

# Each step: a statement, or a list of them, then the SHOW results (twice) compared with a
# direct connection; "?" inside a list shows them there too.
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


def run_parity_script(
    conn: psycopg.Connection[Any], extended: bool = False
) -> tuple[list[tuple[Any, ...]], set[int]]:
    """Run PARITY_SCRIPT; ``extended``: each statement alone in a pipeline (Parse, Bind,
    Execute, Sync) instead of a simple Query. The SHOW results, and the backend pids seen."""
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


def _busy(target: Target, stop: threading.Event) -> None:
    with target.connect() as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute("SELECT pg_sleep(0.003)")


def _parity(startup: str, extended: bool) -> Case:
    def run(target: Target) -> None:
        """The same script on a direct connection and through the target gives the same
        SHOW results, while other clients make the pooled one switch backends."""
        kwargs: dict[str, Any] = {}
        if startup == "options":
            kwargs = {"options": "-c work_mem=7MB -c search_path=s2",
                      "application_name": "startapp"}
        with psycopg.connect(target.direct, autocommit=True, **kwargs) as conn:
            want, _ = run_parity_script(conn, extended)
        stop = threading.Event()
        threads = [threading.Thread(target=_busy, args=(target, stop)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            with target.connect(**kwargs) as conn:
                got, pids = run_parity_script(conn, extended)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert got == want
        assert len(pids) == target.backends

    return run


for _startup, _extended in [("options", False), ("plain", False), ("options", True)]:
    CASES[f"reset_discard_rollback_parity-{_startup}-"
          f"{'extended' if _extended else 'simple'}"] = _parity(_startup, _extended)


# -- state that pins: never visible to another client ---------------------------------------


async def _pid(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


@_case
async def case_pinned_state_is_invisible_to_others(target: Target) -> None:
    """A's temp table, SQL prepared statement and advisory lock: B and C (sharing the other
    backend) see none of it, and neither does anyone on A's backend after A leaves."""
    a = await target.aconnect()
    b = await target.aconnect()
    c = await target.aconnect()
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


@_case
async def case_protocol_prepared_statements_are_per_client(target: Target) -> None:
    """Clients using the same statement names for different SQL each run their own."""
    turns = Turns(3)

    async def run(i: int) -> set[int]:
        pids = set()
        async with await target.aconnect(prepare_threshold=0) as conn:
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


@_case
async def case_listen_of_one_client_reaches_no_other(target: Target) -> None:
    a = await target.aconnect()
    b = await target.aconnect()
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
