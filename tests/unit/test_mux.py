"""The gateway -> pooler carrier (pyx/mux.pyx): many sessions over one connection, each
session's bytes framed with its channel, on real loopback sockets through the relay.

The sessions here are plain protocols joined to channels by the in-memory pipe, as the
gateway's Upstream and the pooler's Client are."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from multigres._cy.mux import MUX_ACCEPT, MUX_DECLINE, MUX_REQUEST, MuxCarrier
from multigres._cy.relay import Relay
from multigres.wire.pipe import pipe


class Session(asyncio.Protocol):
    """One session's protocol: keeps what it got; the pooler's side may echo it back."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.notices: list[str] = []
        self.fail = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("a bug in this session's code")
        self.data += data
        if self.echo and self.transport is not None:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.notices.append("pause")

    def resume_writing(self) -> None:
        self.notices.append("resume")


@dataclass
class Pair:
    relay: Relay
    gateway: MuxCarrier
    pooler: MuxCarrier
    # The sessions the pooler's side started, in the order their channels opened.
    started: list[Session] = field(default_factory=list)

    def open(self) -> Session:
        s = Session()
        pipe(s, self.gateway.open_channel())
        return s


async def until(predicate: Callable[[], object], what: str, tries: int = 2000) -> None:
    for _ in range(tries):  # 2000: 10 s
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def ask(relay: Relay, a: socket.socket, b: socket.socket, answer: bytes) -> MuxCarrier:
    """A gateway's carrier on ``a`` that asked; ``b`` (the server's side) checked the request
    and gave ``answer``."""
    carrier = MuxCarrier.client()
    relay.adopt(a, carrier)
    carrier.send_request()
    loop = asyncio.get_running_loop()
    assert await loop.sock_recv(b, 8) == MUX_REQUEST
    await loop.sock_sendall(b, answer)
    return carrier


@asynccontextmanager
async def carrier_pair(echo: bool = True) -> AsyncIterator[Pair]:
    """A gateway-side carrier and a pooler-side one over a loopback socket pair, after the
    request and its answer went over the wire as a pooler's would."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    relay = Relay(loop)
    started: list[Session] = []

    def factory() -> Session:
        s = Session(echo=echo)
        started.append(s)
        return s

    try:
        gateway = await ask(relay, a, b, MUX_ACCEPT)
        assert await asyncio.wait_for(gateway.ready, 5) is True
        pooler = MuxCarrier.server(factory)
        relay.adopt(b, pooler)
        yield Pair(relay, gateway, pooler, started)
    finally:
        relay.close()


def frame(kind: bytes, channel: int, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!ii", 8 + len(payload), channel) + payload


async def test_many_sessions_round_trip_in_order() -> None:
    rng = random.Random(7)
    async with carrier_pair() as pair:
        sessions = [pair.open() for _ in range(30)]
        sent = [bytearray() for _ in sessions]
        for _ in range(6):
            for i, s in enumerate(sessions):
                # Tiny writes, writes above the carrier's 16 KB copy buffer, and a few MB.
                n = rng.choice([1, 100, 5000, 20000, 300000]) if i % 10 else 2_000_000
                chunk = rng.randbytes(n)
                sent[i] += chunk
                assert s.transport is not None
                s.transport.write(chunk)
        await until(lambda: all(len(s.data) == len(sent[i]) for i, s in enumerate(sessions)),
                    "every session's echo")
        assert [bytes(s.data) for s in sessions] == [bytes(x) for x in sent]
        assert [bytes(s.data) for s in pair.started] == [bytes(x) for x in sent]
        assert pair.gateway.channels == pair.pooler.channels == 30


async def test_frames_split_anywhere_are_put_together() -> None:
    """A read event can end anywhere in a frame, its header included."""
    big = bytes(range(256)) * 100
    stream = (frame(b"O", 5) + frame(b"D", 5, b"hello") + frame(b"O", 9) + frame(b"D", 5, big)
              + frame(b"D", 9, b"x") + frame(b"X", 5))
    rng = random.Random(11)
    cuts = [[k] for k in range(0, 60)] + [[len(stream) - k] for k in range(1, 20)]
    cuts += [sorted(rng.sample(range(1, len(stream)), 40)) for _ in range(20)]
    for cut in cuts:
        async with carrier_pair(echo=False) as pair:
            pieces = [stream[i:j] for i, j in zip([0, *cut], [*cut, len(stream)], strict=True)]
            for piece in pieces:
                pair.pooler.data_received(piece)
            five, nine = pair.started
            assert bytes(five.data) == b"hello" + big, cut
            assert bytes(nine.data) == b"x"
            await asyncio.wait_for(five.lost, 5)
            assert not nine.lost.done()
            assert pair.pooler.channels == 1


async def test_closing_either_end_closes_that_session_only() -> None:
    async with carrier_pair() as pair:
        one, two, three = pair.open(), pair.open(), pair.open()
        await until(lambda: len(pair.started) == 3, "the channels to open")
        assert one.transport is not None and two.transport is not None
        one.transport.close()  # the gateway's session ends
        await until(lambda: pair.started[0].lost.done(), "the pooler's session to end")
        peer_two = pair.started[1]
        assert peer_two.transport is not None
        peer_two.transport.close()  # the pooler ends a session (a FATAL, a KILL)
        await asyncio.wait_for(two.lost, 5)
        assert three.transport is not None
        three.transport.write(b"still here")
        await until(lambda: bytes(three.data) == b"still here", "the third session's echo")
        assert not three.lost.done()
        await until(lambda: pair.gateway.channels == pair.pooler.channels == 1,
                    "both sides to forget the closed channels")


async def test_a_session_that_stops_reading_holds_its_writer_only() -> None:
    """Backpressure is per session: a gateway session that stops reading (its client is
    slow) pauses the pooler's writer of that session, not the carrier."""
    async with carrier_pair() as pair:
        slow, fast = pair.open(), pair.open()
        await until(lambda: len(pair.started) == 2, "the channels to open")
        assert slow.transport is not None and fast.transport is not None
        slow.transport.pause_reading()
        await until(lambda: pair.started[0].notices == ["pause"], "the writer to be paused")
        assert pair.started[1].notices == []
        slow.transport.write(b"held")  # echoed, then held in the gateway's pipe
        fast.transport.write(b"goes")
        await until(lambda: bytes(fast.data) == b"goes", "the other session's echo")
        await asyncio.sleep(0.05)
        assert bytes(slow.data) == b""
        slow.transport.resume_reading()
        await until(lambda: bytes(slow.data) == b"held", "the held echo")
        await until(lambda: pair.started[0].notices == ["pause", "resume"],
                    "the writer to resume")
        # And the other way: the pooler's session stops reading what the gateway sends.
        peer = pair.started[1]
        assert peer.transport is not None
        peer.transport.pause_reading()
        await until(lambda: fast.notices == ["pause"], "the gateway's writer to be paused")
        peer.transport.resume_reading()
        await until(lambda: fast.notices == ["pause", "resume"], "the gateway's writer")


async def test_a_session_that_fails_is_closed_alone(caplog: pytest.LogCaptureFixture) -> None:
    async with carrier_pair() as pair:
        bad, good = pair.open(), pair.open()
        await until(lambda: len(pair.started) == 2, "the channels to open")
        pair.started[0].fail = True
        assert bad.transport is not None and good.transport is not None
        bad.transport.write(b"boom")
        await asyncio.wait_for(bad.lost, 5)
        good.transport.write(b"fine")
        await until(lambda: bytes(good.data) == b"fine", "the other session's echo")
        assert not pair.gateway.closed and not pair.pooler.closed
        assert "session on channel 1 failed" in caplog.text


@pytest.mark.parametrize("length", [3, 1024 * 1024 + 9])
async def test_a_broken_frame_closes_the_carrier_and_its_sessions(length: int) -> None:
    """Below the header's own 8 bytes, or above the 1 MB a sender puts in one frame."""
    async with carrier_pair() as pair:
        sessions = [pair.open() for _ in range(3)]
        await until(lambda: len(pair.started) == 3, "the channels to open")
        pair.pooler.data_received(b"D" + struct.pack("!ii", length, 1))
        for s in pair.started:
            await asyncio.wait_for(s.lost, 5)
        for s in sessions:  # the gateway's side sees its carrier close
            await asyncio.wait_for(s.lost, 5)
        assert pair.gateway.closed and pair.pooler.closed
        with pytest.raises(ConnectionResetError):
            pair.gateway.open_channel()


@pytest.mark.parametrize("answer", [MUX_DECLINE, b"E\x00\x00\x00\x05S"])
async def test_a_server_that_declines_or_does_not_know_the_request(answer: bytes) -> None:
    """``N`` (a pooler of several workers) or an ErrorResponse (Postgres, an older pooler):
    no carrier, and the gateway knows to open a connection per session."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    relay = Relay(loop)
    try:
        carrier = await ask(relay, a, b, answer)
        assert await asyncio.wait_for(carrier.ready, 5) is False
        assert carrier.closed
    finally:
        relay.close()
        b.close()


async def test_the_server_closing_before_it_answers() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    relay = Relay(loop)
    try:
        carrier = MuxCarrier.client()
        relay.adopt(a, carrier)
        carrier.send_request()
        b.close()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(carrier.ready, 5)
    finally:
        relay.close()


# A model of many sessions' lives on one carrier: whatever the order of opens, writes both ways
# and closes from either side, each session's end gets exactly what the other end wrote before
# the close, and a close reaches the other end.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.just(0), st.just(0)),
        # Sizes around the 16 KB copy buffer and the 1 MB frame limit.
        st.tuples(st.sampled_from(["to_pooler", "to_gateway"]), st.integers(0, 7),
                  st.sampled_from([1, 100, 16384, 16385, 40000, 1_048_576, 1_500_000])),
        st.tuples(st.sampled_from(["close_gateway", "close_pooler"]), st.integers(0, 7),
                  st.just(0)),
    ),
    max_size=40,
)


# No shrinking: a failing example waits seconds for bytes that never come.
@settings(max_examples=40, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(ops=_OPS, seed=st.integers(0, 2**32 - 1))
def test_any_life_of_sessions_on_a_carrier(ops: list[tuple[str, int, int]], seed: int) -> None:
    asyncio.run(_life(ops, random.Random(seed)))


def _opened(pair: Pair, n: int) -> bool:
    return len(pair.started) >= n


def _has(s: Session, n: int) -> bool:
    return len(s.data) == n


async def _life(ops: list[tuple[str, int, int]], rng: random.Random) -> None:
    async with carrier_pair(echo=False) as pair:
        gw: list[Session] = []
        sent_up: list[bytearray] = []    # gateway -> pooler, per session
        sent_down: list[bytearray] = []  # pooler -> gateway
        closed: list[bool] = []
        for op, i, n in [("open", 0, 0), ("open", 0, 0), *ops]:
            if op == "open":
                gw.append(pair.open())
                sent_up.append(bytearray())
                sent_down.append(bytearray())
                closed.append(False)
                continue
            if not gw:
                continue
            i %= len(gw)
            if closed[i]:
                continue
            if op in ("to_gateway", "close_pooler"):
                # The pooler's end exists once the open frame arrived.
                await until(partial(_opened, pair, i + 1), "the channel to open")
            if op == "to_pooler":
                data = rng.randbytes(n)
                sent_up[i] += data
                gw[i].transport.write(data)  # type: ignore[union-attr]
            elif op == "to_gateway":
                data = rng.randbytes(n)
                sent_down[i] += data
                pair.started[i].transport.write(data)  # type: ignore[union-attr]
            else:
                closed[i] = True
                end = gw[i] if op == "close_gateway" else pair.started[i]
                end.transport.close()  # type: ignore[union-attr]
        await until(lambda: len(pair.started) == len(gw), "every channel to open")
        for i, s in enumerate(gw):
            peer = pair.started[i]
            if closed[i]:
                await asyncio.wait_for(s.lost, 5)
                await asyncio.wait_for(peer.lost, 5)
                # Bytes written before the close arrive (or the close overtook them, never
                # a byte out of order).
                assert sent_down[i].startswith(bytes(s.data))
                assert sent_up[i].startswith(bytes(peer.data))
            else:
                await until(partial(_has, s, len(sent_down[i])), "bytes down", 400)
                await until(partial(_has, peer, len(sent_up[i])), "bytes up", 400)
                assert bytes(s.data) == bytes(sent_down[i])
                assert bytes(peer.data) == bytes(sent_up[i])
                assert not s.lost.done() and not peer.lost.done()
