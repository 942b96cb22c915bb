"""INSERT execution on a scripted VCursor: rows split per shard, lookup rows first, ids
from the allocator, RETURNING merged with the summed tag, NULL keys refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from pglast import parse_sql

from multigres._cy.pgvalue import build_datarow
from multigres.gateway.engine.insert import merge_results
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.sequence import SequenceAllocator
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import dml
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError

VSCHEMA = Path(__file__).parents[3] / "golden" / "planner" / "dml_vschema.json"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ShardQuery] = []
        self.sequences = SequenceAllocator()

    def shard_map(self, tablegroup: str) -> ShardMap:
        return ShardMap(["-80", "80-"] if tablegroup == "shop" else ["0"])

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        self.sent.extend(queries)
        out = []
        for q in queries:
            if "pg_sequence" in q.sql:
                out.append(Result(fields=[Field("nextval", 20), Field("seqincrement", 20)],
                                  rows=[build_datarow([b"5000", b"1000"])], tag=b"SELECT 1"))
            elif q.sql.startswith("INSERT INTO customers"):
                n = q.sql.count("), (") + 1
                out.append(Result(fields=[Field("customer_id", 20)],
                                  rows=[build_datarow([q.shard.encode()])] * n,
                                  tag=b"INSERT 0 %d" % n))
            else:
                out.append(Result(tag=b"INSERT 0 1"))
        return out


async def run(sql: str) -> tuple[Result, Recorder]:
    vs = VSchema.loads(VSCHEMA.read_text())
    n = normalize(sql.encode())
    text = n.text.decode()
    p = dml.plan_insert(parse_sql(text)[0].stmt, vs, text, n.n_params)
    rec = Recorder()
    res = await p.execute(rec, [x.raw.decode() for x in n.params])
    return res, rec


async def test_rows_split_lookups_first_returning_merged() -> None:
    res, rec = await run(
        "INSERT INTO customers (name, email) VALUES ('a', 'a@x'), ('b', 'b@x'), ('c', NULL) "
        "RETURNING customer_id"
    )
    kinds = [q.sql.split()[2] for q in rec.sent]
    assert "pg_sequence" in rec.sent[0].sql  # one refill for three ids
    assert kinds[1:3] == ['"customer_email_idx"'] * 2  # two emails, NULL ignored
    mains = [q for q in rec.sent if q.sql.startswith("INSERT INTO customers")]
    assert sorted(q.shard for q in mains) == ["-80", "80-"]
    assert "5000" in "".join(q.sql for q in mains) and "5002" in "".join(q.sql for q in mains)
    assert res.tag == b"INSERT 0 3" and len(res.rows) == 3


async def test_null_sharding_key_is_a_not_null_violation() -> None:
    with pytest.raises(PgError) as e:
        await run("INSERT INTO orders (customer_id, total) VALUES (1, 1), (NULL, 2)")
    assert e.value.sqlstate == "23502"


async def test_undecodable_key_is_refused_by_the_vindex() -> None:
    with pytest.raises(PgError) as e:
        await run("INSERT INTO orders (customer_id, order_id) VALUES (1.5, 1)")
    assert e.value.sqlstate == "0A000" and "hash" in e.value.message


def test_merge_results_sums_counts() -> None:
    a = Result(fields=None, tag=b"INSERT 0 2")
    b = Result(fields=None, tag=b"INSERT 0 3")
    assert merge_results([a, b], b"INSERT").tag == b"INSERT 0 5"
    assert merge_results([Result(tag=b"DELETE 1")], b"DELETE").tag == b"DELETE 1"
