"""The VSchema of each database the gateway serves, kept current by a topology watch.

A database's watch starts the first time a session asks (``get``) and runs until the gateway
closes: a change applied with ``multigres vschema apply`` reaches the gateway as a watch event
(no polling), typically within milliseconds. Each change clears the plan cache (plans depend
on the VSchema; changes are rare) and bumps ``version`` so sessions see it.

A database without a VSchema document (or with one that no longer parses: the last good one
stays, and the error is logged) is unsharded: ``get`` returns None and sessions forward as
they always did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from multigres.gateway.follow import follow
from multigres.topo.records import VSchema as VSchemaRecord
from multigres.topo.server import RecordChange, TopoServer
from multigres.vschema.errors import VSchemaError
from multigres.vschema.model import VSchema

log = logging.getLogger("multigres.gateway")


class VSchemas:
    def __init__(self, topo: TopoServer, on_change: Callable[[str], None]) -> None:
        self.topo = topo
        self.on_change = on_change
        self._schemas: dict[str, VSchema | None] = {}
        self._versions: dict[str, int] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def current(self, database: str) -> VSchema | None:
        """What is known now (None: unsharded, or not watched yet)."""
        return self._schemas.get(database)

    def sharded(self, database: str) -> bool:
        vs = self._schemas.get(database)
        return vs is not None and any(tg.sharded for tg in vs.tablegroups.values())

    async def get(self, database: str, within: float = 5.0) -> VSchema | None:
        """The database's VSchema, starting its watch if needed (waits for the first read)."""
        ev = self._ready.get(database)
        if ev is None:
            ev = self._ready[database] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._watch(database, ev)))
        if not ev.is_set():
            try:
                async with asyncio.timeout(within):
                    await ev.wait()
            except TimeoutError:
                log.warning("vschema of %s not read within %g s; serving it unsharded for now",
                            database, within)
        return self._schemas.get(database)

    async def close(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _set(self, database: str, doc: dict[str, object] | None, version: object) -> None:
        if doc is None:
            vs = None
        else:
            try:
                vs = VSchema.parse(doc, strict=False)
            except VSchemaError as e:
                log.error("vschema of %s (version %s) is not valid, keeping the last good one: "
                          "%s", database, version, e)
                return
            vs.version = version  # type: ignore[assignment]
        self._schemas[database] = vs
        self._versions[database] = self._versions.get(database, 0) + 1
        self.on_change(database)

    async def _watch(self, database: str, ready: asyncio.Event) -> None:
        async def initial(changes: list[RecordChange[VSchemaRecord]]) -> None:
            for change in changes:
                await changed(change)

        async def changed(change: RecordChange[VSchemaRecord]) -> None:
            rec = change.record
            self._set(database, None if rec is None else rec.doc,
                      None if rec is None else rec.version)

        await follow(f"the vschema of {database}", lambda: self.topo.watch_vschema(database),
                     initial, changed, lambda: self.closed, ready)
