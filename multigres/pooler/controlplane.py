"""What a pooler runs beside the data path: the health monitor, /metrics, the gRPC service and
the topology registration. One per pooler: in the only process, or in the parent of
``--workers N`` (which reads the workers' state through a Control).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multigres.pooler.config import PoolerConfig
from multigres.pooler.control import Control
from multigres.pooler.health import HealthMonitor
from multigres.pooler.metrics import MetricsServer
from multigres.pooler.registration import Registration, default_pooler_id
from multigres.pooler.server import listen_socket

if TYPE_CHECKING:
    # grpc is imported only where the service runs: never before workers fork.
    from multigres.pooler.grpc_service import GrpcServer

log = logging.getLogger("multigres.pooler")


@dataclass
class Sockets:
    """Bound before anything starts (and before workers fork), so that a taken port is a
    clear error at once."""

    listen: list[socket.socket]
    http: socket.socket | None

    def close(self) -> None:
        for s in [*self.listen, *([self.http] if self.http else [])]:
            s.close()


def bind_sockets(config: PoolerConfig) -> Sockets:
    """The client sockets (one per worker, SO_REUSEPORT when several), the HTTP socket, and a
    check that the gRPC port is free. OSError naming the port and its flag otherwise."""
    socks: list[socket.socket] = []
    try:
        reuse = config.workers > 1
        if reuse and config.listen_port:
            # SO_REUSEPORT would let us share the port with another pooler that uses it too:
            # first check, without it, that nobody holds the port.
            _bind(config.listen_host, config.listen_port, "--listen").close()
        first = _bind(config.listen_host, config.listen_port, "--listen", reuse)
        socks.append(first)
        port = int(first.getsockname()[1])
        for _ in range(config.workers - 1):
            socks.append(_bind(config.listen_host, port, "--listen", True))
        config.listen_port = port
        http = None
        if config.http_port:
            http = _bind(config.listen_host, config.http_port, "--http-port")
        if config.grpc_port:
            _bind(config.listen_host, config.grpc_port, "--grpc-port").close()
    except OSError:
        for s in socks:
            s.close()
        raise
    return Sockets(socks, http)


def _bind(host: str, port: int, flag: str, reuse_port: bool = False) -> socket.socket:
    try:
        return listen_socket(host, port, reuse_port=reuse_port)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} ({flag})") from None


class ControlPlane:
    def __init__(self, config: PoolerConfig, control: Control, http: socket.socket | None,
                 is_paused: Callable[[], bool]) -> None:
        self.config = config
        self.control = control
        self.pooler_id = config.pooler_id or default_pooler_id(config, config.listen_port)
        self.health: HealthMonitor | None = None
        if config.grpc_port or config.topo or config.http_port:
            self.health = HealthMonitor(config, is_paused)
        self.metrics = MetricsServer(http, control.snapshots, self.health) \
            if http is not None else None
        self.grpc: GrpcServer | None = None
        self.registration: Registration | None = None

    async def start(self) -> None:
        if self.health is not None:
            self.health.start()
        if self.metrics is not None:
            await self.metrics.start()
            log.info("metrics on http://%s:%d/metrics", self.config.listen_host,
                     self.metrics.port)
        if self.config.grpc_port:
            from multigres.pooler.credentials import Credentials
            from multigres.pooler.grpc_service import GrpcServer, PoolerService

            assert self.health is not None
            grpc = GrpcServer(self.config.listen_host, self.config.grpc_port,
                              PoolerService(self.pooler_id, self.health,
                                            self.control.snapshots,
                                            Credentials(self.config)))
            await grpc.start()
            self.grpc = grpc
            log.info("gRPC control plane on %s:%d", self.config.listen_host, grpc.port)
        if self.config.topo:
            assert self.health is not None
            self.registration = Registration(self.config, self.pooler_id,
                                             self.config.listen_port, self.config.grpc_port,
                                             self.health)
            await self.registration.start()

    async def stop(self) -> None:
        """Shutting down: not serving first (health stream, topology), then close."""
        if self.health is not None:
            await self.health.stop()
        if self.registration is not None:
            await self.registration.close()
        if self.grpc is not None:
            await self.grpc.close(grace=0.5)
        if self.metrics is not None:
            await self.metrics.close()

