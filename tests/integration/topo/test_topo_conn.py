"""The low-level Conn contract, run against the memory and the etcd backend alike."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from multigres.testing.etcd import TopoBackend
from multigres.topo.errors import BadVersion, LockTimeout, NodeExists, NoNode, TopoError
from multigres.topo.watch import Watch, WatchEvent

# A watcher must see a change within this long (the brief: 1 s, and no polling).
WATCH_DEADLINE = 1.0


async def next_event(w: Watch) -> WatchEvent:
    async with asyncio.timeout(WATCH_DEADLINE):
        return await anext(w)


async def test_create_get_and_versions(topo: TopoBackend) -> None:
    conn = topo.conn()
    v1 = await conn.create("/a/b", b"one")
    assert await conn.get("/a/b") == (b"one", v1)
    with pytest.raises(NodeExists) as e:
        await conn.create("/a/b", b"again")
    assert e.value.path == "/a/b"
    v2 = await conn.update("/a/b", b"two", None)
    assert v2 > v1
    assert await conn.get("/a/b") == (b"two", v2)
    with pytest.raises(NoNode, match="/a/missing"):
        await conn.get("/a/missing")


async def test_update_is_compare_and_set(topo: TopoBackend) -> None:
    conn, other = topo.conn(), topo.conn()
    v1 = await conn.create("/n", b"1")
    v2 = await other.update("/n", b"2", v1)
    with pytest.raises(BadVersion) as e:
        await conn.update("/n", b"lost update", v1)
    assert (e.value.expected, e.value.actual) == (v1, v2)
    assert await conn.get("/n") == (b"2", v2)
    with pytest.raises(NoNode):
        await conn.update("/absent", b"x", v1)
    # version=None is an upsert.
    v3 = await conn.update("/absent", b"x", None)
    assert await other.get("/absent") == (b"x", v3)


async def test_delete(topo: TopoBackend) -> None:
    conn = topo.conn()
    v1 = await conn.create("/d", b"x")
    v2 = await conn.update("/d", b"y", v1)
    with pytest.raises(BadVersion):
        await conn.delete("/d", v1)
    await conn.delete("/d", v2)
    with pytest.raises(NoNode):
        await conn.get("/d")
    with pytest.raises(NoNode):
        await conn.delete("/d")
    with pytest.raises(NoNode):
        await conn.delete("/d", v2)
    await conn.create("/d", b"z")
    await conn.delete("/d")
    with pytest.raises(NoNode):
        await conn.get("/d")


async def test_list_dir_and_tree(topo: TopoBackend) -> None:
    conn = topo.conn()
    for path in ("/x/b/c", "/x/b/d", "/x/e", "/x2/f"):
        await conn.create(path, path.encode())
    assert await conn.list_dir("/x") == ["b", "e"]
    assert await conn.list_dir("/x/b") == ["c", "d"]
    assert await conn.list_dir("/x/nothing") == []
    assert await conn.list_dir("/") == ["x", "x2"]
    tree = await conn.list_tree("/x")
    assert [(kv.path, kv.data) for kv in tree] == [
        ("/x/b/c", b"/x/b/c"),
        ("/x/b/d", b"/x/b/d"),
        ("/x/e", b"/x/e"),
    ]
    _, version = await conn.get("/x/e")
    assert tree[2].version == version
    keys = await conn.list_tree("/x", with_data=False)
    assert [(kv.path, kv.data) for kv in keys] == [(kv.path, b"") for kv in tree]


async def test_malformed_paths_are_rejected(topo: TopoBackend) -> None:
    conn = topo.conn()
    for bad in ("relative", "/trailing/", "/double//slash", "/dot/./x", "/"):
        with pytest.raises(ValueError):
            await conn.get(bad)


async def test_watch_sees_create_update_delete(topo: TopoBackend) -> None:
    watcher, writer = topo.conn(), topo.conn()
    async with watcher.watch("/w/node") as w:
        first = await next_event(w)
        assert first == WatchEvent("/w/node", None, None)  # absent at the start
        assert w.initial == [first]

        v1 = await writer.create("/w/node", b"1")
        assert await next_event(w) == WatchEvent("/w/node", b"1", v1)
        await writer.create("/w/other", b"not watched")
        v2 = await writer.update("/w/node", b"2", v1)
        assert await next_event(w) == WatchEvent("/w/node", b"2", v2)
        await writer.delete("/w/node")
        deleted = await next_event(w)
        assert deleted.deleted and deleted.path == "/w/node"
        assert deleted.version is not None and deleted.version > v2
        # The watch outlives a deletion.
        v3 = await writer.create("/w/node", b"3")
        assert await next_event(w) == WatchEvent("/w/node", b"3", v3)


async def test_watch_starts_with_current_value(topo: TopoBackend) -> None:
    conn = topo.conn()
    v1 = await conn.create("/cur", b"now")
    async with conn.watch("/cur") as w:
        assert await next_event(w) == WatchEvent("/cur", b"now", v1)


async def test_watch_prefix(topo: TopoBackend) -> None:
    watcher, writer = topo.conn(), topo.conn()
    va = await writer.create("/p/a/rec", b"a")
    vb = await writer.create("/p/b/rec", b"b")
    await writer.create("/pq", b"sibling, not under /p/")
    async with watcher.watch_prefix("/p") as w:
        assert w.initial == [WatchEvent("/p/a/rec", b"a", va), WatchEvent("/p/b/rec", b"b", vb)]
        assert [await next_event(w), await next_event(w)] == w.initial
        await writer.create("/pz", b"outside")
        vc = await writer.create("/p/c/rec", b"c")
        assert await next_event(w) == WatchEvent("/p/c/rec", b"c", vc)
        await writer.delete("/p/a/rec")
        gone = await next_event(w)
        assert (gone.path, gone.data) == ("/p/a/rec", None)


async def test_watch_close_ends_iteration(topo: TopoBackend) -> None:
    conn = topo.conn()
    w = await conn.watch("/c").start()
    await next_event(w)

    async def consume() -> list[WatchEvent]:
        return [event async for event in w]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await w.close()
    async with asyncio.timeout(WATCH_DEADLINE):
        assert await task == []


async def test_closing_conn_ends_its_watches(topo: TopoBackend) -> None:
    conn = topo.conn()
    w = await conn.watch_prefix("/z").start()
    await conn.close()
    async with asyncio.timeout(WATCH_DEADLINE):
        assert [event async for event in w] == []
    with pytest.raises(TopoError, match="closed"):
        await conn.get("/z/a")


async def test_lock_is_exclusive(topo: TopoBackend) -> None:
    # Three clients each do a read-modify-write under the lock, with a pause in the middle
    # that would let them interleave if the lock did not exclude.
    conns = [topo.conn() for _ in range(3)]
    await conns[0].create("/counter", b"0")
    inside = 0
    most_inside = 0

    async def bump(i: int) -> None:
        nonlocal inside, most_inside
        async with conns[i].lock("/locked", purpose=f"bump {i}", ttl=5, timeout=10):
            inside += 1
            most_inside = max(most_inside, inside)
            data, version = await conns[i].get("/counter")
            await asyncio.sleep(0.05)
            await conns[i].update("/counter", str(int(data) + 1).encode(), version)
            inside -= 1

    await asyncio.gather(*(bump(i) for i in range(3)))
    assert most_inside == 1
    assert (await conns[0].get("/counter"))[0] == b"3"


async def test_lock_released_on_error_and_reusable(topo: TopoBackend) -> None:
    conn = topo.conn()
    with pytest.raises(RuntimeError):
        async with conn.lock("/l", purpose="fails", ttl=5, timeout=1):
            raise RuntimeError("boom")
    async with conn.lock("/l", purpose="second", ttl=5, timeout=1) as handle:
        assert handle.holder.purpose == "second"
        assert not handle.lost
        handle.check()


async def test_lock_timeout_names_the_holder(topo: TopoBackend) -> None:
    holder, waiter = topo.conn(), topo.conn()
    async with holder.lock("/busy", purpose="reparent zone1", ttl=5, timeout=1):
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(LockTimeout) as e:
            async with waiter.lock("/busy", purpose="other", ttl=5, timeout=0.3):
                pytest.fail("got a lock that is held")
        assert 0.25 < loop.time() - start < 2.0
    message = str(e.value)
    assert "/busy" in message and "0.3s" in message
    assert "reparent zone1" in message
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message
    # The waiter gave up cleanly: the lock is free now.
    async with waiter.lock("/busy", purpose="after", ttl=5, timeout=1):
        pass


async def test_waiter_gets_lock_when_holder_releases(topo: TopoBackend) -> None:
    a, b = topo.conn(), topo.conn()
    released = asyncio.Event()
    async with a.lock("/handoff", purpose="first", ttl=5, timeout=1):

        async def wait_for_lock() -> float:
            async with b.lock("/handoff", purpose="second", ttl=5, timeout=5):
                assert released.is_set()
                return asyncio.get_running_loop().time()

        task = asyncio.create_task(wait_for_lock())
        await asyncio.sleep(0.2)
        assert not task.done()
        released.set()
        released_at = asyncio.get_running_loop().time()
    acquired_at = await task
    # Handed over by the watch, not found by polling.
    assert acquired_at - released_at < WATCH_DEADLINE


async def test_closing_conn_releases_its_locks(topo: TopoBackend) -> None:
    holder, waiter = topo.conn(), topo.conn()
    locked = asyncio.Event()

    async def hold() -> bool:
        async with holder.lock("/held", purpose="holder", ttl=30, timeout=1) as handle:
            locked.set()
            await asyncio.sleep(30)
        return handle.lost

    task = asyncio.create_task(hold())
    await locked.wait()
    await holder.close()
    # Released at once, not after the 30 s ttl.
    async with waiter.lock("/held", purpose="waiter", ttl=5, timeout=2):
        pass
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
