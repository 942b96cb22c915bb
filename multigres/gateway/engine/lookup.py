"""The vindexes' view of the shards (``multigres.vschema.vcursor.VCursor``) over the engine's.

A lookup vindex runs its SQL (``$n`` parameters) on its table's tablegroup. The engine's
VCursor takes SQL text only (a shard gets a simple Query), so the parameters are written in
as literals here, and the rows come back as Python values by their column types: bytea as
bytes (the keyspace ids), integers as int, bool as bool, everything else as str.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from multigres._cy.pgvalue import RowView
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.template import Template
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.vschema.vcursor import Target

_INT_OIDS = frozenset({20, 21, 23, 26})
_BYTEA, _BOOL = 17, 16


def sql_literal(value: object) -> str:
    """A Python value as a SQL literal (what a lookup statement's parameters hold)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "'\\x" + bytes(value).hex() + "'::bytea"
    text = str(value)
    return "'" + text.replace("'", "''") + "'"


def decode_rows(result: Result) -> list[tuple[Any, ...]]:
    """A shard's result as rows of Python values (by column type)."""
    fields = result.fields or []
    oids = [f.type_oid for f in fields]
    out = []
    for payload in result.rows:
        row = RowView(payload)
        values: list[Any] = []
        for i, oid in enumerate(oids):
            v = row[i]
            if v is None:
                values.append(None)
            elif oid == _BYTEA:
                values.append(bytes.fromhex(v[2:].decode()))
            elif oid in _INT_OIDS:
                values.append(int(v))
            elif oid == _BOOL:
                values.append(v == b"t")
            else:
                values.append(v.decode("utf-8", "surrogateescape"))
        out.append(tuple(values))
    return out


class LookupCursor:
    """``multigres.vschema.vcursor.VCursor`` over an engine VCursor."""

    def __init__(self, vc: VCursor) -> None:
        self.vc = vc

    async def execute(
        self, tablegroup: str, target: Target, sql: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        text = Template(sql).render([sql_literal(p) for p in params])
        shard_map = self.vc.shard_map(tablegroup)
        if isinstance(target, str):
            shards = [target]
        elif isinstance(target, bytes):
            shards = [shard_map.shard_for(target)]
        else:
            shards = list(shard_map.names)
        results = await self.vc.execute([ShardQuery(tablegroup, s, text) for s in shards])
        rows: list[tuple[Any, ...]] = []
        for r in results:
            rows.extend(decode_rows(r))
        return rows
