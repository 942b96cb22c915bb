"""TopoServer: the typed topology (cells, databases, tablegroups, shards, poolers, vschema,
workflows, shard locks and watches) over any :class:`~multigres.topo.conn.Conn`.

Key layout, under the connection's root (``/multigres`` in etcd). As in Vitess, a record is a
file with a fixed name inside its own directory, so that a directory can hold both a record
and children (a shard's lock, a database's tablegroups):

    /global/cells/<cell>/Cell
    /global/databases/<db>/Database
    /global/databases/<db>/VSchema
    /global/databases/<db>/locks/<lease>                       (while the database is locked)
    /global/databases/<db>/tablegroups/<tg>/TableGroup
    /global/databases/<db>/tablegroups/<tg>/shards/<shard>/Shard
    /global/databases/<db>/tablegroups/<tg>/shards/<shard>/locks/<lease>   (while locked)
    /global/databases/<db>/workflows/<name>/Workflow
    /<cell>/poolers/<pooler id>/Pooler

``global`` holds what is the same everywhere and changes rarely; each cell's directory holds
what its own processes write often (pooler registrations, role and serving state), so that
the gateways and the orchestrator of a cell watch one small subtree.

Every read returns the record with its version; every update is a compare-and-set on the
version the record was read at (BadVersion if someone else wrote in between) unless the
version is None (unconditional). ``update_*_fields`` do the read-modify-write-retry loop.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from multigres.topo.conn import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOCK_TTL, Conn, Version
from multigres.topo.errors import BadVersion
from multigres.topo.keyrange import canonical_shard_name
from multigres.topo.lock import LockHandle
from multigres.topo.records import (
    Cell,
    Database,
    Pooler,
    RecordError,
    Shard,
    TableGroup,
    VSchema,
    Workflow,
)
from multigres.topo.watch import Watch, WatchEvent

log = logging.getLogger(__name__)

GLOBAL = "global"
# Read-modify-write attempts before giving up on a hot record.
UPDATE_RETRIES = 10

_BAD_NAME = re.compile(r"[/\s\x00-\x1f\x7f]")


def check_name(kind: str, name: str) -> str:
    """A name becomes one path component: no '/', no whitespace, not '.' or '..'."""
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise ValueError(f"invalid {kind} name {name!r}: must be non-empty, without '/' or spaces")
    return name


def check_cell_name(name: str) -> str:
    check_name("cell", name)
    if name == GLOBAL:
        raise ValueError(f"{GLOBAL!r} is reserved for the global topology, not a cell name")
    return name


# -- paths -----------------------------------------------------------------------------------


def cells_dir() -> str:
    return f"/{GLOBAL}/cells"


def cell_path(cell: str) -> str:
    return f"{cells_dir()}/{check_cell_name(cell)}/Cell"


def databases_dir() -> str:
    return f"/{GLOBAL}/databases"


def database_dir(db: str) -> str:
    return f"{databases_dir()}/{check_name('database', db)}"


def database_path(db: str) -> str:
    return f"{database_dir(db)}/Database"


def vschema_path(db: str) -> str:
    return f"{database_dir(db)}/VSchema"


def tablegroups_dir(db: str) -> str:
    return f"{database_dir(db)}/tablegroups"


def tablegroup_dir(db: str, tg: str) -> str:
    return f"{tablegroups_dir(db)}/{check_name('tablegroup', tg)}"


def tablegroup_path(db: str, tg: str) -> str:
    return f"{tablegroup_dir(db, tg)}/TableGroup"


def shards_dir(db: str, tg: str) -> str:
    return f"{tablegroup_dir(db, tg)}/shards"


def shard_dir(db: str, tg: str, shard: str) -> str:
    return f"{shards_dir(db, tg)}/{check_name('shard', shard)}"


def shard_path(db: str, tg: str, shard: str) -> str:
    return f"{shard_dir(db, tg, shard)}/Shard"


def workflows_dir(db: str) -> str:
    return f"{database_dir(db)}/workflows"


def workflow_path(db: str, name: str) -> str:
    return f"{workflows_dir(db)}/{check_name('workflow', name)}/Workflow"


def poolers_dir(cell: str) -> str:
    return f"/{check_cell_name(cell)}/poolers"


def pooler_path(cell: str, pooler_id: str) -> str:
    return f"{poolers_dir(cell)}/{check_name('pooler id', pooler_id)}/Pooler"


# -- typed watches ---------------------------------------------------------------------------


class _Stored(Protocol):
    version: Version | None

    def to_json(self) -> bytes: ...


R = TypeVar("R")
S = TypeVar("S", bound=_Stored)


@dataclass(frozen=True, slots=True)
class RecordChange(Generic[R]):
    """One state of a watched record: ``name`` says which (pooler id, database, shard);
    ``record`` is None when it is deleted (or absent at the start)."""

    name: str
    record: R | None
    version: Version | None


class RecordWatch(Generic[R]):
    """A watch that yields typed :class:`RecordChange`: ``async with ts.watch_poolers(cell)
    as w: async for change in w: ...``. ``initial`` is the state at the start; iteration
    yields it first. A record that cannot be decoded is logged and skipped, so that one bad
    write does not blind every watcher."""

    def __init__(self, watch: Watch, decode: Callable[[WatchEvent], RecordChange[R] | None]):
        self._watch = watch
        self._decode = decode
        self.initial: list[RecordChange[R]] = []

    def _convert(self, event: WatchEvent) -> RecordChange[R] | None:
        try:
            return self._decode(event)
        except RecordError as e:
            log.warning("ignoring unreadable topology record %s: %s", event.path, e)
            return None

    async def start(self) -> Self:
        await self._watch.start()
        self.initial = [c for e in self._watch.initial if (c := self._convert(e)) is not None]
        return self

    async def close(self) -> None:
        await self._watch.close()

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

    async def __anext__(self) -> RecordChange[R]:
        while True:
            change = self._convert(await self._watch.__anext__())
            if change is not None:
                return change


def _record_decoder(
    leaf: str, load: Callable[[str, bytes, Version | None], R]
) -> Callable[[WatchEvent], RecordChange[R] | None]:
    """Decode events of records stored as ``.../<name>/<leaf>``; skip other keys."""

    def decode(event: WatchEvent) -> RecordChange[R] | None:
        parts = event.path.rsplit("/", 2)
        if len(parts) != 3 or parts[2] != leaf:
            return None
        name = parts[1]
        if event.data is None:
            return RecordChange(name, None, event.version)
        return RecordChange(name, load(name, event.data, event.version), event.version)

    return decode


# -- the server ------------------------------------------------------------------------------


class TopoServer:
    """The typed topology over ``conn``; closing the server closes the connection."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # generic helpers

    async def _create(self, path: str, record: S) -> S:
        version = await self.conn.create(path, record.to_json())
        return _with_version(record, version)

    async def _update(self, path: str, record: S) -> S:
        version = await self.conn.update(path, record.to_json(), record.version)
        return _with_version(record, version)

    async def _names(self, path: str, leaf: str) -> list[str]:
        """Names of the children of ``path`` that hold a ``leaf`` record."""
        # From the keys, not list_dir: a directory can outlive its record (a deleted
        # database whose tablegroups remain), and such a name must not be listed.
        prefix = path + "/"
        return sorted(
            kv.path[len(prefix) :].split("/", 1)[0]
            for kv in await self.conn.list_tree(path, with_data=False)
            if kv.path.count("/") == prefix.count("/") + 1 and kv.path.endswith("/" + leaf)
        )

    async def _update_fields(
        self,
        get: Callable[[], Awaitable[S]],
        put: Callable[[S], Awaitable[S]],
        change: Callable[[S], None],
    ) -> S:
        for attempt in range(UPDATE_RETRIES):
            record = await get()
            change(record)
            try:
                return await put(record)
            except BadVersion:
                # Someone else wrote in between: apply the change again to the new state.
                if attempt == UPDATE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # cells

    async def create_cell(self, cell: Cell) -> Cell:
        return await self._create(cell_path(cell.name), cell)

    async def get_cell(self, name: str) -> Cell:
        data, version = await self.conn.get(cell_path(name))
        return Cell.from_json(data, version)

    async def update_cell(self, cell: Cell) -> Cell:
        return await self._update(cell_path(cell.name), cell)

    async def delete_cell(self, name: str, version: Version | None = None) -> None:
        await self.conn.delete(cell_path(name), version)

    async def get_cell_names(self) -> list[str]:
        return await self._names(cells_dir(), "Cell")

    # databases

    async def create_database(self, db: Database) -> Database:
        for cell in db.cells:
            check_cell_name(cell)
        return await self._create(database_path(db.name), db)

    async def get_database(self, name: str) -> Database:
        data, version = await self.conn.get(database_path(name))
        return Database.from_json(data, version)

    async def update_database(self, db: Database) -> Database:
        return await self._update(database_path(db.name), db)

    async def delete_database(self, name: str, version: Version | None = None) -> None:
        """Delete the database record only; its tablegroups, vschema and workflows stay."""
        await self.conn.delete(database_path(name), version)

    async def get_database_names(self) -> list[str]:
        return await self._names(databases_dir(), "Database")

    # tablegroups

    async def create_tablegroup(self, tg: TableGroup) -> TableGroup:
        await self.get_database(tg.database)  # NoNode names the missing database
        return await self._create(tablegroup_path(tg.database, tg.name), tg)

    async def get_tablegroup(self, database: str, name: str) -> TableGroup:
        data, version = await self.conn.get(tablegroup_path(database, name))
        return TableGroup.from_json(data, version)

    async def update_tablegroup(self, tg: TableGroup) -> TableGroup:
        return await self._update(tablegroup_path(tg.database, tg.name), tg)

    async def delete_tablegroup(
        self, database: str, name: str, version: Version | None = None
    ) -> None:
        await self.conn.delete(tablegroup_path(database, name), version)

    async def get_tablegroup_names(self, database: str) -> list[str]:
        return await self._names(tablegroups_dir(database), "TableGroup")

    # shards

    async def create_shard(self, shard: Shard) -> Shard:
        canonical = canonical_shard_name(shard.name)  # KeyRangeError if not a key range
        if canonical != shard.name:
            raise ValueError(f"shard name {shard.name!r} must be written {canonical!r}")
        tg = await self.get_tablegroup(shard.database, shard.tablegroup)
        if not tg.sharded and not shard.key_range.is_full:
            raise ValueError(
                f"tablegroup {tg.database}.{tg.name} is unsharded: its one shard is '0', "
                f"not {shard.name!r}"
            )
        return await self._create(shard_path(shard.database, shard.tablegroup, shard.name), shard)

    async def get_shard(self, database: str, tablegroup: str, name: str) -> Shard:
        data, version = await self.conn.get(shard_path(database, tablegroup, name))
        return Shard.from_json(data, version)

    async def update_shard(self, shard: Shard) -> Shard:
        return await self._update(shard_path(shard.database, shard.tablegroup, shard.name), shard)

    async def update_shard_fields(
        self, database: str, tablegroup: str, name: str, change: Callable[[Shard], None]
    ) -> Shard:
        """Read the shard, apply ``change`` (which edits it in place), write it back with
        compare-and-set; on BadVersion read again and retry."""
        return await self._update_fields(
            lambda: self.get_shard(database, tablegroup, name), self.update_shard, change
        )

    async def delete_shard(
        self, database: str, tablegroup: str, name: str, version: Version | None = None
    ) -> None:
        await self.conn.delete(shard_path(database, tablegroup, name), version)

    async def get_shard_names(self, database: str, tablegroup: str) -> list[str]:
        return await self._names(shards_dir(database, tablegroup), "Shard")

    async def get_shards(self, database: str, tablegroup: str) -> list[Shard]:
        """Every shard of the tablegroup, in one read."""
        return [
            Shard.from_json(kv.data, kv.version)
            for kv in await self.conn.list_tree(shards_dir(database, tablegroup))
            if kv.path.endswith("/Shard")
        ]

    def lock_shard(
        self,
        database: str,
        tablegroup: str,
        shard: str,
        purpose: str,
        *,
        ttl: int = DEFAULT_LOCK_TTL,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> AbstractAsyncContextManager[LockHandle]:
        """``async with ts.lock_shard(db, tg, "-80", "reparent") as lock:`` - the lock that
        reparents, resharding and traffic switches take on a shard. NoNode if the shard
        does not exist."""
        return self._lock_existing(
            lambda: self.get_shard(database, tablegroup, shard),
            shard_dir(database, tablegroup, shard),
            purpose,
            ttl,
            timeout,
        )

    def lock_database(
        self,
        database: str,
        purpose: str,
        *,
        ttl: int = DEFAULT_LOCK_TTL,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> AbstractAsyncContextManager[LockHandle]:
        """The database-wide lock (vschema changes, workflow creation, routing switches)."""
        return self._lock_existing(
            lambda: self.get_database(database), database_dir(database), purpose, ttl, timeout
        )

    @asynccontextmanager
    async def _lock_existing(
        self,
        check: Callable[[], Awaitable[object]],
        path: str,
        purpose: str,
        ttl: int,
        timeout: float,  # noqa: ASYNC109 - see Conn.lock
    ) -> AsyncIterator[LockHandle]:
        await check()
        async with self.conn.lock(path, purpose=purpose, ttl=ttl, timeout=timeout) as handle:
            yield handle

    def watch_shard(self, database: str, tablegroup: str, name: str) -> RecordWatch[Shard]:
        return RecordWatch(
            self.conn.watch(shard_path(database, tablegroup, name)),
            _record_decoder("Shard", lambda _n, data, v: Shard.from_json(data, v)),
        )

    # poolers

    async def create_pooler(self, pooler: Pooler) -> Pooler:
        """Register a new pooler; NoNode if its cell does not exist."""
        await self.get_cell(pooler.cell)
        return await self._create(pooler_path(pooler.cell, pooler.id), pooler)

    async def get_pooler(self, cell: str, pooler_id: str) -> Pooler:
        data, version = await self.conn.get(pooler_path(cell, pooler_id))
        return Pooler.from_json(data, version)

    async def update_pooler(self, pooler: Pooler) -> Pooler:
        """Compare-and-set on ``pooler.version``; with ``version=None``, write (or register)
        unconditionally, which is what a pooler does at startup."""
        return await self._update(pooler_path(pooler.cell, pooler.id), pooler)

    async def update_pooler_fields(
        self, cell: str, pooler_id: str, change: Callable[[Pooler], None]
    ) -> Pooler:
        return await self._update_fields(
            lambda: self.get_pooler(cell, pooler_id), self.update_pooler, change
        )

    async def delete_pooler(
        self, cell: str, pooler_id: str, version: Version | None = None
    ) -> None:
        await self.conn.delete(pooler_path(cell, pooler_id), version)

    async def get_pooler_ids(self, cell: str) -> list[str]:
        return await self._names(poolers_dir(cell), "Pooler")

    async def get_poolers(
        self,
        cell: str,
        *,
        database: str | None = None,
        tablegroup: str | None = None,
        shard: str | None = None,
    ) -> list[Pooler]:
        """The poolers of a cell (in one read), optionally only those of a database,
        tablegroup or shard."""
        poolers = [
            Pooler.from_json(kv.data, kv.version)
            for kv in await self.conn.list_tree(poolers_dir(cell))
            if kv.path.endswith("/Pooler")
        ]
        return [
            p
            for p in poolers
            if (database is None or p.database == database)
            and (tablegroup is None or p.tablegroup == tablegroup)
            and (shard is None or p.shard == shard)
        ]

    def watch_pooler(self, cell: str, pooler_id: str) -> RecordWatch[Pooler]:
        return RecordWatch(
            self.conn.watch(pooler_path(cell, pooler_id)),
            _record_decoder("Pooler", lambda _n, data, v: Pooler.from_json(data, v)),
        )

    def watch_poolers(self, cell: str) -> RecordWatch[Pooler]:
        """Every pooler of the cell: registrations, role and serving-state changes, removals
        (``RecordChange.name`` is the pooler id)."""
        return RecordWatch(
            self.conn.watch_prefix(poolers_dir(cell)),
            _record_decoder("Pooler", lambda _n, data, v: Pooler.from_json(data, v)),
        )

    # vschema

    async def create_vschema(self, vschema: VSchema) -> VSchema:
        return await self._create(vschema_path(vschema.database), vschema)

    async def get_vschema(self, database: str) -> VSchema:
        data, version = await self.conn.get(vschema_path(database))
        return VSchema.load(database, data, version)

    async def update_vschema(self, vschema: VSchema) -> VSchema:
        return await self._update(vschema_path(vschema.database), vschema)

    async def delete_vschema(self, database: str, version: Version | None = None) -> None:
        await self.conn.delete(vschema_path(database), version)

    def watch_vschema(self, database: str) -> RecordWatch[VSchema]:
        return RecordWatch(
            self.conn.watch(vschema_path(database)),
            _record_decoder("VSchema", lambda db, data, v: VSchema.load(db, data, v)),
        )

    # workflows

    async def create_workflow(self, wf: Workflow) -> Workflow:
        return await self._create(workflow_path(wf.database, wf.name), wf)

    async def get_workflow(self, database: str, name: str) -> Workflow:
        data, version = await self.conn.get(workflow_path(database, name))
        return Workflow.load(database, name, data, version)

    async def update_workflow(self, wf: Workflow) -> Workflow:
        return await self._update(workflow_path(wf.database, wf.name), wf)

    async def delete_workflow(
        self, database: str, name: str, version: Version | None = None
    ) -> None:
        await self.conn.delete(workflow_path(database, name), version)

    async def get_workflow_names(self, database: str) -> list[str]:
        return await self._names(workflows_dir(database), "Workflow")


def _with_version(record: S, version: Version) -> S:
    # A copy: the caller's object keeps the version it was read at, and shares no list.
    out = copy.deepcopy(record)
    out.version = version
    return out
