"""Micro-benchmark: the value layer under the gateway's merges (multigres._cy.pgvalue).

Workloads, each one call timed in one thread over rows prepared beforehand (DataRow payloads
as Postgres sends them in the simple query protocol):
- frame DataRows: ``RowView(payload)`` for 100,000 rows of (int8, text, int4), called from a
  Python loop (the engine calls it from Cython: this is an upper bound);
- k-way merge: ``kway_merge`` of 4 shards x 25,000 framed rows, ORDER BY an int8 column (few
  distinct values, so most comparisons go on) then a text column: the issue's target is
  500,000 rows/s through the merge;
- the same merge including the framing of every DataRow, from Python and as
  ``merge_payloads`` does it (payload runs in, payloads out, each head framed in place: the
  engine's path for ORDER BY ... LIMIT over shards);
- one row comparison (int8 + text key): a 2-way merge costs one comparison per row, so its
  time per row bounds the cost of a comparison from above (target: well under 1 us);
- grouped partial aggregation: ``fold_groups`` over 100,000 partial rows (an int8 group key
  with 1,000 groups; count, sum(int4) and sum(numeric) partials): group key, dict lookup and
  three combines per row (target: 1,000,000 partial rows/s);
- the same from payloads (``fold_groups`` frames them in C: the engine's path);
- ``sort_rows`` of 10,000 shuffled payloads (ORDER BY at the gateway, after a GROUP BY);
- final texts: 10,000 groups' avg(numeric) and sum(float8) finals.

``make test`` runs each once as a test (--benchmark-disable); ``make bench`` times them and
prints the rate with the machine next to the number.
"""

from __future__ import annotations

import itertools
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multigres._cy.pgvalue import (
    OID_FLOAT8,
    OID_INT4,
    OID_INT8,
    OID_NUMERIC,
    OID_TEXT,
    AggKind,
    AggSpec,
    RowView,
    SortKey,
    SortSpec,
    fold_groups,
    kway_merge,
    merge_payloads,
    sort_rows,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import report_per_op

SHARDS = 4
PER_SHARD = 25_000
ROWS = SHARDS * PER_SHARD
GROUPS = 1000
FINALS = 10_000


def datarow(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


_rng = random.Random(5)
SORT = SortSpec([SortKey(0, OID_INT8), SortKey(1, OID_TEXT)])


def _shard_payloads() -> list[list[bytes]]:
    shards = []
    for _ in range(SHARDS):
        rows = sorted(
            (
                _rng.randrange(-(2**40), -(2**40) + 20),
                f"customer-{_rng.randrange(1_000_000):06d}",
            )
            for _ in range(PER_SHARD)
        )
        shards.append([datarow([str(a).encode(), b.encode(), b"42"]) for a, b in rows])
    return shards


PAYLOADS = _shard_payloads()
ALL_PAYLOADS = [p for shard in PAYLOADS for p in shard]
RUNS = [[RowView(p) for p in shard] for shard in PAYLOADS]
PAIR = RUNS[:2]

# Partial rows of a grouped count/sum: (group key, count, sum(int4) as int8, sum(numeric)).
PARTIALS = [
    RowView(
        datarow(
            [
                str(_rng.randrange(GROUPS) * 7919).encode(),
                str(_rng.randrange(1, 500)).encode(),
                str(_rng.randrange(-(10**9), 10**9)).encode(),
                b"%d.%02d" % (_rng.randrange(10**6), _rng.randrange(100)),
            ]
        )
    )
    for _ in range(ROWS)
]
PARTIAL_PAYLOADS = [r.payload() for r in PARTIALS]
SORT_INPUT = [p for shard in PAYLOADS for p in shard[:2500]]
_rng.shuffle(SORT_INPUT)
GROUP_BY = SortSpec([SortKey(0, OID_INT8)])
AGGS = [AggSpec(AggKind.COUNT), AggSpec(AggKind.SUM, OID_INT4), AggSpec(AggKind.SUM, OID_NUMERIC)]
AVG = AggSpec(AggKind.AVG, OID_NUMERIC)
FSUM = AggSpec(AggKind.SUM, OID_FLOAT8)


def frame() -> int:
    n = 0
    for p in ALL_PAYLOADS:
        n += len(RowView(p))
    return n // 3


def merge() -> int:
    return len(kway_merge(SORT, RUNS))


def frame_and_merge() -> int:
    return len(kway_merge(SORT, [[RowView(p) for p in shard] for shard in PAYLOADS]))


def merge_limit() -> int:
    return len(merge_payloads(SORT, PAYLOADS, 0, ROWS))


def compare_pairs() -> int:
    return len(kway_merge(SORT, PAIR))


def fold() -> int:
    groups = fold_groups(PARTIALS, GROUP_BY, AGGS, [1, 2, 3])
    assert len(groups) == GROUPS
    return ROWS


def fold_payloads() -> int:
    groups = fold_groups(PARTIAL_PAYLOADS, GROUP_BY, AGGS, [1, 2, 3])
    assert len(groups) == GROUPS
    return ROWS


def sort() -> int:
    return len(sort_rows(SORT, SORT_INPUT))


def finals() -> int:
    n = 0
    for i in range(FINALS // 2):
        avg = AVG.state()
        avg.combine((b"%d.%03d" % (i * 7919, i % 1000), b"%d" % (i % 97 + 1)))
        fsum = FSUM.state()
        fsum.combine(b"0.1")
        fsum.combine(b"%d.25" % i)
        n += (avg.final() is not None) + (fsum.final() is not None)
    return n


# name -> (function, rows per call, expected result)
WORKLOADS: dict[str, tuple[Callable[[], int], int, int]] = {
    "frame DataRows (RowView from Python)": (frame, ROWS, ROWS),
    "k-way merge, 4 shards, int8 + text key": (merge, ROWS, ROWS),
    "frame + k-way merge, 4 shards": (frame_and_merge, ROWS, ROWS),
    "merge_payloads (framing in C), 4 shards": (merge_limit, ROWS, ROWS),
    "2-way merge (one comparison per row)": (compare_pairs, 2 * PER_SHARD, 2 * PER_SHARD),
    "grouped count + 2 sums, 1000 groups": (fold, ROWS, ROWS),
    "the same from payloads (framing in C)": (fold_payloads, ROWS, ROWS),
    "sort_rows of 10,000 payloads (int8 + text)": (sort, len(SORT_INPUT), len(SORT_INPUT)),
    "finals: avg(numeric) + sum(float8)": (finals, FINALS, FINALS),
}


def test_workloads_are_what_they_say() -> None:
    merged = kway_merge(SORT, RUNS)
    assert all(SORT.compare(a, b) <= 0 for a, b in itertools.pairwise(merged))
    # Ties on the int8 key are the common case: the text key is compared too.
    assert len({r[0] for r in merged}) <= SHARDS * 20
    groups = fold_groups(PARTIALS[:1000], GROUP_BY, AGGS, [1, 2, 3])
    row, states = next(iter(groups.values()))
    assert states[0].final() is not None and row[0] is not None


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_pgvalue(benchmark: Any, capsys: pytest.CaptureFixture[str], name: str) -> None:
    fn, ops, expected = WORKLOADS[name]

    assert benchmark(fn) == expected
    report_per_op(benchmark, capsys, name, ops, "row")
