"""Watch streams: the part every backend shares.

A backend subclass implements ``_open`` (read the current state and subscribe, atomically,
so that no change falls between the two) and ``_close``; it pushes changes with ``_emit``
from its own event source (etcd's watch stream, or the memory store's write path). The
consumer just iterates. Nothing here polls.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from multigres.topo.errors import TopoError


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One state of a node.

    ``data`` is None when the node is deleted (or, in the first event, absent). ``version``
    is the revision of the change (of the deletion, for a delete); None only for "absent at
    the start".
    """

    path: str
    data: bytes | None
    version: int | None

    @property
    def deleted(self) -> bool:
        return self.data is None


# What the queue carries: an event, the error that ended the stream, or None (stream over).
_Item = WatchEvent | TopoError | None


class Watch(abc.ABC):
    """An open watch: ``async with conn.watch(path) as w: async for event in w: ...``.

    ``initial`` holds the state at the start; iteration yields those events first, then the
    changes. If the store becomes unreachable, iteration raises TopoUnavailable and the watch
    is over: start a new one (it begins again with the current state, so nothing is missed).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.initial: list[WatchEvent] = []
        # Unbounded on purpose: topology changes are few and small, and a bound would force
        # either dropping a change (wrong) or blocking the backend's shared stream (worse).
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._started = False
        self._closed = False
        self._done = False

    @abc.abstractmethod
    async def _open(self) -> list[WatchEvent]:
        """Subscribe and return the current state; later changes go through ``_emit``."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Unsubscribe. Called once, also when the watch never started or failed to."""

    async def start(self) -> Self:
        if self._started:
            raise RuntimeError(f"watch on {self.path} already started")
        self._started = True
        try:
            self.initial = await self._open()
        except BaseException:
            # Unsubscribe what may have been set up, so that a caller retrying while the
            # store is down does not pile up dead watches on its connection.
            await self.close()
            raise
        for event in self.initial:
            self._queue.put_nowait(event)
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Wake a consumer blocked in __anext__ so that it sees the end.
        self._queue.put_nowait(None)
        await self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    # Called by the backend.
    def _emit(self, event: WatchEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def _fail(self, error: TopoError) -> None:
        if not self._closed:
            self._queue.put_nowait(error)

    def _end(self) -> None:
        self._queue.put_nowait(None)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        if not self._started:
            raise RuntimeError("start the watch first: `async with conn.watch(path) as w:`")
        if self._done or self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if self._closed or item is None:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, TopoError):
            self._done = True
            raise item
        return item
