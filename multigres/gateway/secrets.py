"""Users' stored secrets, asked of the poolers (which read them from Postgres's pg_authid
with their auth query), so that clients log in at the gateway as the users of Postgres.

Cached for ``CACHE_SECONDS`` (an unknown user too: a burst of bad logins does not become a
burst of gRPC calls); a changed password is seen within that time.
"""

from __future__ import annotations

import time

import grpc

from multigres.gateway.discovery import Discovery, PoolerState
from multigres.wire import sqlstate as codes
from multigres.wire.auth import Credential
from multigres.wire.errors import PgError

CACHE_SECONDS = 30.0


class UserSecrets:
    def __init__(self, discovery: Discovery, wait: float = 10.0) -> None:
        self.discovery = discovery
        self.wait = wait  # how long a login waits for a pooler to ask (a gateway starting)
        self._cache: dict[tuple[str, str], tuple[float, Credential | None]] = {}

    async def lookup(self, user: str, database: str) -> Credential | None:
        key = (user, database)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        st = await self._source(database)
        if st is None or st.client is None:
            raise PgError(
                f"database {database!r} has no pooler the gateway can reach",
                codes.CONNECTION_FAILURE if self.discovery.poolers else codes.INVALID_CATALOG_NAME,
                hint="see `multigres cluster status`")
        try:
            resp = await st.client.user_secret(user)
        except grpc.aio.AioRpcError as e:
            raise PgError(f"cannot look up user {user!r} at pooler {st.id}: {e.details()}",
                          codes.CONNECTION_FAILURE) from None
        cred = Credential.from_stored(resp.secret) if resp.found and resp.secret else None
        self._cache[key] = (now, cred)
        return cred

    async def _source(self, database: str) -> PoolerState | None:
        """A pooler to ask, waiting up to ``wait`` seconds while none is known (the gateway
        or the cluster is starting)."""
        d = self.discovery
        deadline = time.monotonic() + self.wait
        while True:
            st = d.secret_source(database) or d.secret_source(None)
            if st is not None and st.client is not None:
                return st
            left = deadline - time.monotonic()
            if left <= 0:
                return st
            await d.changed(min(left, 1.0))

    def clear(self) -> None:
        self._cache.clear()
