"""Plans: one parse per normalized statement and database; the rest are cache hits."""

from __future__ import annotations

from multigres._cy.gatescan import scan_client
from multigres.gateway.plan import UNSHARDED, Planner
from multigres.sql.normalize import StatementKind
from multigres.wire.protocol import build_query


def test_literals_share_a_plan() -> None:
    p = Planner()
    a = p.plan(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1", "db")
    b = p.plan(b"SELECT abalance FROM pgbench_accounts WHERE aid = 2", "db")
    assert a is not None and a is b
    assert a.kind is StatementKind.READ and a.route == UNSHARDED
    assert a.tables == ("pgbench_accounts",)
    assert (p.cache.misses, p.cache.hits) == (1, 1)
    p.plan(b"SELECT abalance FROM pgbench_accounts WHERE aid = 3", "other")
    assert p.cache.misses == 2  # per database


def test_kinds_tables_and_errors() -> None:
    p = Planner()
    w = p.plan(b"UPDATE s.t SET v = v + 1 FROM u WHERE t.id = u.id", "db")
    assert w is not None and w.kind is StatementKind.WRITE and w.tables == ("s.t", "u")
    bad = p.plan(b"SELEC 1", "db")
    assert bad is not None and "syntax error" in bad.error  # Postgres will answer it
    assert p.plan(b"SELECT 'unterminated", "db") is None


def test_the_fast_path_needs_a_cached_plan() -> None:
    p = Planner()
    q = build_query("SELECT 1 + 1")
    assert scan_client(q, p.cache, "db") == -1  # a miss: the session plans it
    assert p.cache.misses == 0  # (and counts it then, once)
    p.plan(b"SELECT 1 + 1", "db")
    assert p.cache.misses == 1
    assert scan_client(q, p.cache, "db") == 1
    assert scan_client(build_query("SELECT 1 + 7"), p.cache, "db") == 1  # same plan
    assert scan_client(q, p.cache, "elsewhere") == -1
    assert scan_client(build_query("SELECT 'open"), p.cache, "db") == -1
