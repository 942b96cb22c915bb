"""The pooler process: listening socket, pools, client registry, cancel routing, upkeep.

With ``--workers N`` each of N processes runs one PoolerServer on its own SO_REUSEPORT
socket (see workers.py); a cancel key carries its worker's number in its top bits, so a
CancelRequest that the kernel hands to another worker is forwarded without a lookup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from multigres._cy.relay import Listener, Relay
from multigres.netutil import open_pg_connection
from multigres.pooler import backend as backend_mod
from multigres.pooler import msgs
from multigres.pooler.client import Client
from multigres.pooler.config import PoolerConfig
from multigres.pooler.control import Control, LocalControl
from multigres.pooler.credentials import Credentials
from multigres.pooler.meters import Meters, PoolTotals
from multigres.pooler.pool import Pool
from multigres.pooler.startup import StartupHandler
from multigres.pooler.stats import PeriodStats

log = logging.getLogger("multigres.pooler")


@dataclass
class Stats:
    clients_accepted: int = 0
    # Gateways' carriers (pyx/mux.pyx): each then counts one client per session it opens.
    carriers_accepted: int = 0
    auth_failures: int = 0
    cancels: int = 0


# -- cancel keys across workers ---------------------------------------------------------------
# A cancel key is 31 random bits (it travels as a signed int32). With N > 1 workers its top
# bits hold the worker number, so any worker routes a CancelRequest by looking at the key.


def worker_bits(workers: int) -> int:
    return (workers - 1).bit_length() if workers > 1 else 0


def key_for_worker(key: int, worker: int, workers: int) -> int:
    bits = worker_bits(workers)
    if not bits:
        return key
    shift = 31 - bits
    return (worker << shift) | (key & ((1 << shift) - 1))


def worker_of_key(key: int, workers: int) -> int:
    bits = worker_bits(workers)
    return (key & 0x7FFFFFFF) >> (31 - bits) if bits else 0


class WorkerLink(Protocol):
    """The channel from a worker to its siblings (through the parent), see workers.py."""

    def forward_cancel(self, worker: int, pid: int, key: int) -> None: ...


class ClientRegistry(dict[int, Client]):
    """``PoolerServer.clients``; a client leaving it has its counters folded into the
    totals (once per connection, off the per-query path)."""

    def __init__(self, server: PoolerServer) -> None:
        super().__init__()
        self._server = server

    def pop(self, key: int, default: Any = None) -> Any:
        client = super().pop(key, default)
        if client is not None:
            self._server.client_closed(client)
        return client


class PoolerServer:
    def __init__(self, config: PoolerConfig, *, worker: int = 0, workers: int = 1) -> None:
        self.config = config
        self.worker = worker
        self.workers = workers
        self.link: WorkerLink | None = None
        # What the admin console acts through (all workers' view with --workers N).
        self.control: Control = LocalControl(self)
        # The process that SHUTDOWN signals (the parent of the workers).
        self.main_pid = os.getpid()
        self.meters = Meters()
        self.period = PeriodStats()
        # Counters of clients and server connections that are gone, per (user, database).
        self.totals: dict[tuple[str, str], PoolTotals] = {}
        # Every server connection made and not yet folded into the totals.
        self.backends: set[backend_mod.Backend] = set()
        # client id -> when it connected (wall clock), for SHOW CLIENTS.
        self.connect_times: dict[int, float] = {}
        self.pools: dict[tuple[str, str], Pool] = {}
        self.clients: dict[int, Client] = ClientRegistry(self)
        self.cancel_keys: dict[tuple[int, int], Client] = {}
        self.startup = StartupHandler(self)
        self.credentials = Credentials(config)
        self.stats = Stats()
        self.tls_context = None
        # With TLS, SCRAM-SHA-256-PLUS is offered too, bound to our certificate.
        self.cbind_data: bytes | None = None
        if config.tls_cert is not None and config.tls_key is not None:
            from multigres.wire.tls import cert_file_channel_binding_data, make_server_context

            self.tls_context = make_server_context(config.tls_cert, config.tls_key)
            self.cbind_data = cert_file_channel_binding_data(config.tls_cert)
        self._next_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        # Plain TCP connections (clients and servers) run on the relay (pyx/relay.pyx); TLS
        # ones on uvloop's transports.
        self.relay: Relay | None = None
        self._listener: Listener | None = None
        self._listen_sock: socket.socket | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.started_at = time.time()
        self.paused = False

    def next_client_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _new_client(self) -> Client:
        client = Client(self)
        self.stats.clients_accepted += 1
        self.connect_times[client.id] = time.time()
        if self.workers > 1:
            client.cancel_key = key_for_worker(client.cancel_key, self.worker, self.workers)
        return client

    def local_client(self) -> Client:
        """A client for a connection from this process (local mode: the gateway's sessions
        reach the pooler through an in-memory pipe); the caller makes the transport."""
        return self._new_client()

    def client_closed(self, client: Client) -> None:
        """``client`` is gone: keep what it did in the totals of its pool."""
        self.connect_times.pop(client.id, None)
        if client.pool is None:
            return
        t = self.totals.get(client.pool.key)
        if t is None:
            t = self.totals[client.pool.key] = PoolTotals()
        t.add(client_totals(client))

    def fold_backends(self) -> None:
        """Fold the bytes of closed server connections into the totals (called each second
        and before stats are read, so the set stays as small as the pools)."""
        gone = [b for b in self.backends if b.closed]
        for b in gone:
            self.backends.discard(b)
            t = self.totals.get(b.pool.key)
            if t is None:
                t = self.totals[b.pool.key] = PoolTotals()
            t.sent += b.bytes_in

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
                user, database, self.pool_size(), self._connect,
                wait_timeout=cfg.query_wait_timeout, lifetime=cfg.server_lifetime,
                idle_timeout=cfg.server_idle_timeout,
            )
            pool.query_timeout = cfg.query_timeout
            pool.idle_transaction_timeout = cfg.idle_transaction_timeout
            pool.defer_begin = cfg.defer_begin
            if self.paused:
                pool.pause()
            self.pools[key] = pool
        return pool

    def pool_size(self) -> int:
        """Server connections per pool in this process: --pool-size is for the whole pooler,
        shared by its workers (rounded up, so each worker has at least one)."""
        return -(-self.config.pool_size // self.workers)

    def _connect(self, pool: Pool) -> asyncio.Future[backend_mod.Backend]:
        cfg = self.config
        fut = asyncio.ensure_future(backend_mod.connect(
            pool, cfg.server_host, cfg.pg_port, self.credentials.server_login(pool.user), {},
            cfg.server_connect_timeout, tls_mode=cfg.server_tls, tls_ca=cfg.server_tls_ca,
            relay=self.relay,
        ))
        fut.add_done_callback(self._track_backend)
        return fut

    def _track_backend(self, fut: asyncio.Future[backend_mod.Backend]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.backends.add(fut.result())

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, pid: int, key: int) -> None:
        """A CancelRequest from a client: cancel what that client runs, nothing else."""
        if self.workers > 1 and self.link is not None:
            worker = worker_of_key(key, self.workers)
            if worker != self.worker:
                # The kernel gave the cancel's connection to this worker; the client is on
                # another: pass it on (the key says which, no lookup).
                self.meters.cancels_forwarded += 1
                self.link.forward_cancel(worker, pid, key)
                return
        self.cancel_local(pid, key)

    def cancel_local(self, pid: int, key: int) -> None:
        client = self.cancel_keys.get((pid, key))
        if client is None:
            return
        self.stats.cancels += 1
        client.cancel_running()

    def send_cancel(self, pid: int, key: int) -> None:
        cfg = self.config

        async def send() -> None:
            try:
                _, writer = await open_pg_connection(cfg.server_host, cfg.pg_port)
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
        self.relay = Relay(loop)
        self._listen_sock = sock
        self._listener = self.relay.listen(sock, self._new_client)
        self._reaper = loop.create_task(self._reap())

    @property
    def port(self) -> int:
        assert self._listen_sock is not None
        return int(self._listen_sock.getsockname()[1])

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for pool in self.pools.values():
                pool.reap(now)
            self.fold_backends()
            self.period.tick(self, self.config.stats_period)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
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
        if self.relay is not None:
            self.relay.close()

    def pause(self) -> None:
        self.paused = True
        for pool in self.pools.values():
            pool.pause()

    def resume(self) -> None:
        self.paused = False
        for pool in self.pools.values():
            pool.resume()

    def busy_servers(self) -> int:
        """Server connections in a transaction or running something."""
        return sum(1 for pool in self.pools.values() for b in pool.active if not b.is_idle())

    async def wait_idle(self, interval: float = 0.02) -> None:
        """Until no server connection is in a transaction or running a query (PAUSE).

        Polled: releases happen in pool.py's hot path, which should not pay for an event
        that only a rare admin command waits on."""
        while self.busy_servers():  # noqa: ASYNC110
            await asyncio.sleep(interval)

    def apply_config(self) -> None:
        """Settings changed in ``self.config`` (RELOAD): pass them to the live objects."""
        cfg = self.config
        for pool in self.pools.values():
            pool.size = self.pool_size()
            pool.wait_timeout = cfg.query_wait_timeout
            pool.lifetime = cfg.server_lifetime
            pool.idle_timeout = cfg.server_idle_timeout
            pool.query_timeout = cfg.query_timeout
            pool.idle_transaction_timeout = cfg.idle_transaction_timeout
            pool.defer_begin = cfg.defer_begin
        self.credentials.reload()


def client_totals(client: Client) -> PoolTotals:
    """What one client did so far (counters kept on the client by the data path)."""
    return PoolTotals(
        queries=client.queries,
        transactions=client.transactions,
        received=getattr(client, "bytes_in", 0),
        xact_time=getattr(client, "xact_time", 0.0),
        query_time=getattr(client, "query_time", 0.0),
    )


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
