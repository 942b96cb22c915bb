"""A snapshot of the gateway: its sessions, the poolers it sees, counters, plan cache, as
plain JSON.

The admin console, ``/metrics`` and ``/debug/status`` all read a snapshot taken when asked,
never the live objects: the data path only bumps plain counters (``server.stats``), and the
cost of looking is paid by whoever looks (one pass over the sessions and the poolers).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multigres._cy.gatecore import AUTH, CLOSED, CONNECTING, READY, STARTUP
from multigres.admin.console import ADMIN_DATABASES
from multigres.gateway.config import GatewayConfig

if TYPE_CHECKING:
    from multigres.gateway.discovery import PoolerState
    from multigres.gateway.server import GatewayServer
    from multigres.gateway.session import Session

VERSION = "0.1.0"

# Counters the session and server bump (server.stats); shown as 0 until they happen.
COUNTERS = ("sessions", "auth_failures", "moves", "retries", "pooler_lost", "cancels")
SESSION_STATES = ("login", "connecting", "active", "idle", "idle in transaction",
                  "idle in transaction (aborted)", "moving", "admin")


def snapshot(server: GatewayServer, detail: bool = False) -> dict[str, Any]:
    """The gateway's state; ``detail`` adds one row per session (SHOW SESSIONS)."""
    states = dict.fromkeys(SESSION_STATES, 0)
    rows = []
    for s in list(server.sessions):
        state = session_state(s)
        if state is None:
            continue
        states[state] += 1
        if detail:
            rows.append(_session_row(s, state))
    counters = {k: server.stats.get(k, 0) for k in COUNTERS}
    # Kept by the sessions' C path (gatecore.GateCounters), not in the stats dict.
    counters["statements"] = server.discovery.counters.statements
    counters["direct_statements"] = server.discovery.counters.direct
    poolers = [pooler_row(st) for st in server.discovery.poolers.values()]
    poolers.sort(key=lambda p: (p["database"], p["tablegroup"], p["shard"], p["cell"], p["id"]))
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "started_at": getattr(server, "started_at", 0.0),
        "listen": server.config.listen,
        "cell": server.config.cell,
        "ready": is_ready(server),
        "sessions": {"total": sum(states.values()), **states},
        "buffered": server.buffered,
        "carriers": len(getattr(server, "carriers", None) or ()),
        "counters": counters,
        "poolers": poolers,
        "plan_cache": plan_cache_stats(server),
        "session_list": rows,
    }


def is_ready(server: GatewayServer) -> bool:
    """Ready when discovery knows at least one serving primary."""
    return any(st.serving and st.role == "primary" for st in server.discovery.poolers.values())


def session_state(s: Session) -> str | None:
    """What a session is doing, in Postgres's words where they fit (None: gone)."""
    st = s.state
    if st == CLOSED:
        return None
    if st in (STARTUP, AUTH):
        return "login"
    if st == CONNECTING:
        return "connecting"
    if st != READY:
        return "login"
    if s.database in ADMIN_DATABASES:
        return "admin"
    if s.busy:
        return "moving"  # waiting for (or logging in to) another pooler
    if s.in_flight:
        return "active"
    if s.failed_tx:
        return "idle in transaction (aborted)"
    tx = s.tx_status
    if tx == ord("T"):
        return "idle in transaction"
    if tx == ord("E"):
        return "idle in transaction (aborted)"
    return "idle"


def _session_row(s: Session, state: str) -> dict[str, Any]:
    addr, port = "", 0
    transport = s.transport
    if transport is not None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            addr, port = str(peer[0]), int(peer[1])
    up = s.upstream
    return {
        "user": s.user,
        "database": s.database,
        "target": s.target,
        "pooler": up.pooler_id if up is not None else "",
        "tx_status": chr(s.tx_status),
        "state": state,
        "addr": addr,
        "port": port,
        "tls": s.tls,
        "application_name": s.params.get("application_name", ""),
        "pid": s.key[0],
        "pinned": s.pinned,
    }


def pooler_row(st: PoolerState) -> dict[str, Any]:
    r = st.record
    h = st.health
    if h is None:
        error = st.stream_error or "no health message yet"
    elif not h.pg_reachable:
        error = h.error or "Postgres unreachable"
    else:
        error = h.error or ""
    return {
        "id": r.id, "cell": r.cell, "database": r.database, "tablegroup": r.tablegroup,
        "shard": r.shard, "address": f"{r.host}:{r.port}", "role": st.role,
        "topo_role": str(r.role), "topo_serving_state": str(r.serving_state),
        "serving": st.serving,
        "lag_seconds": st.lag_seconds,
        "lag_bytes": int(h.replication_lag_bytes) if h is not None else 0,
        "health_age": round(time.monotonic() - st.health_at, 3) if h is not None else None,
        "error": error,
    }


def plan_cache_stats(server: GatewayServer) -> dict[str, int] | None:
    """The plan cache's counters (``PlanCache.stats()``), summed over the caches if the
    gateway keeps one per database; None while the gateway has none."""
    # (not ``a or b``: an empty PlanCache is falsy, having a length)
    cache: Any = getattr(server, "plan_cache", None)
    if cache is None:
        cache = getattr(server, "plan_caches", None)
    if cache is None:
        return None
    caches = list(cache.values()) if isinstance(cache, Mapping) else [cache]
    out: dict[str, int] = {}
    for c in caches:
        for k, v in c.stats().items():
            out[k] = out.get(k, 0) + int(v)
    return out or {"hits": 0, "misses": 0, "size": 0}


def config_rows(cfg: GatewayConfig) -> list[tuple[str, str, str]]:
    """SHOW CONFIG: (key, value, default) per setting (none of them is a secret)."""
    default = GatewayConfig()
    rows = []
    for f in dataclasses.fields(GatewayConfig):
        if f.name == "argv":
            continue
        rows.append((f.name, _text(getattr(cfg, f.name)), _text(getattr(default, f.name))))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
