"""A whole SELECT statement: the cases that need no planning, then the block planner.

In order:

1. a ``/*+ multigres:shard=NAME */`` hint: the statement as written, on that shard;
2. ``SELECT * FROM multigres.explain('<statement>')``: the plan of the statement;
3. every table in one unsharded tablegroup: the statement as written there (``passthrough``:
   the session may forward the client's bytes);
4. only reference tables (of one tablegroup), or no table at all: the statement as written
   on any one shard;
5. anything else: ``select.SelectPlanner``.
"""

from __future__ import annotations

from pglast import ast

from multigres.gateway.engine.route import Opcode, Route
from multigres.gateway.planner.hints import shard_hint
from multigres.gateway.planner.nodes import Node, is_, walk
from multigres.gateway.planner.options import PlannerOptions
from multigres.gateway.planner.plan import Plan
from multigres.gateway.planner.rewrite import range_vars
from multigres.gateway.planner.route import resolve_table, value_of
from multigres.gateway.planner.select import SelectPlanner
from multigres.gateway.planner.templates import Template
from multigres.vschema.model import Table, VSchema
from multigres.wire.errors import PgError

UNDEFINED_OBJECT = "42704"


def _cte_names(stmt: Node) -> set[str]:
    return {
        c.ctename
        for n in walk(stmt, into_subqueries=True)
        if is_(n, ast.WithClause)
        for c in n.ctes
    }


def _tables(stmt: Node, vs: VSchema) -> list[Table]:
    ctes = _cte_names(stmt)
    return [
        resolve_table(vs, rv)
        for rv in range_vars(stmt)
        if not (rv.schemaname is None and rv.relname in ctes)
    ]


def _explain_arg(stmt: Node) -> Node | None:
    """The argument of ``SELECT ... FROM multigres.explain(arg)``, else None."""
    if not stmt.fromClause or len(stmt.fromClause) != 1:
        return None
    rf = stmt.fromClause[0]
    if not is_(rf, ast.RangeFunction) or len(rf.functions) != 1:
        return None
    fc = rf.functions[0][0]
    if not is_(fc, ast.FuncCall):
        return None
    names = [n.sval for n in fc.funcname]
    if names != ["multigres", "explain"] or not fc.args or len(fc.args) != 1:
        return None
    return fc.args[0]


def home_tablegroup(vs: VSchema, tables: list[Table]) -> str:
    for t in tables:
        if t.sharded:
            return t.tablegroup.name
    if tables:
        return tables[0].tablegroup.name
    if vs.default_tablegroup is not None:
        return vs.default_tablegroup.name
    for tg in vs.tablegroups.values():
        return tg.name
    raise PgError("the VSchema has no tablegroup", UNDEFINED_OBJECT)


def plan_select_statement(
    stmt: Node, sql: str, vs: VSchema, param_count: int, options: PlannerOptions
) -> Plan:
    arg = _explain_arg(stmt)
    if arg is not None:
        from multigres.gateway.planner.explain import Explain

        value = value_of(arg)
        if value is None:
            raise PgError("multigres.explain() takes a constant string", "42601")
        return Plan(Explain(value, vs, options), sql, param_count, param_count, kind="explain")
    tables = _tables(stmt, vs)
    home = home_tablegroup(vs, tables)
    hint = shard_hint(sql)
    if hint is not None:
        tg = hint.tablegroup or home
        route = Route(Opcode.SHARD, tg, Template(sql), shard=hint.shard)
        return Plan(route, sql, param_count, param_count)
    groups = {t.tablegroup.name for t in tables}
    kinds = {t.kind for t in tables}
    if len(groups) <= 1 and kinds <= {"unsharded"}:
        tgdef = vs.tablegroups.get(home)
        if tgdef is None or not tgdef.sharded:
            route = Route(Opcode.UNSHARDED, home, Template(sql))
            return Plan(route, sql, param_count, param_count, passthrough=home)
        route = Route(Opcode.REFERENCE, home, Template(sql))
        return Plan(route, sql, param_count, param_count)
    if len(groups) == 1 and kinds == {"reference"}:
        route = Route(Opcode.REFERENCE, home, Template(sql))
        return Plan(route, sql, param_count, param_count)
    planner = SelectPlanner(vs, param_count, options, home)
    planned = planner.plan_block(stmt)
    return Plan(planned.prim, sql, param_count, planner.next_slot - 1)
