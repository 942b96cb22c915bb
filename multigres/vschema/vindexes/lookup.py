"""``lookup_unique`` and ``lookup``: a table maps a column's values to keyspace ids.

Params: ``table`` (the lookup table, ``name`` or ``tablegroup.name``; it must be a table of
the VSchema), ``from`` (its columns holding the owner's column values; the first is the one
looked up, the others make the rows of a non-unique lookup distinct), ``to`` (its bytea
column holding the keyspace id), ``ignore_nulls`` (rows whose ``from`` values have a NULL are
neither written nor deleted), ``write_only`` (while the table is being backfilled: rows are
kept up to date, but ``map`` says "every shard" instead of reading the table).

The vindex's *owner* (the table that names it with ``"owner"``) keeps the lookup rows: the
engine calls :meth:`create` for each inserted row, :meth:`delete` for each deleted one and
:meth:`update` when the column changes, inside the same transaction. Every statement is
Postgres SQL with ``$n`` parameters, run through the :class:`~multigres.vschema.vcursor.VCursor`
on the lookup table's tablegroup: on the shard that owns the looked-up value when the lookup
table is itself sharded by its first ``from`` column, else on its only shard (unsharded) or on
every shard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from multigres.topo.keyrange import KeyRange
from multigres.vschema.doc import Params, q
from multigres.vschema.vcursor import Target, VCursor
from multigres.vschema.vindexes.base import Destination, FunctionalVindex, Vindex


def quote_ident(name: str) -> str:
    """A Postgres identifier, always quoted: names in the VSchema are the names as stored."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    return ".".join(quote_ident(part) for part in name.split("."))


class LookupVindex(Vindex):
    """The non-unique lookup (``lookup``): a value may map to several keyspace ids."""

    type_name = "lookup"
    cost = 20
    unique = False
    needs_vcursor = True

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)
        self.table = params.string("table", required=True) or ""
        self.from_columns = params.names("from", required=True) or []
        self.to = params.string("to", required=True) or ""
        self.ignore_nulls = params.boolean("ignore_nulls", False)
        self.write_only = params.boolean("write_only", False)
        if self.to and self.to in self.from_columns:
            params.error("to", f"{q(self.to)} is also a 'from' column")
        # Set by bind() once the VSchema knows the table.
        self.owner: str | None = None
        self.tablegroup = ""
        self.table_name = self.table.split(".", 1)[-1] if "." in self.table else self.table
        self._route: FunctionalVindex | None = None
        self._build_sql()

    @property
    def column_count(self) -> int:
        """An owner lists as many columns as ``from`` has (only the first is looked up)."""
        return len(self.from_columns) or 1

    def bind(self, tablegroup: str, table_name: str, route: FunctionalVindex | None) -> None:
        """Where the lookup table lives; ``route`` is its primary vindex when that is a
        functional vindex on the first ``from`` column (each value then has one shard)."""
        self.tablegroup = tablegroup
        self.table_name = table_name
        self._route = route
        self._build_sql()

    def _build_sql(self) -> None:
        if not self.from_columns or not self.to:
            return
        t = quote_table(self.table_name)
        f0, to = quote_ident(self.from_columns[0]), quote_ident(self.to)
        n = len(self.from_columns)
        cols = ", ".join(quote_ident(c) for c in [*self.from_columns, self.to])
        match = " AND ".join(
            f"{quote_ident(c)} = ${i + 1}" for i, c in enumerate([*self.from_columns, self.to])
        )
        self.sql_map = f"SELECT {to} FROM {t} WHERE {f0} = $1"
        self.sql_verify = f"SELECT 1 FROM {t} WHERE {f0} = $1 AND {to} = $2 LIMIT 1"
        self.sql_insert_head = f"INSERT INTO {t} ({cols}) VALUES "
        self.sql_delete = f"DELETE FROM {t} WHERE {match}"
        self._row_width = n + 1

    def insert_sql(self, rows: int, ignore_conflicts: bool = False) -> str:
        w = self._row_width
        values = ", ".join(
            "(" + ", ".join(f"${r * w + c + 1}" for c in range(w)) + ")" for r in range(rows)
        )
        tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        return self.sql_insert_head + values + tail

    def _target(self, value: object) -> Target:
        if self._route is None:
            return None
        return self._route.map([value])[0]

    async def _lookup(self, vcursor: VCursor, value: object) -> list[bytes]:
        if value is None:
            return []
        rows = await vcursor.execute(self.tablegroup, self._target(value), self.sql_map, [value])
        return [bytes(r[0]) for r in rows if r[0] is not None]

    async def map(self, vcursor: VCursor, values: Sequence[object]) -> list[Destination]:
        """Per value: the keyspace ids its lookup rows name (a tuple, empty if none). One
        query per value. With ``write_only``: every shard."""
        if self.write_only:
            return [KeyRange() for _ in values]
        out: list[Destination] = []
        for value in values:
            out.append(tuple(await self._lookup(vcursor, value)))
        return out

    async def verify(
        self, vcursor: VCursor, values: Sequence[object], ksids: Sequence[bytes]
    ) -> list[bool]:
        """Whether a lookup row maps each value to the keyspace id beside it."""
        if self.write_only:
            return [True for _ in values]
        out = []
        for value, ksid in zip(values, ksids, strict=True):
            if value is None:
                out.append(False)
                continue
            rows = await vcursor.execute(
                self.tablegroup, self._target(value), self.sql_verify, [value, ksid]
            )
            out.append(bool(rows))
        return out

    def _skip(self, row: Sequence[object]) -> bool:
        return self.ignore_nulls and any(v is None for v in row)

    def _check_row(self, row: Sequence[object]) -> None:
        if len(row) != len(self.from_columns):
            raise self._fail(
                ValueError(f"a row of {len(row)} values for 'from' columns {self.from_columns}")
            )

    async def create(
        self,
        vcursor: VCursor,
        rows: Sequence[Sequence[object]],
        ksids: Sequence[bytes],
        ignore_conflicts: bool = False,
    ) -> None:
        """Write a lookup row (``from`` values + keyspace id) for each owner row: one
        multi-row INSERT per target. A unique lookup refuses a value that is already there
        (the INSERT fails on the table's unique key) unless ``ignore_conflicts``."""
        by_target: dict[Target, list[Any]] = defaultdict(list)
        counts: dict[Target, int] = defaultdict(int)
        for row, ksid in zip(rows, ksids, strict=True):
            self._check_row(row)
            if self._skip(row):
                continue
            target = self._target(row[0])
            by_target[target].extend([*row, ksid])
            counts[target] += 1
        for target, params in by_target.items():
            sql = self.insert_sql(counts[target], ignore_conflicts)
            await vcursor.execute(self.tablegroup, target, sql, params)

    async def delete(
        self, vcursor: VCursor, rows: Sequence[Sequence[object]], ksid: bytes
    ) -> None:
        """Remove the lookup rows of owner rows (``from`` values) that were at ``ksid``."""
        for row in rows:
            self._check_row(row)
            if self._skip(row):
                continue
            await vcursor.execute(
                self.tablegroup, self._target(row[0]), self.sql_delete, [*row, ksid]
            )

    async def update(
        self,
        vcursor: VCursor,
        old_row: Sequence[object],
        ksid: bytes,
        new_row: Sequence[object],
    ) -> None:
        """The owner row at ``ksid`` changed its ``from`` values: delete, then create."""
        await self.delete(vcursor, [old_row], ksid)
        await self.create(vcursor, [new_row], [ksid])


class LookupUniqueVindex(LookupVindex):
    """``lookup_unique``: each value maps to at most one keyspace id (its ``from`` column is
    unique in the lookup table), so it can route an equality to one shard."""

    type_name = "lookup_unique"
    cost = 10
    unique = True

    async def map(self, vcursor: VCursor, values: Sequence[object]) -> list[Destination]:
        """Per value: its keyspace id, or None when no lookup row has it. More than one row
        for a value is an error (the table lacks its unique key)."""
        if self.write_only:
            return [KeyRange() for _ in values]
        out: list[Destination] = []
        for value in values:
            ids = await self._lookup(vcursor, value)
            if len(ids) > 1:
                raise self._fail(
                    ValueError(f"{q(value)} has {len(ids)} rows in {self.table_name}; a unique "
                               f"lookup needs a unique key on {self.from_columns[0]}")
                )
            out.append(ids[0] if ids else None)
        return out
