"""What a session does differently on a sharded database (see sharded.py for the rules).

``query`` is called by the session for each simple Query when the database has a sharded
VSchema: it returns False for a statement the session forwards as usual (to the unsharded
tablegroup's pooler: plans with ``passthrough``, settings, transaction control that touched
no shard), True when it took the statement (an engine task now owns the session until the
answer is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from pglast import ast, parse_sql
from pglast.parser import ParseError

from multigres._cy.buffer import build_message
from multigres._cy.gatecore import CLOSED
from multigres._cy.pgvalue import RowView
from multigres.gateway.discovery import UNSHARDED
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.plan import ShardedPlan
from multigres.gateway.sharded import MULTI, SINGLE, ShardedState
from multigres.sql.normalize import Normalized, StatementKind, TxVerb, normalize
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError
from multigres.wire.protocol import build_command_complete, build_query, build_ready_for_query

if TYPE_CHECKING:
    from multigres.gateway.session import Session
    from multigres.gateway.upstream import Upstream

log = logging.getLogger("multigres.gateway")

_I, _T, _E, _N = (ord(c) for c in "ITEN")
_END = (TxVerb.COMMIT, TxVerb.ROLLBACK)
_MODE_SETTING = b"multigres.transaction_mode"


def enter(s: Session) -> None:
    """The session's database is sharded (at login, or after a VSchema change)."""
    server = s.server
    db = s.database
    vs = server.vschemas.current(db)
    default = vs.default_tablegroup if vs is not None else None
    s.sharded = ShardedState(
        lambda tg, shard: open_shard(s, tg, shard),
        lambda tg: server.discovery.shard_names(db, tg),
        server.sequence_allocator(db),
        unsharded=None if default is None else (default.name, UNSHARDED),
        borrow=lambda: s.upstream if s.upstream is not None and not s.upstream.closed else None,
        give_back=lambda up: _give_back(s, up),
        tables=s.shard_tables)
    s.direct_plans = server.shard_planner.direct
    from multigres.gateway.sharded_ext import ExtState  # (it imports this module)

    s.ext = ExtState()
    # The C fast path forwards only what this cache holds: the statements that run
    # unchanged on the unsharded tablegroup.
    s.plans = server.shard_planner.passthrough


def _give_back(s: Session, up: Upstream) -> None:
    """The engine is done with the session's connection to the unsharded tablegroup."""
    if up is not s.upstream:
        return
    if up.closed:
        s.upstream_lost(up, None)
    else:
        s._attach(up)


async def open_shard(s: Session, tablegroup: str, shard: str) -> Upstream:
    up = await s._connect_upstream((tablegroup, shard))
    if s.replay:
        await s._replay(up)
    return up


def query(s: Session, msg: bytes) -> bool:
    st = s.sharded
    assert st is not None
    sql = msg[5:-1]
    try:
        norm = normalize(sql)
    except ValueError:
        return False  # an unterminated quote or comment: Postgres says so
    kind = norm.kind
    if kind == StatementKind.TRANSACTION:
        verb = norm.tx_verb
        if verb == TxVerb.BEGIN:
            st.begin(sql.decode("utf-8", "replace"))
            return False
        if verb in _SAVEPOINT_VERBS:
            ops = _savepoint_ops(sql)
            if ops is None or s.tx_status == _I:
                return False  # Postgres answers (a syntax error, or outside a transaction)
            if not st.touched:
                for op_verb, name, op_sql in ops:
                    st.savepoints_note(op_verb, name, op_sql)
                return False
            _take(s, _savepoint(s, msg, ops))
            return True
        if not st.touched:
            if verb in _END:
                st.begin_sql = None
                st.savepoints = []
            return False
        if verb in _END:
            _take(s, end_transaction(s, msg, verb == TxVerb.COMMIT))
            return True
        _take(s, _fail(s, PgError(f"{verb.name.replace('_', ' ')} is not supported in a "
                                  "transaction that spans shards", codes.FEATURE_NOT_SUPPORTED)))
        return True
    if kind == StatementKind.SESSION:
        if _MODE_SETTING in sql.lower():
            return _set_mode(s, sql)
        return False
    vs = s.server.vschemas.current(s.database)
    if vs is None:
        return False
    collation = s.server.collations.get(s.database)
    if collation is None:
        _take(s, _learn_then_run(s, msg, norm))
        return True
    plan = s.server.shard_planner.plan(norm, s.database, vs, collation)
    if plan.passthrough:
        return False
    _take(s, run(s, plan, norm))
    return True


async def ensure_collation(s: Session) -> str:
    """The database's collation, asked of its unsharded tablegroup the first time (the
    planner needs it: text merged at the gateway is ordered bytewise, as C orders it)."""
    coll = s.server.collations.get(s.database)
    if coll is not None:
        return coll
    st = s.sharded
    assert st is not None and st.unsharded is not None
    (res,) = await st.execute([ShardQuery(*st.unsharded, "SELECT datcollate FROM pg_database "
                                          "WHERE datname = current_database()")])
    coll = "C"
    if res.rows:
        value = RowView(res.rows[0])[0]
        if value is not None:
            coll = value.decode()
    s.server.collations[s.database] = coll
    return coll


async def _learn_then_run(s: Session, msg: bytes, norm: Normalized) -> None:
    try:
        collation = await ensure_collation(s)
    except PgError as e:
        await _fail(s, e)
        return
    vs = s.server.vschemas.current(s.database)
    if vs is None:
        plan = None
    else:
        plan = s.server.shard_planner.plan(norm, s.database, vs, collation)
    if plan is None or plan.passthrough:
        await _to_unsharded(s, msg)
        return
    await run(s, plan, norm)


async def _to_unsharded(s: Session, msg: bytes) -> None:
    """The client's own message to the unsharded tablegroup's pooler (its answer goes to the
    client), once the engine has given the session's connection back."""
    st = s.sharded
    assert st is not None
    st.give_back()
    up = s.upstream
    if up is None:
        await _fail(s, PgError("the session lost its pooler", codes.CONNECTION_FAILURE))
        return
    s.in_flight += 1
    up.write(msg)


def plan_of(s: Session, query: bytes) -> ShardedPlan | None:
    """The sharded plan of a statement text (None: it does not lex, or no VSchema)."""
    try:
        norm = normalize(query)
    except ValueError:
        return None
    vs = s.server.vschemas.current(s.database)
    collation = s.server.collations.get(s.database)
    if vs is None or collation is None:
        return None
    return s.server.shard_planner.plan(norm, s.database, vs, collation)


_SAVEPOINT_VERBS = frozenset({TxVerb.SAVEPOINT, TxVerb.RELEASE, TxVerb.ROLLBACK_TO})


_SP_KINDS = {4: TxVerb.SAVEPOINT, 5: TxVerb.RELEASE, 6: TxVerb.ROLLBACK_TO}


def _savepoint_ops(sql: bytes) -> list[tuple[TxVerb, str, str]] | None:
    """(verb, name, SQL) of each statement of a string of savepoint statements (drivers send
    ``ROLLBACK TO SAVEPOINT x; RELEASE SAVEPOINT x`` as one); None if it is anything else."""
    text = sql.decode("utf-8", "replace")
    try:
        stmts = parse_sql(text)
    except ParseError:
        return None
    ops = []
    for raw in stmts:
        stmt = raw.stmt
        if not isinstance(stmt, ast.TransactionStmt) or stmt.kind is None:
            return None
        kind = int(stmt.kind)
        if kind not in _SP_KINDS:
            return None
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        ops.append((_SP_KINDS[kind], str(stmt.savepoint_name),
                    text[start:end].strip().rstrip(";")))
    return ops or None


async def _savepoint(s: Session, msg: bytes, ops: list[tuple[TxVerb, str, str]]) -> None:
    """Savepoint statements in a transaction that touched shards: on every shard first,
    then the client's own string on the unsharded tablegroup (its answer is theirs)."""
    st = s.sharded
    assert st is not None
    try:
        for verb, name, sql in ops:
            await st.savepoint(verb, name, sql)
    except PgError as e:
        await _fail(s, e)
        return
    if any(verb == TxVerb.ROLLBACK_TO for verb, _, _ in ops) and s.failed_tx:
        s.failed_tx = False  # the transaction is usable again, as on Postgres
    await _to_unsharded(s, msg)


def failed_query(s: Session, msg: bytes) -> bool:
    """A Query while the transaction failed after an error on a shard, with savepoints in
    effect (the shards' transactions are still open: ROLLBACK TO can recover, as on
    Postgres). False: the session answers as for any failed transaction."""
    st = s.sharded
    if st is None or not st.failed or not st.savepoints:
        return False
    try:
        norm = normalize(msg[5:-1])
    except ValueError:
        return False
    if norm.kind == StatementKind.TRANSACTION and norm.tx_verb == TxVerb.ROLLBACK_TO:
        ops = _savepoint_ops(msg[5:-1])
        if ops is not None:
            _take(s, _savepoint(s, msg, ops))
            return True
    if norm.kind == StatementKind.TRANSACTION and norm.tx_verb in _END:
        # COMMIT of a failed transaction rolls back, as Postgres does (and says ROLLBACK).
        s.failed_tx = False
        _take(s, end_transaction(s, build_query("ROLLBACK"), False))
        return True
    return False


def replay_setting(s: Session, msg: bytes) -> None:
    """A SET that took on the unsharded tablegroup: the same on every open shard."""
    st = s.sharded
    if st is None:
        return
    sql = msg[5:-1].decode("utf-8", "replace")
    for conn in st.conns.values():
        s.server.spawn(_quietly(conn.query(sql)))


async def _quietly(coro: object) -> None:
    with contextlib.suppress(PgError):
        await coro  # type: ignore[misc]


def take(s: Session, coro: object) -> None:
    """The coroutine owns the session until it is done (the client's next messages wait)."""
    _take(s, coro)


def _take(s: Session, coro: object) -> None:
    s.busy = True
    s.server.spawn(_own(s, coro))


async def _own(s: Session, coro: object) -> None:
    try:
        await _answers_before(s)
        await coro  # type: ignore[misc]
    except Exception:
        log.exception("session %s: sharded statement", s.key)
        s.send(PgError("internal error in the gateway's engine", codes.INTERNAL_ERROR
                       ).to_message() + build_ready_for_query(s.tx_status))
    finally:
        if s.sharded is not None:
            s.sharded.give_back()
        if s.state != CLOSED:
            s._go_on()


async def _answers_before(s: Session) -> None:
    """Statements the client sent before this one are answered first (a client that
    pipelines an engine statement behind forwarded ones)."""
    if s.in_flight and s.upstream is not None:
        s.idle = asyncio.get_running_loop().create_future()
        s.watch_answers = True  # their answers take the Python path, which sees the last
        try:
            await s.idle
        finally:
            s.watch_answers = False
            s.idle = None


async def run(s: Session, plan: ShardedPlan, norm: Normalized) -> None:
    """A simple Query the engine runs: its answer and ReadyForQuery."""
    try:
        bind = [p.raw.decode("utf-8", "surrogateescape") for p in norm.params]
        res = await execute_plan(s, plan, bind)
        out = [build_message(_N, n) for n in res.notices]
        out.append(res.to_messages())
        out.append(build_ready_for_query(s.tx_status))
        s.send(b"".join(out))
    except PgError as e:
        await _fail(s, e)


async def execute_plan(s: Session, plan: ShardedPlan, bind: list[str]) -> Result:
    """Run a plan in the session's transaction state; PgError as the client should see it
    (the caller fails the transaction, see ``fail_transaction``)."""
    st = s.sharded
    assert st is not None
    if s.tx_status == _E or s.failed_tx:
        raise PgError("current transaction is aborted, commands ignored until end of "
                      "transaction block", codes.IN_FAILED_SQL_TRANSACTION)
    if plan.error is not None:
        raise plan.error
    assert plan.primitive is not None
    in_tx = s.tx_status == _T
    if in_tx and st.begin_sql is None:
        st.begin("BEGIN")
    implicit = not in_tx and plan.kind == StatementKind.WRITE
    st.implicit = implicit
    try:
        res = await plan.primitive.execute(st, bind)
    except BaseException:
        if implicit:
            with contextlib.suppress(PgError):
                await st.finish(False)
        raise
    if implicit:
        partial = await st.finish(True)
        if partial is not None:
            raise partial
    s.counters.statements += 1
    return res


async def _fail(s: Session, err: PgError) -> None:
    """An error for the client's statement; inside a transaction, the transaction fails."""
    if s.tx_status != _T:
        s.send(err.to_message() + build_ready_for_query(s.tx_status))
        return
    st = s.sharded
    if st is not None and st.savepoints:
        # A savepoint may recover it: keep every transaction open, answer 25P02 until
        # ROLLBACK TO (or the end), as Postgres does (failed_query).
        st.failed = True
        s.failed_tx = True
    else:
        await fail_transaction(s)
    s.send(err.to_message() + build_ready_for_query(_E))


async def fail_transaction(s: Session) -> None:
    """Postgres aborts the whole transaction at an error: roll back every shard and the
    unsharded tablegroup now; the client is in a failed transaction until it ends it (the
    session answers 25P02, then its ROLLBACK or COMMIT, locally)."""
    st = s.sharded
    assert st is not None
    st.failed = True
    with contextlib.suppress(PgError):
        await st.finish(False)
    _rollback_upstream(s)
    s.failed_tx = True


async def end_transaction(s: Session, msg: bytes, commit: bool) -> None:
    st = s.sharded
    assert st is not None
    failed = s.tx_status == _E
    partial = await st.finish(commit and not failed)
    if partial is not None:
        # Some shards committed, some did not (mode MULTI): a WARNING names them, then the
        # unsharded tablegroup commits too, as the shards after a failed one did.
        partial.severity = partial.localized_severity = "WARNING"
        s.send(partial.to_notice_message())
    up = s.upstream
    if up is None:
        s.send(build_command_complete("ROLLBACK" if failed or not commit else "COMMIT")
               + build_ready_for_query(_I))
        return
    # The unsharded tablegroup last, with the client's own statement: its answer is theirs.
    s.in_flight += 1
    up.write(msg)


def _rollback_upstream(s: Session) -> None:
    """Roll back the unsharded tablegroup's transaction; its answer is the session's own
    (``divert``), not the client's."""
    up = s.upstream
    if up is None:
        return
    s.divert = True
    s.in_flight += 1
    up.write(build_query("ROLLBACK"))


def _set_mode(s: Session, sql: bytes) -> bool:
    st = s.sharded
    assert st is not None
    words = sql.decode("utf-8", "replace").replace("=", " ").replace("'", " ").split()
    low = [w.lower() for w in words]
    if low[:1] == ["set"] and len(low) >= 3 and low[-1] in (MULTI, SINGLE):
        if st.touched and low[-1] != st.mode:
            err = PgError("the transaction mode cannot change inside a transaction that "
                          "touched shards", codes.ACTIVE_SQL_TRANSACTION)
            s.send(err.to_message() + build_ready_for_query(s.tx_status))
            return True
        st.mode = low[-1]
        s.send(build_command_complete("SET") + build_ready_for_query(s.tx_status))
        return True
    if low[:1] == ["show"]:
        s.send(_show(st.mode) + build_ready_for_query(s.tx_status))
        return True
    err = PgError("multigres.transaction_mode is multi or single",
                  codes.INVALID_PARAMETER_VALUE)
    s.send(err.to_message() + build_ready_for_query(s.tx_status))
    return True


def _show(value: str) -> bytes:
    from multigres.gateway.engine.result import Field, Result

    row = b"\x00\x01" + len(value).to_bytes(4, "big") + value.encode()
    return Result([Field("multigres.transaction_mode", 25)], [row], b"SHOW").to_messages()
