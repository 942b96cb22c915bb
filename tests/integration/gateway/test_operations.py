"""Operating the gateway: the admin console (psql or a driver to the database ``multigres``),
``/metrics``, ``/readyz`` and ``/debug/status``, and ``multigres cluster status`` reading it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest

from multigres.cli.cluster.status import gateway_status
from multigres.testing.postgres import PASSWORD

from .conftest import GatewayCluster, wait_until

pytestmark = pytest.mark.integration


def http_get(cluster: GatewayCluster, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http_port}{path}",
                                    timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def admin(cluster: GatewayCluster, command: str, dbname: str = "multigres"
          ) -> list[dict[str, Any]]:
    """One console command through psycopg (the extended protocol)."""
    with cluster.connect(dbname) as conn:
        cur = conn.execute(command)
        cols = [d.name for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def wait_both_poolers_seen(cluster: GatewayCluster) -> list[dict[str, Any]]:
    def seen() -> list[dict[str, Any]] | None:
        rows = admin(cluster, "SHOW POOLERS")
        return rows if sum(r["serving"] == "1" for r in rows) == 2 else None

    rows: list[dict[str, Any]] = wait_until(seen, what="both poolers serving in SHOW POOLERS")
    return rows


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m is not None, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def test_show_poolers_and_sessions(gw_cluster: GatewayCluster) -> None:
    rows = wait_both_poolers_seen(gw_cluster)
    by_id = {r["id"]: r for r in rows}
    assert by_id["zone1-gw1"]["role"] == "primary"
    assert by_id["zone1-gw2"]["role"] == "replica"
    for r in rows:
        assert r["cell"] == "zone1" and r["database"] == "postgres"
        assert r["address"] == f"127.0.0.1:{gw_cluster.pooler_ports[r['id']]}"
        assert r["health_error"] == "" and float(r["lag_seconds"]) >= 0

    with gw_cluster.connect(application_name="ops-app") as app, \
            gw_cluster.connect("multigres", application_name="ops-console") as console:
        app.execute("BEGIN")
        app.execute("SELECT 1")
        cur = console.execute("SHOW SESSIONS")
        cols = [d.name for d in cur.description or []]
        sessions = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        mine = [s for s in sessions if s["application_name"] == "ops-app"]
        assert len(mine) == 1
        assert mine[0]["user"] == "postgres" and mine[0]["database"] == "postgres"
        assert mine[0]["target"] == "primary" and mine[0]["pooler"] == "zone1-gw1"
        assert mine[0]["tx_status"] == "T" and mine[0]["state"] == "idle in transaction"
        assert mine[0]["addr"] == "127.0.0.1"
        # The console's own session, listed as such.
        assert any(s["application_name"] == "ops-console" and s["state"] == "admin"
                   for s in sessions)
        # SHOW CLIENTS is the same (PgBouncer's name); pgbouncer is the console too.
        clients = admin(gw_cluster, "SHOW CLIENTS", dbname="pgbouncer")
        assert any(c["application_name"] == "ops-app" for c in clients)
        app.execute("COMMIT")


def test_stats_config_and_errors(gw_cluster: GatewayCluster) -> None:
    stats = {r["stat"]: int(r["value"]) for r in admin(gw_cluster, "SHOW STATS")}
    for name in ("sessions_now", "sessions", "auth_failures", "moves", "retries",
                 "pooler_lost", "buffered_now"):
        assert name in stats
    assert stats["sessions"] >= 1 and stats["sessions_now"] >= 1
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(gw_cluster.conninfo(password="wrong"))
    after = {r["stat"]: int(r["value"]) for r in admin(gw_cluster, "SHOW STATS")}
    assert after["auth_failures"] == stats["auth_failures"] + 1

    config = {r["key"]: r for r in admin(gw_cluster, "SHOW CONFIG")}
    assert config["listen"]["value"] == f"127.0.0.1:{gw_cluster.port}"
    assert config["buffer_timeout"]["value"] == "10.0"  # as the test cluster sets it
    assert config["admin_users"]["value"] == "postgres"

    with gw_cluster.connect("multigres") as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            conn.execute("SELECT * FROM pg_class")
        assert e.value.sqlstate == "42601"
        assert e.value.diag.message_hint is not None
        assert "SHOW POOLERS" in e.value.diag.message_hint
        # The session goes on after an error.
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("multigateway")  # type: ignore[index]


def test_console_with_psql(gw_cluster: GatewayCluster) -> None:
    """The simple protocol, several commands per line, and psql's own queries."""
    out = subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(gw_cluster.port), "-U", "postgres",
         "-d", "multigres", "-c", "SHOW POOLERS; SHOW STATS", "-c", "\\d"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"})
    assert "zone1-gw1" in out.stdout and "pooler_lost" in out.stdout
    assert "unknown admin command" in out.stderr


def test_console_only_for_admin_users(gw_cluster: GatewayCluster) -> None:
    with psycopg.connect(gw_cluster.primary.endpoint().conninfo(), autocommit=True) as pg:
        pg.execute("DROP ROLE IF EXISTS gw_ops_bob")
        pg.execute("CREATE ROLE gw_ops_bob LOGIN PASSWORD 'bob-pw'")
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(gw_cluster.conninfo("multigres", user="gw_ops_bob", password="bob-pw"))
    assert "may not use the admin console" in str(e.value)
    # Authentication comes first: a wrong password is a wrong password.
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(gw_cluster.conninfo("multigres", password="wrong"))
    assert "password authentication failed" in str(e.value)


def test_http_endpoints(gw_cluster: GatewayCluster) -> None:
    wait_both_poolers_seen(gw_cluster)
    assert http_get(gw_cluster, "/healthz") == (200, "ok\n")
    assert http_get(gw_cluster, "/readyz")[0] == 200

    status, before = http_get(gw_cluster, "/metrics")
    assert status == 200
    for name in ("multigateway_sessions", "multigateway_sessions_accepted_total",
                 "multigateway_session_moves_total", "multigateway_retries_total",
                 "multigateway_pooler_lost_total", "multigateway_buffered_sessions",
                 "multigateway_pooler_serving", "multigateway_ready"):
        assert f"\n{name}" in before, name
    label = '{cell="zone1",database="postgres",pooler="zone1-gw1",shard="0",tablegroup="default"}'
    assert metric(before, "multigateway_pooler_serving", label) == 1
    accepted = metric(before, "multigateway_sessions_accepted_total")
    with gw_cluster.connect() as conn:
        conn.execute("SELECT 1")
        _, during = http_get(gw_cluster, "/metrics")
        assert metric(during, "multigateway_sessions", '{state="idle"}') >= 1
    _, after = http_get(gw_cluster, "/metrics")
    assert metric(after, "multigateway_sessions_accepted_total") >= accepted + 1

    status, page = http_get(gw_cluster, "/debug/status")
    assert status == 200 and "<html>" in page.lower()
    assert "zone1-gw1" in page and "zone1-gw2" in page and "primary" in page
    status, body = http_get(gw_cluster, "/debug/status?format=json")
    doc = json.loads(body)
    assert doc["ready"] is True
    assert {p["id"]: p["role"] for p in doc["poolers"]} == {
        "zone1-gw1": "primary", "zone1-gw2": "replica"}
    assert doc["config"]["listen"] == f"127.0.0.1:{gw_cluster.port}"
    assert http_get(gw_cluster, "/nope")[0] == 404


def test_cluster_status_reads_the_gateway(gw_cluster: GatewayCluster) -> None:
    wait_both_poolers_seen(gw_cluster)
    with gw_cluster.connect():
        detail = gateway_status("127.0.0.1", gw_cluster.http_port)
    assert "sessions" in detail and "2/2 poolers serving" in detail
    assert "unreachable" in gateway_status("127.0.0.1", 1)


def test_plan_cache_counts(gw_cluster: GatewayCluster) -> None:
    """Statements that differ only in literals share a plan: one miss, then hits."""
    def stats() -> dict[str, int]:
        return {r["stat"]: int(r["value"]) for r in admin(gw_cluster, "SHOW STATS")}

    before = stats()
    with gw_cluster.connect() as conn:
        for i in range(10):
            conn.execute(f"SELECT {i} + 4242 AS plan_cache_probe")
    after = stats()
    assert after["plan_cache_misses"] == before["plan_cache_misses"] + 1
    assert after["plan_cache_hits"] >= before["plan_cache_hits"] + 9
    assert after["statements"] >= before.get("statements", 0) + 10
    assert after["plan_cache_size"] >= 1
