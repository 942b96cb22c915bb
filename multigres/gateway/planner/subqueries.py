"""Subqueries in expressions (WHERE, the select list, HAVING).

- Over reference tables of the block's tablegroup (or, for an unsharded block, tables of
  its tablegroup): every shard has their rows, so they stay in the block's SQL.
- Correlated: they stay in the block's SQL only when every sharded table they read is tied
  to the outer row's shard by an equality on the same primary vindex (``WHERE o.customer_id
  = c.customer_id``); otherwise 0A000. (Columns of the outer query must be qualified: an
  unqualified name is taken as the subquery's own.)
- Uncorrelated over anything else: pulled out. The subquery is planned on its own, runs
  first, and its result is bound in (``engine.subquery``): ``x IN (SELECT ...)`` becomes
  ``x = ANY($n)`` with a typed array, which is IN's exact semantics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pglast import ast, enums

from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.planner.nodes import Node, column_name, conjuncts, is_, unsupported, walk
from multigres.gateway.planner.rewrite import range_vars, replace
from multigres.gateway.planner.route import Columns, TableRef, resolve_table

if TYPE_CHECKING:
    from multigres.gateway.planner.select import Scope, SelectPlanner

_KINDS = {
    enums.SubLinkType.EXISTS_SUBLINK: "exists",
    enums.SubLinkType.EXPR_SUBLINK: "value",
    enums.SubLinkType.ARRAY_SUBLINK: "array",
    enums.SubLinkType.ANY_SUBLINK: "any",
    enums.SubLinkType.ALL_SUBLINK: "any",
}


def pull_out(
    planner: SelectPlanner, stmt: Node, scope: Scope
) -> list[tuple[str, Primitive, int]]:
    pulled: list[tuple[str, Primitive, int]] = []
    block_tg, block_kind = _block_home(scope)
    aliases = {t.alias for t in scope.tables}

    def fn(n: Node) -> Node | None:
        if not is_(n, ast.SubLink):
            return None
        sub = n.subselect
        tables = [resolve_table(planner.vs, rv) for rv in range_vars(sub)]
        if block_tg is not None and all(
            t.tablegroup.name == block_tg
            and (t.kind == "reference" if block_kind == "sharded" else t.kind == block_kind)
            for t in tables
        ):
            return n  # every shard of the block has what it reads
        if _correlated(sub, aliases):
            if block_kind == "sharded" and _colocated(planner, sub, scope):
                return n
            raise unsupported(
                "a correlated subquery that does not stay on the outer row's shard"
            )
        kind = _KINDS.get(n.subLinkType)
        if kind is None:
            raise unsupported("this kind of subquery across shards")
        if kind != "exists" and len(_targets(sub)) != 1:
            raise unsupported("a subquery returning several columns across shards")
        if is_(n.testexpr, ast.RowExpr):
            raise unsupported("a row IN (SELECT ...) across shards")
        planned = planner.plan_block(sub)
        slot = planner.slot()
        pulled.append((kind, planned.prim, slot))
        param = ast.ParamRef(number=slot)
        if n.subLinkType in (enums.SubLinkType.ANY_SUBLINK, enums.SubLinkType.ALL_SUBLINK):
            op = n.operName[-1].sval if n.operName else "="
            any_all = (
                enums.A_Expr_Kind.AEXPR_OP_ANY
                if n.subLinkType == enums.SubLinkType.ANY_SUBLINK
                else enums.A_Expr_Kind.AEXPR_OP_ALL
            )
            return ast.A_Expr(kind=any_all, name=(ast.String(sval=op),),
                              lexpr=n.testexpr, rexpr=param)
        return param

    old_where = conjuncts(stmt.whereClause)
    stmt.targetList = replace(stmt.targetList, fn, into_subqueries=False)
    stmt.whereClause = replace(stmt.whereClause, fn, into_subqueries=False)
    stmt.havingClause = replace(stmt.havingClause, fn, into_subqueries=False)
    for item in stmt.fromClause or ():
        if is_(item, ast.JoinExpr) and any(is_(x, ast.SubLink) for x in walk(item.quals)):
            item.quals = replace(item.quals, fn, into_subqueries=False)
    if pulled:
        # The WHERE clause changed: its terms route the block.
        now = conjuncts(stmt.whereClause)
        scope.terms[:] = [t for t in scope.terms if not any(t is w for w in old_where)] + now
        scope.coloc[:] = [t for t in scope.coloc if not any(t is w for w in old_where)] + now
    return pulled


def _targets(sub: Node) -> tuple[Node, ...]:
    while sub.op != enums.SetOperation.SETOP_NONE:
        sub = sub.larg
    return tuple(sub.targetList or ())


def _block_home(scope: Scope) -> tuple[str | None, str]:
    """(tablegroup, kind) of the block's own tables: where its SQL runs."""
    for t in scope.tables:
        if t.table.sharded:
            return t.tablegroup, "sharded"
    for t in scope.tables:
        return t.tablegroup, t.table.kind
    return None, "none"


def _correlated(sub: Node, outer_aliases: set[str]) -> bool:
    inner = {
        (rv.alias.aliasname if rv.alias is not None else rv.relname)
        for rv in range_vars(sub)
    }
    for n in walk(sub, into_subqueries=True):
        cn = column_name(n)
        if cn is not None and cn[0] is not None and cn[0] in outer_aliases - inner:
            return True
    return False


def _colocated(planner: SelectPlanner, sub: Node, scope: Scope) -> bool:
    """Every sharded table the subquery reads is tied by equalities on the primary vindex
    to a sharded table of the outer block."""
    from multigres.gateway.planner.select import is_primary_column, same_vindex

    inner: list[TableRef] = []
    terms: list[Node] = list(scope.coloc)
    for n in walk(sub, into_subqueries=True):
        if is_(n, ast.SelectStmt):
            terms.extend(conjuncts(n.whereClause))
        elif is_(n, ast.JoinExpr) and n.jointype == enums.JoinType.JOIN_INNER:
            terms.extend(conjuncts(n.quals))
        elif is_(n, ast.RangeVar):
            t = resolve_table(planner.vs, n)
            if t.kind == "unsharded":
                return False
            inner.append(TableRef(t, n.alias.aliasname if n.alias else n.relname, n))
    # Inner aliases shadow outer ones.
    outer_only = [t for t in scope.tables if t.alias not in {i.alias for i in inner}]
    cols = Columns(inner + outer_only)
    everyone = [t for t in inner + outer_only if t.table.sharded]
    parent = {id(t): id(t) for t in everyone}

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for term in terms:
        if not (is_(term, ast.A_Expr) and term.kind == enums.A_Expr_Kind.AEXPR_OP):
            continue
        if not term.name or term.name[-1].sval != "=":
            continue
        ln, rn = column_name(term.lexpr), column_name(term.rexpr)
        if ln is None or rn is None or ln[0] is None or rn[0] is None:
            continue  # unqualified names in a subquery: not known to be whose
        a, b = cols.owner(term.lexpr), cols.owner(term.rexpr)
        if a is None or b is None or a[0] is b[0]:
            continue
        if id(a[0]) not in parent or id(b[0]) not in parent:
            continue
        if (is_primary_column(a[0].table, a[1]) and is_primary_column(b[0].table, b[1])
                and same_vindex(a[0].table, b[0].table)):
            parent[find(id(a[0]))] = find(id(b[0]))
    roots = {find(id(t)) for t in outer_only if t.table.sharded}
    return all(find(id(t)) in roots for t in inner if t.table.sharded)
