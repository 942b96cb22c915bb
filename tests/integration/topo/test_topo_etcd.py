"""What only the etcd backend does: leases that die with their holder, keepalives,
unreachable servers, broken watch streams, roots."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from multigres.netutil import free_port
from multigres.testing.etcd import ThrowawayEtcd, running_etcd
from multigres.topo.errors import LockTimeout, TopoUnavailable
from multigres.topo.etcd import EtcdConn

HOLDER = """
import asyncio, sys
from multigres.topo.etcd import EtcdConn

async def main() -> None:
    conn = EtcdConn(sys.argv[1], root=sys.argv[2])
    async with conn.lock("/shard", purpose="doomed holder", ttl=1):
        print("locked", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_lock_dies_with_its_holder(etcd_server: ThrowawayEtcd) -> None:
    root = f"/dies-{os.getpid()}-{time.monotonic_ns()}"
    ttl = 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, etcd_server.address, root, stdout=asyncio.subprocess.PIPE
    )
    conn = EtcdConn(etcd_server.address, root=root)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            assert await proc.stdout.readline() == b"locked\n"
        # Held by the other process, and the timeout says so.
        with pytest.raises(LockTimeout, match=rf"pid {proc.pid} .*'doomed holder'"):
            async with conn.lock("/shard", purpose="successor", ttl=5, timeout=0.2):
                pass
        proc.send_signal(signal.SIGKILL)  # no chance to release: only the lease can
        await proc.wait()
        killed_at = time.monotonic()
        async with conn.lock("/shard", purpose="successor", ttl=5, timeout=ttl + 4) as lock:
            waited = time.monotonic() - killed_at
            assert lock.holder.pid == os.getpid()
        # etcd checks lease expiry every 0.5 s; the lease ran from the last keepalive.
        assert waited < ttl + 3
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await conn.close()


async def test_keepalive_holds_the_lock_past_its_ttl(etcd_server: ThrowawayEtcd) -> None:
    root = f"/keep-{time.monotonic_ns()}"
    holder = EtcdConn(etcd_server.address, root=root)
    waiter = EtcdConn(etcd_server.address, root=root)
    try:
        async with holder.lock("/s", purpose="long job", ttl=1) as lock:
            await asyncio.sleep(1.6)  # well past the ttl and etcd's 0.5 s expiry check
            assert not lock.lost
            with pytest.raises(LockTimeout, match="long job"):
                async with waiter.lock("/s", purpose="w", ttl=1, timeout=0.2):
                    pass
        # Released: no lock key is left behind.
        assert await holder.list_tree("/s") == []
    finally:
        await holder.close()
        await waiter.close()


async def test_unreachable_etcd_is_reported_quickly() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    conn = EtcdConn(address, op_timeout=2.0)
    start = time.monotonic()
    try:
        with pytest.raises(TopoUnavailable, match=f"etcd at {address} is unreachable"):
            await conn.get("/x")
        with pytest.raises(TopoUnavailable, match=address):
            await conn.create("/x", b"")
        with pytest.raises(TopoUnavailable, match=address):
            await conn.watch("/x").start()
        assert not conn._watches  # a failed start leaves nothing behind to leak
        with pytest.raises(TopoUnavailable, match=address):
            async with conn.lock("/x", purpose="p", ttl=1, timeout=1):
                pass
    finally:
        await conn.close()
    assert time.monotonic() - start < 3.0


async def test_watch_reports_etcd_going_away() -> None:
    with running_etcd() as etcd:
        conn = EtcdConn(etcd.address)
        try:
            async with conn.watch_prefix("/cell") as w:
                await asyncio.to_thread(etcd.process.stop)
                with pytest.raises(TopoUnavailable, match=etcd.address):
                    async with asyncio.timeout(5):
                        await anext(w)
        finally:
            await conn.close()


async def test_roots_are_isolated(etcd_server: ThrowawayEtcd) -> None:
    # One root a prefix of the other's name: still apart.
    stamp = time.monotonic_ns()
    a = EtcdConn(etcd_server.address, root=f"/iso-{stamp}")
    b = EtcdConn(etcd_server.address, root=f"/iso-{stamp}b")
    try:
        await a.update("/k", b"a", None)
        await b.update("/k", b"b", None)
        assert (await a.get("/k"))[0] == b"a"
        assert await a.list_dir("/") == ["k"]
        assert [kv.path for kv in await b.list_tree("/")] == ["/k"]
    finally:
        await a.close()
        await b.close()
