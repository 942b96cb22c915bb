"""Publishing the local cluster in the topology: cells, databases, tablegroups, shards, and one
pooler record per Postgres instance.

A pooler record has two writers that must not fight. The cluster writes what it knows from
its config and from Postgres: where the pooler listens (its ports are fixed by the config),
the Postgres it fronts, its shard, the pgctld data directory; and, while that instance's
multipooler does not run, its role (from Postgres) and ``not_serving``. A running multipooler
owns role and serving state: it writes its whole record (same key: the instance name) after
its first health poll and on every change, and the cluster leaves those two fields alone.
"""

from __future__ import annotations

import asyncio

from multigres.cli.cluster.config import ClusterConfig, InstancePlan
from multigres.cli.cluster.errors import ClusterError
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

SERVING_TIMEOUT = 15.0


def open_topo(cfg: ClusterConfig) -> TopoServer:
    return TopoServer(EtcdConn(f"{cfg.etcd_host}:{cfg.etcd_port}", root=cfg.topo_root))


async def record(cfg: ClusterConfig, paths: ClusterPaths, poolers_running: set[str]) -> None:
    """Write (or refresh) every record of the cluster; the records say what is true now.

    ``poolers_running``: the instances whose multipooler runs (and owns role and serving
    state in its record)."""
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
            await _write_pooler(topo, cfg, plan, str(inst.data_dir), role,
                                plan.name in poolers_running)
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


async def _write_pooler(
    topo: TopoServer,
    cfg: ClusterConfig,
    plan: InstancePlan,
    data_dir: str,
    role: PoolerRole,
    pooler_runs: bool,
) -> None:
    def ours(p: Pooler) -> None:
        p.host, p.port, p.grpc_port = cfg.pooler.listen, plan.pooler_port, plan.pooler_grpc_port
        p.pg_host, p.pg_port = cfg.pg_listen, plan.port
        p.database, p.tablegroup, p.shard = plan.database, plan.tablegroup, plan.shard
        p.pgctld_data_dir = data_dir
        if not pooler_runs:
            p.role, p.serving_state = role, ServingState.NOT_SERVING

    try:
        await topo.update_pooler_fields(plan.cell, plan.name, ours)
    except NoNode:
        fresh = Pooler(id=plan.name, cell=plan.cell, host="", port=0, pg_host="", pg_port=0,
                       database="", tablegroup="", shard="", role=role)
        ours(fresh)
        await topo.update_pooler(fresh)


async def wait_poolers_serving(
    cfg: ClusterConfig, paths: ClusterPaths, within: float = SERVING_TIMEOUT
) -> None:
    """Until every instance's pooler record says serving (written by the pooler itself), so
    that a gateway sees them; then put back the data directory that the pooler's own write of
    the whole record leaves out."""
    plans = cfg.instances()
    async with open_topo(cfg) as topo:
        try:
            async with asyncio.timeout(within):
                for cell in sorted({p.cell for p in plans}):
                    await _until_serving(topo, cell, {p.name for p in plans if p.cell == cell})
        except TimeoutError:
            poolers = {p.id: p for c in cfg.cells for p in await topo.get_poolers(c)}
            late = [p.name for p in plans
                    if p.name not in poolers
                    or poolers[p.name].serving_state is not ServingState.SERVING]
            raise ClusterError(
                f"the poolers of {', '.join(late)} answer, but their topology records do not "
                f"say serving after {within:g}s; see their logs under {paths.logs}"
            ) from None
        for plan in plans:
            data_dir = str(PgInstance(paths.instance_dir(plan.name)).data_dir)

            def put_dir(p: Pooler, data_dir: str = data_dir) -> None:
                p.pgctld_data_dir = data_dir

            pooler = await topo.get_pooler(plan.cell, plan.name)
            if pooler.pgctld_data_dir != data_dir:
                await topo.update_pooler_fields(plan.cell, plan.name, put_dir)


async def _until_serving(topo: TopoServer, cell: str, names: set[str]) -> None:
    waiting = set(names)
    async with topo.watch_poolers(cell) as watch:
        async for change in watch:
            rec = change.record
            if rec is not None and rec.serving_state is ServingState.SERVING:
                waiting.discard(change.name)
            if not waiting:
                return
