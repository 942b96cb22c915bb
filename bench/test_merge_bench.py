"""Micro-benchmark: the engine's cross-shard merges, through the primitives a plan runs.

Workloads (one thread, one event loop; the shards are an in-memory VCursor that hands back
prepared Results, so the time is the gateway's own: the primitive, its SortSpec/AggSpec built
from the RowDescription, the merge in C, the Result):

- ORDER BY ... LIMIT over 4 shards: ``Limit(MergeSort(Route))`` where each shard returned its
  25,000 rows sorted by (int8 with few distinct values, text) and LIMIT is all 100,000 rows
  (each shard got LIMIT offset+limit: this is the merge's worst case, every row goes
  through). Target: 500,000 rows/s through the merge.
- the same with LIMIT 100 (the common case: the merge stops after 100 rows; the rate is per
  row returned).
- grouped aggregation: ``Aggregate(Route)`` over 4 shards x 25,000 partial rows (an int8 group
  key with 1,000 groups per shard, all shards sharing them; count, sum(int8 partial from
  int4), sum(numeric)). Target: 1,000,000 partial rows/s.

``make test`` runs each once (--benchmark-disable); ``make bench`` times them and prints the
rate with the machine next to the number.
"""

from __future__ import annotations

import asyncio
import random
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from multigres._cy.pgvalue import AggKind, RowView
from multigres.gateway.engine.aggregate import AggDef, Aggregate
from multigres.gateway.engine.limit import Limit
from multigres.gateway.engine.merge_sort import MergeSort, OrderKey
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.route import LimitSlot, Opcode, Route, Value
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner.templates import Template
from multigres.vschema.shardmap import ShardMap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import report_per_op

SHARDS = ["-40", "40-80", "80-c0", "c0-"]
PER_SHARD = 25_000
TOTAL = PER_SHARD * len(SHARDS)


def datarow(values: Sequence[bytes | None]) -> bytes:
    out = [struct.pack("!h", len(values))]
    for v in values:
        out.append(struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v)
    return b"".join(out)


def _sorted_shards() -> list[Result]:
    rnd = random.Random(7)
    out = []
    for _ in SHARDS:
        rows = sorted(
            ((rnd.randint(0, 19), f"name-{rnd.randint(0, 10**6):07d}".encode(),
              str(rnd.randint(0, 10**6)).encode()) for _ in range(PER_SHARD)),
            key=lambda r: (r[0], r[1]),
        )
        out.append(Result(
            [Field("k", 20), Field("name", 25), Field("v", 23)],
            [datarow([str(k).encode(), n, v]) for k, n, v in rows],
            b"SELECT %d" % PER_SHARD,
        ))
    return out


def _partial_shards() -> list[Result]:
    rnd = random.Random(11)
    out = []
    for _ in SHARDS:
        rows = [datarow([str(rnd.randint(0, 999)).encode(), str(rnd.randint(1, 9)).encode(),
                         str(rnd.randint(0, 10**6)).encode(),
                         f"{rnd.randint(0, 10**7) / 100:.2f}".encode()])
                for _ in range(PER_SHARD)]
        out.append(Result([Field("g", 20), Field("c", 20), Field("s", 20), Field("n", 1700)],
                          rows, b"SELECT %d" % PER_SHARD))
    return out


class FakeVCursor:
    """Shards that answer with prepared Results (one per shard, in shard order)."""

    def __init__(self, results: list[Result]) -> None:
        self.results = results
        self.map = ShardMap(SHARDS)

    def shard_map(self, tablegroup: str) -> ShardMap:
        return self.map

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        return [self.results[SHARDS.index(q.shard)] for q in queries]


def _route(sql: str) -> Route:
    return Route(Opcode.SCATTER, "commerce", Template(sql))


SORTED = FakeVCursor(_sorted_shards())
PARTIALS = FakeVCursor(_partial_shards())
MERGE = Limit(
    MergeSort(_route("SELECT k, name, v FROM t ORDER BY k, name LIMIT $2"),
              (OrderKey(0), OrderKey(1)), LimitSlot(2, Value(param=1), None)),
    Value(param=1), None,
)
AGG = Aggregate(
    _route("SELECT g, count(*), sum(x), sum(n) FROM t GROUP BY 1"), 1,
    (AggDef(AggKind.COUNT, 1, "count"), AggDef(AggKind.SUM, 2, "sum"),
     AggDef(AggKind.SUM, 3, "sum")),
)
LOOP = asyncio.new_event_loop()


def merge_all() -> int:
    return len(LOOP.run_until_complete(MERGE.execute(SORTED, [str(TOTAL), ""])).rows)


def merge_limit_100() -> int:
    return len(LOOP.run_until_complete(MERGE.execute(SORTED, ["100", ""])).rows)


def aggregate() -> int:
    return len(LOOP.run_until_complete(AGG.execute(PARTIALS, [])).rows)


WORKLOADS: dict[str, tuple[Callable[[], int], int, int]] = {
    "ORDER BY k, name LIMIT all over 4 shards (rows through the merge)": (
        merge_all, TOTAL, TOTAL),
    "ORDER BY k, name LIMIT 100 over 4 shards of 25,000 rows (rows returned)": (
        merge_limit_100, 100, 100),
    "GROUP BY g: count, sum(int), sum(numeric) over 4 shards (partial rows)": (
        aggregate, TOTAL, 1000),
}


def test_merge_is_in_order() -> None:
    rows = LOOP.run_until_complete(MERGE.execute(SORTED, [str(TOTAL), ""])).rows
    keys = [(int(RowView(p)[0] or b"0"), RowView(p)[1]) for p in rows]
    assert keys == sorted(keys)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_merge_bench(benchmark: Any, capsys: pytest.CaptureFixture[str], name: str) -> None:
    fn, ops, expected = WORKLOADS[name]

    assert benchmark(fn) == expected
    report_per_op(benchmark, capsys, name, ops, "row")
