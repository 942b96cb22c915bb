"""The pooler process: listening socket, pools, client registry, cancel routing, upkeep."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from multigres.pooler import backend as backend_mod
from multigres.pooler import msgs
from multigres.pooler.client import Client
from multigres.pooler.config import PoolerConfig
from multigres.pooler.credentials import Credentials
from multigres.pooler.pool import Pool
from multigres.pooler.startup import StartupHandler

log = logging.getLogger("multigres.pooler")


@dataclass
class Stats:
    clients_accepted: int = 0
    auth_failures: int = 0
    cancels: int = 0


class PoolerServer:
    def __init__(self, config: PoolerConfig) -> None:
        self.config = config
        self.pools: dict[tuple[str, str], Pool] = {}
        self.clients: dict[int, Client] = {}
        self.cancel_keys: dict[tuple[int, int], Client] = {}
        self.startup = StartupHandler(self)
        self.credentials = Credentials(config)
        self.stats = Stats()
        self.tls_context = None
        if config.tls_cert is not None and config.tls_key is not None:
            from multigres.wire.tls import make_server_context

            self.tls_context = make_server_context(config.tls_cert, config.tls_key)
        self._next_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.started_at = time.time()
        self.paused = False

    def next_client_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pools ------------------------------------------------------------------------------

    def pool_for(self, user: str, database: str) -> Pool:
        key = (user, database)
        pool = self.pools.get(key)
        if pool is None:
            cfg = self.config
            pool = Pool(
                user, database, cfg.pool_size, self._connect,
                wait_timeout=cfg.query_wait_timeout, lifetime=cfg.server_lifetime,
                idle_timeout=cfg.server_idle_timeout,
            )
            if self.paused:
                pool.pause()
            self.pools[key] = pool
        return pool

    def _connect(self, pool: Pool) -> asyncio.Future[backend_mod.Backend]:
        cfg = self.config
        return asyncio.ensure_future(backend_mod.connect(
            pool, cfg.pg_host, cfg.pg_port, self.credentials.server_login(pool.user), {},
            cfg.server_connect_timeout,
        ))

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, pid: int, key: int) -> None:
        """A CancelRequest from a client: cancel what that client runs, nothing else."""
        client = self.cancel_keys.get((pid, key))
        if client is None:
            return
        self.stats.cancels += 1
        client.cancel_running()

    def send_cancel(self, pid: int, key: int) -> None:
        cfg = self.config

        async def send() -> None:
            try:
                _, writer = await asyncio.open_connection(cfg.pg_host, cfg.pg_port)
            except OSError:
                return
            writer.write(msgs.cancel_request(pid, key))
            await writer.drain()
            writer.close()

        self.spawn(send())

    # -- admin -------------------------------------------------------------------------------

    def start_admin(self, client: Client) -> None:
        from multigres.pooler.admin import AdminConsole

        AdminConsole(self).attach(client)

    # -- serving ------------------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is None:
            sock = listen_socket(self.config.listen_host, self.config.listen_port)
        self._server = await loop.create_server(lambda: Client(self), sock=sock, backlog=4096)
        self._reaper = loop.create_task(self._reap())

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for pool in self.pools.values():
                pool.reap(now)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        for client in list(self.clients.values()):
            if client.transport is not None:
                client.transport.close()
        for pool in self.pools.values():
            for b in list(pool.idle) + list(pool.active):
                b.close()
        for t in list(self._tasks):
            t.cancel()

    def pause(self) -> None:
        self.paused = True
        for pool in self.pools.values():
            pool.pause()

    def resume(self) -> None:
        self.paused = False
        for pool in self.pools.values():
            pool.resume()


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, with a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}"
                      + (" (another process holds the port)" if e.errno == 98 else "")) from e
    sock.listen(4096)
    sock.setblocking(False)
    return sock
