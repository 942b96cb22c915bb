"""One client of the gateway: startup, authentication, then its statements.

For an unsharded database a session holds one connection to the pooler of its target (the
primary, or a replica for ``db@replica`` sessions) and forwards the protocol both ways; the
pooler does the transaction pooling and the session-state work on Postgres's side. The
gateway's own job is to keep the client connected while poolers and primaries change:

- at every statement boundary outside a transaction (nothing in flight, status idle) the
  session checks, only when discovery saw a change, that its pooler is still the right
  target; if not, it opens a connection to the new one (buffering: the client's messages
  wait, bounded by ``buffer_timeout`` and ``buffer_size``), rebuilds the session state there
  (settings, protocol-level prepared statements), and sends them on;
- a pooler lost mid-statement gives the statements in flight an error with SQLSTATE 08006;
  one lost inside a transaction leaves the client in a failed transaction (25P02 for each
  statement) until it ends it with ROLLBACK (or COMMIT), as after any error, so that no
  statement of the broken transaction runs outside it;
- state that cannot be rebuilt elsewhere (temp tables, LISTEN, session advisory locks, SQL
  PREPARE, WITH HOLD cursors, untracked settings) makes the session stay on its pooler: if
  that pooler goes, the client is closed with FATAL 08006 naming what was lost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from multigres._cy.buffer import ProtocolError, ReadBuffer, build_message
from multigres._cy.gatecore import AUTH, CLOSED, CONNECTING, READY, STARTUP, SessionCore
from multigres._cy.relay import Conn
from multigres.gateway import sharded_ext, sharded_session
from multigres.gateway.sharded import ShardedState
from multigres.gateway.sharded_ext import ExtState
from multigres.gateway.upstream import Upstream, open_upstream
from multigres.sql.session import Kind, may_have_effects, session_effects
from multigres.wire import sqlstate as codes
from multigres.wire.auth import (
    AuthExchange,
    AuthMethod,
    ClientAuthExchange,
    Credential,
    CredentialKind,
    ScramPassThrough,
)
from multigres.wire.auth_errors import AuthFailed
from multigres.wire.errors import PgError
from multigres.wire.protocol import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    SSL_REQUEST_CODE,
    build_auth,
    build_backend_key_data,
    build_command_complete,
    build_negotiate_protocol_version,
    build_parameter_status,
    build_ready_for_query,
    parse_startup,
)
from multigres.wire.tlsaccept import answer_ssl_request, start_server_tls

if TYPE_CHECKING:
    from multigres.gateway.discovery import PoolerState
    from multigres.gateway.server import GatewayServer

log = logging.getLogger("multigres.gateway")

# The session states are gatecore's (its C path tests READY and CLOSED).

_Q, _P, _C, _X, _S, _F, _Z, _E, _p = (ord(c) for c in "QPCXSFZEp")
_I, _T = ord("I"), ord("T")
# Client messages the session looks at; everything else is forwarded in runs.
CLIENT_STOP = b"QPCXSF"
CLIENT_STOP_SHARDED = b"QPCXSFBDEH"
RFQ = {_I: build_ready_for_query(_I), _T: build_ready_for_query(_T),
       _E: build_ready_for_query(_E)}
# Held client bytes while no pooler is attached, before reading pauses.
HOLD_LIMIT = 256 * 1024
# Effects that can be rebuilt on another pooler by running the statement again.
_REPLAYABLE = {Kind.SET, Kind.RESET, Kind.RESET_ALL}
_END_TX_WORDS = (b"rollback", b"abort", b"commit", b"end")
# Effects that leave nothing a new pooler connection would lack.
_HARMLESS = {Kind.DEALLOCATE, Kind.DEALLOCATE_ALL, Kind.CLOSE, Kind.CLOSE_ALL, Kind.UNLISTEN,
             Kind.UNLISTEN_ALL, Kind.ADVISORY_UNLOCK, Kind.ADVISORY_UNLOCK_ALL, Kind.DROP,
             Kind.SAVEPOINT, Kind.RELEASE, Kind.ROLLBACK_TO, Kind.ROLLBACK, Kind.DISCARD_PLANS}


def _parse_target(params: dict[str, str]) -> tuple[str, str]:
    """(database, target) from the startup parameters: ``db@replica`` or the option
    ``multigres.target`` (a startup parameter or ``-c multigres.target=...`` in options)."""
    database = params.get("database") or params.get("user", "")
    target = params.pop("multigres.target", "")
    options = params.get("options", "")
    if "multigres.target" in options:
        kept = []
        words = options.split()
        i = 0
        while i < len(words):
            w = words[i]
            arg = w[2:] if w.startswith("-c") and len(w) > 2 else None
            if w == "-c" and i + 1 < len(words):
                arg = words[i + 1]
                i += 1
            elif w.startswith("--"):
                arg = w[2:]
            if arg is not None and arg.startswith("multigres.target="):
                target = arg.split("=", 1)[1]
            elif arg is not None:
                kept.append(f"-c {arg}")
            else:
                kept.append(w)
            i += 1
        if kept:
            params["options"] = " ".join(kept)
        else:
            params.pop("options", None)
    if "@" in database:
        database, _, at = database.rpartition("@")
        target = target or at
    target = (target or "primary").lower()
    if target not in ("primary", "replica"):
        raise PgError(f"unknown target {target!r}: use primary or replica",
                      codes.INVALID_PARAMETER_VALUE)
    return database, target


class Session(SessionCore):
    # Narrower types for fields of SessionCore (annotations only: a class-level value would
    # shadow the C field).
    server: GatewayServer
    upstream: Upstream | None
    pending_error: PgError | None

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.counters = server.discovery.counters
        self.plans = server.planner.cache
        self.transport = None
        self.rbuf = ReadBuffer(server.config.max_message_size)
        self.state = STARTUP
        self.busy = False  # a task (TLS, login, a move to another pooler) owns the session
        self.user = ""
        self.database = ""
        self.target = "primary"
        self.params: dict[str, str] = {}
        self.tls = False
        self.auth: AuthExchange | None = None
        self.credential: Credential | None = None
        self.scram: ScramPassThrough | None = None
        self.upstream = None
        self.pooler: PoolerState | None = None
        self.generation = -1  # discovery's generation when the pooler was last checked
        self.key = (0, 0)
        self.tx_status = _I
        self.in_flight = 0  # queries and Syncs sent whose ReadyForQuery has not come back
        self.failed_tx = False  # the pooler was lost inside a transaction
        self.pending_error = None
        self.replay: list[bytes] = []  # messages that rebuild the session state elsewhere
        self.pinned = ""  # why the session cannot move (empty: it can)
        self.lazy = False  # logged in without a pooler connection yet (see _login)
        self.login_key: tuple[object, ...] = ()
        self.awaiting_set = None  # a SET sent, its success not yet seen
        self.set_failed = False
        # The last batch sent from idle, kept until its first answer: if that answer is the
        # pooler's 08001 (it got no server connection, so nothing ran), the batch is sent
        # again on the next target instead of failing.
        self.retry_batch = None
        self.retrying = False
        self.retry_since = 0.0  # when the batch first failed so (retries stop after
        # buffer_timeout)
        self.urbuf = ReadBuffer(server.config.max_message_size)
        self.reading = True
        # A sharded database: the shards the engine uses, the transaction across them.
        self.sharded: ShardedState | None = None
        self.divert = False
        self.idle: asyncio.Future[None] | None = None  # set when nothing is in flight
        self.ext: ExtState | None = None  # the extended protocol's engine statements
        self.shard_tables = {}
        self.direct_plans = None  # set for a sharded database (sharded_session.enter)
        self.direct_up = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.sessions.add(self)
        if isinstance(transport, Conn):
            # Answers to clients go out together at the end of each batch of events: a client
            # woken by the first finds the rest ready, and does not preempt us mid-batch.
            transport.defer_writes = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.server.forget(self)
        if self.sharded is not None:
            # Closed pooler connections roll back whatever they had open.
            self.sharded.close()
        up, self.upstream = self.upstream, None
        if up is not None:
            if self.in_flight:
                self.server.spawn(up.cancel())
                up.abort()
            elif (self.tx_status == _I and not self.failed_tx and not self.pinned
                  and not self.replay and self.awaiting_set is None and not up.closed
                  and not self.divert and not self.busy and up.sink is self):
                # (busy, or another sink: the engine has it lent, maybe mid-statement: it
                # must not reach another session)
                # Nothing of this session stays on the pooler's side: the next session with
                # the same login takes the connection (no second login at the pooler).
                self.server.park_upstream(self.login_key, up)
            else:
                up.close()

    def _data_slow(self, data: bytes) -> None:
        """A read event the C path (gatecore.SessionCore.relay_data) did not forward."""
        self.rbuf.feed_data(data)
        try:
            self._process()
        except ProtocolError as e:
            self.fatal(PgError(str(e), codes.PROTOCOL_VIOLATION))
        except PgError as e:
            self.fatal(e)

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        # The client reads slowly: stop reading from its pooler, so that the pooler (and
        # behind it Postgres) holds the rest.
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None and not up.closed:
            up.transport.resume_reading()

    # -- output -----------------------------------------------------------------------------

    def fatal(self, err: PgError) -> None:
        if self.state == CLOSED:
            return
        err.severity = err.localized_severity = "FATAL"
        self.send(err.to_message())
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.state = CLOSED

    # -- the dispatcher ---------------------------------------------------------------------

    def _process(self) -> None:
        state = self.state
        if self.busy or state == CLOSED:
            self._hold()
            return
        if state == READY:
            self._forward()
        elif state == STARTUP:
            self._startup()
        elif state == AUTH:
            self._auth()
        else:
            self._hold()

    def _hold(self) -> None:
        """Bytes arrived while the session cannot use them yet: keep them, but stop reading
        once too much waits."""
        if self.reading and self.rbuf.buffered() > HOLD_LIMIT and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def _go_on(self) -> None:
        """The task that owned the session is done: handle what arrived meanwhile."""
        self.busy = False
        if not self.reading and self.transport is not None and self.state != CLOSED:
            self.reading = True
            self.transport.resume_reading()
        try:
            self._process()
        except ProtocolError as e:
            self.fatal(PgError(str(e), codes.PROTOCOL_VIOLATION))
        except PgError as e:
            self.fatal(e)

    # -- startup ----------------------------------------------------------------------------

    def _startup(self) -> None:
        rb = self.rbuf
        while self.state == STARTUP and not self.busy:
            if not rb.take_startup_message():
                return
            packet = parse_startup(rb.consume_message())
            code = packet.code
            if code == SSL_REQUEST_CODE:
                self._ssl_request()
            elif code == GSSENC_REQUEST_CODE:
                self.send(b"N")  # no GSSAPI encryption: the client goes on without it
            elif code == CANCEL_REQUEST_CODE:
                self.server.cancel(packet.pid, packet.key)
                self.close()
            elif code >> 16 == 3:
                self._startup_message(code & 0xFFFF, dict(packet.params))
            else:
                raise PgError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                              "server supports 3.0", codes.FEATURE_NOT_SUPPORTED)

    def _ssl_request(self) -> None:
        ctx = self.server.tls_context
        if ctx is None or self.tls:
            self.send(b"N")
            return
        if self.rbuf.buffered():
            # Bytes between SSLRequest and the handshake could come from a man in the middle
            # (CVE-2021-23214): refuse them.
            raise PgError("received unencrypted data after SSL request",
                          codes.PROTOCOL_VIOLATION)
        assert self.transport is not None
        fd = answer_ssl_request(self.transport)
        self.busy = True
        self.server.spawn(self._handshake(ctx, fd))

    async def _handshake(self, ctx: ssl.SSLContext, fd: int) -> None:
        transport = self.transport
        assert transport is not None
        try:
            new = await start_server_tls(fd, transport, self, ctx)
        except (OSError, ConnectionError, RuntimeError):
            self.state = CLOSED
            self.server.forget(self)
            if self.transport is not None:
                self.transport.close()
            return
        if new is None:
            self.state = CLOSED
            return
        self.transport = new
        self.tls = True
        self._go_on()

    def _startup_message(self, minor: int, params: dict[str, str]) -> None:
        unknown = sorted(k for k in params if k.startswith("_pq_."))
        if minor > 0 or unknown:
            self.send(build_negotiate_protocol_version(0, unknown))
            for k in unknown:
                del params[k]
        user = params.get("user")
        if not user:
            raise PgError("no PostgreSQL user name specified in startup packet",
                          codes.INVALID_AUTHORIZATION_SPECIFICATION)
        if params.get("replication", "false").lower() not in ("false", "0", "off", "no"):
            raise PgError("replication connections are not supported by the gateway",
                          codes.FEATURE_NOT_SUPPORTED,
                          hint="connect to a Postgres instance directly for replication")
        server = self.server
        if len(server.sessions) > server.config.max_client_conn:
            raise PgError(f"sorry, too many clients already (max_client_conn = "
                          f"{server.config.max_client_conn})", codes.TOO_MANY_CONNECTIONS)
        database, target = _parse_target(params)
        params["database"] = database
        self.user, self.database, self.target, self.params = user, database, target, params
        self.state = AUTH
        self.busy = True
        server.spawn(self._lookup_secret())

    # -- authentication ---------------------------------------------------------------------

    async def _lookup_secret(self) -> None:
        try:
            cred = await self.server.secrets.lookup(self.user, self.database)
        except PgError as e:
            self.fatal(e)
            return
        if self.state == CLOSED:
            return
        self.credential = cred
        self.auth = AuthExchange(AuthMethod.SCRAM, self.user, cred,
                                 cbind_data=self.server.cbind_data if self.tls else None)
        try:
            self._send_auth(self.auth.start())
        except (AuthFailed, PgError) as e:
            self._auth_failed(e)
            return
        self._go_on()

    def _auth(self) -> None:
        rb = self.rbuf
        while self.state == AUTH and not self.busy:
            if not rb.take_message():
                return
            if rb.get_message_type() != _p:
                raise PgError(f"expected a password message, got message type "
                              f"{chr(rb.get_message_type())!r}", codes.PROTOCOL_VIOLATION)
            assert self.auth is not None
            try:
                self._send_auth(self.auth.feed(rb.consume_message()))
            except AuthFailed as e:
                self._auth_failed(e)

    def _send_auth(self, requests: list) -> None:  # type: ignore[type-arg]
        exchange = self.auth
        assert exchange is not None
        for req in requests:
            if req.code != 0:  # AuthenticationOk goes with the login's answer
                self.send(req.message())
        if exchange.done:
            self.scram = ScramPassThrough.from_exchange(exchange)
            self.auth = None
            self.state = CONNECTING
            self.busy = True
            self.server.spawn(self._login())

    def _auth_failed(self, e: AuthFailed | PgError) -> None:
        self.server.stats["auth_failures"] += 1
        if isinstance(e, AuthFailed):
            e = PgError(e.message, e.sqlstate, detail=e.detail)
        self.fatal(e)

    def login_auth(self) -> ClientAuthExchange:
        """How this session's connections to poolers log in as its user."""
        cred = self.credential
        if cred is not None and cred.kind is CredentialKind.PLAINTEXT:
            return ClientAuthExchange(self.user, password=cred.secret)
        return ClientAuthExchange(self.user, scram=self.scram)

    async def _login(self) -> None:
        if self.database in ("multigres", "pgbouncer"):  # the admin console, no pooler
            from multigres.gateway.admin import start_console

            start_console(self)
            return
        server = self.server
        if await server.vschemas.get(self.database) is not None and server.vschemas.sharded(
                self.database):
            sharded_session.enter(self)
        login_key = self.login_key = (self.user, self.database, self.target,
                                      tuple(sorted(self.params.items())))
        known = server.known_login(login_key)
        if known is not None and self._pick() is not None:
            # The same user, database and parameters logged in through a pooler moments ago:
            # answer the login here and open the pooler connection at the first statement.
            # Idle clients then cost no pooler connection, and a connection per transaction
            # one login, not two.
            self._logged_in(server.register_key(self, 0), known)
            self.lazy = True
            self._go_on()
            return
        try:
            up = await self._connect_upstream()
        except PgError as e:
            self.fatal(e)
            return
        if self.state == CLOSED:
            up.close()
            return
        server.remember_login(login_key, up.params)
        self._logged_in(server.register_key(self, up.pid), up.params)
        self._attach(up)
        self._go_on()

    def _logged_in(self, key: tuple[int, int], params: dict[str, str]) -> None:
        self.key = key
        out = [build_auth(0)]
        out += [build_parameter_status(k, v) for k, v in params.items()]
        out.append(build_backend_key_data(*self.key))
        out.append(RFQ[_I])
        self.send(b"".join(out))
        self.state = READY

    # -- choosing and (re)connecting to a pooler --------------------------------------------

    def _pick(self, where: tuple[str, str] | None = None) -> PoolerState | None:
        """The pooler for this session's target on the unsharded tablegroup, or on shard
        ``where`` (tablegroup, shard) of a sharded one."""
        d = self.server.discovery
        if self.target == "replica":
            st = d.replica(self.database, self.server.config.replica_lag_threshold, where)
            if st is not None:
                return st
        return d.primary(self.database, where)

    def _target_ok(self, st: PoolerState) -> bool:
        d = self.server.discovery
        primary = d.primary(self.database)
        if self.target == "primary":
            return st is primary
        lag = self.server.config.replica_lag_threshold
        if st is primary:
            # A replica session on the primary (the fallback) moves once a replica qualifies.
            return not d.replicas(self.database, lag)
        return st.serving and st.role == "replica" and st.lag_seconds < lag

    async def _connect_upstream(self, where: tuple[str, str] | None = None) -> Upstream:
        """Wait (bounded) for a serving target and log in to its pooler (the unsharded
        tablegroup's, or shard ``where``'s: then the session's own pooler stays as it is)."""
        server = self.server
        cfg = server.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.buffer_timeout
        waiting = False
        last_error = ""
        try:
            while True:
                if (not server.discovery.knows_database(self.database)
                        and server.discovery.poolers):
                    known = sorted({st.record.database for st in server.discovery.poolers.values()})
                    raise PgError(f'database "{self.database}" does not exist',
                                  codes.INVALID_CATALOG_NAME,
                                  hint=f"this cluster serves: {', '.join(known)}")
                st = self._pick(where)
                if st is not None:
                    parked = (server.take_upstream(self.login_key, st.id) if where is None
                              else None)
                    if parked is not None:
                        self.pooler = st
                        self.generation = self.counters.generation
                        return parked
                    try:
                        up = await open_upstream(
                            server.relay, st.id, st.record.host, st.record.port,
                            {k: v for k, v in self.params.items()}, self.login_auth(),
                            cfg.pooler_connect_timeout, server.local_poolers.get(st.id),
                            server.carriers)
                    except PgError as e:
                        if not e.sqlstate.startswith("08"):
                            raise  # the pooler's (or Postgres's) own answer: pass it on
                        last_error = e.message
                        log.info("session %s: %s; waiting for another target", self.key, e)
                    else:
                        if where is None:
                            self.pooler = st
                            self.generation = self.counters.generation
                        return up
                left = deadline - loop.time()
                if left <= 0:
                    what = "replica or primary" if self.target == "replica" else "primary"
                    if where is not None:
                        what += f" of shard {where[0]}/{where[1]}"
                    raise PgError(
                        f"no serving {what} for database {self.database!r} within "
                        f"{cfg.buffer_timeout:g} s"
                        + (f" (last attempt: {last_error})" if last_error else ""),
                        codes.CONNECTION_FAILURE,
                        hint="the gateway waits this long (buffer_timeout) during a failover; "
                             "see `multigres cluster status`")
                if not waiting:
                    if server.buffered >= cfg.buffer_size:
                        raise PgError("too many statements are waiting for a primary "
                                      f"(buffer_size = {cfg.buffer_size})",
                                      codes.TOO_MANY_CONNECTIONS)
                    server.buffered += 1
                    waiting = True
                await server.discovery.changed(min(left, 1.0))
        finally:
            if waiting:
                server.buffered -= 1

    def _attach(self, up: Upstream) -> None:
        self.upstream = up
        self.urbuf = ReadBuffer(self.server.config.max_message_size)
        rest = up.attach(self)
        if rest:
            self.upstream_data(up, rest)

    async def _move(self, resend: bytes | None = None) -> None:
        """Open a connection to the current target, rebuild the session state there, and
        go on with what the client sent meanwhile."""
        old, self.upstream = self.upstream, None
        if old is not None:
            old.close()
        if resend is not None:
            # The target that failed must not be picked again at once: wait until discovery
            # has news, or a moment (the pooler may get its server back).
            await self.server.discovery.changed(0.5)
        try:
            up = await self._connect_upstream()
            if self.replay:
                await self._replay(up)
        except PgError as e:
            if self.lazy and not e.sqlstate.startswith("08"):
                # The login, deferred to now, was refused (a revoked privilege, a dropped
                # role): as Postgres would have at login, the session ends.
                self.fatal(e)
                return
            self.pending_error = e
            self.failed_tx = False
            if resend is not None:
                self.pending_error = None
                self.send(e.to_message() + RFQ[_I])
            self._go_on()
            return
        if self.state == CLOSED:
            up.close()
            return
        if self.lazy:
            self.lazy = False
        else:
            self.server.stats["moves"] += 1
        self._attach(up)
        if resend is not None:
            self.in_flight += 1
            self.retry_batch = resend
            up.write(resend)
        self._go_on()

    async def _replay(self, up: Upstream) -> None:
        """Run the statements that rebuild this session's state on ``up`` (before any of the
        client's): its SETs and its protocol-level prepared statements, in order.

        Each Parse goes with its own Sync, so that one that fails (it failed for the client
        too, or its statement would fail at use anyway) skips nothing after it; its error is
        ignored. A SET that fails now, though it took before, fails the move."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        rb = ReadBuffer(self.server.config.max_message_size)
        sync = build_message(_S)
        out: list[bytes] = []
        kinds: list[int] = []  # per ReadyForQuery expected: the replayed message's type
        for m in self.replay:
            out.append(m if m[0] == _Q else m + sync)
            kinds.append(m[0])
        errors: list[PgError] = []
        if not out:
            return

        class _Replay:
            def upstream_data(_self, _up: Upstream, data: bytes) -> None:
                rb.feed_data(data)
                while rb.take_message():
                    t = rb.get_message_type()
                    if t == _E:
                        err = PgError.from_payload(rb.consume_message())
                        if kinds and kinds[0] == _Q:
                            errors.append(err)
                    elif t == _Z:
                        rb.discard_message()
                        if kinds:
                            kinds.pop(0)
                        if not kinds and not done.done():
                            done.set_result(None)
                    else:
                        rb.discard_message()

            def upstream_lost(_self, _up: Upstream, exc: Exception | None) -> None:
                if not done.done():
                    done.set_exception(PgError("the pooler closed the connection while the "
                                               "session state was rebuilt",
                                               codes.CONNECTION_FAILURE))

        up.attach(_Replay())
        up.write(b"".join(out))
        async with asyncio.timeout(self.server.config.buffer_timeout):
            await done
        if errors:
            up.close()
            raise PgError(f"the session's state could not be rebuilt on pooler {up.pooler_id}: "
                          f"{errors[0].message}", codes.CONNECTION_FAILURE)

    # -- the data path ----------------------------------------------------------------------

    def _forward(self) -> None:
        rb = self.rbuf
        up = self.upstream
        if self.in_flight == 0 and self.tx_status == _I and not self.failed_tx:
            if up is None or (self.counters.generation != self.generation
                              and not self._still_right()):
                if not rb.buffered():
                    return
                if up is not None and self.pinned:
                    self.fatal(PgError(
                        f"the session's pooler {up.pooler_id} no longer serves it, and the "
                        f"session holds state that cannot move ({self.pinned})",
                        codes.CONNECTION_FAILURE, hint="reconnect"))
                    return
                if self.pending_error is None:
                    self.busy = True
                    self.server.spawn(self._move())
                    return
        idle_start = self.in_flight == 0 and self.tx_status == _I
        out: list[bytes] = []
        # A sharded session looks at every message of the extended protocol (an engine
        # batch takes its Binds and Executes too); others forward those in runs.
        stop = CLIENT_STOP if self.ext is None else CLIENT_STOP_SHARDED
        while True:
            run = rb.take_run(stop)
            if run:
                out.append(run)
            if not rb.take_message():
                break
            t = rb.get_message_type()
            if self.failed_tx or self.pending_error is not None or up is None:
                self._answer_locally(t)
                continue
            if (self.ext is not None and t in sharded_ext.EXT_TYPES
                    and self.ext.takes(t, rb.message_bytes()[5:], self)):
                # An extended-protocol batch the engine runs: answered at its Sync.
                if t == _S:
                    if out:
                        up.write(out[0] if len(out) == 1 else b"".join(out))
                    sharded_session.take(self, sharded_ext.run_batch(self))
                    return
                continue
            if t == _Q:
                msg = rb.message_bytes()
                if self.sharded is None and self.server.vschemas.sharded(self.database):
                    sharded_session.enter(self)
                if self.sharded is not None and sharded_session.query(self, msg):
                    # The engine owns the session now; what was gathered goes first.
                    if out:
                        up.write(out[0] if len(out) == 1 else b"".join(out))
                    return
                self.server.planner.plan(msg[5:-1], self.database)
                self._on_query(msg)
                self.in_flight += 1
                self.counters.statements += 1
                out.append(msg)
            elif t == _S or t == _F:
                self.in_flight += 1
                self.counters.statements += 1
                out.append(rb.message_bytes())
            elif t == _P:
                msg = rb.message_bytes()
                name_end = msg.index(b"\x00", 5)
                query = msg[name_end + 1:msg.index(b"\x00", name_end + 1)]
                self.server.planner.plan(query, self.database)
                self._on_parse(query)
                if msg[5] != 0:  # a named statement: rebuilt on another pooler
                    self.replay.append(msg)
                out.append(msg)
            elif t == _C:
                msg = rb.message_bytes()
                if msg[5] == ord("S"):
                    self._forget_statement(msg)
                out.append(msg)
            elif t == _X:
                if out and up is not None:
                    up.write(b"".join(out))
                self.close()
                return
            else:  # Bind, Describe, Execute, Flush of a sharded session: forwarded
                out.append(rb.message_bytes())
        if out and up is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            if idle_start and self.in_flight == 1:
                self.retry_batch = data
            up.write(data)

    def _still_right(self) -> bool:
        st = self.pooler
        self.generation = self.counters.generation
        if st is None or st is not self.server.discovery.poolers.get((st.record.cell, st.id)):
            return False
        return self._target_ok(st)

    def _forget_statement(self, close_msg: bytes) -> None:
        name = close_msg[6:close_msg.index(b"\x00", 6)]
        self.replay = [m for m in self.replay
                       if not (m[0] == _P and m[5:5 + len(name) + 1] == name + b"\x00")]

    def _on_query(self, msg: bytes) -> None:
        """Follow the session state a simple query changes: replayable SETs, or a pin."""
        sql = msg[5:-1].decode("utf-8", "replace")
        if not may_have_effects(sql):
            return
        effects = session_effects(sql)
        for e in effects:
            if e.kind in _REPLAYABLE:
                if self.tx_status == _I:
                    # Kept for replay once its ReadyForQuery comes without an error (a failed
                    # SET, or one rolled back with a later statement of the string, changed
                    # nothing).
                    self.awaiting_set = msg
                else:
                    self.pinned = self.pinned or "a setting changed inside a transaction"
            elif e.kind is Kind.DISCARD_ALL:
                self.replay = []
                self.pinned = ""
            elif e.kind in _HARMLESS:
                continue
            else:
                self.pinned = self.pinned or e.kind.value.replace("_", " ")

    def _on_parse(self, query: bytes) -> None:
        """A statement of the extended protocol that changes session state: the gateway does
        not follow its executions (a Bind may run it any number of times, or none), so the
        session stays on its pooler."""
        if self.pinned:
            return
        text = query.decode("utf-8", "replace")
        if not may_have_effects(text):
            return
        for e in session_effects(text):
            if e.kind not in _HARMLESS:
                self.pinned = f"{e.kind.value.replace('_', ' ')} (extended protocol)"
                return

    def _answer_locally(self, t: int) -> None:
        """A message while the session has no pooler: after a lost pooler, or while the
        gateway could not find a new one."""
        rb = self.rbuf
        if t == _X:
            self.close()
            return
        err = self.pending_error
        if (t == _Q and err is None and self.sharded is not None
                and sharded_session.failed_query(self, rb.message_bytes())):
            return
        if t == _Q:
            sql = rb.message_bytes()[5:-1].lstrip().lower()
            if self.failed_tx and err is None and sql.startswith(_END_TX_WORDS):
                self.failed_tx = False
                tag = "COMMIT" if sql.startswith((b"commit", b"end")) else "ROLLBACK"
                # COMMIT of a failed transaction rolls back, as Postgres reports it.
                self.send(build_command_complete("ROLLBACK" if tag == "COMMIT" else tag)
                          + RFQ[_I])
                return
        elif t != _S:
            return  # skipped until Sync, as Postgres skips after an error
        if err is not None:
            self.pending_error = None
            self.send(err.to_message() + RFQ[_E if self.failed_tx else _I])
        elif self.failed_tx:
            self.send(PgError("current transaction is aborted, commands ignored until end of "
                              "transaction block", codes.IN_FAILED_SQL_TRANSACTION).to_message()
                      + RFQ[_E])
        else:
            self.send(RFQ[_I])

    # -- the pooler's side ------------------------------------------------------------------

    def _upstream_slow(self, up: Upstream, data: bytes) -> None:
        """Bytes from the pooler that the C path (SessionCore.upstream_data_c) did not
        forward: a partial message, an error the gateway acts on, a SET awaiting its answer,
        a retry in progress."""
        rb = self.urbuf
        rb.feed_data(data)
        if self.divert and not self._take_diverted(rb):
            return
        out: list[bytes] = []
        while True:
            run = rb.take_run(b"ZE")
            if run:
                out.append(run)
            if not rb.take_message():
                break
            if rb.get_message_type() == _Z:
                msg = rb.message_bytes()
                self.tx_status = msg[5]
                if self.in_flight:
                    self.in_flight -= 1
                if self.awaiting_set is not None:
                    if not self.set_failed:
                        self.replay.append(self.awaiting_set)
                        sharded_session.replay_setting(self, self.awaiting_set)
                    self.awaiting_set = None
                    self.set_failed = False
                if self.retrying:
                    self._retry_elsewhere()
                    continue
                out.append(msg)
            else:
                msg = rb.message_bytes()
                if self.awaiting_set is not None:
                    self.set_failed = True
                if (self.retry_batch is not None and not out
                        and b"C08001\x00" in msg and not self.pinned
                        and self._may_retry()):
                    # No server connection behind the pooler: nothing ran. Swallow the error
                    # (and its ReadyForQuery) and run the batch on the next target.
                    self.retrying = True
                    continue
                if b"SFATAL\x00" in msg or b"SPANIC\x00" in msg:
                    # The pooler is going away (shutdown, a lost server): not the client's
                    # end. Its connection closes next, and upstream_lost decides.
                    continue
                out.append(msg)
        if out:
            self.retry_batch = None
            self.retry_since = 0.0
            self.send(out[0] if len(out) == 1 else b"".join(out))
        if self.idle is not None and not self.in_flight and not self.idle.done():
            self.idle.set_result(None)

    def _take_diverted(self, rb: ReadBuffer) -> bool:
        """Consume the answer to the session's own statement (sharded_session's ROLLBACK);
        False while it is not all in."""
        while rb.take_message():
            if rb.get_message_type() == _Z:
                self.tx_status = rb.read_byte()
                rb.discard_message()
                if self.in_flight:
                    self.in_flight -= 1
                self.divert = False
                return True
            rb.discard_message()
        return False

    def _may_retry(self) -> bool:
        now = time.monotonic()
        if not self.retry_since:
            self.retry_since = now
        return now - self.retry_since < self.server.config.buffer_timeout

    def _retry_elsewhere(self) -> None:
        batch, self.retry_batch = self.retry_batch, None
        self.retrying = False
        assert batch is not None
        self.server.stats["retries"] += 1
        self.busy = True
        self.server.spawn(self._move(resend=batch))

    def upstream_lost(self, up: Upstream, exc: Exception | None) -> None:
        if self.idle is not None and not self.idle.done():
            self.idle.set_result(None)  # the answers will not come; the session reports it
        if up is not self.upstream and self.sharded is not None and self.state != CLOSED:
            # A shard's connection, which the C path had sent a statement to.
            conn = self.sharded.conn_of(up)
            if conn is not None:
                conn.upstream_lost(up, exc)
            if up is self.direct_up and self.in_flight:
                self.in_flight = 0
                self.direct_up = None
                self.send(PgError(f"the connection to pooler {up.pooler_id} was lost",
                                  codes.CONNECTION_FAILURE).to_message() + RFQ[self.tx_status])
            return
        if up is not self.upstream or self.state == CLOSED:
            return
        self.upstream = None
        self.server.stats["pooler_lost"] += 1
        err = PgError(f"the connection to pooler {up.pooler_id} was lost",
                      codes.CONNECTION_FAILURE)
        if self.pinned:
            err.message += f"; the session's state ({self.pinned}) is gone with it"
            self.fatal(err)
            return
        in_tx = self.tx_status != _I
        if in_tx:
            err.message += "; the transaction was rolled back"
            err.hint = "run the transaction again"
        if self.in_flight:
            n, self.in_flight = self.in_flight, 0
            self.failed_tx = in_tx
            status = RFQ[_E if in_tx else _I]
            self.send(err.to_message() + status + status * (n - 1))
        elif in_tx:
            self.failed_tx = True
            self.pending_error = err
        self.tx_status = _I
        if self.rbuf.buffered():
            self._process()

