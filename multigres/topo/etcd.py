"""The etcd topology, over the ``aetcd`` asyncio client (etcd v3 API, gRPC).

Mapping to etcd:
- a node is one key, ``<root><path>``; its :data:`Version` is the key's mod_revision;
- create is a transaction "version(key) == 0 then put"; a compare-and-set update or delete is
  "mod_revision(key) == version then put/delete, else get" (the get tells NoNode from
  BadVersion in the same round trip);
- a watch reads the current state, then opens an etcd watch from the revision right after
  that read, so no change is lost in between and none is seen twice;
- a lock on directory ``P`` is the key ``P/locks/<lease id>`` attached to a lease that a
  background task keeps alive. Lock keys are served in creation order (create_revision):
  a waiter watches only the key just before its own (no herd), and the lock passes when that
  key is deleted, by its holder or by etcd when the holder's lease expires. This is Vitess's
  etcd2topo lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aetcd
from aetcd.rpc import RpcError  # grpc's, re-exported (grpc itself has no type stubs)
from aetcd.utils import prefix_range_end

from multigres.netutil import split_hostport
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
from multigres.topo.errors import (
    BadVersion,
    LockLost,
    LockTimeout,
    NodeExists,
    NoNode,
    TopoError,
    TopoUnavailable,
)
from multigres.topo.lock import LockHandle, LockHolder
from multigres.topo.watch import Watch, WatchEvent

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/multigres"
# Per-call deadline. Without one, a call to an etcd behind a dead network path waits for
# gRPC's connect timeout (20 s) or forever; callers would rather see TopoUnavailable.
DEFAULT_OP_TIMEOUT = 5.0

_LOCKS_DIR = "locks"


class EtcdConn(Conn):
    """A connection to etcd at ``address`` (``host:port`` or ``http://host:port``), with every
    key under ``root``."""

    def __init__(
        self,
        address: str = "127.0.0.1:2379",
        root: str = DEFAULT_ROOT,
        *,
        op_timeout: float = DEFAULT_OP_TIMEOUT,
    ) -> None:
        if "://" in address:
            address = address.split("://", 1)[1]
        host, port = split_hostport(address.rstrip("/"))
        if root and (not root.startswith("/") or root.endswith("/")):
            raise ValueError(f"etcd root must be '' or '/name' (no trailing '/'): {root!r}")
        self.address = f"{host}:{port}"
        self.root = root
        self._client = aetcd.Client(
            host=f"[{host}]" if ":" in host else host,
            port=port,
            timeout=op_timeout,
            options={
                # gRPC's reconnect backoff grows to 120 s by default: after an etcd restart we
                # want to be back within a couple of seconds.
                "grpc.initial_reconnect_backoff_ms": 100,
                "grpc.min_reconnect_backoff_ms": 100,
                "grpc.max_reconnect_backoff_ms": 2000,
            },
        )
        self._closed = False
        self._watches: set[_EtcdWatch] = set()
        # Leases of the locks held through this connection, revoked by close().
        self._held: dict[int, tuple[Any, LockHandle]] = {}

    def __repr__(self) -> str:
        return f"EtcdConn({self.address!r}, root={self.root!r})"

    # -- helpers -------------------------------------------------------------------------

    def _key(self, path: str) -> bytes:
        return (self.root + path).encode()

    def _path(self, key: bytes) -> str:
        return key.decode()[len(self.root) :]

    def _check_open(self) -> None:
        if self._closed:
            raise TopoError(f"topology connection to etcd at {self.address} is closed")

    @contextlib.contextmanager
    def _errors(self, what: str, path: str) -> Iterator[None]:
        """Translate client errors: unreachable etcd -> TopoUnavailable naming the address."""
        try:
            yield
        except aetcd.RevisionCompactedError:
            raise  # handled by the watch, which reads again
        except (
            aetcd.ConnectionFailedError,
            aetcd.ConnectionTimeoutError,
            aetcd.WatchTimeoutError,
            RpcError,
        ) as e:
            raise TopoUnavailable(
                f"etcd at {self.address} is unreachable ({what} {path}): {e}", path
            ) from e
        except aetcd.ClientError as e:
            raise TopoError(f"etcd at {self.address} failed to {what} {path}: {e}", path) from e

    # -- nodes ---------------------------------------------------------------------------

    async def create(self, path: str, data: bytes) -> Version:
        self._check_open()
        key = self._key(check_node_path(path))
        tx = self._client.transactions
        with self._errors("create", path):
            ok, responses = await self._client.transaction(
                compare=[tx.version(key) == 0], success=[tx.put(key, data)], failure=[]
            )
        if not ok:
            raise NodeExists(path)
        return int(responses[0].response_put.header.revision)

    async def update(self, path: str, data: bytes, version: Version | None) -> Version:
        self._check_open()
        key = self._key(check_node_path(path))
        if version is None:
            with self._errors("update", path):
                put = await self._client.put(key, data)
            return int(put.header.revision)
        tx = self._client.transactions
        with self._errors("update", path):
            ok, responses = await self._client.transaction(
                compare=[tx.mod(key) == version], success=[tx.put(key, data)], failure=[tx.get(key)]
            )
        if not ok:
            self._raise_cas_failure(path, version, responses)
        return int(responses[0].response_put.header.revision)

    def _raise_cas_failure(self, path: str, version: Version, responses: list[Any]) -> None:
        found = responses[0] if responses else []
        if not found:
            raise NoNode(path)
        raise BadVersion(path, version, int(found[0][1].mod_revision))

    async def get(self, path: str) -> tuple[bytes, Version]:
        self._check_open()
        key = self._key(check_node_path(path))
        with self._errors("get", path):
            kv = await self._client.get(key)
        if kv is None:
            raise NoNode(path)
        return bytes(kv.value), int(kv.mod_revision)

    async def delete(self, path: str, version: Version | None = None) -> None:
        self._check_open()
        key = self._key(check_node_path(path))
        if version is None:
            with self._errors("delete", path):
                deleted = await self._client.delete(key)
            if deleted is None:
                raise NoNode(path)
            return
        tx = self._client.transactions
        with self._errors("delete", path):
            ok, responses = await self._client.transaction(
                compare=[tx.mod(key) == version], success=[tx.delete(key)], failure=[tx.get(key)]
            )
        if not ok:
            self._raise_cas_failure(path, version, responses)

    async def list_dir(self, path: str) -> list[str]:
        self._check_open()
        prefix = self._key(dir_prefix(check_path(path)))
        # Keys only: etcd has no directories, so listing one means scanning its subtree.
        # Topology directories are small (cells, databases, poolers of a cell).
        with self._errors("list", path):
            resp = await self._client.get_prefix(prefix, keys_only=True)
        return sorted({kv.key[len(prefix) :].split(b"/", 1)[0].decode() for kv in resp})

    async def list_tree(self, path: str, *, with_data: bool = True) -> list[KV]:
        self._check_open()
        prefix = self._key(dir_prefix(check_path(path)))
        with self._errors("list", path):
            resp = await self._client.get_prefix(prefix, keys_only=not with_data)
        return sorted(
            (KV(self._path(kv.key), bytes(kv.value), int(kv.mod_revision)) for kv in resp),
            key=lambda kv: kv.path,
        )

    # -- watches -------------------------------------------------------------------------

    def watch(self, path: str) -> Watch:
        self._check_open()
        return self._new_watch(check_node_path(path), recursive=False)

    def watch_prefix(self, path: str) -> Watch:
        self._check_open()
        return self._new_watch(check_path(path), recursive=True)

    def _new_watch(self, path: str, recursive: bool) -> _EtcdWatch:
        w = _EtcdWatch(self, path, recursive)
        self._watches.add(w)
        return w

    # -- locks ---------------------------------------------------------------------------

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
        if ttl < 1:
            raise ValueError(f"lock ttl must be at least 1 second (etcd counts in seconds): {ttl}")
        handle = LockHandle(path, LockHolder.here(purpose))
        lock_dir = self._key(path) + f"/{_LOCKS_DIR}/".encode()
        with self._errors("grant a lease to lock", path):
            lease = await self._client.lease(ttl)
        self._held[lease.id] = (lease, handle)
        keepalive: asyncio.Task[None] | None = None
        try:
            my_key = lock_dir + f"{lease.id:016x}".encode()
            with self._errors("lock", path):
                put = await self._client.put(my_key, handle.holder.to_json(), lease=lease)
            # Keep the lease alive while we wait too: the wait may be longer than the ttl.
            keepalive = asyncio.create_task(
                self._keepalive(lease, ttl, handle), name=f"topo lock keepalive {path}"
            )
            await self._wait_turn(path, lock_dir, my_key, int(put.header.revision), timeout)
            yield handle
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
            if self._held.pop(lease.id, None) is not None:
                await self._revoke(lease, path, ttl)

    async def _wait_turn(
        self,
        path: str,
        lock_dir: bytes,
        my_key: bytes,
        my_rev: int,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Return when our key is the oldest under ``lock_dir``; LockTimeout at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._errors("lock", path):
                resp = await self._client.get_prefix(lock_dir)
            keys = list(resp)
            if not any(kv.key == my_key for kv in keys):
                raise LockLost(path, "the lease expired while waiting for the lock")
            older = [kv for kv in keys if kv.create_revision < my_rev]
            if not older:
                return
            # Watch only the key right before ours: when it goes, either we hold the lock or
            # the next one before us is now the one to wait for.
            prev = max(older, key=lambda kv: kv.create_revision)
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wait_deleted(path, prev.key, int(resp.header.revision) + 1)
            except TimeoutError:
                raise LockTimeout(path, timeout, await self._current_holder(lock_dir)) from None

    async def _wait_deleted(self, path: str, key: bytes, from_revision: int) -> None:
        # From the revision of our read: a delete that happened since is delivered at once.
        with self._errors("wait for the lock on", path):
            w = await self._client.watch(
                key, start_revision=from_revision, kind=aetcd.EventKind.DELETE
            )
        try:
            with self._errors("wait for the lock on", path):
                async for _event in w:
                    return
        finally:
            with contextlib.suppress(Exception):
                await w.cancel()

    async def _current_holder(self, lock_dir: bytes) -> LockHolder | None:
        try:
            keys = list(await self._client.get_prefix(lock_dir))
        except (aetcd.ClientError, RpcError):
            return None
        if not keys:
            return None
        first = min(keys, key=lambda kv: kv.create_revision)
        return LockHolder.from_json(bytes(first.value))

    async def _keepalive(self, lease: Any, ttl: int, handle: LockHandle) -> None:
        # A third of the ttl, like etcd's own clients: two refreshes in a row can fail
        # before the lease expires.
        loop = asyncio.get_running_loop()
        interval = ttl / 3
        last_ok = loop.time()
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await lease.refresh()
            except (aetcd.ClientError, RpcError) as e:
                if loop.time() - last_ok >= ttl:
                    handle._lose(f"etcd at {self.address} unreachable for {ttl}s: {e}")
                    return
                log.warning("keepalive of the lock on %s failed, retrying: %s", handle.path, e)
                continue
            if reply is None or reply.TTL <= 0:
                handle._lose("its lease expired")
                return
            last_ok = loop.time()

    async def _revoke(self, lease: Any, path: str, ttl: int) -> None:
        try:
            with self._errors("unlock", path):
                await lease.revoke()
        except TopoError as e:
            # Not fatal: etcd deletes the lock key itself when the lease runs out.
            log.warning("could not release the lock on %s (it expires in %ss): %s", path, ttl, e)

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in list(self._watches):
            await w.close()
        for lease, handle in list(self._held.values()):
            handle._lose("the topology connection was closed")
            await self._revoke(lease, handle.path, 0)
        self._held.clear()
        await self._client.close()


class _EtcdWatch(Watch):
    def __init__(self, conn: EtcdConn, path: str, recursive: bool) -> None:
        super().__init__(path)
        self._conn = conn
        self._recursive = recursive
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None

    async def _open(self) -> list[WatchEvent]:
        conn = self._conn
        if self._recursive:
            start = conn._key(dir_prefix(self.path))
            end = prefix_range_end(start)
        else:
            start = conn._key(self.path)
            end = start + b"\0"  # the range holding exactly this key
        for _attempt in range(3):
            # A range read (not a plain get) so that the response carries the store revision
            # even when the key is absent: the watch starts right after it.
            with conn._errors("read", self.path):
                resp = await conn._client.get_range(start, end)
            initial = [
                WatchEvent(conn._path(kv.key), bytes(kv.value), int(kv.mod_revision)) for kv in resp
            ]
            if not self._recursive and not initial:
                initial = [WatchEvent(self.path, None, None)]
            try:
                with conn._errors("watch", self.path):
                    self._stream = await conn._client.watch(
                        start, range_end=end, start_revision=int(resp.header.revision) + 1
                    )
            except aetcd.RevisionCompactedError:
                continue  # compacted between our read and the watch: read again
            self._task = asyncio.create_task(self._pump(), name=f"topo watch {self.path}")
            return initial
        raise TopoError(f"could not start a watch on {self.path}: etcd keeps compacting", self.path)

    async def _pump(self) -> None:
        conn = self._conn
        try:
            async for ev in self._stream:
                data = None if ev.kind == aetcd.EventKind.DELETE else bytes(ev.kv.value)
                self._emit(WatchEvent(conn._path(ev.kv.key), data, int(ev.kv.mod_revision)))
        except (aetcd.ClientError, RpcError) as e:
            self._fail(
                TopoUnavailable(
                    f"watch on {self.path} at etcd {conn.address} broke: {e}", self.path
                )
            )
        else:
            self._end()

    async def _close(self) -> None:
        self._conn._watches.discard(self)
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
