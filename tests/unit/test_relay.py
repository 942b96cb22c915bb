"""The relay I/O engine: asyncio Transport semantics over its own epoll, on real loopback sockets.

Every test runs on uvloop and on asyncio's own loop (the relay only needs ``add_reader``). The
peer side of each connection is a plain socket or an asyncio stream, never the relay, so that
what a test sees is what a real client would see.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import resource
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import uvloop

from multigres._cy.relay import Conn, FastProtocol, Relay

CHUNK = 64 * 1024
# More than the loopback socket buffers can hold (tcp_wmem + tcp_rmem maxima are ~10 MB), so
# that part of a write of this size must wait in the relay's pending output.
BIG = 16 * 1024 * 1024


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run each test on uvloop and on asyncio's loop (tests/conftest.py uses the policy's loop)."""
    old = asyncio.get_event_loop_policy()
    policy = (
        uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()
    )
    asyncio.set_event_loop_policy(policy)
    try:
        yield cast(str, request.param)
    finally:
        asyncio.set_event_loop_policy(old)


# Helpers ---------------------------------------------------------------------------------------


@contextmanager
def open_relay() -> Iterator[Relay]:
    relay = Relay(asyncio.get_running_loop())
    try:
        yield relay
    finally:
        relay.close()


def listening_socket() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0), backlog=128)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1: (the end to adopt, the peer end, non-blocking)."""
    with listening_socket() as lsock:
        peer = socket.create_connection(lsock.getsockname())
        ours, _ = lsock.accept()
    peer.setblocking(False)
    return ours, peer


async def until(predicate: Callable[[], bool]) -> None:
    """Wait until predicate() is true: what it watches changes in the relay's callbacks, which
    have no hook to wait on; polled every 2 ms, failing after 5 s."""
    async with asyncio.timeout(5.0):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    parts = []
    while data := await loop.sock_recv(sock, 1 << 20):
        parts.append(data)
    return b"".join(parts)


async def read_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return data


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Recorder(asyncio.Protocol):
    """Records every call the transport makes; answers eof_received() with ``keep_open``."""

    def __init__(self, keep_open: bool | None = None) -> None:
        self.conn: Conn | None = None
        self.chunks: list[bytes] = []
        self.calls: list[str] = []
        self.keep_open = keep_open
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def transport(self) -> Conn:
        assert self.conn is not None
        return self.conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = cast(Conn, transport)
        self.calls.append("connection_made")

    def data_received(self, data: bytes) -> None:
        assert not self.lost.done(), "data after connection_lost"
        self.chunks.append(data)

    def eof_received(self) -> bool | None:
        self.calls.append("eof_received")
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("connection_lost")
        self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")


class Echo(Recorder):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data)


class PyFast(FastProtocol):
    """A Python subclass of FastProtocol: reached through the default relay_data()."""

    def __init__(self) -> None:
        self.conn: Conn | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = cast(Conn, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        assert self.conn is not None
        self.conn.write(data.upper())


class Producer(Recorder):
    """Writes ``payload`` in CHUNK-sized writes as fast as flow control lets it, then closes."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = memoryview(payload)
        self.pos = 0
        self.paused = False
        self.max_buffered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.produce()

    def produce(self) -> None:
        while not self.paused and self.pos < len(self.payload):
            self.transport.write(self.payload[self.pos : self.pos + CHUNK])
            self.pos += CHUNK
            self.max_buffered = max(self.max_buffered, self.transport.get_write_buffer_size())
        if self.pos >= len(self.payload):
            self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused = False
        self.produce()


def capture_exceptions() -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: contexts.append(ctx))
    return contexts


# Echo and dispatch -----------------------------------------------------------------------------


async def test_echo_through_listen_with_a_plain_asyncio_protocol() -> None:
    protocols: list[Echo] = []

    def factory() -> Echo:
        protocols.append(Echo())
        return protocols[-1]

    with open_relay() as relay:
        lsock = listening_socket()
        relay.listen(lsock, factory)
        reader, writer = await asyncio.open_connection(*lsock.getsockname())
        for message in (b"hello", b"x" * 100_000, b"", b"bye"):
            writer.write(message)
            assert await reader.readexactly(len(message)) == message
        await until(lambda: relay.connections == 1)
        conn = protocols[0].transport
        assert conn.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert conn.get_extra_info("sockname") == lsock.getsockname()
        assert conn.fd >= 0 and conn.get_extra_info("fd") == conn.fd
        assert conn.get_extra_info("socket") is None
        assert conn.get_extra_info("nope", 7) == 7

        writer.close()
        assert await protocols[0].lost is None
        assert protocols[0].calls == ["connection_made", "eof_received", "connection_lost"]
        assert relay.connections == 0
        assert conn.get_extra_info("fd") is None
        assert protocols[0].transport.get_protocol() is None  # cycle broken after connection_lost
        await writer.wait_closed()


async def test_python_subclass_of_fast_protocol_gets_data_through_relay_data() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = PyFast()
        conn = relay.adopt(ours, protocol)
        assert ours.fileno() == -1, "adopt() detaches the socket object"
        assert protocol.conn is conn and conn.get_protocol() is protocol
        await asyncio.get_running_loop().sock_sendall(peer, b"fast path")
        assert await read_exactly(peer, 9) == b"FAST PATH"
        assert protocol.chunks == [b"fast path"]


async def test_set_protocol_switches_dispatch_both_ways() -> None:
    ours, peer = tcp_pair()
    loop = asyncio.get_running_loop()
    with open_relay() as relay, peer:
        plain = Echo()
        conn = relay.adopt(ours, plain)
        await loop.sock_sendall(peer, b"one")
        assert await read_exactly(peer, 3) == b"one"

        fast = PyFast()
        fast.conn = conn
        conn.set_protocol(fast)
        await loop.sock_sendall(peer, b"two")
        assert await read_exactly(peer, 3) == b"TWO"

        conn.protocol = plain  # the public field, set directly: dispatch follows it too
        await loop.sock_sendall(peer, b"three")
        assert await read_exactly(peer, 5) == b"three"
        assert plain.chunks == [b"one", b"three"] and fast.chunks == [b"two"]


async def test_write_accepts_bytes_like_objects_and_writelines() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        conn = relay.adopt(ours, Recorder())
        conn.write(bytearray(b"ab"))
        conn.write(memoryview(b"xcdx")[1:3])
        conn.writelines([b"ef", bytearray(b"gh"), memoryview(b"ij")])
        conn.write(b"")
        with pytest.raises(TypeError):
            conn.write("text")  # type: ignore[arg-type]
        assert await read_exactly(peer, 10) == b"abcdefghij"


async def test_adopt_checks_what_it_is_given() -> None:
    with pytest.raises(TypeError):
        Conn()
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        conn = relay.adopt(ours, Recorder())
        with pytest.raises(ValueError, match="already belongs"):
            relay.adopt(conn.fd, Recorder())
        with pytest.raises(TypeError):
            relay.adopt("not a socket", Recorder())  # type: ignore[arg-type]
        context = ssl.create_default_context()
        with (
            context.wrap_socket(
                socket.socket(), server_hostname="localhost", do_handshake_on_connect=False
            ) as tls,
            pytest.raises(TypeError, match="TLS"),
        ):
            relay.adopt(tls, Recorder())
        assert relay.connections == 1


# Writing and flow control ----------------------------------------------------------------------


async def test_large_write_to_a_slow_reader_is_flow_controlled_and_arrives_in_order() -> None:
    payload = os.urandom(20 * 1024 * 1024)
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        producer = Producer(payload)
        conn = relay.adopt(ours, producer)
        assert conn.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        # The peer does not read yet: the socket buffers fill and the producer gets paused.
        await until(lambda: producer.paused)
        await asyncio.sleep(0.05)
        assert producer.paused and producer.pos < len(payload)
        assert await read_to_eof(peer) == payload
        assert await producer.lost is None

    assert "pause_writing" in producer.calls and "resume_writing" in producer.calls
    # Pending output never exceeds the high-water mark by more than the write that crossed it.
    assert 64 * 1024 < producer.max_buffered <= 64 * 1024 + CHUNK


async def test_write_buffer_limits() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.set_write_buffer_limits(high=1000)
        assert conn.get_write_buffer_limits() == (250, 1000)
        conn.set_write_buffer_limits(low=100)
        assert conn.get_write_buffer_limits() == (100, 400)
        with pytest.raises(ValueError):
            conn.set_write_buffer_limits(high=10, low=20)
        conn.write(b"x" * BIG)
        assert conn.get_write_buffer_size() > 400
        assert protocol.calls.count("pause_writing") == 1
        conn.write(b"y")
        assert protocol.calls.count("pause_writing") == 1, "paused once, not once per write"
        # Raising the limit above what is pending does not resume: only draining does.
        conn.set_write_buffer_limits(high=BIG * 2)
        assert "resume_writing" not in protocol.calls
        assert len(await read_exactly(peer, BIG + 1)) == BIG + 1
        await until(lambda: "resume_writing" in protocol.calls)
        assert conn.get_write_buffer_size() == 0


async def test_close_flushes_pending_output_then_calls_connection_lost() -> None:
    payload = os.urandom(BIG)
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.write(payload)
        assert conn.get_write_buffer_size() > 0
        conn.close()
        conn.close()
        assert conn.is_closing() and not conn.is_reading()
        conn.write(b"ignored after close")
        assert not protocol.lost.done(), "connection_lost must not be called synchronously"
        assert relay.connections == 1, "the fd stays open until the output is sent"
        assert await read_to_eof(peer) == payload
        assert await protocol.lost is None
        assert relay.connections == 0


async def test_close_without_pending_output_closes_at_once_but_reports_later() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.write(b"last words")
        conn.close()
        assert relay.connections == 0 and conn.fd == -1
        assert not protocol.lost.done()
        assert await read_to_eof(peer) == b"last words"
        assert await protocol.lost is None


async def test_abort_drops_pending_output() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.write(b"z" * BIG)
        assert conn.get_write_buffer_size() > 0
        conn.abort()
        assert conn.is_closing() and conn.get_write_buffer_size() == 0
        assert not protocol.lost.done()
        assert await protocol.lost is None
        received = await read_to_eof(peer)
        assert len(received) < BIG and received == b"z" * len(received)
        assert relay.connections == 0


async def test_write_eof_shuts_down_the_write_side_only() -> None:
    ours, peer = tcp_pair()
    loop = asyncio.get_running_loop()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        assert conn.can_write_eof()
        conn.write(b"w" * BIG)
        conn.write_eof()
        with pytest.raises(RuntimeError):
            conn.write(b"after eof")
        assert await read_to_eof(peer) == b"w" * BIG
        await loop.sock_sendall(peer, b"still reading")
        await until(lambda: protocol.data == b"still reading")
        assert not protocol.lost.done()


# Reading ---------------------------------------------------------------------------------------


async def test_pause_reading_stops_data_received_until_resumed() -> None:
    ours, peer = tcp_pair()
    loop = asyncio.get_running_loop()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.pause_reading()
        conn.pause_reading()
        assert not conn.is_reading()
        await loop.sock_sendall(peer, b"held back")
        await asyncio.sleep(0.1)
        assert protocol.chunks == []
        conn.resume_reading()
        conn.resume_reading()
        assert conn.is_reading()
        await until(lambda: protocol.data == b"held back")


async def test_eof_received_true_keeps_the_write_side_open() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder(keep_open=True)
        conn = relay.adopt(ours, protocol)
        peer.shutdown(socket.SHUT_WR)
        await until(lambda: "eof_received" in protocol.calls)
        await asyncio.sleep(0.05)  # EOF stays readable: it must not be reported again
        assert protocol.calls == ["connection_made", "eof_received"]
        assert not conn.is_closing()
        conn.write(b"reply after eof")
        conn.close()
        assert await read_to_eof(peer) == b"reply after eof"
        assert await protocol.lost is None


async def test_eof_received_false_closes_the_connection() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Recorder(keep_open=None)
        conn = relay.adopt(ours, protocol)
        peer.shutdown(socket.SHUT_WR)
        assert await protocol.lost is None
        assert conn.is_closing()
        assert protocol.calls == ["connection_made", "eof_received", "connection_lost"]
        assert await read_to_eof(peer) == b""


async def test_peer_reset_gives_connection_lost_with_the_os_error() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay:
        protocol = Recorder()
        relay.adopt(ours, protocol)
        reset(peer)
        exc = await protocol.lost
        assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
        assert "eof_received" not in protocol.calls
        assert relay.connections == 0


async def test_write_to_a_reset_peer_gives_connection_lost_with_the_os_error() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        conn.pause_reading()  # the write, not a read, must find out
        reset(peer)
        await asyncio.sleep(0.05)
        for _ in range(3):
            conn.write(b"x" * 1000)
        exc = await protocol.lost
        assert isinstance(exc, OSError)
        assert exc.errno in (errno.ECONNRESET, errno.EPIPE)


# Errors in protocol callbacks ------------------------------------------------------------------


class Exploding(Echo):
    def data_received(self, data: bytes) -> None:
        if data == b"boom":
            raise ValueError("boom")
        super().data_received(data)


async def test_exception_in_data_received_is_reported_and_kills_only_that_connection() -> None:
    contexts = capture_exceptions()
    loop = asyncio.get_running_loop()
    (ours1, peer1), (ours2, peer2) = tcp_pair(), tcp_pair()
    with open_relay() as relay, peer1, peer2:
        bad, good = Exploding(), Exploding()
        relay.adopt(ours1, bad)
        relay.adopt(ours2, good)
        await loop.sock_sendall(peer1, b"boom")
        exc = await bad.lost
        assert isinstance(exc, ValueError)
        assert len(contexts) == 1
        assert contexts[0]["exception"] is exc
        assert contexts[0]["protocol"] is bad and contexts[0]["transport"] is bad.conn
        assert await read_to_eof(peer1) == b""

        await loop.sock_sendall(peer2, b"still fine")
        assert await read_exactly(peer2, 10) == b"still fine"
        assert relay.connections == 1


async def test_exception_in_connection_made_propagates_from_adopt_and_closes_the_fd() -> None:
    class Refuses(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raise RuntimeError("no thanks")

    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = Refuses()
        with pytest.raises(RuntimeError, match="no thanks"):
            relay.adopt(ours, protocol)
        assert relay.connections == 0
        assert await read_to_eof(peer) == b""
        await asyncio.sleep(0.01)
        assert not protocol.lost.done()


async def test_exception_in_pause_writing_is_reported_without_closing() -> None:
    class BadPause(Recorder):
        def pause_writing(self) -> None:
            raise RuntimeError("pause failed")

    contexts = capture_exceptions()
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        protocol = BadPause()
        conn = relay.adopt(ours, protocol)
        conn.write(b"p" * BIG)
        assert [ctx["message"] for ctx in contexts] == ["protocol.pause_writing() failed"]
        assert not conn.is_closing()
        assert len(await read_exactly(peer, BIG)) == BIG


# Detach ----------------------------------------------------------------------------------------


async def test_detach_hands_back_a_working_fd_without_connection_lost() -> None:
    ours, peer = tcp_pair()
    loop = asyncio.get_running_loop()
    with open_relay() as relay, peer:
        protocol = Recorder()
        conn = relay.adopt(ours, protocol)
        await loop.sock_sendall(peer, b"before")
        await until(lambda: protocol.data == b"before")

        fd = conn.detach()
        assert relay.connections == 0 and conn.is_closing() and conn.fd == -1
        with pytest.raises(RuntimeError):
            conn.detach()
        # Handed to the event loop, as for a TLS upgrade.
        reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
        await loop.sock_sendall(peer, b"after")
        assert await reader.readexactly(5) == b"after"
        writer.write(b"from the loop")
        assert await read_exactly(peer, 13) == b"from the loop"
        conn.write(b"ignored: detached")
        writer.close()
        await writer.wait_closed()
        assert await read_to_eof(peer) == b""
        assert protocol.data == b"before" and not protocol.lost.done()


async def test_detach_refuses_while_output_is_pending() -> None:
    ours, peer = tcp_pair()
    with open_relay() as relay, peer:
        conn = relay.adopt(ours, Recorder())
        conn.write(b"q" * BIG)
        with pytest.raises(RuntimeError, match="pending"):
            conn.detach()
        assert relay.connections == 1


# Batches: callbacks that close or adopt connections in the middle of one epoll batch -----------


async def test_fd_reused_inside_one_batch_does_not_misroute_events() -> None:
    """Two connections ready in the same batch; the first served kills the other and adopts a
    new socket under the very same fd number. The killed one's event must be dropped, not
    dispatched to the newcomer.

    The newcomer's socket already holds data when it is adopted. Dispatched correctly, it is
    read in a later batch (a new epoll_wait); misrouted, the victim's event would make the relay
    read it within the killing batch. A flag set by the killer and cleared by call_soon (which
    runs after the batch, before the next one) tells the two apart."""
    loop = asyncio.get_running_loop()
    (ours_a, peer_a), (ours_b, peer_b), (ours_c, peer_c) = tcp_pair(), tcp_pair(), tcp_pair()
    victims: list[Recorder] = []
    in_killing_batch = False

    def batch_over() -> None:
        nonlocal in_killing_batch
        in_killing_batch = False

    class Newcomer(Recorder):
        read_in_killing_batch: bool | None = None

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.read_in_killing_batch is None:
                self.read_in_killing_batch = in_killing_batch

    class Killer(Recorder):
        other: Killer

        def data_received(self, data: bytes) -> None:
            nonlocal in_killing_batch
            super().data_received(data)
            if victims:
                return
            in_killing_batch = True
            loop.call_soon(batch_over)
            victim = self.other
            victims.append(victim)
            victim_fd = victim.transport.fd
            victim.transport.abort()
            os.dup2(ours_c.fileno(), victim_fd)  # the new socket takes the victim's fd number
            ours_c.close()
            assert relay.adopt(victim_fd, newcomer).fd == victim_fd

    with open_relay() as relay, peer_a, peer_b, peer_c:
        newcomer = Newcomer()
        a, b = Killer(), Killer()
        a.other, b.other = b, a
        relay.adopt(ours_a, a)
        relay.adopt(ours_b, b)
        peer_c.send(b"for the newcomer")
        # Both peers send before the loop polls again: both events land in one epoll batch.
        peer_a.send(b"from a")
        peer_b.send(b"from b")
        await until(lambda: newcomer.data == b"for the newcomer")
        victim = victims[0]
        assert victim.chunks == []
        assert newcomer.read_in_killing_batch is False, "the victim's event reached the newcomer"
        assert await victim.lost is None
        assert relay.connections == 2


async def test_relay_close_inside_a_callback_of_a_batch() -> None:
    (ours_a, peer_a), (ours_b, peer_b) = tcp_pair(), tcp_pair()
    relay = Relay(asyncio.get_running_loop())

    class Closer(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            relay.close()

    with peer_a, peer_b:
        a, b = Closer(), Closer()
        relay.adopt(ours_a, a)
        relay.adopt(ours_b, b)
        peer_a.send(b"1")
        peer_b.send(b"2")
        assert await a.lost is None and await b.lost is None
        assert len(a.chunks) + len(b.chunks) == 1
        assert relay.closed and relay.connections == 0


# Relay.close and listeners ---------------------------------------------------------------------


async def test_relay_close_aborts_everything_and_is_idempotent() -> None:
    relay = Relay(asyncio.get_running_loop())
    lsock = listening_socket()
    address = lsock.getsockname()
    relay.listen(lsock, Recorder)
    pairs = [tcp_pair() for _ in range(3)]
    protocols = [Recorder() for _ in pairs]
    for (ours, _), protocol in zip(pairs, protocols, strict=True):
        relay.adopt(ours, protocol)
    protocols[0].transport.write(b"x" * BIG)  # pending output is dropped too

    relay.close()
    relay.close()
    assert relay.closed and relay.connections == 0
    assert not any(p.lost.done() for p in protocols), "connection_lost must come from call_soon"
    assert [await p.lost for p in protocols] == [None, None, None]
    for _, peer in pairs:
        with peer:
            await read_to_eof(peer)
    assert lsock.fileno() == -1
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*address)
    ours, peer = tcp_pair()
    with pytest.raises(RuntimeError), ours, peer:
        relay.adopt(ours, Recorder())


async def test_listener_close_stops_accepting() -> None:
    with open_relay() as relay:
        lsock = listening_socket()
        address = lsock.getsockname()
        listener = relay.listen(lsock, Echo)
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        listener.close()
        listener.close()
        assert listener.closed
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*address)
        writer.write(b"pong")  # accepted connections live on
        assert await reader.readexactly(4) == b"pong"
        writer.close()
        await writer.wait_closed()


async def test_listener_pauses_when_out_of_file_descriptors() -> None:
    contexts = capture_exceptions()
    with open_relay() as relay:
        lsock = listening_socket()
        relay.listen(lsock, Echo)
        clients = [socket.socket() for _ in range(3)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        # Every fd number below the limit is taken, so accept() fails with EMFILE (connect()
        # makes no fd).
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            for client in clients:
                client.connect(lsock.getsockname())
            await asyncio.sleep(0.05)
            assert relay.connections == 0
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # The listener tries again after its pause and takes the whole backlog.
        await until(lambda: relay.connections == 3)
        assert contexts == []
        for client in clients:
            with client:
                client.setblocking(False)
                await asyncio.get_running_loop().sock_sendall(client, b"ok")
                assert await read_exactly(client, 2) == b"ok"


# Stress ----------------------------------------------------------------------------------------


async def test_many_concurrent_echo_clients_get_every_byte_back() -> None:
    rng = random.Random(20240611)

    async def client(address: tuple[str, int], seed: int) -> None:
        rng = random.Random(seed)
        # Mostly small messages, as a Postgres client sends, and a few large ones.
        messages = [
            rng.randbytes(rng.randint(1, 512) if rng.random() < 0.95 else rng.randint(1, 40_000))
            for _ in range(1000)
        ]
        expected = b"".join(messages)
        reader, writer = await asyncio.open_connection(*address)

        async def send() -> None:
            for i, message in enumerate(messages):
                writer.write(message)
                if i % 50 == 0:
                    await writer.drain()
                    await asyncio.sleep(0)

        sender = asyncio.create_task(send())
        assert await reader.readexactly(len(expected)) == expected
        await sender
        writer.close()
        await writer.wait_closed()

    with open_relay() as relay:
        lsock = listening_socket()
        relay.listen(lsock, Echo)
        address = lsock.getsockname()
        await asyncio.gather(*(client(address, rng.randrange(1 << 30)) for _ in range(50)))
        await until(lambda: relay.connections == 0)


# Deferred writes -------------------------------------------------------------------------------


class _Fanout(asyncio.Protocol):
    """On data, writes it to every connection in ``outs`` (all on the same relay)."""

    def __init__(self, outs: list[Conn], seen: list[int]) -> None:
        self.outs = outs
        self.seen = seen

    def data_received(self, data: bytes) -> None:
        for out in self.outs:
            # Inside the relay's batch: a deferring connection has not sent anything yet.
            self.seen.append(out.get_write_buffer_size())
            out.write(data)
            self.seen.append(out.get_write_buffer_size())


async def test_deferred_writes_go_out_when_the_batch_ends() -> None:
    with open_relay() as relay:
        ours_in, peer_in = tcp_pair()
        outs: list[Conn] = []
        peers: list[socket.socket] = []
        for defer in (True, False):
            ours, peer = tcp_pair()
            conn = relay.adopt(ours, Recorder())
            conn.defer_writes = defer
            outs.append(conn)
            peers.append(peer)
        seen: list[int] = []
        relay.adopt(ours_in, _Fanout(outs, seen))
        peer_in.send(b"hello")
        # Both peers get the bytes; the deferring one only after the batch.
        assert await read_exactly(peers[0], 5) == b"hello"
        assert await read_exactly(peers[1], 5) == b"hello"
        # (deferring: 0 then 5 pending; direct: 0 then 0)
        assert seen == [0, 5, 0, 0]
        assert outs[0].get_write_buffer_size() == 0
        # Outside a batch (here: from the test), a deferring connection sends at once.
        outs[0].write(b"now")
        assert outs[0].get_write_buffer_size() == 0
        assert await read_exactly(peers[0], 3) == b"now"
        for s in (peer_in, *peers):
            s.close()


class _WriteThenClose(asyncio.Protocol):
    def __init__(self, out: Conn) -> None:
        self.out = out

    def data_received(self, data: bytes) -> None:
        self.out.write(data)
        self.out.close()


async def test_close_in_a_batch_sends_the_deferred_writes_first() -> None:
    with open_relay() as relay:
        ours_in, peer_in = tcp_pair()
        ours, peer = tcp_pair()
        out = relay.adopt(ours, Recorder())
        out.defer_writes = True
        relay.adopt(ours_in, _WriteThenClose(out))
        peer_in.send(b"last words")
        assert await read_to_eof(peer) == b"last words"
        peer_in.close()
        peer.close()
