"""One client connection: startup, authentication, and the client -> server data path.

A client holds a backend only while a reason holds: an open transaction, an extended-protocol
batch up to its Sync, a query in flight, COPY, or session state that cannot move (see
session.py). Between those it holds nothing, and its next statement may run on any backend of
the pool; its settings and prepared statements follow it there.

What a client learns about "its" backend, and the limits pooling puts on it:

- BackendKeyData carries the pid of the backend the client got at login and a key of the
  pooler's own. ``pg_backend_pid()`` reports the backend a statement runs on: the same pid
  while the client keeps that backend (a lone client gets its previous backend back; a pinned
  one keeps it), another one when a busy pool hands it a different backend.
- A CancelRequest with the client's key cancels the query this client runs now, on whatever
  backend it runs, and nothing else: a statement still waiting for a backend fails with
  57014, with no query running it does nothing, and a backend a cancel was sent for goes
  back to the pool only once Postgres has taken the cancel (so a late cancel finds it idle,
  where Postgres ignores it, not running the next client's query).
- ``pg_cancel_backend(pid)`` / ``pg_terminate_backend(pid)`` run in Postgres, which knows no
  clients: they act on the backend with that pid, whichever client it serves at that moment
  (the one the pid was reported to only while that client holds it: in a transaction, or
  pinned). A terminated backend mid-transaction gives its client an error (08006) and the
  pool a new backend.
- A notification carries the sending backend's pid. The client's own notifications carry
  its BackendKeyData pid; one sent from the backend whose pid the client was told (serving
  another client now) carries the pid of the client's current backend instead, so that no
  other client's notification looks like the client's own. Other senders show their real
  pid.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from multigres._cy.buffer import ReadBuffer, WriteBuffer
from multigres._cy.poolcore import NO_EFFECTS as _NO_EFFECTS
from multigres._cy.poolcore import ClientCore
from multigres._cy.relay import Conn
from multigres.pooler import msgs
from multigres.pooler.backend import Backend, send_cancel, server_statement_name
from multigres.pooler.errors import PoolerError
from multigres.pooler.session import (
    PROBE_SQL,
    UNKNOWN,
    SessionState,
    Transaction,
    effective_settings,
    reset_fixups,
    set_statement,
    settings_diff,
    startup_settings,
    touched_settings,
)
from multigres.sql.session import TRANSACTIONAL, TX_CONTROL, Effect, Kind, session_effects
from multigres.wire import sqlstate as codes
from multigres.wire.randpool import random_bits

if TYPE_CHECKING:
    from multigres.pooler.pool import Pool
    from multigres.pooler.server import PoolerServer

_Q, _P, _B, _D, _C, _E, _S, _H, _X, _F = (ord(c) for c in "QPBDCESHXF")
_COPY_DATA, _COPY_DONE, _COPY_FAIL = ord("d"), ord("c"), ord("f")
_I, _T, _ERR = ord("I"), ord("T"), ord("E")
_STMT = ord("S")

STARTUP, AUTH, LOGIN, READY, CLOSED = range(5)
# What an injected query is for.
_INJECT_SYNC, _INJECT_AFTER, _INJECT_BEGIN = 0, 1, 2
ADMIN_DATABASES = ("multigres", "pgbouncer")


class Client(ClientCore, asyncio.Protocol):
    backend: Backend | None
    last_backend: Backend | None
    pool: Pool | None

    def __init__(self, server: PoolerServer) -> None:
        self.server = server
        cfg = server.config
        self.transport: asyncio.Transport | None = None
        self.rbuf = ReadBuffer(cfg.max_message_size)
        self.out = WriteBuffer()
        self.to_backend = WriteBuffer()
        self.state = STARTUP
        self.id = server.next_client_id()
        self.user = ""
        self.database = ""
        self.params: dict[str, str] = {}
        self.session = SessionState(base={})
        self._pin_check = True
        self._tx_dirty = False
        self.pool: Pool | None = None
        self.backend: Backend | None = None
        self.last_backend: Backend | None = None
        self.waiting = False
        self.virtual_pid = 0
        self.cancel_key = random_bits(31)
        # Parameter values this client has been told (ParameterStatus).
        self.reported: dict[str, str] = {}
        # client statement name -> (server name, Parse message under the server name, effects)
        self.statements: dict[bytes, tuple[str, bytes, list[Effect]]] = {}
        self.portal_effects: dict[bytes, list[Effect]] = {}
        self.batch_effects: list[Effect] = []
        # Per Z-producing message in flight: its session effects.
        self.inflight: deque[list[Effect]] = deque()
        # Effects of the open transaction, until it commits or rolls back.
        self.tx = Transaction()
        # Startup settings a RESET sent back to the server's default on the linked backend.
        self._fixups: set[str] = set()
        # Whether something still pins the backend is unknown: ask Postgres (PROBE_SQL).
        self._probe_wanted = False
        self._inject_kind = _INJECT_SYNC
        self.query_failed = False
        self.in_batch = False
        # After the pooler reported an error inside an extended batch: drop messages up to
        # the batch's Sync, as Postgres does.
        self._skipping = False
        # The backend died in this client's transaction: the client is in a failed
        # transaction (as after any error) until it ends it; the error to report next.
        self.lost_tx = False
        self._lost_error: bytes | None = None
        # Answering an extended-protocol ROLLBACK (or COMMIT) of a lost transaction.
        self._fake_rollback = False
        self._begin_deferred = False
        self._have_current = False
        self._reading_paused = False
        self._idle_tx_timer: asyncio.TimerHandle | None = None
        self._query_timer: asyncio.TimerHandle | None = None
        self._auth: Any = None
        self.admin: Any = None
        # What metrics and SHOW STATS read (stats.py): counters and times in seconds.
        self.queries = 0
        self.transactions = 0
        self.bytes_in = 0
        self.xact_time = 0.0
        self.query_time = 0.0
        # When the current transaction, busy period and wait for a backend began (0: none).
        self._tx_start = 0.0
        self._query_start = 0.0
        self._wait_start = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.clients[self.id] = self
        if isinstance(transport, Conn):
            # Answers to clients go out together at the end of each batch of events: a
            # client program woken by the first finds the rest ready (fewer wake-ups there).
            transport.defer_writes = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.server.clients.pop(self.id, None)
        self.server.cancel_keys.pop((self.virtual_pid, self.cancel_key), None)
        self._cancel_timers()
        if self.waiting and self.pool is not None:
            self.pool.cancel_wait(self)
            self.waiting = False
        backend = self.backend
        if backend is not None:
            self.backend = None
            self._abandon(backend)

    def pause_writing(self) -> None:
        # The client reads slower than the server sends: stop reading from the server, so
        # that nothing buffers without bound (the kernel's socket buffers hold the rest).
        self._writing_paused = True
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.backend is not None:
            self.backend.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def _fail(self, err: PoolerError) -> None:
        # The messages before the bad one were accepted (and counted as in flight): send
        # them, so that the backend's answers match what the pooler expects when it cleans
        # the backend up for the next client.
        self._flush_backend()
        self.fatal(err)

    # -- output ---------------------------------------------------------------------------

    def fatal(self, err: PoolerError) -> None:
        """Report ``err`` as FATAL and close the connection."""
        if self.transport is None or self.state == CLOSED:
            return
        self.send(err.to_message(severity="FATAL"))
        self.flush()
        self.state = CLOSED
        self.transport.close()

    def error(self, err: PoolerError, ready: bool = True) -> None:
        """Report ``err`` and go on (ReadyForQuery follows when ``ready``)."""
        self.send(err.to_message())
        if ready:
            self.send(msgs.RFQ_IDLE)
        self.flush()

    # -- login (after authentication) ---------------------------------------------------------

    def login(self, user: str, database: str, params: dict[str, str]) -> None:
        """Authenticated: take a backend to learn the server's parameters, then be ready."""
        self.user, self.database, self.params = user, database, params
        self.session = SessionState(base=startup_settings(params))
        self._pin_check = True
        self.pool = self.server.pool_for(user, database)
        self.state = LOGIN
        self.send(msgs.AUTH_OK)
        if self._want_backend():
            # AuthenticationOk, the parameters, BackendKeyData and ReadyForQuery in one write.
            assert self.backend is not None
            self._finish_login(self.backend)
        else:
            self.flush()

    def _finish_login(self, backend: Backend) -> None:
        if self.reported:
            for name, value in backend.params.items():
                if self.reported.get(name) != value:
                    self.reported[name] = value
                    self.send(msgs.parameter_status(name, value))
        else:
            # The common case: nothing reported yet, so every parameter, in one message
            # run built once per set of values (a pool's backends share theirs).
            self.reported = dict(backend.params)
            self.send(_parameter_run(tuple(backend.params.items())))
        self.virtual_pid = backend.pid
        self.server.cancel_keys[(self.virtual_pid, self.cancel_key)] = self
        self.send(msgs.backend_key_data(self.virtual_pid, self.cancel_key))
        self.send(msgs.RFQ_IDLE)
        self.state = READY
        self._maybe_release(backend)
        self.flush()
        if self.rbuf.buffered():
            self._process()

    # -- getting a backend ---------------------------------------------------------------------

    def on_backend_error(self, error: PoolerError) -> None:
        self.waiting = False
        self._waited()
        self.resume_reading()
        if self.state == LOGIN:
            self.fatal(error)
            return
        if self._begin_deferred:
            # The client was told its transaction began: it is now a failed one.
            self._begin_deferred = False
            self.lost_tx = True
        # The statement that wanted a backend fails; the session goes on.
        t = self.rbuf.get_message_type() if self._have_current else _Q
        self._have_current = False
        self.send(error.to_message())
        if t == _Q or t == _F:
            self.send(self._rfq())
        else:
            self._skipping = True
        self._process()

    def _sync_settings(self, backend: Backend) -> bool:
        """Bring a newly linked backend to this client's settings (core._link found it not
        in sync with them): True when it already is, False when a query to set them runs."""
        sql = settings_diff(backend.settings, self.session.settings)
        if sql:
            self._inject_kind = _INJECT_SYNC
            backend.inject(sql, [])
            return False
        backend.synced_with = (self.id, self.session.version)
        return True

    def on_injected(self, backend: Backend, held: list[bytes]) -> None:
        if self._inject_kind == _INJECT_AFTER:
            self._after_injected(backend)
            return
        if self._inject_kind == _INJECT_BEGIN:
            self._inject_kind = _INJECT_SYNC
            self._resume()
            return
        backend.settings = dict(self.session.settings)
        backend.synced_with = (self.id, self.session.version)
        self._resume()

    def on_inject_failed(self, backend: Backend, fields: dict[str, str]) -> None:
        if self._inject_kind == _INJECT_AFTER and not self._fixups:
            # Only the pin probe failed (catalogs hidden from this user?): what pins the
            # backend stays as the statements said, which holds it longer, never shorter.
            self._inject_kind = _INJECT_SYNC
            self._probing = self._probe_wanted = False
            self._settle(backend)
            self._resume()
            return
        if self._inject_kind == _INJECT_BEGIN:
            self._begin_failed(backend, fields)
            return
        # Never run a client's statements with settings (a role!) other than its own.
        # (The settings went in one query, an implicit transaction: it all rolled back, and
        # the backend is as it was, unless the query was the after-RESET one.)
        self._drop_backend(backend, reusable=self._inject_kind == _INJECT_SYNC)
        if self.state == LOGIN:
            # The client's startup parameters: fail as Postgres fails such a login.
            self.fatal(PoolerError(fields.get("C", codes.CONNECTION_FAILURE),
                                   fields.get("M", "unknown error"), detail=fields.get("D")))
            return
        self.fatal(PoolerError(
            codes.CONNECTION_FAILURE,
            "could not restore this session's settings on a server connection: "
            + fields.get("M", "unknown error"),
            detail=fields.get("D"),
        ))

    def _drop_backend(self, backend: Backend, *, reusable: bool) -> None:
        """Unlink ``backend`` after the pooler's own query on it failed: back to the pool if
        ``reusable`` and outside a transaction, else closed."""
        self.backend = None
        backend.unlink()
        assert self.pool is not None
        if reusable and backend.tx_status == _I:
            self.pool.release(backend)
        else:
            self.pool.forget(backend)
            backend.close()

    def _begin_failed(self, backend: Backend, fields: dict[str, str]) -> None:
        """The deferred BEGIN failed on the server: the client, told its transaction began,
        is in a failed transaction (its next statement gets the error; only ROLLBACK or
        COMMIT is accepted), and nothing of it ran."""
        self._inject_kind = _INJECT_SYNC
        self._drop_backend(backend, reusable=True)
        self.lost_tx = True
        self._lost_error = msgs.error_response(
            fields.get("C", codes.CONNECTION_FAILURE),
            "could not begin the transaction on a server connection: "
            + fields.get("M", "unknown error"),
            detail=fields.get("D"),
        )
        self._process()

    def _resume(self) -> None:
        """Go on with what the client sent while the pooler's own query ran."""
        backend = self.backend
        if self.state == LOGIN:
            if backend is not None:
                self._finish_login(backend)
        elif self.state == READY:
            # The backend may be back in the pool (the probe found nothing pinning it): the
            # next message then takes one again.
            self._process()

    # -- the data path ---------------------------------------------------------------------

    def _handle_other(self, t: int, backend: Backend) -> None:
        """A client message other than Query, Bind, Execute and Sync (core._process handles
        those)."""
        rb = self.rbuf
        out = self.to_backend
        self._mark_busy()
        if t == _P:
            self.in_batch = True
            name = rb.read_cstr()
            query = rb.read_cstr()
            tail = rb.consume_message()
            effects = session_effects(query.decode("utf-8", "replace"))
            if effects and effects[0].kind is Kind.DEALLOCATE:
                sql = self._deallocate_sql(backend, effects)
                if sql is not None:
                    query = sql.encode()
            if not name:
                self.statements[b""] = ("", b"", effects)
                backend.sent_parse(None)
                out.write_raw(_parse_msg(b"", query, tail))
                return
            sname = server_statement_name(query, tail)
            parse = _parse_msg(sname.encode(), query, tail)
            self.statements[name] = (sname, parse, effects)
            if sname in backend.prepared:
                # Already there (another client's, or ours from before): Postgres refuses a
                # second Parse of a name, so close it first and hide that CloseComplete.
                out.write_raw(_close_msg(_STMT, sname.encode()))
                backend.sent_close(sname, swallow=True)
            backend.sent_parse(sname, client_name=name)
            out.write_raw(parse)
        elif t == _D or t == _C:
            self.in_batch = True
            kind = rb.read_byte()
            name = rb.read_cstr()
            entry = self.statements.get(name) if kind == _STMT and name else None
            if entry is None:
                if t == _C:
                    backend.sent_close(None)
                out.write_raw(rb.message_bytes())
                return
            if t == _C:
                del self.statements[name]
                backend.sent_close(entry[0], client=(name, entry))
                out.write_raw(_close_msg(_STMT, entry[0].encode()))
            else:
                sname = self._ensure_prepared(backend, entry)
                out.write_raw(_describe_msg(_STMT, sname.encode()))
        elif t == _H:
            out.write_raw(rb.message_bytes())
        elif t == _COPY_DATA or t == _COPY_DONE or t == _COPY_FAIL:
            if backend.copy or backend.pending:
                out.write_raw(rb.message_bytes())
            # else: no COPY is running or starting; Postgres would ignore it too.
        elif t == _F:
            self.inflight.append(_NO_EFFECTS)
            backend.pending += 1
            backend.syncs_sent += 1
            out.write_raw(rb.message_bytes())
        elif t == _X:
            self._terminate()
        else:
            raise PoolerError(codes.PROTOCOL_VIOLATION,
                              f"invalid frontend message type {t} ({chr(t)!r})")

    def _deallocate_sql(self, backend: Backend, effects: list[Effect]) -> str | None:
        """SQL ``DEALLOCATE name`` of one of the client's protocol-level statements (psycopg
        evicts statements so): the server knows it by the pooler's name, on this backend
        perhaps not at all. Prepare it if needed, and deallocate it by its server name."""
        if len(effects) != 1:
            return None
        name = effects[0].name.encode()
        entry = self.statements.get(name)
        if entry is None or not name:
            return None
        del self.statements[name]
        sname = self._ensure_prepared(backend, entry)
        backend.deallocating(sname)
        return f"DEALLOCATE {sname}"

    def _ensure_prepared(self, backend: Backend, entry: tuple[str, bytes, list[Effect]]) -> str:
        sname, parse, _ = entry
        if sname not in backend.prepared:
            # This backend has not seen the statement: prepare it first, answer hidden.
            self.to_backend.write_raw(parse)
            backend.sent_parse(sname, swallow=True)
        return sname

    # -- a transaction whose backend died -------------------------------------------------------

    def _in_lost_tx(self, t: int) -> bool:
        """The client's transaction died with its backend: answer as Postgres does in a failed
        transaction (only its end is accepted, and COMMIT rolls back), without a backend.
        True when the message goes on to a backend after all."""
        rb = self.rbuf
        if t == _Q:
            word = _tx_end(rb.message_bytes()[5:-1])
            if word:
                self.lost_tx = False
                self._lost_error = None
                self.send(_ROLLBACK_DONE)
                self.send(msgs.RFQ_IDLE)
            else:
                self.send(self._lost_error or _IN_FAILED_TX)
                self._lost_error = None
                self.send(msgs.RFQ_FAILED)
            return False
        if t == _P:
            msg = rb.message_bytes()
            name_end = msg.index(b"\x00", 5)
            query = msg[name_end + 1:msg.index(b"\x00", name_end + 1)]
            if _tx_end(query):
                self._fake_rollback = True
                self._answer_rollback(t)
                return False
        self.send(self._lost_error or _IN_FAILED_TX)
        self._lost_error = None
        if t == _F:
            self.send(msgs.RFQ_FAILED)
        else:
            self._skipping = True
        return False

    def _answer_rollback(self, t: int) -> None:
        """One message of an extended-protocol ROLLBACK/COMMIT of a lost transaction."""
        if t == _P:
            self.send(msgs.PARSE_COMPLETE)
        elif t == _B:
            self.send(_BIND_COMPLETE)
        elif t == _D:
            if self.rbuf.read_byte() == _STMT:
                self.send(_NO_PARAMETERS)
            self.send(_NO_DATA)
        elif t == _E:
            self.send(_ROLLBACK_DONE)
        elif t == _C:
            self.send(msgs.CLOSE_COMPLETE)
        elif t == _S:
            self._fake_rollback = False
            self.lost_tx = False
            self._lost_error = None
            self.send(msgs.RFQ_IDLE)

    # -- events from the backend ---------------------------------------------------------------

    def _account(self, backend: Backend, status: int, effects: list[Effect],
                 failed: bool) -> None:
        """Follow what a completed message did to the session (rare: most have no effects)."""
        now = [e for e in effects if e.kind not in TRANSACTIONAL and e.kind not in TX_CONTROL]
        in_tx = [e for e in effects if e.kind in TRANSACTIONAL or e.kind in TX_CONTROL]
        self._fixups |= reset_fixups(effects, self.session.base)
        if now:
            self._commit_effects(backend, now, failed)
        committed, undone = self.tx.on_ready(status, in_tx, failed)
        if committed:
            self._commit_effects(backend, committed, False)
        if undone:
            # Postgres put these back as they were; should the pooler's idea of the backend
            # be wrong, the next client to take it sets them afresh.
            for name in touched_settings(undone, backend.settings):
                backend.settings[name] = UNKNOWN
            backend.synced_with = (0, -1)
        if self.session.needs_probe(effects, failed):
            self._probe_wanted = True

    def _commit_effects(self, backend: Backend, effects: list[Effect], failed: bool) -> None:
        before = self.session.version
        if self.session.apply(effects, failed):
            backend.forget_prepared()
            self.statements.clear()
        if self.session.version != before:
            # The statements ran on this backend: it now has the client's settings, except
            # those a RESET sent to the server's default (set again by _inject_after).
            backend.settings = dict(self.session.settings)
            for name in self._fixups:
                backend.settings[name] = UNKNOWN
            backend.synced_with = (self.id, self.session.version)

    def _inject_after(self, backend: Backend, status: int) -> None:
        """Before the client's next message: set again the startup values a RESET lost on
        this backend, and ask Postgres what still pins it."""
        parts = []
        if self._fixups:
            wanted = effective_settings(self.session, self.tx.pending)
            for name in sorted(self._fixups):
                if name in wanted:
                    parts.append(set_statement(name, wanted[name]))
        self._probing = self._probe_wanted and status == _I
        if self._probing:
            parts.append(PROBE_SQL)
        if not parts:
            self._fixups.clear()
            self._settle(backend)
            return
        self._inject_kind = _INJECT_AFTER
        backend.inject(";\n".join(parts), [])

    _probing = False

    def _after_injected(self, backend: Backend) -> None:
        self._inject_kind = _INJECT_SYNC
        if self._fixups:
            if backend.tx_status == _I:
                for name in self._fixups:
                    if name in self.session.settings:
                        backend.settings[name] = self.session.settings[name]
                    else:
                        backend.settings.pop(name, None)
            self._fixups.clear()
        if self._probing:
            self._probing = False
            self._probe_wanted = False
            if backend.inject_rows:
                row = backend.inject_rows[-1]
                self.session.apply_probe([int(v or 0) for v in row])
                self._pin_check = True
        self._settle(backend)
        self._resume()

    def on_parameter_status(self, name: str, value: str) -> None:
        if self.reported.get(name) != value:
            self.reported[name] = value
            self.send(msgs.parameter_status(name, value))

    def on_error(self) -> None:
        self.query_failed = True

    def on_backend_lost(self, backend: Backend, exc: Exception | None) -> None:
        """The server connection died while this client held it."""
        self.backend = None
        self._cancel_timers()
        self._fixups.clear()
        self._probe_wanted = self._probing = False
        # Died while running the deferred BEGIN: the client's transaction is lost with it.
        begun = self._inject_kind == _INJECT_BEGIN
        self._inject_kind = _INJECT_SYNC
        self._query_start = self._tx_start = 0.0
        if self.state == LOGIN:
            self.fatal(PoolerError(codes.CONNECTION_FAILURE,
                                   "server connection lost during login"))
            return
        if self.session.pinned:
            self.fatal(PoolerError(
                codes.CONNECTION_FAILURE,
                "server connection lost; this session's state on it ("
                + ", ".join(self.session.pin_reasons()) + ") is gone",
            ))
            return
        in_tx = begun or backend.tx_status != _I or bool(self.tx)
        pending = backend.pending
        busy = pending > 0 or self.in_batch
        self.inflight.clear()
        self.tx = Transaction()
        self._tx_dirty = False
        self.statements = {k: v for k, v in self.statements.items() if k}
        if not (in_tx or busy):
            return  # nothing was lost: the next statement takes another backend
        what = "the transaction was rolled back" if in_tx else "the statement did not finish"
        fields = backend.fatal_fields or {}
        reason = fields.get("M") or (
            (exc.message if isinstance(exc, PoolerError) else str(exc)) if exc
            else "the server closed the connection")
        err = msgs.error_response(
            codes.CONNECTION_FAILURE,
            f"server connection lost ({reason}); {what}",
            hint="retry the transaction: this connection stays usable",
        )
        self.lost_tx = in_tx
        rfq = self._rfq()
        # Every query or batch in flight gets its error and ReadyForQuery (none of them ran).
        for _ in range(pending):
            self.send(err)
            self.send(rfq)
        if self.in_batch:
            # A batch not synced yet: error now, ReadyForQuery at its Sync.
            self.send(err)
            self.in_batch = False
            self._skipping = True
        if not busy:
            # Idle in the transaction: the client learns it at its next statement.
            self._lost_error = err
        self.flush()
        self._process()

    # -- leaving -----------------------------------------------------------------------------

    def _terminate(self) -> None:
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()

    def _abandon(self, backend: Backend) -> None:
        """The client is gone while holding ``backend``: clean it for the next client."""
        backend.unlink()
        assert self.pool is not None
        if backend.closed:
            self.pool.forget(backend)
            return
        if (backend.pending > 0 or self.in_batch or backend.error_in_batch or backend.copy
                or backend.injecting):
            # Mid-query (or mid-batch, or COPY): close the connection, and Postgres rolls
            # back. Postgres notices a closed socket only when it next reads or writes, so a
            # running query is cancelled too, or it would run to its end holding its locks.
            # (Reusing the backend would mean matching every answer still to come to what
            # the client sent, and a client that sent what Postgres ignores leaves nothing
            # to match.)
            if backend.pending > 0:
                cfg = self.server.config
                self.server.spawn(send_cancel(backend, cfg.server_host, cfg.pg_port))
            self.pool.forget(backend)
            backend.close()
            return
        cleanup = []
        if backend.tx_status != _I:
            cleanup.append("ROLLBACK")
        if self.session.pinned:
            cleanup.append("DISCARD ALL")
            backend.forget_prepared()
            backend.settings = {}
            backend.synced_with = (0, -1)
        if not cleanup:
            self.pool.release(backend)
            return
        backend.clean_up(cleanup)

    # -- cancel and timers ---------------------------------------------------------------------

    def cancel_running(self) -> None:
        """Cancel this client's query, if one runs now (else nothing: see the module's
        docstring)."""
        backend = self.backend
        if backend is not None and backend.pending > 0:
            cfg = self.server.config
            self.server.spawn(send_cancel(backend, cfg.server_host, cfg.pg_port))
        elif self.waiting and self.state == READY and self.pool is not None:
            # Still waiting for a backend: the statement has not started; it fails as a
            # cancelled one does.
            self.pool.cancel_wait(self)
            self.on_backend_error(PoolerError(
                codes.QUERY_CANCELED, "canceling statement due to user request",
                detail="it was waiting for a server connection"))

    def _start_query_timer(self) -> None:
        timeout = self.server.config.query_timeout
        if timeout > 0 and self._query_timer is None:
            self._query_timer = asyncio.get_running_loop().call_later(
                timeout, self._query_timed_out)

    def _cancel_query_timer(self) -> None:
        if self._query_timer is not None:
            self._query_timer.cancel()
            self._query_timer = None

    def _query_timed_out(self) -> None:
        self._query_timer = None
        self.send(msgs.error_response(
            codes.QUERY_CANCELED,
            f"canceling statement: it ran longer than the pooler's query timeout "
            f"({self.server.config.query_timeout:g} s)",
            notice=True, severity="WARNING",
        ))
        self.flush()
        self.cancel_running()

    def _start_idle_tx_timer(self) -> None:
        timeout = self.server.config.idle_transaction_timeout
        if timeout > 0:
            self._cancel_idle_tx_timer()
            self._idle_tx_timer = asyncio.get_running_loop().call_later(
                timeout, self._idle_tx_timed_out)

    def _cancel_idle_tx_timer(self) -> None:
        if self._idle_tx_timer is not None:
            self._idle_tx_timer.cancel()
            self._idle_tx_timer = None

    def _idle_tx_timed_out(self) -> None:
        self._idle_tx_timer = None
        self.fatal(PoolerError(
            codes.IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            "terminating connection due to idle-in-transaction timeout "
            f"({self.server.config.idle_transaction_timeout:g} s); the transaction was "
            "rolled back",
        ))

    def _cancel_timers(self) -> None:
        self._cancel_idle_tx_timer()
        self._cancel_query_timer()


_IN_FAILED_TX = msgs.error_response(
    codes.IN_FAILED_SQL_TRANSACTION,
    "current transaction is aborted, commands ignored until end of transaction block",
)
_ROLLBACK_DONE = msgs.command_complete("ROLLBACK")
_BIND_COMPLETE = bytes((ord("2"), 0, 0, 0, 4))
_NO_DATA = bytes((ord("n"), 0, 0, 0, 4))
_NO_PARAMETERS = bytes((ord("t"), 0, 0, 0, 6, 0, 0))
_TX_END_WORDS = (b"rollback", b"abort", b"commit", b"end")


_PARAMETER_RUNS: dict[tuple[tuple[str, str], ...], bytes] = {}


def _parameter_run(params: tuple[tuple[str, str], ...]) -> bytes:
    """The ParameterStatus messages for ``params``, cached (a few distinct sets at most)."""
    run = _PARAMETER_RUNS.get(params)
    if run is None:
        if len(_PARAMETER_RUNS) >= 64:
            _PARAMETER_RUNS.clear()
        run = b"".join(msgs.parameter_status(name, value) for name, value in params)
        _PARAMETER_RUNS[params] = run
    return run


def _tx_end(sql: bytes) -> bool:
    """Is ``sql`` one statement that ends a transaction (ROLLBACK, ABORT, COMMIT, END)?"""
    words = sql.strip().rstrip(b";").split()
    return bool(words) and words[0].lower() in _TX_END_WORDS and b";" not in sql.strip()[:-1]


def _parse_msg(name: bytes, query: bytes, tail: bytes) -> bytes:
    body = name + b"\x00" + query + b"\x00" + tail
    return b"P" + struct.pack("!i", len(body) + 4) + body


def _close_msg(kind: int, name: bytes) -> bytes:
    body = bytes([kind]) + name + b"\x00"
    return b"C" + struct.pack("!i", len(body) + 4) + body


def _describe_msg(kind: int, name: bytes) -> bytes:
    body = bytes([kind]) + name + b"\x00"
    return b"D" + struct.pack("!i", len(body) + 4) + body
