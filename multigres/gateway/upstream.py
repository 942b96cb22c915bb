"""A gateway's connection to a pooler, logged in as one client's user.

The gateway speaks the Postgres protocol to the pooler as any client would: a StartupMessage
with the client's own parameters, then SCRAM with the ClientKey proven by the client's login
at the gateway (pass-through: no password is ever stored). After login the connection is in
data mode: every byte the pooler sends goes to the session's ``upstream_data``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from multigres._cy.buffer import ProtocolError, ReadBuffer, build_message
from multigres._cy.gatecore import UpstreamCore
from multigres._cy.mux import MuxCarrier
from multigres._cy.relay import Relay
from multigres.netutil import tcp_connect
from multigres.wire import sqlstate as codes
from multigres.wire.auth import AuthRequest, ClientAuthExchange
from multigres.wire.auth_errors import AuthFailed
from multigres.wire.errors import PgError
from multigres.wire.pipe import pipe
from multigres.wire.protocol import build_cancel_request, build_startup_message

_R, _S, _K, _Z, _E, _P = (ord(c) for c in "RSKZEp")
TERMINATE = build_message(ord("X"))
log = logging.getLogger("multigres.gateway")


# Makes the pooler's protocol object for a new in-process client connection.
LocalPooler = Callable[[], asyncio.Protocol]


class Sink(Protocol):
    def upstream_data(self, up: Upstream, data: bytes) -> None: ...
    def upstream_lost(self, up: Upstream, exc: Exception | None) -> None: ...


class Upstream(UpstreamCore):
    def __init__(self, pooler_id: str, host: str, port: int, auth: ClientAuthExchange) -> None:
        self.pooler_id = pooler_id
        self.host = host
        self.port = port
        self.auth = auth
        self.rbuf: ReadBuffer | None = ReadBuffer()
        self.ready: asyncio.Future[Upstream] = asyncio.get_running_loop().create_future()
        self.params: dict[str, str] = {}
        self.pid = 0
        self.secret = 0
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<Upstream {self.pooler_id} {self.host}:{self.port} pid={self.pid}>"

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # In data mode with a session as the sink, the C path (UpstreamCore.relay_data)
        # handles the bytes; this is the login, and sinks written in Python.
        sink = self.sink
        if sink is not None:
            sink.upstream_data(self, data)
            return
        rb = self.rbuf
        if rb is None:  # closed while logging in
            return
        rb.feed_data(data)
        try:
            self._login_messages(rb)
        except (ProtocolError, AuthFailed, ValueError) as e:
            self._fail(PgError(f"login to pooler {self.pooler_id} failed: {e}",
                               codes.CONNECTION_FAILURE))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(PgError(
                f"pooler {self.pooler_id} at {self.host}:{self.port} closed the connection "
                "during login", codes.CONNECTION_FAILURE))
        elif self.sink is not None:
            sink, self.sink = self.sink, None
            sink.upstream_lost(self, exc)

    # -- login ------------------------------------------------------------------------------

    def _login_messages(self, rb: ReadBuffer) -> None:
        while rb.take_message():
            t = rb.get_message_type()
            if t == _R:
                code = rb.read_int32()
                data = rb.read_bytes(rb.remaining())
                answer = self.auth.feed(AuthRequest(code, data))
                if answer is not None and self.transport is not None:
                    self.transport.write(build_message(_P, answer))
            elif t == _S:
                name = rb.read_str()
                self.params[name] = rb.read_str()
            elif t == _K:
                self.pid, self.secret = rb.read_int32(), rb.read_int32()
            elif t == _E:
                err = PgError.from_payload(rb.consume_message())
                self._fail(err)
                return
            elif t == _Z:
                rb.discard_message()
                if not self.ready.done():
                    self.ready.set_result(self)
                return
            else:  # notices, NegotiateProtocolVersion: nothing to do at login
                rb.discard_message()

    def _fail(self, err: PgError) -> None:
        if not self.ready.done():
            self.ready.set_exception(err)
        self.close()

    # -- data mode --------------------------------------------------------------------------

    def attach(self, sink: Sink) -> bytes:
        """Send everything from now on to ``sink``; returns what arrived after login."""
        rb = self.rbuf
        self.rbuf = None
        self.sink = sink
        return rb.take_run() if rb is not None and rb.buffered() else b""

    def close(self) -> None:
        """Say goodbye (the pooler returns its server connection at once) and close."""
        self.sink = None
        self.rbuf = None
        if self.transport is not None and not self.closed:
            self.closed = True
            try:
                self.transport.write(TERMINATE)
            except Exception:
                pass
            self.transport.close()

    def abort(self) -> None:
        self.sink = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    async def cancel(self, within: float = 5.0) -> None:
        """Send a CancelRequest for this connection's running statement to the pooler."""
        try:
            async with asyncio.timeout(within):
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(build_cancel_request(self.pid, self.secret))
                await writer.drain()
                writer.close()
        except (OSError, TimeoutError):
            pass


# A carrier holds every session to its pooler: a peer that vanished without a word (host
# down, network cut) is noticed after about KEEPIDLE + KEEPCNT * KEEPINTVL seconds of silence.
KEEPIDLE, KEEPINTVL, KEEPCNT = 10, 5, 3


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT)


class Carriers:
    """The gateway's carriers (pyx/mux.pyx): one connection per pooler address carries every
    session to that pooler, so the statements of a batch of events leave in one send. A
    pooler that declines (several workers) or does not know the request gets one connection
    per session, asked again after ``RETRY_DECLINED`` seconds."""

    RETRY_DECLINED = 60.0
    # A carrier that carried no session for this long is closed (checked every half of it):
    # a pooler that left the topology but still runs keeps no socket of ours.
    IDLE_CLOSE = 60.0

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._open: dict[tuple[str, int], MuxCarrier] = {}
        self._opening: dict[tuple[str, int], asyncio.Future[MuxCarrier | None]] = {}
        self._declined: dict[tuple[str, int], float] = {}
        self._idle_since: dict[tuple[str, int], float] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._open)

    async def get(self, host: str, port: int, within: float) -> MuxCarrier | None:
        """The open carrier to ``host:port`` (opened now if needed, within ``within``
        seconds), or None where the pooler declined. OSError: the pooler cannot be reached;
        TimeoutError: it did not answer."""
        key = (host, port)
        carrier = self._open.get(key)
        if carrier is not None and not carrier.closed:
            return carrier
        loop = asyncio.get_running_loop()
        if self._declined.get(key, 0.0) > loop.time():
            return None
        opening = self._opening.get(key)
        if opening is None:
            opening = self._opening[key] = loop.create_task(self._connect(key, within))
            opening.add_done_callback(lambda f: self._opened(key, f))
        # Shielded: one session giving up (its timeout) does not cancel the others' wait.
        return await asyncio.shield(opening)

    async def _connect(self, key: tuple[str, int], within: float) -> MuxCarrier | None:
        carrier = MuxCarrier.client()
        async with asyncio.timeout(within):
            sock = await tcp_connect(*key)
            _keepalive(sock)
            self.relay.adopt(sock, carrier)  # on failure it closes the socket
            carrier.on_lost = lambda c: self._lost(key, c)
            try:
                carrier.send_request()
                accepted = await carrier.ready
            except BaseException:
                carrier.close()
                raise
        if not accepted:  # (the carrier closed its connection on the answer)
            self._declined[key] = asyncio.get_running_loop().time() + self.RETRY_DECLINED
            log.info("pooler at %s:%d takes no carrier: one connection per session", *key)
            return None
        self._open[key] = carrier
        if self._sweep_handle is None:
            self._sweep_handle = asyncio.get_running_loop().call_later(
                self.IDLE_CLOSE / 2, self._sweep)
        return carrier

    def _sweep(self) -> None:
        """Close the carriers that have carried no session since the last two sweeps."""
        self._sweep_handle = None
        now = asyncio.get_running_loop().time()
        for key, carrier in list(self._open.items()):
            if carrier.channels:
                self._idle_since.pop(key, None)
                continue
            since = self._idle_since.setdefault(key, now)
            if now - since >= self.IDLE_CLOSE:
                # Out of the table first: no session may be handed a closing carrier.
                del self._open[key]
                del self._idle_since[key]
                carrier.close()
        if self._open:
            self._sweep_handle = asyncio.get_running_loop().call_later(
                self.IDLE_CLOSE / 2, self._sweep)

    def _opened(self, key: tuple[str, int], f: asyncio.Future[MuxCarrier | None]) -> None:
        if self._opening.get(key) is f:
            del self._opening[key]
        if not f.cancelled():
            f.exception()  # retrieved: each waiter gets it from its own await

    def _lost(self, key: tuple[str, int], carrier: MuxCarrier) -> None:
        if self._open.get(key) is carrier:
            del self._open[key]
            self._idle_since.pop(key, None)

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for carrier in list(self._open.values()):
            carrier.close()
        self._open.clear()


async def open_upstream(
    relay: Relay,
    pooler_id: str,
    host: str,
    port: int,
    params: dict[str, str],
    auth: ClientAuthExchange,
    within: float,
    local: LocalPooler | None = None,
    carriers: Carriers | None = None,
) -> Upstream:
    """A logged-in connection to the pooler at ``host:port``: a channel of the carrier to it
    (``carriers``), a connection of its own, or to ``local`` (a pooler in this process: joined
    in memory, no socket). PgError: the pooler's own error (as it sent it: a wrong password,
    a database that does not exist), or 08006 when it cannot be reached."""
    up = Upstream(pooler_id, host, port, auth)
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(within):
            carrier = None
            if local is None and carriers is not None:
                carrier = await carriers.get(host, port, within)
            if local is not None:
                pipe(up, local())
            elif carrier is not None:
                pipe(up, carrier.open_channel())
            else:
                sock = await tcp_connect(host, port)
                relay.adopt(sock, up)
                sock = None
            assert up.transport is not None
            up.transport.write(build_startup_message(params))
            return await up.ready
    except TimeoutError:
        up.abort()
        raise PgError(f"pooler {pooler_id} at {host}:{port} did not answer within "
                      f"{within:g} s", codes.CONNECTION_FAILURE) from None
    except OSError as e:
        if sock is not None:
            sock.close()
        raise PgError(f"cannot connect to pooler {pooler_id} at {host}:{port}: "
                      f"{e.strerror or e}", codes.CONNECTION_FAILURE) from None
    except BaseException:
        up.abort()
        raise
