"""``multigres switchover --shard DB/TABLEGROUP/SHARD [--to INSTANCE]``: a planned change of a
shard's primary in a local cluster (the procedure is :mod:`multigres.orch.switchover`).

The shard's instances are its Pooler records in the topology; each is matched to the pgctld
instance under ``<cluster dir>/pg/`` that runs its Postgres (by the record's
``pgctld_data_dir``, else by port), and driven through pgctld.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from multigres.cli.cluster.config import load as load_config
from multigres.cli.cluster.state import ClusterPaths
from multigres.cli.cluster.topology import open_topo
from multigres.orch.switchover import (
    Member,
    Position,
    Result,
    ShardRef,
    SwitchoverError,
    Timeouts,
    parse_lsn,
    switchover,
)
from multigres.pgctld.config import Durability
from multigres.pgctld.instance import SPEC_FILE, Endpoint, PgInstance
from multigres.topo.records import Pooler
from multigres.topo.server import TopoServer

T = TypeVar("T")

POSITION_SQL = (
    "SELECT pg_is_in_recovery(), (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_lsn() END)::text"
)
# Client sessions inside a transaction, other than this one (the pooler's idle server
# connections are not: they are between transactions).
OPEN_TRANSACTIONS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    " AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
)
STREAMING_SQL = "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a pgctld call in a thread (the lock's lease is kept alive on the event loop), and
    let it finish even if the switchover is interrupted: the rollback must find the server
    settled, not half stopped."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


@dataclass
class PgctldMember:
    """A shard instance driven through pgctld (:class:`multigres.orch.switchover.Member`)."""

    name: str
    pooler_id: str
    cell: str
    inst: PgInstance

    def _position(self) -> Position:
        if not self.inst.is_running():
            return Position("", error="not running")
        try:
            with self.inst.connect(connect_timeout=3) as conn:
                row = conn.execute(POSITION_SQL).fetchone()
        except psycopg.Error as e:
            return Position("", error=str(e).strip().splitlines()[0])
        assert row is not None
        return Position("replica" if row[0] else "primary", parse_lsn(row[1]))

    def _open_transactions(self) -> int:
        with self.inst.connect(connect_timeout=3) as conn:
            row = conn.execute(OPEN_TRANSACTIONS_SQL).fetchone()
        assert row is not None
        return int(row[0])

    def _streaming(self) -> list[str]:
        with self.inst.connect(connect_timeout=3) as conn:
            return [r[0] for r in conn.execute(STREAMING_SQL).fetchall()]

    def _shutdown(self) -> int:
        self.inst.stop()
        return parse_lsn(self.inst.shutdown_checkpoint_lsn())

    def _set_durability(self, num_sync: int, standbys: list[str]) -> None:
        self.inst.set_durability(Durability(num_sync, standbys) if num_sync else None)

    async def position(self) -> Position:
        return await _blocking(self._position)

    async def open_transactions(self) -> int:
        return await _blocking(self._open_transactions)

    async def streaming_replicas(self) -> list[str]:
        return await _blocking(self._streaming)

    async def shutdown(self) -> int:
        return await _blocking(self._shutdown)

    async def start(self) -> None:
        await _blocking(self.inst.start)

    async def stop(self) -> None:
        await _blocking(self.inst.stop)

    async def set_durability(self, num_sync: int, standbys: list[str]) -> None:
        await _blocking(self._set_durability, num_sync, standbys)

    async def promote(self) -> None:
        await _blocking(self.inst.promote)

    async def follow(self, primary: Member) -> None:
        await _blocking(self.inst.follow, _endpoint_of(primary))

    async def demote(self, primary: Member) -> None:
        await _blocking(self.inst.demote, _endpoint_of(primary))

    async def rewind(self, primary: Member) -> None:
        await _blocking(self.inst.rewind, _endpoint_of(primary))


def _endpoint_of(m: Member) -> Endpoint:
    assert isinstance(m, PgctldMember), m
    return m.inst.endpoint()


def local_instances(pg_root: Path) -> list[PgInstance]:
    """The pgctld instances under ``pg_root`` (one directory each)."""
    if not pg_root.is_dir():
        return []
    # By their real path: the OS user that runs Postgres may not be able to follow a link.
    return [PgInstance(d.resolve()) for d in sorted(pg_root.iterdir())
            if (d / SPEC_FILE).exists()]


async def find_members(topo: TopoServer, ref: ShardRef, pg_root: Path) -> list[PgctldMember]:
    """The shard's instances: its Pooler records (in every cell) with their local Postgres."""
    shard = await topo.get_shard(ref.database, ref.tablegroup, ref.shard)
    poolers: list[Pooler] = []
    for cell in await topo.get_cell_names():
        poolers += await topo.get_poolers(
            cell, database=ref.database, tablegroup=ref.tablegroup, shard=ref.shard)
    if not poolers:
        raise SwitchoverError(f"shard {ref} has no pooler records in the topology")
    return match_members(poolers, shard.primary_id, pg_root)


def match_members(poolers: list[Pooler], primary_id: str, pg_root: Path) -> list[PgctldMember]:
    """Each pooler record with the instance under ``pg_root`` that runs its Postgres."""
    instances = local_instances(pg_root)
    by_dir = {i.inst_dir: i for i in instances}
    by_port = {i.spec.port: i for i in instances}
    inst_of: dict[str, PgInstance] = {}
    for p in poolers:
        data_dir = Path(p.pgctld_data_dir).resolve() if p.pgctld_data_dir else None
        inst = by_dir.get(data_dir.parent) if data_dir else None
        inst = inst or by_port.get(p.pg_port)
        if inst is None:
            raise SwitchoverError(
                f"pooler {p.id} of shard {p.database}/{p.tablegroup}/{p.shard} runs Postgres "
                f"{p.pg_host}:{p.pg_port}, which is not an instance under {pg_root}")
        inst_of[p.id] = inst

    # A Postgres may have two records (the cluster's own, a running pooler's): keep the one
    # the shard names as primary, else the one named like the instance.
    def rank(p: Pooler) -> tuple[bool, bool, str]:
        return (p.id != primary_id, p.id != inst_of[p.id].spec.name, p.id)

    members: dict[Path, PgctldMember] = {}
    for p in sorted(poolers, key=rank):
        inst = inst_of[p.id]
        if inst.inst_dir not in members:
            members[inst.inst_dir] = PgctldMember(inst.spec.name, p.id, p.cell, inst)
    return sorted(members.values(), key=lambda m: m.name)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "switchover",
        help="move a shard's primary to a replica, losing no acknowledged commit",
        description="Planned switchover: stop writes on the primary (clean shutdown), wait "
        "until the new primary has all of its WAL, promote it, repoint the other replicas and "
        "restart the old primary as a replica.",
    )
    p.add_argument("--shard", required=True,
                   help="DATABASE/TABLEGROUP/SHARD, e.g. postgres/default/0")
    p.add_argument("--to", metavar="INSTANCE",
                   help="the new primary (default: the replica with the most replayed WAL)")
    p.add_argument("--dir", help="cluster directory (default: $MULTIGRES_HOME or ./.multigres)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="the longest wait for the lock, catch-up, and streaming (default 30)")


def run(args: argparse.Namespace) -> int:
    try:
        ref = ShardRef.parse(args.shard)
    except ValueError as e:
        print(f"multigres: error: --shard: {e}", file=sys.stderr)
        return 2
    paths = ClusterPaths.resolve(args.dir)
    cfg = load_config(paths.config)
    timeouts = Timeouts(lock=args.timeout, catch_up=args.timeout, streaming=args.timeout)

    async def go() -> Result:
        async with open_topo(cfg) as topo:
            members = await find_members(topo, ref, paths.pg_root)
            return await switchover(topo, ref, members, to=args.to, timeouts=timeouts,
                                    say=lambda line: print(line, flush=True))

    print(f"switchover of {ref}", flush=True)
    try:
        result = asyncio.run(go())
    except SwitchoverError as e:
        print(f"multigres: switchover failed: {e}", file=sys.stderr)
        return 1
    print(f"done: {result.new_primary} is the primary of {ref} (term {result.term}), "
          f"was {result.old_primary}; writes paused {result.writes_paused:.2f}s, "
          f"total {result.seconds:.2f}s")
    return 0
