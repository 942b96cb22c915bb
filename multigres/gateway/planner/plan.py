"""A plan: the root primitive of a statement, shared by every session that runs it.

``Plan.execute(vc, bind)`` runs it: ``bind`` holds the SQL text of each client parameter and
lifted literal (``$1 .. $param_count``, see ``engine.primitive``); the plan extends it with
room for its own slots (``$param_count+1 .. $slots``: IN lists cut per shard, shard LIMITs,
values bound from a join's outer rows or a pulled-out subquery), which its primitives fill
in per execution on their own copies.
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
class Plan:
    root: Primitive
    sql: str  # the normalized statement
    param_count: int
    slots: int  # every $N the plan's templates use: param_count + the planner's own
    # The tablegroup when the whole statement runs unchanged on one unsharded tablegroup:
    # the session may forward the client's own bytes there (no engine on the hot path).
    passthrough: str | None = None
    kind: str = "select"  # select | insert | update | delete | ddl | explain

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        if len(bind) != self.param_count:
            raise PgError(
                f"bind message supplies {len(bind)} parameters, but the statement requires "
                f"{self.param_count}",
                sqlstate.PROTOCOL_VIOLATION,
            )
        full = list(bind)
        if self.slots > len(full):
            full.extend("NULL" for _ in range(self.slots - len(full)))
        return await self.root.execute(vc, full)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sql": self.sql, "plan": self.root.describe()}
        if self.passthrough is not None:
            d["passthrough"] = self.passthrough
        return d
