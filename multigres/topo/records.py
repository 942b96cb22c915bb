"""The typed topology records, stored as JSON.

Each record carries the :data:`~multigres.topo.conn.Version` it was read at (``version``,
not stored). Updating a record is a compare-and-set on that version, so a read-modify-write
cannot silently overwrite someone else's change; ``version=None`` writes unconditionally.

Decoding ignores unknown fields and fills missing optional ones with their defaults, so an
older binary reads what a newer one wrote (and the other way round) during an upgrade.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from multigres.topo.conn import Version
from multigres.topo.keyrange import KeyRange


class RecordError(ValueError):
    """Stored bytes that are not a valid record."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _encode(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "version"
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _check_type(cls: type, name: str, hint: Any, value: Any) -> None:
    # A wrong type would fail far from here (a port that is a string); say it at the read.
    origin = typing.get_origin(hint) or hint
    if origin in (str, int, bool, float, list, dict):
        ok = isinstance(value, origin) and not (origin is int and isinstance(value, bool))
        if not ok:
            raise RecordError(f"{cls.__name__}.{name}: expected {origin.__name__}, got {value!r}")


def _decode(cls: type, d: Any) -> Any:
    if not isinstance(d, dict):
        raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "version" or f.name not in d:
            continue
        hint, value = hints[f.name], d[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = _decode(hint, value)
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            value = hint(value)
        else:
            _check_type(cls, f.name, hint, value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise RecordError(f"{cls.__name__}: {e}") from None


@dataclass
class Record:
    """Base of the JSON records."""

    # kw_only puts it after the fields of every subclass, so they can have required fields.
    version: Version | None = field(default=None, kw_only=True, compare=False)

    def to_json(self) -> bytes:
        return json.dumps(_encode(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, version: Version | None = None) -> Self:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise RecordError(f"{cls.__name__}: not JSON: {e}") from None
        try:
            record: Self = _decode(cls, d)
        except (ValueError, TypeError) as e:
            raise RecordError(f"{cls.__name__}: {e}") from None
        record.version = version
        return record


@dataclass
class Cell(Record):
    """A cell (zone, failure domain). Its data (the poolers) lives under ``/<name>/`` in the
    same etcd as the global data."""

    name: str
    region: str = ""


@dataclass
class DurabilityPolicy:
    """Which replicas must have a commit's WAL before the primary acknowledges it.

    - ``none``: asynchronous replication;
    - ``any``: any ``num_sync`` replicas (``synchronous_standby_names = ANY k (...)``);
    - ``cross_cell``: any ``num_sync`` replicas in cells other than the primary's.
    """

    KINDS: ClassVar[tuple[str, ...]] = ("none", "any", "cross_cell")

    kind: str = "any"
    num_sync: int = 1

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise RecordError(f"durability policy kind {self.kind!r} not one of {self.KINDS}")
        if self.num_sync < 0 or (self.kind == "none" and self.num_sync):
            raise RecordError(f"durability policy {self.kind!r}: bad num_sync {self.num_sync}")


@dataclass
class Database(Record):
    name: str
    durability_policy: DurabilityPolicy = field(default_factory=DurabilityPolicy)
    cells: list[str] = field(default_factory=list)


@dataclass
class TableGroup(Record):
    """A tablegroup of a database (a Vitess keyspace). An unsharded one has the single shard
    ``0``; a sharded one has shards named by their key ranges."""

    database: str
    name: str
    sharded: bool = False


@dataclass
class Shard(Record):
    """A shard of a tablegroup. ``name`` is its key range in hex (``-80``, ``80-``) or ``0``.

    ``primary_cell``/``primary_id`` name the primary's pooler ("" when none is known);
    ``primary_term`` grows by one at each reparent, so an old primary can tell it was
    replaced. ``is_primary_serving`` is turned off while writes are switched away from the
    shard (traffic switching, shard split).
    """

    database: str
    tablegroup: str
    name: str
    primary_cell: str = ""
    primary_id: str = ""
    primary_term: int = 0
    is_primary_serving: bool = True

    @property
    def key_range(self) -> KeyRange:
        return KeyRange.parse(self.name)


class PoolerRole(enum.StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


class ServingState(enum.StrEnum):
    SERVING = "serving"
    NOT_SERVING = "not_serving"
    # Taken out of service on purpose (maintenance, backup); health checks stay green.
    DRAINED = "drained"


@dataclass
class Pooler(Record):
    """A multipooler and the Postgres it fronts, registered in its cell.

    ``host:port`` is where it speaks the Postgres protocol, ``grpc_port`` its management
    API (0 if none), ``pg_host:pg_port`` the Postgres it owns.
    """

    id: str
    cell: str
    host: str
    port: int
    pg_host: str
    pg_port: int
    database: str
    tablegroup: str
    shard: str
    role: PoolerRole = PoolerRole.REPLICA
    serving_state: ServingState = ServingState.NOT_SERVING
    grpc_port: int = 0
    pgctld_data_dir: str = ""


@dataclass
class VSchema:
    """The sharding scheme of a database: an opaque JSON document (``doc``) here; the
    ``vschema`` package gives it meaning. Stored as ``doc`` alone."""

    database: str
    doc: dict[str, Any] = field(default_factory=dict)
    version: Version | None = field(default=None, kw_only=True, compare=False)

    def to_json(self) -> bytes:
        return json.dumps(self.doc, sort_keys=True).encode()

    @classmethod
    def load(cls, database: str, data: bytes, version: Version | None = None) -> VSchema:
        return cls(database, _load_doc(cls, data), version=version)


@dataclass
class Workflow:
    """The state of one workflow (MoveTables, Reshard, ...): an opaque JSON document owned by
    the ``workflow`` package. Stored as ``doc`` alone."""

    database: str
    name: str
    doc: dict[str, Any] = field(default_factory=dict)
    version: Version | None = field(default=None, kw_only=True, compare=False)

    def to_json(self) -> bytes:
        return json.dumps(self.doc, sort_keys=True).encode()

    @classmethod
    def load(
        cls, database: str, name: str, data: bytes, version: Version | None = None
    ) -> Workflow:
        return cls(database, name, _load_doc(cls, data), version=version)


def _load_doc(cls: type, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise RecordError(f"{cls.__name__}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(doc).__name__}")
    return doc
