"""One server connection: its startup, authentication, and the server -> client data path.

While linked to a client, every read event frames what Postgres sent and forwards runs of
ordinary messages (rows, command completions, ...) to the client with one copy, in the C loop
of ``ReadBuffer.take_run_into``; it stops only at the messages the pooler must look at:

- ``Z`` ReadyForQuery: the transaction status, and the point where the backend may return
  to the pool;
- ``S`` ParameterStatus: tracked per backend, and forwarded when the client's view changes;
- ``E`` ErrorResponse: voids the rest of an extended-protocol batch, and session effects;
- ``A`` NotificationResponse: the sender's pid is rewritten to the client's own pid when it
  is the client's backend;
- ``1``/``3`` ParseComplete/CloseComplete: those answering messages the pooler injected are
  swallowed;
- ``G``/``H``/``W``: COPY modes.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from multigres._cy.buffer import ProtocolError, ReadBuffer, WriteBuffer, build_message
from multigres.pooler import msgs
from multigres.pooler.errors import PoolerError
from multigres.wire import sqlstate as codes
from multigres.wire.auth import AuthRequest, ClientAuthExchange
from multigres.wire.auth_errors import AuthFailed

if TYPE_CHECKING:
    from multigres.pooler.client import Client
    from multigres.pooler.pool import Pool

_Z, _S, _E, _A, _N = ord("Z"), ord("S"), ord("E"), ord("A"), ord("N")
_PARSE_COMPLETE, _CLOSE_COMPLETE = ord("1"), ord("3")
_COPY_IN, _COPY_OUT, _COPY_BOTH = ord("G"), ord("H"), ord("W")
_R, _K, _P = ord("R"), ord("K"), ord("p")
STOP_TYPES = b"ZSEA13GHW"


class Backend(asyncio.Protocol):
    """A connection to Postgres, owned by a Pool; linked to at most one client at a time."""

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
        # Server-side names of the prepared statements that exist on this backend.
        self.prepared: set[str] = set()
        self.client: Client | None = None
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.tx_status = ord("I")
        # ReadyForQuery messages still to come (one per Query, Sync, FunctionCall sent).
        self.pending = 0
        # Swallow the answers to injected messages: deques of (sync generation, stmt name).
        self.swallow_parse: deque[tuple[int, str]] = deque()
        self.swallow_close: deque[tuple[int, str]] = deque()
        self.syncs_sent = 0
        self.syncs_done = 0
        self.error_in_batch = False
        self.copy = False
        # Injected session-state query in flight (its answers go nowhere).
        self.injecting = False
        self.inject_error: dict[str, str] | None = None
        self.held: list[bytes] = []
        self.queries = 0
        self.bytes_in = 0

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

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        rb = self.rbuf
        rb.feed_data(data)
        try:
            if not self.connected:
                self._startup_messages()
            elif self.injecting:
                self._inject_messages()
            else:
                self._forward()
        except ProtocolError as e:
            self._fail(PoolerError(codes.PROTOCOL_VIOLATION,
                                   f"invalid message from the server: {e}"))

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

    def link(self, client: Client) -> None:
        self.client = client
        self.last_used = time.monotonic()

    def unlink(self) -> None:
        self.client = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def is_idle(self) -> bool:
        """Nothing in flight and no transaction: the backend could serve another client."""
        return (self.pending == 0 and self.tx_status == ord("I") and not self.copy
                and not self.injecting)

    def inject(self, sql: str, held: list[bytes]) -> None:
        """Run ``sql`` (session state for the linked client) before ``held`` messages."""
        self.injecting = True
        self.inject_error = None
        self.held = held
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
            elif t == _Z:
                self.tx_status = rb.read_byte()
                self.injecting = False
                held, self.held = self.held, []
                client = self.client
                if client is None:
                    return
                if self.inject_error is not None:
                    client.on_inject_failed(self, self.inject_error)
                    return
                client.on_injected(self, held)
                if rb.buffered():
                    self._forward()
                return
            else:
                rb.discard_message()

    # -- the data path -----------------------------------------------------------------------

    def _forward(self) -> None:
        client = self.client
        rb = self.rbuf
        if client is None:
            # Answers nobody waits for (a client left): keep the state, drop the bytes.
            self._drain_unlinked()
            return
        out = client.out
        while True:
            rb.take_run_into(out, STOP_TYPES)
            if not rb.take_message():
                break
            t = rb.get_message_type()
            if t == _Z:
                self.tx_status = rb.read_byte()
                self.pending -= 1
                self.syncs_done += 1
                self.error_in_batch = False
                self.copy = False
                out.write_raw(rb.message_bytes())
                client.on_ready_for_query(self, self.tx_status)
                if self.client is not client:
                    # Released to the pool: what follows (nothing, normally) is not theirs.
                    break
            elif t == _S:
                name = rb.read_cstr().decode()
                value = rb.read_cstr().decode()
                self.params[name] = value
                client.on_parameter_status(name, value)
            elif t == _E:
                self.error_in_batch = True
                self._void_batch()
                out.write_raw(rb.message_bytes())
                client.on_error()
            elif t == _A:
                pid = rb.read_int32()
                if pid == self.pid:
                    msg = rb.message_bytes()
                    out.write_raw(msg[:5] + struct.pack("!i", client.virtual_pid) + msg[9:])
                else:
                    out.write_raw(rb.message_bytes())
            elif t == _PARSE_COMPLETE:
                if self.swallow_parse and self.swallow_parse[0][0] == self.syncs_done:
                    self.swallow_parse.popleft()
                else:
                    out.write_raw(rb.message_bytes())
            elif t == _CLOSE_COMPLETE:
                if self.swallow_close and self.swallow_close[0][0] == self.syncs_done:
                    self.swallow_close.popleft()
                else:
                    out.write_raw(rb.message_bytes())
            else:  # COPY in/out/both
                self.copy = True
                out.write_raw(rb.message_bytes())
        client.flush()
        if self.client is None and rb.buffered():
            self._drain_unlinked()

    def _void_batch(self) -> None:
        """After an error Postgres skips to the next Sync: injected messages of this batch
        never ran, so their answers will not come and their statements do not exist."""
        gen = self.syncs_done
        while self.swallow_parse and self.swallow_parse[0][0] == gen:
            _, name = self.swallow_parse.popleft()
            self.prepared.discard(name)
        while self.swallow_close and self.swallow_close[0][0] == gen:
            self.swallow_close.popleft()

    def _drain_unlinked(self) -> None:
        rb = self.rbuf
        while rb.take_message():
            t = rb.get_message_type()
            if t == _Z:
                self.tx_status = rb.read_byte()
                self.pending -= 1
                self.syncs_done += 1
            elif t == _S:
                name = rb.read_cstr().decode()
                self.params[name] = rb.read_cstr().decode()
            else:
                rb.discard_message()
        if self.is_idle() and not self.closed:
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
) -> Backend:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            _, backend = await loop.create_connection(
                lambda: Backend(pool, auth, server_params), host, port
            )
            return await backend.ready
    except TimeoutError as e:
        raise PoolerError(
            codes.CONNECTION_FAILURE,
            f"could not connect to the server at {host}:{port} within {connect_timeout:g} s",
        ) from e
    except OSError as e:
        raise PoolerError(
            codes.CONNECTION_FAILURE,
            f"could not connect to the server at {host}:{port}: {e.strerror or e}",
            hint="is Postgres running and accepting TCP connections there?",
        ) from e
