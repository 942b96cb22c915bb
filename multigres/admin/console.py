"""The wire side of an admin console (psql to a virtual database), shared by the services.

A service's console subclasses :class:`Console`: it lists its commands and the columns of each
SHOW, and runs them (``run``, returning a :class:`Result`). This module speaks the protocol:
simple queries (psql, several commands per query string) and the extended protocol (drivers
that prepare everything: Parse/Bind/Describe/Execute/Close/Sync), with an error skipping the
rest of the batch up to Sync as Postgres does. Anything that is not a command is 42601 with
the list of commands, so ``\\d`` in psql gets a clean error.

Every value is sent as text (type ``text``): this is for people and monitoring scripts.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Protocol

from multigres._cy.buffer import ReadBuffer, build_message
from multigres._cy.protocol import (
    build_backend_key_data,
    build_command_complete,
    build_data_row,
    build_error_response,
    build_notice_response,
    build_parameter_status,
    build_row_description,
)
from multigres.wire import sqlstate as codes

ADMIN_DATABASES = ("multigres", "pgbouncer")

_Q, _P, _B, _D, _E, _S, _H, _C, _X = (ord(c) for c in "QPBDESHCX")
AUTH_OK = build_message(ord("R"), struct.pack("!i", 0))
RFQ_IDLE = build_message(ord("Z"), b"I")
PARSE_COMPLETE = build_message(ord("1"))
BIND_COMPLETE = build_message(ord("2"))
CLOSE_COMPLETE = build_message(ord("3"))
NO_DATA = build_message(ord("n"))
NO_PARAMS = build_message(ord("t"), struct.pack("!h", 0))
EMPTY_QUERY = build_message(ord("I"))

Rows = list[list[object]]


class AdminError(Exception):
    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate, self.message, self.hint = sqlstate, message, hint


class Result:
    """What one command sends: columns and rows (or none), notices, the completion tag."""

    def __init__(self, tag: str, columns: list[str] | None = None, rows: Rows | None = None,
                 notices: list[str] | None = None) -> None:
        self.tag = tag
        self.columns = columns
        self.rows = rows or []
        self.notices = notices or []


class Client(Protocol):
    """Where a console's answers go: ``send`` buffers, ``flush`` writes."""

    def send(self, data: bytes) -> None: ...

    def flush(self) -> None: ...


# -- messages and values --------------------------------------------------------------------

def error_response(sqlstate: str, message: str, *, severity: str = "ERROR",
                   hint: str | None = None, notice: bool = False) -> bytes:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if hint is not None:
        fields["H"] = hint
    return build_notice_response(fields) if notice else build_error_response(fields)


def row_description(names: Iterable[str]) -> bytes:
    return build_row_description([(n, 25) for n in names])  # text columns (oid 25)


def data_row(values: Iterable[object]) -> bytes:
    """``str()`` of each value, None as NULL, booleans as PgBouncer shows them (0/1) so that
    its monitoring scripts read ours."""
    return build_data_row([None if v is None else str(int(v) if isinstance(v, bool) else v)
                           for v in values])


def greeting(params: Mapping[str, str], pid: int = 0, secret: int = 0) -> bytes:
    """What a client gets once logged in to a console: AuthenticationOk, the parameters,
    BackendKeyData and ReadyForQuery."""
    out = [AUTH_OK]
    out += [build_parameter_status(k, v) for k, v in params.items()]
    out += [build_backend_key_data(pid, secret), RFQ_IDLE]
    return b"".join(out)


def console_params(version: str, application_name: str) -> dict[str, str]:
    return {"server_version": version, "client_encoding": "UTF8",
            "server_encoding": "UTF8", "DateStyle": "ISO, MDY", "integer_datetimes": "on",
            "standard_conforming_strings": "on", "application_name": application_name}


def ts(wall: float | None) -> str | None:
    """A Unix time as PgBouncer's consoles show it."""
    if not wall:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


def us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def parse(sql: str) -> list[str]:
    """The statements of one query string (admin commands hold no quoted ';')."""
    return [s.strip() for s in sql.split(";") if s.strip()]


# -- the protocol ---------------------------------------------------------------------------

class Console:
    """One console session. Subclasses set ``commands`` and ``show_columns`` and implement
    ``run``, ``start`` and ``terminate``."""

    commands: tuple[str, ...] = ()
    # SHOW name -> its columns (known before running it: Describe answers from here).
    show_columns: dict[str, list[str]] = {}
    # Exceptions with ``sqlstate``, ``message`` and ``hint`` that go to the client as errors.
    client_errors: tuple[type[Exception], ...] = (AdminError,)

    def __init__(self) -> None:
        # Extended protocol: statement name -> text, portal name -> text; and after an
        # error, the rest of the batch is skipped up to Sync.
        self.statements: dict[bytes, str] = {}
        self.portals: dict[bytes, str] = {}
        self.skip_to_sync = False

    # -- hooks ---------------------------------------------------------------------------

    async def run(self, stmt: str) -> Result:
        raise NotImplementedError

    def start(self, client: Any, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` (which sends its results) while the client's further messages wait."""
        raise NotImplementedError

    def terminate(self, client: Any) -> None:
        raise NotImplementedError

    # -- commands every console has -------------------------------------------------------

    def help(self) -> Result:
        return Result("SHOW", notices=["Console usage\n" + "\n".join(
            "\t" + c for c in self.commands)])

    def unknown(self, stmt: str) -> AdminError:
        shown = " ".join(stmt.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return AdminError(codes.SYNTAX_ERROR, f"unknown admin command: {shown!r}",
                          hint="the admin console knows: " + ", ".join(self.commands))

    # -- messages ------------------------------------------------------------------------

    def handle(self, client: Any, t: int, rb: ReadBuffer) -> None:
        """One client message (the current one of ``rb``)."""
        if t == _X:
            self.terminate(client)
            return
        if self.skip_to_sync and t != _S:
            rb.discard_message()
            return
        if t == _Q:
            sql = rb.read_cstr().decode("utf-8", "replace")
            self.start(client, self._simple_query(client, sql))
        elif t == _P:
            name = rb.read_cstr()
            self.statements[name] = rb.read_cstr().decode("utf-8", "replace")
            rb.discard_message()
            client.send(PARSE_COMPLETE)
        elif t == _B:
            portal, stmt = rb.read_cstr(), rb.read_cstr()
            rb.discard_message()
            if stmt not in self.statements:
                self._batch_error(client, codes.INVALID_SQL_STATEMENT_NAME,
                                  f"prepared statement {stmt.decode()!r} does not exist")
                return
            self.portals[portal] = self.statements[stmt]
            client.send(BIND_COMPLETE)
        elif t == _D:
            kind, name = rb.read_byte(), rb.read_cstr()
            rb.discard_message()
            is_stmt = kind == ord("S")
            text = (self.statements if is_stmt else self.portals).get(name)
            if text is None:
                what = "prepared statement" if is_stmt else "portal"
                self._batch_error(client, codes.INVALID_SQL_STATEMENT_NAME if is_stmt
                                  else codes.INVALID_CURSOR_NAME,
                                  f"{what} {name.decode()!r} does not exist")
                return
            if is_stmt:
                client.send(NO_PARAMS)
            cols = self._columns(text)
            client.send(row_description(cols) if cols else NO_DATA)
        elif t == _E:
            portal = rb.read_cstr()
            rb.discard_message()
            text = self.portals.get(portal)
            if text is None:
                self._batch_error(client, codes.INVALID_CURSOR_NAME,
                                  f"portal {portal.decode()!r} does not exist")
                return
            self.start(client, self._execute(client, text))
        elif t == _C:
            kind, name = rb.read_byte(), rb.read_cstr()
            rb.discard_message()
            (self.statements if kind == ord("S") else self.portals).pop(name, None)
            client.send(CLOSE_COMPLETE)
        elif t == _S:
            rb.discard_message()
            self.skip_to_sync = False
            self.portals.pop(b"", None)
            client.send(RFQ_IDLE)
            client.flush()
        elif t == _H:
            rb.discard_message()
            client.flush()
        else:
            rb.discard_message()
            client.send(error_response(
                codes.PROTOCOL_VIOLATION,
                f"unexpected message type {chr(t)!r} on the admin console"))
            client.send(RFQ_IDLE)
            client.flush()

    def _batch_error(self, client: Client, sqlstate: str, message: str) -> None:
        client.send(error_response(sqlstate, message))
        self.skip_to_sync = True

    def _error(self, e: Exception) -> bytes:
        return error_response(getattr(e, "sqlstate", codes.INTERNAL_ERROR),
                              getattr(e, "message", str(e)), hint=getattr(e, "hint", None))

    async def _simple_query(self, client: Client, sql: str) -> None:
        stmts = parse(sql)
        if not stmts:
            client.send(EMPTY_QUERY)
        for stmt in stmts:
            try:
                result = await self.run(stmt)
            except self.client_errors as e:
                client.send(self._error(e))
                break
            self._send(client, result, describe=True)
        client.send(RFQ_IDLE)

    async def _execute(self, client: Client, text: str) -> None:
        stmts = parse(text)
        if not stmts:
            client.send(EMPTY_QUERY)
            return
        if len(stmts) > 1:
            self._batch_error(client, codes.SYNTAX_ERROR,
                              "cannot insert multiple commands into a prepared statement")
            return
        try:
            result = await self.run(stmts[0])
        except self.client_errors as e:
            client.send(self._error(e))
            self.skip_to_sync = True
            return
        self._send(client, result, describe=False)

    def _send(self, client: Client, result: Result, describe: bool) -> None:
        for n in result.notices:
            client.send(error_response("00000", n, severity="NOTICE", notice=True))
        if result.columns is not None and describe:
            client.send(row_description(result.columns))
        for r in result.rows:
            client.send(data_row(r))
        client.send(build_command_complete(result.tag))

    def _columns(self, text: str) -> list[str] | None:
        stmts = parse(text)
        if len(stmts) != 1:
            return None
        words = stmts[0].lower().split()
        if len(words) == 2 and words[0] == "show":
            return self.show_columns.get(words[1])
        return None
