"""The gateway's listener and registry: sessions, their cancel keys, discovery, secrets.

Client sockets live on the relay (the I/O engine shared with the pooler: one epoll fd per
loop, recv/send from C); TLS sessions move to uvloop's transports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from multigres._cy.relay import Relay
from multigres.admin import http
from multigres.gateway import stats
from multigres.gateway.config import GatewayConfig
from multigres.gateway.discovery import Discovery
from multigres.gateway.engine.sequence import SequenceAllocator
from multigres.gateway.metrics import GatewayHttp
from multigres.gateway.plan import Planner, ShardedPlanner
from multigres.gateway.secrets import UserSecrets
from multigres.gateway.session import Session
from multigres.gateway.upstream import Carriers, LocalPooler, Upstream
from multigres.gateway.vschemas import VSchemas
from multigres.netutil import split_hostport
from multigres.topo.etcd import EtcdConn
from multigres.topo.server import TopoServer
from multigres.wire.tls import cert_file_channel_binding_data, make_server_context

log = logging.getLogger("multigres.gateway")

# A repeat login (same user, database, parameters) within this time is answered by the
# gateway, its pooler connection opened at the first statement.
LOGIN_CACHE_SECONDS = 60.0
LOGIN_CACHE_SIZE = 10_000
# Pooler connections of ended sessions kept for the next session of the same login.
PARKED_PER_LOGIN = 16
PARKED_SECONDS = 30.0


class _Parked:
    """The sink of a parked pooler connection: it should say nothing; if it closes (or
    speaks: a FATAL before closing), it leaves the park."""

    def __init__(self, server: GatewayServer, key: tuple[object, ...]) -> None:
        self.server = server
        self.key = key

    def upstream_data(self, up: Upstream, data: bytes) -> None:
        self.server._unpark(self.key, up)
        up.close()

    def upstream_lost(self, up: Upstream, exc: Exception | None) -> None:
        self.server._unpark(self.key, up)


class GatewayServer:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.sessions: set[Session] = set()
        self.keys: dict[tuple[int, int], Session] = {}
        self.stats: Counter[str] = Counter()
        self.buffered = 0  # sessions waiting for a target right now
        # Logins a pooler accepted lately: (user, database, target, params) -> (when,
        # ParameterStatus values). A repeat login is answered here (Session._login).
        self.logins: dict[tuple[object, ...], tuple[float, dict[str, str]]] = {}
        self.parked: dict[tuple[object, ...], list[tuple[float, Upstream]]] = {}
        self.started_at = time.time()
        self.tls_context: ssl.SSLContext | None = None
        # With TLS, SCRAM-SHA-256-PLUS is offered too, bound to our certificate.
        self.cbind_data: bytes | None = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls_context = make_server_context(config.tls_cert, config.tls_key)
            self.cbind_data = cert_file_channel_binding_data(config.tls_cert)
        host, port = split_hostport(config.topo)
        self.topo = TopoServer(EtcdConn(f"{host}:{port}", root=config.topo_root))
        self.discovery = Discovery(self.topo, config.cell)
        self.secrets = UserSecrets(self.discovery, config.buffer_timeout)
        # Local mode: poolers running in this process, by pooler id; sessions reach them
        # through an in-memory pipe instead of a socket.
        self.local_poolers: dict[str, LocalPooler] = {}
        self.planner = Planner(config.plan_cache_size)
        self.plan_cache = self.planner.cache  # for the status page and /metrics
        # Sharded databases: their VSchemas (watched), and their plans.
        self.shard_planner = ShardedPlanner(config.plan_cache_size)
        self.vschemas = VSchemas(self.topo, self._vschema_changed)
        self._sequences: dict[str, SequenceAllocator] = {}
        # Each sharded database's collation (datcollate), learned at its first statement.
        self.collations: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.relay: Relay
        self.carriers: Carriers | None = None
        self.sock: socket.socket | None = None
        self.port = 0
        self.http_sock: socket.socket | None = None
        self.http: GatewayHttp | None = None

    def bind(self) -> socket.socket:
        """Bind the client socket (before anything starts: a taken port is one clear line)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.config.listen_host
                             else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.listen_host, self.config.listen_port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on {self.config.listen} (--listen): "
                          f"{e.strerror}") from None
        sock.listen(1024)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        if self.config.http_port and self.http_sock is None:
            self.http_sock = http.bind(self.config.listen_host, self.config.http_port,
                                       "--http-port")
        return sock

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.relay = Relay(loop)
        self.carriers = Carriers(self.relay) if self.config.pooler_mux else None
        await self.discovery.start()
        sock = self.sock or self.bind()
        self.relay.listen(sock, self._new_session)
        if self.http_sock is not None:
            self.http = GatewayHttp(self, self.http_sock)
            await self.http.start()
            log.info("status on http://%s:%d/debug/status", self.config.listen_host,
                     self.http.port)
        log.info("gateway listening on %s:%d", self.config.listen_host, self.port)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        for s in list(self.sessions):
            s.close()
        for parked in self.parked.values():
            for _, up in parked:
                up.close()
        self.parked.clear()
        if self.carriers is not None:
            self.carriers.close()
        self.relay.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.vschemas.close()
        await self.discovery.close()
        await self.topo.close()

    def sequence_allocator(self, database: str) -> SequenceAllocator:
        """The allocator of the database's sequences, shared by its sessions."""
        alloc = self._sequences.get(database)
        if alloc is None:
            alloc = self._sequences[database] = SequenceAllocator()
        return alloc

    def _vschema_changed(self, database: str) -> None:
        # Plans depend on the VSchema: drop them all (changes are rare). Sessions of the
        # database miss in their fast path's cache at their next statement and re-plan.
        log.info("vschema of %s changed", database)
        self.shard_planner.clear()
        self.planner.cache.clear()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def snapshot(self, detail: bool = False) -> dict[str, Any]:
        """What the console, /metrics and /debug/status show (stats.py)."""
        return stats.snapshot(self, detail)

    # -- sessions and cancel keys -----------------------------------------------------------

    def _new_session(self) -> Session:
        self.stats["sessions"] += 1
        return Session(self)

    def register_key(self, session: Session, pid: int) -> tuple[int, int]:
        """The session's BackendKeyData: the pid of its first server connection (what
        ``pg_backend_pid()`` shows it), or a made-up one (``pid`` 0) for a session logged in
        without one yet, and a random secret that only this gateway knows."""
        while True:
            secret = int.from_bytes(os.urandom(4), "big", signed=True)
            if pid == 0:  # no server connection yet: a made-up pid, unique with the secret
                pid = int.from_bytes(os.urandom(3), "big") + 1
            key = (pid, secret)
            if key not in self.keys:
                self.keys[key] = session
                return key

    def known_login(self, key: tuple[object, ...]) -> dict[str, str] | None:
        """The ParameterStatus values of a login with these (user, database, target,
        parameters) that a pooler accepted within LOGIN_CACHE_SECONDS, else None."""
        hit = self.logins.get(key)
        if hit is None or time.monotonic() - hit[0] > LOGIN_CACHE_SECONDS:
            return None
        return hit[1]

    def remember_login(self, key: tuple[object, ...], params: dict[str, str]) -> None:
        if len(self.logins) >= LOGIN_CACHE_SIZE:
            self.logins.clear()
        self.logins[key] = (time.monotonic(), dict(params))

    def park_upstream(self, key: tuple[object, ...], up: Upstream) -> None:
        """Keep a clean pooler connection of a session that ended, for the next session of
        the same login (at most PARKED_PER_LOGIN per login, PARKED_SECONDS each)."""
        parked = self.parked.setdefault(key, [])
        if len(parked) >= PARKED_PER_LOGIN or len(self.parked) > LOGIN_CACHE_SIZE:
            up.close()
            return
        up.attach(_Parked(self, key))
        parked.append((time.monotonic(), up))

    def take_upstream(self, key: tuple[object, ...], pooler_id: str) -> Upstream | None:
        parked = self.parked.get(key)
        now = time.monotonic()
        while parked:
            at, up = parked.pop()
            if up.closed or up.pooler_id != pooler_id or now - at > PARKED_SECONDS:
                up.close()
                continue
            self.stats["upstream_reuses"] += 1
            return up
        return None

    def _unpark(self, key: tuple[object, ...], up: Upstream) -> None:
        parked = self.parked.get(key)
        if parked:
            parked[:] = [(at, u) for at, u in parked if u is not up]

    def forget(self, session: Session) -> None:
        self.sessions.discard(session)
        if self.keys.get(session.key) is session:
            del self.keys[session.key]

    def cancel(self, pid: int, secret: int) -> None:
        session = self.keys.get((pid, secret))
        if session is None:
            return  # as Postgres: no answer either way
        up = session.upstream
        if up is not None and session.in_flight:
            self.stats["cancels"] += 1
            self.spawn(up.cancel())
