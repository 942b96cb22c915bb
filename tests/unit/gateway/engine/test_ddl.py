"""DDL execution: every shard of the targets, one shard's answer; an index named alone is
found by probing each tablegroup."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from multigres._cy.pgvalue import build_datarow
from multigres.gateway.engine.ddl import DDL, Target
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner.templates import Template
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError

SHARDS = {"shop": ["-80", "80-"], "default": ["0"]}


class Fake:
    def __init__(self, has_index: set[str]) -> None:
        self.has_index = has_index
        self.sent: list[ShardQuery] = []

    def shard_map(self, tablegroup: str) -> ShardMap:
        return ShardMap(SHARDS[tablegroup])

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        self.sent.extend(queries)
        out = []
        for q in queries:
            if q.sql.startswith("SELECT to_regclass"):
                v = b"t" if q.tablegroup in self.has_index else b"f"
                out.append(Result(fields=[Field("?column?", 16)], rows=[build_datarow([v])],
                                  tag=b"SELECT 1"))
            else:
                out.append(Result(tag=b"DROP INDEX", notices=[q.shard.encode()]))
        return out


def probe_ddl() -> DDL:
    return DDL(Template("DROP INDEX i"), Target.PROBE, ("default", "shop"), "i", "default")


async def test_index_found_in_one_tablegroup() -> None:
    vc = Fake({"shop"})
    res = await probe_ddl().execute(vc, [])
    assert res.tag == b"DROP INDEX" and res.notices == [b"-80"]  # one shard's notices
    assert [(q.tablegroup, q.shard) for q in vc.sent[2:]] == [("shop", "-80"), ("shop", "80-")]


async def test_index_nowhere_goes_to_the_default() -> None:
    vc = Fake(set())
    await probe_ddl().execute(vc, [])
    assert [(q.tablegroup, q.shard) for q in vc.sent[2:]] == [("default", "0")]


async def test_index_in_two_tablegroups_is_refused() -> None:
    with pytest.raises(PgError) as e:
        await probe_ddl().execute(Fake({"shop", "default"}), [])
    assert e.value.sqlstate == "0A000"


async def test_everywhere() -> None:
    vc = Fake(set())
    d = DDL(Template("CREATE TYPE t AS ENUM ('a')"), Target.EVERYWHERE, ("default", "shop"))
    await d.execute(vc, [])
    assert len(vc.sent) == 3
