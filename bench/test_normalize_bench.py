"""Micro-benchmark: the per-statement path of the gateway before execution.

Workloads, each timed over a batch of 1000 calls in one thread:
- normalize pgbench's SELECT (``SELECT abalance FROM pgbench_accounts WHERE aid = 12345;``),
  a different aid each time as a client sends it;
- normalize a 1 KB statement (a join with a dozen predicates, strings, an IN list, comments);
- the plan-cache hit path: normalize pgbench's SELECT + ``PlanCache.get`` on a cache holding
  1000 plans (the issue's target: at most 3 microseconds);
- for scale: pglast parsing the same SELECT, what a cache miss costs on top (skipped when
  pglast is not installed).

``make test`` runs each once as a test (--benchmark-disable); ``make bench`` times them and
prints the time per statement with the machine next to the number.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multigres.sql.normalize import normalize
from multigres.sql.plancache import PlanCache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import report_per_op

BATCH = 1000
PGBENCH_SELECT = [
    b"SELECT abalance FROM pgbench_accounts WHERE aid = %d;" % (1 + i * 7919 % 1_000_000)
    for i in range(BATCH)
]
LONG = (
    b"/* app: report */ SELECT o.id, o.created_at, c.name, c.email, sum(l.qty * l.price) AS "
    b"total, count(*) AS lines FROM orders o JOIN customers c ON c.id = o.customer_id "
    b"JOIN order_lines l ON l.order_id = o.id LEFT JOIN coupons cp ON cp.id = o.coupon_id "
    b"WHERE o.tenant_id = 42 AND o.status IN ('paid', 'shipped', 'delivered') AND "
    b"o.created_at >= '2024-01-01' AND o.created_at < now() - interval '1 hour' -- recent\n"
    b"AND c.country = 'FR' AND c.email NOT LIKE '%@example.com' AND l.price > 9.99 AND "
    b"l.sku = ANY('{\"A-1\",\"B-2\",\"C-3\"}'::text[]) AND (cp.code IS NULL OR cp.code <> "
    b"E'NO\\tCODE') AND o.id NOT IN (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377) "
    b"AND o.region_id = 7 AND o.channel = 'web' AND o.currency = 'EUR' AND o.amount "
    b"BETWEEN 10 AND 10000 AND o.weight_kg < 30.5 AND o.carrier NOT IN ('slowpost', 'later') "
    b"AND c.created_at > date '2020-06-01' AND c.segment = $$premium$$ AND o.amount "
    b"BETWEEN 10 AND 10000 GROUP BY o.id, o.created_at, c.name, c.email HAVING count(*) > 1 "
    b"ORDER BY total DESC, o.id LIMIT 50 OFFSET 100"
)
assert 950 <= len(LONG) <= 1100, len(LONG)

CACHE: PlanCache[object] = PlanCache(max_entries=5000)
for _i in range(BATCH - 1):
    CACHE.put(b"SELECT abalance FROM pgbench_accounts_%d WHERE aid = $1" % _i, object())
CACHE.put(normalize(PGBENCH_SELECT[0]).text, object())


def normalize_pgbench() -> int:
    return sum(normalize(q).n_params for q in PGBENCH_SELECT)


def normalize_long() -> int:
    return sum(normalize(LONG).n_params for _ in range(BATCH))


def hit_path() -> int:
    get = CACHE.get
    hits = 0
    for q in PGBENCH_SELECT:
        if get(normalize(q).text) is not None:
            hits += 1
    return hits


def pglast_parse() -> int:
    from pglast import parser

    return sum(len(parser.parse_sql(q.decode())) for q in PGBENCH_SELECT[:100]) * 10


# name -> (function, statements per call, expected result)
WORKLOADS: dict[str, tuple[Callable[[], int], int, int]] = {
    "normalize pgbench SELECT": (normalize_pgbench, BATCH, BATCH),
    "normalize 1 KB statement": (normalize_long, BATCH, normalize(LONG).n_params * BATCH),
    "hit path: normalize + PlanCache.get": (hit_path, BATCH, BATCH),
    "miss cost for scale: pglast parse": (pglast_parse, 100, BATCH),
}


def test_workloads_are_what_they_say() -> None:
    n = normalize(PGBENCH_SELECT[0])
    assert n.text == b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    long = normalize(LONG)
    assert long.n_params >= 20
    assert b"ORDER BY total DESC, o.id LIMIT $" in long.text


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_normalize(benchmark: Any, capsys: pytest.CaptureFixture[str], name: str) -> None:
    fn, ops, expected = WORKLOADS[name]
    if "pglast" in name:
        pytest.importorskip("pglast")

    assert benchmark(fn) == expected
    report_per_op(benchmark, capsys, name, ops, "statement")
