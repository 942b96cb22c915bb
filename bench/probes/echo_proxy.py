# A floor probe: the cheapest possible uvloop proxy (no parsing, one server connection per
# client). Measures the event loop + syscall cost per transaction that any Python proxy pays.
# Usage: python bench/probes/echo_proxy.py LISTEN_PORT PG_PORT
from __future__ import annotations

import asyncio
import sys

import uvloop


class Server(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.t: asyncio.Transport | None = None

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t  # type: ignore[assignment]

    def data_received(self, d: bytes) -> None:
        assert self.client.t is not None
        self.client.t.write(d)

    def connection_lost(self, e: Exception | None) -> None:
        if self.client.t is not None:
            self.client.t.close()


class Client(asyncio.Protocol):
    def __init__(self, pg_port: int) -> None:
        self.pg_port = pg_port
        self.t: asyncio.Transport | None = None
        self.buf: list[bytes] = []
        self.server: Server | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t  # type: ignore[assignment]
        self.task = asyncio.ensure_future(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, server = await loop.create_connection(
            lambda: Server(self), "127.0.0.1", self.pg_port
        )
        self.server = server
        assert server.t is not None
        for d in self.buf:
            server.t.write(d)

    def data_received(self, d: bytes) -> None:
        if self.server is None or self.server.t is None:
            self.buf.append(d)
        else:
            self.server.t.write(d)

    def connection_lost(self, e: Exception | None) -> None:
        if self.server is not None and self.server.t is not None:
            self.server.t.close()


async def main(port: int, pg_port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Client(pg_port), "127.0.0.1", port)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
