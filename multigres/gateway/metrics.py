"""The gateway's HTTP endpoint on ``http_port``: ``/metrics`` (Prometheus), ``/healthz``
(alive), ``/readyz`` (ready: discovery knows a serving primary) and ``/debug/status`` (an HTML
page for people; ``?format=json`` gives the same as JSON, which ``multigres cluster status``
reads).

Nothing is recorded for Prometheus on the data path: at scrape time a custom collector turns
a snapshot (stats.py) into metric families.
"""

from __future__ import annotations

import html
import json
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from multigres.admin.http import HTML, JSON, HttpServer, Request, Response, text
from multigres.gateway import stats

if TYPE_CHECKING:
    from multigres.gateway.server import GatewayServer

_COUNTER_DOCS = {
    "sessions": ("multigateway_sessions_accepted", "Client connections accepted"),
    "statements": ("multigateway_statements", "Statements (queries and Syncs) sent on"),
    "direct_statements": ("multigateway_direct_statements", "Queries on sharded tables "
                          "routed to one shard by the data path itself (no engine)"),
    "auth_failures": ("multigateway_auth_failures", "Failed client logins"),
    "moves": ("multigateway_session_moves", "Sessions moved to another pooler (a new "
              "primary, a restarted pooler, a replica that qualifies again)"),
    "retries": ("multigateway_retries", "Statements run again on another pooler because "
                "theirs had no server connection (nothing had run)"),
    "pooler_lost": ("multigateway_pooler_lost", "Sessions whose pooler connection was lost"),
    "cancels": ("multigateway_cancel_requests", "Cancel requests passed on to a pooler"),
}
MAX_SESSIONS_SHOWN = 100
_POOLER_LABELS = ["pooler", "cell", "database", "tablegroup", "shard"]


class GatewayCollector(Collector):
    """Collects from ``snapshot`` (set just before each scrape)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield InfoMetricFamily("multigateway", "multigateway build and listen address",
                               value={"version": snap["version"], "listen": snap["listen"],
                                      "cell": snap["cell"]})
        yield GaugeMetricFamily("multigateway_start_time_seconds",
                                "When the gateway started (Unix time)", value=snap["started_at"])
        yield GaugeMetricFamily("multigateway_ready", "1 while a serving primary is known",
                                value=1 if snap["ready"] else 0)
        sessions = GaugeMetricFamily("multigateway_sessions", "Client sessions by state",
                                     labels=["state"])
        for state in stats.SESSION_STATES:
            sessions.add_metric([state], snap["sessions"][state])
        yield sessions
        yield GaugeMetricFamily("multigateway_buffered_sessions",
                                "Sessions waiting for a serving target (failover buffering)",
                                value=snap["buffered"])
        yield GaugeMetricFamily("multigateway_pooler_carriers",
                                "Open connections each carrying all sessions to one pooler",
                                value=snap.get("carriers", 0))
        for key, value in snap["counters"].items():
            name, doc = _COUNTER_DOCS.get(key, (f"multigateway_{key}", key))
            yield CounterMetricFamily(name, doc, value=value)
        yield from self._poolers(snap["poolers"])
        cache = snap["plan_cache"]
        if cache is not None:
            yield CounterMetricFamily("multigateway_plan_cache_hits", "Plan cache hits",
                                      value=cache.get("hits", 0))
            yield CounterMetricFamily("multigateway_plan_cache_misses", "Plan cache misses",
                                      value=cache.get("misses", 0))
            yield CounterMetricFamily("multigateway_plan_cache_evictions",
                                      "Plans evicted from the cache",
                                      value=cache.get("evictions", 0))
            yield GaugeMetricFamily("multigateway_plan_cache_size", "Plans in the cache",
                                    value=cache.get("size", 0))
            yield GaugeMetricFamily("multigateway_plan_cache_bytes",
                                    "Estimated size of the cached plans",
                                    value=cache.get("bytes", 0))

    def _poolers(self, poolers: list[dict[str, Any]]) -> Iterator[Metric]:
        serving = GaugeMetricFamily("multigateway_pooler_serving",
                                    "1 while the pooler may serve sessions (record and health "
                                    "agree)", labels=_POOLER_LABELS)
        healthy = GaugeMetricFamily("multigateway_pooler_health_known",
                                    "1 while the pooler's health stream is up",
                                    labels=_POOLER_LABELS)
        role = GaugeMetricFamily("multigateway_pooler_role",
                                 "The pooler's role (1 for the current one)",
                                 labels=[*_POOLER_LABELS, "role"])
        lag = GaugeMetricFamily("multigateway_pooler_replication_lag_seconds",
                                "Replica lag the pooler reports", labels=_POOLER_LABELS)
        for p in poolers:
            lv = [p["id"], p["cell"], p["database"], p["tablegroup"], p["shard"]]
            serving.add_metric(lv, 1 if p["serving"] else 0)
            healthy.add_metric(lv, 0 if p["health_age"] is None else 1)
            for r in ("primary", "replica"):
                role.add_metric([*lv, r], 1 if p["role"] == r else 0)
            lag.add_metric(lv, p["lag_seconds"])
        yield from (serving, healthy, role, lag)


class GatewayHttp:
    """``/metrics``, ``/healthz``, ``/readyz``, ``/debug/status`` on a socket bound before."""

    def __init__(self, server: GatewayServer, sock: socket.socket) -> None:
        self.server = server
        self.http = HttpServer(sock, self._route)
        self.collector = GatewayCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    def render(self) -> bytes:
        self.collector.snapshot = self.server.snapshot()
        try:
            return generate_latest(self.registry)
        finally:
            self.collector.snapshot = None

    async def _route(self, req: Request) -> Response:
        if req.path == "/metrics":
            return Response("200 OK", CONTENT_TYPE_LATEST, self.render())
        if req.path == "/healthz":
            return text("200 OK", "ok\n")
        if req.path == "/readyz":
            if stats.is_ready(self.server):
                return text("200 OK", "ready\n")
            return text("503 Service Unavailable", "no serving primary known yet\n")
        if req.path == "/debug/status":
            status = self.status()
            if req.query.get("format") == "json":
                return Response("200 OK", JSON, json.dumps(status, indent=1).encode())
            return Response("200 OK", HTML, status_page(status).encode())
        return text("404 Not Found",
                    "try /metrics, /healthz, /readyz or /debug/status[?format=json]\n")

    def status(self) -> dict[str, Any]:
        snap = self.server.snapshot(detail=True)
        # A page, not a dump: the first sessions only (SHOW SESSIONS lists them all).
        snap["session_list_truncated"] = len(snap["session_list"]) > MAX_SESSIONS_SHOWN
        snap["session_list"] = snap["session_list"][:MAX_SESSIONS_SHOWN]
        snap["uptime_seconds"] = round(max(0.0, time.time() - snap["started_at"]), 1)
        snap["config"] = {k: v for k, v, _ in stats.config_rows(self.server.config)}
        return snap


# -- the HTML page ----------------------------------------------------------------------------

_STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
          "margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}"
          "th{background:#eee}.bad{color:#b00}.good{color:#070}")


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return '<span class="good">yes</span>' if v else '<span class="bad">no</span>'
    return "" if v is None else html.escape(str(v))


def status_page(s: dict[str, Any]) -> str:
    ready = ('<span class="good">ready</span>' if s["ready"]
             else '<span class="bad">not ready: no serving primary known</span>')
    parts = [
        f"<!doctype html><html><head><title>multigateway {html.escape(s['listen'])}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>multigateway {html.escape(s['listen'])}</h1>",
        f"<p>version {html.escape(s['version'])}, pid {s['pid']}, cell "
        f"{html.escape(s['cell'])}, up {s['uptime_seconds']} s; {ready}</p>",
        "<h2>Poolers</h2>",
        _table(["id", "cell", "database/tablegroup/shard", "address", "role", "serving",
                "lag (s)", "topology", "health error"],
               [[p["id"], p["cell"], f"{p['database']}/{p['tablegroup']}/{p['shard']}",
                 p["address"], p["role"], p["serving"], f"{p['lag_seconds']:.3f}",
                 f"{p['topo_role']}, {p['topo_serving_state']}", p["error"]]
                for p in s["poolers"]]),
        "<h2>Sessions</h2>",
        _table(["state", "sessions"],
               [[k, v] for k, v in s["sessions"].items() if v or k == "total"]),
        _table(["user", "database", "target", "pooler", "state", "address"],
               [[r["user"], r["database"], r["target"], r["pooler"], r["state"],
                 f"{r['addr']}:{r['port']}"] for r in s["session_list"]]),
        "<h2>Counters</h2>",
        _table(["counter", "value"],
               [[k, v] for k, v in s["counters"].items()] + [["buffered now", s["buffered"]]]),
        "<h2>Plan cache</h2>",
        _table(["stat", "value"], [[k, v] for k, v in s["plan_cache"].items()])
        if s["plan_cache"] is not None else "<p>no plan cache in this gateway</p>",
        "<h2>Configuration</h2>",
        _table(["setting", "value"], [[k, v] for k, v in s["config"].items()]),
        "</body></html>",
    ]
    return "\n".join(parts)
