"""A tiny HTTP/1.1 endpoint on the service's own event loop: /metrics, health and status pages.

Scrapes and status pages are rare, and a thread would share the GIL with the data path anyway,
so each service answers them from its loop: one request per connection (``Connection:
close``), GET and HEAD only, no body. The service supplies one route function.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

log = logging.getLogger("multigres.admin")

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
REQUEST_TIMEOUT = 10.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class Response:
    status: str  # "200 OK"
    content_type: str
    body: bytes


def text(status: str, body: str) -> Response:
    return Response(status, TEXT, body.encode())


Route = Callable[[Request], Awaitable[Response]]


def bind(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket for the endpoint, bound before the service starts so that a taken
    port is one line naming it and its flag."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port} ({flag}): {e.strerror}"
                      ) from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


class HttpServer:
    """Serves ``route`` on a socket bound before (see ``bind``)."""

    def __init__(self, sock: socket.socket, route: Route) -> None:
        self.sock = sock
        self.route = route
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                parts = line.decode("latin-1").split()
                method = parts[0] if parts else ""
                target = parts[1] if len(parts) >= 2 else ""
                path, _, qs = target.partition("?")
                if method not in ("GET", "HEAD"):
                    resp = text("405 Method Not Allowed", "GET only\n")
                else:
                    resp = await self.route(Request(method, path, dict(parse_qsl(qs))))
                head = (f"HTTP/1.1 {resp.status}\r\nContent-Type: {resp.content_type}\r\n"
                        f"Content-Length: {len(resp.body)}\r\nConnection: close\r\n\r\n")
                writer.write(head.encode() + (resp.body if method != "HEAD" else b""))
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("HTTP endpoint failed")
        finally:
            writer.close()
