"""Local mode: `multigres local` runs the gateway and the poolers in one process, and the
gateway's sessions reach the poolers through memory, not sockets."""

from __future__ import annotations

import psycopg
import pytest

from multigres.testing.postgres import PASSWORD

from .conftest import GatewayCluster, wait_until

pytestmark = pytest.mark.integration


def pooler_clients(cluster: GatewayCluster, name: str) -> list[dict[str, object]]:
    info = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=cluster.pooler_ports[name], user="postgres",
        password=PASSWORD, dbname="multigres", connect_timeout=10)
    with psycopg.connect(info, autocommit=True) as conn:
        cur = conn.execute("SHOW CLIENTS")
        assert cur.description is not None
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_sessions_reach_the_pooler_in_memory(local_cluster: GatewayCluster) -> None:
    with local_cluster.connect(application_name="local-app") as conn:
        assert conn.execute("SELECT current_user, pg_is_in_recovery()").fetchone() == (
            "postgres", False)
        clients = [c for c in pooler_clients(local_cluster, "zone1-l1")
                   if c.get("application_name") == "local-app"]
        assert len(clients) == 1
        assert clients[0]["addr"] == "local"  # the in-memory pipe, not a TCP peer


def test_session_semantics(local_cluster: GatewayCluster) -> None:
    with local_cluster.connect() as conn:
        conn.execute("SET search_path = pg_catalog")
        conn.autocommit = False
        conn.execute("CREATE TEMP TABLE local_t (x int)")
        conn.execute("INSERT INTO local_t SELECT generate_series(1, 5000)")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM local_t").fetchone() == (5000,)
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)
        for i in range(8):  # prepared statements from the 5th run
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        conn.rollback()
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT x FROM local_t) TO STDOUT") as copy:
                assert sum(1 for _ in copy.rows()) == 5000
        conn.commit()


def test_replica_and_cancel(local_cluster: GatewayCluster) -> None:
    import threading

    def on_replica() -> bool:
        with local_cluster.connect("postgres@replica") as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

    wait_until(on_replica, what="a @replica session on the replica")
    with local_cluster.connect() as conn:
        threading.Timer(0.5, conn.cancel).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        assert conn.execute("SELECT 1").fetchone() == (1,)
