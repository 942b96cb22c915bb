"""Join: a nested loop that binds each outer row's values into the inner query.

The planner puts everything it can into the inner query: the join condition, the WHERE
terms that name inner tables, the select list (outer columns appear in it as bound values),
even the aggregation's partials. So the inner query, run once per outer row, gives rows of
the final shape, and the merges above treat its results like a Route's: this is a Source.
The inner Route picks its shards per outer row (``b.id = <outer value>`` is an EqualUnique).

Outer values go in as typed literals of the text the outer shard printed
(``engine.literals``). Outer rows with the same values share one inner execution.
When the outer side has no rows, the inner query still runs once, with ``false`` in its
WHERE, on one shard: that gives the RowDescription and, for an aggregate, its empty row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView
from multigres.gateway.engine.literals import typed_literal
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.route import Route, concat
from multigres.gateway.engine.vcursor import ShardQuery, VCursor


@dataclass(eq=False)
class Join:
    outer: Primitive
    inner: Route
    empty: Route  # the inner query with WHERE false, for an empty outer side
    bindings: tuple[tuple[int, int], ...]  # (outer column, inner slot)
    left: bool = False

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        return concat(await self.execute_shards(vc, bind))

    async def execute_shards(self, vc: VCursor, bind: Sequence[str]) -> list[Result]:
        outer = await self.outer.execute(vc, bind)
        oids = [f.type_oid for f in outer.fields or []]
        if not outer.rows:
            b = list(bind)
            for col, slot in self.bindings:
                b[slot - 1] = typed_literal(None, oids[col])
            return await self.empty.execute_shards(vc, b)
        # One inner execution per distinct outer tuple; its results repeat per outer row.
        batches: dict[tuple[bytes | None, ...], list[ShardQuery]] = {}
        order: list[tuple[bytes | None, ...]] = []
        for payload in outer.rows:
            rv = RowView(payload)
            key = tuple(rv[col] for col, _ in self.bindings)
            order.append(key)
            if key in batches:
                continue
            b = list(bind)
            for (col, slot), v in zip(self.bindings, key, strict=True):
                b[slot - 1] = typed_literal(v, oids[col])
            batches[key] = await self.inner.queries(vc, b)
        flat: list[ShardQuery] = []
        spans: dict[tuple[bytes | None, ...], tuple[int, int]] = {}
        for key, qs in batches.items():
            spans[key] = (len(flat), len(flat) + len(qs))
            flat.extend(qs)
        results = await vc.execute(flat)
        out: list[Result] = []
        for key in order:
            lo, hi = spans[key]
            out.extend(results[lo:hi])
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "primitive": "join",
            "kind": "left" if self.left else "inner",
            "bindings": [f"{col} -> ${slot}" for col, slot in self.bindings],
            "outer": self.outer.describe(),
            "inner": self.inner.describe(),
        }
