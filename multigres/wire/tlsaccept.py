"""Upgrading a client connection to TLS after its SSLRequest (pooler and gateway alike).

Relay connections speak plain TCP only, so TLS moves the socket to uvloop's transports. Two
races make the order matter: the "S" answer must be on the wire before the socket changes
hands, and the client's ClientHello, which follows the "S" at once, must never be read as
protocol bytes: so the socket leaves the relay in the same call that sends "S"
(``answer_ssl_request``), and the handshake starts with the accepted socket itself
(``connect_accepted_socket(..., ssl=...)``), before anything is read.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from multigres._cy.relay import Conn


def answer_ssl_request(transport: asyncio.BaseTransport) -> int:
    """Send "S"; for a relay connection, take its socket off the relay and return its fd
    (else -1: the transport is already uvloop's, to upgrade with ``start_tls``)."""
    if isinstance(transport, Conn):
        transport.defer_writes = False
        transport.write(b"S")
        return int(transport.detach())
    transport.write(b"S")  # type: ignore[attr-defined]
    return -1


async def start_server_tls(
    fd: int,
    transport: asyncio.BaseTransport,
    protocol: asyncio.Protocol,
    ctx: ssl.SSLContext,
) -> asyncio.Transport | None:
    """The TLS transport of the connection ``answer_ssl_request`` answered; its
    ``protocol`` gets ``connection_made`` with it. OSError/ConnectionError if the handshake
    fails (a relay socket is closed then)."""
    loop = asyncio.get_running_loop()
    if fd < 0:
        return await loop.start_tls(transport, protocol, ctx,  # type: ignore[arg-type]
                                    server_side=True)
    sock = socket.socket(fileno=fd)
    factory: Callable[[], asyncio.Protocol] = lambda: protocol  # noqa: E731
    try:
        new, _ = await loop.connect_accepted_socket(factory, sock, ssl=ctx)
    except BaseException:
        sock.close()
        raise
    return new
