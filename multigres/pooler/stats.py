"""A snapshot of one pooler process: its pools, clients, servers and counters, as plain JSON.

The admin console, ``/metrics`` and the gRPC Status all read snapshots, never the live
objects directly. With ``--workers N`` every worker takes its own and the parent merges
them (``merge``), so the three views work the same with one process or many.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from multigres.pooler.client import AUTH, LOGIN, STARTUP
from multigres.pooler.meters import PoolTotals

if TYPE_CHECKING:
    from multigres.pooler.server import PoolerServer

VERSION = "0.1.0"

_SUMMED_POOL_FIELDS = (
    "size", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login", "total_waits",
    "total_wait_time", "connect_errors", "queries", "transactions", "received", "sent",
    "xact_time", "query_time",
)
PERIOD_FIELDS = (
    "transactions", "queries", "received", "sent", "xact_time", "query_time", "total_wait_time",
    "total_waits",
)


def _wall(mono: float, now_wall: float, now_mono: float) -> float:
    return now_wall - (now_mono - mono)


def _wait_starts(server: PoolerServer) -> dict[int, float]:
    """id(waiting client) -> when it started waiting (time.monotonic())."""
    out: dict[int, float] = {}
    for pool in server.pools.values():
        for waiter, started in pool.waiters:
            out[id(waiter)] = started
    return out


def pool_totals(server: PoolerServer) -> dict[tuple[str, str], PoolTotals]:
    """Totals per (user, database): the folded ones plus the live clients and servers."""
    from multigres.pooler.server import client_totals

    server.fold_backends()
    out: dict[tuple[str, str], PoolTotals] = {}
    for key, t in server.totals.items():
        out[key] = PoolTotals()
        out[key].add(t)
    for c in server.clients.values():
        if c.pool is not None:
            out.setdefault(c.pool.key, PoolTotals()).add(client_totals(c))
    for b in server.backends:
        out.setdefault(b.pool.key, PoolTotals()).sent += b.bytes_in
    return out


class PeriodStats:
    """SHOW STATS's averages: the change of the totals over the last full period."""

    def __init__(self) -> None:
        self.mark: dict[tuple[str, str], dict[str, float]] = {}
        self.mark_time = time.monotonic()
        self.last: dict[tuple[str, str], dict[str, float]] = {}
        self.last_seconds = 0.0

    def tick(self, server: PoolerServer, period: float) -> None:
        now = time.monotonic()
        if now - self.mark_time < period:
            return
        current = {k: _period_values(server, k, t) for k, t in pool_totals(server).items()}
        self.last = {
            k: {f: v[f] - self.mark.get(k, {}).get(f, 0.0) for f in PERIOD_FIELDS}
            for k, v in current.items()
        }
        self.last_seconds = now - self.mark_time
        self.mark, self.mark_time = current, now


def _period_values(server: PoolerServer, key: tuple[str, str], t: PoolTotals) -> dict[str, float]:
    values: dict[str, float] = dict(t.to_dict())
    pool = server.pools.get(key)
    values["total_wait_time"] = pool.total_wait_time if pool is not None else 0.0
    values["total_waits"] = pool.total_waits if pool is not None else 0
    return values


def process_snapshot(server: PoolerServer, detail: bool = False) -> dict[str, Any]:
    """This process's state. ``detail`` adds one row per client and per server connection
    (SHOW CLIENTS / SERVERS); without it the cost follows the number of pools and clients
    only through one pass of counting."""
    now_wall, now_mono = time.time(), time.monotonic()
    loop_now = _loop_time()
    waits = _wait_starts(server)
    clients = {"active": 0, "waiting": 0, "idle": 0, "login": 0, "admin": 0}
    per_pool: dict[tuple[str, str], dict[str, int]] = {}
    client_rows: list[dict[str, Any]] = []
    for c in server.clients.values():
        state = _client_state(c)
        clients[state] += 1
        if c.pool is not None and state in ("active", "waiting", "idle"):
            counts = per_pool.setdefault(c.pool.key, {"cl_active": 0, "cl_waiting": 0})
            counts["cl_waiting" if state == "waiting" else "cl_active"] += 1
        if detail:
            client_rows.append(_client_row(server, c, state, waits, loop_now))
    totals = pool_totals(server)
    period = server.period
    pools = []
    server_rows: list[dict[str, Any]] = []
    for key, pool in server.pools.items():
        t = totals.get(key, PoolTotals())
        oldest = min((waits.get(id(w), loop_now) for w, _ in pool.waiters), default=loop_now)
        last = period.last.get(key, {})
        busy = sum(1 for b in pool.active if not b.is_idle())
        pools.append({
            "user": pool.user, "database": pool.database, "size": pool.size,
            "paused": pool.paused,
            **per_pool.get(key, {"cl_active": 0, "cl_waiting": 0}),
            "sv_active": len(pool.active), "sv_busy": busy, "sv_idle": len(pool.idle),
            "sv_login": pool.connecting, "maxwait": max(0.0, loop_now - oldest),
            "total_waits": pool.total_waits, "total_wait_time": pool.total_wait_time,
            "connect_errors": pool.connect_errors,
            **t.to_dict(),
            "period": {f: last.get(f, 0.0) for f in PERIOD_FIELDS},
            "period_seconds": period.last_seconds,
        })
        if detail:
            for b in list(pool.active) + list(pool.idle):
                server_rows.append(_server_row(server, b, b in pool.active, now_wall, now_mono))
    return {
        "worker": server.worker,
        "workers": server.workers,
        "pid": os.getpid(),
        "version": VERSION,
        "started_at": server.started_at,
        "paused": server.paused,
        "listen": server.config.listen,
        "clients": clients,
        "counters": {
            "clients_accepted": server.stats.clients_accepted,
            "carriers_accepted": server.stats.carriers_accepted,
            "auth_failures": server.stats.auth_failures,
            "cancels": server.stats.cancels,
            "cancels_forwarded": server.meters.cancels_forwarded,
        },
        "errors": dict(server.meters.errors),
        "histograms": server.meters.histograms(),
        "pools": pools,
        "client_list": client_rows,
        "server_list": server_rows,
    }


def _loop_time() -> float:
    # The clock of the pool's wait starts (poolcore.PoolCore._enqueue_c).
    return time.monotonic()


def _client_state(c: Any) -> str:
    if c.admin is not None:
        return "admin"
    if c.waiting:  # for its first server connection too, while logging in
        return "waiting"
    if c.state in (STARTUP, AUTH, LOGIN):
        return "login"
    if c.backend is not None:
        return "active"
    return "idle"


def _peer(transport: Any, which: str) -> tuple[str, int]:
    if transport is None:
        return ("", 0)
    addr = transport.get_extra_info(which)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return ("unix", 0)


def _client_row(
    server: PoolerServer, c: Any, state: str, waits: dict[int, float], loop_now: float
) -> dict[str, Any]:
    addr, port = _peer(c.transport, "peername")
    laddr, lport = _peer(c.transport, "sockname")
    wait = loop_now - waits[id(c)] if id(c) in waits else 0.0
    backend = c.backend
    return {
        "type": "C", "user": c.user, "database": c.database, "state": state,
        "addr": addr, "port": port, "local_addr": laddr, "local_port": lport,
        "connect_time": server.connect_times.get(c.id, 0.0),
        "request_time": getattr(c, "request_time", None),
        "wait": wait,
        "id": c.id, "link": backend.pid if backend is not None else None,
        "backend_pid": c.virtual_pid,
        "tls": bool(getattr(c, "tls", False)),
        "application_name": c.params.get("application_name", ""),
        "prepared_statements": len(c.statements),
        "pinned": ", ".join(c.session.pin_reasons()),
        "worker": server.worker,
    }


def _server_row(
    server: PoolerServer, b: Any, active: bool, now_wall: float, now_mono: float
) -> dict[str, Any]:
    laddr, lport = _peer(b.transport, "sockname")
    client = b.client
    if not active:
        state = "idle"
    elif b.is_idle():
        state = "used" if client is None else "active"
    else:
        state = "active"
    return {
        "type": "S", "user": b.pool.user, "database": b.pool.database, "state": state,
        "addr": server.config.pg_host, "port": server.config.pg_port,
        "local_addr": laddr, "local_port": lport,
        "connect_time": _wall(b.created_at, now_wall, now_mono),
        "request_time": _wall(b.last_used, now_wall, now_mono),
        "link": client.id if client is not None else None,
        "remote_pid": b.pid,
        "tx_status": chr(b.tx_status),
        "tls": bool(getattr(b, "tls", False)),
        "application_name": b.params.get("application_name", ""),
        "prepared_statements": len(b.prepared),
        "worker": server.worker,
    }


def merge(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of several workers: counts summed, pools summed per (user, database),
    client and server rows concatenated."""
    if len(snaps) == 1:
        return snaps[0]
    out: dict[str, Any] = {
        "worker": -1,
        "workers": len(snaps),
        "pid": os.getpid(),
        "version": VERSION,
        "started_at": min(s["started_at"] for s in snaps),
        "paused": any(s["paused"] for s in snaps),
        "listen": snaps[0]["listen"],
        "clients": {}, "counters": {}, "errors": {}, "histograms": {},
        "pools": [], "client_list": [], "server_list": [],
    }
    pools: dict[tuple[str, str], dict[str, Any]] = {}
    for s in snaps:
        for name in ("clients", "counters", "errors"):
            for k, v in s[name].items():
                out[name][k] = out[name].get(k, 0) + v
        for name, h in s["histograms"].items():
            mine = out["histograms"].get(name)
            if mine is None:
                out["histograms"][name] = {
                    "bounds": h["bounds"], "counts": list(h["counts"]), "sum": h["sum"]}
            else:
                mine["counts"] = [a + b for a, b in zip(mine["counts"], h["counts"], strict=True)]
                mine["sum"] += h["sum"]
        for p in s["pools"]:
            key = (p["user"], p["database"])
            have = pools.get(key)
            if have is None:
                pools[key] = {**p, "period": dict(p["period"])}
                continue
            for f in _SUMMED_POOL_FIELDS:
                have[f] += p[f]
            have["sv_busy"] += p["sv_busy"]
            have["maxwait"] = max(have["maxwait"], p["maxwait"])
            have["paused"] = have["paused"] or p["paused"]
            for f in PERIOD_FIELDS:
                have["period"][f] += p["period"][f]
            have["period_seconds"] = max(have["period_seconds"], p["period_seconds"])
        out["client_list"].extend(s["client_list"])
        out["server_list"].extend(s["server_list"])
    out["pools"] = list(pools.values())
    return out
