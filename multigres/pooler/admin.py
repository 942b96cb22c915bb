"""The admin console: psql to the virtual database ``multigres`` (or ``pgbouncer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multigres._cy.buffer import ReadBuffer
from multigres.pooler import msgs
from multigres.wire import sqlstate as codes

if TYPE_CHECKING:
    from multigres.pooler.client import Client
    from multigres.pooler.server import PoolerServer


class AdminConsole:
    def __init__(self, server: PoolerServer) -> None:
        self.server = server

    def attach(self, client: Client) -> None:
        from multigres.pooler.client import READY

        client.admin = self
        client.send(msgs.AUTH_OK)
        for name, value in (("server_version", "15.0 (multipooler)"), ("client_encoding", "UTF8"),
                            ("server_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                            ("integer_datetimes", "on"), ("standard_conforming_strings", "on")):
            client.send(msgs.parameter_status(name, value))
        client.send(msgs.backend_key_data(0, 0))
        client.send(msgs.RFQ_IDLE)
        client.state = READY
        client.flush()

    def handle(self, client: Client, t: int, rb: ReadBuffer) -> None:
        if t == ord("X"):
            client._terminate()
            return
        if t != ord("Q"):
            rb.discard_message()
            client.send(msgs.error_response(codes.FEATURE_NOT_SUPPORTED,
                                            "the admin console takes simple queries only"))
            if t == ord("S"):
                client.send(msgs.RFQ_IDLE)
            client.flush()
            return
        sql = rb.read_cstr().decode("utf-8", "replace").strip().rstrip(";").strip()
        self.run(client, sql)
        client.send(msgs.RFQ_IDLE)
        client.flush()

    def run(self, client: Client, sql: str) -> None:
        words = sql.lower().split()
        if not words:
            client.send(msgs.build_empty_query())
            return
        cmd = " ".join(words[:2])
        if cmd == "show pools":
            cols = ["database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle",
                    "sv_used", "sv_login", "maxwait", "pool_mode"]
            rows = []
            for pool in self.server.pools.values():
                rows.append([pool.database, pool.user, len(pool.active), len(pool.waiters),
                             len(pool.active), len(pool.idle), 0, pool.connecting,
                             int(pool.max_wait), "auto"])
            self._rows(client, cols, rows, "SHOW")
        elif cmd == "pause":
            self.server.pause()
            client.send(msgs.command_complete("PAUSE"))
        elif cmd == "resume":
            self.server.resume()
            client.send(msgs.command_complete("RESUME"))
        else:
            client.send(msgs.error_response(
                codes.SYNTAX_ERROR, f"unknown admin command: {sql!r}",
                hint="try SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CONFIG, "
                "PAUSE, RESUME, RELOAD"))

    def _rows(self, client: Client, cols: list[str], rows: list[list[object]], tag: str) -> None:
        client.send(msgs.row_description(cols))
        for r in rows:
            client.send(msgs.data_row(r))
        client.send(msgs.command_complete(tag))
