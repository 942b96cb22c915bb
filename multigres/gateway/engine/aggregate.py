"""Aggregate: fold the shards' partial aggregates into the final rows (GROUP BY or scalar).

Each shard ran ``SELECT <group columns>, <partials> ... GROUP BY <group columns>``; the rows of
all shards are grouped again here (pgvalue group keys: equal exactly when Postgres's GROUP BY
finds them equal) and each group's partials combined into the text Postgres prints (pgvalue's
AggSpec/AggState, in C). A scalar aggregate (no GROUP BY) gives exactly one row, also over
no rows at all.

The partials' types come from the shards' RowDescription (known only at execution): the
aggregate's input type is read off them (sum's partial is int8 for int2/int4 input, numeric
for int8/numeric, ...), which picks the same combine and final type as Postgres.

``raw`` (count(DISTINCT x) and its like on a column that is not the sharding key): the
shards sent their distinct ``(group columns, x)``; the gateway drops the duplicates across
shards, then aggregates x itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import (
    AggKind,
    AggSpec,
    AggState,
    RowView,
    SortKey,
    SortSpec,
    UnsupportedType,
    ValueFormatError,
    ValueOutOfRange,
    build_datarow,
    fold_groups,
)
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.route import Value
from multigres.gateway.engine.source import Source, fields_of, merge_error
from multigres.gateway.engine.vcursor import VCursor
from multigres.wire import sqlstate
from multigres.wire.errors import PgError

_INT8, _NUMERIC, _FLOAT4, _FLOAT8, _TEXT, _BYTEA, _BOOL = 20, 1700, 700, 701, 25, 17, 16


# array type OID -> element type OID, for the element types pgvalue's array_agg merges.
_ARRAY_ELEMENT: dict[int, int] = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1009: 25,
    1028: 26, 199: 114, 651: 650, 1021: 700, 1022: 701, 791: 790, 1040: 829, 1041: 869,
    1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114, 1185: 1184, 1187: 1186,
    1270: 1266, 1231: 1700, 2951: 2950, 3807: 3802,
}


_RAW_KINDS = frozenset({AggKind.COUNT, AggKind.SUM, AggKind.AVG, AggKind.MIN, AggKind.MAX})


@dataclass(frozen=True, slots=True)
class AggDef:
    """One aggregate of the select list: its kind, where its partial starts in the shards'
    rows, its output name; string_agg's delimiter (a constant of the statement)."""

    kind: AggKind
    column: int
    name: str
    delimiter: Value | None = None

    @property
    def width(self) -> int:
        return 2 if self.kind == AggKind.AVG else 1


def _spec(a: AggDef, fields: Sequence[Field], bind: Sequence[str], raw: bool) -> AggSpec:
    kind = a.kind
    oid = fields[a.column].type_oid
    delim: bytes | None = None
    if a.delimiter is not None:
        from multigres.gateway.engine import bindvalues

        bv = bindvalues.decode(a.delimiter.sql(bind))
        delim = None if bv.value is None else str(bv.value).encode()
    if raw:
        return AggSpec(kind, 0 if kind == AggKind.COUNT else oid, delim)
    if kind == AggKind.COUNT:
        return AggSpec(kind, 0)
    if kind == AggKind.SUM:
        # the partial's type says which input family it came from
        inp = {_INT8: 23, _NUMERIC: _NUMERIC, _FLOAT4: _FLOAT4, _FLOAT8: _FLOAT8}.get(oid, -1)
        if inp < 0:
            raise UnsupportedType(f"sum over a value of type OID {oid}")
        return AggSpec(kind, inp)
    if kind == AggKind.AVG:
        inp = {_INT8: 23, _NUMERIC: _NUMERIC, _FLOAT8: _FLOAT8}.get(oid, -1)
        if inp < 0:
            # avg(real) adds in double precision; a shard's sum(real) would round
            raise UnsupportedType(f"avg over a value of type OID {oid}")
        return AggSpec(kind, inp)
    if kind == AggKind.ARRAY_AGG:
        elem = _ARRAY_ELEMENT.get(oid)
        if elem is None:
            raise UnsupportedType(f"array_agg giving type OID {oid}")
        return AggSpec(kind, elem)
    return AggSpec(kind, oid, delim)


@dataclass(eq=False)
class Aggregate:
    source: Source
    group_columns: int  # the first columns of the shards' rows are the group's values
    aggs: tuple[AggDef, ...]
    group_names: tuple[str, ...] = ()
    raw: bool = False

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        results = await self.source.execute_shards(vc, bind)
        fields = fields_of(results)
        try:
            return self._fold(results, fields, bind)
        except (UnsupportedType, ValueFormatError, ValueOutOfRange) as e:
            raise merge_error(e) from None

    def _fold(
        self, results: Sequence[Result], fields: Sequence[Field], bind: Sequence[str]
    ) -> Result:
        g = self.group_columns
        specs = [_spec(a, fields, bind, self.raw) for a in self.aggs]
        out_fields = [fields[i] for i in range(g)]
        if self.group_names:
            out_fields = [
                Field(n, f.type_oid, f.table_oid, f.column, f.type_size, f.type_mod)
                for n, f in zip(self.group_names, out_fields, strict=True)
            ]
        out_fields += [Field(a.name, s.result_oid) for a, s in zip(self.aggs, specs, strict=True)]
        group_spec = SortSpec([SortKey(i, fields[i].type_oid) for i in range(g)])
        if self.raw:
            views = [RowView(p) for r in results for p in r.rows]
            groups = self._fold_raw(views, fields, group_spec, specs)
        else:
            # fold_groups frames the payloads in C.
            payloads = results[0].rows if len(results) == 1 else [
                p for r in results for p in r.rows]
            groups = fold_groups(payloads, group_spec, specs, [a.column for a in self.aggs])
        out = []
        for first, states in groups.values():
            values = [first[i] for i in range(g)] + [st.final() for st in states]
            out.append(build_datarow(values))
        if not out and g == 0:
            out.append(build_datarow([s.state().final() for s in specs]))
        return Result(fields=out_fields, rows=out, tag=b"SELECT %d" % len(out))

    def _fold_raw(
        self,
        rows: Sequence[RowView],
        fields: Sequence[Field],
        group_spec: SortSpec,
        specs: Sequence[AggSpec],
    ) -> dict[bytes, tuple[RowView, list[AggState]]]:
        whole = SortSpec([SortKey(i, f.type_oid) for i, f in enumerate(fields)])
        seen: set[bytes] = set()
        groups: dict[bytes, tuple[RowView, list[AggState]]] = {}
        for row in rows:
            k = whole.group_key(row)
            if k in seen:
                continue
            seen.add(k)
            gk = group_spec.group_key(row)
            entry = groups.get(gk)
            if entry is None:
                entry = groups[gk] = (row, [s.state() for s in specs])
            for a, st in zip(self.aggs, entry[1], strict=True):
                if a.kind not in _RAW_KINDS:
                    raise PgError(
                        f"{a.kind.name.lower()}(DISTINCT ...) across shards",
                        sqlstate.FEATURE_NOT_SUPPORTED,
                    )
                x = row[a.column]
                if x is not None:  # every one of them is strict: NULLs are skipped
                    st.combine_input(x)  # the aggregate's own transition
        return groups

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "primitive": "aggregate",
            "group_columns": self.group_columns,
            "aggregates": [
                f"{a.kind.name.lower()}@{a.column}"
                + (f"(delimiter {a.delimiter.describe()})" if a.delimiter else "")
                for a in self.aggs
            ],
        }
        if self.raw:
            d["distinct_input"] = True
        d["input"] = self.source.describe()
        return d
