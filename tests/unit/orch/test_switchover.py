"""The switchover procedure against fakes: an in-memory topology and fake Postgres instances
that replicate, shut down and promote the way the real ones do (as far as the procedure can
tell)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from multigres.cli.switchover import match_members
from multigres.orch.switchover import (
    Member,
    Position,
    ShardRef,
    SwitchoverError,
    Timeouts,
    choose_target,
    format_lsn,
    parse_lsn,
    policy_allows,
    switchover,
    sync_standbys,
)
from multigres.pgctld.instance import SPEC_FILE, InstanceSpec
from multigres.topo.errors import LockTimeout
from multigres.topo.memory import MemoryConn, MemoryStore
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

REF = ShardRef("db", "tg", "0")
FAST = Timeouts(lock=0.5, catch_up=0.3, streaming=0.3)
# What a shutdown checkpoint record adds to the WAL.
CHECKPOINT_RECORD = 0x28


class Boom(Exception):
    pass


@dataclass(eq=False)
class FakeMember:
    """A Postgres instance: role "" is stopped. Replicas replay their upstream's WAL at once
    unless ``lagging``."""

    name: str
    cell: str
    shard: FakeShard
    role: str = "replica"
    lsn: int = 0
    upstream: str | None = None
    durability: tuple[int, list[str]] = (0, [])
    lagging: bool = False
    diverged: bool = False
    open_transactions_left: int = 0  # each look finds one fewer
    fail: dict[str, BaseException] = field(default_factory=dict)
    hooks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    @property
    def pooler_id(self) -> str:
        return self.name

    async def _call(self, what: str) -> None:
        self.shard.calls.append(f"{what} {self.name}")
        if what in self.hooks:
            await self.hooks[what]()
        if what in self.fail:
            raise self.fail[what]

    async def position(self) -> Position:
        return Position(self.role, self.lsn if self.role else 0)

    async def open_transactions(self) -> int:
        await self._call("open_transactions")
        if self.open_transactions_left:
            self.open_transactions_left -= 1
        return self.open_transactions_left

    async def streaming_replicas(self) -> list[str]:
        if self.role != "primary":
            raise Boom(f"{self.name} is not a primary")
        return sorted(m.name for m in self.shard.members
                      if m.role == "replica" and m.upstream == self.name and not m.diverged)

    async def shutdown(self) -> int:
        await self._call("shutdown")
        final = self.lsn
        self.lsn += CHECKPOINT_RECORD
        self.role = ""
        for m in self.shard.members:
            if m.upstream == self.name and m.role == "replica" and not m.lagging:
                m.lsn = self.lsn
        return final

    async def start(self) -> None:
        await self._call("start")
        self.role = "replica" if self.upstream else "primary"

    async def stop(self) -> None:
        await self._call("stop")
        self.role = ""

    async def set_durability(self, num_sync: int, standbys: list[str]) -> None:
        await self._call("set_durability")
        self.durability = (num_sync, standbys)

    async def promote(self) -> None:
        await self._call("promote")
        self.role, self.upstream = "primary", None

    async def follow(self, primary: Member) -> None:
        await self._call("follow")
        self.upstream = primary.name

    async def demote(self, primary: Member) -> None:
        await self._call("demote")
        self.role, self.upstream, self.durability = "replica", primary.name, (0, [])

    async def rewind(self, primary: Member) -> None:
        await self._call("rewind")
        self.role, self.upstream, self.diverged = "replica", primary.name, False


@dataclass
class FakeShard:
    members: list[FakeMember] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def add(self, name: str, cell: str = "zone1", **kw: object) -> FakeMember:
        m = FakeMember(name, cell, self, **kw)  # type: ignore[arg-type]
        self.members.append(m)
        return m

    def __getitem__(self, name: str) -> FakeMember:
        return next(m for m in self.members if m.name == name)


async def make_topo(shard: FakeShard, policy: DurabilityPolicy | None = None) -> TopoServer:
    topo = TopoServer(MemoryConn(MemoryStore()))
    for cell in sorted({m.cell for m in shard.members}):
        await topo.create_cell(Cell(cell))
    await topo.create_database(Database("db", policy or DurabilityPolicy("any", 1)))
    await topo.create_tablegroup(TableGroup("db", "tg"))
    primary = next(m for m in shard.members if m.role == "primary")
    await topo.create_shard(Shard("db", "tg", "0", primary.cell, primary.name, primary_term=4))
    for m in shard.members:
        await topo.create_pooler(Pooler(
            m.name, m.cell, "127.0.0.1", 0, "127.0.0.1", 5432, "db", "tg", "0",
            role=PoolerRole.PRIMARY if m.role == "primary" else PoolerRole.REPLICA,
            serving_state=ServingState.SERVING))
    return topo


def three(lsns: tuple[int, int] = (0x100, 0x80)) -> FakeShard:
    """A primary ``a`` at 0x200 and replicas ``b`` and ``c`` at ``lsns``."""
    s = FakeShard()
    s.add("a", role="primary", lsn=0x200)
    s.add("b", lsn=lsns[0], upstream="a")
    s.add("c", lsn=lsns[1], upstream="a")
    return s


# -- pure decisions ----------------------------------------------------------------------------


def test_lsn_text_round_trip() -> None:
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("1A/FF") == (0x1A << 32) | 0xFF
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    with pytest.raises(ValueError):
        parse_lsn("3000148")


def test_policy_standbys_and_who_it_allows() -> None:
    s = FakeShard()
    a, b, c = s.add("a", "zone1"), s.add("b", "zone1"), s.add("c", "zone2")
    any1, cross = DurabilityPolicy("any", 1), DurabilityPolicy("cross_cell", 1)
    assert sync_standbys(any1, a, s.members) == (1, ["b", "c"])
    assert sync_standbys(cross, a, s.members) == (1, ["c"])
    assert sync_standbys(cross, c, s.members) == (1, ["a", "b"])
    assert sync_standbys(DurabilityPolicy("none", 0), a, s.members) == (0, [])
    assert policy_allows(DurabilityPolicy("any", 2), b, s.members)
    assert not policy_allows(DurabilityPolicy("cross_cell", 2), b, s.members)
    assert policy_allows(DurabilityPolicy("cross_cell", 2), c, s.members)


def _positions(s: FakeShard) -> dict[str, Position]:
    return {m.name: Position(m.role, m.lsn) for m in s.members}


def test_target_is_the_replica_with_most_wal_then_the_primary_cell() -> None:
    s = three((0x80, 0x100))
    policy = DurabilityPolicy("any", 1)
    assert choose_target(s["a"], s.members, _positions(s), ["b", "c"], policy).name == "c"
    s["b"].lsn = 0x100
    s.add("d", "zone0", lsn=0x100, upstream="a")
    got = choose_target(s["a"], s.members, _positions(s), ["b", "c", "d"], policy)
    assert got.name == "b"  # same WAL as c and d: the primary's cell, then the name


def test_target_skips_replicas_not_streaming_or_not_allowed() -> None:
    s = FakeShard()
    s.add("a", "zone1", role="primary", lsn=0x300)
    s.add("b", "zone1", lsn=0x300, upstream="a")  # the most WAL, but no replica in zone2 left
    s.add("c", "zone2", lsn=0x100, upstream="a")
    s.add("d", "zone2", lsn=0x200, upstream="a", role="")  # down
    cross = DurabilityPolicy("cross_cell", 2)
    assert choose_target(s["a"], s.members, _positions(s), ["b", "c"], cross).name == "c"
    with pytest.raises(SwitchoverError, match="cannot switch to b: it is not streaming from a"):
        choose_target(s["a"], s.members, _positions(s), ["c"], DurabilityPolicy(), to="b")
    with pytest.raises(SwitchoverError, match="durability policy") as e:
        choose_target(s["a"], s.members, _positions(s), ["b", "c"], cross, to="b")
    assert "cannot switch to b" in str(e.value)
    with pytest.raises(SwitchoverError, match="no replica can take over") as e:
        choose_target(s["a"], s.members, _positions(s), [], cross)
    assert "d is not a running replica (down)" in str(e.value)


def test_target_named_with_to() -> None:
    s = three()
    pos, policy = _positions(s), DurabilityPolicy()
    assert choose_target(s["a"], s.members, pos, ["b", "c"], policy, to="c").name == "c"
    with pytest.raises(SwitchoverError, match="already the primary"):
        choose_target(s["a"], s.members, pos, ["b", "c"], policy, to="a")
    with pytest.raises(SwitchoverError, match="'x' is not an instance of the shard"):
        choose_target(s["a"], s.members, pos, ["b", "c"], policy, to="x")


# -- the procedure -----------------------------------------------------------------------------


async def test_switchover_moves_the_primary_and_repoints_everyone() -> None:
    s = three()
    topo = await make_topo(s)
    seen_during_shutdown: list[tuple[bool, ServingState]] = []

    async def look() -> None:
        shard = await topo.get_shard("db", "tg", "0")
        pooler = await topo.get_pooler("zone1", "a")
        seen_during_shutdown.append((shard.is_primary_serving, pooler.serving_state))

    s["a"].hooks["shutdown"] = look
    lines: list[str] = []
    result = await switchover(topo, REF, s.members, say=lines.append, timeouts=FAST)

    assert (result.old_primary, result.new_primary, result.term) == ("a", "b", 5)
    assert not result.problems
    # The gateway saw the switch announced while writes stopped.
    assert seen_during_shutdown == [(False, ServingState.NOT_SERVING)]
    shard = await topo.get_shard("db", "tg", "0")
    assert (shard.primary_cell, shard.primary_id, shard.primary_term) == ("zone1", "b", 5)
    assert shard.is_primary_serving
    a, b, c = s["a"], s["b"], s["c"]
    assert (b.role, b.upstream, b.durability) == ("primary", None, (1, ["a", "c"]))
    assert (a.role, a.upstream, c.upstream) == ("replica", "b", "b")
    roles = {p.id: (p.role, p.serving_state) for p in await topo.get_poolers("zone1")}
    assert roles == {
        "a": (PoolerRole.REPLICA, ServingState.SERVING),
        "b": (PoolerRole.PRIMARY, ServingState.SERVING),
        "c": (PoolerRole.REPLICA, ServingState.SERVING),
    }
    # The policy is on b before it can take a write; the rest only after writes stopped.
    assert s.calls == ["set_durability b", "open_transactions a", "shutdown a", "promote b",
                       "follow c", "demote a"]
    assert "rewind a" not in s.calls
    assert all(line.rstrip().endswith("s]") for line in lines), lines
    assert any("promote b" in line for line in lines)
    assert lines[-1].startswith(f"{len(lines):>2}. release the shard lock")


async def test_open_transactions_may_finish_before_the_shutdown() -> None:
    s = three()
    s["a"].open_transactions_left = 4
    topo = await make_topo(s)
    lines: list[str] = []
    await switchover(topo, REF, s.members, say=lines.append, timeouts=FAST)
    assert s.calls.count("open_transactions a") == 4
    assert s.calls.index("shutdown a") > s.calls.index("open_transactions a")
    assert any("finish (none open)" in line for line in lines), lines

    s = three()
    s["a"].open_transactions_left = 10**9
    topo = await make_topo(s)
    lines = []
    await switchover(topo, REF, s.members, say=lines.append,
                     timeouts=Timeouts(drain=0.1, catch_up=1, streaming=1))
    assert any("still open after 0.1s: the shutdown cuts them" in line for line in lines), lines


async def test_switchover_holds_the_shard_lock_throughout() -> None:
    s = three()
    topo = await make_topo(s)
    other = TopoServer(topo.conn)
    tried: list[type[BaseException]] = []

    async def second_switchover() -> None:
        try:
            async with other.lock_shard("db", "tg", "0", "another", timeout=0.05):
                pass
        except LockTimeout as e:
            tried.append(type(e))

    s["b"].hooks["promote"] = second_switchover
    await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert tried == [LockTimeout]
    async with other.lock_shard("db", "tg", "0", "after", timeout=0.05):
        pass  # released at the end


async def test_a_held_lock_stops_the_switchover_before_anything_changes() -> None:
    s = three()
    topo = await make_topo(s)
    async with topo.lock_shard("db", "tg", "0", "orchestrator repair"):
        with pytest.raises(LockTimeout, match="orchestrator repair"):
            await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert s.calls == []
    assert (await topo.get_shard("db", "tg", "0")).primary_id == "a"


async def test_replica_that_does_not_catch_up_rolls_back_to_the_old_primary() -> None:
    s = three()
    s["b"].lagging = True
    topo = await make_topo(s)
    lines: list[str] = []
    with pytest.raises(SwitchoverError, match="rolled back") as e:
        await switchover(topo, REF, s.members, to="b", say=lines.append, timeouts=FAST)
    assert "b did not replay past 0/200" in str(e.value)
    assert "writable primary: a" in str(e.value)
    assert "promote b" not in s.calls
    assert s["a"].role == "primary" and s["b"].role == "replica"
    assert s["b"].durability == (0, [])
    shard = await topo.get_shard("db", "tg", "0")
    assert (shard.primary_id, shard.primary_term, shard.is_primary_serving) == ("a", 4, True)
    pooler = await topo.get_pooler("zone1", "a")
    assert (pooler.role, pooler.serving_state) == (PoolerRole.PRIMARY, ServingState.SERVING)
    assert any("FAILED" in line for line in lines)


async def test_failed_promotion_fences_the_target_and_rolls_back() -> None:
    s = three()
    s["b"].fail["promote"] = Boom("pg_ctl promote timed out")
    topo = await make_topo(s)
    with pytest.raises(SwitchoverError, match="promotion of b failed"):
        await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert s["b"].role == ""  # stopped: it must not become a second primary later
    assert s["a"].role == "primary"
    assert (await topo.get_shard("db", "tg", "0")).primary_id == "a"


async def test_promotion_that_reports_an_error_but_happened_goes_forward() -> None:
    s = three()
    b = s["b"]

    async def promote_anyway() -> None:
        b.role, b.upstream = "primary", None

    b.hooks["promote"] = promote_anyway
    b.fail["promote"] = Boom("lost the answer")
    topo = await make_topo(s)
    result = await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert result.new_primary == "b"
    assert s["a"].upstream == "b"


async def test_a_lost_lock_stops_before_promotion() -> None:
    s = three()
    topo = await make_topo(s)
    handles = []
    real_lock_shard = topo.lock_shard

    def capture(*args: object, **kw: object) -> object:
        cm = real_lock_shard(*args, **kw)  # type: ignore[arg-type]

        class Capturing:
            async def __aenter__(self) -> object:
                h = await cm.__aenter__()
                handles.append(h)
                return h

            async def __aexit__(self, *exc: object) -> object:
                return await cm.__aexit__(*exc)  # type: ignore[arg-type]

        return Capturing()

    topo.lock_shard = capture  # type: ignore[method-assign,assignment]

    async def lose() -> None:
        handles[0]._lose("lease expired")

    s["a"].hooks["shutdown"] = lose
    with pytest.raises(SwitchoverError, match="lost the lock"):
        await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert "promote b" not in s.calls
    assert s["a"].role == "primary"


async def test_interrupted_switchover_rolls_back() -> None:
    s = three()
    s["b"].lagging = True
    topo = await make_topo(s)
    stopped = asyncio.Event()

    async def shut() -> None:
        stopped.set()

    s["a"].hooks["shutdown"] = shut
    task = asyncio.create_task(
        switchover(topo, REF, s.members, say=lambda _: None, timeouts=Timeouts(catch_up=30)))
    await stopped.wait()
    await asyncio.sleep(0.05)  # into the wait for b, which never catches up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s["a"].role == "primary"
    assert (await topo.get_shard("db", "tg", "0")).is_primary_serving


async def test_failure_after_promotion_keeps_the_new_primary_and_says_what_is_left() -> None:
    s = three()
    s["c"].fail["follow"] = Boom("reload failed")
    topo = await make_topo(s)
    with pytest.raises(SwitchoverError) as e:
        await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    text = str(e.value)
    assert "b is the primary of db/tg/0 (term 5), but: c still follows a" in text
    assert "c is not streaming from b" in text
    assert "writable primary: b" in text
    assert s["a"].role == "replica" and s["a"].upstream == "b"
    shard = await topo.get_shard("db", "tg", "0")
    assert (shard.primary_id, shard.primary_term, shard.is_primary_serving) == ("b", 5, True)


async def test_old_primary_that_cannot_stream_is_rewound() -> None:
    s = three()
    a = s["a"]

    async def diverge() -> None:
        a.diverged = True

    a.hooks["demote"] = diverge
    topo = await make_topo(s)
    await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert s.calls[-2:] == ["demote a", "rewind a"]
    assert a.upstream == "b" and not a.diverged


async def test_topology_primary_that_is_not_primary_changes_nothing() -> None:
    s = three()
    topo = await make_topo(s)
    s["a"].role, s["b"].role = "replica", "primary"
    with pytest.raises(SwitchoverError, match=r"names a the primary .* but it is replica"):
        await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert s.calls == []
    assert (await topo.get_shard("db", "tg", "0")).is_primary_serving


async def test_down_replica_is_repointed_but_not_waited_for() -> None:
    s = three()
    s["c"].role = ""
    topo = await make_topo(s)
    result = await switchover(topo, REF, s.members, say=lambda _: None, timeouts=FAST)
    assert result.new_primary == "b" and not result.problems
    assert s["c"].upstream == "b"  # it follows the new primary when it starts again


# -- the command's instances -------------------------------------------------------------------


def test_pooler_records_are_matched_to_local_instances(tmp_path: Path) -> None:
    for name, port in (("zone1-100", 7100), ("zone1-101", 7101)):
        (tmp_path / name).mkdir()
        (tmp_path / name / SPEC_FILE).write_text(InstanceSpec(name, port).to_json())

    def rec(pooler_id: str, port: int, data_dir: str = "") -> Pooler:
        return Pooler(pooler_id, "zone1", "127.0.0.1", 0, "127.0.0.1", port, "db", "tg", "0",
                      pgctld_data_dir=data_dir)

    poolers = [
        rec("zone1-100", 7100, str(tmp_path / "zone1-100" / "data")),
        rec("zone1-host-6432", 7100),  # a running pooler's own record of the same Postgres
        rec("zone1-101", 7101),  # found by port
    ]
    got = match_members(poolers, "zone1-host-6432", tmp_path)
    assert [(m.name, m.pooler_id) for m in got] == [
        ("zone1-100", "zone1-host-6432"),  # the record the shard names as primary wins
        ("zone1-101", "zone1-101"),
    ]
    assert [m.pooler_id for m in match_members(poolers, "zone1-101", tmp_path)] == [
        "zone1-100", "zone1-101"]
    with pytest.raises(SwitchoverError, match="7999, which is not an instance"):
        match_members([rec("x", 7999)], "", tmp_path)
