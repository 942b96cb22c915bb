"""MergeSort: each shard sorted its rows; the gateway merges them k ways (Postgres's order).

Comparisons are pgvalue's (per type OID, as ORDER BY compares: NULLS FIRST/LAST, DESC; text
bytewise, which is the C collation's order). The key types are known only from the shards'
RowDescription, so the SortSpec is built per execution (a few objects; the merge is in C).
A text key is allowed only when the planner knew the order is bytewise (the database's
collation is C, or the ORDER BY item says COLLATE "C"): otherwise 0A000, never a wrong order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import SortSpec, UnsupportedType, ValueFormatError, merge_payloads
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.route import LimitSlot
from multigres.gateway.engine.source import Source, fields_of, merge_error
from multigres.gateway.engine.vcursor import VCursor
from multigres.sql.pgtypes import sort_key


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY item over a column of the shards' rows (negative: from the end, for
    hidden columns after a ``*``)."""

    column: int
    desc: bool = False
    nulls_first: bool | None = None
    bytewise: bool = True  # the text order the shards used is the C collation's

    def describe(self) -> str:
        s = f"{self.column}{' DESC' if self.desc else ' ASC'}"
        if self.nulls_first is not None:
            s += " NULLS FIRST" if self.nulls_first else " NULLS LAST"
        if not self.bytewise:
            s += " (collated)"
        return s


def sort_spec(keys: Sequence[OrderKey], fields: Sequence[Field]) -> SortSpec:
    n = len(fields)
    out = []
    for k in keys:
        col = k.column if k.column >= 0 else n + k.column
        oid = fields[col].type_oid
        out.append(sort_key(col, oid, k.desc, k.nulls_first, "C" if k.bytewise else None))
    return SortSpec(out)


@dataclass(eq=False)
class MergeSort:
    source: Source
    keys: tuple[OrderKey, ...]
    # ORDER BY ... LIMIT: the merge stops after offset + limit rows (the Limit above skips
    # the offset and checks the values).
    limit: LimitSlot | None = None

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        results = await self.source.execute_shards(vc, bind)
        fields = fields_of(results)
        runs = [r.rows for r in results if r.rows]
        try:
            spec = sort_spec(self.keys, fields)
            # In C over the payloads: only rows that reach a run's head are framed.
            n = -1
            if self.limit is not None:
                text = self.limit.render(bind)
                n = -1 if text == "ALL" else int(text)
            if len(runs) > 1:
                rows = merge_payloads(spec, runs, 0, n)
            else:
                rows = runs[0] if runs else []
        except (UnsupportedType, ValueFormatError) as e:
            raise merge_error(e) from None
        return Result(fields=fields, rows=rows, tag=b"SELECT %d" % len(rows))

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"primitive": "merge_sort", "keys": [k.describe() for k in self.keys]}
        if self.limit is not None:
            d["stop_after"] = "limit + offset"
        d["input"] = self.source.describe()
        return d
