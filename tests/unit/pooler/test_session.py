"""multigres.pooler.session: a client's settings and pins, the open transaction's effects, and
the SQL that makes a backend match a client."""

from __future__ import annotations

import pytest

from multigres.pooler.session import (
    UNKNOWN,
    SessionState,
    Transaction,
    effective_settings,
    reset_fixups,
    settings_diff,
    startup_settings,
    touched_settings,
)
from multigres.sql.session import CONFIG_VALUE, Effect, Kind, session_effects

E = Effect
IDLE, T, F = ord("I"), ord("T"), ord("E")


# -- startup parameters -----------------------------------------------------------------------


def test_startup_settings() -> None:
    params = {
        "user": "u", "database": "d", "application_name": "app",
        "options": r"-c work_mem=7MB --search-path=a,b -c x.y=it\'s\ here",
        "DateStyle": "ISO",
    }
    assert startup_settings(params) == {
        "application_name": "'app'",
        "datestyle": "'ISO'",
        "work_mem": "'7MB'",
        "search_path": "'a,b'",
        "x.y": "'it''s here'",
    }


# -- settings_diff ----------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "wanted", "sql"), [
    ({}, {}, ""),
    ({"work_mem": "'8MB'"}, {"work_mem": "'8MB'"}, ""),
    ({}, {"work_mem": "'8MB'"}, "SET work_mem TO '8MB'"),
    ({"work_mem": "'8MB'"}, {}, "RESET work_mem"),
    ({"timezone": "'UTC'"}, {"timezone": "'Asia/Tokyo'"}, "SET TIME ZONE 'Asia/Tokyo'"),
    ({}, {"MyApp.Key": "1"}, 'SET "MyApp"."Key" TO 1'),
    # A value set with set_config is set again with set_config.
    ({}, {"search_path": CONFIG_VALUE + "'a, b'"},
     "SELECT pg_catalog.set_config('search_path', 'a, b', false)"),
    # Session authorization first, and it resets the role: the role is set again.
    ({"role": "r"}, {"session_authorization": "alice", "role": "r"},
     "SET SESSION AUTHORIZATION alice;\nSET ROLE r"),
    ({"session_authorization": "alice", "role": "r"}, {},
     "RESET SESSION AUTHORIZATION;\nRESET ROLE"),
    ({"a": "1", "b": "2"}, {"b": "3", "c": "4"}, "RESET a;\nSET b TO 3;\nSET c TO 4"),
    # A value the pooler lost track of is set again, or reset.
    ({"work_mem": UNKNOWN}, {"work_mem": "'8MB'"}, "SET work_mem TO '8MB'"),
    ({"work_mem": UNKNOWN}, {}, "RESET work_mem"),
])
def test_settings_diff(current: dict[str, str], wanted: dict[str, str], sql: str) -> None:
    assert settings_diff(current, wanted) == sql


# -- SessionState.apply -----------------------------------------------------------------------


def _session(**base: str) -> SessionState:
    return SessionState(base=dict(base))


def _apply(s: SessionState, sql: str) -> bool:
    return s.apply(session_effects(sql))


def test_set_and_reset_to_startup_values() -> None:
    s = _session(work_mem="'7MB'")
    _apply(s, "SET work_mem = '20MB'")
    _apply(s, "SET search_path = a")
    assert s.settings == {"work_mem": "'20MB'", "search_path": "a"}
    v = s.version
    _apply(s, "RESET work_mem")
    assert s.settings == {"work_mem": "'7MB'", "search_path": "a"}
    assert s.version == v + 1
    _apply(s, "RESET search_path")
    assert s.settings == {"work_mem": "'7MB'"}
    _apply(s, "SET work_mem TO DEFAULT")
    assert s.settings == {"work_mem": "'7MB'"}


def test_reset_all_keeps_role_and_session_authorization() -> None:
    s = _session(application_name="'app'")
    _apply(s, "SET SESSION AUTHORIZATION alice")
    _apply(s, "SET ROLE reader")
    _apply(s, "SET work_mem = '9MB'")
    _apply(s, "RESET ALL")
    assert s.settings == {"application_name": "'app'", "session_authorization": "alice",
                          "role": "reader"}


def test_session_authorization_resets_role() -> None:
    s = _session()
    _apply(s, "SET ROLE reader")
    _apply(s, "SET SESSION AUTHORIZATION bob")
    assert s.settings == {"session_authorization": "bob"}
    _apply(s, "SET ROLE writer")
    _apply(s, "RESET SESSION AUTHORIZATION")
    assert s.settings == {}
    _apply(s, "SET ROLE reader")
    _apply(s, "SET ROLE NONE")
    assert s.settings == {}


def test_discard_all_resets_everything() -> None:
    s = _session(work_mem="'7MB'")
    for sql in ("SET SESSION AUTHORIZATION alice", "SET work_mem = '1MB'", "LISTEN c",
                "CREATE TEMP TABLE t (x int)", "SELECT pg_advisory_lock(1)",
                "PREPARE p AS SELECT 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1"):
        _apply(s, sql)
    assert s.pinned
    assert _apply(s, "DISCARD ALL") is True
    assert s.settings == {"work_mem": "'7MB'"}
    assert not s.pinned and s.pin_reasons() == []


@pytest.mark.parametrize(("pin", "unpin"), [
    ("LISTEN a", "UNLISTEN a"),
    ("LISTEN a", "UNLISTEN *"),
    ("CREATE TEMP TABLE t (x int)", "DISCARD TEMP"),
    ("SELECT pg_advisory_lock(1)", "SELECT pg_advisory_unlock_all()"),
    ("PREPARE p AS SELECT 1", "DEALLOCATE p"),
    ("PREPARE p AS SELECT 1", "DEALLOCATE ALL"),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "CLOSE c"),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "CLOSE ALL"),
])
def test_pins(pin: str, unpin: str) -> None:
    s = _session()
    _apply(s, pin)
    assert s.pinned
    _apply(s, unpin)
    assert not s.pinned


def test_failed_message_applies_pins_not_unpins() -> None:
    s = _session()
    s.apply(session_effects("PREPARE p AS SELECT 1"), failed=True)
    assert s.pinned
    s.apply(session_effects("DEALLOCATE p"), failed=True)
    assert s.pinned


@pytest.mark.parametrize(("sql", "failed", "pinned_before", "probe"), [
    ("SELECT 1", False, False, False),
    ("SELECT pg_advisory_lock(1)", False, False, False),
    ("SELECT pg_advisory_lock(1)", True, False, True),
    ("SELECT pg_try_advisory_lock(1)", False, False, True),
    ("SELECT pg_advisory_unlock(1)", False, False, False),
    ("SELECT pg_advisory_unlock(1)", False, True, True),
    ("DROP TABLE t", False, False, False),
    ("DROP TABLE t", False, True, True),
    ("PREPARE p AS SELECT 1", True, False, True),
    ("SET work_mem = 1", True, False, False),
])
def test_needs_probe(sql: str, failed: bool, pinned_before: bool, probe: bool) -> None:
    s = _session()
    if pinned_before:
        s.advisory_locks = s.temp_objects = True
    assert s.needs_probe(session_effects(sql), failed) is probe


def test_apply_probe() -> None:
    s = _session()
    _apply(s, "LISTEN a")
    _apply(s, "SELECT pg_advisory_lock(1)")
    s.apply_probe([0, 0, 0, 0, 1])
    assert s.pin_reasons() == ["LISTEN"]
    s.apply_probe([2, 1, 1, 1, 0])
    assert s.pin_reasons() == ["temporary objects", "session advisory lock", "SQL PREPARE",
                               "WITH HOLD cursor"]
    s.apply_probe([0, 0, 0, 0, 0])
    assert not s.pinned


# -- RESET on a backend -----------------------------------------------------------------------


def test_reset_fixups() -> None:
    base = {"work_mem": "'7MB'", "application_name": "'app'"}
    assert reset_fixups(session_effects("RESET work_mem"), base) == {"work_mem"}
    assert reset_fixups(session_effects("RESET search_path"), base) == set()
    assert reset_fixups(session_effects("RESET ALL"), base) == {"work_mem", "application_name"}
    assert reset_fixups(session_effects("DISCARD ALL"), {}) == set()
    # A SET after the RESET in the same message: the backend has what the client has.
    assert reset_fixups(session_effects("RESET ALL; SET work_mem = 1"), base) == {
        "application_name"}


def test_effective_settings_and_touched() -> None:
    s = _session(work_mem="'7MB'")
    _apply(s, "SET work_mem = '9MB'")
    pending = session_effects("RESET work_mem; SET a.b = 1")
    assert effective_settings(s, pending) == {"work_mem": "'7MB'", "a.b": "1"}
    assert s.settings == {"work_mem": "'9MB'"}
    assert touched_settings(pending, {}) == {"work_mem", "a.b"}
    assert touched_settings(session_effects("RESET ALL"), {"x": "1"}) == {"x"}
    assert touched_settings(session_effects("SET SESSION AUTHORIZATION a"), {}) == {
        "session_authorization", "role"}


# -- Transaction ------------------------------------------------------------------------------


def _run(steps: list[tuple[str, int, bool]]) -> tuple[list[Effect], list[Effect]]:
    """Feed (sql, status after, failed) messages; return all committed and undone effects."""
    tx = Transaction()
    committed: list[Effect] = []
    undone: list[Effect] = []
    for sql, status, failed in steps:
        c, u = tx.on_ready(status, session_effects(sql), failed)
        committed += c
        undone += u
    assert not tx.pending and not tx.failed
    return committed, undone


SET_A = E(Kind.SET, "a.x", "1")
SET_B = E(Kind.SET, "b.x", "2")


@pytest.mark.parametrize(("steps", "committed", "undone"), [
    # Outside a transaction: at once.
    ([("SET a.x = 1", IDLE, False)], [SET_A], []),
    ([("SET a.x = 1; SELECT 1/0", IDLE, True)], [], [SET_A]),
    # COMMIT and ROLLBACK.
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("COMMIT", IDLE, False)], [SET_A], []),
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("ROLLBACK", IDLE, False)], [], [SET_A]),
    ([("BEGIN; SET a.x = 1; ROLLBACK", IDLE, False)], [], [SET_A]),
    # An error, then COMMIT: rolled back.
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("SELECT 1/0", F, True),
      ("COMMIT", IDLE, False)], [], [SET_A]),
    # Savepoints.
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("SAVEPOINT s", T, False),
      ("SET b.x = 2", T, False), ("ROLLBACK TO s", T, False), ("COMMIT", IDLE, False)],
     [SET_A], [SET_B]),
    ([("BEGIN", T, False), ("SAVEPOINT s", T, False), ("SET a.x = 1", T, False),
      ("RELEASE s", T, False), ("COMMIT", IDLE, False)], [SET_A], []),
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("SAVEPOINT s", T, False),
      ("SELECT 1/0", F, True), ("ROLLBACK TO s", T, False), ("COMMIT", IDLE, False)],
     [SET_A], []),
    # A ROLLBACK TO that failed (no such savepoint) recovers nothing.
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("SELECT 1/0", F, True),
      ("ROLLBACK TO s", F, True), ("COMMIT", IDLE, False)], [], [SET_A]),
    # Nested savepoints: rolling back to the outer one undoes both.
    ([("BEGIN", T, False), ("SAVEPOINT s1", T, False), ("SET a.x = 1", T, False),
      ("SAVEPOINT s2", T, False), ("SET b.x = 2", T, False), ("ROLLBACK TO s1", T, False),
      ("COMMIT", IDLE, False)], [], [SET_A, SET_B]),
    # COMMIT AND CHAIN commits what came before; the chained transaction is on its own.
    ([("BEGIN", T, False), ("SET a.x = 1", T, False), ("COMMIT AND CHAIN", T, False),
      ("SET b.x = 2", T, False), ("ROLLBACK", IDLE, False)], [SET_A], [SET_B]),
])
def test_transaction(steps: list[tuple[str, int, bool]], committed: list[Effect],
                     undone: list[Effect]) -> None:
    assert _run(steps) == (committed, undone)
