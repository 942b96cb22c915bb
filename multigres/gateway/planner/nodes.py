"""Small helpers over pglast's AST: the planner asks the same few questions everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast, enums

from multigres.gateway.planner.templates import deparse
from multigres.wire import sqlstate
from multigres.wire.errors import PgError

Node = Any  # pglast.ast.Node; pglast's classes are not typed precisely enough to help


def is_(node: Any, cls: type | tuple[type, ...]) -> bool:
    """isinstance without narrowing: pglast types every attribute as optional, which would
    turn each access after a check into a mypy complaint; the planner checks shapes itself."""
    return isinstance(node, cls)


def unsupported(what: str) -> PgError:
    """The error for a construct the sharded engine cannot run exactly."""
    return PgError(
        f"unsupported on a sharded database: {what}", sqlstate.FEATURE_NOT_SUPPORTED
    )


def conjuncts(expr: Node | None) -> list[Node]:
    """The top-level AND terms of an expression (none for None)."""
    if expr is None:
        return []
    if is_(expr, ast.BoolExpr) and expr.boolop == enums.BoolExprType.AND_EXPR:
        out: list[Node] = []
        for a in expr.args:
            out.extend(conjuncts(a))
        return out
    return [expr]


def and_of(terms: list[Node]) -> Node | None:
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    return ast.BoolExpr(boolop=enums.BoolExprType.AND_EXPR, args=tuple(terms))


def column_name(ref: Node) -> tuple[str | None, str] | None:
    """(qualifier, column) of a ColumnRef (qualifier None when unqualified; the table name
    when qualified by schema.table); None for ``*`` refs."""
    if not is_(ref, ast.ColumnRef):
        return None
    names = []
    for f in ref.fields:
        if not is_(f, ast.String):
            return None
        names.append(f.sval)
    if len(names) == 1:
        return None, names[0]
    return names[-2], names[-1]


def walk(node: Node, into_subqueries: bool = False) -> Iterator[Node]:
    """Every node under ``node`` (itself included), depth first. Subqueries (SubLink,
    RangeSubselect, nested SelectStmt) are skipped unless ``into_subqueries``."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None:
            continue
        if isinstance(n, (tuple, list)):
            stack.extend(reversed(n))
            continue
        if not is_(n, ast.Node):
            continue
        yield n
        if not into_subqueries and n is not node and is_(
            n, (ast.SubLink, ast.RangeSubselect, ast.SelectStmt)
        ):
            continue
        for name in n:  # pglast nodes iterate over their attribute names
            v = getattr(n, name)
            if is_(v, (ast.Node, tuple, list)):
                stack.append(v)


def same(a: Node, b: Node) -> bool:
    """Two expressions written the same way (compared as SQL text)."""
    try:
        return deparse(a) == deparse(b)
    except Exception:
        return False


def func_name(fc: Node) -> str:
    """The last name of a FuncCall (``pg_catalog.count`` -> ``count``), lower case."""
    return str(fc.funcname[-1].sval).lower()


def figure_colname(node: Node) -> str:
    """The output column name Postgres gives a select-list expression without an alias
    (FigureColnameInternal in parse_target.c)."""
    name, _ = _figure(node)
    return name or "?column?"


def _figure(node: Node) -> tuple[str | None, int]:
    if is_(node, ast.ColumnRef):
        last = node.fields[-1]
        if is_(last, ast.String):
            return last.sval, 2
        return None, 0
    if is_(node, ast.A_Indirection):
        for ind in reversed(node.indirection or ()):
            if is_(ind, ast.String):
                return ind.sval, 2
        return _figure(node.arg)
    if is_(node, ast.FuncCall):
        return node.funcname[-1].sval, 2
    if is_(node, ast.A_Expr):
        if node.kind == enums.A_Expr_Kind.AEXPR_NULLIF:
            return "nullif", 2
        return None, 0
    if is_(node, ast.TypeCast):
        name, strength = _figure(node.arg)
        if strength <= 1 and node.typeName is not None:
            names = node.typeName.names
            return names[-1].sval, 1
        return name, strength
    if is_(node, ast.CollateClause):
        return _figure(node.arg)
    if is_(node, ast.GroupingFunc):
        return "grouping", 2
    if is_(node, ast.SubLink):
        kind = node.subLinkType
        if kind == enums.SubLinkType.EXISTS_SUBLINK:
            return "exists", 2
        if kind == enums.SubLinkType.ARRAY_SUBLINK:
            return "array", 2
        if kind in (enums.SubLinkType.EXPR_SUBLINK, enums.SubLinkType.ARRAY_SUBLINK):
            sub = node.subselect
            if is_(sub, ast.SelectStmt) and sub.targetList:
                t = sub.targetList[0]
                if t.name:
                    return t.name, 2
                return _figure(t.val)
        return None, 0
    if is_(node, ast.CaseExpr):
        name, strength = _figure(node.defresult) if node.defresult is not None else (None, 0)
        if strength <= 1:
            return "case", 1
        return name, strength
    if is_(node, ast.A_ArrayExpr):
        return "array", 1
    if is_(node, ast.RowExpr):
        return "row", 1
    if is_(node, ast.CoalesceExpr):
        return "coalesce", 2
    if is_(node, ast.MinMaxExpr):
        return ("greatest" if node.op == enums.MinMaxOp.IS_GREATEST else "least"), 2
    if is_(node, ast.SQLValueFunction):
        return _SQLVALUE_NAMES.get(int(node.op), None), 2
    if is_(node, ast.XmlExpr):
        return None, 0
    return None, 0


_SQLVALUE_NAMES = {
    0: "current_date", 1: "current_time", 2: "current_time", 3: "current_timestamp",
    4: "current_timestamp", 5: "localtime", 6: "localtime", 7: "localtimestamp",
    8: "localtimestamp", 9: "current_role", 10: "current_user", 11: "user",
    12: "session_user", 13: "current_catalog", 14: "current_schema",
}
