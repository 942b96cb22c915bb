"""Back-pressure: a client that does not read its large result makes the pooler stop reading
from that client's server connection, so the pooler's memory stays flat; other clients go on.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from multigres.testing.pooler import PoolerProcess, RawClient

pytestmark = pytest.mark.integration

# About 200 MB of DataRows.
BIG = "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"


def _running(direct: psycopg.Connection[Any]) -> int:
    row = direct.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query = %s AND state = 'active'", (BIG,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_slow_reader_does_not_grow_memory(
    make_pooler: Callable[..., PoolerProcess], direct: psycopg.Connection[Any]
) -> None:
    pooler = make_pooler(pool_size=2)
    with pooler.connect() as other:
        other.execute("SELECT 1")
        base = pooler.rss_kib()
        raw = RawClient.to(pooler)
        raw.send(b"Q", BIG.encode() + b"\0")
        peak = base
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            peak = max(peak, pooler.rss_kib())
            # Others are served meanwhile (on the other backend).
            assert other.execute("SELECT 1").fetchone() == (1,)
            time.sleep(0.1)
        assert _running(direct) == 1, "the big query should be waiting on its client"
        assert peak - base < 100 * 1024, f"RSS grew by {(peak - base) // 1024} MB"
        # The client reads some of it: data flows again.
        got = 0
        while got < 20 << 20:
            chunk = raw.sock.recv(1 << 20)
            assert chunk
            got += len(chunk)
        assert pooler.rss_kib() - base < 100 * 1024
        # The client leaves without reading the rest: the query stops, the pool recovers.
        raw.close()
        deadline = time.monotonic() + 10
        while _running(direct) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _running(direct) == 0
        for _ in range(4):
            with pooler.connect() as conn:
                assert conn.execute("SELECT 2").fetchone() == (2,)
        assert other.execute("SELECT 3").fetchone() == (3,)


def test_a_waiting_client_is_read_only_up_to_a_limit(
    make_pooler: Callable[..., PoolerProcess]
) -> None:
    """A client waiting for a backend that goes on sending is not read without bound (the
    rest waits in the kernel); once a backend is free, everything it sent runs, in order."""
    pooler = make_pooler(pool_size=1)
    n, pad = 4000, "x" * 2000  # ~8 MB of queries
    raw = RawClient.to(pooler, timeout=30.0)  # (logging in takes a backend for a moment)
    with pooler.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # holds the only backend
        base = pooler.rss_kib()
        queries = b"".join(
            b"Q" + struct.pack("!i", len(q) + 5) + q + b"\0"
            for q in (f"SELECT {i} /* {pad} */".encode() for i in range(n))
        )
        sender = threading.Thread(target=raw.send_raw, args=(queries,), daemon=True)
        sender.start()
        time.sleep(1.5)
        grown = pooler.rss_kib() - base
        assert grown < 4 * 1024, f"the pooler read {grown // 1024} MB from a waiting client"
        holder.execute("COMMIT")
    sender.join(timeout=30)
    assert not sender.is_alive()
    values: list[int] = []
    while len(values) < n:
        t, payload = raw.recv()
        if t == "D":
            (size,) = struct.unpack_from("!i", payload, 2)
            values.append(int(payload[6:6 + size]))
        else:
            assert t in "TCZ", (t, payload)
    assert values == list(range(n))
    raw.close()
