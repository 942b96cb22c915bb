"""pgctld against real Postgres: replication, durability policy, promote and rewind."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from multigres.pgctld.config import Durability
from multigres.pgctld.instance import PgInstance
from multigres.testing.postgres import PgHarness, wait_for

pytestmark = pytest.mark.integration


def _rows(inst: PgInstance, sql: str) -> list[tuple[object, ...]]:
    with inst.connect() as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def shard(pg_harness: PgHarness) -> tuple[PgInstance, list[PgInstance]]:
    return pg_harness.shard(replicas=2, num_sync=1, prefix="repl")


def test_commit_on_primary_is_visible_on_both_replicas(
    shard: tuple[PgInstance, list[PgInstance]],
) -> None:
    primary, replicas = shard
    with primary.connect() as conn:
        conn.execute("CREATE TABLE visible (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO visible SELECT g, 'row ' || g FROM generate_series(1, 100) g")
    for rep in replicas:
        got = wait_for(
            lambda rep=rep: _rows(rep, "SELECT count(*), max(note) FROM visible")
            if _table_exists(rep, "visible") else None
        )
        assert got == [(100, "row 99")]


def _table_exists(inst: PgInstance, name: str) -> bool:
    return bool(_rows(inst, f"SELECT to_regclass('{name}') IS NOT NULL")[0][0])


def test_primary_reports_policy_and_streaming_replicas(
    shard: tuple[PgInstance, list[PgInstance]],
) -> None:
    primary, replicas = shard
    st = primary.status()
    assert st.role == "primary"
    assert st.synchronous_standby_names == 'ANY 1 (repl-r1, repl-r2)'.replace(
        "repl-r1", '"repl-r1"').replace("repl-r2", '"repl-r2"')
    assert sorted(r["name"] for r in st.replicas if r["state"] == "streaming") == [
        r.spec.name for r in replicas
    ]
    assert {r["sync_state"] for r in st.replicas} == {"quorum"}
    for rep in replicas:
        rst = rep.status()
        assert rst.role == "replica"
        assert rst.upstream == f"127.0.0.1:{primary.spec.port}"
    with replicas[0].connect() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE nope (x int)")


def test_commit_waits_for_a_replica_under_the_policy(pg_harness: PgHarness) -> None:
    primary, (replica,) = pg_harness.shard(replicas=1, num_sync=1, prefix="sync")
    with primary.connect() as conn:
        conn.execute("CREATE TABLE acked (id int)")
    replica.stop()
    done = threading.Event()
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            with primary.connect() as conn:
                conn.execute("INSERT INTO acked VALUES (1)")
            done.set()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    # With no replica connected, the commit must not be acknowledged.
    assert not done.wait(1.5), "commit was acknowledged with no replica to hold its WAL"
    with primary.connect() as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        ).fetchone()
    assert waiting == (1,)
    replica.start()
    assert done.wait(30), "commit did not complete after the replica came back"
    t.join(5)
    assert not errors
    assert wait_for(lambda: _rows(replica, "SELECT count(*) FROM acked") == [(1,)])


def test_asynchronous_without_policy(pg_harness: PgHarness) -> None:
    primary, (replica,) = pg_harness.shard(replicas=1, num_sync=0, prefix="async")
    replica.stop()
    t0 = time.monotonic()
    with primary.connect() as conn:
        conn.execute("CREATE TABLE quick (id int)")
        conn.execute("INSERT INTO quick VALUES (1)")
    assert time.monotonic() - t0 < 5
    primary.set_durability(Durability(1, [replica.spec.name]))
    assert primary.status().synchronous_standby_names == "ANY 1 (\"async-r1\")"
    primary.set_durability(None)
    assert primary.status().synchronous_standby_names == ""


def test_promote_and_rewind(pg_harness: PgHarness) -> None:
    old, (new, other) = pg_harness.shard(replicas=2, num_sync=0, prefix="failover")
    with old.connect() as conn:
        conn.execute("CREATE TABLE history (id int, origin text)")
        conn.execute("INSERT INTO history VALUES (1, 'before')")
    wait_for(lambda: all(_table_exists(r, "history") and
                         _rows(r, "SELECT count(*) FROM history") == [(1,)] for r in (new, other)))
    # The primary dies; both replicas have everything it sent.
    old.stop()
    wait_for(lambda: _replay_lsn(new) == _replay_lsn(other))
    new.promote()
    assert new.status().role == "primary"
    other.follow(new.endpoint())
    # The old primary comes back on its own and takes a write the new one never sees:
    # its history diverges (split brain), which pg_rewind must undo.
    old.start()
    with old.connect() as conn:
        conn.execute("INSERT INTO history VALUES (2, 'lost on the old primary')")
    with new.connect() as conn:
        conn.execute("INSERT INTO history VALUES (3, 'after')")
    old.rewind(new.endpoint())
    st = old.status()
    assert st.role == "replica"
    assert st.upstream == f"127.0.0.1:{new.spec.port}"
    new.wait_replicas_streaming([old.spec.name, other.spec.name], timeout=30)
    expect = [(1, "before"), (3, "after")]
    for rep in (old, other):
        assert wait_for(
            lambda rep=rep: _rows(rep, "SELECT * FROM history ORDER BY id") == expect
        )
    assert st.timeline == new.status().timeline == 2


def _replay_lsn(inst: PgInstance) -> object:
    return _rows(inst, "SELECT pg_last_wal_replay_lsn()")[0][0]
