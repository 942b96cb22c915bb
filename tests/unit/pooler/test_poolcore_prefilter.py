"""The C pre-filter of session effects (pyx/poolcore.pyx) against the analysis it guards.

The pooler skips the session-effect analysis of a simple Query when the pre-filter says no; a
wrong "no" would let a SET or LISTEN go unseen, so it must say yes wherever
multigres.sql.session.session_effects finds an effect."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from multigres._cy.poolcore import may_have_effects_bytes
from multigres.sql.session import session_effects

WORDS = ["set", "reset", "discard", "listen", "unlisten", "prepare", "deallocate", "declare",
         "close", "temp", "temporary", "load", "drop", "savepoint", "rollback", "abort",
         "release", "chain", "pg_temp", "advisory", "set_config", "select", "from", "where",
         "offset", "asset", "reset_val", "pg_try_advisory_lock", "x", "1", "_", "\u0130", "K",
         "create", "commit", "end", "cursor", "hold", "pg_advisory_lock(", "session",
         "authorization", "into", "table", "update"]
SEPARATORS = [" ", "", "\n", "(", ")", ".", ";", "_", "'", '"', "--", "/*", "*/", "1", "é",
              "; ", " and ", " to ", "=", " all", " with hold for ", "\t", "$$"]


def test_effects_are_seen() -> None:
    for sql in ["SET search_path TO x", "reset all", "UNLISTEN *", "listen chan",
                "select pg_advisory_lock(1)", "SELECT pg_try_advisory_lock(2)",
                "create TEMP table t (a int)", "create temporary table t()",
                "select * into temp t from x", "select set_config('a', 'b', false)",
                "create table pg_temp.t()", "DISCARD ALL", "prepare p as select 1",
                "DEALLOCATE p", "declare c cursor with hold for select 1", "CLOSE c",
                "LOAD 'x'", "drop table t", "SAVEPOINT s", "ROLLBACK", "abort", "release s",
                "commit and chain", "select 1;set x=1", "select 1;\n  SET x=1",
                "/* c */ SET x = 1", "-- c\nset x = 1", "\tset x to 1", "select 1;  reset x"]:
        assert may_have_effects_bytes(sql.encode()), sql


def test_plain_queries_pass() -> None:
    for sql in ["SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
                "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;",
                "select * from t order by a offset 10", "ALTER TABLE t ALTER a SET NOT NULL",
                "INSERT INTO orders VALUES (1, 2)", "select 1", ""]:
        assert not may_have_effects_bytes(sql.encode()), sql


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8),
       st.booleans())
def test_never_rejects_what_the_regex_matches(parts: list[tuple[str, str]], upper: bool) -> None:
    sql = "".join(w + s for w, s in parts)
    if upper:
        sql = sql.upper()
    if session_effects(sql):
        assert may_have_effects_bytes(sql.encode()), sql


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=60))
def test_never_rejects_random_text(sql: str) -> None:
    if session_effects(sql) and sql.isascii() and not any("\x1c" <= c <= "\x1f" for c in sql):
        # (Python's IGNORECASE folds a few non-ASCII letters into ASCII ones, the long s and
        # the Kelvin sign, and str.split() takes \x1c-\x1f for blanks: Postgres does neither,
        # such a word is no keyword for it.)
        assert may_have_effects_bytes(sql.encode()), sql
