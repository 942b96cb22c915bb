"""Prometheus metrics on ``--http-port``: ``/metrics``, ``/healthz`` (alive) and ``/readyz``
(serving).

Served from the pooler's own event loop by the tiny HTTP handler of ``multigres.admin.http``
(a scrape is rare, and a thread would share the GIL with the data path anyway). Nothing is
recorded for Prometheus on the hot path: at scrape time a custom collector turns a snapshot
of the pools, clients and the plain counters (stats.py, meters.py) into metric families.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from multigres.admin.http import HttpServer, Request, Response, text
from multigres.pooler.health import SERVING, HealthMonitor
from multigres.pooler.stats import merge

log = logging.getLogger("multigres.pooler")

SnapshotSource = Callable[[], Awaitable[list[dict[str, Any]]]]

_HISTOGRAMS = {
    "tx_latency": ("multipooler_transaction_duration_seconds",
                   "Time from a transaction's first statement to its end (ReadyForQuery idle)"),
    "query_latency": ("multipooler_query_duration_seconds",
                      "Time from a query's arrival to its ReadyForQuery"),
    "pool_wait": ("multipooler_pool_wait_seconds",
                  "Time clients waited for a server connection"),
}


def _histogram(name: str, doc: str, h: dict[str, Any]) -> HistogramMetricFamily:
    buckets = []
    running = 0
    for bound, count in zip(h["bounds"], h["counts"], strict=False):
        running += count
        buckets.append((repr(float(bound)), float(running)))
    total = sum(h["counts"])
    buckets.append(("+Inf", float(total)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h["sum"])


class PoolerCollector(Collector):
    """Collects from ``snapshot`` (set just before each scrape) and the health monitor."""

    def __init__(self, health: HealthMonitor | None = None) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.health = health

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield InfoMetricFamily("multipooler", "multipooler build and listen address",
                               value={"version": snap["version"], "listen": snap["listen"]})
        yield GaugeMetricFamily("multipooler_start_time_seconds",
                                "When the pooler started (Unix time)", value=snap["started_at"])
        yield GaugeMetricFamily("multipooler_workers", "Worker processes", value=snap["workers"])
        yield GaugeMetricFamily("multipooler_paused", "1 while PAUSE is in force",
                                value=1 if snap["paused"] else 0)

        clients = GaugeMetricFamily("multipooler_client_connections",
                                    "Client connections by state", labels=["state"])
        for state, n in sorted(snap["clients"].items()):
            clients.add_metric([state], n)
        yield clients

        labels = ["database", "user"]
        servers = GaugeMetricFamily("multipooler_server_connections",
                                    "Server connections by state (active: held by a client; "
                                    "idle: in the pool; connecting: logging in)",
                                    labels=[*labels, "state"])
        pool_clients = GaugeMetricFamily("multipooler_pool_client_connections",
                                         "Clients of a pool: active (or idle) and waiting",
                                         labels=[*labels, "state"])
        size = GaugeMetricFamily("multipooler_pool_size", "Server connections allowed",
                                 labels=labels)
        maxwait = GaugeMetricFamily("multipooler_pool_max_wait_seconds",
                                    "How long the oldest waiting client has waited",
                                    labels=labels)
        waits = CounterMetricFamily("multipooler_pool_waits", "Times a client had to wait "
                                    "for a server connection", labels=labels)
        wait_time = CounterMetricFamily("multipooler_pool_wait_time_seconds",
                                        "Time clients spent waiting for a server connection",
                                        labels=labels)
        connect_errors = CounterMetricFamily("multipooler_server_connect_errors",
                                             "Failed server logins", labels=labels)
        queries = CounterMetricFamily("multipooler_queries", "Queries run", labels=labels)
        xacts = CounterMetricFamily("multipooler_transactions", "Transactions run",
                                    labels=labels)
        received = CounterMetricFamily("multipooler_received_bytes",
                                       "Bytes received from clients", labels=labels)
        sent = CounterMetricFamily("multipooler_sent_bytes",
                                   "Bytes sent to clients from the servers", labels=labels)
        xact_time = CounterMetricFamily("multipooler_transaction_time_seconds",
                                        "Time spent in transactions", labels=labels)
        query_time = CounterMetricFamily("multipooler_query_time_seconds",
                                         "Time spent in queries", labels=labels)
        for p in snap["pools"]:
            lv = [p["database"], p["user"]]
            servers.add_metric([*lv, "active"], p["sv_active"])
            servers.add_metric([*lv, "idle"], p["sv_idle"])
            servers.add_metric([*lv, "connecting"], p["sv_login"])
            pool_clients.add_metric([*lv, "active"], p["cl_active"])
            pool_clients.add_metric([*lv, "waiting"], p["cl_waiting"])
            size.add_metric(lv, p["size"])
            maxwait.add_metric(lv, p["maxwait"])
            waits.add_metric(lv, p["total_waits"])
            wait_time.add_metric(lv, p["total_wait_time"])
            connect_errors.add_metric(lv, p["connect_errors"])
            queries.add_metric(lv, p["queries"])
            xacts.add_metric(lv, p["transactions"])
            received.add_metric(lv, p["received"])
            sent.add_metric(lv, p["sent"])
            xact_time.add_metric(lv, p["xact_time"])
            query_time.add_metric(lv, p["query_time"])
        yield from (servers, pool_clients, size, maxwait, waits, wait_time, connect_errors,
                    queries, xacts, received, sent, xact_time, query_time)

        c = snap["counters"]
        yield CounterMetricFamily("multipooler_clients_accepted", "Client connections accepted",
                                  value=c["clients_accepted"])
        yield CounterMetricFamily("multipooler_carriers_accepted",
                                  "Gateway connections accepted as carriers of many sessions",
                                  value=c.get("carriers_accepted", 0))
        yield CounterMetricFamily("multipooler_auth_failures", "Failed client logins",
                                  value=c["auth_failures"])
        yield CounterMetricFamily("multipooler_cancel_requests",
                                  "Cancel requests for clients of this process (after "
                                  "forwarding)", value=c["cancels"])
        yield CounterMetricFamily("multipooler_cancel_requests_forwarded",
                                  "Cancel requests that reached another worker than their "
                                  "client's and were forwarded", value=c["cancels_forwarded"])
        errors = CounterMetricFamily("multipooler_errors", "Errors sent to clients, by "
                                     "SQLSTATE class", labels=["class"])
        for cls, n in sorted(snap["errors"].items()):
            errors.add_metric([cls], n)
        yield errors
        for key, (name, doc) in _HISTOGRAMS.items():
            h = snap["histograms"].get(key)
            if h is not None:
                yield _histogram(name, doc, h)
        yield from self._health()

    def _health(self) -> Iterator[Metric]:
        if self.health is None:
            return
        st = self.health.state
        yield GaugeMetricFamily("multipooler_pg_up", "1 when the last health poll of Postgres "
                                "succeeded", value=1 if st.pg_reachable else 0)
        yield GaugeMetricFamily("multipooler_serving", "1 while serving",
                                value=1 if st.serving_state == SERVING else 0)
        role = GaugeMetricFamily("multipooler_role", "The role of Postgres (1 for the "
                                 "current one)", labels=["role"])
        for r in ("primary", "replica"):
            role.add_metric([r], 1 if st.role == r else 0)
        yield role
        yield GaugeMetricFamily("multipooler_replication_lag_seconds",
                                "Replica: age of the last replayed transaction",
                                value=st.lag_seconds)
        yield GaugeMetricFamily("multipooler_replication_lag_bytes",
                                "Replica: WAL received but not replayed", value=st.lag_bytes)


class MetricsServer:
    """The HTTP endpoint, on a socket bound before (so a taken port is reported early)."""

    def __init__(self, sock: socket.socket, source: SnapshotSource,
                 health: HealthMonitor | None = None) -> None:
        self.http = HttpServer(sock, self._route)
        self.source = source
        self.health = health
        self.collector = PoolerCollector(health)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def render(self) -> bytes:
        self.collector.snapshot = merge(await self.source())
        try:
            return generate_latest(self.registry)
        finally:
            self.collector.snapshot = None

    async def _route(self, req: Request) -> Response:
        if req.path == "/metrics":
            return Response("200 OK", CONTENT_TYPE_LATEST, await self.render())
        if req.path == "/healthz":
            return text("200 OK", "ok\n")
        if req.path == "/readyz":
            st = self.health.state if self.health is not None else None
            if st is None or st.serving_state == SERVING:
                return text("200 OK", "serving\n")
            return text("503 Service Unavailable",
                        f"{st.serving_state}: {st.error or 'not serving'}\n")
        return text("404 Not Found", "try /metrics, /healthz or /readyz\n")


def uptime(snap: dict[str, Any]) -> float:
    return max(0.0, time.time() - float(snap["started_at"]))
