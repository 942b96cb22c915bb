"""One server connection: its startup, authentication, and the server -> client data path.

While linked to a client, every read event frames what Postgres sent and forwards runs of
ordinary messages (rows, command completions, ...) to the client with one copy, in the C loop
of ``ReadBuffer.take_run_into``; it stops only at the messages the pooler must look at:

- ``Z`` ReadyForQuery: the transaction status, and the point where the backend may return
  to the pool;
- ``S`` ParameterStatus: tracked per backend, and forwarded when the client's view changes;
- ``E`` ErrorResponse: voids the rest of an extended-protocol batch, and session effects;
- ``A`` NotificationResponse: the sender's pid is rewritten to the client's own pid when it
  is the client's backend (see Client's docstring);
- ``1``/``3`` ParseComplete/CloseComplete: matched in order with the Parse and Close messages
  sent (the client's and the pooler's own), those answering the pooler's are swallowed, and
  they confirm which prepared statements exist on the server;
- ``G``/``H``/``W``: COPY modes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from multigres._cy.buffer import ReadBuffer, WriteBuffer, build_message
from multigres._cy.poolcore import BackendCore
from multigres._cy.relay import Relay
from multigres.netutil import is_socket_dir, open_pg_connection, pg_address, pg_connect
from multigres.pooler import msgs
from multigres.pooler.errors import PoolerError
from multigres.wire import sqlstate as codes
from multigres.wire.auth import AuthRequest, ClientAuthExchange
from multigres.wire.auth_errors import AuthFailed
from multigres.wire.tls import make_client_context

if TYPE_CHECKING:
    from multigres.pooler.client import Client
    from multigres.pooler.pool import Pool

_Z, _S, _E, _A, _N, _D = ord("Z"), ord("S"), ord("E"), ord("A"), ord("N"), ord("D")
_PARSE_COMPLETE, _CLOSE_COMPLETE = ord("1"), ord("3")
_COPY_IN, _COPY_OUT, _COPY_BOTH = ord("G"), ord("H"), ord("W")
_R, _K, _P = ord("R"), ord("K"), ord("p")


class Backend(BackendCore, asyncio.Protocol):
    """A connection to Postgres, owned by a Pool; linked to at most one client at a time."""

    pool: Pool
    client: Client | None

    def __init__(
        self, pool: Pool, auth: ClientAuthExchange, server_params: dict[str, str]
    ) -> None:
        self.pool = pool
        self.auth = auth
        self.startup_params = server_params
        self.transport: asyncio.Transport | None = None
        self.rbuf = ReadBuffer()
        self.out = WriteBuffer()
        self.ready: asyncio.Future[Backend] = asyncio.get_running_loop().create_future()
        self.connected = False
        self.closed = False
        self.pid = 0
        self.key = 0
        self.params: dict[str, str] = {}
        # Session settings applied on top of the connection's defaults: name -> SQL value.
        self.settings: dict[str, str] = {}
        # Which client's settings (and at which version) this backend last matched.
        self.synced_with: tuple[int, int] = (0, -1)
        # Server-side names of the prepared statements on this backend once what was sent
        # runs (decisions about what to send use it), and those Postgres confirmed.
        self.prepared: set[str] = set()
        self.confirmed: set[str] = set()
        self.client: Client | None = None
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.tx_status = ord("I")
        # ReadyForQuery messages still to come (one per Query, Sync, FunctionCall sent).
        self.pending = 0
        # Every Parse and Close sent, in order, until answered: (sync generation, statement
        # name or None (unnamed statement, portal), swallow the answer: the pooler sent it,
        # sequence number); a Parse also with the client's name for the statement.
        self.parses: deque[tuple[int, str | None, bool, int, bytes | None]] = deque()
        # A client's Close also with the client's name and entry for the statement.
        self.closes: deque[tuple[int, str | None, bool, int, tuple[bytes, Any] | None]] = (
            deque())
        self._seq = 0
        # Statements a DEALLOCATE (sent for a client) drops when its batch ends: (sync
        # generation, server name).
        self.dropping: deque[tuple[int, str]] = deque()
        self.syncs_sent = 0
        self.syncs_done = 0
        self.error_in_batch = False
        self.copy = False
        # Injected session-state query in flight (its answers go nowhere).
        self.injecting = False
        self.begin_injected = False
        self.inject_error: dict[str, str] | None = None
        # DataRows an injected query returned (text values), for the pin probe.
        self.inject_rows: list[list[bytes | None]] = []
        self.held: list[bytes] = []
        self.queries = 0
        self.bytes_in = 0
        # CancelRequests sent for this backend that Postgres has not taken yet; until then
        # the backend is not handed to another client (see send_cancel).
        self.cancels_in_flight = 0
        self.release_after_cancel = False
        # A FATAL error the server sent before closing the connection.
        self.fatal_fields: dict[str, str] | None = None
        # What to run once a client that left has no answer in flight (see clean_up).
        self.cleanup: list[str] = []

    def __repr__(self) -> str:
        return f"<Backend pid={self.pid} {self.pool.user}@{self.pool.database}>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        params = {"user": self.pool.user, "database": self.pool.database}
        params.update(self.startup_params)
        self.transport.write(msgs.startup_message(params))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(PoolerError(
                codes.CONNECTION_FAILURE,
                f"server closed the connection during startup: {exc or 'EOF'}",
            ))
            return
        client = self.client
        self.pool.forget(self)
        if client is not None:
            self.client = None
            client.on_backend_lost(self, exc)

    def pause_writing(self) -> None:
        # Postgres is not reading fast enough (COPY IN): stop reading from the client.
        if self.client is not None:
            self.client.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_reading()

    # -- startup ---------------------------------------------------------------------------

    def _startup_messages(self) -> None:
        rb = self.rbuf
        assert self.transport is not None
        while rb.take_message():
            t = rb.get_message_type()
            if t == _R:
                self._auth_message(rb.read_int32(), rb.consume_message())
            elif t == _S:
                name = rb.read_cstr().decode()
                self.params[name] = rb.read_cstr().decode()
            elif t == _K:
                self.pid = rb.read_int32()
                self.key = rb.read_int32()
            elif t == _Z:
                self.tx_status = rb.read_byte()
                self.connected = True
                if not self.ready.done():
                    self.ready.set_result(self)
                if rb.buffered():
                    self._forward()
                return
            elif t == _E:
                fields = msgs.parse_error_fields(rb.consume_message())
                if not self.ready.done():
                    self.ready.set_exception(PoolerError.from_fields(fields))
                self.close()
                return
            elif t == _N:
                rb.discard_message()
            else:
                rb.discard_message()

    def _auth_message(self, code: int, data: bytes) -> None:
        assert self.transport is not None
        try:
            payload = self.auth.feed(AuthRequest(code, data))
        except AuthFailed as e:
            self._fail(PoolerError(e.sqlstate, f"login to the server as {self.pool.user!r} "
                                   f"failed: {e.message}", detail=e.detail,
                                   hint="check the pooler's --userlist / --auth settings"))
            return
        if payload is not None:
            self.transport.write(build_message(_P, payload))

    def _fail(self, err: PoolerError) -> None:
        if not self.ready.done():
            self.ready.set_exception(err)
        elif self.client is not None:
            client = self.client
            self.client = None
            self.pool.forget(self)
            client.on_backend_lost(self, err)
        self.close()

    # -- linking to a client ----------------------------------------------------------------

    def unlink(self) -> None:
        self.client = None
        self.resume_reading()

    def pause_reading(self) -> None:
        """The linked client reads slowly: leave the server's answers in the kernel."""
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def inject(self, sql: str, held: list[bytes]) -> None:
        """Run ``sql`` (session state for the linked client) before ``held`` messages."""
        self.start_inject(held, False)
        self.write(msgs.query(sql))

    def _inject_messages(self) -> None:
        rb = self.rbuf
        while rb.take_message():
            t = rb.get_message_type()
            if t == _S:
                name = rb.read_cstr().decode()
                value = rb.read_cstr().decode()
                self.params[name] = value
                if self.client is not None:
                    self.client.on_parameter_status(name, value)
            elif t == _E:
                self.inject_error = msgs.parse_error_fields(rb.consume_message())
            elif t == _D:
                row: list[bytes | None] = []
                for _ in range(rb.read_int16()):
                    n = rb.read_int32()
                    row.append(None if n < 0 else rb.read_bytes(n))
                self.inject_rows.append(row)
            elif t == _Z:
                self.end_inject()
                held, self.held = self.held, []
                client = self.client
                if client is None:
                    return
                if self.inject_error is not None:
                    client.on_inject_failed(self, self.inject_error)
                    return
                client.on_injected(self, held)
                if rb.buffered():
                    # (Released and taken by a client whose settings differ: injecting again.)
                    if self.injecting:
                        self._inject_messages()
                    else:
                        self._forward()
                return
            else:
                rb.discard_message()

    # -- the data path -----------------------------------------------------------------------

    def _forward_other(self, t: int, client: Client, out: WriteBuffer) -> None:
        """A server message core._forward stops at, other than ReadyForQuery."""
        rb = self.rbuf
        if t == _S:
            name = rb.read_cstr().decode()
            value = rb.read_cstr().decode()
            self.params[name] = value
            client.on_parameter_status(name, value)
        elif t == _E:
            msg = rb.message_bytes()
            if msg[5:12] in (b"SFATAL\x00", b"SPANIC\x00"):
                # The server ends this connection (terminated, shutting down): that is
                # not the client's connection ending, which goes on without it; the
                # client hears of it when the connection is gone (Client.on_backend_lost).
                self.fatal_fields = msgs.parse_error_fields(msg[5:])
                return
            self.error_in_batch = True
            self._void_batch()
            out.write_raw(msg)
            client.on_error()
        elif t == _A:
            # The client knows itself by its BackendKeyData pid: its own notifications
            # carry that pid, and one from the backend it was told about (now another
            # client's) carries the pid of the client's backend instead (a swap, so no
            # notification of another client ever looks like its own).
            pid = rb.read_int32()
            vpid = client.virtual_pid
            msg = rb.message_bytes()
            if pid == self.pid and pid != vpid:
                msg = msg[:5] + struct.pack("!i", vpid) + msg[9:]
            elif pid == vpid and pid != self.pid:
                msg = msg[:5] + struct.pack("!i", self.pid) + msg[9:]
            out.write_raw(msg)
        elif t == _PARSE_COMPLETE:
            if self.parses:
                _, stmt, swallow, _, _ = self.parses.popleft()
                if stmt is not None:
                    self.confirmed.add(stmt)
                if swallow:
                    return
            out.write_raw(rb.message_bytes())
        elif t == _CLOSE_COMPLETE:
            if self.closes:
                _, stmt, swallow, _, _ = self.closes.popleft()
                if stmt is not None:
                    self.confirmed.discard(stmt)
                if swallow:
                    return
            out.write_raw(rb.message_bytes())
        else:  # COPY in/out/both
            self.copy = True
            out.write_raw(rb.message_bytes())

    def sent_parse(
        self, name: str | None, swallow: bool = False, client_name: bytes | None = None
    ) -> None:
        """A Parse went out (``name``: a named statement's server name; ``client_name``: the
        client's name for it when the client sent it)."""
        if self._skipped():
            if client_name is not None and self.client is not None:
                entry = self.client.statements.get(client_name)
                if entry is not None and entry[0] == name:
                    del self.client.statements[client_name]
            return
        self._seq += 1
        self.parses.append((self.syncs_sent, name, swallow, self._seq, client_name))
        if name is not None:
            self.prepared.add(name)

    def sent_close(
        self, name: str | None, swallow: bool = False, client: tuple[bytes, Any] | None = None
    ) -> None:
        """A Close went out (``name``: a named statement's server name, else None;
        ``client``: the client's name and entry for it, when the client closed it)."""
        if self._skipped():
            if client is not None and self.client is not None:
                self.client.statements.setdefault(client[0], client[1])
            return
        self._seq += 1
        self.closes.append((self.syncs_sent, name, swallow, self._seq, client))
        if name is not None:
            self.prepared.discard(name)

    def _skipped(self) -> bool:
        """Does Postgres skip what is sent now? After an error it skips everything up to the
        next Sync: a message of the batch that failed, sent after its error came back, never
        runs (and is not answered)."""
        return self.error_in_batch and self.syncs_done == self.syncs_sent

    def deallocating(self, name: str) -> None:
        """A DEALLOCATE of the server statement ``name`` went out (done at its batch's end)."""
        self.prepared.discard(name)
        self.dropping.append((self.syncs_sent, name))

    def _dropped(self) -> None:
        """A ReadyForQuery came: the DEALLOCATEs of the batches answered so far are done."""
        while self.dropping and self.dropping[0][0] < self.syncs_done:
            self.confirmed.discard(self.dropping.popleft()[1])

    def forget_prepared(self) -> None:
        """DISCARD ALL or DEALLOCATE ALL ran: no prepared statement is left."""
        self.prepared.clear()
        self.confirmed.clear()

    def _void_batch(self) -> None:
        """After an error Postgres skips to the next Sync: the Parse and Close messages of this
        batch not answered yet never ran. What exists is what Postgres confirmed, plus what
        later batches (already sent) will do."""
        gen = self.syncs_done
        voided = False
        while self.parses and self.parses[0][0] == gen:
            _, name, _, _, client_name = self.parses.popleft()
            voided = True
            if client_name is not None and self.client is not None:
                # The client's statement was never made, as on a direct connection.
                entry = self.client.statements.get(client_name)
                if entry is not None and entry[0] == name:
                    del self.client.statements[client_name]
        while self.dropping and self.dropping[0][0] == gen:
            self.dropping.popleft()
            voided = True
        while self.closes and self.closes[0][0] == gen:
            _, _, _, _, closed = self.closes.popleft()
            voided = True
            if closed is not None and self.client is not None:
                # The client's statement was never closed, as on a direct connection.
                self.client.statements.setdefault(closed[0], closed[1])
        if not voided:
            return
        # Replay what later batches will do, in send order.
        prepared = set(self.confirmed)
        ops = [(q, False, n) for _, n, _, q, _ in self.closes]
        ops += [(q, True, n) for _, n, _, q, _ in self.parses]
        for _, is_parse, name in sorted(ops):
            if name is not None:
                if is_parse:
                    prepared.add(name)
                else:
                    prepared.discard(name)
        for _, name in self.dropping:
            prepared.discard(name)
        self.prepared = prepared

    def _drain_unlinked(self) -> None:
        rb = self.rbuf
        while rb.take_message():
            t = rb.get_message_type()
            if t == _Z:
                self.tx_status = rb.read_byte()
                self.pending -= 1
                self.syncs_done += 1
                self.error_in_batch = False
                if self.dropping:
                    self._dropped()
            elif t == _S:
                name = rb.read_cstr().decode()
                self.params[name] = rb.read_cstr().decode()
            elif t == _PARSE_COMPLETE and self.parses:
                _, stmt, _, _, _ = self.parses.popleft()
                if stmt is not None:
                    self.confirmed.add(stmt)
            elif t == _CLOSE_COMPLETE and self.closes:
                _, stmt, _, _, _ = self.closes.popleft()
                if stmt is not None:
                    self.confirmed.discard(stmt)
            elif t == _E:
                self._void_batch()
                if self.pending == 0 and not self.cleanup:
                    # An answer to nothing the pooler knows of: this connection's state is
                    # not what the pooler thinks. Never hand it to anyone.
                    self.pool.forget(self)
                    self.close()
                    return
            else:
                rb.discard_message()
        self.after_unlinked_answer()

    def clean_up(self, statements: list[str], give_up: float = 10.0) -> None:
        """The client left an idle session: run ``statements`` (ROLLBACK, DISCARD ALL), then
        go back to the pool; closed instead if that takes longer than ``give_up`` seconds."""
        self.cleanup = statements
        self.after_unlinked_answer()
        asyncio.get_running_loop().call_later(give_up, self._cleanup_overdue)

    def _cleanup_overdue(self) -> None:
        if self.client is None and not self.closed and self in self.pool.active:
            self.pool.forget(self)
            self.close()

    def after_unlinked_answer(self) -> None:
        if self.closed or self.client is not None:
            return
        if self.pending == 0 and self.cancels_in_flight == 0 and self.cleanup:
            # One Query each: DISCARD ALL cannot run in the implicit transaction of a
            # multi-statement query.
            for sql in self.cleanup:
                self.pending += 1
                self.syncs_sent += 1
                self.write(msgs.query(sql))
            self.cleanup = []
        elif self.is_idle() and not self.cleanup:
            self.on_unlinked_idle()

    def on_unlinked_idle(self) -> None:
        """A backend whose client left has finished what it was doing (e.g. a ROLLBACK)."""
        if self in self.pool.active:
            self.pool.release(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            try:
                self.transport.write(msgs.TERMINATE)
            finally:
                self.transport.close()
        self.closed = True


async def send_cancel(backend: Backend, host: str, port: int, give_up: float = 5.0) -> None:
    """Send Postgres a CancelRequest for ``backend`` and wait until Postgres has taken it.

    Postgres signals the backend and then closes the cancel connection. Until that close,
    the backend stays out of the pool: a cancel that arrives after the query it was meant for
    has finished then finds the backend idle, where Postgres ignores it, and never cancels the
    next client's query.
    """
    backend.cancels_in_flight += 1
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(give_up):
            reader, writer = await open_pg_connection(host, port)
            writer.write(msgs.cancel_request(backend.pid, backend.key))
            await writer.drain()
            await reader.read()
    except (OSError, TimeoutError):
        pass
    finally:
        if writer is not None:
            writer.close()
        backend.cancels_in_flight -= 1
        if backend.cancels_in_flight == 0:
            if backend.release_after_cancel:
                backend.release_after_cancel = False
                backend.pool.release(backend)
            else:
                backend.after_unlinked_answer()


def server_statement_name(query: bytes, param_types: bytes) -> str:
    """The name a prepared statement gets on the servers: the same text and parameter types
    give the same name, so clients share one server-side statement."""
    digest = hashlib.blake2b(query + b"\x00" + param_types, digest_size=10).hexdigest()
    return "mg_" + digest


async def connect(
    pool: Pool,
    host: str,
    port: int,
    auth: ClientAuthExchange,
    server_params: dict[str, str],
    connect_timeout: float,
    *,
    tls_mode: str = "disable",
    tls_ca: str | os.PathLike[str] | None = None,
    relay: Relay | None = None,
) -> Backend:
    """A logged-in server connection (on ``relay`` unless it uses TLS). ``tls_mode`` is
    libpq's sslmode (disable, prefer, require, verify-ca, verify-full), ``tls_ca`` the root
    certificate to check the server's."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            # No TLS on a Unix socket (Postgres offers none there; libpq ignores sslmode).
            ctx = None if is_socket_dir(host) else server_tls_context(tls_mode, tls_ca)
            if ctx is None and relay is not None:
                sock = await pg_connect(host, port)
                backend = Backend(pool, auth, server_params)
                relay.adopt(sock, backend)
            elif ctx is None:
                _, backend = await loop.create_connection(
                    lambda: Backend(pool, auth, server_params), sock=await pg_connect(host, port)
                )
            else:
                backend = await _connect_tls(pool, host, port, auth, server_params, ctx,
                                             tls_mode)
            return await backend.ready
    except TimeoutError as e:
        raise PoolerError(
            codes.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            f"could not connect to the server at {pg_address(host, port)} "
            f"within {connect_timeout:g} s",
        ) from e
    except ssl.SSLError as e:
        why = (f"certificate verify failed: {e.verify_message}"
               if isinstance(e, ssl.SSLCertVerificationError) else (e.reason or str(e)))
        raise PoolerError(
            codes.CONNECTION_FAILURE,
            f"TLS with the server at {host}:{port} failed: {why}",
            hint="check --server-tls and --server-tls-ca",
        ) from e
    except OSError as e:
        raise PoolerError(
            codes.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            f"could not connect to the server at {pg_address(host, port)}: {e.strerror or e}",
            hint="is Postgres running and accepting connections there?",
        ) from e




_tls_contexts: dict[tuple[str, str | None], ssl.SSLContext | None] = {}


def server_tls_context(
    mode: str, ca: str | os.PathLike[str] | None = None
) -> ssl.SSLContext | None:
    """The TLS context for server connections (built once per setting), None for disable."""
    key = (mode, os.fspath(ca) if ca is not None else None)
    if key not in _tls_contexts:
        _tls_contexts[key] = make_client_context(mode, root_cert=ca)
    return _tls_contexts[key]


class _SslAnswer(asyncio.Protocol):
    """Sends SSLRequest and waits for the server's one-byte answer."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(msgs.SSL_REQUEST)

    def data_received(self, data: bytes) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionResetError(
                "the server closed the connection after SSLRequest"))


async def _connect_tls(
    pool: Pool,
    host: str,
    port: int,
    auth: ClientAuthExchange,
    server_params: dict[str, str],
    ctx: ssl.SSLContext,
    mode: str,
) -> Backend:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_SslAnswer, host, port)
    try:
        answer = await proto.answer
        if answer == b"S":
            tls = await loop.start_tls(transport, proto, ctx, server_hostname=host)
            if tls is None:
                raise ConnectionResetError("the server closed the connection during TLS")
            transport = tls
        elif answer == b"N" and mode == "prefer":
            pass  # no TLS on that server: plaintext, as libpq's prefer
        elif answer == b"N":
            raise PoolerError(
                codes.CONNECTION_FAILURE,
                f"the server at {host}:{port} does not support TLS, and --server-tls is "
                f"{mode}",
                hint="enable ssl in Postgres, or use --server-tls prefer or disable",
            )
        else:
            # More than the one byte: it was not sent over TLS, so it cannot be trusted
            # (CVE-2021-23222), or the server did not understand the request.
            raise PoolerError(codes.PROTOCOL_VIOLATION,
                              f"unexpected answer to SSLRequest from {host}:{port}")
    except BaseException:
        transport.close()
        raise
    backend = Backend(pool, auth, server_params)
    transport.set_protocol(backend)
    backend.connection_made(transport)
    return backend
