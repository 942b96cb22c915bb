"""The pooler's control-plane gRPC service (``multigres.pooler.v1.Pooler``, on --grpc-port).

- ``Health`` (server streaming): role, serving state, replication lag and pooler id, sent at
  once, then on every change and at least every ``health_interval`` seconds.
- ``Status`` (unary): pools, clients, servers, uptime, version.
- ``UserSecret`` (unary): a user's stored secret (userlist or auth query), for the gateway,
  which authenticates clients against the users of Postgres.

Registered with grpcio's generic handlers and the descriptor-built messages of
``multigres.rpc.pooler_pb``: no generated code. gRPC never sits on the query path (a unary
call costs about 0.8 ms of CPU, a pooled transaction about 30 us).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from multigres.pooler.credentials import Credentials
from multigres.pooler.errors import PoolerError
from multigres.pooler.health import HealthMonitor, HealthState
from multigres.pooler.metrics import SnapshotSource, uptime
from multigres.pooler.stats import merge
from multigres.rpc import pooler_pb as pb

log = logging.getLogger("multigres.pooler")


def health_message(pooler_id: str, st: HealthState) -> Any:
    return pb.HealthResponse(
        pooler_id=pooler_id, role=st.role, serving_state=st.serving_state,
        replication_lag_seconds=st.lag_seconds, replication_lag_bytes=st.lag_bytes,
        pg_reachable=st.pg_reachable, error=st.error, timestamp=st.timestamp, paused=st.paused,
    )


class PoolerService:
    def __init__(self, pooler_id: str, health: HealthMonitor, source: SnapshotSource,
                 credentials: Credentials | None = None) -> None:
        self.pooler_id = pooler_id
        self.health = health
        self.source = source
        self.credentials = credentials

    async def Health(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
                     ) -> AsyncIterator[Any]:
        st = self.health.state
        yield health_message(self.pooler_id, st)
        while True:
            st = await self.health.changed(self.health.config.health_interval)
            yield health_message(self.pooler_id, st)

    async def Status(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
                     ) -> Any:
        snap = merge(await self.source())
        st = self.health.state
        pools = [
            pb.PoolStatus(user=p["user"], database=p["database"], size=p["size"],
                          cl_active=p["cl_active"], cl_waiting=p["cl_waiting"],
                          sv_active=p["sv_active"], sv_idle=p["sv_idle"],
                          sv_login=p["sv_login"], maxwait_seconds=p["maxwait"])
            for p in snap["pools"]
        ]
        cl = snap["clients"]
        return pb.StatusResponse(
            pooler_id=self.pooler_id, version=snap["version"], uptime_seconds=uptime(snap),
            workers=snap["workers"], pools=len(pools), clients=sum(cl.values()),
            clients_active=cl.get("active", 0), clients_waiting=cl.get("waiting", 0),
            servers=sum(p.sv_active + p.sv_idle + p.sv_login for p in pools),
            servers_active=sum(p.sv_active for p in pools),
            servers_idle=sum(p.sv_idle for p in pools),
            pool=pools, role=st.role, serving_state=st.serving_state, paused=snap["paused"],
            listen=snap["listen"],
        )

    async def UserSecret(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
                         ) -> Any:
        if self.credentials is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                "this pooler has no user credentials to give")
        assert self.credentials is not None
        try:
            cred = await self.credentials.lookup(request.user)
        except PoolerError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, e.message)
        if cred is None:
            return pb.UserSecretResponse(found=False)
        return pb.UserSecretResponse(found=True, kind=cred.kind.value, secret=cred.secret)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(pb.SERVICE, {
            "Health": grpc.unary_stream_rpc_method_handler(
                self.Health, request_deserializer=pb.HealthRequest.FromString,
                response_serializer=pb.HealthResponse.SerializeToString),
            "Status": grpc.unary_unary_rpc_method_handler(
                self.Status, request_deserializer=pb.StatusRequest.FromString,
                response_serializer=pb.StatusResponse.SerializeToString),
            "UserSecret": grpc.unary_unary_rpc_method_handler(
                self.UserSecret, request_deserializer=pb.UserSecretRequest.FromString,
                response_serializer=pb.UserSecretResponse.SerializeToString),
        })


class GrpcServer:
    def __init__(self, host: str, port: int, service: PoolerService) -> None:
        self.address = f"{host}:{port}"
        # Without so_reuseport=0, gRPC binds with SO_REUSEPORT and a second pooler on the same
        # port would start "fine" and share its calls.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.server.add_generic_rpc_handlers([service.handler()])
        self.port = 0

    async def start(self) -> None:
        try:
            self.port = self.server.add_insecure_port(self.address)
        except RuntimeError as e:
            raise OSError(98, f"cannot listen on {self.address} (--grpc-port): the address is "
                          "in use or not available") from e
        await self.server.start()

    async def close(self, grace: float = 1.0) -> None:
        await self.server.stop(grace)
