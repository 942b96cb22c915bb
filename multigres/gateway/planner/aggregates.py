"""Aggregates across shards: which calls are aggregates, and what each shard computes.

A cross-shard aggregate is split in two (Vitess's and Postgres's parallel aggregation): each
shard computes a partial per group, the gateway combines the partials (``engine.aggregate``):

=====================  ===============================  ==========================
aggregate              each shard sends                 the gateway
=====================  ===============================  ==========================
count(*), count(x)     count(*), count(x)               adds
sum(x)                 sum(x)                           adds (exactly, in C)
min(x), max(x)         min(x), max(x)                   compares as Postgres does
avg(x)                 sum(x), count(x)                 divides as Postgres does
bool_and/or, every     the same                         and/or
string_agg(x, d)       string_agg(x, d)                 concatenates with d
array_agg(x)           array_agg(x)                     concatenates
=====================  ===============================  ==========================

FILTER (WHERE ...) stays on each partial. ORDER BY inside string_agg/array_agg is refused
(0A000): the shards' partials cannot be interleaved in that order. ``agg(DISTINCT x)`` on a
sharding column is a plain partial (distinct values of the sharding key never meet on two
shards); otherwise the shards send their distinct (group, x) pairs and the gateway
aggregates x (count, sum, avg, min, max only).
"""

from __future__ import annotations

from typing import Final

from pglast import ast

from multigres._cy.pgvalue import AggKind
from multigres.gateway.planner.nodes import Node, func_name, is_, walk
from multigres.sql.pgtypes import AGGREGATES

# The aggregates the gateway merges from per-shard partials (pgvalue's kinds).
MERGEABLE: Final[dict[str, AggKind]] = AGGREGATES

# Postgres's other built-in aggregates: recognized so that they are refused across shards
# rather than mistaken for plain functions.
OTHER_AGGREGATES: Final = frozenset({
    "any_value", "bit_and", "bit_or", "bit_xor", "corr", "covar_pop", "covar_samp",
    "json_agg", "json_agg_strict", "json_object_agg", "json_object_agg_strict",
    "json_object_agg_unique", "json_object_agg_unique_strict", "json_arrayagg",
    "json_objectagg", "jsonb_agg", "jsonb_agg_strict", "jsonb_object_agg",
    "jsonb_object_agg_strict", "jsonb_object_agg_unique", "jsonb_object_agg_unique_strict",
    "mode", "percentile_cont", "percentile_disc", "range_agg", "range_intersect_agg",
    "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope",
    "regr_sxx", "regr_sxy", "regr_syy", "stddev", "stddev_pop", "stddev_samp", "variance",
    "var_pop", "var_samp", "xmlagg", "rank", "dense_rank", "percent_rank", "cume_dist",
    "grouping",
})


def is_aggregate(fc: Node) -> bool:
    if not is_(fc, ast.FuncCall) or fc.over is not None:
        return False
    name = func_name(fc)
    return (
        name in MERGEABLE
        or name in OTHER_AGGREGATES
        or bool(fc.agg_star or fc.agg_distinct or fc.agg_order or fc.agg_filter)
        or bool(fc.agg_within_group)
    )


def aggregates_in(node: Node) -> list[Node]:
    """The aggregate calls of an expression (not those of its subqueries), outermost only."""
    return _outermost(node)


def _outermost(node: Node) -> list[Node]:
    out: list[Node] = []

    def visit(n: Node) -> None:
        if n is None:
            return
        if isinstance(n, (tuple, list)):
            for x in n:
                visit(x)
            return
        if not is_(n, ast.Node):
            return
        if is_(n, (ast.SubLink, ast.RangeSubselect, ast.SelectStmt)):
            return
        if is_aggregate(n):
            out.append(n)
            return
        for name in n:
            visit(getattr(n, name))

    visit(node)
    return out


def has_window(node: Node) -> bool:
    return any(is_(n, ast.FuncCall) and n.over is not None for n in walk(node))
