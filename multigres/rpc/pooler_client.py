"""A client of the pooler's control-plane service (``multigres.pooler.v1.Pooler``).

Shared by everything that talks to poolers (the gateway, the orchestrator, the CLI, tests):
services never import each other, they meet here.
"""

from __future__ import annotations

from typing import Any

import grpc

from multigres.rpc import pooler_pb as pb


class PoolerClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self._health = self.channel.unary_stream(
            pb.HEALTH_METHOD, request_serializer=pb.HealthRequest.SerializeToString,
            response_deserializer=pb.HealthResponse.FromString)
        self._status = self.channel.unary_unary(
            pb.STATUS_METHOD, request_serializer=pb.StatusRequest.SerializeToString,
            response_deserializer=pb.StatusResponse.FromString)
        self._user_secret = self.channel.unary_unary(
            pb.USER_SECRET_METHOD, request_serializer=pb.UserSecretRequest.SerializeToString,
            response_deserializer=pb.UserSecretResponse.FromString)

    def health(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """The Health stream: ``async for msg in client.health()``; ``.cancel()`` ends it."""
        return self._health(pb.HealthRequest())

    async def status(self, deadline: float = 5.0) -> Any:
        return await self._status(pb.StatusRequest(), timeout=deadline)

    async def user_secret(self, user: str, deadline: float = 5.0) -> Any:
        """``UserSecretResponse``: ``found``, ``kind``, ``secret``."""
        return await self._user_secret(pb.UserSecretRequest(user=user), timeout=deadline)

    async def aclose(self) -> None:
        await self.channel.close()
