"""Evaluate: let Postgres finish a query over rows the gateway holds.

What remains after a merge (HAVING, expressions over aggregates such as ``sum(x)/count(*)``,
ORDER BY and LIMIT over aggregated rows, UNION's duplicate removal and type unification, an
outer query over a derived table that needed the gateway) is Postgres SQL over a small set of
rows. Rather than re-implement Postgres's operators, casts and collations, the gateway sends
``SELECT ... FROM (VALUES ('1'::int8, '2.50'::numeric), ...) AS v("c1", "c2") ...`` to one
shard of the tablegroup: every value goes back as the typed literal of the text the shards
printed, so the answer is exactly what one Postgres gives over those rows (one extra round
trip, and rows sent back: the price of exactness without an expression engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView
from multigres.gateway.engine.literals import type_sql, typed_literal
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.template import Template
from multigres.gateway.engine.vcursor import ShardQuery, VCursor


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation_sql(result: Result, alias: str, columns: Sequence[str] | None = None) -> str:
    """The rows of ``result`` as a relation: ``(VALUES ...) AS alias("c1", ...)``."""
    fields: list[Field] = result.fields or []
    names = list(columns) if columns is not None else [f.name for f in fields]
    col_list = ", ".join(quote_ident(n) for n in names)
    head = f" AS {quote_ident(alias)}({col_list})" if names else f" AS {quote_ident(alias)}"
    oids = [f.type_oid for f in fields]
    if not fields:
        return f"(SELECT FROM generate_series(1, {len(result.rows)}))" + head
    if not result.rows:
        nulls = ", ".join(f"NULL::{type_sql(o)}" for o in oids)
        return f"(SELECT {nulls} WHERE false)" + head
    rows = []
    for p in result.rows:
        rv = RowView(p)
        rows.append("(" + ", ".join(typed_literal(rv[i], o) for i, o in enumerate(oids)) + ")")
    return "(VALUES " + ", ".join(rows) + ")" + head


@dataclass(frozen=True, slots=True)
class EvalInput:
    input: Primitive
    slot: int  # the template's $slot that becomes this input's relation
    alias: str
    columns: tuple[str, ...] | None = None  # column names (None: the input's field names)


@dataclass(eq=False)
class Evaluate:
    inputs: tuple[EvalInput, ...]
    template: Template
    tablegroup: str

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        b = list(bind)
        for inp in self.inputs:
            r = await inp.input.execute(vc, bind)
            b[inp.slot - 1] = relation_sql(r, inp.alias, inp.columns)
        shard = vc.shard_map(self.tablegroup).names[0]
        (result,) = await vc.execute([ShardQuery(self.tablegroup, shard, self.template.render(b))])
        return result

    def describe(self) -> dict[str, Any]:
        return {
            "primitive": "evaluate",
            "tablegroup": self.tablegroup,
            "sql": self.template.sql,
            "inputs": [
                {"slot": f"${i.slot}", "alias": i.alias, **i.input.describe()}
                for i in self.inputs
            ],
        }


def row_values(payload: bytes) -> list[bytes | None]:
    return RowView(payload).values()
