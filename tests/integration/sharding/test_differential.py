"""Differential tests: every generated SELECT runs through the engine on the shards and
directly on one Postgres holding all the rows; the answers must be the same.

One Postgres, databases as shards (2 and 4 shards of ``commerce``, one of ``main``) and a
reference database (multigres.testing.shards). Results are compared as Postgres's own bytes:
column names and types, and every DataRow, in order when the query's ORDER BY is total, as
multisets otherwise. A query the engine refuses must fail with 0A000 (counted and reported);
any other difference is a mismatch, and there must be none.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator

import pytest

from multigres.gateway.engine.result import Result
from multigres.gateway.planner import Plan, build
from multigres.sql.normalize import normalize
from multigres.testing.postgres import PgHarness
from multigres.testing.shards import PgClient, ShardedDatabases, ShardVCursor
from multigres.vschema.model import VSchema
from multigres.wire.errors import PgError
from tests.integration.sharding.querygen import Query, QueryGen
from tests.integration.sharding.schema import DDL, Data, vschema

pytestmark = pytest.mark.integration

QUERIES_PER_LAYOUT = 1500
LAYOUTS = {
    2: {"commerce": ["-80", "80-"], "main": ["0"]},
    4: {"commerce": ["-40", "40-80", "80-c0", "c0-"], "main": ["0"]},
}


@pytest.fixture(scope="module")
def cluster(pg_harness: PgHarness) -> Iterator[dict[int, ShardedDatabases]]:
    pg = pg_harness.primary(settings={"max_connections": "60"})
    vs = vschema()
    data = Data(vs)
    out = {}
    for n, layout in LAYOUTS.items():
        dbs = ShardedDatabases(pg.endpoint(), layout, prefix=f"diff{n}")
        dbs.create()
        dbs.load(vs, DDL, data.tables())
        out[n] = dbs
    try:
        yield out
    finally:
        for dbs in out.values():
            dbs.drop()


def _fields(r: Result) -> list[tuple[str, int]]:
    return [(f.name, f.type_oid) for f in r.fields or []]


class Stats:
    def __init__(self) -> None:
        self.ok: collections.Counter[str] = collections.Counter()
        self.unsupported: collections.Counter[str] = collections.Counter()
        self.both_failed = 0
        self.mismatches: list[str] = []


async def _run(dbs: ShardedDatabases, seed: int, count: int) -> Stats:
    vs = vschema()
    data = Data(vs)
    vc = await dbs.vcursor()
    ref = await dbs.reference()
    plans: dict[bytes, Plan | PgError] = {}
    stats = Stats()
    try:
        for query in _take(QueryGen(data, seed), count):
            await _one(query, vs, vc, ref, plans, stats)
    finally:
        await vc.close()
        await ref.close()
    return stats


def _take(gen: QueryGen, n: int) -> Iterator[Query]:
    for _ in range(n):
        yield next(gen)


async def _one(query: Query, vs: VSchema, vc: ShardVCursor, ref: PgClient,
               plans: dict[bytes, Plan | PgError], stats: Stats) -> None:
    norm = normalize(query.sql.encode())
    plan = plans.get(norm.text)
    if plan is None:
        try:
            plan = build(norm.text.decode(), vs, norm.n_params)
        except PgError as e:
            plan = e
        plans[norm.text] = plan
    try:
        expected: Result | PgError = await ref.query(query.sql)
    except PgError as e:
        expected = e
    try:
        if isinstance(plan, PgError):
            raise plan
        got: Result | PgError = await plan.execute(vc, [p.raw.decode() for p in norm.params])
    except PgError as e:
        got = e
    if isinstance(got, PgError) and got.sqlstate == "0A000":
        stats.unsupported[query.shape] += 1
        return
    if isinstance(expected, PgError) or isinstance(got, PgError):
        if (isinstance(expected, PgError) and isinstance(got, PgError)
                and expected.sqlstate == got.sqlstate):
            stats.both_failed += 1
            return
        stats.mismatches.append(f"{query.sql}\n  expected {expected!r}\n  got {got!r}")
        return
    if _fields(expected) != _fields(got):
        stats.mismatches.append(
            f"{query.sql}\n  expected columns {_fields(expected)}\n  got {_fields(got)}")
        return
    a, b = expected.rows, got.rows
    if not query.ordered:
        a, b = sorted(a), sorted(b)
    if a != b:
        stats.mismatches.append(
            f"{query.sql}\n  expected {len(a)} rows {a[:5]}\n  got {len(b)} rows {b[:5]}")
        return
    stats.ok[query.shape] += 1


@pytest.mark.parametrize("shards", sorted(LAYOUTS))
def test_differential(cluster: dict[int, ShardedDatabases], shards: int) -> None:
    start = time.monotonic()
    stats = asyncio.run(_run(cluster[shards], seed=1000 + shards, count=QUERIES_PER_LAYOUT))
    elapsed = time.monotonic() - start
    total = sum(stats.ok.values()) + sum(stats.unsupported.values()) + stats.both_failed
    print(
        f"\n{shards} shards: {total + len(stats.mismatches)} queries in {elapsed:.1f}s: "
        f"{sum(stats.ok.values())} equal, {stats.both_failed} failed alike, "
        f"{sum(stats.unsupported.values())} unsupported (0A000) {dict(stats.unsupported)}, "
        f"{len(stats.mismatches)} mismatches"
    )
    print("  by shape:", dict(sorted(stats.ok.items())))
    assert not stats.mismatches, "\n".join(stats.mismatches[:20])
