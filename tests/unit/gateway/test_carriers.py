"""The gateway's carriers (upstream.Carriers): one connection per pooler address, shared by
every session, opened once however many sessions ask at the same moment; a pooler that
declines is not asked again for a while; a carrier that breaks is replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from multigres._cy.mux import MUX_REQUEST, MuxCarrier
from multigres._cy.relay import Relay
from multigres.gateway.upstream import KEEPIDLE, Carriers
from multigres.netutil import free_port
from multigres.wire.pipe import pipe


class FakePooler:
    """Answers each carrier request with ``answer`` (None: never answers)."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.accepted = 0
        self.peers: list[int] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.peers.append(writer.get_extra_info("peername")[1])
        self.writers.append(writer)
        assert await reader.readexactly(8) == MUX_REQUEST
        if self.answer is not None:
            writer.write(self.answer)
            await writer.drain()
        await reader.read()  # hold the connection until the gateway closes it


@asynccontextmanager
async def pooler(answer: bytes | None) -> AsyncIterator[tuple[FakePooler, int, Carriers]]:
    fake = FakePooler(answer)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = Relay(asyncio.get_running_loop())
    carriers = Carriers(relay)
    try:
        yield fake, port, carriers
    finally:
        carriers.close()
        relay.close()
        for w in fake.writers:
            w.close()
        server.close()


async def until_closed(carrier: MuxCarrier) -> None:
    for _ in range(250):
        if carrier.closed:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the carrier did not close within 5 s")


def keepalive_timer_on(local_port: int) -> bool:
    """/proc/net/tcp's timer column says 2 (keepalive) for the socket on ``local_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == local_port and fields[3] == "01":
            return fields[5].split(":")[0] == "02"
    raise AssertionError(f"no connection from port {local_port}")


async def test_one_carrier_per_pooler_however_many_ask() -> None:
    async with pooler(b"M") as (fake, port, carriers):
        got = await asyncio.gather(*(carriers.get("127.0.0.1", port, 5) for _ in range(10)))
        assert got[0] is not None and all(c is got[0] for c in got)
        assert await carriers.get("127.0.0.1", port, 5) is got[0]
        assert fake.accepted == 1 and len(carriers) == 1
        # A silent peer is found out by TCP keepalives, not only by the next write.
        assert KEEPIDLE <= 10 and keepalive_timer_on(fake.peers[0])


async def test_a_broken_carrier_is_replaced() -> None:
    async with pooler(b"M") as (fake, port, carriers):
        first = await carriers.get("127.0.0.1", port, 5)
        assert first is not None
        fake.writers[0].close()  # the pooler restarted
        await until_closed(first)
        assert len(carriers) == 0
        second = await carriers.get("127.0.0.1", port, 5)
        assert second is not None and second is not first and fake.accepted == 2


async def test_a_pooler_that_declines_is_not_asked_again_at_once() -> None:
    async with pooler(b"N") as (fake, port, carriers):
        assert await carriers.get("127.0.0.1", port, 5) is None
        assert await carriers.get("127.0.0.1", port, 5) is None
        assert fake.accepted == 1 and len(carriers) == 0


async def test_a_pooler_that_never_answers_times_out() -> None:
    async with pooler(None) as (fake, port, carriers):
        with pytest.raises(TimeoutError):
            await carriers.get("127.0.0.1", port, 0.3)
        assert fake.accepted == 1


async def test_nobody_listening() -> None:
    relay = Relay(asyncio.get_running_loop())
    try:
        with pytest.raises(OSError):
            await Carriers(relay).get("127.0.0.1", free_port(), 5)
    finally:
        relay.close()



async def test_an_idle_carrier_is_closed_and_a_busy_one_is_not() -> None:
    """A carrier that carries no session for IDLE_CLOSE seconds goes (its pooler may have left
    the topology and still run); one with a session stays; the next session opens anew."""
    async with pooler(b"M") as (fake, port, carriers):
        carriers.IDLE_CLOSE = 0.2
        idle = await carriers.get("127.0.0.1", port, 5)
        assert idle is not None
        await until_closed(idle)
        assert len(carriers) == 0
        busy = await carriers.get("127.0.0.1", port, 5)
        assert busy is not None and busy is not idle and fake.accepted == 2
        pipe(asyncio.Protocol(), busy.open_channel())
        await asyncio.sleep(0.6)  # three sweeps
        assert not busy.closed and await carriers.get("127.0.0.1", port, 5) is busy
