"""The C pre-filter of session effects (pyx/poolcore.pyx) against the regex it stands in for.

The pooler skips the session-effect analysis of a simple Query when the pre-filter says no; a
wrong "no" would let a SET or LISTEN go unseen, so it must say yes wherever
multigres.sql.session's _MAYBE matches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from multigres._cy.poolcore import may_have_effects_bytes
from multigres.sql.session import _MAYBE

WORDS = ["set", "reset", "discard", "listen", "unlisten", "prepare", "deallocate", "declare",
         "close", "temp", "temporary", "load", "drop", "savepoint", "rollback", "abort",
         "release", "chain", "pg_temp", "advisory", "set_config", "select", "from", "where",
         "offset", "asset", "reset_val", "pg_try_advisory_lock", "x", "1", "_", "\u0130", "K"]
SEPARATORS = [" ", "", "\n", "(", ")", ".", ";", "_", "'", '"', "--", "/*", "*/", "1", "é"]


def test_effects_are_seen() -> None:
    for sql in ["SET search_path TO x", "reset all", "UNLISTEN *", "listen chan",
                "select pg_advisory_lock(1)", "SELECT pg_try_advisory_lock(2)",
                "create TEMP table t (a int)", "create temporary table t()",
                "select * into temp t from x", "select set_config('a', 'b', false)",
                "create table pg_temp.t()", "DISCARD ALL", "prepare p as select 1",
                "DEALLOCATE p", "declare c cursor with hold for select 1", "CLOSE c",
                "LOAD 'x'", "drop table t", "SAVEPOINT s", "ROLLBACK", "abort", "release s",
                "commit and chain", "select 1;set x=1"]:
        assert may_have_effects_bytes(sql.encode()), sql


def test_plain_queries_pass() -> None:
    for sql in ["SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
                "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1"[:21],
                "INSERT INTO orders VALUES (1, 2)", "select 1", ""]:
        assert not may_have_effects_bytes(sql.encode()), sql


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8),
       st.booleans())
def test_never_rejects_what_the_regex_matches(parts: list[tuple[str, str]], upper: bool) -> None:
    sql = "".join(w + s for w, s in parts)
    if upper:
        sql = sql.upper()
    if any(m.group().isascii() for m in _MAYBE.finditer(sql)):
        assert may_have_effects_bytes(sql.encode()), sql


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=60))
def test_never_rejects_random_text(sql: str) -> None:
    # Postgres folds only ASCII letters in keywords: a match through a non-ASCII letter that
    # Python's IGNORECASE folds (the long s, the Kelvin sign) is no keyword for Postgres.
    if any(m.group().isascii() for m in _MAYBE.finditer(sql)):
        assert may_have_effects_bytes(sql.encode()), sql
