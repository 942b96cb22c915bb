"""Where the pooler learns users' secrets: the userlist, the auth query, and logins.

Clients are checked against the userlist entry, or else what the auth query returns from
Postgres (``pg_authid.rolpassword``: a SCRAM verifier or md5 hash). To log in to Postgres as
that user, a server connection uses the userlist's password, or the password a client sent
(cleartext method), or the SCRAM ClientKey proven by a client's login (pass-through): the
pooler never needs to store plaintext passwords.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from multigres.pooler.config import PoolerConfig
from multigres.pooler.errors import PoolerError
from multigres.wire import sqlstate as codes
from multigres.wire.auth import ClientAuthExchange, Credential, CredentialKind, ScramPassThrough
from multigres.wire.userlist import load_userlist

CACHE_SECONDS = 30.0


class Credentials:
    def __init__(self, config: PoolerConfig) -> None:
        self.config = config
        self.userlist: dict[str, Credential] = {}
        self._cache: dict[str, tuple[float, Credential | None]] = {}
        self._passwords: dict[str, str] = {}
        self._scram: dict[str, ScramPassThrough] = {}
        self.reload()

    def reload(self) -> None:
        if self.config.userlist is not None:
            self.userlist = load_userlist(self.config.userlist)
        self._cache.clear()

    def cached(self, user: str) -> tuple[bool, Credential | None]:
        """(True, the secret) when ``lookup`` would answer without asking Postgres."""
        if user in self.userlist:
            return True, self.userlist[user]
        if not self.config.auth_query:
            return True, None
        hit = self._cache.get(user)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return True, hit[1]
        return False, None

    async def lookup(self, user: str) -> Credential | None:
        """The stored secret of ``user`` (None: no such user, which fails like a wrong
        password)."""
        if user in self.userlist:
            return self.userlist[user]
        if not self.config.auth_query:
            return None
        hit = self._cache.get(user)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        cred = await self._auth_query(user)
        self._cache[user] = (now, cred)
        return cred

    async def _auth_query(self, user: str) -> Credential | None:
        cfg = self.config
        password = cfg.pg_password
        entry = self.userlist.get(cfg.pg_user)
        if password is None and entry is not None and entry.kind is CredentialKind.PLAINTEXT:
            password = entry.secret
        query = (cfg.auth_query or "").replace("$1", "%s")
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=cfg.server_host, port=cfg.pg_port, user=cfg.pg_user, password=password,
                dbname=cfg.pg_database, connect_timeout=int(cfg.server_connect_timeout) or 5,
                autocommit=True,
            )
        except psycopg.Error as e:
            raise PoolerError(
                codes.CONNECTION_FAILURE,
                f"cannot look up user {user!r}: the auth query connection as "
                f"{cfg.pg_user!r} failed: {str(e).strip()}",
                hint="give the pooler a password for --pg-user (--pg-password or the userlist)",
            ) from e
        async with conn:
            try:
                cur = await conn.execute(query.encode(), (user,))
                row = await cur.fetchone()
            except psycopg.Error as e:
                raise PoolerError(codes.CONNECTION_FAILURE,
                                  f"auth query failed: {str(e).strip()}") from e
        if row is None or row[1] is None:
            return None
        return Credential.from_stored(str(row[1]))

    def learn_password(self, user: str, password: str) -> None:
        self._passwords[user] = password

    def learn_scram(self, user: str, secret: ScramPassThrough) -> None:
        self._scram[user] = secret

    def server_login(self, user: str) -> ClientAuthExchange:
        """How a server connection logs in as ``user``."""
        kwargs: dict[str, Any] = {}
        entry = self.userlist.get(user)
        if entry is not None and entry.kind is CredentialKind.PLAINTEXT:
            kwargs["password"] = entry.secret
        elif user in self._passwords:
            kwargs["password"] = self._passwords[user]
        elif user == self.config.pg_user and self.config.pg_password is not None:
            kwargs["password"] = self.config.pg_password
        elif user in self._scram:
            kwargs["scram"] = self._scram[user]
        elif entry is not None and entry.kind is CredentialKind.MD5:
            kwargs["md5_hash"] = entry.secret
        return ClientAuthExchange(user, **kwargs)
