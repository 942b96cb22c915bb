"""Distinct: rows equal in every column (as Postgres's DISTINCT finds them: pgvalue's group
keys, e.g. numeric 1.0 = 1.00) are kept once, the first seen (so a merged order stays)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView, SortKey, SortSpec, UnsupportedType, ValueFormatError
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.source import merge_error
from multigres.gateway.engine.vcursor import VCursor


@dataclass(eq=False)
class Distinct:
    input: Primitive

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        r = await self.input.execute(vc, bind)
        fields = r.fields or []
        try:
            spec = SortSpec([SortKey(i, f.type_oid) for i, f in enumerate(fields)])
            seen: set[bytes] = set()
            rows = []
            for p in r.rows:
                k = spec.group_key(RowView(p))
                if k not in seen:
                    seen.add(k)
                    rows.append(p)
        except (UnsupportedType, ValueFormatError) as e:
            raise merge_error(e) from None
        return Result(fields=r.fields, rows=rows, tag=b"SELECT %d" % len(rows), notices=r.notices)

    def describe(self) -> dict[str, Any]:
        return {"primitive": "distinct", "input": self.input.describe()}
