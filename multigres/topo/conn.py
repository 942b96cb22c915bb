"""The low-level topology interface: a versioned key/value tree with watches and locks.

This is Vitess's ``topo.Conn``: the small set of operations every backend (etcd, memory)
implements, on which :class:`multigres.topo.server.TopoServer` builds the typed records.

Paths are absolute, ``/``-separated, without a trailing slash (``/global/cells/zone1/Cell``).
A node holds bytes and a :data:`Version`. Directories are implicit, as in etcd: a directory
exists while some node lives under it, so creating ``/a/b/c`` needs no ``/a/b`` first.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeAlias

from multigres.topo.lock import LockHandle
from multigres.topo.watch import Watch

# The etcd mod_revision of the node: strictly increasing over the whole store, so a newer
# write always has a larger version. Callers treat it as opaque: read it, pass it back for
# compare-and-set.
Version: TypeAlias = int

# Defaults of Vitess (--topo_etcd_lease_ttl=30, --lock-timeout 45s), slightly shorter timeout:
# a lock waiter that waits longer than this is usually stuck behind a dead workflow.
DEFAULT_LOCK_TTL = 30
DEFAULT_LOCK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class KV:
    """One node: its path, data and version (as returned by :meth:`Conn.list_tree`)."""

    path: str
    data: bytes
    version: Version


def check_path(path: str) -> str:
    """Return ``path`` if it is a well-formed absolute path, else raise ValueError.

    ``/`` (the root directory) is allowed; a node path is ``/`` plus non-empty parts.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"topology path must be absolute (start with '/'): {path!r}")
    if path == "/":
        return path
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"malformed topology path {path!r} (empty, '.' or '..' part)")
    return path


def check_node_path(path: str) -> str:
    """Like :func:`check_path` but the root directory itself is not a node."""
    if check_path(path) == "/":
        raise ValueError("the root directory '/' is not a node")
    return path


def dir_prefix(path: str) -> str:
    """The prefix every node under the directory ``path`` starts with."""
    return "/" if path == "/" else path + "/"


class Conn(abc.ABC):
    """A connection to one topology store (Vitess ``topo.Conn``).

    All methods are coroutines except :meth:`watch`, :meth:`watch_prefix` and :meth:`lock`,
    which return objects used with ``async with``. Errors are those of
    :mod:`multigres.topo.errors`.
    """

    @abc.abstractmethod
    async def create(self, path: str, data: bytes) -> Version:
        """Create the node; raise NodeExists if it is already there."""

    @abc.abstractmethod
    async def update(self, path: str, data: bytes, version: Version | None) -> Version:
        """Write the node if its version is still ``version`` (compare-and-set).

        Raises BadVersion if it changed, NoNode if it is gone. ``version=None`` writes
        unconditionally and creates the node if needed (upsert).
        """

    @abc.abstractmethod
    async def get(self, path: str) -> tuple[bytes, Version]:
        """Return the node's data and version; raise NoNode."""

    @abc.abstractmethod
    async def delete(self, path: str, version: Version | None = None) -> None:
        """Delete the node (if still at ``version``, when given). NoNode / BadVersion."""

    @abc.abstractmethod
    async def list_dir(self, path: str) -> list[str]:
        """Sorted names of the immediate children of the directory ``path`` (nodes and
        sub-directories). An empty or missing directory gives ``[]``: etcd has no
        directories, so the two cannot be told apart."""

    @abc.abstractmethod
    async def list_tree(self, path: str, *, with_data: bool = True) -> list[KV]:
        """Every node under the directory ``path`` (recursively), sorted by path, read at
        one revision (one round trip in etcd). ``with_data=False`` leaves ``data`` empty
        (keys only: cheaper when only the names matter)."""

    @abc.abstractmethod
    def watch(self, path: str) -> Watch:
        """Watch one node. Use as ``async with conn.watch(path) as w: async for ev in w``.

        The first event is the current state (``data=None`` if the node does not exist);
        then every change, deletions included (``data=None``). The watch keeps going after a
        deletion, so a re-created node is seen too.
        """

    @abc.abstractmethod
    def watch_prefix(self, path: str) -> Watch:
        """Watch every node under the directory ``path``, recursively.

        The first events are the nodes that exist at the start (also in ``w.initial``), then
        every change under the directory.
        """

    @abc.abstractmethod
    def lock(
        self,
        path: str,
        *,
        purpose: str,
        ttl: int = DEFAULT_LOCK_TTL,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> AbstractAsyncContextManager[LockHandle]:
        """Take the exclusive lock on the directory ``path``: ``async with conn.lock(...)``.

        Waits up to ``timeout`` seconds, then raises LockTimeout naming the holder. In etcd
        the lock lives as long as a lease of ``ttl`` seconds that the holder keeps alive:
        if the holder dies, the lock is released ``ttl`` seconds later.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """End the watches and release the locks of this connection, then disconnect."""

    async def __aenter__(self) -> Conn:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
