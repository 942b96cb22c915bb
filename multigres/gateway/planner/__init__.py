"""The planner for sharded databases: a statement (pglast AST of its normalized text) and the
database's VSchema in, a plan out.

Entry point::

    plan = build(normalized_sql: str, vschema: VSchema, param_count: int,
                 options: PlannerOptions | None = None) -> Plan
    result = await plan.execute(vcursor, bind)   # bind[i]: the SQL text of $(i+1)

``Plan`` (``planner/plan.py``) holds the root primitive and, when the whole statement runs
unchanged on one tablegroup that is unsharded (every table it names is there), that
tablegroup's name in ``passthrough``: the session then forwards the client's own bytes to that
tablegroup's pooler, as for an unsharded database (no engine on the hot path). A statement the
engine cannot run correctly raises PgError with SQLSTATE 0A000 naming the construct: never a
plan that could give a wrong answer.

Reads are planned here (``planner/select.py`` and its helpers); ``multigres.explain('...')``
is answered by ``planner/explain.py``. Writes (INSERT/UPDATE/DELETE) and DDL have their own
planners (``planner/dml.py``, ``planner/ddl.py``), which share ``route.py``, ``plan.py`` and
``templates.py``.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.parser import ParseError

from multigres.gateway.engine.route import Opcode, Route
from multigres.gateway.planner.options import PlannerOptions
from multigres.gateway.planner.plan import Plan
from multigres.gateway.planner.templates import Template
from multigres.sql.normalize import StatementKind, normalize
from multigres.vschema.model import VSchema
from multigres.wire import sqlstate
from multigres.wire.errors import PgError

__all__ = ["Plan", "PlannerOptions", "build", "parse_one"]


def parse_one(normalized_sql: str) -> object:
    """The one statement of a normalized text (42601 if it does not parse; 0A000 for
    several statements in one string)."""
    try:
        stmts = parse_sql(normalized_sql)
    except ParseError as e:
        raise PgError(str(e), sqlstate.SYNTAX_ERROR) from None
    if len(stmts) != 1:
        raise PgError(
            "unsupported on a sharded database: several statements in one query string",
            sqlstate.FEATURE_NOT_SUPPORTED,
        )
    return stmts[0].stmt


def build(
    normalized_sql: str,
    vschema: VSchema,
    param_count: int,
    options: PlannerOptions | None = None,
) -> Plan:
    """The plan of one statement (its normalized text: literals as ``$n``)."""
    stmt = parse_one(normalized_sql)
    options = options or PlannerOptions()
    if isinstance(stmt, ast.SelectStmt):
        from multigres.gateway.planner.dml import plan_nextval
        from multigres.gateway.planner.top import plan_select_statement

        nextval = plan_nextval(stmt, vschema, normalized_sql, param_count)
        if nextval is not None:
            return nextval
        return plan_select_statement(stmt, normalized_sql, vschema, param_count, options)
    if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)):
        from multigres.gateway.planner import dml

        if isinstance(stmt, ast.InsertStmt):
            return dml.plan_insert(stmt, vschema, normalized_sql, param_count)
        if isinstance(stmt, ast.UpdateStmt):
            return dml.plan_update(stmt, vschema, normalized_sql, param_count)
        return dml.plan_delete(stmt, vschema, normalized_sql, param_count)
    kind = _kind(normalized_sql)
    if kind == StatementKind.DDL:
        from multigres.gateway.planner.ddl import plan_ddl

        return plan_ddl(stmt, vschema, normalized_sql, param_count)
    if isinstance(stmt, ast.VariableShowStmt) and vschema.default_tablegroup is not None:
        # A setting: every shard has the session's settings, the unsharded one answers.
        tg = vschema.default_tablegroup.name
        route = Route(Opcode.UNSHARDED, tg, Template(normalized_sql))
        return Plan(route, normalized_sql, param_count, param_count, passthrough=tg,
                    kind="show")
    raise PgError(
        f"unsupported on a sharded database: {type(stmt).__name__}",
        sqlstate.FEATURE_NOT_SUPPORTED,
    )


def _kind(sql: str) -> StatementKind:
    try:
        return StatementKind(normalize(sql.encode("utf-8", "surrogateescape")).kind)
    except ValueError:
        return StatementKind.OTHER
