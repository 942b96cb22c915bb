"""LISTEN/NOTIFY through the pooler: every listening client gets every notification; a
client's own notifications carry its own pid (the one in its BackendKeyData)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from multigres.testing.pooler import PoolerProcess

pytestmark = pytest.mark.integration


def _drain(conn: psycopg.Connection[Any], n: int) -> list[psycopg.Notify]:
    got = list(conn.notifies(timeout=5, stop_after=n))
    assert len(got) == n, got
    return got


def test_every_listener_gets_every_notification(
    make_pooler: Callable[..., PoolerProcess],
) -> None:
    # Each LISTEN pins a backend: room for the listeners and the notifier.
    pooler = make_pooler(pool_size=5)
    listeners = [pooler.connect() for _ in range(3)]
    try:
        for conn in listeners:
            conn.execute("LISTEN chan")
            conn.execute('LISTEN "Other Chan"')
        with pooler.connect() as notifier:
            sender = notifier.execute("SELECT pg_backend_pid()").fetchone()
            assert sender is not None
            notifier.execute("NOTIFY chan, 'one'")
            notifier.execute("SELECT pg_notify('Other Chan', 'two')")
            with notifier.transaction():
                notifier.execute("NOTIFY chan, 'three'")
                notifier.execute("NOTIFY chan, 'rolled back'")
                notifier.execute("SELECT 1")
            with pytest.raises(psycopg.errors.DivisionByZero), notifier.transaction():
                notifier.execute("NOTIFY chan, 'never'")
                notifier.execute("SELECT 1/0")
        for conn in listeners:
            got = _drain(conn, 4)
            assert [(n.channel, n.payload) for n in got] == [
                ("chan", "one"), ("Other Chan", "two"), ("chan", "three"),
                ("chan", "rolled back")]
            # Another client's notification: the pid of the backend that sent it.
            assert {n.pid for n in got} == {sender[0]}
            # Nothing more came (the aborted transaction's NOTIFY never happens).
            assert list(conn.notifies(timeout=0.2)) == []
        # Self-notification: the listener's own pid.
        me = listeners[0]
        me.execute("NOTIFY chan, 'me'")
        (n,) = _drain(me, 1)
        assert (n.payload, n.pid) == ("me", me.info.backend_pid)
        for other in listeners[1:]:
            (n,) = _drain(other, 1)
            assert n.payload == "me" and n.pid != other.info.backend_pid
        # UNLISTEN: no more notifications, and the backend goes back to the pool.
        for conn in listeners:
            conn.execute("UNLISTEN *")
        with pooler.connect() as notifier:
            notifier.execute("NOTIFY chan, 'after'")
        for conn in listeners:
            assert list(conn.notifies(timeout=0.2)) == []
    finally:
        for conn in listeners:
            conn.close()


async def test_asyncpg_listener(make_pooler: Callable[..., PoolerProcess]) -> None:
    import asyncio

    import asyncpg

    pooler = make_pooler(pool_size=3)
    got: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
    listener = await asyncpg.connect(pooler.dsn())
    sender = await asyncpg.connect(pooler.dsn())
    try:
        await listener.add_listener(
            "apg", lambda conn, pid, channel, payload: got.put_nowait((pid, channel, payload)))
        await sender.execute("NOTIFY apg, 'hi'")
        pid, channel, payload = await asyncio.wait_for(got.get(), 5)
        assert (channel, payload) == ("apg", "hi")
        assert pid == await sender.fetchval("SELECT pg_backend_pid()")
        await listener.execute("NOTIFY apg, 'self'")
        pid, _, payload = await asyncio.wait_for(got.get(), 5)
        assert (pid, payload) == (listener.get_server_pid(), "self")
    finally:
        await listener.close()
        await sender.close()
