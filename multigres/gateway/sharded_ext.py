"""The extended query protocol for statements the engine runs (sharded databases).

A client's Parse of a statement on sharded tables starts an *engine batch*: that message and
the rest up to Sync are taken by the gateway, which answers them itself, in order, once the
Sync arrives: ParseComplete, BindComplete, the rows of each Execute, CloseComplete, then
ReadyForQuery. The statement is planned once (the plan cache, keyed by its normalized text);
each Bind's parameter values go into the plan's bind list like literals, as quoted literals
(text format) or decoded first (binary format of the common types), so the route is
computed per execution from the values. Later Binds of a statement the gateway prepared are
taken too; statements on the unsharded tablegroup go to its pooler as before (and, inside an
engine batch, run through the engine on the session's own connection there).

Limits, each refused with 0A000 naming it: Describe of a prepared statement (its columns are
known only by running it: Describe the portal instead, as most drivers do), Execute with a
row limit, binary result formats, binary parameters of types without a decoder here,
transaction control and settings inside an engine batch. Flush inside an engine batch sends
nothing until the Sync.
"""

from __future__ import annotations

import logging
import struct
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multigres._cy.buffer import build_message
from multigres._cy.gatecore import CLOSED
from multigres._cy.pgvalue import float_text
from multigres.gateway import sharded_session
from multigres.gateway.engine.result import Result, row_description
from multigres.gateway.plan import ShardedPlan
from multigres.sql.normalize import Normalized, StatementKind, normalize
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError
from multigres.wire.protocol import (
    BIND_COMPLETE_MSG,
    CLOSE_COMPLETE_MSG,
    NO_DATA_MSG,
    PARSE_COMPLETE_MSG,
    build_ready_for_query,
    parse_bind,
    parse_close,
    parse_describe,
    parse_execute,
    parse_parse,
)

if TYPE_CHECKING:
    from multigres.gateway.session import Session

log = logging.getLogger("multigres.gateway")

_P, _B, _D, _E, _C, _S, _H, _N, _T = (ord(c) for c in "PBDECSHNT")
EXT_TYPES = frozenset((_P, _B, _D, _E, _C, _S, _H))

# Type OIDs whose name the gateway writes as a cast after a parameter's quoted text, so that
# the shard reads the value as the type the client declared.
_TYPE_NAMES = {16: "bool", 17: "bytea", 18: '"char"', 19: "name", 20: "int8", 21: "int2",
               23: "int4", 25: "text", 26: "oid", 114: "json", 700: "float4", 701: "float8",
               1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp",
               1184: "timestamptz", 1186: "interval", 1700: "numeric", 2950: "uuid",
               3802: "jsonb"}


@dataclass
class Prepared:
    plan: ShardedPlan
    norm: Normalized
    oids: list[int]


@dataclass
class Portal:
    stmt: Prepared
    bind: list[str]
    result: Result | None = None  # run at Describe, sent at Execute


@dataclass
class ExtState:
    statements: dict[bytes, Prepared] = field(default_factory=dict)
    portals: dict[bytes, Portal] = field(default_factory=dict)
    batch: list[tuple[int, bytes]] | None = None  # an engine batch being gathered

    def takes(self, t: int, payload: bytes, s: Session) -> bool:
        """Whether this message belongs to an engine batch (gathered until its Sync)."""
        if self.batch is not None:
            self.batch.append((t, payload))
            return True
        if t == _P:
            name, query, _ = parse_parse(payload)
            if _engine_statement(s, query):
                self.batch = [(t, payload)]
                return True
            self.statements.pop(name, None)  # the pooler has it now
            return False
        if t == _B:
            _portal, stmt = _bind_names(payload)
            if stmt in self.statements:
                self.batch = [(t, payload)]
                return True
            return False
        if t in (_D, _C):
            kind, name = (parse_describe if t == _D else parse_close)(payload)
            known = self.statements if kind == ord("S") else self.portals
            if name in known:
                self.batch = [(t, payload)]
                return True
            return False
        if t == _E:
            portal, _ = parse_execute(payload)
            if portal in self.portals:
                self.batch = [(t, payload)]
                return True
        return False


def _bind_names(payload: bytes) -> tuple[bytes, bytes]:
    portal_end = payload.index(b"\0")
    stmt_end = payload.index(b"\0", portal_end + 1)
    return payload[:portal_end], payload[portal_end + 1:stmt_end]


def _engine_statement(s: Session, query: bytes) -> bool:
    if s.server.collations.get(s.database) is None:
        # Planned in the batch, once the collation is known; settings and transaction
        # control go to the pooler as always.
        try:
            kind = normalize(query).kind
        except ValueError:
            return False
        return kind not in (StatementKind.TRANSACTION, StatementKind.SESSION)
    plan = sharded_session.plan_of(s, query)
    return plan is not None and not plan.passthrough


async def run_batch(s: Session) -> None:
    """Answer an engine batch, up to and with its Sync."""
    ext = s.ext
    assert ext is not None
    batch, ext.batch = ext.batch or [], None
    out: list[bytes] = []
    failed = False
    try:
        await sharded_session.ensure_collation(s)
    except PgError as e:
        out.append(e.to_message())
        failed = True
    for t, payload in batch:
        if t == _S:
            break
        if failed or t == _H:
            continue  # after an error, Postgres skips to the Sync
        try:
            out.append(await _message(s, t, payload))
        except PgError as e:
            failed = True
            if s.tx_status == ord("T"):
                await sharded_session.fail_transaction(s)
            out.append(e.to_message())
    # While the gateway holds statements or portals, the client's Binds and Executes must
    # reach the session (the C path would forward them to the pooler).
    s.slow_client = bool(ext.statements or ext.portals)
    out.append(build_ready_for_query(s.tx_status if not s.failed_tx else ord("E")))
    if s.state != CLOSED:
        s.send(b"".join(out))


async def _message(s: Session, t: int, payload: bytes) -> bytes:
    ext = s.ext
    assert ext is not None
    if t == _P:
        name, query, oids = parse_parse(payload)
        plan = sharded_session.plan_of(s, query)
        if plan is None:
            raise PgError("the statement could not be planned", codes.SYNTAX_ERROR)
        if plan.primitive is None or plan.error is not None:
            raise plan.error or PgError("transaction control and settings are not supported "
                                        "in an extended-protocol batch on sharded tables",
                                        codes.FEATURE_NOT_SUPPORTED)
        ext.statements[name] = Prepared(plan, normalize(query), list(oids))
        return PARSE_COMPLETE_MSG
    if t == _B:
        portal, stmt_name, formats, values, result_formats = parse_bind(payload)
        stmt = ext.statements.get(stmt_name)
        if stmt is None:
            raise PgError(f'prepared statement "{stmt_name.decode(errors="replace")}" does '
                          "not exist", codes.INVALID_SQL_STATEMENT_NAME)
        if any(f != 0 for f in result_formats):
            raise PgError("binary result formats are not supported on sharded tables yet",
                          codes.FEATURE_NOT_SUPPORTED, hint="ask for text results")
        bind = _render(values, formats, stmt.oids)
        bind += [p.raw.decode("utf-8", "surrogateescape") for p in stmt.norm.params]
        ext.portals[portal] = Portal(stmt, bind)
        return BIND_COMPLETE_MSG
    if t == _D:
        kind, name = parse_describe(payload)
        if kind == ord("S"):
            raise PgError("Describe of a prepared statement on sharded tables is not "
                          "supported yet", codes.FEATURE_NOT_SUPPORTED,
                          hint="bind it and Describe the portal")
        p = _portal(ext, name)
        p.result = await sharded_session.execute_plan(s, p.stmt.plan, p.bind)
        return NO_DATA_MSG if p.result.fields is None else row_description(p.result.fields)
    if t == _E:
        portal, max_rows = parse_execute(payload)
        p = _portal(ext, portal)
        if max_rows:
            raise PgError("Execute with a row limit is not supported on sharded tables yet",
                          codes.FEATURE_NOT_SUPPORTED)
        res, p.result = p.result, None
        if res is None:
            res = await sharded_session.execute_plan(s, p.stmt.plan, p.bind)
        parts = [build_message(_N, n) for n in res.notices]
        parts += [build_message(ord("D"), r) for r in res.rows]
        parts.append(build_message(_C, res.tag + b"\0"))
        if portal == b"":
            ext.portals.pop(b"", None)  # the unnamed portal ends at the next Sync anyway
        return b"".join(parts)
    if t == _C:
        kind, name = parse_close(payload)
        (ext.statements if kind == ord("S") else ext.portals).pop(name, None)
        return CLOSE_COMPLETE_MSG
    raise PgError(f"unexpected message {chr(t)!r}", codes.PROTOCOL_VIOLATION)


def _portal(ext: ExtState, name: bytes) -> Portal:
    p = ext.portals.get(name)
    if p is None:
        raise PgError(f'portal "{name.decode(errors="replace")}" does not exist',
                      codes.INVALID_CURSOR_NAME)
    return p


def _render(values: list[bytes | None], formats: list[int], oids: list[int]) -> list[str]:
    """Each parameter as SQL text: a quoted literal (with a cast to the declared type)."""
    out = []
    for i, v in enumerate(values):
        fmt = formats[0] if len(formats) == 1 else (formats[i] if formats else 0)
        oid = oids[i] if i < len(oids) else 0
        if v is None:
            out.append("NULL" if not oid or oid not in _TYPE_NAMES
                       else f"NULL::{_TYPE_NAMES[oid]}")
            continue
        text = _text_of(v, oid) if fmt == 1 else v.decode("utf-8", "surrogateescape")
        lit = "'" + text.replace("'", "''") + "'"
        name = _TYPE_NAMES.get(oid)
        out.append(f"{lit}::{name}" if name else lit)
    return out


def _text_of(v: bytes, oid: int) -> str:
    """A binary-format parameter's text form."""
    if oid in (20, 21, 23, 26):
        fmt = {20: "!q", 21: "!h", 23: "!i", 26: "!I"}[oid]
        return str(struct.unpack(fmt, v)[0])
    if oid == 16:
        return "true" if v == b"\x01" else "false"
    if oid in (700, 701):
        f = struct.unpack("!f" if oid == 700 else "!d", v)[0]
        return float_text(f, oid == 700).decode()
    if oid in (25, 1043, 1042, 19, 114, 0):
        return v.decode("utf-8", "surrogateescape")
    if oid == 3802 and v[:1] == b"\x01":
        return v[1:].decode("utf-8", "surrogateescape")
    if oid == 17:
        return "\\x" + v.hex()
    if oid == 2950:
        return str(uuid.UUID(bytes=v))
    raise PgError(f"binary parameters of type {oid} are not supported on sharded tables yet",
                  codes.FEATURE_NOT_SUPPORTED, hint="send parameters in text format")

