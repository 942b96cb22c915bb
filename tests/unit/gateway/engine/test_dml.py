"""UPDATE/DELETE execution on a scripted VCursor: a sharding-key change that would move a
row is refused before anything is written; appended RETURNING columns never reach the
client; lookup rows follow the rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pglast import parse_sql

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import dml
from multigres.gateway.planner.plan import Plan
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError

VSCHEMA = Path(__file__).parents[3] / "golden" / "planner" / "dml_vschema.json"
Answer = Callable[[ShardQuery], Result]


class Scripted:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[ShardQuery] = []

    def shard_map(self, tablegroup: str) -> ShardMap:
        return ShardMap(["-80", "80-"] if tablegroup == "shop" else ["0"])

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        self.sent.extend(queries)
        return [self.answer(q) for q in queries]


def plan(sql: str) -> tuple[Plan, list[str]]:
    vs = VSchema.loads(VSCHEMA.read_text())
    n = normalize(sql.encode())
    text = n.text.decode()
    stmt = parse_sql(text)[0].stmt
    fn = dml.plan_update if text.startswith("UPDATE") else dml.plan_delete
    return fn(stmt, vs, text, n.n_params), [p.raw.decode() for p in n.params]


def rows(fields: list[tuple[str, int]], *vals: list[bytes | None], tag: bytes) -> Result:
    return Result(fields=[Field(n, t) for n, t in fields],
                  rows=[build_datarow(v) for v in vals], tag=tag)


async def test_key_change_to_another_shard_is_refused_before_writing() -> None:
    def answer(q: ShardQuery) -> Result:
        assert q.sql.startswith("SELECT"), q.sql  # nothing is written
        return rows([("ctid", 27), ("customer_id", 20), ("email", 25)],
                    [b"(0,1)", b"1", b"a@x"], tag=b"SELECT 1")

    p, bind = plan("UPDATE customers SET customer_id = 3 WHERE customer_id = 1")
    vc = Scripted(answer)
    with pytest.raises(PgError) as e:
        await p.execute(vc, bind)
    assert e.value.sqlstate == "0A000"
    assert "from shard 80- to shard -80" in e.value.message
    assert len(vc.sent) == 1


async def test_key_change_within_the_shard_moves_lookup_rows() -> None:
    def answer(q: ShardQuery) -> Result:
        if q.sql.startswith("SELECT"):
            return rows([("ctid", 27), ("customer_id", 20), ("email", 25)],
                        [b"(0,1)", b"1", b"a@x"], tag=b"SELECT 1")
        if q.sql.startswith("UPDATE"):
            return rows([("customer_id", 20), ("email", 25)], [b"2", b"a@x"], tag=b"UPDATE 1")
        return Result(tag=b"INSERT 0 1" if q.sql.startswith("INSERT") else b"DELETE 1")

    p, bind = plan("UPDATE customers SET customer_id = 2 WHERE customer_id = 1")
    vc = Scripted(answer)
    res = await p.execute(vc, bind)
    assert res.tag == b"UPDATE 1" and res.fields is None and res.rows == []
    sent = [q.sql for q in vc.sent]
    assert "ctid = ANY(CAST('{\"(0,1)\"}' AS tid[]))" in sent[1]
    assert sent[2].startswith('DELETE FROM "customer_email_idx"') and "910a2dec89025cc1" in sent[2]
    assert sent[3].startswith('INSERT INTO "customer_email_idx"') and "975835de1c9756ce" in sent[3]


async def test_delete_returning_keeps_only_the_clients_columns() -> None:
    def answer(q: ShardQuery) -> Result:
        if q.sql.startswith("DELETE FROM customers"):
            assert q.sql.endswith("RETURNING name, customers.customer_id, customers.email")
            return rows([("name", 25), ("customer_id", 20), ("email", 25)],
                        [b"ann", b"1", b"a@x"], [b"bob", b"1", None], tag=b"DELETE 2")
        return Result(tag=b"DELETE 1")

    p, bind = plan("DELETE FROM customers WHERE customer_id = 1 RETURNING name")
    vc = Scripted(answer)
    res = await p.execute(vc, bind)
    assert res.tag == b"DELETE 2"
    assert [f.name for f in res.fields or []] == ["name"]
    assert [RowView(r).values() for r in res.rows] == [[b"ann"], [b"bob"]]
    lookups = [q.sql for q in vc.sent if "customer_email_idx" in q.sql]
    assert len(lookups) == 1 and "'a@x'" in lookups[0]  # the NULL email has no lookup row


async def test_counts_sum_over_shards() -> None:
    p, bind = plan("UPDATE orders SET total = 1")
    vc = Scripted(lambda q: Result(tag=b"UPDATE 3" if q.shard == "-80" else b"UPDATE 4"))
    res = await p.execute(vc, bind)
    assert res.tag == b"UPDATE 7" and len(vc.sent) == 2


async def test_reference_answers_with_one_copy() -> None:
    p, bind = plan("DELETE FROM products WHERE id = 1")
    vc = Scripted(lambda q: Result(tag=b"DELETE 1"))
    res = await p.execute(vc, bind)
    assert res.tag == b"DELETE 1" and {q.shard for q in vc.sent} == {"-80", "80-"}
