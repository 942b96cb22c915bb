"""The admin console: psql to the virtual database ``multigres`` (or ``pgbouncer``).

PgBouncer's commands, with its column names where both have the same thing: SHOW POOLS,
CLIENTS, SERVERS, STATS, STATS_TOTALS, STATS_AVERAGES, CONFIG, DATABASES, LISTS, VERSION,
HELP; PAUSE, RESUME, RELOAD, SHUTDOWN. Simple queries (psql) and the extended protocol
(drivers that prepare everything) both work; anything else (``\\d``'s catalog queries) is a
clean 42601 error naming the commands.

Every command reads or acts through ``server.control``, so with ``--workers N`` the console
of any worker shows and acts on all of them (SHOW CLIENTS/SERVERS have a ``worker`` column).
Commands run as a task while the client's further messages wait, in order.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from multigres.admin.console import (
    AdminError,
    Console,
    Result,
    Rows,
    console_params,
    error_response,
    greeting,
)
from multigres.admin.console import ts as _ts
from multigres.admin.console import us as _us
from multigres.pooler import config as config_mod
from multigres.pooler.control import ControlError
from multigres.pooler.stats import VERSION, merge
from multigres.wire import sqlstate as codes

if TYPE_CHECKING:
    from multigres.pooler.client import Client
    from multigres.pooler.server import PoolerServer

log = logging.getLogger("multigres.pooler")

COMMANDS = (
    "SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW STATS", "SHOW STATS_TOTALS",
    "SHOW STATS_AVERAGES", "SHOW CONFIG", "SHOW DATABASES", "SHOW LISTS", "SHOW VERSION",
    "SHOW HELP", "PAUSE", "RESUME", "RELOAD", "SHUTDOWN",
)

POOLS_COLUMNS = [
    "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle",
    "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode", "pool_size",
    "paused",
]
CLIENTS_COLUMNS = [
    "type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
    "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
    "remote_pid", "tls", "application_name", "prepared_statements", "id", "backend_pid",
    "pinned", "worker",
]
SERVERS_COLUMNS = [
    "type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
    "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
    "remote_pid", "tls", "application_name", "prepared_statements", "tx_status", "worker",
]
TOTALS_COLUMNS = [
    "total_xact_count", "total_query_count", "total_received", "total_sent",
    "total_xact_time", "total_query_time", "total_wait_time",
]
AVERAGES_COLUMNS = [
    "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
    "avg_query_time", "avg_wait_time",
]
DATABASES_COLUMNS = [
    "name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
    "reserve_pool", "server_lifetime", "pool_mode", "max_connections", "current_connections",
    "max_client_connections", "current_client_connections", "paused", "disabled",
]
LISTS_COLUMNS = ["list", "items"]
CONFIG_COLUMNS = ["key", "value", "default", "changeable"]

# SHOW name -> its columns (known before running it: Describe answers from here).
SHOW_COLUMNS: dict[str, list[str]] = {
    "pools": POOLS_COLUMNS,
    "clients": CLIENTS_COLUMNS,
    "servers": SERVERS_COLUMNS,
    "stats": ["database", *TOTALS_COLUMNS, *AVERAGES_COLUMNS],
    "stats_totals": ["database", *TOTALS_COLUMNS],
    "stats_averages": ["database", *AVERAGES_COLUMNS],
    "config": CONFIG_COLUMNS,
    "databases": DATABASES_COLUMNS,
    "lists": LISTS_COLUMNS,
    "version": ["version"],
}
ADMIN_DATABASE = "multigres"


class AdminConsole(Console):
    """One admin session (one per client on the console)."""

    commands = COMMANDS
    show_columns = SHOW_COLUMNS
    client_errors = (AdminError, ControlError)

    def __init__(self, server: PoolerServer) -> None:
        super().__init__()
        self.server = server

    def attach(self, client: Client) -> None:
        from multigres.pooler.client import READY

        client.admin = self
        client.send(greeting(console_params(
            f"15.0 (multipooler {VERSION})", client.params.get("application_name", ""))))
        client.state = READY
        client.flush()

    # -- the protocol's hooks (the rest is multigres.admin.console) ----------------------

    def terminate(self, client: Client) -> None:
        client._terminate()

    def start(self, client: Client, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` while the client's further messages wait in its buffer."""
        from multigres.pooler.client import CLOSED, LOGIN, READY

        client.state = LOGIN  # Client._process stops; data_received only buffers
        client.pause_reading()

        async def run() -> None:
            try:
                await job
            except Exception:
                log.exception("admin console command failed")
                client.send(error_response(codes.INTERNAL_ERROR,
                                           "internal error in the admin console"))
            if client.state == CLOSED:
                return
            client.state = READY
            client.resume_reading()
            client.flush()
            if client.rbuf.buffered():
                client._process()

        self.server.spawn(run())

    # -- commands ------------------------------------------------------------------------

    async def run(self, stmt: str) -> Result:
        words = stmt.lower().split()
        if words[0] == "show" and len(words) == 2:
            what = words[1]
            if what == "help":
                return self.help()
            producer = self._show.get(what)
            if producer is not None:
                return Result("SHOW", SHOW_COLUMNS[what], await producer(self))
        elif len(words) == 1:
            cmd = words[0]
            if cmd == "pause":
                await self.server.control.pause()
                return Result("PAUSE")
            if cmd == "resume":
                await self.server.control.resume()
                return Result("RESUME")
            if cmd == "reload":
                return Result("RELOAD", notices=await self.server.control.reload())
            if cmd == "shutdown":
                os.kill(self.server.main_pid, signal.SIGTERM)
                return Result("SHUTDOWN")
        elif words[0] in ("pause", "resume") and len(words) == 2:
            raise AdminError(codes.FEATURE_NOT_SUPPORTED,
                             f"{words[0].upper()} of one database is not supported",
                             hint=f"{words[0].upper()} without a name acts on every pool")
        raise self.unknown(stmt)

    async def _snapshot(self, detail: bool = False) -> dict[str, Any]:
        return merge(await self.server.control.snapshots(detail))

    async def _pools(self) -> Rows:
        snap = await self._snapshot()
        rows: Rows = []
        for p in sorted(snap["pools"], key=lambda p: (p["database"], p["user"])):
            rows.append([
                p["database"], p["user"], p["cl_active"], p["cl_waiting"], 0, 0,
                p["sv_active"], 0, 0, p["sv_idle"], 0, 0, p["sv_login"],
                int(p["maxwait"]), _us(p["maxwait"]) % 1_000_000, "auto", p["size"],
                p["paused"],
            ])
        return rows

    async def _clients(self) -> Rows:
        snap = await self._snapshot(detail=True)
        return [
            [c["type"], c["user"], c["database"], c["state"], c["addr"], c["port"],
             c["local_addr"], c["local_port"], _ts(c["connect_time"]),
             _ts(c["request_time"] or c["connect_time"]), int(c["wait"]),
             _us(c["wait"]) % 1_000_000, 0, c["id"], c["link"], 0, c["tls"],
             c["application_name"], c["prepared_statements"], c["id"], c["backend_pid"],
             c["pinned"], c["worker"]]
            for c in sorted(snap["client_list"], key=lambda c: (c["worker"], c["id"]))
        ]

    async def _servers(self) -> Rows:
        snap = await self._snapshot(detail=True)
        return [
            [s["type"], s["user"], s["database"], s["state"], s["addr"], s["port"],
             s["local_addr"], s["local_port"], _ts(s["connect_time"]), _ts(s["request_time"]),
             0, 0, 0, s["remote_pid"], s["link"], s["remote_pid"], s["tls"],
             s["application_name"], s["prepared_statements"], s["tx_status"], s["worker"]]
            for s in sorted(snap["server_list"], key=lambda s: (s["worker"], s["remote_pid"]))
        ]

    async def _per_database(self) -> dict[str, dict[str, Any]]:
        snap = await self._snapshot()
        dbs: dict[str, dict[str, Any]] = {}
        for p in snap["pools"]:
            d = dbs.setdefault(p["database"], {"period": {}, "period_seconds": 0.0})
            for f in ("transactions", "queries", "received", "sent", "xact_time", "query_time",
                      "total_wait_time"):
                d[f] = d.get(f, 0) + p[f]
            for f, v in p["period"].items():
                d["period"][f] = d["period"].get(f, 0) + v
            d["period_seconds"] = max(d["period_seconds"], p["period_seconds"])
        return dict(sorted(dbs.items()))

    @staticmethod
    def _totals(d: dict[str, Any]) -> list[object]:
        return [d["transactions"], d["queries"], d["received"], d["sent"],
                _us(d["xact_time"]), _us(d["query_time"]), _us(d["total_wait_time"])]

    @staticmethod
    def _averages(d: dict[str, Any]) -> list[object]:
        p, secs = d["period"], d["period_seconds"]
        if secs <= 0:
            return [0] * len(AVERAGES_COLUMNS)
        xacts, queries, waits = p["transactions"], p["queries"], p["total_waits"]
        return [
            int(xacts / secs), int(queries / secs), int(p["received"] / secs),
            int(p["sent"] / secs),
            _us(p["xact_time"] / xacts) if xacts else 0,
            _us(p["query_time"] / queries) if queries else 0,
            _us(p["total_wait_time"] / waits) if waits else 0,
        ]

    async def _stats(self) -> Rows:
        return [[db, *self._totals(d), *self._averages(d)]
                for db, d in (await self._per_database()).items()]

    async def _stats_totals(self) -> Rows:
        return [[db, *self._totals(d)] for db, d in (await self._per_database()).items()]

    async def _stats_averages(self) -> Rows:
        return [[db, *self._averages(d)] for db, d in (await self._per_database()).items()]

    async def _config(self) -> Rows:
        return [list(r) for r in config_mod.show(self.server.config)]

    async def _databases(self) -> Rows:
        cfg = self.server.config
        snap = await self._snapshot()
        dbs: dict[str, dict[str, Any]] = {}
        for p in snap["pools"]:
            d = dbs.setdefault(p["database"], {"servers": 0, "clients": 0, "paused": False})
            d["servers"] += p["sv_active"] + p["sv_idle"] + p["sv_login"]
            d["clients"] += p["cl_active"] + p["cl_waiting"]
            d["paused"] = d["paused"] or p["paused"]
        rows: Rows = [[ADMIN_DATABASE, None, cfg.listen_port, ADMIN_DATABASE, "", 2, 0, 0, 0,
                       "statement", 0, 0, 0, snap["clients"].get("admin", 0), False, False]]
        for name, d in sorted(dbs.items()):
            rows.append([name, cfg.pg_host, cfg.pg_port, name, "", cfg.pool_size, 0, 0,
                         int(cfg.server_lifetime), "auto", 0, d["servers"], 0, d["clients"],
                         d["paused"], False])
        return rows

    async def _lists(self) -> Rows:
        snap = await self._snapshot()
        pools = snap["pools"]
        cl = snap["clients"]
        return [
            ["databases", len({p["database"] for p in pools})],
            ["users", len({p["user"] for p in pools})],
            ["pools", len(pools)],
            ["used_clients", cl.get("active", 0) + cl.get("idle", 0) + cl.get("waiting", 0)],
            ["login_clients", cl.get("login", 0)],
            ["admin_clients", cl.get("admin", 0)],
            ["used_servers", sum(p["sv_active"] for p in pools)],
            ["free_servers", sum(p["sv_idle"] for p in pools)],
            ["login_servers", sum(p["sv_login"] for p in pools)],
            ["workers", snap["workers"]],
        ]

    async def _version(self) -> Rows:
        return [[f"multipooler {VERSION}"]]

    _show: dict[str, Callable[[AdminConsole], Any]] = {
        "pools": _pools, "clients": _clients, "servers": _servers, "stats": _stats,
        "stats_totals": _stats_totals, "stats_averages": _stats_averages, "config": _config,
        "databases": _databases, "lists": _lists, "version": _version,
    }
