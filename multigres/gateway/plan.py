"""Plans for statements, cached by their normalized text.

The per-statement path never parses: the Cython normalizer turns a statement's literals into
parameters, and the normalized text (with the database) keys a bounded plan cache. Only a
miss parses, with pglast (Postgres's own parser), to build the plan: what the statement is
(read, write, transaction control, session state, DDL) and which relations it names. For an
unsharded database every plan routes to the database's one shard; sharding (issue 5) adds the
routes that the tables' vindexes give. A statement pglast cannot parse is planned as passing
through, so that Postgres answers it with its own error, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from multigres._cy.gatecore import DIRECT_HASH, DIRECT_NUMERIC, DirectRoute
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.route import Opcode, Route
from multigres.gateway.planner import plan as planner_plan
from multigres.sql.normalize import Normalized, StatementKind, normalize
from multigres.sql.plancache import PlanCache
from multigres.vschema.model import VSchema
from multigres.vschema.vindexes.hash import HashVindex
from multigres.vschema.vindexes.numeric import NumericVindex
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

UNSHARDED = "unsharded"


@dataclass(frozen=True, slots=True)
class Plan:
    kind: StatementKind
    route: str
    tables: tuple[str, ...]  # the relations named, as written ("schema.name" or "name")
    statements: int = 1
    error: str = ""  # pglast's complaint, when it could not parse (Postgres will answer)


class _Relations(Visitor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_RangeVar(self, ancestors: Any, node: Any) -> None:
        name = node.relname if node.schemaname is None else f"{node.schemaname}.{node.relname}"
        if name not in self.names:
            self.names.append(name)


class Planner:
    def __init__(self, max_entries: int = 5000) -> None:
        self.cache: PlanCache[Plan] = PlanCache(max_entries)

    def plan(self, sql: bytes, database: str) -> Plan | None:
        """The plan of one statement string; None when it does not even lex (an unterminated
        quote or comment: Postgres reports it)."""
        try:
            norm = normalize(sql)
        except ValueError:
            return None
        plan = self.cache.get(norm.text, database)
        if plan is None:
            plan = build(norm)
            self.cache.put(norm.text, plan, database, cost=len(norm.text))
        return plan


def build(norm: Normalized) -> Plan:
    """A cache miss: parse the normalized text and make the plan."""
    kind = StatementKind(norm.kind)
    try:
        tree = parse_sql(norm.text.decode("utf-8", "surrogateescape"))
    except (ParseError, UnicodeError) as e:
        return Plan(kind, UNSHARDED, (), norm.statements, error=str(e))
    rel = _Relations()
    rel(tree)
    return Plan(kind, UNSHARDED, tuple(rel.names), norm.statements)


# -- sharded databases -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardedPlan:
    """How a sharded database's session runs a statement: ``passthrough`` (its bytes go to
    the unsharded tablegroup's pooler, as for an unsharded database), the engine's
    ``primitive``, or ``error`` (a statement the engine refuses: 0A000 naming the construct,
    cached like a plan so that a refused statement costs no parse the next time)."""

    kind: StatementKind
    passthrough: bool
    primitive: Primitive | None = None
    error: PgError | None = None
    direct: DirectRoute | None = None  # the C path may route it to one shard itself


class ShardedPlanner:
    """Plans of sharded databases, in two caches keyed by (database, normalized text):
    ``passthrough`` holds only the statements that run unchanged on the unsharded tablegroup,
    and is the cache the sessions' C fast path consults (a hit there is forwarded as bytes);
    ``engine`` holds the rest, and ``direct`` those of them the C path routes to one shard
    itself (an equality on a hash or numeric vindex: see ``direct_route``). All are cleared
    when a VSchema changes."""

    def __init__(self, max_entries: int = 5000) -> None:
        self.passthrough: PlanCache[ShardedPlan] = PlanCache(max_entries)
        self.engine: PlanCache[ShardedPlan] = PlanCache(max_entries)
        self.direct: PlanCache[ShardedPlan] = PlanCache(max_entries)

    def clear(self) -> None:
        self.passthrough.clear()
        self.engine.clear()
        self.direct.clear()

    def plan(self, norm: Normalized, database: str, vschema: VSchema,
             collation: str = "C") -> ShardedPlan:
        """``collation``: the database's (``datcollate``): text merged at the gateway is
        ordered bytewise, right only under C (the planner refuses the rest)."""
        plan = self.passthrough.get(norm.text, database) or self.engine.get(norm.text, database)
        if plan is None:
            plan = build_sharded(norm, vschema, collation)
            cache = self.passthrough if plan.passthrough else self.engine
            cache.put(norm.text, plan, database, cost=len(norm.text))
            if plan.direct is not None:
                self.direct.put(norm.text, plan, database, cost=len(norm.text))
        return plan


def build_sharded(norm: Normalized, vschema: VSchema, collation: str = "C") -> ShardedPlan:
    from multigres.gateway import planner

    kind = StatementKind(norm.kind)
    if kind in (StatementKind.TRANSACTION, StatementKind.SESSION):
        # The session handles these (a transaction spans the shards it touched; settings
        # are replayed on every shard connection).
        return ShardedPlan(kind, True)
    if norm.statements > 1:
        return ShardedPlan(kind, False, error=PgError(
            "several statements in one query string are not supported on a sharded database",
            codes.FEATURE_NOT_SUPPORTED, hint="send them one at a time"))
    try:
        p = planner.build(norm.text.decode("utf-8", "surrogateescape"), vschema,
                          norm.param_base + norm.n_params,
                          planner.PlannerOptions(collation=collation))
    except PgError as e:
        return ShardedPlan(kind, False, error=e)
    if p.passthrough is not None and p.passthrough == _default_tablegroup(vschema):
        # Kept: in an extended-protocol batch the engine runs the batch's statements, these
        # too (on the session's own connection to the unsharded tablegroup).
        return ShardedPlan(kind, True, p)
    # A planner Plan runs like a primitive.
    return ShardedPlan(kind, False, p, direct=direct_route(p))


def direct_route(p: planner_plan.Plan) -> DirectRoute | None:
    """A plan the sessions' C path may route by itself: a Route to the one shard an
    equality on a hash or numeric vindex names, of one value ``$n`` (not negated), running
    the statement unchanged (no rewritten SQL, no slot of the planner's own). Whether ``$n``
    is an integer literal of the statement (its value readable in the client's bytes) is for
    the C path to see at each execution: the same normalized text is also the plan of the
    statement with a client's parameter there."""
    root = p.root
    if not isinstance(root, Route) or root.opcode is not Opcode.EQUAL_UNIQUE:
        return None
    if root.limit is not None or len(root.values) != 1 or p.slots != p.param_count:
        return None
    value = root.values[0]
    if not value.param or value.negate or root.template.sql != p.sql:
        return None
    if isinstance(root.vindex, HashVindex):
        kind = DIRECT_HASH
    elif isinstance(root.vindex, NumericVindex):
        kind = DIRECT_NUMERIC
    else:
        return None
    return DirectRoute(root.tablegroup, value.param - 1, kind)


def _default_tablegroup(vschema: VSchema) -> str | None:
    tg = vschema.default_tablegroup
    return None if tg is None else tg.name
