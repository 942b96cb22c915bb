"""``SELECT * FROM multigres.explain('<statement>')``: a statement's plan, and the SQL each
shard would get, as rows (answered by the gateway; nothing runs on the shards but the
lookups a lookup vindex needs to route).

Columns: ``kind`` text (``plan``: one row whose ``detail`` is the plan as JSON, as
``Plan.describe()`` gives it; ``query``: one row per shard statement), ``target`` text
(``tablegroup/shard``), ``detail`` text (the exact SQL). The statement's literals are its
bind values; a value the plan only knows while it runs (a join's outer row, a pulled-out
subquery) is shown as its slot ``$N``, and the inner side of a join is shown on every shard
it may go to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import build_datarow
from multigres.gateway.engine import bindvalues
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.route import Route, Value
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.gateway.planner.options import PlannerOptions
from multigres.gateway.planner.plan import Plan
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.wire.errors import PgError

_TEXT = 25
FIELDS = [Field("kind", _TEXT), Field("target", _TEXT), Field("detail", _TEXT)]


def routes(prim: Any) -> Iterator[Route]:
    """Every Route of a plan, in plan order."""
    if isinstance(prim, Route):
        yield prim
        return
    for name in ("subquery", "outer", "input", "source", "inner", "inputs"):
        child = getattr(prim, name, None)
        if child is None:
            continue
        if isinstance(child, (tuple, list)):
            for c in child:
                yield from routes(getattr(c, "input", c))
        else:
            yield from routes(child)


async def shard_queries(plan: Plan, vc: VCursor, bind: Sequence[str]) -> list[ShardQuery]:
    """The statements each Route of a plan sends for these bind values (slots the plan fills
    while it runs stay ``$N``)."""
    full = list(bind) + [f"${n}" for n in range(len(bind) + 1, plan.slots + 1)]
    out: list[ShardQuery] = []
    for r in routes(plan.root):
        out.extend(await r.queries(vc, full))
    return out


@dataclass(eq=False)
class Explain:
    statement: Value
    vschema: VSchema
    options: PlannerOptions

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        from multigres.gateway.planner import build

        bv = bindvalues.decode(self.statement.sql(bind))
        if not isinstance(bv.value, str):
            raise PgError("multigres.explain() takes a statement as text", "22023")
        norm = normalize(bv.value.encode())
        text = norm.text.decode()
        if norm.param_base:
            raise PgError("multigres.explain() takes a statement without $n parameters",
                          "22023")
        plan = build(text, self.vschema, norm.n_params, self.options)
        inner_bind = [p.raw.decode() for p in norm.params]
        rows = [build_datarow([b"plan", None, json.dumps(plan.describe(), indent=2).encode()])]
        for q in await shard_queries(plan, vc, inner_bind):
            rows.append(build_datarow([b"query", f"{q.tablegroup}/{q.shard}".encode(),
                                       q.sql.encode()]))
        return Result(fields=list(FIELDS), rows=rows, tag=b"SELECT %d" % len(rows))

    def describe(self) -> dict[str, Any]:
        return {"primitive": "explain", "statement": self.statement.describe()}


