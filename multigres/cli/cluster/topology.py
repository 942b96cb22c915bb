"""Publishing the local cluster in the topology: cells, databases, tablegroups, shards, and one
pooler record per Postgres instance with its current role and serving state."""

from __future__ import annotations

from multigres.cli.cluster.config import ClusterConfig
from multigres.cli.cluster.state import ClusterPaths
from multigres.pgctld.instance import PgInstance
from multigres.topo.errors import NoNode
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


def open_topo(cfg: ClusterConfig) -> TopoServer:
    return TopoServer(EtcdConn(f"{cfg.etcd_host}:{cfg.etcd_port}", root=cfg.topo_root))


async def record(cfg: ClusterConfig, paths: ClusterPaths) -> None:
    """Write (or refresh) every record of the cluster; the records say what is true now."""
    async with open_topo(cfg) as topo:
        for cell in cfg.cells:
            await topo.update_cell(Cell(name=cell))
        for db in cfg.databases:
            policy = (
                DurabilityPolicy(kind="any", num_sync=db.num_sync)
                if db.num_sync
                else DurabilityPolicy(kind="none", num_sync=0)
            )
            await topo.update_database(
                Database(name=db.name, durability_policy=policy, cells=list(cfg.cells))
            )
            for tg in db.tablegroups:
                await topo.update_tablegroup(
                    TableGroup(database=db.name, name=tg.name, sharded=tg.sharded)
                )
        for plan in cfg.instances():
            inst = PgInstance(paths.instance_dir(plan.name))
            st = inst.status()
            role = PoolerRole.PRIMARY if st.role == "primary" else PoolerRole.REPLICA
            healthy = st.running and st.error is None
            await topo.update_pooler(
                Pooler(
                    id=plan.name,
                    cell=plan.cell,
                    # No multipooler yet: the record carries the Postgres address only.
                    host=cfg.pg_listen,
                    port=0,
                    pg_host=cfg.pg_listen,
                    pg_port=plan.port,
                    database=plan.database,
                    tablegroup=plan.tablegroup,
                    shard=plan.shard,
                    role=role,
                    serving_state=ServingState.SERVING if healthy else ServingState.NOT_SERVING,
                    pgctld_data_dir=str(inst.data_dir),
                )
            )
            if role is PoolerRole.PRIMARY:
                try:
                    shard = await topo.get_shard(plan.database, plan.tablegroup, plan.shard)
                except NoNode:
                    shard = Shard(plan.database, plan.tablegroup, plan.shard)
                if (shard.primary_cell, shard.primary_id) != (plan.cell, plan.name):
                    shard.primary_cell, shard.primary_id = plan.cell, plan.name
                    shard.primary_term += 1
                shard.version = None
                await topo.update_shard(shard)
