"""Project: pick and rename the columns a client sees (drop the hidden sort columns a merge
needed, put aggregates and group columns in the select list's order)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.vcursor import VCursor


@dataclass(eq=False)
class Project:
    input: Primitive
    # Column indexes of the input, in output order (None: all but the last ``drop_last``).
    columns: tuple[int, ...] | None = None
    names: tuple[str, ...] | None = None  # output names (None: the input's)
    drop_last: int = 0

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        r = await self.input.execute(vc, bind)
        fields = r.fields or []
        cols = self.columns
        if cols is None:
            cols = tuple(range(len(fields) - self.drop_last))
        out_fields = [fields[c] for c in cols]
        if self.names is not None:
            out_fields = [replace(f, name=n) for f, n in zip(out_fields, self.names, strict=True)]
        if cols == tuple(range(len(fields))):
            rows = r.rows
        else:
            rows = [build_datarow([rv[c] for c in cols]) for rv in map(RowView, r.rows)]
        return Result(fields=out_fields, rows=rows, tag=r.tag, notices=r.notices)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"primitive": "project"}
        if self.columns is not None:
            d["columns"] = list(self.columns)
        if self.names is not None:
            d["names"] = list(self.names)
        if self.drop_last:
            d["drop_last"] = self.drop_last
        d["input"] = self.input.describe()
        return d
