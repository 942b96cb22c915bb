"""Sequences: ids unique across shards, taken in blocks from one backing Postgres sequence.

A VSchema sequence (``SequenceDef``: name, unsharded tablegroup, cache) is backed by the
Postgres sequence of the same name in that tablegroup. Shards never use their own sequences
for it: the planner fills every generated value (an omitted or DEFAULT auto-increment column,
``nextval('seq')`` in VALUES, ``SELECT nextval('seq')``) from a :class:`SequenceAllocator`.

How a block is taken (one statement, one round trip, atomic whatever other gateways do)::

    SELECT nextval(s.seqrelid), s.seqincrement
    FROM pg_catalog.pg_sequence s,
         generate_series(1, CASE WHEN s.seqincrement = <cache> THEN 1 ELSE <n> END)
    WHERE s.seqrelid = '<name>'::regclass

- When the backing sequence was made with ``INCREMENT BY <cache>`` (the recommended
  ``CREATE SEQUENCE s INCREMENT BY 1000``), one ``nextval`` reserves the whole block
  ``[v, v + cache)``: no other caller of ``nextval`` can get a value inside it.
- With any other increment (a plain ``CREATE SEQUENCE``, a serial's sequence being taken
  over), each of the ``n`` rows is one ``nextval``, each value unique by the sequence's own
  guarantee (``n`` = the cache, at most 10,000 per round trip, or the count asked for). Slower
  on the server, never wrong: there is no read-then-write race between gateways in either
  mode, unlike ``setval(nextval() + cache)`` or a counter table read without a lock.

Sequences are not transactional in Postgres, and neither are blocks: a rolled-back
transaction never gives its ids back, and ids are unique but not gap-free or in commit
order (as with Postgres's own ``CACHE``). A block taken by one gateway is used by all its
sessions; another gateway takes its own blocks, so ids from two gateways interleave.

Concurrency: one allocator per gateway and database, shared by its sessions. Taking values
from the current block never awaits (atomic under asyncio); a refill is serialized per
sequence by an ``asyncio.Lock``, and a caller that waited for someone else's refill uses it.
The refill runs on the VCursor of the session that needed it (the statement is
non-transactional, so which session's transaction it runs in does not matter; one in a
failed transaction gets Postgres's 25P02 like any other statement would).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from multigres._cy.pgvalue import build_datarow
from multigres.gateway.engine.bindvalues import decode
from multigres.gateway.engine.primitive import Bind
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.gateway.planner.templates import Template
from multigres.vschema.model import SequenceDef
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

# The most values one refill asks for when each value costs a nextval on the server.
MAX_VALUES_PER_REFILL = 10_000
_INT8_MAX = (1 << 63) - 1
OID_INT8 = 20


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A string constant that reads the same whatever standard_conforming_strings is."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def regclass_text(name: str) -> str:
    """The sequence's name as regclass input: each part quoted (names in the VSchema are as
    Postgres stores them), ``schema.name`` kept as two parts."""
    return ".".join(quote_ident(p) for p in name.split("."))


def refill_sql(seq: SequenceDef, need: int) -> str:
    n = max(need, min(seq.cache, MAX_VALUES_PER_REFILL))
    rel = quote_literal(regclass_text(seq.name))
    return (
        "SELECT nextval(s.seqrelid), s.seqincrement FROM pg_catalog.pg_sequence s, "
        f"generate_series(1, CASE WHEN s.seqincrement = {seq.cache} THEN 1 ELSE {n} END) "
        f"WHERE s.seqrelid = {rel}::regclass"
    )


@dataclass
class _Blocks:
    """The ids a gateway holds for one sequence: ranges [start, end) in the order taken."""

    ranges: deque[list[int]] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refills: int = 0

    def take(self, count: int, out: list[int]) -> None:
        while len(out) < count and self.ranges:
            r = self.ranges[0]
            k = min(count - len(out), r[1] - r[0])
            out.extend(range(r[0], r[0] + k))
            r[0] += k
            if r[0] >= r[1]:
                self.ranges.popleft()

    def available(self) -> int:
        return sum(r[1] - r[0] for r in self.ranges)


# Runs one statement on (tablegroup, shard) outside any client's transaction.
Fetch = Callable[[str, str, str], Awaitable[Result]]


class SequenceAllocator:
    """Hands out ids of the VSchema's sequences; one per gateway and database (the session's
    VCursor carries it as ``sequences``). ``fetch``, when given, runs the refills on the
    gateway's own connection in autocommit (best: a refill then never counts as a shard of
    the client's transaction, which transaction mode SINGLE would refuse); without it they
    run on the VCursor of the session that needed them."""

    def __init__(self, fetch: Fetch | None = None) -> None:
        self._blocks: dict[tuple[str, str, int], _Blocks] = {}
        self._fetch = fetch

    def _state(self, seq: SequenceDef) -> _Blocks:
        # The cache is part of the key: a VSchema change of the cache starts new blocks
        # (the old ones stay valid ids, but the block arithmetic needs the new size).
        key = (seq.tablegroup, seq.name, seq.cache)
        st = self._blocks.get(key)
        if st is None:
            st = self._blocks[key] = _Blocks()
        return st

    async def take(self, vc: VCursor, seq: SequenceDef, count: int) -> list[int]:
        """``count`` ids, ascending within each block taken."""
        st = self._state(seq)
        out: list[int] = []
        st.take(count, out)
        while len(out) < count:
            async with st.lock:
                st.take(count, out)  # another session may have refilled while we waited
                if len(out) < count:
                    await self._refill(vc, seq, st, count - len(out))
                    st.take(count, out)
        return out

    async def _refill(self, vc: VCursor, seq: SequenceDef, st: _Blocks, need: int) -> None:
        shard = vc.shard_map(seq.tablegroup).names[0]
        sql = refill_sql(seq, need)
        if self._fetch is not None:
            res = await self._fetch(seq.tablegroup, shard, sql)
        else:
            (res,) = await vc.execute([ShardQuery(seq.tablegroup, shard, sql)])
        st.refills += 1
        values: list[int] = []
        increment = 0
        for payload in res.rows:
            v, inc = _two_ints(payload)
            values.append(v)
            increment = inc
        if not values:
            raise PgError(f"sequence {seq.name!r} gave no value", codes.INTERNAL_ERROR)
        if increment == seq.cache and len(values) == 1:
            start = values[0]
            end = min(start + seq.cache, _INT8_MAX + 1)
            st.ranges.append([start, end])
            return
        for v in values:
            st.ranges.append([v, v + 1])

    def stats(self) -> dict[str, Any]:
        return {
            f"{tg}.{name}": {"cache": cache, "available": b.available(), "refills": b.refills}
            for (tg, name, cache), b in self._blocks.items()
        }


class SequenceCursor(VCursor, Protocol):
    """The session's VCursor, with the gateway's allocator for its database."""

    sequences: SequenceAllocator


def allocator_of(vc: VCursor) -> SequenceAllocator:
    alloc = getattr(vc, "sequences", None)
    if not isinstance(alloc, SequenceAllocator):
        raise PgError(
            "this session cannot allocate sequence values (its VCursor has no allocator)",
            codes.INTERNAL_ERROR,
        )
    return alloc


def _two_ints(payload: bytes) -> tuple[int, int]:
    # DataRow: int16 column count, then per column int32 length and the text.
    pos = 2
    out = []
    for _ in range(2):
        n = int.from_bytes(payload[pos : pos + 4], "big", signed=True)
        pos += 4
        out.append(int(payload[pos : pos + n]))
        pos += n
    return out[0], out[1]


def sequence_name_of(text: str) -> str:
    """The relation name a regclass text (``'seq'``, ``'public.seq'``, ``'"Seq"'``) names, as
    the VSchema writes it: unquoted parts lower-cased, ``public.`` dropped."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j = i + 1
            buf = []
            while j < n:
                if text[j] == '"':
                    if text.startswith('"', j + 1):
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            j = text.find(".", i)
            j = n if j < 0 else j
            parts.append(text[i:j].strip().lower())
            i = j
        if i < n and text[i] == ".":
            i += 1
    if len(parts) == 2 and parts[0] == "public":
        parts = parts[1:]
    return ".".join(parts)


@dataclass(frozen=True)
class SequenceNext:
    """``SELECT nextval($1)`` where ``$1`` names a sequence of the VSchema: one id from the
    allocator, as Postgres would return it (one row, column ``nextval``, bigint). The name is
    a parameter (the normalizer lifts it), so it is resolved per execution; a sequence the
    VSchema does not name is the unsharded tablegroup's own: the statement goes there as is
    (``fallback``, ``$1`` in place)."""

    sequences: dict[str, SequenceDef]
    param: int
    fallback_tablegroup: str
    fallback: Template

    async def execute(self, vc: VCursor, bind: Bind) -> Result:
        raw = bind[self.param - 1]
        value = decode(raw).value
        seq = self.sequences.get(sequence_name_of(str(value))) if value is not None else None
        if seq is None:
            names = vc.shard_map(self.fallback_tablegroup).names
            sql = self.fallback.render(bind)
            (res,) = await vc.execute([ShardQuery(self.fallback_tablegroup, names[0], sql)])
            return res
        (v,) = await allocator_of(vc).take(vc, seq, 1)
        return Result(
            fields=[Field("nextval", OID_INT8, type_size=8)],
            rows=[build_datarow([str(v).encode()])],
            tag=b"SELECT 1",
        )

    def describe(self) -> dict[str, Any]:
        return {
            "primitive": "sequence",
            "sequences": sorted(self.sequences),
            "param": f"${self.param}",
            "otherwise": {self.fallback_tablegroup: self.fallback.sql},
        }

