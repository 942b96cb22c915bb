"""Users' stored secrets, asked of the poolers (which read them from Postgres's pg_authid
with their auth query), so that clients log in at the gateway as the users of Postgres.

Cached for ``CACHE_SECONDS`` (an unknown user too: a burst of bad logins does not become a
burst of gRPC calls); a changed password is seen within that time.
"""

from __future__ import annotations

import time

import grpc

from multigres.gateway.discovery import Discovery
from multigres.wire import sqlstate as codes
from multigres.wire.auth import Credential
from multigres.wire.errors import PgError

CACHE_SECONDS = 30.0


class UserSecrets:
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self._cache: dict[tuple[str, str], tuple[float, Credential | None]] = {}

    async def lookup(self, user: str, database: str) -> Credential | None:
        key = (user, database)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        st = self.discovery.secret_source(database) or self.discovery.secret_source(None)
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

    def clear(self) -> None:
        self._cache.clear()
