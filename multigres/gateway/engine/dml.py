"""UPDATE and DELETE on a sharded or reference table (Vitess's engine/update, engine/delete).

The statement is routed by its WHERE like a SELECT (``engine.route.Route``: EqualUnique, IN,
lookup Equal, Scatter, None); each shard runs it on its rows and the tag sums the shards'
counts (``UPDATE n``, ``DELETE n``); RETURNING rows come shard by shard in shard order. A
reference table's statement runs on every copy and answers with one copy's result.

Owned lookup vindexes stay consistent with the rows, exactly:

- DELETE: the statement's RETURNING gets the primary vindex columns and the lookups'
  columns appended (cut off again before the client sees the rows), so the gateway learns
  precisely which rows went, with no extra round trip and no window for a row inserted in
  between; their lookup rows are then deleted.
- UPDATE of a lookup column, or of the sharding key: first ``SELECT ctid, <key and lookup
  columns> ... WHERE <the statement's WHERE> FOR UPDATE`` on the routed shards, which locks
  the rows; then, per shard, the UPDATE restricted to exactly those rows
  (``WHERE ctid = ANY(<their ctids>)``: locked rows keep their ctid until we change them)
  with the same columns appended to RETURNING. Old lookup rows (value, old keyspace id) that
  are gone are deleted and new ones created. Updating exactly the rows that were read means
  no row can change its lookup column unseen, even when a matching row is inserted
  concurrently (it is not updated: as if the statement ran at the SELECT's snapshot).
- A new sharding key must be a constant or parameter; before anything is written, every
  locked row's new keyspace id must fall on the shard the row is on (a row cannot move
  between shards here): else 0A000 naming the column and both shards. When the keyspace id
  changes within the shard, the row's lookup rows move to the new keyspace id.
- A vindex column the table does not own (its owner's rows decide where a value lives) may
  be set to a constant only, and the value must map to the row's keyspace id (verified
  before the write).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.bindvalues import decode, negate, vindex_input
from multigres.gateway.engine.insert import RowValue, ValueKind, map_rows, merge_results, verify
from multigres.gateway.engine.lookup import LookupCursor, decode_rows
from multigres.gateway.engine.primitive import Bind
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.route import Route
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.vschema.model import ColumnVindex
from multigres.vschema.vindexes import LookupVindex
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError


@dataclass(frozen=True, slots=True)
class KeyChange:
    """``SET <sharding column> = <constant>``: per primary vindex column, the new value
    (None: that column keeps its value)."""

    vindex: ColumnVindex
    new: tuple[RowValue | None, ...]


@dataclass(frozen=True, slots=True)
class LookupChange:
    vindex: ColumnVindex


@dataclass(eq=False)
class DML:
    verb: str  # UPDATE | DELETE
    table: str
    route: Route  # the statement (for the locked path: its template, rows by ctid)
    reference: bool = False
    primary: ColumnVindex | None = None
    lookups: tuple[LookupChange, ...] = ()
    key_change: KeyChange | None = None
    verify_sets: tuple[tuple[ColumnVindex, tuple[RowValue, ...]], ...] = ()
    # Columns appended to RETURNING: the primary vindex's, then the lookups'.
    extra: tuple[str, ...] = ()
    client_returning: bool = False
    select: Route | None = None  # SELECT ctid, <extra> ... FOR UPDATE
    tid_slot: int = 0

    # -- execution --------------------------------------------------------------------------

    async def execute(self, vc: VCursor, bind: Bind) -> Result:
        if self.reference:
            smap = vc.shard_map(self.route.tablegroup)
            sql = self.route.template.render(bind)
            results = await vc.execute(
                [ShardQuery(self.route.tablegroup, s, sql) for s in smap.names]
            )
            return results[0]
        if self.select is not None:
            return await self._locked(vc, bind)
        results = await self.route.execute_shards(vc, bind)
        if self.extra:
            lc = LookupCursor(vc)
            old = await self._pairs(lc, results)
            await self._apply(lc, old, set())
        return self._finish(results)

    def _finish(self, results: Sequence[Result]) -> Result:
        merged = merge_results(results, self.verb.encode())
        if not self.extra:
            return merged
        if not self.client_returning:
            return Result(fields=None, rows=[], tag=merged.tag, notices=merged.notices)
        k = len(self.extra)
        assert merged.fields is not None
        return Result(
            fields=merged.fields[:-k],
            rows=[build_datarow(RowView(r).values()[:-k]) for r in merged.rows],
            tag=merged.tag,
            notices=merged.notices,
        )

    # The (lookup, from-values, keyspace id) triples of rows, from their extra columns.
    async def _pairs(
        self, lc: LookupCursor, results: Sequence[Result], offset: int = 0
    ) -> set[tuple[int, tuple[Any, ...], bytes]]:
        rows = self._extra_rows(results, offset)
        ksids = await self._ksids(lc, rows)
        out: set[tuple[int, tuple[Any, ...], bytes]] = set()
        for i, lk in enumerate(self.lookups):
            idx = [self.extra.index(c) for c in lk.vindex.columns]
            for row, ksid in zip(rows, ksids, strict=True):
                out.add((i, tuple(row[j] for j in idx), ksid))
        return out

    def _extra_rows(self, results: Sequence[Result], offset: int) -> list[tuple[Any, ...]]:
        k = len(self.extra)
        out: list[tuple[Any, ...]] = []
        for res in results:
            for row in decode_rows(res):
                out.append(row[len(row) - k :] if offset == 0 else row[offset : offset + k])
        return out

    async def _ksids(self, lc: LookupCursor, rows: list[tuple[Any, ...]]) -> list[bytes]:
        assert self.primary is not None
        n = len(self.primary.columns)
        ids = await map_rows(lc, self.primary, [list(r[:n]) for r in rows])
        out = []
        for r, k in zip(rows, ids, strict=True):
            if not isinstance(k, bytes):
                raise PgError(
                    f"{self.verb} of {self.table}: a row's sharding key {r[:n]!r} maps to no "
                    "keyspace id",
                    codes.INTERNAL_ERROR,
                )
            out.append(k)
        return out

    async def _apply(
        self,
        lc: LookupCursor,
        old: set[tuple[int, tuple[Any, ...], bytes]],
        new: set[tuple[int, tuple[Any, ...], bytes]],
    ) -> None:
        """Delete the lookup rows that are gone, then create the new ones (a unique lookup
        may get back a value another row just gave up)."""
        gone: dict[tuple[int, bytes], list[tuple[Any, ...]]] = defaultdict(list)
        for i, vals, ksid in sorted(old - new, key=repr):
            gone[(i, ksid)].append(vals)
        for (i, ksid), rows in gone.items():
            lk = self.lookups[i].vindex.vindex
            assert isinstance(lk, LookupVindex)
            await lk.delete(lc, rows, ksid)
        made: dict[int, list[tuple[tuple[Any, ...], bytes]]] = defaultdict(list)
        for i, vals, ksid in sorted(new - old, key=repr):
            made[i].append((vals, ksid))
        for i, items in made.items():
            lk = self.lookups[i].vindex.vindex
            assert isinstance(lk, LookupVindex)
            await lk.create(lc, [v for v, _ in items], [k for _, k in items])

    async def _locked(self, vc: VCursor, bind: Bind) -> Result:
        assert self.select is not None and self.primary is not None
        lc = LookupCursor(vc)
        queries = await self.select.queries(vc, bind)
        selected = await vc.execute(queries)
        shards = [q.shard for q in queries]
        tids: dict[str, list[str]] = {}
        old_rows: list[tuple[Any, ...]] = []
        row_shards: list[str] = []
        for shard, res in zip(shards, selected, strict=True):
            for row in decode_rows(res):
                tids.setdefault(shard, []).append(str(row[0]))
                old_rows.append(row[1:])
                row_shards.append(shard)
        old_ksids = await self._ksids(lc, old_rows)
        new_ksids = old_ksids
        if self.key_change is not None:
            new_ksids = await self._check_moves(vc, lc, bind, old_rows, old_ksids, row_shards)
        for cv, values in self.verify_sets:
            vals = [self._value(rv, bind) for rv in values]
            await verify(lc, self.table, cv, [vals] * len(new_ksids), list(new_ksids))
        tg = self.route.tablegroup
        targets = [(s, t) for s, t in tids.items()] or [(shards[0], [])]
        out_queries = []
        for shard, shard_tids in targets:
            b = list(bind)
            b[self.tid_slot - 1] = _tid_array(shard_tids)
            out_queries.append(ShardQuery(tg, shard, self.route.template.render(b)))
        results = await vc.execute(out_queries)
        old = set()
        for i, lk in enumerate(self.lookups):
            idx = [self.extra.index(c) for c in lk.vindex.columns]
            for row, ksid in zip(old_rows, old_ksids, strict=True):
                old.add((i, tuple(row[j] for j in idx), ksid))
        new = await self._pairs(lc, results)
        await self._apply(lc, old, new)
        return self._finish(results)

    def _value(self, rv: RowValue, bind: Bind) -> Any:
        if rv.kind is ValueKind.PARAM:
            bv = decode(bind[rv.param - 1])
            return vindex_input(negate(bv) if rv.negate else bv)
        return rv.const

    async def _check_moves(
        self,
        vc: VCursor,
        lc: LookupCursor,
        bind: Bind,
        old_rows: list[tuple[Any, ...]],
        old_ksids: list[bytes],
        row_shards: list[str],
    ) -> list[bytes]:
        """The rows' new keyspace ids; 0A000 if one would leave its shard."""
        kc = self.key_change
        assert kc is not None
        cols = kc.vindex.columns
        new_rows = []
        for row in old_rows:
            new_rows.append([
                row[j] if rv is None else self._value(rv, bind)
                for j, rv in enumerate(kc.new)
            ])
        ids = await map_rows(lc, kc.vindex, new_rows)
        smap = vc.shard_map(self.route.tablegroup)
        out = []
        for old_row, new_row, k, shard in zip(old_rows, new_rows, ids, row_shards, strict=True):
            if not isinstance(k, bytes):
                raise PgError(
                    f'null value in column "{", ".join(cols)}" of relation "{self.table}" '
                    "violates not-null constraint",
                    "23502",
                    detail=f"{', '.join(cols)} is the sharding key of {self.table}",
                )
            to = smap.shard_for(k)
            if to != shard:
                raise PgError(
                    f"UPDATE of the sharding key {', '.join(cols)} of {self.table} from "
                    f"{_show(old_row[: len(cols)])} to {_show(new_row)} would move the row "
                    f"from shard {shard} to shard {to}",
                    codes.FEATURE_NOT_SUPPORTED,
                    hint="a row cannot move between shards: DELETE it and INSERT it again",
                )
            out.append(k)
        return out

    # -- plans ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"primitive": self.verb.lower(), "table": self.table}
        if self.reference:
            d["opcode"] = "Reference"
            d["to"] = "every shard"
            d["sql"] = self.route.template.sql
            return d
        if self.select is not None:
            d["lock"] = self.select.describe()
            d["write"] = {"by": f"ctid = ANY(${self.tid_slot})",
                          "sql": self.route.template.sql}
        else:
            d["route"] = self.route.describe()
        if self.key_change is not None:
            d["key_change"] = {
                c: (rv.describe() if rv is not None else "unchanged")
                for c, rv in zip(self.key_change.vindex.columns, self.key_change.new,
                                 strict=True)
            }
        if self.lookups:
            d["lookups"] = [lk.vindex.name for lk in self.lookups]
        if self.verify_sets:
            d["verify"] = [cv.name for cv, _ in self.verify_sets]
        if self.extra:
            d["returning_extra"] = list(self.extra)
        return d


def _tid_array(tids: list[str]) -> str:
    return "'{" + ",".join('"' + t + '"' for t in tids) + "}'"


def _show(vals: Sequence[Any]) -> str:
    return repr(vals[0]) if len(vals) == 1 else repr(tuple(vals))
