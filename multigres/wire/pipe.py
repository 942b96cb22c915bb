"""Two protocols joined in memory, each the other's transport (local mode: the gateway hands
statements to a pooler in the same process without a network hop).

A write is delivered at once, as a ``data_received`` call on the peer, in the writer's stack:
no copy, no syscall, no event-loop turn. A protocol is never re-entered, though: bytes for a
protocol that is still inside its own ``data_received`` (it wrote, and the peer answered at
once) wait, and are delivered in order when that call returns, as a socket would. A protocol
may still be called back from inside its writes by the *other* end's answer (update state
before writing, as the relay's users do anyway). ``pause_reading`` holds deliveries until
``resume_reading``; closing either end tells both, from the event loop (``call_soon``),
never from inside a write.
"""

from __future__ import annotations

import asyncio
from typing import Any


class PipeTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol,
                 name: str) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._name = name
        self.peer: PipeTransport | None = None
        self._closing = False
        self._paused = False
        self._delivering = False
        self._held: list[bytes] = []

    def __repr__(self) -> str:
        return f"<PipeTransport {self._name}{' closing' if self._closing else ''}>"

    # -- writing: delivered to the peer's protocol -----------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self.peer
        if self._closing or peer is None or peer._closing:
            return
        peer._deliver(data if type(data) is bytes else bytes(data))

    def _deliver(self, data: bytes) -> None:
        """Hand ``data`` to this end's protocol, unless it is paused or already inside
        ``data_received`` (then it waits its turn)."""
        if self._delivering or self._paused:
            self._held.append(data)
            return
        self._delivering = True
        try:
            self._protocol.data_received(data)
            while self._held and not self._paused and not self._closing:
                self._protocol.data_received(self._held.pop(0))
        finally:
            self._delivering = False

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    # -- reading ---------------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._held and not self._delivering:
            self._deliver(self._held.pop(0))

    def is_reading(self) -> bool:
        return not self._paused

    # -- closing ---------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        peer = self.peer
        if peer is not None and not peer._closing:
            peer._closing = True
            self._loop.call_soon(peer._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("peername", "sockname"):
            return ("local", 0)
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]


def pipe(a: asyncio.Protocol, b: asyncio.Protocol) -> tuple[PipeTransport, PipeTransport]:
    """Join ``a`` and ``b``: each gets ``connection_made`` with its end."""
    loop = asyncio.get_running_loop()
    ta, tb = PipeTransport(loop, a, "a"), PipeTransport(loop, b, "b")
    ta.peer, tb.peer = tb, ta
    a.connection_made(ta)
    b.connection_made(tb)
    return ta, tb
