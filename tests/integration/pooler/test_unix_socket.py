"""The pooler reaches its Postgres on a Unix socket when ``--pg-host`` is a directory.

A pooler runs beside its Postgres (one per instance), where a Unix socket saves the TCP
stack's work on every message; as in libpq and PgBouncer, an absolute path as the host names
the socket's directory. Queries, prepared statements, cancel requests and the pooler's own
auth query all go through the socket; a wrong directory is a clear login error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import errors

from multigres.pgctld.instance import Endpoint, PgInstance
from multigres.pgctld.osuser import resolve_run_as
from multigres.pooler.config import ConfigError, load
from multigres.testing.pooler import LoginError, RawClient, running_pooler
from multigres.testing.postgres import PgHarness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def socket_pg(pg_harness: PgHarness) -> Iterator[tuple[PgInstance, Path]]:
    """A Postgres that also listens on a Unix socket (password logins there too)."""
    sock_dir = pg_harness.base / "unix-socket-pg"
    sock_dir.mkdir()
    resolve_run_as().chown_tree(sock_dir)  # Postgres runs as the postgres OS user
    # pgctld gives a socket directory a `local` line in pg_hba.conf (password logins).
    inst = pg_harness.primary(settings={"unix_socket_directories": str(sock_dir)})
    yield inst, sock_dir
    inst.stop()


def test_queries_run_over_the_socket(socket_pg: tuple[PgInstance, Path]) -> None:
    inst, sock_dir = socket_pg
    with running_pooler(Endpoint(host=str(sock_dir), port=inst.spec.port), pool_size=2) as pooler:
        with pooler.connect() as conn:
            # A backend on a Unix socket has no server address.
            assert conn.execute("SELECT inet_server_addr() IS NULL").fetchone() == (True,)
            assert conn.execute("SELECT %s::int + 1", (41,), prepare=True).fetchone() == (42,)
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE t (v int)")
                conn.execute("INSERT INTO t VALUES (1), (2)")
                assert conn.execute("SELECT sum(v) FROM t").fetchone() == (3,)


def test_cancel_reaches_the_backend_over_the_socket(socket_pg: tuple[PgInstance, Path]) -> None:
    inst, sock_dir = socket_pg
    with running_pooler(Endpoint(host=str(sock_dir), port=inst.spec.port), pool_size=2) as pooler:
        with pooler.connect() as conn:
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            started = time.monotonic()
            try:
                with pytest.raises(errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(30)")
            finally:
                timer.cancel()
            assert time.monotonic() - started < 10
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_wrong_socket_directory_is_a_clear_error(
    socket_pg: tuple[PgInstance, Path], tmp_path: Path
) -> None:
    inst, _ = socket_pg
    missing = tmp_path / "no-postgres-here"
    missing.mkdir()
    # Trust: the pooler's own auth query would need the server; the login must reach the
    # server connect to show its error.
    with running_pooler(Endpoint(host=str(missing), port=inst.spec.port), pool_size=1,
                        auth="trust") as pooler:
        with pytest.raises(LoginError) as info:
            RawClient(pooler.host, pooler.port)
    assert info.value.sqlstate == "08001", info.value.fields
    assert (f'could not connect to the server at socket "{missing}/.s.PGSQL.{inst.spec.port}"'
            in info.value.fields["M"])


def test_socket_dir_beside_the_advertised_tcp_address(socket_pg: tuple[PgInstance, Path]) -> None:
    """``--pg-socket-dir``: the pooler's connections use the socket, while ``--pg-host`` stays
    the TCP address it shows (and registers in the topology)."""
    inst, sock_dir = socket_pg
    with running_pooler(inst.endpoint(), pool_size=2,
                        args=["--pg-socket-dir", str(sock_dir)]) as pooler:
        with pooler.connect() as conn:
            assert conn.execute("SELECT inet_server_addr() IS NULL").fetchone() == (True,)
        with pooler.connect(dbname="multigres") as admin:
            servers = admin.execute("SHOW DATABASES").fetchall()
        assert any(row[1] == "127.0.0.1" and str(row[2]) == str(inst.spec.port) for row in servers)


def test_socket_dir_must_be_absolute() -> None:
    with pytest.raises(ConfigError, match=r"pg_socket_dir .* absolute path"):
        load(["--pg-socket-dir", "run/postgresql"])
    assert load(["--pg-socket-dir", "/run/pg"]).server_host == "/run/pg"
    assert load(["--pg-host", "/run/pg2"]).server_host == "/run/pg2"
    assert load([]).server_host == "127.0.0.1"
