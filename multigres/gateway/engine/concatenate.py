"""Concatenate: UNION ALL of inputs that run on their own (rows of each, in input order).

Postgres gives a UNION's columns one type per column, resolved over every branch; here each
branch ran alone. The planner uses this primitive only where the branches' columns already
have the same types (checked per execution: else 0A000); otherwise it lets Postgres unify
them (``evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.vcursor import VCursor
from multigres.wire import sqlstate
from multigres.wire.errors import PgError


@dataclass(eq=False)
class Concatenate:
    inputs: tuple[Primitive, ...]

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        # One after the other: a session's shard connections run one statement at a time.
        results = [await i.execute(vc, bind) for i in self.inputs]
        first = results[0]
        fields = first.fields or []
        types = [f.type_oid for f in fields]
        out = Result(fields=first.fields)
        for r in results:
            if [f.type_oid for f in r.fields or []] != types:
                raise PgError(
                    "unsupported on a sharded database: UNION ALL of branches whose columns "
                    "have different types",
                    sqlstate.FEATURE_NOT_SUPPORTED,
                )
            out.rows.extend(r.rows)
            out.notices.extend(r.notices)
        out.tag = b"SELECT %d" % len(out.rows)
        return out

    def describe(self) -> dict[str, Any]:
        return {"primitive": "concatenate", "inputs": [i.describe() for i in self.inputs]}
