"""In-memory topology: the same semantics as etcd, in one process, for unit tests and for
local mode.

Several :class:`MemoryConn` over one :class:`MemoryStore` behave like several clients of one
etcd. Versions follow etcd's rule (one store-wide revision, bumped by each write), watches are
fed synchronously from the write path, and locks are FIFO-free asyncio waits.

Lock ttl is ignored: the holder and the store live in the same process, so a holder that
dies takes the store with it. A lock is released when its ``async with`` block exits or its
connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from multigres.topo.conn import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_LOCK_TTL,
    KV,
    Conn,
    Version,
    check_node_path,
    check_path,
    dir_prefix,
)
from multigres.topo.errors import BadVersion, LockTimeout, NodeExists, NoNode, TopoError
from multigres.topo.lock import LockHandle, LockHolder
from multigres.topo.watch import Watch, WatchEvent


@dataclass(eq=False)
class _HeldLock:
    handle: LockHandle
    owner: MemoryConn
    released: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStore:
    """The shared state behind any number of :class:`MemoryConn`."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[bytes, Version]] = {}
        self.revision: Version = 0
        self.watches: set[_MemoryWatch] = set()
        self.locks: dict[str, _HeldLock] = {}

    def write(self, path: str, data: bytes | None) -> Version:
        """Apply one change (``data=None`` deletes) and tell the watchers."""
        self.revision += 1
        if data is None:
            del self.nodes[path]
        else:
            self.nodes[path] = (data, self.revision)
        event = WatchEvent(path, data, self.revision)
        for w in list(self.watches):
            if w.matches(path):
                w._emit(event)
        return self.revision


class _MemoryWatch(Watch):
    def __init__(
        self, store: MemoryStore, path: str, recursive: bool, owner: set[_MemoryWatch]
    ) -> None:
        super().__init__(path)
        self._store = store
        self._owner = owner
        self._recursive = recursive
        self._prefix = dir_prefix(path)

    def matches(self, path: str) -> bool:
        return path.startswith(self._prefix) if self._recursive else path == self.path

    async def _open(self) -> list[WatchEvent]:
        # No await between reading the state and subscribing: nothing can slip in between.
        self._store.watches.add(self)
        if self._recursive:
            return [
                WatchEvent(p, d, v)
                for p, (d, v) in sorted(self._store.nodes.items())
                if p.startswith(self._prefix)
            ]
        node = self._store.nodes.get(self.path)
        if node is None:
            return [WatchEvent(self.path, None, None)]
        return [WatchEvent(self.path, node[0], node[1])]

    async def _close(self) -> None:
        self._store.watches.discard(self)
        self._owner.discard(self)


class MemoryConn(Conn):
    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._closed = False
        self._watches: set[_MemoryWatch] = set()

    def _check_open(self) -> None:
        if self._closed:
            raise TopoError("topology connection is closed")

    async def create(self, path: str, data: bytes) -> Version:
        self._check_open()
        check_node_path(path)
        if path in self.store.nodes:
            raise NodeExists(path)
        return self.store.write(path, bytes(data))

    async def update(self, path: str, data: bytes, version: Version | None) -> Version:
        self._check_open()
        check_node_path(path)
        if version is not None:
            node = self.store.nodes.get(path)
            if node is None:
                raise NoNode(path)
            if node[1] != version:
                raise BadVersion(path, version, node[1])
        return self.store.write(path, bytes(data))

    async def get(self, path: str) -> tuple[bytes, Version]:
        self._check_open()
        check_node_path(path)
        node = self.store.nodes.get(path)
        if node is None:
            raise NoNode(path)
        return node

    async def delete(self, path: str, version: Version | None = None) -> None:
        self._check_open()
        check_node_path(path)
        node = self.store.nodes.get(path)
        if node is None:
            raise NoNode(path)
        if version is not None and node[1] != version:
            raise BadVersion(path, version, node[1])
        self.store.write(path, None)

    async def list_dir(self, path: str) -> list[str]:
        self._check_open()
        prefix = dir_prefix(check_path(path))
        return sorted(
            {p[len(prefix) :].split("/", 1)[0] for p in self.store.nodes if p.startswith(prefix)}
        )

    async def list_tree(self, path: str, *, with_data: bool = True) -> list[KV]:
        self._check_open()
        prefix = dir_prefix(check_path(path))
        return [
            KV(p, d if with_data else b"", v)
            for p, (d, v) in sorted(self.store.nodes.items())
            if p.startswith(prefix)
        ]

    def watch(self, path: str) -> Watch:
        self._check_open()
        return self._new_watch(check_node_path(path), recursive=False)

    def watch_prefix(self, path: str) -> Watch:
        self._check_open()
        return self._new_watch(check_path(path), recursive=True)

    def _new_watch(self, path: str, recursive: bool) -> _MemoryWatch:
        w = _MemoryWatch(self.store, path, recursive, self._watches)
        self._watches.add(w)
        return w

    @asynccontextmanager
    async def lock(
        self,
        path: str,
        *,
        purpose: str,
        ttl: int = DEFAULT_LOCK_TTL,
        # The lock keeps its own deadline (rather than the caller wrapping it in
        # asyncio.timeout) so that it can say who holds the lock when it gives up.
        timeout: float = DEFAULT_LOCK_TIMEOUT,  # noqa: ASYNC109
    ) -> AsyncIterator[LockHandle]:
        self._check_open()
        check_node_path(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (current := self.store.locks.get(path)) is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    await current.released.wait()
            except TimeoutError:
                raise LockTimeout(path, timeout, current.handle.holder) from None
        self._check_open()
        held = _HeldLock(LockHandle(path, LockHolder.here(purpose)), self)
        self.store.locks[path] = held
        try:
            yield held.handle
        finally:
            self._release(path, held)

    def _release(self, path: str, held: _HeldLock) -> None:
        if self.store.locks.get(path) is held:
            del self.store.locks[path]
        held.released.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in list(self._watches):
            await w.close()
        self._watches.clear()
        for path, held in list(self.store.locks.items()):
            if held.owner is self:
                held.handle._lose("the topology connection was closed")
                self._release(path, held)
