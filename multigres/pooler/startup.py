"""The startup phase of a client connection: SSLRequest, GSSENCRequest, CancelRequest,
StartupMessage, then authentication, then login.

Runs in the client protocol's ``data_received`` (synchronously); the two steps that need I/O
(the TLS handshake, looking up a user's credential with the auth query) run as tasks while
the client's reading is paused.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from multigres._cy.buffer import ProtocolError
from multigres._cy.mux import MUX_ACCEPT, MUX_DECLINE, MUX_REQUEST_CODE, MuxCarrier
from multigres._cy.relay import Conn
from multigres.pooler import msgs
from multigres.pooler.client import ADMIN_DATABASES, AUTH, CLOSED, STARTUP, Client
from multigres.pooler.errors import PoolerError
from multigres.wire import sqlstate as codes
from multigres.wire.auth import (
    AuthExchange,
    AuthMethod,
    AuthRequest,
    Credential,
    ScramPassThrough,
)
from multigres.wire.auth_errors import AuthFailed
from multigres.wire.tlsaccept import answer_ssl_request, start_server_tls

log = logging.getLogger("multigres.pooler")

if TYPE_CHECKING:
    from multigres.pooler.server import PoolerServer

_P = ord("p")


class StartupHandler:
    def __init__(self, server: PoolerServer) -> None:
        self.server = server

    def handle(self, client: Client) -> None:
        rb = client.rbuf
        while client.state == STARTUP:
            if getattr(client, "_busy", False):
                return
            if not rb.take_startup_message():
                return
            code = rb.read_int32()
            if code == msgs.SSL_REQUEST_CODE:
                self._ssl_request(client)
            elif code == msgs.GSSENC_REQUEST_CODE:
                # No GSSAPI encryption here: 'N' tells the client to go on without it.
                client.transport.write(b"N")  # type: ignore[union-attr]
            elif code == MUX_REQUEST_CODE:
                self._mux_request(client)
                return
            elif code == msgs.CANCEL_REQUEST_CODE:
                pid, key = rb.read_int32(), rb.read_int32()
                self.server.cancel(pid, key)
                client.state = CLOSED
                client.transport.close()  # type: ignore[union-attr]
                return
            elif code >> 16 == 3:
                params = msgs.parse_startup_params(rb.consume_message())
                self._startup(client, code & 0xFFFF, params)
            else:
                raise PoolerError(
                    codes.FEATURE_NOT_SUPPORTED,
                    f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server "
                    "supports 3.0",
                )
        while client.state == AUTH and not getattr(client, "_busy", False):
            if not rb.take_message():
                return
            if rb.get_message_type() != _P:
                raise PoolerError(
                    codes.PROTOCOL_VIOLATION,
                    f"expected a password message, got message type {chr(rb.get_message_type())!r}",
                )
            self._auth_step(client, rb.consume_message())

    # -- a gateway's carrier ----------------------------------------------------------------

    def _mux_request(self, client: Client) -> None:
        """A gateway asks to carry many sessions on this connection (pyx/mux.pyx). Declined
        by a pooler of several workers: every session on the carrier would land on the one
        worker that accepted it."""
        conn = client.transport
        if self.server.workers > 1 or not isinstance(conn, Conn):
            conn.write(MUX_DECLINE)  # type: ignore[union-attr]
            return
        conn.write(MUX_ACCEPT)
        # The connection is the carrier's now: the Client that read the request goes away
        # without a trace (it never logged in), and what followed the request is frames.
        rest = client.rbuf.take_run() if client.rbuf.buffered() else b""
        client.state = CLOSED
        client.transport = None
        self.server.clients.pop(client.id, None)
        self.server.connect_times.pop(client.id, None)
        self.server.stats.carriers_accepted += 1
        carrier = MuxCarrier.server(self.server.local_client)
        conn.protocol = carrier
        carrier.connection_made(conn)
        if rest:
            carrier.data_received(rest)

    # -- TLS --------------------------------------------------------------------------------

    def _ssl_request(self, client: Client) -> None:
        assert client.transport is not None
        ctx = self.server.tls_context
        if ctx is None:
            client.transport.write(b"N")
            return
        if client.rbuf.buffered():
            # Bytes after SSLRequest and before the handshake could be injected by a man in
            # the middle (CVE-2021-23214): refuse them.
            raise PoolerError(codes.PROTOCOL_VIOLATION,
                              "received unencrypted data after SSL request")
        fd = answer_ssl_request(client.transport)
        client._busy = True  # type: ignore[attr-defined]

        async def handshake() -> None:
            assert client.transport is not None
            try:
                new = await start_server_tls(fd, client.transport, client, ctx)
            except (OSError, ConnectionError, RuntimeError):
                if fd >= 0:
                    # The socket left the relay: no transport will report the loss.
                    client.connection_lost(None)
                else:
                    client.transport.close()
                client.state = CLOSED
                return
            if new is None:
                client.state = CLOSED
                return
            client.transport = new
            client._busy = False  # type: ignore[attr-defined]
            client.tls = True  # type: ignore[attr-defined]
            self._go_on(client)

        self.server.spawn(handshake())

    # -- StartupMessage -----------------------------------------------------------------------

    def _startup(self, client: Client, minor: int, params: dict[str, str]) -> None:
        assert client.transport is not None
        unknown = sorted(k for k in params if k.startswith("_pq_."))
        if minor > 0 or unknown:
            # We speak 3.0: tell the client so, and which protocol options we ignore.
            body = struct.pack("!ii", 0, len(unknown)) + b"".join(
                k.encode() + b"\x00" for k in unknown)
            client.transport.write(b"v" + struct.pack("!i", len(body) + 4) + body)
            for k in unknown:
                del params[k]
        user = params.get("user")
        if not user:
            raise PoolerError(codes.INVALID_AUTHORIZATION_SPECIFICATION,
                              "no PostgreSQL user name specified in startup packet")
        database = params.get("database") or user
        if params.get("replication", "false").lower() not in ("false", "0", "off", "no"):
            raise PoolerError(codes.FEATURE_NOT_SUPPORTED,
                              "replication connections are not supported by the pooler",
                              hint="connect to Postgres directly for replication")
        server = self.server
        if len(server.clients) > server.config.max_client_conn:
            raise PoolerError(
                codes.TOO_MANY_CONNECTIONS,
                f"sorry, too many clients already (max_client_conn = "
                f"{server.config.max_client_conn})",
            )
        client.user, client.database, client.params = user, database, params
        client.state = AUTH
        method = AuthMethod.parse(server.config.auth)
        if database in ADMIN_DATABASES and method is AuthMethod.TRUST:
            method = AuthMethod.TRUST
        if method is AuthMethod.TRUST:
            self._begin_auth(client, method, user, None)
            return
        known, cred = server.credentials.cached(user)
        if known:
            self._begin_auth(client, method, user, cred)
            return
        client._busy = True  # type: ignore[attr-defined]

        async def lookup() -> None:
            try:
                cred = await server.credentials.lookup(user)
            except PoolerError as e:
                client.fatal(e)
                return
            except Exception as e:
                # A stored secret the pooler cannot read, or a bug: the client hears of it
                # (rather than wait forever), and the log has the traceback.
                log.exception("looking up user %r failed", user)
                client.fatal(PoolerError(codes.INTERNAL_ERROR,
                                         f"cannot look up user {user!r}: {e}"))
                return
            client._busy = False  # type: ignore[attr-defined]
            if client.state == CLOSED:
                return
            self._begin_auth(client, method, user, cred)
            self._go_on(client)

        server.spawn(lookup())

    def _begin_auth(self, client: Client, method: AuthMethod, user: str,
                    cred: Credential | None) -> None:
        cbind = self.server.cbind_data if getattr(client, "tls", False) else None
        client._auth = AuthExchange(method, user, cred, cbind_data=cbind)
        try:
            self._send_requests(client, client._auth.start())
        except (AuthFailed, PoolerError) as e:
            self._auth_failed(client, e)

    def _go_on(self, client: Client) -> None:
        """Handle what the client sent while the pooler waited (in a task, not in
        data_received, so its errors are caught here)."""
        try:
            self.handle(client)
        except ProtocolError as e:
            client.fatal(PoolerError(codes.PROTOCOL_VIOLATION, str(e)))
        except PoolerError as e:
            client.fatal(e)

    def _auth_step(self, client: Client, payload: bytes) -> None:
        try:
            self._send_requests(client, client._auth.feed(payload))
        except AuthFailed as e:
            self._auth_failed(client, e)

    def _send_requests(self, client: Client, requests: list[AuthRequest]) -> None:
        exchange: AuthExchange = client._auth
        for req in requests:
            if req.code != 0:
                client.send(req.message())
        client.flush()
        if exchange.done:
            self._authenticated(client, exchange)

    def _auth_failed(self, client: Client, e: AuthFailed | PoolerError) -> None:
        self.server.stats.auth_failures += 1
        if isinstance(e, PoolerError):
            client.fatal(e)
        else:
            client.fatal(PoolerError(e.sqlstate, e.message, detail=e.detail))

    def _authenticated(self, client: Client, exchange: AuthExchange) -> None:
        server = self.server
        if exchange.password is not None:
            server.credentials.learn_password(client.user, exchange.password.decode())
        else:
            secret = ScramPassThrough.from_exchange(exchange)
            if secret is not None:
                server.credentials.learn_scram(client.user, secret)
        client._auth = None
        if client.database in ADMIN_DATABASES:
            if client.user not in server.config.admin_users:
                client.fatal(PoolerError(
                    codes.INVALID_AUTHORIZATION_SPECIFICATION,
                    f"user {client.user!r} may not use the admin console",
                    hint="add the user to admin_users in the pooler's configuration",
                ))
                return
            server.start_admin(client)
            return
        client.login(client.user, client.database, client.params)

