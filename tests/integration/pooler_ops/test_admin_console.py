"""The admin console, as an operator uses it: psql (and drivers) to the virtual database
``multigres`` or ``pgbouncer``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from multigres.pgctld.instance import PgInstance
from multigres.testing.postgres import PASSWORD

from .conftest import StartPooler, wait_until

pytestmark = pytest.mark.integration


def psql(port: int, dbname: str, *commands: str, user: str = "postgres"
         ) -> subprocess.CompletedProcess[str]:
    args = ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", dbname,
            "-v", "ON_ERROR_STOP=0"]
    for c in commands:
        args += ["-c", c]
    return subprocess.run(args, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"})


def test_show_commands_with_psql(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False, http=False)
    with pooler.connect(application_name="app-under-test") as client:
        pid = client.execute("SELECT pg_backend_pid()").fetchone()
        client.execute("BEGIN")  # hold the server connection so SHOW SERVERS links it
        client.execute("SELECT 1")

        pools = pooler.admin("SHOW POOLS")
        row = next(r for r in pools if r["database"] == "postgres")
        for col in ("user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used",
                    "sv_login", "maxwait", "maxwait_us", "pool_mode"):
            assert col in row
        assert row["user"] == "postgres"
        assert int(row["cl_active"]) >= 1 and int(row["sv_active"]) >= 1

        clients = pooler.admin("SHOW CLIENTS")
        mine = [c for c in clients if c["application_name"] == "app-under-test"]
        assert len(mine) == 1
        assert mine[0]["database"] == "postgres" and mine[0]["state"] == "active"
        assert mine[0]["addr"] == "127.0.0.1" and int(mine[0]["port"]) > 0
        assert pid is not None and mine[0]["link"] == str(pid[0])
        # The console's own session is listed too.
        assert any(c["database"] == "multigres" and c["state"] == "admin" for c in clients)

        servers = pooler.admin("SHOW SERVERS")
        linked = [s for s in servers if s["remote_pid"] == str(pid[0])]
        assert linked and linked[0]["state"] == "active" and linked[0]["tx_status"] == "T"
        assert linked[0]["port"] == str(ops_pg.spec.port)
        client.execute("COMMIT")

    stats = {r["database"]: r for r in pooler.admin("SHOW STATS")}
    assert int(stats["postgres"]["total_query_count"]) >= 3
    assert int(stats["postgres"]["total_xact_count"]) >= 2
    assert int(stats["postgres"]["total_sent"]) > 0
    assert "avg_xact_count" in stats["postgres"]
    assert set(pooler.admin("SHOW STATS_TOTALS")[0]) >= {"database", "total_xact_count"}
    assert set(pooler.admin("SHOW STATS_AVERAGES")[0]) >= {"database", "avg_query_time"}

    config = {r["key"]: r for r in pooler.admin("SHOW CONFIG")}
    assert config["pool_size"]["value"] == "4" and config["pool_size"]["default"] == "20"
    assert config["pool_size"]["changeable"] == "yes"
    assert config["listen"]["value"] == f"127.0.0.1:{pooler.port}"
    assert config["listen"]["changeable"] == "no"
    assert config["pg_password"]["value"] == "********"

    dbs = {r["name"]: r for r in pooler.admin("SHOW DATABASES")}
    assert dbs["postgres"]["port"] == str(ops_pg.spec.port)
    assert dbs["postgres"]["pool_size"] == "4"
    assert "multigres" in dbs

    assert pooler.admin("SHOW VERSION")[0]["version"].startswith("multipooler ")
    lists = {r["list"]: int(r["items"]) for r in pooler.admin("show lists;")}
    assert lists["pools"] >= 1 and lists["workers"] == 1

    # psql, with the pgbouncer alias; SHOW HELP answers with a notice.
    out = psql(pooler.port, "pgbouncer", "SHOW HELP", "SHOW POOLS")
    assert out.returncode == 0, out.stderr
    assert "SHOW CLIENTS" in out.stderr and "RELOAD" in out.stderr
    assert "cl_active" in out.stdout


def test_unknown_commands_fail_cleanly(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False, http=False)
    with psycopg.connect(pooler.admin_conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            conn.execute("SELECT * FROM pg_class")
        assert e.value.diag.sqlstate == "42601"
        assert e.value.diag.message_hint is not None
        assert "SHOW POOLS" in e.value.diag.message_hint
        assert "PAUSE" in e.value.diag.message_hint
        # The session goes on.
        assert conn.execute("SHOW VERSION").fetchone() is not None
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("PAUSE somedb")

    # psql's meta-commands send catalog queries: a clean error, and psql goes on.
    out = psql(pooler.port, "multigres", "\\d", "\\dt", "SHOW VERSION")
    assert "unknown admin command" in out.stderr
    assert "Traceback" not in out.stderr
    assert "multipooler" in out.stdout
    assert pooler.proc.poll() is None


def test_console_only_for_admin_users(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    with psycopg.connect(ops_pg.endpoint().conninfo(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS ops_app")
        conn.execute("CREATE ROLE ops_app LOGIN PASSWORD 'app-pw'")
    pooler = start_pooler(ops_pg, grpc=False, http=False)
    with pytest.raises(psycopg.OperationalError, match="may not use the admin console"):
        psycopg.connect(pooler.conninfo("multigres", user="ops_app", password="app-pw"))
    # The same user reaches Postgres through the pooler, and postgres the console.
    with psycopg.connect(pooler.conninfo(user="ops_app", password="app-pw")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("ops_app",)
    assert pooler.admin("SHOW VERSION")


def test_extended_protocol_drivers(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    """Drivers that prepare everything (asyncpg; psycopg with prepare=True) can use the
    console, which PgBouncer's cannot."""
    pooler = start_pooler(ops_pg, grpc=False, http=False)
    with psycopg.connect(pooler.admin_conninfo(), autocommit=True) as conn:
        for _ in range(2):
            cur = conn.execute("SHOW POOLS", prepare=True)
            assert cur.description is not None
            assert [d.name for d in cur.description][:3] == ["database", "user", "cl_active"]
            cur.fetchall()
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SELECT 1", prepare=True)
        assert conn.execute("SHOW VERSION", prepare=True).fetchone() is not None

    async def with_asyncpg() -> list[Any]:
        conn = await asyncpg.connect(host="127.0.0.1", port=pooler.port, user="postgres",
                                     password=PASSWORD, database="pgbouncer")
        try:
            rows = await conn.fetch("SHOW CONFIG")
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await conn.fetch("SELECT 1")
            assert (await conn.fetchval("SHOW VERSION")).startswith("multipooler")
            return list(rows)
        finally:
            await conn.close()

    rows = asyncio.run(with_asyncpg())
    assert any(r["key"] == "pool_size" for r in rows)


async def test_pause_waits_for_transactions_and_holds_new_ones(
    ops_pg: PgInstance, start_pooler: StartPooler
) -> None:
    pooler = start_pooler(ops_pg, grpc=False, http=False)
    info = pooler.conninfo()
    in_tx = await psycopg.AsyncConnection.connect(info, autocommit=True)
    other = await psycopg.AsyncConnection.connect(info, autocommit=True)
    admin = await psycopg.AsyncConnection.connect(pooler.admin_conninfo(), autocommit=True)
    try:
        await in_tx.execute("BEGIN")
        await in_tx.execute("SELECT 1")

        pause = asyncio.create_task(admin.execute("PAUSE"))
        await asyncio.sleep(0.5)
        assert not pause.done(), "PAUSE returned while a transaction was open"

        # A new transaction waits while paused; the running one goes on and ends.
        held = asyncio.create_task(other.execute("SELECT 42"))
        await asyncio.sleep(0.3)
        assert not held.done()
        await in_tx.execute("SELECT 2")
        await in_tx.execute("COMMIT")
        await asyncio.wait_for(pause, 5)

        pools = await pooler.aadmin("SHOW POOLS")
        assert pools[0]["paused"] == "1"
        assert int(pools[0]["cl_waiting"]) >= 1
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            await pooler.aadmin("PAUSE")
        await asyncio.sleep(0.3)
        assert not held.done()

        await pooler.aadmin("RESUME")
        cur = await asyncio.wait_for(held, 5)
        assert await cur.fetchone() == (42,)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            await pooler.aadmin("RESUME")
    finally:
        for c in (in_tx, other, admin):
            await c.close()


def test_reload_applies_changeable_settings(
    ops_pg: PgInstance, start_pooler: StartPooler, tmp_path: Path
) -> None:
    cfg = tmp_path / "multipooler.yaml"
    cfg.write_text("pool_size: 2\nquery_wait_timeout: 30\n")
    pooler = start_pooler(ops_pg, "--config", str(cfg), grpc=False, http=False, pool_size=None)
    with pooler.connect() as conn:
        conn.execute("SELECT 1")
    assert pooler.admin("SHOW POOLS")[0]["pool_size"] == "2"

    cfg.write_text("pool_size: 5\nquery_wait_timeout: 7.5\nworkers: 2\n")
    with psycopg.connect(pooler.admin_conninfo(), autocommit=True) as admin:
        notices: list[str] = []
        admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        admin.execute("RELOAD")
        text = "\n".join(notices)
        assert "pool_size" in text and "query_wait_timeout" in text
        assert "workers" in text and "restart" in text
        config = {r[0]: r[1] for r in admin.execute("SHOW CONFIG").fetchall()}
        assert config["query_wait_timeout"] == "7.5"
        assert config["pool_size"] == "5"
        assert config["workers"] == "1"
        # Live pools take the new size.
        pools = admin.execute("SHOW POOLS").fetchall()
        assert pools[0][16] == "5"

        # A broken file: an error naming the key, and nothing changes.
        cfg.write_text("pool_size: lots\n")
        with pytest.raises(psycopg.Error, match="pool_size") as e:
            admin.execute("RELOAD")
        assert e.value.diag.sqlstate == "F0000"
        config = {r[0]: r[1] for r in admin.execute("SHOW CONFIG").fetchall()}
        assert config["pool_size"] == "5"
    # The pooler still listens where it did.
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sighup_reloads(ops_pg: PgInstance, start_pooler: StartPooler, tmp_path: Path) -> None:
    cfg = tmp_path / "multipooler.yaml"
    cfg.write_text("server_idle_timeout: 600\n")
    pooler = start_pooler(ops_pg, "--config", str(cfg), grpc=False, http=False)
    cfg.write_text("server_idle_timeout: 42\n")
    pooler.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "server_idle_timeout" in pooler.log_text(), what="reload logged")
    config = {r["key"]: r["value"] for r in pooler.admin("SHOW CONFIG")}
    assert config["server_idle_timeout"] == "42.0"


def test_show_clients_wait_time(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    """A client waiting for a server connection shows as waiting, with its wait time and
    SHOW POOLS's maxwait."""
    pooler = start_pooler(ops_pg, grpc=False, http=False, pool_size=1)
    holder = pooler.connect()
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")

        async def wait_one() -> None:
            async with await psycopg.AsyncConnection.connect(pooler.conninfo(),
                                                             autocommit=True) as c:
                await c.execute("SELECT 1")

        t = threading.Thread(target=lambda: asyncio.run(wait_one()))
        t.start()
        time.sleep(1.3)
        pools = pooler.admin("SHOW POOLS")
        assert int(pools[0]["cl_waiting"]) == 1
        assert int(pools[0]["maxwait"]) >= 1
        waiting = [c for c in pooler.admin("SHOW CLIENTS") if c["state"] == "waiting"]
        assert len(waiting) == 1 and int(waiting[0]["wait"]) >= 1
        holder.execute("COMMIT")
        t.join(10)
        assert not t.is_alive()
    finally:
        holder.close()


def test_stats_averages_over_the_period(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, "--stats-period", "1", grpc=False, http=False)
    with pooler.connect() as c:
        for _ in range(30):
            c.execute("SELECT 1")

        def averages() -> dict[str, Any] | None:
            rows = [r for r in pooler.admin("SHOW STATS_AVERAGES") if r["database"] == "postgres"]
            return rows[0] if rows and int(rows[0]["avg_query_count"]) > 0 else None

        row = wait_until(averages, timeout=5, interval=0.2, what="averages")
        assert int(row["avg_xact_count"]) > 0
        assert int(row["avg_sent"]) > 0
