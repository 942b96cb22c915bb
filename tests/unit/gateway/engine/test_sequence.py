"""The sequence allocator: blocks from one statement, shared by sessions, refilled once
under concurrency, and either block mode (INCREMENT BY cache) or one value per nextval."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.sequence import (
    SequenceAllocator,
    SequenceNext,
    refill_sql,
    sequence_name_of,
)
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner.templates import Template
from multigres.vschema.model import SequenceDef
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError


class FakeSequence:
    """A backing sequence: ``increment`` as created; answers the refill statement."""

    def __init__(self, increment: int, start: int = 1) -> None:
        self.next = start
        self.increment = increment
        self.calls = 0
        self.sequences = SequenceAllocator()

    def shard_map(self, tablegroup: str) -> ShardMap:
        return ShardMap(["0"])

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        (q,) = queries
        self.calls += 1
        await asyncio.sleep(0)  # let other sessions pile up on the lock
        cache = int(q.sql.split("seqincrement = ")[1].split()[0])
        n = 1 if self.increment == cache else int(q.sql.split("ELSE ")[1].split()[0])
        rows = []
        for _ in range(n):
            rows.append(build_datarow([str(self.next).encode(), str(self.increment).encode()]))
            self.next += self.increment
        return [Result(fields=[Field("nextval", 20), Field("seqincrement", 20)], rows=rows,
                       tag=b"SELECT %d" % n)]


SEQ = SequenceDef("s", "default", 100)


async def test_block_mode_one_statement_per_block() -> None:
    vc = FakeSequence(increment=100)
    ids = await vc.sequences.take(vc, SEQ, 5)
    assert ids == [1, 2, 3, 4, 5]
    assert await vc.sequences.take(vc, SEQ, 96) == list(range(6, 102)) and vc.calls == 2


async def test_value_mode_with_a_plain_sequence() -> None:
    vc = FakeSequence(increment=1)
    assert await vc.sequences.take(vc, SEQ, 3) == [1, 2, 3]
    assert vc.calls == 1  # 100 values fetched at once, one nextval each


async def test_concurrent_sessions_share_one_refill() -> None:
    vc = FakeSequence(increment=100)
    got = await asyncio.gather(*(vc.sequences.take(vc, SEQ, 10) for _ in range(10)))
    ids = [i for g in got for i in g]
    assert sorted(ids) == list(range(1, 101)) and vc.calls == 1


async def test_two_gateways_get_disjoint_blocks() -> None:
    vc = FakeSequence(increment=100)
    other = SequenceAllocator()
    a = await vc.sequences.take(vc, SEQ, 3)
    b = await other.take(vc, SEQ, 3)
    assert a == [1, 2, 3] and b == [101, 102, 103]


async def test_sequence_next_answers_like_postgres() -> None:
    vc = FakeSequence(increment=100)
    prim = SequenceNext({"s": SEQ}, 1, "default", Template("SELECT nextval($1)"))
    res = await prim.execute(vc, ["'public.S'"])
    assert res.tag == b"SELECT 1" and res.fields is not None and res.fields[0].name == "nextval"
    assert RowView(res.rows[0]).values() == [b"1"]


async def test_no_allocator_is_an_internal_error() -> None:
    class Bare:
        def shard_map(self, tablegroup: str) -> ShardMap:
            return ShardMap(["0"])

        async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
            return []

    prim = SequenceNext({"s": SEQ}, 1, "default", Template("SELECT nextval($1)"))
    with pytest.raises(PgError) as e:
        await prim.execute(Bare(), ["'s'"])
    assert e.value.sqlstate == "XX000"


def test_names_and_sql() -> None:
    assert sequence_name_of("public.my_seq") == "my_seq"
    assert sequence_name_of('"My.Seq"') == "My.Seq"
    assert sequence_name_of("App.Seq") == "app.seq"
    assert "'\"s\"'::regclass" in refill_sql(SEQ, 1)
    assert "ELSE 500 END" in refill_sql(SEQ, 500)
