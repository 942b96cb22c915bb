"""`multigres switchover` against a real shard (pgctld instances, etcd topology): under a
stream of synchronous commits, no acknowledged row is lost, the old primary streams from the
new one, and the topology names the new primary with a higher term."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from multigres.cli.main import main
from multigres.cli.switchover import find_members
from multigres.orch.switchover import ShardRef, SwitchoverError, Timeouts, parse_lsn, switchover
from multigres.pgctld.errors import PgctldError
from multigres.pgctld.instance import PgInstance
from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.postgres import PgHarness, wait_for
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import (
    Cell,
    Database,
    DurabilityPolicy,
    Pooler,
    PoolerRole,
    ServingState,
    Shard,
    TableGroup,
)
from multigres.topo.server import TopoServer

pytestmark = pytest.mark.integration

REF = ShardRef("postgres", "default", "0")


@dataclass
class Cluster:
    """A cluster directory as `multigres cluster` lays it out, over the harness's instances."""

    root: Path
    etcd: str
    topo_root: str
    instances: list[PgInstance]

    def topo(self) -> TopoServer:
        return TopoServer(EtcdConn(self.etcd, root=self.topo_root))

    def by_name(self, name: str) -> PgInstance:
        """A fresh handle: a PgInstance caches its spec, which the switchover rewrote."""
        return PgInstance(next(i for i in self.instances if i.spec.name == name).inst_dir)


async def _publish(cluster: Cluster, primary: PgInstance) -> None:
    async with cluster.topo() as topo:
        await topo.create_cell(Cell("zone1"))
        await topo.create_database(Database("postgres", DurabilityPolicy("any", 1), ["zone1"]))
        await topo.create_tablegroup(TableGroup("postgres", "default"))
        await topo.create_shard(Shard("postgres", "default", "0", "zone1", primary.spec.name,
                                      primary_term=1))
        for inst in cluster.instances:
            await topo.create_pooler(Pooler(
                inst.spec.name, "zone1", "127.0.0.1", 0, "127.0.0.1", inst.spec.port,
                "postgres", "default", "0",
                role=PoolerRole.PRIMARY if inst is primary else PoolerRole.REPLICA,
                serving_state=ServingState.SERVING, pgctld_data_dir=str(inst.data_dir)))


@pytest.fixture(scope="module")
def cluster(
    pg_harness: PgHarness, etcd_server: ThrowawayEtcd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    primary, replicas = pg_harness.shard(replicas=2, num_sync=1, prefix="switch")
    root = tmp_path_factory.mktemp("cluster")
    # The command finds instances under <cluster dir>/pg/: there, the harness's.
    (root / "pg").symlink_to(pg_harness.base)
    topo_root = f"/switchover-{uuid.uuid4().hex[:8]}"
    (root / "cluster.yaml").write_text(f"""\
etcd:
  listen: {etcd_server.address}
topo_root: {topo_root}
databases:
  - name: postgres
    durability: {{num_sync: 1}}
    tablegroups:
      - name: default
        shards:
          - name: "0"
            instances: [zone1, zone1, zone1]
""")
    c = Cluster(root, etcd_server.address, topo_root, [primary, *replicas])
    asyncio.run(_publish(c, primary))
    with primary.connect() as conn:
        conn.execute("CREATE TABLE acked (id int PRIMARY KEY, port int)")
    yield c


@dataclass
class Writer:
    """Inserts rows one commit at a time into whichever instance is the primary, and keeps
    the ids whose commit was acknowledged (synchronous_commit = on, policy ANY 1)."""

    instances: list[PgInstance]
    acked: dict[int, int] = field(default_factory=dict)  # id -> port that acknowledged it
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    progress: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        next_id = 0
        while not self.stop.is_set():
            for inst in self.instances:
                try:
                    with inst.connect(connect_timeout=2) as conn:
                        if conn.execute("SELECT pg_is_in_recovery()").fetchone() != (False,):
                            continue
                        while not self.stop.is_set():
                            next_id += 1
                            conn.execute("INSERT INTO acked VALUES (%s, %s)",
                                         (next_id, inst.spec.port))
                            with self.progress:
                                self.acked[next_id] = inst.spec.port
                                self.progress.notify_all()
                except psycopg.Error:
                    self.failures += 1
            self.stop.wait(0.02)

    def wait_acked(self, n: int, on_port: int | None = None, timeout: float = 20) -> None:
        def enough() -> bool:
            return sum(1 for p in self.acked.values() if on_port in (None, p)) >= n

        with self.progress:
            assert self.progress.wait_for(enough, timeout), (n, on_port, len(self.acked))


def _ids(inst: PgInstance) -> set[int]:
    with inst.connect() as conn:
        return {r[0] for r in conn.execute("SELECT id FROM acked").fetchall()}


async def test_switchover_under_writes_loses_no_acknowledged_commit(cluster: Cluster) -> None:
    writer = Writer(cluster.instances)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    lines: list[str] = []
    try:
        await asyncio.to_thread(writer.wait_acked, 20)
        async with cluster.topo() as topo:
            before = await topo.get_shard("postgres", "default", "0")
            members = await find_members(topo, REF, cluster.root / "pg")
            result = await switchover(topo, REF, members, say=lines.append,
                                      timeouts=Timeouts(catch_up=20, streaming=20))
            after = await topo.get_shard("postgres", "default", "0")
            poolers = {p.id: p.role for p in await topo.get_poolers("zone1", database="postgres")}
        new = cluster.by_name(result.new_primary)
        # Writes go on, acknowledged by the new primary.
        await asyncio.to_thread(writer.wait_acked, 20, new.spec.port)
    finally:
        writer.stop.set()
        await asyncio.to_thread(thread.join, 10)
    print("\n".join(lines), f"\n{writer.failures} failed attempts, {len(writer.acked)} acked")
    old = cluster.by_name(result.old_primary)
    assert result.old_primary == before.primary_id
    assert not result.problems

    # Every acknowledged commit, before and after the switch, is on the new primary.
    missing = set(writer.acked) - _ids(new)
    assert not missing, f"{len(missing)} acknowledged rows lost: {sorted(missing)[:10]}"
    assert set(writer.acked.values()) == {old.spec.port, new.spec.port}

    # The old primary is a streaming replica of the new one, and has them all too.
    st = old.status()
    assert (st.role, st.upstream) == ("replica", f"127.0.0.1:{new.spec.port}")
    others = [i.spec.name for i in cluster.instances if i.spec.name != new.spec.name]
    nst = new.status()
    assert sorted(r["name"] for r in nst.replicas if r["state"] == "streaming") == sorted(others)
    assert nst.synchronous_standby_names == "ANY 1 (" + ", ".join(
        f'"{n}"' for n in sorted(others)) + ")"
    wait_for(lambda: set(writer.acked) <= _ids(old))

    # The topology names the new primary, with a higher term, serving again.
    assert (after.primary_id, after.primary_term) == (new.spec.name, before.primary_term + 1)
    assert after.is_primary_serving
    assert poolers == {
        i.spec.name: PoolerRole.PRIMARY if i.spec.name == new.spec.name else PoolerRole.REPLICA
        for i in cluster.instances
    }


def test_command_switches_to_the_named_instance(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    async def shard() -> Shard:
        async with cluster.topo() as topo:
            return await topo.get_shard("postgres", "default", "0")

    before = asyncio.run(shard())
    to = cluster.by_name(
        next(i.spec.name for i in cluster.instances if i.spec.name != before.primary_id))
    code = main(["switchover", "--shard", str(REF), "--to", to.spec.name,
                 "--dir", str(cluster.root), "--timeout", "20"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert f"done: {to.spec.name} is the primary of {REF}" in out.out
    assert f"promote {to.spec.name}" in out.out
    after = asyncio.run(shard())
    assert (after.primary_id, after.primary_term) == (to.spec.name, before.primary_term + 1)
    assert to.status().role == "primary"
    old = cluster.by_name(before.primary_id)
    wait_for(lambda: old.status().upstream == f"127.0.0.1:{to.spec.port}")


def test_command_refuses_a_replica_that_is_not_there(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["switchover", "--shard", str(REF), "--to", "nobody",
                 "--dir", str(cluster.root)])
    assert code == 1
    assert "'nobody' is not an instance of the shard" in capsys.readouterr().err


def test_last_wal_position_is_known_only_after_a_clean_shutdown(pg_harness: PgHarness) -> None:
    inst = pg_harness.primary()
    with inst.connect() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    with pytest.raises(PgctldError, match="is running"):
        inst.shutdown_checkpoint_lsn()
    inst.stop()
    # The shutdown checkpoint is written after everything else.
    assert parse_lsn(inst.shutdown_checkpoint_lsn()) >= parse_lsn(row[0])
    inst.start()
    inst.kill()
    wait_for(lambda: not inst.is_running())  # until its parent has reaped it
    with pytest.raises(PgctldError, match="did not shut down cleanly"):
        inst.shutdown_checkpoint_lsn()


async def test_target_that_does_not_catch_up_leaves_the_old_primary_serving(
    cluster: Cluster,
) -> None:
    async with cluster.topo() as topo:
        before = await topo.get_shard("postgres", "default", "0")
        primary = cluster.by_name(before.primary_id)
        target = cluster.by_name(
            next(i.spec.name for i in cluster.instances if i.spec.name != before.primary_id))
        # It receives the WAL but does not replay it: it can never be promoted safely.
        with target.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        try:
            members = await find_members(topo, REF, cluster.root / "pg")
            with pytest.raises(SwitchoverError, match="rolled back") as e:
                await switchover(topo, REF, members, to=target.spec.name, say=print,
                                 timeouts=Timeouts(drain=0.5, catch_up=1, streaming=20))
        finally:
            with target.connect() as conn:
                conn.execute("SELECT pg_wal_replay_resume()")
        after = await topo.get_shard("postgres", "default", "0")
    assert f"writable primary: {primary.spec.name}" in str(e.value)
    assert (after.primary_id, after.primary_term, after.is_primary_serving) == (
        before.primary_id, before.primary_term, True)
    with primary.connect() as conn:
        conn.execute("INSERT INTO acked VALUES (-1, 0)")
        conn.execute("DELETE FROM acked WHERE id = -1")
    assert target.status().role == "replica"
    primary.wait_replicas_streaming(
        [i.spec.name for i in cluster.instances if i.spec.name != primary.spec.name], timeout=20)
