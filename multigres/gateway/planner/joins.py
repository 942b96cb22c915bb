"""Joins of tables that are not on the same shard: a nested loop with bound values.

One group of the FROM clause (``select.Group``) becomes the inner side; the others, with
the WHERE terms that name only them, become the outer query, planned as a block of its own
and asked only for the columns the inner side needs. Everything else goes into the inner
query, with the outer columns replaced by slots that each outer row fills
(``engine.join``): the join condition, the other WHERE terms, the select list, and the
partial aggregates when the statement aggregates. The inner route is chosen from its WHERE
terms with the slots as values, so ``inner.id = outer.x`` on a unique vindex goes to one
shard per outer row.

Supported shapes: inner joins (comma, JOIN ... ON/USING), and one top-level
``X LEFT JOIN Y ON ...`` where Y is one group that each outer row finds on one shard (the
inner query is then ``FROM (SELECT) AS _mg_outer LEFT JOIN Y ON ...``, which gives the
NULL-extended row exactly as Postgres would). Columns must be qualified by their table's
name or alias (the gateway has no catalog to tell whose an unqualified name is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pglast import ast, enums

from multigres.gateway.engine.join import Join
from multigres.gateway.engine.route import LimitSlot, Opcode, Route
from multigres.gateway.engine.source import Source
from multigres.gateway.planner.nodes import (
    Node,
    and_of,
    column_name,
    conjuncts,
    is_,
    unsupported,
    walk,
)
from multigres.gateway.planner.rewrite import clone, deparse_with_slots, false_const, replace
from multigres.gateway.planner.route import Columns, choose_route, resolve_table, rewrite_in
from multigres.gateway.planner.templates import Template

if TYPE_CHECKING:
    from multigres.gateway.planner.select import Group, Planned, Scope, SelectPlanner


def _refs(node: Node) -> list[tuple[str | None, str]]:
    out = []
    for n in walk(node):
        if is_(n, ast.ColumnRef):
            if is_(n.fields[-1], ast.A_Star):
                if len(n.fields) == 1:
                    raise unsupported("SELECT * in a join across shards")
                out.append((n.fields[-2].sval, "*"))
                continue
            cn = column_name(n)
            if cn is not None:
                out.append(cn)
    return out


def plan_join(planner: SelectPlanner, stmt: Node, scope: Scope, groups: list[Group]) -> Planned:
    if scope.functions:
        raise unsupported("a set-returning function in a join across shards")
    for part in (stmt.targetList, stmt.whereClause, stmt.groupClause, stmt.havingClause,
                 stmt.sortClause, stmt.fromClause):
        for qual, name in _refs(part):
            if qual is None:
                raise unsupported(
                    f'unqualified column "{name}" in a join across shards (qualify it with '
                    "its table's name or alias)"
                )
    for n in walk(stmt, into_subqueries=True):
        if is_(n, ast.RangeVar) and n is not stmt and not any(n is t.node for t in scope.tables):
            t = resolve_table(planner.vs, n)
            if t.kind != "reference":
                raise unsupported("a correlated subquery in a join across shards")

    left = None
    items = list(stmt.fromClause or ())
    if (len(items) == 1 and is_(items[0], ast.JoinExpr)
            and items[0].jointype == enums.JoinType.JOIN_LEFT):
        left = items[0]
    else:
        for n in walk(tuple(items)):
            if is_(n, ast.JoinExpr) and n.jointype != enums.JoinType.JOIN_INNER:
                raise unsupported(
                    "an outer join across shards (other than one LEFT JOIN whose right side "
                    "is a table on one shard per row)"
                )
            if is_(n, ast.JoinExpr) and n.isNatural:
                raise unsupported("NATURAL JOIN across shards")

    by_alias = {t.alias: g for g in groups for t in g.tables}
    if left is not None:
        if left.isNatural or left.usingClause:
            raise unsupported("LEFT JOIN ... USING/NATURAL across shards (use ON)")
        right = {rv.alias.aliasname if rv.alias else rv.relname
                 for rv in walk(left.rarg) if is_(rv, ast.RangeVar)}
        inner = by_alias[next(iter(right))]
        if {t.alias for t in inner.tables} != right:
            raise unsupported("a LEFT JOIN whose right side is not one group of co-located tables")
    else:
        inner = _pick_inner(groups, scope)
    inner_aliases = {t.alias for t in inner.tables}
    outer_aliases = set(by_alias) - inner_aliases

    where = conjuncts(stmt.whereClause) if left is not None else list(scope.terms)
    outer_terms, inner_terms = [], []
    for t in where:
        quals = {q for q, _ in _refs(t)}
        if quals and quals <= outer_aliases:
            outer_terms.append(t)
        else:
            inner_terms.append(t)
    on_terms = conjuncts(left.quals) if left is not None else []

    needed: list[tuple[str, str]] = []
    for part in (stmt.targetList, inner_terms, on_terms, stmt.groupClause, stmt.havingClause,
                 stmt.sortClause):
        for qual, name in _refs(part):
            if qual in outer_aliases:
                if name == "*":
                    raise unsupported("SELECT outer_table.* in a join across shards")
                if (qual, name) not in needed:
                    needed.append((qual, name))
    slots = {k: planner.slot() for k in needed}

    from multigres.gateway.planner.rewrite import col

    outer_stmt = ast.SelectStmt(
        targetList=tuple(ast.ResTarget(val=col(q, c)) for q, c in needed),
        fromClause=(clone(left.larg),) if left is not None else tuple(
            clone(t.node) for g in groups if g is not inner for t in g.tables),
        whereClause=and_of([clone(t) for t in outer_terms]),
        limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT,
        op=enums.SetOperation.SETOP_NONE,
    )

    def bind(n: Node) -> Node | None:
        cn = column_name(n)
        if cn is not None and cn[0] in outer_aliases:
            return ast.ParamRef(number=slots[(cn[0], cn[1])])
        return None

    inner_stmt = clone(stmt)
    from multigres.gateway.planner.select import is_star, output_name

    # Outer columns become values: keep the names Postgres gives the select list's items.
    inner_stmt.targetList = tuple(
        t if is_star(t) or t.name else ast.ResTarget(name=output_name(t), val=t.val)
        for t in inner_stmt.targetList or ()
    )
    inner_where = [replace(clone(t), bind) for t in inner_terms]
    if left is not None:
        join = ast.JoinExpr(
            jointype=enums.JoinType.JOIN_LEFT,
            larg=ast.RangeSubselect(
                lateral=False,
                subquery=ast.SelectStmt(limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT,
                                        op=enums.SetOperation.SETOP_NONE),
                alias=ast.Alias(aliasname="_mg_outer"),
            ),
            rarg=clone(left.rarg),
            quals=replace(clone(left.quals), bind),
        )
        inner_stmt.fromClause = (join,)
        route_terms = inner_where + conjuncts(join.quals)
    else:
        inner_stmt.fromClause = tuple(clone(t.node) for t in inner.tables)
        route_terms = inner_where
    inner_stmt.whereClause = and_of(inner_where)
    for name in ("targetList", "groupClause", "havingClause", "sortClause"):
        setattr(inner_stmt, name, replace(getattr(inner_stmt, name), bind))

    outer = planner.plan_block(outer_stmt)
    cols = Columns(inner.tables)
    choice = choose_route(inner.tables, route_terms, cols)
    if left is not None and not (choice.single_shard or choice.opcode is Opcode.IN):
        raise unsupported(
            "a LEFT JOIN whose right side is not on one shard for each row of its left side"
        )
    if choice.opcode is Opcode.IN:
        if left is not None:
            raise unsupported("a LEFT JOIN whose right side is routed by an IN list")
        rewrite_in(choice, planner.slot())
    bindings = tuple((i, slots[k]) for i, k in enumerate(needed))

    def make(shard_stmt: Node, limit: LimitSlot | None) -> Source:
        route = planner.route_of(choice, shard_stmt, limit)
        route.one_shard = left is not None
        empty_stmt = clone(shard_stmt)
        empty_stmt.whereClause = and_of([*conjuncts(empty_stmt.whereClause), false_const()])
        empty = Route(Opcode.NONE, choice.tablegroup, Template(deparse_with_slots(empty_stmt)))
        return Join(outer.prim, route, empty, bindings, left=left is not None)

    return planner.plan_multi(inner_stmt, lambda n: False, make, choice.tablegroup)


def _pick_inner(groups: list[Group], scope: Scope) -> Group:
    """The inner side: a group that an equality on its unique primary vindex ties to another
    group (one shard per outer row), else the last."""
    cols = Columns(scope.tables)
    for g in reversed(groups[1:]):
        aliases = {t.alias for t in g.tables}
        for term in scope.terms:
            if not (is_(term, ast.A_Expr) and term.kind == enums.A_Expr_Kind.AEXPR_OP):
                continue
            if not term.name or term.name[-1].sval != "=":
                continue
            for a, b in ((term.lexpr, term.rexpr), (term.rexpr, term.lexpr)):
                oa, ob = cols.owner(a), cols.owner(b)
                if oa is None or ob is None:
                    continue
                if oa[0].alias in aliases and ob[0].alias not in aliases:
                    pv = oa[0].table.primary_vindex
                    if pv is not None and pv.columns == (oa[1],) and pv.unique:
                        return g
    return groups[-1]
