"""The typed TopoServer, run against the memory and the etcd backend alike."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest

from multigres.testing.etcd import TopoBackend
from multigres.topo.errors import BadVersion, LockTimeout, NodeExists, NoNode
from multigres.topo.keyrange import check_coverage, keyspace_id
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

R = TypeVar("R")


async def next_change(w: RecordWatch[R]) -> RecordChange[R]:
    async with asyncio.timeout(1.0):
        return await anext(w)


def pooler(pid: str, cell: str = "zone1", shard: str = "0", **kw: object) -> Pooler:
    p = Pooler(
        id=pid,
        cell=cell,
        host="127.0.0.1",
        port=6432,
        pg_host="127.0.0.1",
        pg_port=5432,
        database="app",
        tablegroup="main",
        shard=shard,
    )
    for k, v in kw.items():
        setattr(p, k, v)
    return p


async def setup_db(ts: TopoServer, sharded: bool = False) -> None:
    await ts.create_cell(Cell("zone1"))
    await ts.create_database(Database("app", DurabilityPolicy("any", 1), ["zone1"]))
    await ts.create_tablegroup(TableGroup("app", "main", sharded=sharded))


async def test_cells(topo: TopoBackend) -> None:
    ts = topo.server()
    created = await ts.create_cell(Cell("zone1", region="eu"))
    await ts.create_cell(Cell("zone2"))
    assert created.version is not None
    assert await ts.get_cell("zone1") == Cell("zone1", region="eu")
    assert (await ts.get_cell("zone1")).version == created.version
    assert await ts.get_cell_names() == ["zone1", "zone2"]
    with pytest.raises(NodeExists):
        await ts.create_cell(Cell("zone1"))
    with pytest.raises(ValueError, match="reserved"):
        await ts.create_cell(Cell("global"))
    with pytest.raises(ValueError, match="invalid cell name"):
        await ts.create_cell(Cell("a/b"))
    await ts.delete_cell("zone2")
    assert await ts.get_cell_names() == ["zone1"]
    with pytest.raises(NoNode):
        await ts.get_cell("zone2")


async def test_database_round_trip_and_cas(topo: TopoBackend) -> None:
    ts, other = topo.server(), topo.server()
    db = Database("app", DurabilityPolicy("cross_cell", 2), ["zone1", "zone2"])
    created = await ts.create_database(db)
    assert db.version is None  # the argument is not changed; the result carries the version
    read = await other.get_database("app")
    assert read == db and read.version == created.version
    assert read.durability_policy == DurabilityPolicy("cross_cell", 2)

    read.cells.append("zone3")
    updated = await other.update_database(read)
    assert updated.version is not None and created.version is not None
    assert updated.version > created.version
    created.durability_policy = DurabilityPolicy("none", 0)
    with pytest.raises(BadVersion):
        await ts.update_database(created)  # stale: other wrote in between
    assert (await ts.get_database("app")).cells == ["zone1", "zone2", "zone3"]
    assert await ts.get_database_names() == ["app"]

    # A deleted database is no longer listed even while things remain under its directory.
    await ts.create_vschema(VSchema("app", {"tables": {}}))
    await ts.delete_database("app")
    assert await ts.get_database_names() == []


async def test_tablegroups_and_shards(topo: TopoBackend) -> None:
    ts = topo.server()
    with pytest.raises(NoNode, match="app"):
        await ts.create_tablegroup(TableGroup("app", "main"))
    await setup_db(ts, sharded=False)
    await ts.create_tablegroup(TableGroup("app", "users", sharded=True))
    assert await ts.get_tablegroup_names("app") == ["main", "users"]
    assert (await ts.get_tablegroup("app", "users")).sharded

    with pytest.raises(ValueError, match="unsharded"):
        await ts.create_shard(Shard("app", "main", "-80"))
    await ts.create_shard(Shard("app", "main", "0"))
    with pytest.raises(ValueError, match="must be written '-80'"):
        await ts.create_shard(Shard("app", "users", "-8000"))
    with pytest.raises(ValueError, match="hex"):
        await ts.create_shard(Shard("app", "users", "-zz"))
    with pytest.raises(NoNode):
        await ts.create_shard(Shard("app", "nope", "0"))
    for name in ("80-", "-80"):
        await ts.create_shard(Shard("app", "users", name))

    assert await ts.get_shard_names("app", "users") == ["-80", "80-"]
    shards = await ts.get_shards("app", "users")
    assert [s.name for s in shards] == ["-80", "80-"]
    check_coverage(s.key_range for s in shards)
    by_id = [s.name for s in shards if s.key_range.contains(keyspace_id(0x9000_0000_0000_0000))]
    assert by_id == ["80-"]

    shard = await ts.update_shard_fields(
        "app", "users", "-80", lambda s: setattr(s, "primary_id", "zone1-100")
    )
    assert shard.primary_id == "zone1-100"
    assert (await ts.get_shard("app", "users", "-80")).version == shard.version


async def test_update_fields_retries_on_concurrent_writes(topo: TopoBackend) -> None:
    ts = topo.server()
    await setup_db(ts, sharded=True)
    await ts.create_shard(Shard("app", "main", "-"))
    # Ten concurrent read-modify-writes of one record: CAS + retry loses none of them.
    await asyncio.gather(
        *(
            ts.update_shard_fields(
                "app", "main", "-", lambda s: setattr(s, "primary_term", s.primary_term + 1)
            )
            for _ in range(10)
        )
    )
    assert (await ts.get_shard("app", "main", "-")).primary_term == 10


async def test_poolers(topo: TopoBackend) -> None:
    ts = topo.server()
    with pytest.raises(NoNode, match="zone1"):
        await ts.create_pooler(pooler("zone1-1"))
    await setup_db(ts, sharded=True)
    await ts.create_cell(Cell("zone2"))
    p1 = await ts.create_pooler(
        pooler("zone1-1", shard="-80", role=PoolerRole.PRIMARY, pgctld_data_dir="/d/1")
    )
    await ts.create_pooler(pooler("zone1-2", shard="-80"))
    await ts.create_pooler(pooler("zone1-3", shard="80-"))
    await ts.update_pooler(pooler("zone2-1", cell="zone2"))  # version None: registers
    read = await ts.get_pooler("zone1", "zone1-1")
    assert read == p1 and read.role is PoolerRole.PRIMARY and read.pgctld_data_dir == "/d/1"
    assert await ts.get_pooler_ids("zone1") == ["zone1-1", "zone1-2", "zone1-3"]
    assert [p.id for p in await ts.get_poolers("zone1", shard="-80")] == ["zone1-1", "zone1-2"]
    assert [p.id for p in await ts.get_poolers("zone2")] == ["zone2-1"]
    stale = await ts.get_pooler("zone1", "zone1-2")
    updated = await ts.update_pooler_fields(
        "zone1", "zone1-2", lambda p: setattr(p, "serving_state", ServingState.SERVING)
    )
    assert updated.serving_state is ServingState.SERVING
    stale.port = 7000
    with pytest.raises(BadVersion):
        await ts.update_pooler(stale)
    await ts.delete_pooler("zone1", "zone1-3")
    assert await ts.get_pooler_ids("zone1") == ["zone1-1", "zone1-2"]


async def test_watch_poolers_sees_role_changes(topo: TopoBackend) -> None:
    gateway, pooler_side = topo.server(), topo.server()
    await setup_db(pooler_side, sharded=True)
    await pooler_side.create_pooler(pooler("zone1-1", role=PoolerRole.PRIMARY))
    async with gateway.watch_poolers("zone1") as w:
        assert [(c.name, c.record and c.record.role) for c in w.initial] == [
            ("zone1-1", PoolerRole.PRIMARY)
        ]
        assert (await next_change(w)).name == "zone1-1"

        await pooler_side.create_pooler(pooler("zone1-2"))
        change = await next_change(w)
        assert change.name == "zone1-2" and change.record is not None
        assert change.record.role is PoolerRole.REPLICA

        # A failover: the replica becomes primary, the old primary a replica.
        await pooler_side.update_pooler_fields(
            "zone1", "zone1-2", lambda p: setattr(p, "role", PoolerRole.PRIMARY)
        )
        await pooler_side.update_pooler_fields(
            "zone1", "zone1-1", lambda p: setattr(p, "role", PoolerRole.REPLICA)
        )
        c1, c2 = await next_change(w), await next_change(w)
        assert (c1.name, c1.record and c1.record.role) == ("zone1-2", PoolerRole.PRIMARY)
        assert (c2.name, c2.record and c2.record.role) == ("zone1-1", PoolerRole.REPLICA)
        assert c2.record is not None and c2.version == c2.record.version

        # Locking a pooler's directory writes a lock key there: not a pooler, not reported.
        async with pooler_side.conn.lock("/zone1/poolers/zone1-1", purpose="x", ttl=5):
            pass
        await pooler_side.delete_pooler("zone1", "zone1-2")
        gone = await next_change(w)
        assert (gone.name, gone.record) == ("zone1-2", None)


async def test_watch_pooler_and_unreadable_records(topo: TopoBackend) -> None:
    ts = topo.server()
    await setup_db(ts)
    async with ts.watch_pooler("zone1", "zone1-7") as w:
        assert w.initial == [RecordChange("zone1-7", None, None)]
        await next_change(w)
        # A corrupt write is logged and skipped, the next good one comes through.
        await ts.conn.update("/zone1/poolers/zone1-7/Pooler", b"{not json", None)
        p = await ts.update_pooler(pooler("zone1-7"))
        change = await next_change(w)
        assert change.record == p and change.version == p.version


async def test_vschema(topo: TopoBackend) -> None:
    ts, cli = topo.server(), topo.server()
    await setup_db(ts)
    with pytest.raises(NoNode):
        await ts.get_vschema("app")
    doc = {"tablegroups": {"main": {"sharded": False, "tables": {"t": {}}}}}
    async with ts.watch_vschema("app") as w:
        assert w.initial[0].record is None
        await next_change(w)
        created = await cli.create_vschema(VSchema("app", doc))
        change = await next_change(w)
        assert change.record == VSchema("app", doc) and change.version == created.version

        created.doc["tablegroups"]["main"]["tables"]["u"] = {}
        updated = await cli.update_vschema(created)
        change = await next_change(w)
        assert (
            change.record is not None and "u" in change.record.doc["tablegroups"]["main"]["tables"]
        )
        with pytest.raises(BadVersion):
            await ts.update_vschema(VSchema("app", {}, version=created.version))
    assert (await ts.get_vschema("app")).version == updated.version


async def test_workflows(topo: TopoBackend) -> None:
    ts = topo.server()
    await setup_db(ts)
    wf = await ts.create_workflow(Workflow("app", "move1", {"type": "MoveTables", "state": "copy"}))
    await ts.create_workflow(Workflow("app", "reshard1", {"type": "Reshard"}))
    assert await ts.get_workflow_names("app") == ["move1", "reshard1"]
    read = await ts.get_workflow("app", "move1")
    assert read.doc == {"type": "MoveTables", "state": "copy"} and read.version == wf.version
    read.doc["state"] = "running"
    await ts.update_workflow(read)
    with pytest.raises(BadVersion):
        await ts.update_workflow(wf)
    with pytest.raises(NodeExists):
        await ts.create_workflow(Workflow("app", "move1"))
    await ts.delete_workflow("app", "move1")
    assert await ts.get_workflow_names("app") == ["reshard1"]


async def test_shard_lock(topo: TopoBackend) -> None:
    orch, workflow = topo.server(), topo.server()
    await setup_db(orch, sharded=True)
    await orch.create_shard(Shard("app", "main", "-80"))
    await orch.create_shard(Shard("app", "main", "80-"))
    with pytest.raises(NoNode):
        async with orch.lock_shard("app", "main", "-40", "typo"):
            pass
    async with orch.lock_shard("app", "main", "-80", "reparent -80", ttl=5) as lock:
        assert lock.holder.purpose == "reparent -80"
        # Another shard is not blocked; the same shard is.
        async with workflow.lock_shard("app", "main", "80-", "reshard", timeout=1):
            pass
        with pytest.raises(LockTimeout, match="reparent -80"):
            async with workflow.lock_shard("app", "main", "-80", "reshard", timeout=0.2):
                pass
        # The lock does not disturb the shard's record or its listing.
        assert await orch.get_shard_names("app", "main") == ["-80", "80-"]
    async with workflow.lock_shard("app", "main", "-80", "reshard", timeout=1):
        pass
    async with workflow.lock_database("app", "vschema change", timeout=1):
        pass
