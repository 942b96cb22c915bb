"""Pullout: an uncorrelated subquery runs first; its result goes into the outer query as a
value (Vitess's pulled-out subquery).

- ``value`` (a scalar subquery): its one value as a typed literal (NULL when it has no row;
  more than one row is Postgres's error 21000);
- ``exists``: ``true`` or ``false``;
- ``any`` (``x IN (SELECT ...)``, ``x op ANY/ALL (SELECT ...)``, rewritten to
  ``x op ANY/ALL($slot)``): a typed array of its values, which keeps IN's semantics exactly,
  NULLs and an empty result included;
- ``array`` (``ARRAY(SELECT ...)``): the same typed array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView
from multigres.gateway.engine.literals import array_of, typed_literal
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.vcursor import VCursor
from multigres.wire.errors import PgError

CARDINALITY_VIOLATION = "21000"


def render(kind: str, r: Result) -> str:
    oid = r.fields[0].type_oid if r.fields else 25
    if kind == "exists":
        return "true" if r.rows else "false"
    if kind == "value":
        if len(r.rows) > 1:
            raise PgError(
                "more than one row returned by a subquery used as an expression",
                CARDINALITY_VIOLATION,
            )
        return typed_literal(RowView(r.rows[0])[0] if r.rows else None, oid)
    return array_of([RowView(p)[0] for p in r.rows], oid)


@dataclass(eq=False)
class Pullout:
    kind: str  # value | exists | any | array
    subquery: Primitive
    slot: int
    outer: Primitive

    async def _bind(self, vc: VCursor, bind: Sequence[str]) -> list[str]:
        r = await self.subquery.execute(vc, bind)
        b = list(bind)
        b[self.slot - 1] = render(self.kind, r)
        return b

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        return await self.outer.execute(vc, await self._bind(vc, bind))

    async def execute_shards(self, vc: VCursor, bind: Sequence[str]) -> list[Result]:
        b = await self._bind(vc, bind)
        shards = getattr(self.outer, "execute_shards", None)
        if shards is None:
            return [await self.outer.execute(vc, b)]
        results: list[Result] = await shards(vc, b)
        return results

    def describe(self) -> dict[str, Any]:
        return {
            "primitive": "subquery",
            "kind": self.kind,
            "slot": f"${self.slot}",
            "subquery": self.subquery.describe(),
            "outer": self.outer.describe(),
        }
