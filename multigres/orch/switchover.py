"""Planned switchover of a shard's primary (Vitess's PlannedReparentShard).

The procedure runs over two interfaces: the topology (:class:`TopoServer`, in memory for unit
tests) and the shard's Postgres instances (:class:`Member`; the `multigres switchover`
command implements it with pgctld, tests with fakes). Its rules:

- every commit acknowledged before the switch is on the new primary: writes stop with a
  clean shutdown of the old primary, and the target is promoted only once it has replayed
  that shutdown's checkpoint, the last WAL the old primary wrote;
- the shard never has two writable primaries, and a failure leaves it with one: before the
  promotion the old primary is brought back; after it, the new one stays and the rest is
  repaired as far as it can be;
- only a replica that is streaming from the primary and that the durability policy allows
  (enough replicas left to acknowledge its commits) is promoted;
- it all runs under the shard lock, so two switchovers (or a switchover and the
  orchestrator) never interleave.

While writes are switched, the Shard record's ``is_primary_serving`` is false (and the old
primary's Pooler record ``not_serving``): the gateway holds the shard's statements until it
is true again, then sends them to the primary the record names (its ``primary_term`` grew).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from multigres.topo.errors import NoNode, TopoError
from multigres.topo.lock import LockHandle
from multigres.topo.records import DurabilityPolicy, Pooler, PoolerRole, ServingState, Shard
from multigres.topo.server import TopoServer

PRIMARY, REPLICA = "primary", "replica"
# How often to ask the target how far it has replayed: Postgres has no way to tell.
POLL_INTERVAL = 0.02

Say = Callable[[str], None]


class SwitchoverError(Exception):
    """The switchover did not happen, or did not finish; the message says what state the
    shard is in."""


# -- positions ---------------------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """``'0/3000148'`` as a number, so that positions compare."""
    hi, sep, lo = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Position:
    """What an instance says about itself: ``role`` is "" when it cannot be reached.
    ``lsn`` is the WAL written (primary) or replayed (replica)."""

    role: str
    lsn: int = 0
    error: str = ""

    def __str__(self) -> str:
        if not self.role:
            return f"down ({self.error})" if self.error else "down"
        return f"{self.role} at {format_lsn(self.lsn)}"


class Member(Protocol):
    """One Postgres instance of the shard, as the switchover drives it. Each method returns
    once the instance is in the state it names, and raises if it cannot get there."""

    @property
    def name(self) -> str:
        """The Postgres instance: its application_name in synchronous_standby_names."""

    @property
    def pooler_id(self) -> str:
        """Its Pooler record (Shard.primary_id names one)."""

    @property
    def cell(self) -> str: ...

    async def position(self) -> Position:
        """Role and LSN; never raises (a server that does not answer is down)."""

    async def open_transactions(self) -> int:
        """How many client sessions are inside a transaction."""

    async def streaming_replicas(self) -> list[str]:
        """On a primary: the names of the replicas streaming from it."""

    async def shutdown(self) -> int:
        """Stop cleanly; return the LSN of the shutdown checkpoint, its last WAL record."""

    async def start(self) -> None:
        """Start as it is configured (a stopped primary comes back as the primary)."""

    async def stop(self) -> None: ...

    async def set_durability(self, num_sync: int, standbys: list[str]) -> None:
        """Which replicas must have a commit before it is acknowledged (0: none)."""

    async def promote(self) -> None: ...

    async def follow(self, primary: Member) -> None:
        """A replica: stream from ``primary`` instead."""

    async def demote(self, primary: Member) -> None:
        """A cleanly stopped former primary whose WAL ``primary`` has: start as its replica."""

    async def rewind(self, primary: Member) -> None:
        """A former primary that diverged: pg_rewind, then start as a replica of ``primary``."""


@dataclass(frozen=True)
class ShardRef:
    database: str
    tablegroup: str
    shard: str

    @classmethod
    def parse(cls, text: str) -> ShardRef:
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected DATABASE/TABLEGROUP/SHARD (like postgres/default/0), "
                             f"got {text!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.database}/{self.tablegroup}/{self.shard}"


ANNOUNCE_GRACE = 0.2  # seconds between announcing the switch and looking for open work


@dataclass(frozen=True)
class Timeouts:
    lock: float = 30.0  # waiting for another holder of the shard lock
    # Open transactions finishing after the switch is announced (the gateway then holds new
    # ones); what is still open after this is cut by the shutdown.
    drain: float = 2.0
    catch_up: float = 30.0  # the target replaying the old primary's last WAL
    streaming: float = 30.0  # the replicas streaming from the new primary


@dataclass
class Result:
    shard: ShardRef
    old_primary: str
    new_primary: str
    term: int
    seconds: float  # the whole switchover
    writes_paused: float  # from announcing the switch to publishing the new primary
    problems: list[str] = field(default_factory=list)


# -- pure decisions ----------------------------------------------------------------------------


def sync_standbys(
    policy: DurabilityPolicy, primary: Member, members: Sequence[Member]
) -> tuple[int, list[str]]:
    """The policy as it applies with ``primary`` as the primary: (num_sync, standby names)."""
    if policy.kind == "none" or policy.num_sync == 0:
        return 0, []
    others = [m for m in members if m.name != primary.name]
    if policy.kind == "cross_cell":
        others = [m for m in others if m.cell != primary.cell]
    return policy.num_sync, sorted(m.name for m in others)


def policy_allows(policy: DurabilityPolicy, candidate: Member, members: Sequence[Member]) -> bool:
    """Whether ``candidate`` as primary would have enough replicas to acknowledge commits:
    a primary the policy cannot be met for would block every commit."""
    num_sync, standbys = sync_standbys(policy, candidate, members)
    return len(standbys) >= num_sync


def find_member(members: Sequence[Member], name: str) -> Member | None:
    """By instance name or pooler id."""
    for m in members:
        if name in (m.name, m.pooler_id):
            return m
    return None


def choose_target(
    primary: Member,
    members: Sequence[Member],
    positions: Mapping[str, Position],
    streaming: Collection[str],
    policy: DurabilityPolicy,
    to: str | None = None,
) -> Member:
    """The replica to promote: ``to`` if it qualifies, else the one that has replayed the
    most WAL (the shortest wait once writes stop), then one in the primary's cell, then by
    name. SwitchoverError says why none qualifies."""

    # Only instances that run can acknowledge commits (the old primary will be a replica).
    running = [m for m in members if positions.get(m.name, Position("")).role]

    def problem(m: Member) -> str | None:
        pos = positions.get(m.name, Position(""))
        if pos.role != REPLICA:
            return f"is not a running replica ({pos})"
        if m.name not in streaming:
            return f"is not streaming from {primary.name}"
        if not policy_allows(policy, m, running):
            num_sync, _ = sync_standbys(policy, m, running)
            where = " in other cells" if policy.kind == "cross_cell" else ""
            return (f"would not have the {num_sync} running replica(s){where} the durability "
                    f"policy ({policy.kind}) needs")
        return None

    if to is not None:
        target = find_member(members, to)
        if target is None:
            raise SwitchoverError(f"{to!r} is not an instance of the shard; it has "
                                  + ", ".join(m.name for m in members))
        if target.name == primary.name:
            raise SwitchoverError(f"{target.name} is already the primary")
        why = problem(target)
        if why is not None:
            raise SwitchoverError(f"cannot switch to {target.name}: it {why}")
        return target
    candidates = [m for m in members if m.name != primary.name]
    eligible = [m for m in candidates if problem(m) is None]
    if not eligible:
        reasons = "; ".join(f"{m.name} {problem(m)}" for m in candidates) or "it has none"
        raise SwitchoverError(f"no replica can take over from {primary.name}: {reasons}")
    return min(eligible, key=lambda m: (-positions[m.name].lsn, m.cell != primary.cell, m.name))


# -- the procedure -----------------------------------------------------------------------------


class _Steps:
    """Numbers the steps and prints each with its duration (or its failure)."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.n = 0

    @asynccontextmanager
    async def step(self, text: str) -> AsyncIterator[list[str]]:
        """The body may append details to the yielded list; they follow the text."""
        self.n += 1
        n, t0, notes = self.n, time.monotonic(), list[str]()
        try:
            yield notes
        except BaseException as e:
            self.say(f"{n:>2}. {text}: FAILED after {time.monotonic() - t0:.2f}s: "
                     f"{_reason(e)}")
            raise
        detail = f" ({'; '.join(notes)})" if notes else ""
        self.say(f"{n:>2}. {text}{detail}  [{time.monotonic() - t0:.2f}s]")


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    return str(e) or type(e).__name__


async def switchover(
    topo: TopoServer,
    ref: ShardRef,
    members: Sequence[Member],
    *,
    to: str | None = None,
    say: Say = print,
    timeouts: Timeouts | None = None,
) -> Result:
    """Move the primary of shard ``ref`` (whose instances are ``members``) to ``to`` or to
    the best replica. Returns what happened; SwitchoverError if it did not happen (the old
    primary serves again) or did not finish (the new primary serves; the message says what
    is left)."""
    steps = _Steps(say)
    timeouts = timeouts or Timeouts()
    stack = AsyncExitStack()
    async with steps.step(f"lock shard {ref}"):
        lock = await stack.enter_async_context(topo.lock_shard(
            ref.database, ref.tablegroup, ref.shard, "switchover", timeout=timeouts.lock))
    try:
        return await _Switchover(topo, ref, members, lock, steps, timeouts).run(to)
    finally:
        # A failed release is printed by the step; the lease then expires on its own.
        with suppress(Exception):
            async with steps.step("release the shard lock"):
                await stack.aclose()


class _Switchover:
    def __init__(self, topo: TopoServer, ref: ShardRef, members: Sequence[Member],
                 lock: LockHandle, steps: _Steps, timeouts: Timeouts) -> None:
        self.topo = topo
        self.ref = ref
        self.members = list(members)
        self.lock = lock
        self.steps = steps
        self.say = steps.say
        self.timeouts = timeouts
        self.was_serving = True
        self.writes_resumed = 0.0

    async def positions(self) -> dict[str, Position]:
        got = await asyncio.gather(*(m.position() for m in self.members))
        return {m.name: p for m, p in zip(self.members, got, strict=True)}

    async def run(self, to: str | None) -> Result:
        t0 = time.monotonic()
        async with self.steps.step("read the shard and its instances") as notes:
            shard = await self.topo.get_shard(self.ref.database, self.ref.tablegroup,
                                              self.ref.shard)
            policy = (await self.topo.get_database(self.ref.database)).durability_policy
            primary = self._primary(shard)
            positions = await self.positions()
            self._check_roles(primary, positions)
            streaming = await primary.streaming_replicas()
            notes.append(f"primary {primary.name}, term {shard.primary_term}, policy "
                         f"{policy.kind} {policy.num_sync}")
            notes += [f"{m.name} {positions[m.name]}" for m in self.members if m is not primary]
        async with self.steps.step("choose the new primary") as notes:
            target = choose_target(primary, self.members, positions, streaming, policy, to)
            notes.append(f"{target.name}, replayed {format_lsn(positions[target.name].lsn)}")
        num_sync, standbys = sync_standbys(policy, target, self.members)
        async with self.steps.step(f"durability policy on {target.name}, for when it is "
                                   "primary") as notes:
            # Set while it is a replica (where it has no effect), so that its very first
            # commit as primary already waits for a replica.
            await target.set_durability(num_sync, standbys)
            notes.append(f"ANY {num_sync} ({', '.join(standbys)})" if num_sync else "none")
        paused = time.monotonic()
        try:
            final_lsn = await self._stop_writes(shard, primary, target)
            await self._promote(primary, target, final_lsn)
        except BaseException as e:
            await self._roll_back(primary, target, e)
        problems, term = await self._finish(primary, target, positions)
        result = Result(self.ref, primary.name, target.name, term, time.monotonic() - t0,
                        self.writes_resumed - paused, problems)
        if problems:
            raise SwitchoverError(
                f"{target.name} is the primary of {self.ref} (term {term}), but: "
                + "; ".join(problems) + "\n" + await self.describe())
        return result

    def _primary(self, shard: Shard) -> Member:
        if not shard.primary_id:
            raise SwitchoverError(f"shard {self.ref} has no primary in the topology")
        primary = find_member(self.members, shard.primary_id)
        if primary is None:
            raise SwitchoverError(
                f"the primary of {self.ref} in the topology, {shard.primary_id}, is not one of "
                f"its instances: " + ", ".join(m.name for m in self.members))
        return primary

    def _check_roles(self, primary: Member, positions: Mapping[str, Position]) -> None:
        if positions[primary.name].role != PRIMARY:
            raise SwitchoverError(
                f"the topology names {primary.name} the primary of {self.ref}, but it is "
                f"{positions[primary.name]}; nothing was changed")
        others = [m.name for m in self.members
                  if m is not primary and positions[m.name].role == PRIMARY]
        if others:
            raise SwitchoverError(
                f"{', '.join(others)} also claim(s) to be primary of {self.ref} besides "
                f"{primary.name}; fix that first (nothing was changed)")

    async def _stop_writes(self, shard: Shard, primary: Member, target: Member) -> int:
        async with self.steps.step("announce the switch (shard and old primary not "
                                   "serving)"):
            self.lock.check()
            self.was_serving = shard.is_primary_serving
            await self.topo.update_shard_fields(
                self.ref.database, self.ref.tablegroup, self.ref.shard, _set_serving(False))
            await self._pooler(primary, serving=ServingState.NOT_SERVING)
            # Gateways learn of it through their topology watches within milliseconds; a
            # statement they sent just before is open on the primary by the time we look.
            await asyncio.sleep(ANNOUNCE_GRACE)
        async with self.steps.step(f"let open transactions on {primary.name} finish") as notes:
            notes.append(await self._drain(primary))
        async with self.steps.step(f"stop writes: clean shutdown of {primary.name}") as notes:
            # A fast shutdown, not default_transaction_read_only: read-only mode does not
            # touch transactions already writing, and any session can turn it off again.
            # A shutdown ends every session (a commit still waiting for its synchronous
            # replica is cut, so never acknowledged), writes a last checkpoint, and its
            # walsenders exit only once each connected replica has that WAL. So everything
            # ever acknowledged is in WAL that ends at this checkpoint.
            final_lsn = await primary.shutdown()
            notes.append(f"last WAL at {format_lsn(final_lsn)}")
        return final_lsn

    async def _drain(self, primary: Member) -> str:
        """Give open transactions a moment to end on their own; only a courtesy to clients
        (the shutdown after it is what keeps acknowledged commits safe)."""
        deadline = time.monotonic() + self.timeouts.drain
        while True:
            try:
                left = await primary.open_transactions()
            except Exception as e:
                return f"cannot tell ({_reason(e)})"
            if left == 0:
                return "none open"
            if time.monotonic() > deadline:
                return f"{left} still open after {self.timeouts.drain:g}s: the shutdown cuts them"
            await asyncio.sleep(POLL_INTERVAL)

    async def _promote(self, primary: Member, target: Member, final_lsn: int) -> None:
        async with self.steps.step(f"wait for {target.name} to replay "
                                   f"{format_lsn(final_lsn)}"):
            await self._wait_replayed(target, final_lsn)
        async with self.steps.step(f"promote {target.name}"):
            # Past this point there is no way back: make sure nobody else took the shard.
            self.lock.check()
            try:
                await target.promote()
            except Exception as e:
                # A promotion that fails may still have happened: trust what the server says.
                if (await target.position()).role != PRIMARY:
                    # Fence it: the old primary comes back, and there must be only one.
                    await target.stop()
                    raise SwitchoverError(f"promotion of {target.name} failed ({e}); it was "
                                          "stopped") from e
                self.say(f"    promotion reported {e!r}, but {target.name} is primary")

    async def _wait_replayed(self, target: Member, final_lsn: int) -> None:
        # Strictly past: the replay position is the end of the last record replayed, and
        # the checkpoint record itself must be in, or the old primary would have WAL the
        # new timeline does not (and would need pg_rewind).
        deadline = time.monotonic() + self.timeouts.catch_up
        while True:
            pos = await target.position()
            if pos.role == REPLICA and pos.lsn > final_lsn:
                return
            if time.monotonic() > deadline:
                raise SwitchoverError(
                    f"{target.name} did not replay past {format_lsn(final_lsn)} within "
                    f"{self.timeouts.catch_up:g}s (it is {pos})")
            await asyncio.sleep(POLL_INTERVAL)

    async def _roll_back(self, primary: Member, target: Member, cause: BaseException) -> NoReturn:
        """Before promotion: bring the old primary back, undo the announcement."""
        self.say(f"rolling back: {primary.name} stays the primary")
        failures: list[str] = []

        async def attempt(text: str, action: Callable[[], Awaitable[object]]) -> None:
            try:
                async with self.steps.step(text):
                    await action()
            except Exception as e:
                failures.append(f"{text}: {_reason(e)}")

        async def restart_primary() -> None:
            if (await primary.position()).role != PRIMARY:
                await primary.start()

        await attempt(f"start {primary.name} again as the primary", restart_primary)
        await attempt(f"durability policy of {target.name} back to none",
                      lambda: target.set_durability(0, []))
        await attempt("announce the shard serving again", self._announce_serving(primary))
        state = await self.describe()
        head = f"switchover of {self.ref} failed and was rolled back: {_reason(cause)}"
        if failures:
            head += "\nthe rollback did not finish: " + "; ".join(failures)
        if isinstance(cause, Exception):
            raise SwitchoverError(f"{head}\n{state}") from cause
        self.say(f"{head}\n{state}")  # interrupted: no error message will carry it
        raise cause

    def _announce_serving(self, primary: Member) -> Callable[[], Awaitable[None]]:
        async def announce() -> None:
            await self.topo.update_shard_fields(
                self.ref.database, self.ref.tablegroup, self.ref.shard,
                _set_serving(self.was_serving))
            await self._pooler(primary, role=PoolerRole.PRIMARY, serving=ServingState.SERVING)
        return announce

    async def _finish(self, primary: Member, target: Member,
                      before: Mapping[str, Position]) -> tuple[list[str], int]:
        """After promotion: publish, repoint, rejoin. Each failure is noted, not fatal: the
        new primary serves whatever else happens."""
        problems: list[str] = []
        term = 0

        async def publish() -> None:
            nonlocal term

            def change(s: Shard) -> None:
                nonlocal term
                s.primary_cell, s.primary_id = target.cell, target.pooler_id
                s.primary_term += 1
                s.is_primary_serving = self.was_serving
                term = s.primary_term

            await self.topo.update_shard_fields(
                self.ref.database, self.ref.tablegroup, self.ref.shard, change)
            await self._pooler(target, role=PoolerRole.PRIMARY, serving=ServingState.SERVING)
            await self._pooler(primary, role=PoolerRole.REPLICA)

        try:
            async with self.steps.step(f"publish {target.name} as the primary") as notes:
                await publish()
                notes.append(f"term {term}")
        except Exception as e:
            problems.append(f"the topology still names {primary.name} ({_reason(e)})")
        self.writes_resumed = time.monotonic()
        others = [m for m in self.members if m is not primary and m is not target]
        for m in others:
            try:
                async with self.steps.step(f"repoint {m.name} to {target.name}"):
                    await m.follow(target)
            except Exception as e:
                problems.append(f"{m.name} still follows {primary.name} ({_reason(e)})")
        try:
            async with self.steps.step(f"restart {primary.name} as a replica of "
                                       f"{target.name}"):
                await primary.demote(target)
        except Exception as e:
            problems.append(f"{primary.name} is not a replica ({_reason(e)})")
        # Those that ran before are expected to stream; one that was down stays down.
        wanted = [primary.name] + [m.name for m in others if before[m.name].role]
        missing = await self._wait_streaming(target, wanted)
        if primary.name in missing:
            # It should not have diverged (the target replayed all it wrote), but if it
            # did, its timeline must be rewound onto the new primary's.
            try:
                async with self.steps.step(f"pg_rewind {primary.name} onto {target.name}"):
                    await primary.rewind(target)
                missing = await self._wait_streaming(target, missing)
            except Exception as e:
                problems.append(f"pg_rewind of {primary.name}: {_reason(e)}")
        problems += [f"{name} is not streaming from {target.name}" for name in missing]
        try:
            async with self.steps.step("pooler records: roles"):
                for m in self.members:
                    if m is target:
                        continue
                    serving = (ServingState.SERVING
                               if m is primary and primary.name not in missing else None)
                    await self._pooler(m, role=PoolerRole.REPLICA, serving=serving)
        except Exception as e:
            problems.append(f"pooler records not updated ({_reason(e)})")
        return problems, term

    async def _wait_streaming(self, target: Member, names: list[str]) -> list[str]:
        """Wait until each of ``names`` streams from ``target``; return those that do not."""
        missing = list(names)
        try:
            async with self.steps.step(f"wait until {', '.join(names)} stream from "
                                       f"{target.name}"):
                deadline = time.monotonic() + self.timeouts.streaming
                while True:
                    streaming = set(await target.streaming_replicas())
                    missing = [n for n in names if n not in streaming]
                    if not missing:
                        return []
                    if time.monotonic() > deadline:
                        raise SwitchoverError(f"not streaming after "
                                              f"{self.timeouts.streaming:g}s: "
                                              + ", ".join(missing))
                    await asyncio.sleep(POLL_INTERVAL)
        except Exception:
            pass  # printed by the step; the caller reports `missing`
        return missing

    async def _pooler(self, m: Member, role: PoolerRole | None = None,
                      serving: ServingState | None = None) -> None:
        """Set the role and serving state of ``m``'s Pooler record. A live pooler writes the
        same facts when it sees them in Postgres; this keeps the record right at once, and
        when no pooler runs."""
        def change(p: Pooler) -> None:
            if role is not None:
                p.role = role
            if serving is not None:
                p.serving_state = serving

        try:
            await self.topo.update_pooler_fields(m.cell, m.pooler_id, change)
        except NoNode:
            pass  # an instance without a record: nothing to keep right

    async def describe(self) -> str:
        """The shard as it is now, one line per instance."""
        positions = await self.positions()
        primaries = [n for n, p in positions.items() if p.role == PRIMARY]
        lines = [f"shard {self.ref} now:"]
        lines += [f"  {m.name:<20} {positions[m.name]}" for m in self.members]
        if len(primaries) == 1:
            lines.append(f"  writable primary: {primaries[0]}")
        else:
            lines.append(f"  writable primaries: {', '.join(primaries) or 'NONE'}")
        try:
            shard = await self.topo.get_shard(self.ref.database, self.ref.tablegroup,
                                              self.ref.shard)
            lines.append(f"  topology: primary {shard.primary_id}, term {shard.primary_term}, "
                         f"{'serving' if shard.is_primary_serving else 'NOT serving'}")
        except TopoError as e:
            lines.append(f"  topology: unreadable ({e})")
        return "\n".join(lines)


def _set_serving(serving: bool) -> Callable[[Shard], None]:
    def change(s: Shard) -> None:
        s.is_primary_serving = serving
    return change
