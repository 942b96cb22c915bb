"""Fixtures of the pooler suite: one Postgres for the whole suite, poolers in front of it.

- ``pg``: a real Postgres primary (superuser postgres/postgres) with the roles and schemas the
  tests use; ``direct()`` opens a side connection to it that bypasses the pooler.
- ``pooler``: a ``multipooler`` with ``--auth scram`` (verifiers from its auth query), pool
  size 2, shared by a test module; ``make_pooler(...)`` starts one with other flags for one
  test. At teardown each pooler's log must hold no traceback: an exception inside the
  pooler's callbacks is a bug even when the client saw nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.pgctld.instance import PgInstance
from multigres.pgctld.osuser import resolve_run_as
from multigres.testing.pooler import PoolerProcess
from multigres.testing.postgres import PgHarness
from multigres.wire.tls import make_self_signed_cert

# Roles the tests log in as or switch to (password = name).
LOGIN_ROLES = ("alice", "bob", "carol")
# Roles for SET ROLE (no login), granted to the login roles.
GROUP_ROLES = ("reader", "writer")
SCHEMAS = ("s0", "s1", "s2", "s3", "s4", "s5")


def _setup(inst: PgInstance) -> None:
    with inst.connect() as conn:
        conn.autocommit = True
        for role in LOGIN_ROLES:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'")
        for role in GROUP_ROLES:
            conn.execute(f"CREATE ROLE {role} NOLOGIN")
            for login in LOGIN_ROLES:
                conn.execute(f"GRANT {role} TO {login}")
        for schema in SCHEMAS:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.marker (v text)")
            conn.execute(f"INSERT INTO {schema}.marker VALUES ('{schema}')")
            conn.execute(f"GRANT ALL ON SCHEMA {schema} TO PUBLIC")
            conn.execute(f"GRANT ALL ON {schema}.marker TO PUBLIC")
        conn.execute("GRANT ALL ON SCHEMA public TO PUBLIC")


@pytest.fixture(scope="session")
def pg_cert(pg_harness: PgHarness) -> Path:
    """The certificate of ``pg``'s TLS (self-signed: also the root to check it with)."""
    tls_dir = pg_harness.base / "pooler-tls"
    cert, _ = make_self_signed_cert(tls_dir)
    resolve_run_as().chown_tree(tls_dir)  # the server reads them as the postgres OS user
    return cert


@pytest.fixture(scope="session")
def pg(pg_harness: PgHarness, pg_cert: Path) -> PgInstance:
    inst = pg_harness.primary(settings={
        "max_connections": "100", "ssl": "on", "ssl_cert_file": str(pg_cert),
        "ssl_key_file": str(pg_cert.with_suffix(".key")),
    })
    _setup(inst)
    return inst


@pytest.fixture
def direct(pg: PgInstance) -> Iterator[psycopg.Connection[Any]]:
    """A side connection straight to Postgres (autocommit)."""
    conn = pg.connect()
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def make_table(direct: psycopg.Connection[Any]) -> Iterator[Callable[[str], str]]:
    """``make_table(name)`` creates the table ``name (id int PRIMARY KEY, v text)``, open to
    every role, and gives its name back; the tables are dropped after the test."""
    made: list[str] = []

    def make(name: str) -> str:
        direct.execute(f"DROP TABLE IF EXISTS {name}")
        direct.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        direct.execute(f"GRANT ALL ON {name} TO PUBLIC")
        made.append(name)
        return name

    yield make
    for name in made:
        direct.execute(f"DROP TABLE IF EXISTS {name}")


def check_log(pooler: PoolerProcess) -> None:
    errors = pooler.internal_errors()
    if errors is not None:
        raise AssertionError(f"the pooler logged an internal error:\n{errors}")


def _start(pg: PgInstance, tmp: Path, **kwargs: Any) -> PoolerProcess:
    pooler = PoolerProcess(pg.endpoint(), log_dir=tmp, **kwargs)
    pooler.start()
    return pooler


@contextmanager
def module_pooler(
    pg: PgInstance, factory: pytest.TempPathFactory, **kwargs: Any
) -> Iterator[PoolerProcess]:
    """A pooler for a module-scoped fixture; its log is checked at the end."""
    p = _start(pg, factory.mktemp("pooler"), **kwargs)
    try:
        yield p
        check_log(p)
    finally:
        p.stop()


@pytest.fixture(scope="module")
def pooler(pg: PgInstance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolerProcess]:
    """A pooler with pool size 2, shared by the tests of a module."""
    with module_pooler(pg, tmp_path_factory, pool_size=2) as p:
        yield p


@pytest.fixture
def make_pooler(
    pg: PgInstance, tmp_path: Path
) -> Iterator[Callable[..., PoolerProcess]]:
    """Start poolers with given options for one test (stopped at its end)."""
    started: list[PoolerProcess] = []

    def make(**kwargs: Any) -> PoolerProcess:
        p = _start(pg, tmp_path / f"pooler{len(started)}", **kwargs)
        started.append(p)
        return p

    try:
        yield make
        for p in started:
            check_log(p)
    finally:
        for p in started:
            p.stop()


@contextmanager
def holding(pooler: PoolerProcess, pid: int) -> Iterator[psycopg.Connection[Any]]:
    """Hold the backend ``pid`` in an open transaction of another client (pool size 2), so
    that the next statement of whoever used it runs on the other backend."""
    hogs: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(2):
            hog = pooler.connect()
            hogs.append(hog)
            hog.execute("BEGIN")
            row = hog.execute("SELECT pg_backend_pid()").fetchone()
            if row is not None and row[0] == pid:
                for other in hogs[:-1]:
                    other.close()
                yield hog
                return
        raise AssertionError(f"no client got backend {pid}")
    finally:
        for hog in hogs:
            hog.close()


class Turns:
    """Rounds in which concurrent clients start their transactions together, in an order
    that changes each round, so that the late starters find their previous backend taken and
    run on the other one: every client moves between backends (affinity would otherwise
    keep a client on its own). Round r uses permutation 7r (mod n!) of the clients: with two
    backends, every client switches within 6 rounds for 3 clients, 8 rounds for 4 (a plain
    rotation lets 4 clients pair up for good). Hold each transaction for HOLD seconds."""

    HOLD = 0.025
    STAGGER = 0.005

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.barrier = asyncio.Barrier(clients)
        self.orders = list(itertools.permutations(range(clients)))

    async def start(self, client: int, round_: int) -> None:
        await self.barrier.wait()
        order = self.orders[(round_ * 7) % len(self.orders)]
        await asyncio.sleep(self.STAGGER * order.index(client))

    async def run(self, coro: Any) -> Any:
        """Await one client's coroutine; if it fails, release the others from the barrier."""
        try:
            return await coro
        except BaseException:
            await self.barrier.abort()
            raise


@contextmanager
def later(delay: float, fn: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Run ``fn(*args)`` in a thread after ``delay`` seconds (a cancel, a kill, while the
    block waits on a query); the block's end waits for it, so it never outlives the test."""
    timer = threading.Timer(delay, fn, args)
    timer.start()
    try:
        yield
    finally:
        timer.join()
