"""INSERT ... VALUES into a sharded, reference or unsharded table (Vitess's engine/insert).

One execution:

1. Generated values: each omitted or DEFAULT auto-increment value, and each
   ``nextval('<VSchema sequence>')``, takes an id from the gateway's
   :class:`~multigres.gateway.engine.sequence.SequenceAllocator` (all of a sequence's ids of
   the statement in one call). They fill slots after the client's parameters, so a row's
   template renders them like any bind value.
2. Sharded: the primary vindex maps each row's value(s) to a keyspace id; a NULL one is
   refused (the row would have no shard, and Postgres would refuse a NULL key too).
   Secondary vindexes the table does not own are verified (the value must map to the row's
   keyspace id, or a query routed by that column would look on the wrong shard). Each owned
   lookup vindex then gets its rows (``create``, in the lookup table's tablegroup, through
   the session's transaction) before the table's own rows are written, so a duplicate in a
   unique lookup fails the statement before anything of it lands.
3. Each shard gets one statement with only its rows (``prefix`` + its rows + ``suffix``: the
   ON CONFLICT and RETURNING clauses); a reference table gets every row on every shard of
   its tablegroup; an unsharded table (here only for its generated values) one statement.
4. The result: RETURNING rows shard by shard in shard order (Postgres does not promise the
   input order either), the tag ``INSERT 0 <sum>``. A reference table's copies are one
   table: its result is the first shard's.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres.gateway.engine.bindvalues import decode, negate, vindex_input
from multigres.gateway.engine.lookup import LookupCursor
from multigres.gateway.engine.primitive import Bind
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.sequence import allocator_of, sequence_name_of
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.gateway.planner.templates import Template
from multigres.vschema.errors import VindexError
from multigres.vschema.model import ColumnVindex, SequenceDef
from multigres.vschema.vindexes import FunctionalVindex, LookupVindex, MulticolVindex
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

NOT_NULL_VIOLATION = "23502"


class Opcode(enum.Enum):
    UNSHARDED = "unsharded"
    SHARDED = "sharded"
    REFERENCE = "reference"


class ValueKind(enum.Enum):
    PARAM = "param"  # $n (maybe -$n): decoded from the bind text
    CONST = "const"  # a NULL / TRUE / FALSE kept in the text
    SEQUENCE = "sequence"  # a generated value of a sequence known at plan time
    NEXTVAL = "nextval"  # nextval($n): the sequence is named by a bind value
    OTHER = "other"  # an expression the gateway does not evaluate (DEFAULT, now(), ...)


@dataclass(frozen=True, slots=True)
class RowValue:
    """What the engine knows of one row's value of a column it must look at (a vindex
    column, the auto-increment column). ``param``: the ``$n`` (1-based) of PARAM and
    NEXTVAL; ``slot``: the ``$n`` a generated value (SEQUENCE, NEXTVAL) is rendered into,
    one of the plan's own slots after the statement's parameters."""

    kind: ValueKind
    param: int = 0
    negate: bool = False
    const: int | str | None = None
    sequence: str = ""
    slot: int = 0
    text: str = ""  # OTHER: the expression, for error messages

    def describe(self) -> str:
        if self.kind is ValueKind.PARAM:
            return ("-" if self.negate else "") + f"${self.param}"
        if self.kind is ValueKind.CONST:
            return "NULL" if self.const is None else repr(self.const)
        if self.kind is ValueKind.SEQUENCE:
            return f"nextval({self.sequence}) -> ${self.slot}"
        if self.kind is ValueKind.NEXTVAL:
            return f"nextval(${self.param}) -> ${self.slot}"
        return self.text


@dataclass(frozen=True)
class Insert:
    opcode: Opcode
    table: str
    tablegroup: str
    prefix: Template  # INSERT INTO t (cols) VALUES
    rows: tuple[Template, ...]  # "(v1, v2, ...)" per row, over the extended bind list
    suffix: Template  # " ON CONFLICT ... RETURNING ..." or ""
    # Every column vindex of the table, with its columns' values per row.
    vindexes: tuple[tuple[ColumnVindex, tuple[tuple[RowValue, ...], ...]], ...] = ()
    # The generated slots: RowValues of kind SEQUENCE or NEXTVAL, in slot order.
    generated: tuple[RowValue, ...] = ()
    sequences: dict[str, SequenceDef] | None = None  # the VSchema's, for NEXTVAL

    # -- execution --------------------------------------------------------------------------

    async def execute(self, vc: VCursor, bind: Bind) -> Result:
        # The plan's slots for generated values are already in ``bind`` (as NULL): this
        # execution's copy gets the ids.
        ext = list(bind)
        values: dict[int, int] = {}  # slot -> generated id
        if self.generated:
            await self._generate(vc, bind, ext, values)
        if self.opcode is Opcode.SHARDED:
            queries = await self._sharded(vc, bind, ext, values)
            return merge_results(await vc.execute(queries), b"INSERT")
        sql = self._sql(range(len(self.rows)), ext)
        names = vc.shard_map(self.tablegroup).names
        if self.opcode is Opcode.UNSHARDED:
            names = names[:1]
        results = await vc.execute([ShardQuery(self.tablegroup, s, sql) for s in names])
        return results[0]

    def _sql(self, rows: Sequence[int], ext: Sequence[str]) -> str:
        return (
            self.prefix.render(ext)
            + ", ".join(self.rows[r].render(ext) for r in rows)
            + self.suffix.render(ext)
        )

    async def _generate(
        self, vc: VCursor, bind: Bind, ext: list[str], values: dict[int, int]
    ) -> None:
        wanted: dict[str, list[int]] = defaultdict(list)  # sequence -> slots
        seqs = self.sequences or {}
        for g in self.generated:
            if g.kind is ValueKind.SEQUENCE:
                wanted[g.sequence].append(g.slot)
                continue
            raw = bind[g.param - 1]
            name = decode(raw).value
            seq = seqs.get(sequence_name_of(str(name))) if name is not None else None
            if seq is None:
                # Not a sequence of the VSchema: the shard's own (the user's business).
                ext[g.slot - 1] = f"nextval({raw})"
            else:
                wanted[seq.name].append(g.slot)
        alloc = allocator_of(vc) if wanted else None
        for name, slots in wanted.items():
            assert alloc is not None
            ids = await alloc.take(vc, seqs[name], len(slots))
            for slot, v in zip(slots, ids, strict=True):
                values[slot] = v
                ext[slot - 1] = str(v) if v >= 0 else f"({v})"

    def _value(self, rv: RowValue, bind: Bind, values: dict[int, int], cv: ColumnVindex) -> Any:
        if rv.kind is ValueKind.PARAM:
            bv = decode(bind[rv.param - 1])
            return vindex_input(negate(bv) if rv.negate else bv)
        if rv.kind is ValueKind.CONST:
            return rv.const
        if rv.slot in values:
            return values[rv.slot]
        raise PgError(
            f"INSERT into {self.table}: the value {rv.describe()} of column "
            f"{', '.join(cv.columns)} (vindex {cv.name}) is not known to the gateway",
            codes.FEATURE_NOT_SUPPORTED,
            hint="give the value as a constant, a parameter, or from a sequence of the VSchema",
        )

    def _column_values(
        self, cv: ColumnVindex, per_row: tuple[tuple[RowValue, ...], ...], bind: Bind,
        values: dict[int, int],
    ) -> list[list[Any]]:
        return [[self._value(rv, bind, values, cv) for rv in row] for row in per_row]

    async def _sharded(
        self, vc: VCursor, bind: Bind, ext: list[str], values: dict[int, int]
    ) -> list[ShardQuery]:
        lc = LookupCursor(vc)
        (primary, prow), *others = self.vindexes
        pvals = self._column_values(primary, prow, bind, values)
        ksids = await map_rows(lc, primary, pvals)
        for i, k in enumerate(ksids):
            if not isinstance(k, bytes):
                raise _no_keyspace_id(self.table, primary, pvals[i])
        ids: list[bytes] = [k for k in ksids if isinstance(k, bytes)]
        for cv, per_row in others:
            vals = self._column_values(cv, per_row, bind, values)
            if cv.owned:
                assert isinstance(cv.vindex, LookupVindex)
                await cv.vindex.create(lc, vals, ids)
            else:
                await verify(lc, self.table, cv, vals, ids)
        groups = vc.shard_map(self.tablegroup).group(ids)
        return [
            ShardQuery(self.tablegroup, shard, self._sql(rows, ext))
            for shard, rows in groups.items()
        ]

    # -- plans ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "primitive": "insert",
            "opcode": self.opcode.value,
            "table": self.table,
            "tablegroup": self.tablegroup,
        }
        if self.vindexes:
            d["vindexes"] = [
                {
                    "vindex": cv.name,
                    "columns": list(cv.columns),
                    "role": "primary" if cv.primary else ("owned" if cv.owned else "verify"),
                    "values": [[rv.describe() for rv in row] for row in per_row],
                }
                for cv, per_row in self.vindexes
            ]
        if self.generated:
            d["generated"] = [g.describe() for g in self.generated]
        d["sql"] = self.prefix.sql + ", ".join(r.sql for r in self.rows) + self.suffix.sql
        return d


async def map_rows(
    lc: LookupCursor, cv: ColumnVindex, rows: list[list[Any]]
) -> list[bytes | None]:
    """The keyspace id of each row's values of a unique vindex (None: NULL, or no row). A
    value the vindex cannot read is refused (0A000): Postgres might cast it into the column
    (1.5 rounds into a bigint), but the gateway will not guess its shard."""
    try:
        return await _map_rows(lc, cv, rows)
    except VindexError as e:
        raise vindex_refusal(cv, e) from None


def vindex_refusal(cv: ColumnVindex, e: VindexError) -> PgError:
    return PgError(
        f"a value of column {', '.join(cv.columns)} cannot be placed: {e}",
        codes.FEATURE_NOT_SUPPORTED,
        hint="give the sharding column a value of its own type (an integer for a hash "
        "vindex)",
    )


async def _map_rows(
    lc: LookupCursor, cv: ColumnVindex, rows: list[list[Any]]
) -> list[bytes | None]:
    v = cv.vindex
    if isinstance(v, MulticolVindex):
        return v.map_rows(rows)
    if isinstance(v, FunctionalVindex):
        return v.map([r[0] for r in rows])
    if isinstance(v, LookupVindex) and v.unique:
        dests = await v.map(lc, [r[0] for r in rows])
        return [d if isinstance(d, bytes) else None for d in dests]
    raise PgError(f"vindex {v.describe()} cannot place rows", codes.FEATURE_NOT_SUPPORTED)


async def verify(
    lc: LookupCursor, table: str, cv: ColumnVindex, rows: list[list[Any]], ksids: list[bytes]
) -> None:
    """A secondary vindex the table does not own must map each row's value to the row's
    keyspace id; rows with a NULL there are not looked up by it (``col = NULL`` matches
    nothing) and are not checked."""
    idx = [i for i, r in enumerate(rows) if all(x is not None for x in r)]
    if not idx:
        return
    sub_rows = [rows[i] for i in idx]
    sub_ids = [ksids[i] for i in idx]
    v = cv.vindex
    try:
        if isinstance(v, MulticolVindex):
            ok = v.verify_rows(sub_rows, sub_ids)
        elif isinstance(v, FunctionalVindex):
            ok = v.verify([r[0] for r in sub_rows], sub_ids)
        elif isinstance(v, LookupVindex):
            ok = await v.verify(lc, [r[0] for r in sub_rows], sub_ids)
        else:  # pragma: no cover - every vindex kind is one of the above
            ok = [False] * len(idx)
    except VindexError as e:
        raise vindex_refusal(cv, e) from None
    bad = [sub_rows[i] for i, good in enumerate(ok) if not good]
    if bad:
        shown = ", ".join(repr(r[0] if len(r) == 1 else tuple(r)) for r in bad[:5])
        raise PgError(
            f"INSERT into {table}: value(s) {shown} of column {', '.join(cv.columns)} do not "
            f"map to the row's keyspace id by vindex {cv.vindex.describe()}",
            codes.FEATURE_NOT_SUPPORTED,
            hint=f"{table} does not own vindex {cv.name}: its owner's rows decide where a value "
            "lives",
        )


def _no_keyspace_id(table: str, cv: ColumnVindex, row: list[Any]) -> PgError:
    cols = ", ".join(cv.columns)
    if any(v is None for v in row):
        return PgError(
            f'null value in column "{cols}" of relation "{table}" violates not-null '
            "constraint",
            NOT_NULL_VIOLATION,
            detail=f"{cols} is the sharding key of {table} (vindex {cv.name}): every row "
            "needs a value to be placed on a shard",
        )
    shown = row[0] if len(row) == 1 else tuple(row)
    return PgError(
        f"INSERT into {table}: no keyspace id for {shown!r} by vindex {cv.vindex.describe()}",
        codes.FEATURE_NOT_SUPPORTED,
    )


def merge_results(results: Sequence[Result], verb: bytes) -> Result:
    """Per-shard results of one write as one: rows shard by shard, counts summed."""
    fields = next((r.fields for r in results if r.fields is not None), None)
    total = sum(r.row_count for r in results)
    rows: list[bytes] = []
    notices: list[bytes] = []
    for r in results:
        rows.extend(r.rows)
        notices.extend(r.notices)
    tag = verb + (b" 0 " if verb == b"INSERT" else b" ") + str(total).encode()
    return Result(fields=fields, rows=rows, tag=tag, notices=notices)
