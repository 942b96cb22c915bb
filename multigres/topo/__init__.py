"""The topology: the small amount of cluster state kept in etcd (Vitess's topo).

- :mod:`.conn`: the low-level interface (:class:`Conn`: versioned nodes, watches, locks);
- :mod:`.etcd` / :mod:`.memory`: its two implementations;
- :mod:`.server`: :class:`TopoServer`, the typed records over a Conn, and the key layout;
- :mod:`.records`, :mod:`.keyrange`, :mod:`.errors`;
- :mod:`.etcd_process`: run an etcd server.
"""

from multigres.topo.conn import KV, Conn, Version
from multigres.topo.errors import (
    BadVersion,
    LockLost,
    LockTimeout,
    NodeExists,
    NoNode,
    TopoError,
    TopoUnavailable,
)
from multigres.topo.keyrange import KeyRange, KeyRangeError
from multigres.topo.lock import LockHandle, LockHolder
from multigres.topo.records import (
    Cell,
    Database,
    DurabilityPolicy,
    Pooler,
    PoolerRole,
    ServingState,
    Shard,
    TableGroup,
    VSchema,
    Workflow,
)
from multigres.topo.server import RecordChange, RecordWatch, TopoServer
from multigres.topo.watch import Watch, WatchEvent

__all__ = [
    "KV",
    "BadVersion",
    "Cell",
    "Conn",
    "Database",
    "DurabilityPolicy",
    "KeyRange",
    "KeyRangeError",
    "LockHandle",
    "LockHolder",
    "LockLost",
    "LockTimeout",
    "NoNode",
    "NodeExists",
    "Pooler",
    "PoolerRole",
    "RecordChange",
    "RecordWatch",
    "ServingState",
    "Shard",
    "TableGroup",
    "TopoError",
    "TopoServer",
    "TopoUnavailable",
    "VSchema",
    "Version",
    "Watch",
    "WatchEvent",
    "Workflow",
]
