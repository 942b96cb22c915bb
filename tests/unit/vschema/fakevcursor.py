"""An in-memory VCursor for the lookup vindexes' tests: it understands the few statement
shapes a lookup vindex sends (SELECT/INSERT/DELETE with quoted names and $n parameters),
keeps each tablegroup's tables per shard, and records every call."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from multigres.vschema.shardmap import ShardMap
from multigres.vschema.vcursor import Target

_SELECT = re.compile(r'^SELECT (.+?) FROM "(\w+)" WHERE (.+?)( LIMIT 1)?$')
_INSERT = re.compile(r'^INSERT INTO "(\w+)" \((.+?)\) VALUES (.+?)( ON CONFLICT DO NOTHING)?$')
_DELETE = re.compile(r'^DELETE FROM "(\w+)" WHERE (.+)$')
_COND = re.compile(r'^"(\w+)" = \$(\d+)$')


class UniqueViolation(Exception):
    pass


@dataclass
class Call:
    tablegroup: str
    target: Target
    sql: str
    params: list[Any]


@dataclass
class FakeVCursor:
    # tablegroup -> shard names ("0" for an unsharded one)
    shards: dict[str, list[str]]
    # (tablegroup, shard, table) -> rows as dicts
    data: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # table -> column that must be unique
    unique: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def _targets(self, tablegroup: str, target: Target) -> list[str]:
        names = self.shards[tablegroup]
        if target is None:
            return names
        if isinstance(target, str):
            return [target]
        return [ShardMap(names).shard_for(target)]

    def rows(self, tablegroup: str, table: str) -> list[dict[str, Any]]:
        return [
            r for s in self.shards[tablegroup] for r in self.data.get((tablegroup, s, table), [])
        ]

    async def execute(
        self, tablegroup: str, target: Target, sql: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        self.calls.append(Call(tablegroup, target, sql, list(params)))
        out: list[tuple[Any, ...]] = []
        for shard in self._targets(tablegroup, target):
            out += self._run(tablegroup, shard, sql, list(params))
        return out

    def _conds(self, where: str, params: list[Any]) -> dict[str, Any]:
        conds = {}
        for part in where.split(" AND "):
            m = _COND.match(part)
            assert m, part
            conds[m.group(1)] = params[int(m.group(2)) - 1]
        return conds

    def _run(self, tg: str, shard: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if m := _SELECT.match(sql):
            table = self.data.get((tg, shard, m.group(2)), [])
            conds = self._conds(m.group(3), params)
            hits = [r for r in table if all(r[c] == v for c, v in conds.items())]
            if m.group(1) == "1":
                return [(1,)] if hits else []
            col = m.group(1).strip('"')
            return [(r[col],) for r in hits]
        if m := _INSERT.match(sql):
            table = self.data.setdefault((tg, shard, m.group(1)), [])
            cols = [c.strip().strip('"') for c in m.group(2).split(",")]
            for i in range(0, len(params), len(cols)):
                row = dict(zip(cols, params[i : i + len(cols)], strict=True))
                u = self.unique.get(m.group(1))
                if u and any(r[u] == row[u] for r in table):
                    if m.group(4):
                        continue
                    raise UniqueViolation(f"duplicate {u}={row[u]!r}")
                table.append(row)
            return []
        if m := _DELETE.match(sql):
            table = self.data.get((tg, shard, m.group(1)), [])
            conds = self._conds(m.group(2), params)
            table[:] = [r for r in table if not all(r[c] == v for c, v in conds.items())]
            return []
        raise AssertionError(f"unexpected SQL: {sql}")
