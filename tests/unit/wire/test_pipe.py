"""The in-memory pipe of local mode: writes arrive at once and in order, a protocol is never
re-entered, pausing holds bytes, and closing tells both ends."""

from __future__ import annotations

import asyncio

from multigres.wire.pipe import pipe


class Recorder(asyncio.Protocol):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.transport: asyncio.Transport | None = None
        self.depth = 0
        self.max_depth = 0
        self.lost = False
        self.echo = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        self.log.append(f"{self.name}<{data.decode()}")
        if self.echo and self.transport is not None and data.startswith(b"ping"):
            # Answer twice from inside data_received: the peer answers back at once.
            self.transport.write(b"pong" + data[4:])
            self.transport.write(b"more" + data[4:])
        self.depth -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def test_order_and_no_reentry() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    b.echo = True
    ta, _ = pipe(a, b)

    class Pinger(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if data == b"pong1" and self.transport is not None:
                self.transport.write(b"ping2")  # b answers while a is still inside

    log.clear()
    ta.write(b"ping1")
    assert log == ["b<ping1", "a<pong1", "a<more1"]
    assert a.max_depth == 1 and b.max_depth == 1

    log2: list[str] = []
    p, q = Pinger("p", log2), Recorder("q", log2)
    q.echo = True
    tp, _ = pipe(p, q)
    tp.write(b"ping1")
    # p got pong1 and wrote ping2 while q was still inside data_received(ping1): ping2
    # waited until q returned, as on a socket.
    assert log2 == ["q<ping1", "p<pong1", "p<more1", "q<ping2", "p<pong2", "p<more2"]
    assert p.max_depth == 1 and q.max_depth == 1


async def test_pause_resume_and_close() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    ta, tb = pipe(a, b)
    tb.pause_reading()
    ta.write(b"x")
    ta.write(b"y")
    assert log == []
    tb.resume_reading()
    assert log == ["b<x", "b<y"]
    ta.close()
    ta.write(b"late")
    await asyncio.sleep(0)
    assert a.lost and b.lost and tb.is_closing()
    assert log == ["b<x", "b<y"]


async def test_pausing_a_reader_tells_its_writer() -> None:
    """A pipe holds what its reader does not take without bound, so pausing the reader must
    stop the writer, as a full socket buffer would: pause_writing, then resume_writing."""
    log: list[str] = []

    class Writer(Recorder):
        def pause_writing(self) -> None:
            self.log.append(f"{self.name} pause_writing")

        def resume_writing(self) -> None:
            self.log.append(f"{self.name} resume_writing")

    a, b = Writer("a", log), Writer("b", log)
    ta, tb = pipe(a, b)
    tb.pause_reading()
    tb.pause_reading()  # once paused, no second notice
    ta.write(b"x")
    assert log == ["a pause_writing"]
    tb.resume_reading()
    assert log == ["a pause_writing", "b<x", "a resume_writing"]
    ta.close()
    await asyncio.sleep(0)
    tb.pause_reading()  # closed: nobody to tell
    assert log[-1] == "a resume_writing"
