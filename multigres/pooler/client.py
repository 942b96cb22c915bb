"""One client connection: startup, authentication, and the client -> server data path.

A client holds a backend only while a reason holds: an open transaction, an extended-protocol
batch up to its Sync, a query in flight, COPY, or session state that cannot move (see
session.py). Between those it holds nothing, and its next statement may run on any backend of
the pool; its settings and prepared statements follow it there.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from multigres._cy.buffer import ProtocolError, ReadBuffer, WriteBuffer
from multigres.pooler import msgs
from multigres.pooler.backend import Backend, server_statement_name
from multigres.pooler.errors import PoolerError
from multigres.pooler.session import SessionState, settings_diff, startup_settings
from multigres.sql.session import Effect, session_effects
from multigres.wire import sqlstate as codes

if TYPE_CHECKING:
    from multigres.pooler.pool import Pool
    from multigres.pooler.server import PoolerServer

_Q, _P, _B, _D, _C, _E, _S, _H, _X, _F = (ord(c) for c in "QPBDCESHXF")
_COPY_DATA, _COPY_DONE, _COPY_FAIL = ord("d"), ord("c"), ord("f")
_I, _T, _ERR = ord("I"), ord("T"), ord("E")
_STMT = ord("S")

STARTUP, AUTH, LOGIN, READY, CLOSED = range(5)
ADMIN_DATABASES = ("multigres", "pgbouncer")


class Client(asyncio.Protocol):
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
        self.pool: Pool | None = None
        self.backend: Backend | None = None
        self.last_backend: Backend | None = None
        self.waiting = False
        self.virtual_pid = 0
        self.cancel_key = secrets.randbits(31)
        # Parameter values this client has been told (ParameterStatus).
        self.reported: dict[str, str] = {}
        # client statement name -> (server name, Parse message under the server name, effects)
        self.statements: dict[bytes, tuple[str, bytes, list[Effect]]] = {}
        self.portal_effects: dict[bytes, list[Effect]] = {}
        self.batch_effects: list[Effect] = []
        self.batch_word = ""
        # Per Z-producing message in flight: (effects, first word of the statement).
        self.inflight: deque[tuple[list[Effect], str]] = deque()
        self.tx_effects: list[Effect] = []
        self.query_failed = False
        self.in_batch = False
        self._have_current = False
        self._reading_paused = False
        self._idle_tx_timer: asyncio.TimerHandle | None = None
        self._query_timer: asyncio.TimerHandle | None = None
        self._auth: Any = None
        self.admin: Any = None
        self.queries = 0
        self.transactions = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.clients[self.id] = self

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
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self.rbuf.feed_data(data)
            if self.state == READY:
                self._process()
            elif self.state in (STARTUP, AUTH):
                self.server.startup.handle(self)
        except ProtocolError as e:
            self.fatal(PoolerError(codes.PROTOCOL_VIOLATION, str(e)))
        except PoolerError as e:
            self.fatal(e)

    # -- output ---------------------------------------------------------------------------

    def flush(self) -> None:
        out = self.out
        if len(out) and self.transport is not None:
            self.transport.write(out.getvalue())
            out.reset()

    def send(self, data: bytes) -> None:
        self.out.write_raw(data)

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
        self.pool = self.server.pool_for(user, database)
        self.state = LOGIN
        self.send(msgs.AUTH_OK)
        self.flush()
        if self._want_backend():
            assert self.backend is not None
            self._finish_login(self.backend)

    def _finish_login(self, backend: Backend) -> None:
        for name, value in backend.params.items():
            if self.reported.get(name) != value:
                self.reported[name] = value
                self.send(msgs.parameter_status(name, value))
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

    def _want_backend(self) -> bool:
        """True when a backend is linked and in sync now; else it comes later."""
        assert self.pool is not None
        if self.waiting:
            return False
        backend = self.pool.acquire(self, prefer=self.last_backend)
        if backend is None:
            self.waiting = True
            self.pause_reading()
            return False
        return self._link(backend)

    def on_backend(self, backend: Backend) -> None:
        """The pool hands over a backend this client waited for."""
        self.waiting = False
        self.resume_reading()
        if self.state == CLOSED:
            assert self.pool is not None
            self.pool.release(backend)
            return
        if self._link(backend):
            self._resume()

    def on_backend_error(self, error: PoolerError) -> None:
        self.waiting = False
        self.resume_reading()
        if self.state == LOGIN:
            self.fatal(error)
            return
        # The statement that wanted a backend fails; the session goes on.
        self._have_current = False
        self._skip_to_sync()
        self.error(error)

    def _link(self, backend: Backend) -> bool:
        backend.link(self)
        self.backend = backend
        self.last_backend = backend
        if backend.synced_with != (self.id, self.session.version):
            sql = settings_diff(backend.settings, self.session.settings)
            if sql:
                backend.inject(sql, [])
                return False
            backend.synced_with = (self.id, self.session.version)
        return True

    def on_injected(self, backend: Backend, held: list[bytes]) -> None:
        backend.settings = dict(self.session.settings)
        backend.synced_with = (self.id, self.session.version)
        self._resume()

    def on_inject_failed(self, backend: Backend, fields: dict[str, str]) -> None:
        # Never run a client's statements with settings (a role!) other than its own.
        self.backend = None
        backend.unlink()
        assert self.pool is not None
        self.pool.forget(backend)
        backend.close()
        self.fatal(PoolerError(
            codes.CONNECTION_FAILURE,
            "could not restore this session's settings on a server connection: "
            + fields.get("M", "unknown error"),
            detail=fields.get("D"),
        ))

    def _resume(self) -> None:
        backend = self.backend
        if backend is None:
            return
        if self.state == LOGIN:
            self._finish_login(backend)
        else:
            self._process()

    # -- the data path ---------------------------------------------------------------------

    def _process(self) -> None:
        rb = self.rbuf
        while self.state == READY:
            if not self._have_current:
                if not rb.take_message():
                    break
                self._have_current = True
            t = rb.get_message_type()
            if self.admin is not None:
                self._have_current = False
                self.admin.handle(self, t, rb)
                continue
            backend = self.backend
            if backend is None:
                if t == _X:
                    self._terminate()
                    return
                if t == _S or t == _H:
                    # A Sync or Flush with nothing before it (or after an error we reported).
                    self._have_current = False
                    if t == _S:
                        self.send(msgs.RFQ_IDLE)
                    continue
                if not self._want_backend():
                    break
                backend = self.backend
                assert backend is not None
            elif backend.injecting:
                break
            self._have_current = False
            self._handle(t, backend)
        self._flush_backend()
        self.flush()

    def _flush_backend(self) -> None:
        buf = self.to_backend
        if len(buf) and self.backend is not None:
            self.backend.write(buf.getvalue())
        buf.reset()

    def _handle(self, t: int, backend: Backend) -> None:
        rb = self.rbuf
        out = self.to_backend
        self._cancel_idle_tx_timer()
        if t == _Q:
            msg = rb.message_bytes()
            sql = msg[5:-1].decode("utf-8", "replace")
            effects = session_effects(sql)
            self.inflight.append((effects, _first_word(sql)))
            backend.pending += 1
            backend.syncs_sent += 1
            self.queries += 1
            out.write_raw(msg)
            self._start_query_timer()
        elif t == _P:
            self.in_batch = True
            name = rb.read_cstr()
            query = rb.read_cstr()
            tail = rb.consume_message()
            effects = session_effects(query.decode("utf-8", "replace"))
            if not name:
                self.statements[b""] = ("", b"", effects)
                out.write_raw(_parse_msg(b"", query, tail))
                return
            sname = server_statement_name(query, tail)
            parse = _parse_msg(sname.encode(), query, tail)
            self.statements[name] = (sname, parse, effects)
            if sname in backend.prepared:
                # Already there (another client's, or ours from before): Postgres refuses a
                # second Parse of a name, so close it first and hide that CloseComplete.
                out.write_raw(_close_msg(_STMT, sname.encode()))
                backend.swallow_close.append((backend.syncs_sent, sname))
            backend.prepared.add(sname)
            out.write_raw(parse)
        elif t == _B:
            self.in_batch = True
            portal = rb.read_cstr()
            stmt = rb.read_cstr()
            tail = rb.consume_message()
            entry = self.statements.get(stmt)
            self.portal_effects[portal] = entry[2] if entry else []
            if not stmt or entry is None:
                # Unnamed, or unknown (Postgres will say it does not exist, by this name).
                out.write_raw(_bind_msg(portal, stmt, tail))
                return
            sname = self._ensure_prepared(backend, entry)
            out.write_raw(_bind_msg(portal, sname.encode(), tail))
        elif t == _E:
            self.in_batch = True
            portal = rb.read_cstr()
            self.batch_effects.extend(self.portal_effects.get(portal, ()))
            entry = self.statements.get(b"")
            self.queries += 1
            out.write_raw(rb.message_bytes())
            self._start_query_timer()
        elif t == _D or t == _C:
            self.in_batch = True
            kind = rb.read_byte()
            name = rb.read_cstr()
            if kind != _STMT or not name:
                out.write_raw(rb.message_bytes())
                return
            entry = self.statements.get(name)
            if entry is None:
                out.write_raw(rb.message_bytes())
                return
            if t == _C:
                del self.statements[name]
                backend.prepared.discard(entry[0])
                out.write_raw(_close_msg(_STMT, entry[0].encode()))
            else:
                sname = self._ensure_prepared(backend, entry)
                out.write_raw(_describe_msg(_STMT, sname.encode()))
        elif t == _S:
            self.in_batch = False
            self.inflight.append((self.batch_effects, self.batch_word))
            self.batch_effects = []
            backend.pending += 1
            backend.syncs_sent += 1
            out.write_raw(rb.message_bytes())
        elif t == _H:
            out.write_raw(rb.message_bytes())
        elif t == _COPY_DATA or t == _COPY_DONE or t == _COPY_FAIL:
            out.write_raw(rb.message_bytes())
        elif t == _F:
            self.inflight.append(([], ""))
            backend.pending += 1
            backend.syncs_sent += 1
            out.write_raw(rb.message_bytes())
        elif t == _X:
            self._terminate()
        else:
            raise PoolerError(codes.PROTOCOL_VIOLATION,
                              f"invalid frontend message type {t} ({chr(t)!r})")

    def _ensure_prepared(self, backend: Backend, entry: tuple[str, bytes, list[Effect]]) -> str:
        sname, parse, _ = entry
        if sname not in backend.prepared:
            # This backend has not seen the statement: prepare it first, answer hidden.
            self.to_backend.write_raw(parse)
            backend.prepared.add(sname)
            backend.swallow_parse.append((backend.syncs_sent, sname))
        return sname

    def _skip_to_sync(self) -> None:
        """After an error the pooler itself reported inside an extended batch, drop the
        batch's remaining messages up to its Sync, as Postgres does."""
        if not self.in_batch:
            return
        rb = self.rbuf
        while rb.take_message():
            if rb.get_message_type() == _S:
                self.in_batch = False
                return

    # -- events from the backend ---------------------------------------------------------------

    def on_ready_for_query(self, backend: Backend, status: int) -> None:
        self._cancel_query_timer()
        effects, word = self.inflight.popleft() if self.inflight else ([], "")
        failed = self.query_failed
        self.query_failed = False
        if status == _I:
            if self.tx_effects or (backend.syncs_done and self._was_in_tx):
                committed = not failed and word not in ("rollback", "abort")
                if committed:
                    self._commit_effects(backend, self.tx_effects + effects)
                self.tx_effects = []
                self.transactions += 1
            elif not failed and effects:
                self._commit_effects(backend, effects)
            elif not failed:
                self.transactions += 1
            self._was_in_tx = False
        elif status == _T:
            if not failed:
                self.tx_effects.extend(effects)
            self._was_in_tx = True
        else:
            self._was_in_tx = True
        if self.state == LOGIN:
            return
        self._maybe_release(backend)
        if self.backend is not None and backend.pending == 0 and status != _I:
            self._start_idle_tx_timer()

    _was_in_tx = False

    def _commit_effects(self, backend: Backend, effects: list[Effect]) -> None:
        if not effects:
            return
        before = self.session.version
        if self.session.apply(effects):
            backend.prepared.clear()
            backend.settings = {}
            self.statements.clear()
        # The statements ran on this backend: it now has what the client has, except that a
        # RESET there went to the server's default where the client's is its startup value.
        if self.session.version != before:
            backend.settings = dict(self.session.settings)
            for e in effects:
                if e.kind.name in ("RESET", "RESET_ALL", "DISCARD_ALL"):
                    backend.settings = {
                        k: v for k, v in backend.settings.items() if k not in self.session.base
                    }
                    backend.synced_with = (0, -1)
                    break
            else:
                backend.synced_with = (self.id, self.session.version)

    def _maybe_release(self, backend: Backend) -> None:
        if (self.backend is backend and backend.is_idle() and not self.in_batch
                and not self.session.pinned):
            self.backend = None
            backend.unlink()
            assert self.pool is not None
            self.pool.release(backend)

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
        in_tx = backend.tx_status != _I or bool(self.tx_effects) or self._was_in_tx
        busy = backend.pending > 0 or self.in_batch
        self.inflight.clear()
        self.tx_effects = []
        self._was_in_tx = False
        self.statements = {k: v for k, v in self.statements.items() if k}
        if in_tx or busy:
            what = "the transaction was rolled back" if in_tx else "the statement did not finish"
            self.send(msgs.error_response(
                codes.CONNECTION_FAILURE,
                f"server connection lost; {what}",
                hint="retry the transaction: this connection stays usable",
            ))
            self._skip_to_sync()
            self.in_batch = False
            self.send(msgs.RFQ_IDLE)
            self.flush()

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
        if backend.pending > 0 or backend.copy or backend.injecting:
            # Mid-statement: cancelling and waiting costs more than a new connection.
            self.pool.forget(backend)
            backend.close()
            return
        cleanup = []
        if backend.tx_status != _I:
            cleanup.append("ROLLBACK")
        if self.session.pinned:
            cleanup.append("DISCARD ALL")
            backend.prepared.clear()
            backend.settings = {}
            backend.synced_with = (0, -1)
        if not cleanup:
            self.pool.release(backend)
            return
        for sql in cleanup:
            backend.pending += 1
            backend.syncs_sent += 1
            backend.write(msgs.query(sql))
        # Backend.on_unlinked_idle returns it to the pool once the answers are in.

    # -- cancel and timers ---------------------------------------------------------------------

    def cancel_running(self) -> None:
        backend = self.backend
        if backend is not None and backend.pending > 0:
            self.server.send_cancel(backend.pid, backend.key)

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


def _first_word(sql: str) -> str:
    s = sql.lstrip()[:16].split(None, 1)
    return s[0].lower().rstrip(";") if s else ""


def _parse_msg(name: bytes, query: bytes, tail: bytes) -> bytes:
    body = name + b"\x00" + query + b"\x00" + tail
    return b"P" + struct.pack("!i", len(body) + 4) + body


def _bind_msg(portal: bytes, stmt: bytes, tail: bytes) -> bytes:
    body = portal + b"\x00" + stmt + b"\x00" + tail
    return b"B" + struct.pack("!i", len(body) + 4) + body


def _close_msg(kind: int, name: bytes) -> bytes:
    body = bytes([kind]) + name + b"\x00"
    return b"C" + struct.pack("!i", len(body) + 4) + body


def _describe_msg(kind: int, name: bytes) -> bytes:
    body = bytes([kind]) + name + b"\x00"
    return b"D" + struct.pack("!i", len(body) + 4) + body
