# A floor probe like echo_proxy.py (Python protocols, bytes forwarded as received, one server
# connection per client), with both connections on a multigres._cy.relay.Relay instead of uvloop
# transports: measures what the relay's C read/write path saves per transaction.
# Usage: python bench/probes/relay_proxy.py LISTEN_PORT PG_PORT
from __future__ import annotations

import asyncio
import socket
import sys
from typing import cast

import uvloop

from multigres._cy.relay import Conn, Relay


class Server(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def data_received(self, d: bytes) -> None:
        assert self.client.t is not None
        self.client.t.write(d)

    def connection_lost(self, e: Exception | None) -> None:
        if self.client.t is not None:
            self.client.t.close()


class Client(asyncio.Protocol):
    def __init__(self, relay: Relay, pg_port: int) -> None:
        self.relay = relay
        self.pg_port = pg_port
        self.t: Conn | None = None
        self.server: Conn | None = None
        self.buf: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = cast(Conn, t)
        self.task = asyncio.ensure_future(self.connect())

    async def connect(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.pg_port))
        self.server = self.relay.adopt(sock, Server(self))
        self.server.writelines(self.buf)

    def data_received(self, d: bytes) -> None:
        if self.server is None:
            self.buf.append(d)
        else:
            self.server.write(d)

    def connection_lost(self, e: Exception | None) -> None:
        if self.server is not None:
            self.server.close()


async def main(port: int, pg_port: int) -> None:
    relay = Relay(asyncio.get_running_loop())
    relay.listen(socket.create_server(("127.0.0.1", port)), lambda: Client(relay, pg_port))
    await asyncio.sleep(3600)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
