"""CancelRequest and BackendKeyData: a cancel stops that client's query and nothing else; the
pid a client is told is the one its queries report while it keeps its backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from multigres.testing.pooler import PoolerProcess
from tests.integration.pooler.conftest import later

pytestmark = pytest.mark.integration


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_lone_client_pid_matches_backend_key_data(pooler: PoolerProcess) -> None:
    with pooler.connect() as conn:
        for _ in range(3):
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == (conn.info.backend_pid,)
        with conn.transaction():
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == (conn.info.backend_pid,)


@pytest.mark.parametrize("extended", [False, True])
def test_cancel_stops_own_query_only(pooler: PoolerProcess, extended: bool) -> None:
    with pooler.connect() as a, pooler.connect() as b:
        t, out = _in_thread(lambda: b.execute("SELECT pg_sleep(1.5), 'b done'").fetchone())
        time.sleep(0.2)
        start = time.monotonic()
        with later(0.3, a.cancel_safe), pytest.raises(errors.QueryCanceled) as info:
            if extended:
                a.execute("SELECT pg_sleep(%s)", (10,))
            else:
                a.execute("SELECT pg_sleep(10)")
        assert time.monotonic() - start < 5
        assert info.value.sqlstate == "57014"
        t.join()
        assert out and not isinstance(out[0], BaseException), out
        assert out[0][1] == "b done"
        # Both sessions go on.
        assert a.execute("SELECT 1").fetchone() == (1,)
        assert b.execute("SELECT 2").fetchone() == (2,)


def test_cancel_in_transaction_then_rollback(pooler: PoolerProcess) -> None:
    with pooler.connect() as a:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        with later(0.3, a.cancel_safe), pytest.raises(errors.QueryCanceled):
            a.execute("SELECT pg_sleep(10)")
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        a.execute("ROLLBACK")
        assert a.execute("SELECT 1").fetchone() == (1,)


def test_cancel_of_an_idle_client_reaches_no_one(pooler: PoolerProcess) -> None:
    """A's BackendKeyData names the backend B now runs on: A's cancel must not touch B."""
    with pooler.connect() as a:
        a_pid = a.info.backend_pid
        with pooler.connect() as b:
            t, out = _in_thread(
                lambda: b.execute("SELECT pg_backend_pid(), pg_sleep(1)").fetchone())
            time.sleep(0.3)
            for _ in range(3):
                a.cancel_safe()
            t.join()
            assert out and not isinstance(out[0], BaseException), out
            # The scenario held: B ran on the backend A was told about.
            assert out[0][0] == a_pid


def test_cancel_with_a_wrong_key_is_ignored(pooler: PoolerProcess) -> None:
    import socket
    import struct

    with pooler.connect() as b:
        t, out = _in_thread(lambda: b.execute("SELECT pg_sleep(0.8), 'ok'").fetchone())
        time.sleep(0.2)
        with socket.create_connection((pooler.host, pooler.port)) as s:
            s.sendall(struct.pack("!iiii", 16, 80877102, b.info.backend_pid, 12345))
            assert s.recv(100) == b""
        t.join()
        assert out == [(None, "ok")] or out[0][1] == "ok"


def test_late_cancels_never_hit_the_next_client(
    make_pooler: Any,
) -> None:
    """Pool size 1: A's cancels keep coming while A's quick queries finish and B's queries
    run on the same backend. Only A's queries may be cancelled."""
    pooler = make_pooler(pool_size=1)
    stop = threading.Event()
    with pooler.connect() as a, pooler.connect() as b:

        def spam() -> None:
            while not stop.is_set():
                a.cancel_safe()

        def run_a() -> int:
            cancelled = 0
            while not stop.is_set():
                try:
                    a.execute("SELECT pg_sleep(0.002)")
                except errors.QueryCanceled:
                    cancelled += 1
            return cancelled

        spammer = threading.Thread(target=spam)
        ta, out_a = _in_thread(run_a)
        spammer.start()
        try:
            for _ in range(40):
                assert b.execute("SELECT 1 FROM pg_sleep(0.01)").fetchone() == (1,)
        finally:
            stop.set()
            spammer.join()
            ta.join()
        assert out_a and not isinstance(out_a[0], BaseException), out_a


def test_pg_cancel_backend_with_the_reported_pid(
    pooler: PoolerProcess, direct: psycopg.Connection[Any]
) -> None:
    """For a client on the backend it was told about (a lone client), pg_cancel_backend and
    pg_terminate_backend with that pid act on its work; the connection goes on."""
    with pooler.connect() as conn:
        pid = conn.info.backend_pid
        with later(0.3, direct.execute, "SELECT pg_cancel_backend(%s)", (pid,)), \
                pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")
        with later(0.3, direct.execute, "SELECT pg_terminate_backend(%s)", (pid,)), \
                pytest.raises(psycopg.OperationalError) as info:
            conn.execute("SELECT pg_sleep(5)")
        assert info.value.sqlstate == "08006"
        assert "terminating connection due to administrator command" in str(info.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_while_waiting_for_a_backend(make_pooler: Any) -> None:
    pooler = make_pooler(pool_size=1)
    with pooler.connect() as a, pooler.connect() as b:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        start = time.monotonic()
        with later(0.3, b.cancel_safe), pytest.raises(errors.QueryCanceled):
            b.execute("SELECT 1")
        assert time.monotonic() - start < 3
        a.execute("COMMIT")
        assert b.execute("SELECT 2").fetchone() == (2,)
        # Extended protocol too: the rest of the batch is skipped, the session goes on.
        a.execute("BEGIN")
        a.execute("SELECT 1")  # (a plain BEGIN alone takes no backend)
        with later(0.3, b.cancel_safe), pytest.raises(errors.QueryCanceled):
            b.execute("SELECT %s::int", (3,))
        a.execute("COMMIT")
        assert b.execute("SELECT %s::int", (4,)).fetchone() == (4,)
