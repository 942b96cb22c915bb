"""Prometheus metrics on --http-port, as a scraper sees them."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multigres.pgctld.instance import PgInstance
from multigres.testing.postgres import PgHarness

from .conftest import Pooler, StartPooler, wait_until

pytestmark = pytest.mark.integration


def scrape(pooler: Pooler) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    status, text = pooler.http("/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_follow_the_traffic(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False)
    pool = {"database": "postgres", "user": "postgres"}
    with pooler.connect() as a, pooler.connect() as b:
        for i in range(5):
            a.execute("SELECT %s::int", (i,))
        b.execute("BEGIN")
        b.execute("SELECT 1")
        m = scrape(pooler)
        assert value(m, "multipooler_client_connections", state="active") == 1  # b, in a tx
        assert value(m, "multipooler_client_connections", state="idle") == 1  # a
        assert value(m, "multipooler_server_connections", **pool, state="active") == 1
        assert value(m, "multipooler_pool_size", **pool) == 4
        b.execute("COMMIT")
    m = scrape(pooler)
    assert value(m, "multipooler_queries_total", **pool) >= 8
    assert value(m, "multipooler_transactions_total", **pool) >= 6
    assert value(m, "multipooler_sent_bytes_total", **pool) > 0
    assert value(m, "multipooler_clients_accepted_total") >= 2
    assert value(m, "multipooler_client_connections", state="active") == 0
    # Closed clients' counts stay in the totals.
    assert value(m, "multipooler_server_connections", **pool, state="idle") >= 1
    assert value(m, "multipooler_workers") == 1
    assert value(m, "multipooler_paused") == 0
    assert value(m, "multipooler_pg_up") == 1
    assert value(m, "multipooler_role", role="primary") == 1
    assert value(m, "multipooler_replication_lag_seconds") == 0
    # The histograms are exported with Prometheus's cumulative buckets.
    for name in ("multipooler_transaction_duration_seconds", "multipooler_pool_wait_seconds",
                 "multipooler_query_duration_seconds"):
        assert (name + "_bucket", (("le", "+Inf"),)) in m
        assert (name + "_count", ()) in m

    # Auth failures and cancels are counted.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pooler.conninfo(password="wrong"))
    with pooler.connect() as c:
        t = threading.Timer(0.3, c.cancel_safe)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(10)")
        t.join()
    m = scrape(pooler)
    assert value(m, "multipooler_auth_failures_total") == 1
    assert value(m, "multipooler_cancel_requests_total") == 1


def test_waiting_clients_and_wait_counts(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False, pool_size=1)
    pool = {"database": "postgres", "user": "postgres"}
    with pooler.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        done = threading.Event()

        def waiter() -> None:
            with pooler.connect() as c:
                c.execute("SELECT 1")
            done.set()

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: value(scrape(pooler), "multipooler_pool_client_connections",
                                 **pool, state="waiting") == 1, what="a waiting client")
        time.sleep(0.5)
        m = scrape(pooler)
        assert value(m, "multipooler_client_connections", state="waiting") == 1
        assert value(m, "multipooler_pool_max_wait_seconds", **pool) >= 0.4
        waits_before = value(m, "multipooler_pool_waits_total", **pool)
        holder.execute("COMMIT")
        assert done.wait(10)
        t.join()
    m = scrape(pooler)
    assert value(m, "multipooler_pool_waits_total", **pool) >= waits_before >= 1
    assert value(m, "multipooler_pool_max_wait_seconds", **pool) == 0


def test_health_endpoints(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False)
    assert pooler.http("/healthz") == (200, "ok\n")
    wait_until(lambda: pooler.http("/readyz")[0] == 200, what="ready")
    assert pooler.http("/nothing-here")[0] == 404


def test_readyz_follows_postgres(pg_harness: PgHarness, start_pooler: StartPooler) -> None:
    pg = pg_harness.primary()
    pooler = start_pooler(pg, "--health-interval", "0.2", grpc=False)
    wait_until(lambda: pooler.http("/readyz")[0] == 200, what="ready")
    pg.stop()
    try:
        _, body = wait_until(
            lambda: (r := pooler.http("/readyz"))[0] == 503 and r, timeout=10,
            what="not ready")
        assert "not_serving" in body
        assert pooler.http("/healthz")[0] == 200  # alive all the same
        assert value(scrape(pooler), "multipooler_pg_up") == 0
    finally:
        pg.start()
    wait_until(lambda: pooler.http("/readyz")[0] == 200, timeout=15, what="ready again")


def test_transaction_latency_histogram(ops_pg: PgInstance, start_pooler: StartPooler) -> None:
    pooler = start_pooler(ops_pg, grpc=False)
    with pooler.connect() as c:
        for _ in range(3):
            c.execute("SELECT pg_sleep(0.01)")
    m = scrape(pooler)
    assert value(m, "multipooler_transaction_duration_seconds_count") >= 3
    assert value(m, "multipooler_transaction_duration_seconds_bucket", le="0.005") == 0
