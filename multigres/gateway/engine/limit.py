"""Limit: LIMIT and OFFSET applied once at the gateway (each shard returned limit + offset
rows, already merged in order below)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres.gateway.engine import bindvalues
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.route import Value
from multigres.gateway.engine.vcursor import VCursor
from multigres.wire.errors import PgError

INVALID_ROW_COUNT_IN_LIMIT = "2201W"
INVALID_ROW_COUNT_IN_OFFSET = "2201X"


def _count(v: Value | None, bind: Sequence[str]) -> int | None:
    if v is None:
        return None
    bv = bindvalues.decode(v.sql(bind))
    if bv.value is None:
        return None
    try:
        return int(bv.value)
    except (TypeError, ValueError):
        raise PgError(
            f"invalid input syntax for type bigint: {v.sql(bind)!r}", "22P02"
        ) from None


@dataclass(eq=False)
class Limit:
    input: Primitive
    count: Value | None
    offset: Value | None

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        count = _count(self.count, bind)
        offset = _count(self.offset, bind) or 0
        if count is not None and count < 0:
            raise PgError("LIMIT must not be negative", INVALID_ROW_COUNT_IN_LIMIT)
        if offset < 0:
            raise PgError("OFFSET must not be negative", INVALID_ROW_COUNT_IN_OFFSET)
        r = await self.input.execute(vc, bind)
        end = None if count is None else offset + count
        rows = r.rows[offset:end]
        return Result(fields=r.fields, rows=rows, tag=b"SELECT %d" % len(rows), notices=r.notices)

    def describe(self) -> dict[str, Any]:
        return {
            "primitive": "limit",
            "count": self.count.describe() if self.count else None,
            "offset": self.offset.describe() if self.offset else None,
            "input": self.input.describe(),
        }
