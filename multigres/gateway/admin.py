"""The gateway's admin console: psql to the virtual database ``multigres`` (or ``pgbouncer``).

SHOW POOLERS (what discovery sees: role, serving, lag, health error), SHOW SESSIONS (alias
SHOW CLIENTS), SHOW STATS, SHOW CONFIG, SHOW VERSION, SHOW HELP. The protocol (simple and
extended, errors, 42601 for anything else) is ``multigres.admin.console``, shared with the
pooler's console.

A session logs in as usual (SCRAM against Postgres's users); once authenticated, a user in
``admin_users`` gets the console: it becomes the protocol of the session's transport and reads
from the session's buffer, so nothing of the data path runs for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from multigres._cy.buffer import ProtocolError
from multigres._cy.gatecore import CLOSED, READY
from multigres.admin.console import (
    AdminError,
    Console,
    Result,
    Rows,
    console_params,
    error_response,
    greeting,
)
from multigres.gateway import stats
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

if TYPE_CHECKING:
    from multigres.gateway.session import Session

log = logging.getLogger("multigres.gateway")

COMMANDS = ("SHOW POOLERS", "SHOW SESSIONS", "SHOW CLIENTS", "SHOW STATS", "SHOW CONFIG",
            "SHOW VERSION", "SHOW HELP")

POOLERS_COLUMNS = ["id", "cell", "database", "tablegroup", "shard", "address", "role",
                   "serving", "lag_seconds", "lag_bytes", "topo_role", "topo_serving_state",
                   "health_age", "health_error"]
SESSIONS_COLUMNS = ["user", "database", "target", "pooler", "tx_status", "state", "addr",
                    "port", "tls", "application_name", "pid", "pinned"]
SHOW_COLUMNS: dict[str, list[str]] = {
    "poolers": POOLERS_COLUMNS,
    "sessions": SESSIONS_COLUMNS,
    "clients": SESSIONS_COLUMNS,
    "stats": ["stat", "value"],
    "config": ["key", "value", "default"],
    "version": ["version"],
}


def start_console(session: Session) -> None:
    """Hand an authenticated session on an admin database to the console (or refuse it)."""
    server = session.server
    if session.user not in server.config.admin_users:
        session.fatal(PgError(f"user {session.user!r} may not use the admin console",
                              codes.INVALID_AUTHORIZATION_SPECIFICATION,
                              hint="add the user to admin_users in the gateway's settings"))
        return
    transport = session.transport
    if transport is None or session.state == CLOSED:
        return
    console = AdminConsole(session)
    session.key = server.register_key(session, 0)
    session.state = READY  # session.busy stays set: the session's own dispatcher never runs
    transport.set_protocol(console)
    session.send(greeting(console_params(f"15.0 (multigateway {stats.VERSION})",
                                         session.params.get("application_name", "")),
                          *session.key))
    console.process()  # what the client sent meanwhile


class AdminConsole(Console, asyncio.Protocol):
    """One console session; the protocol of its transport from login on."""

    commands = COMMANDS
    show_columns = SHOW_COLUMNS
    client_errors = (AdminError,)

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.server = session.server
        self.out: list[bytes] = []
        self.running = False  # a command runs: further messages wait in the buffer

    # -- where answers go (the console's Client) -----------------------------------------

    def send(self, data: bytes) -> None:
        self.out.append(data)

    def flush(self) -> None:
        # One write per batch of answers (each write is a syscall).
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.session.send(data)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.session.rbuf.feed_data(data)
        self.process()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)

    def process(self) -> None:
        rb = self.session.rbuf
        try:
            while not self.running and self.session.state != CLOSED and rb.take_message():
                self.handle(self, rb.get_message_type(), rb)
        except ProtocolError as e:
            self.flush()
            self.session.fatal(PgError(str(e), codes.PROTOCOL_VIOLATION))
            return
        self.flush()

    # -- the protocol's hooks ------------------------------------------------------------

    def terminate(self, client: Any) -> None:
        self.flush()
        self.session.close()

    def start(self, client: Any, job: Coroutine[Any, Any, None]) -> None:
        self.running = True
        transport = self.session.transport
        if transport is not None:
            transport.pause_reading()

        async def run() -> None:
            try:
                await job
            except Exception:
                log.exception("admin console command failed")
                self.send(error_response(codes.INTERNAL_ERROR,
                                         "internal error in the admin console"))
            self.running = False
            if self.session.state == CLOSED:
                return
            if self.session.transport is not None:
                self.session.transport.resume_reading()
            self.process()

        self.server.spawn(run())

    # -- commands ------------------------------------------------------------------------

    async def run(self, stmt: str) -> Result:
        words = stmt.lower().split()
        if len(words) == 2 and words[0] == "show":
            if words[1] == "help":
                return self.help()
            producer = self._show.get(words[1])
            if producer is not None:
                return Result("SHOW", SHOW_COLUMNS[words[1]], producer(self))
        raise self.unknown(stmt)

    def _poolers(self) -> Rows:
        return [[p["id"], p["cell"], p["database"], p["tablegroup"], p["shard"], p["address"],
                 p["role"], p["serving"], f"{p['lag_seconds']:.3f}", p["lag_bytes"],
                 p["topo_role"], p["topo_serving_state"], p["health_age"], p["error"]]
                for p in self.server.snapshot()["poolers"]]

    def _sessions(self) -> Rows:
        rows = self.server.snapshot(detail=True)["session_list"]
        return [[s[c] for c in SESSIONS_COLUMNS] for s in rows]

    def _stats(self) -> Rows:
        snap = self.server.snapshot()
        rows: Rows = [["sessions_now", snap["sessions"]["total"]]]
        rows += [[k, v] for k, v in snap["counters"].items()]
        rows.append(["buffered_now", snap["buffered"]])
        cache = snap["plan_cache"]
        if cache is not None:
            rows += [[f"plan_cache_{k}", v] for k, v in cache.items()]
        return rows

    def _config(self) -> Rows:
        return [list(r) for r in stats.config_rows(self.server.config)]

    def _version(self) -> Rows:
        return [[f"multigateway {stats.VERSION}"]]

    _show: dict[str, Callable[[AdminConsole], Rows]] = {
        "poolers": _poolers, "sessions": _sessions, "clients": _sessions, "stats": _stats,
        "config": _config, "version": _version,
    }
