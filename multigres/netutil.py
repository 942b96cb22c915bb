"""Small network helpers shared by the services, the CLI and the test harness."""

from __future__ import annotations

import asyncio
import errno
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0). Another process may still take it before the
    caller binds: callers that start servers check for "address in use" and retry.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) ``host:port``.

    SO_REUSEADDR, as servers set it: connections in TIME_WAIT after a server stopped do not
    count, only a socket that really holds the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def split_hostport(addr: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse ``HOST:PORT`` (or ``:PORT``, or ``[::1]:PORT``) into its parts."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


async def tcp_connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port`` (each address in turn)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as e:
            sock.close()
            last = e
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last or OSError(f"no address for {host}")


def is_socket_dir(host: str) -> bool:
    """True when ``host`` names a Unix-socket directory, as in libpq and PgBouncer (an absolute
    path): Postgres listens there on ``.s.PGSQL.<port>``."""
    return host.startswith("/")


def pg_address(host: str, port: int) -> str:
    """How a Postgres address reads in messages: ``host:port`` or the socket's path."""
    if is_socket_dir(host):
        return f'socket "{host.rstrip("/")}/.s.PGSQL.{port}"'
    return f"{host}:{port}"


async def pg_connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to the Postgres at ``host:port``: TCP, or the Unix socket
    ``host/.s.PGSQL.port`` when ``host`` is a directory (a pooler beside its Postgres saves the
    TCP stack's cost on every message, as PgBouncer does with ``host=/var/run/postgresql``)."""
    if not is_socket_dir(host):
        return await tcp_connect(host, port)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, f"{host.rstrip('/')}/.s.PGSQL.{port}")
    except BaseException:
        sock.close()
        raise
    return sock


async def open_pg_connection(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams on a connection from ``pg_connect`` (cancel requests and probes)."""
    sock = await pg_connect(host, port)
    if is_socket_dir(host):
        return await asyncio.open_unix_connection(sock=sock)
    return await asyncio.open_connection(sock=sock)
