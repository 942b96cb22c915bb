"""Editing statements at plan time: replace nodes, mark slots, inline CTEs.

The planner copies a statement's AST and edits the copy (a shard's SELECT list with partial
aggregates, outer columns of a join turned into slots, a subquery pulled out), then deparses
it once into a Template. A relation the gateway supplies at execution (rows it holds, sent
back to Postgres) is written as a marker table name that :func:`deparse_with_slots` turns into
the template slot ``$N``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from pglast import ast, enums

from multigres.gateway.planner.nodes import Node, is_, unsupported, walk
from multigres.gateway.planner.templates import deparse

_MARKER = "mg_slot_"
_MARKER_RE = re.compile(r'"?' + _MARKER + r'(\d+)"?')


def clone(node: Node) -> Node:
    return copy.deepcopy(node)


def replace(node: Node, fn: Callable[[Node], Node | None], into_subqueries: bool = True) -> Node:
    """Rewrite in place: ``fn(n)`` returns a replacement for ``n`` or None (keep it and look
    inside). Subqueries (SubLink, RangeSubselect, SelectStmt) are offered to ``fn`` but not
    entered unless ``into_subqueries``. Returns the (possibly replaced) root."""
    if node is None:
        return None
    if isinstance(node, tuple):
        out = []
        for item in node:
            r = fn(item) if is_(item, ast.Node) else None
            if r is None:
                if into_subqueries or not is_(item, _SUBQUERY):
                    _replace_children(item, fn, into_subqueries)
                r = item
            out.append(r)
        return tuple(out)
    r = fn(node)
    if r is not None:
        return r
    _replace_children(node, fn, into_subqueries)
    return node


_SUBQUERY = (ast.SubLink, ast.RangeSubselect, ast.SelectStmt)


def _replace_children(node: Node, fn: Callable[[Node], Node | None], into: bool) -> None:
    if not is_(node, ast.Node):
        return
    for name in node:
        v = getattr(node, name)
        if is_(v, ast.Node):
            r = fn(v)
            if r is not None:
                setattr(node, name, r)
            elif into or not is_(v, _SUBQUERY):
                _replace_children(v, fn, into)
        elif isinstance(v, tuple):
            items: list[Any] = []
            changed = False
            for item in v:
                if is_(item, ast.Node):
                    r = fn(item)
                    if r is not None:
                        items.append(r)
                        changed = True
                        continue
                    if into or not is_(item, _SUBQUERY):
                        _replace_children(item, fn, into)
                items.append(item)
            if changed:
                setattr(node, name, tuple(items))


def slot_relation(slot: int, alias: str | None = None) -> Node:
    """A FROM item that deparses to the marker of ``$slot`` (see deparse_with_slots)."""
    return ast.RangeVar(relname=f"{_MARKER}{slot}", inh=True, relpersistence="p")


def deparse_with_slots(node: Node) -> str:
    """Deparse, turning slot markers into ``$N``."""
    return _MARKER_RE.sub(lambda m: "$" + m.group(1), deparse(node))


def col(qualifier: str | None, name: str) -> Node:
    fields = (ast.String(sval=name),) if qualifier is None else (
        ast.String(sval=qualifier), ast.String(sval=name))
    return ast.ColumnRef(fields=fields)


def false_const() -> Node:
    return ast.A_Const(isnull=False, val=ast.Boolean(boolval=False))


def int_const(i: int) -> Node:
    return ast.A_Const(isnull=False, val=ast.Integer(ival=i))


def inline_ctes(stmt: Node) -> None:
    """Replace each reference to a (non-recursive) CTE by its query as a derived table (for
    a read-only, deterministic statement this is the same answer)."""
    w = stmt.withClause
    if w is None:
        return
    if w.recursive:
        raise unsupported("WITH RECURSIVE across shards")
    ctes: dict[str, Node] = {}
    for cte in w.ctes:
        q = cte.ctequery
        if not is_(q, ast.SelectStmt):
            raise unsupported("a data-modifying statement in WITH")
        if cte.aliascolnames:
            q = _alias_columns(q, [c.sval for c in cte.aliascolnames])
        # A later CTE may use an earlier one.
        _inline_into(q, ctes)
        ctes[cte.ctename] = q
    stmt.withClause = None
    _inline_into(stmt, ctes)


def _alias_columns(q: Node, names: list[str]) -> Node:
    """``WITH c(a, b) AS (q)``: q's output columns renamed (as a derived table's alias)."""
    return ast.SelectStmt(
        targetList=(ast.ResTarget(val=ast.ColumnRef(fields=(ast.A_Star(),))),),
        fromClause=(ast.RangeSubselect(
            subquery=q,
            alias=ast.Alias(aliasname="mg_cte", colnames=tuple(ast.String(sval=n) for n in names)),
        ),),
        limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT,
        op=enums.SetOperation.SETOP_NONE,
    )


def _inline_into(root: Node, ctes: dict[str, Node]) -> None:
    if not ctes:
        return

    def fn(n: Node) -> Node | None:
        if is_(n, ast.RangeVar) and n.schemaname is None and n.relname in ctes:
            alias = n.alias or ast.Alias(aliasname=n.relname)
            return ast.RangeSubselect(lateral=False, subquery=clone(ctes[n.relname]), alias=alias)
        return None

    replace(root, fn)


def range_vars(node: Node) -> list[Node]:
    """Every RangeVar in a statement, subqueries included."""
    return [n for n in walk(node, into_subqueries=True) if is_(n, ast.RangeVar)]
