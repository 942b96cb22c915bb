"""multigres.sql.session: what a statement does to session state, as a pooler must know."""

from __future__ import annotations

import pytest

from multigres.sql.session import (
    CONFIG_VALUE,
    TRANSACTIONAL,
    TX_CONTROL,
    Effect,
    Kind,
    session_effects,
)

E = Effect


@pytest.mark.parametrize(("sql", "effects"), [
    # Ordinary statements: nothing (most are rejected by the pre-filter).
    ("SELECT 1", []),
    ("SELECT * FROM t WHERE x = 'set'", []),
    ("INSERT INTO settings VALUES (1)", []),
    ("UPDATE t SET x = 1", []),
    ("SELECT pg_advisory_xact_lock(1)", []),
    ("COMMIT", []),
    ("ROLLBACK PREPARED 'gid'", []),
    ("COMMIT AND NO CHAIN", []),
    # Settings.
    ("SET work_mem = '8MB'", [E(Kind.SET, "work_mem", "'8MB'")]),
    ("set Work_Mem to 8000", [E(Kind.SET, "work_mem", "8000")]),
    ("SET SESSION search_path TO a, b", [E(Kind.SET, "search_path", "a, b")]),
    ("SET myapp.key = 'v'", [E(Kind.SET, "myapp.key", "'v'")]),
    ('SET "MyApp".key = 1', [E(Kind.SET, "MyApp.key", "1")]),
    ("SET TIME ZONE 'UTC'", [E(Kind.SET, "timezone", "'UTC'")]),
    ("SET ROLE reader", [E(Kind.SET, "role", "reader")]),
    ("SET ROLE NONE", [E(Kind.RESET, "role")]),
    ("SET SESSION AUTHORIZATION alice", [E(Kind.SET, "session_authorization", "alice")]),
    ("SET SESSION AUTHORIZATION DEFAULT", [E(Kind.RESET, "session_authorization")]),
    ("SET work_mem TO DEFAULT", [E(Kind.RESET, "work_mem")]),
    ("SET LOCAL work_mem = '1MB'", []),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", []),
    ("SET CONSTRAINTS ALL DEFERRED", []),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
     [E(Kind.SET, "default_transaction_read_only", "on")]),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL  REPEATABLE READ,"
     " NOT DEFERRABLE", [E(Kind.SET, "default_transaction_isolation", "'repeatable read'"),
                         E(Kind.SET, "default_transaction_deferrable", "off")]),
    ("SET work_mem FROM CURRENT", [E(Kind.UNTRACKED)]),
    ("SELECT set_config('work_mem', '1MB', false)",
     [E(Kind.SET, "work_mem", CONFIG_VALUE + "'1MB'")]),
    ("SELECT set_config('Search_Path', 'a, b', false), set_config('x.y', 'it''s', true)",
     [E(Kind.SET, "search_path", CONFIG_VALUE + "'a, b'")]),
    ("SELECT set_config('work_mem', '1MB', true)", []),
    ("SELECT set_config('work_mem', $1, false)", [E(Kind.UNTRACKED)]),
    ("SELECT set_config(name, setting, false) FROM t", [E(Kind.UNTRACKED)]),
    ("RESET work_mem", [E(Kind.RESET, "work_mem")]),
    ("RESET TIME ZONE", [E(Kind.RESET, "timezone")]),
    ("RESET SESSION AUTHORIZATION", [E(Kind.RESET, "session_authorization")]),
    ("RESET ALL", [E(Kind.RESET_ALL)]),
    ("DISCARD ALL", [E(Kind.DISCARD_ALL)]),
    ("DISCARD TEMP", [E(Kind.DISCARD_TEMP)]),
    ("LOAD 'auto_explain'", [E(Kind.UNTRACKED)]),
    # State that pins.
    ("LISTEN chan", [E(Kind.LISTEN, "chan")]),
    ('LISTEN "Chan"', [E(Kind.LISTEN, "Chan")]),
    ("UNLISTEN chan", [E(Kind.UNLISTEN, "chan")]),
    ("UNLISTEN *", [E(Kind.UNLISTEN_ALL)]),
    ("PREPARE q(int) AS SELECT $1", [E(Kind.PREPARE, "q")]),
    ("PREPARE TRANSACTION 'x'", []),
    ("DEALLOCATE q", [E(Kind.DEALLOCATE, "q")]),
    ("DEALLOCATE PREPARE q", [E(Kind.DEALLOCATE, "q")]),
    ("DEALLOCATE ALL", [E(Kind.DEALLOCATE_ALL)]),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", [E(Kind.DECLARE_HOLD, "c")]),
    ("DECLARE c BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1", [E(Kind.DECLARE_HOLD, "c")]),
    ("DECLARE c CURSOR FOR SELECT 1", []),
    ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", []),
    ("CLOSE c", [E(Kind.CLOSE, "c")]),
    ("CLOSE ALL", [E(Kind.CLOSE_ALL)]),
    ("CREATE TEMP TABLE t (x int)", [E(Kind.TEMP_OBJECT)]),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", [E(Kind.TEMP_OBJECT)]),
    ("CREATE TABLE pg_temp.t (x int)", [E(Kind.TEMP_OBJECT)]),
    ("SELECT 1 INTO TEMP t", [E(Kind.TEMP_OBJECT)]),
    ("SELECT 1 AS x INTO TEMPORARY TABLE t", [E(Kind.TEMP_OBJECT)]),
    ("SELECT pg_advisory_lock(1)", [E(Kind.ADVISORY_LOCK)]),
    ("SELECT pg_advisory_lock_shared(1, 2)", [E(Kind.ADVISORY_LOCK)]),
    ("SELECT pg_try_advisory_lock(1)", [E(Kind.ADVISORY_LOCK, "try")]),
    ("SELECT pg_advisory_unlock(1)", [E(Kind.ADVISORY_UNLOCK)]),
    ("SELECT pg_advisory_unlock_all()", [E(Kind.ADVISORY_UNLOCK_ALL)]),
    ("DROP TABLE t", [E(Kind.DROP)]),
    # Transaction control.
    ("ROLLBACK", [E(Kind.ROLLBACK)]),
    ("ABORT", [E(Kind.ROLLBACK)]),
    ("ROLLBACK AND CHAIN", [E(Kind.ROLLBACK)]),
    ("SAVEPOINT s1", [E(Kind.SAVEPOINT, "s1")]),
    ("RELEASE SAVEPOINT s1", [E(Kind.RELEASE, "s1")]),
    ("RELEASE s1", [E(Kind.RELEASE, "s1")]),
    ("ROLLBACK TO s1", [E(Kind.ROLLBACK_TO, "s1")]),
    ('ROLLBACK WORK TO SAVEPOINT "S1"', [E(Kind.ROLLBACK_TO, "S1")]),
    ("COMMIT AND CHAIN", [E(Kind.COMMIT_AND_CHAIN)]),
    ("END TRANSACTION AND CHAIN", [E(Kind.COMMIT_AND_CHAIN)]),
])
def test_statement_effects(sql: str, effects: list[Effect]) -> None:
    assert session_effects(sql) == effects


def test_several_statements_in_order() -> None:
    sql = "BEGIN; SET a.b = 1; SAVEPOINT s; -- SET x = 2;\nRESET a.b; /* LISTEN x */ COMMIT"
    assert session_effects(sql) == [
        E(Kind.SET, "a.b", "1"), E(Kind.SAVEPOINT, "s"), E(Kind.RESET, "a.b")]


def test_comments_are_not_part_of_values() -> None:
    assert session_effects("SET work_mem = '8MB' -- note") == [
        E(Kind.SET, "work_mem", "'8MB'")]
    assert session_effects("SET search_path = a /* b */, c") == [
        E(Kind.SET, "search_path", "a  , c")]
    assert session_effects("SET x.y = '--not a comment' /* c */") == [
        E(Kind.SET, "x.y", "'--not a comment'")]
    assert session_effects(r"SET x.y = E'it\'s' -- c") == [E(Kind.SET, "x.y", r"E'it\'s'")]


def test_strings_and_comments_hide_statements() -> None:
    assert session_effects("SELECT 'SET x = 1; LISTEN y'") == []
    assert session_effects("SELECT $$; SET x = 1$$") == []
    assert session_effects("SELECT 1 -- ; SET x = 1") == []
    assert session_effects('SELECT "set"."listen" FROM x') == []


def test_kinds_are_classified() -> None:
    # Every kind is transactional, transaction control, or immediate; never two.
    assert not TRANSACTIONAL & TX_CONTROL
    immediate = set(Kind) - TRANSACTIONAL - TX_CONTROL
    assert Kind.PREPARE in immediate and Kind.ADVISORY_LOCK in immediate
    assert Kind.SET in TRANSACTIONAL and Kind.ROLLBACK in TX_CONTROL
