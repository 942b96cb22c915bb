"""Plans run against an in-memory VCursor: what the gateway itself does (routing per execution,
merge order and its collation rule, LIMIT checks, empty aggregates, explain rows)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.template import Template
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import Plan, PlannerOptions, build
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError
from tests.unit.gateway.planner.golden import vschema

INT8, TEXT = 20, 25


class Shards:
    """Each shard answers with the rows given for it (same columns everywhere)."""

    def __init__(self, fields: list[Field], rows: dict[str, list[list[bytes | None]]]) -> None:
        self.fields = fields
        self.rows = rows
        self.sent: list[ShardQuery] = []
        self.maps = {"commerce": ShardMap(["-80", "80-"]), "main": ShardMap(["0"])}

    def shard_map(self, tablegroup: str) -> ShardMap:
        return self.maps[tablegroup]

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        self.sent.extend(queries)
        return [
            Result(list(self.fields), [build_datarow(r) for r in self.rows.get(q.shard, [])],
                   b"SELECT")
            for q in queries
        ]


def plan(sql: str, vs: VSchema | None = None, **opts: str) -> tuple[Plan, list[str]]:
    n = normalize(sql.encode())
    p = build(n.text.decode(), vs or vschema(), n.param_base + n.n_params,
              PlannerOptions(**opts))
    bind = [f"${i + 1}" for i in range(n.param_base + n.n_params)]
    for lit in n.params:
        bind[lit.number - 1] = lit.raw.decode()
    return p, bind


def run(p: Plan, bind: list[str], vc: Shards) -> list[list[bytes | None]]:
    r = asyncio.run(p.execute(vc, bind))
    return [RowView(x).values() for x in r.rows]


def test_template_slots_skip_quotes_and_comments() -> None:
    t = Template("SELECT '$1', \"$2\", $1 /* $3 */, $$x$2$$ FROM t WHERE a = $2")
    assert t.params == (1, 2)
    assert t.render(["1", "'b'"]) == "SELECT '$1', \"$2\", 1 /* $3 */, $$x$2$$ FROM t WHERE a = 'b'"


def test_in_list_each_shard_gets_its_own_values() -> None:
    p, bind = plan("SELECT * FROM orders WHERE customer_id IN (1, 2, 3, 4)")
    vc = Shards([Field("x", INT8)], {})
    run(p, bind, vc)
    sent = {q.shard: q.sql for q in vc.sent}
    assert sent == {"-80": "SELECT * FROM orders WHERE customer_id IN (3, 4)",
                    "80-": "SELECT * FROM orders WHERE customer_id IN (1, 2)"}


def test_plan_is_shared_by_executions_with_other_values() -> None:
    p, _ = plan("SELECT * FROM orders WHERE customer_id = 1")
    vc = Shards([Field("x", INT8)], {})
    run(p, ["3"], vc)
    run(p, ["1"], vc)
    assert [q.shard for q in vc.sent] == ["-80", "80-"]


def test_merge_order_nulls_and_desc() -> None:
    p, bind = plan("SELECT order_id FROM orders ORDER BY order_id DESC NULLS LAST")
    vc = Shards([Field("order_id", INT8)],
                {"-80": [[b"9"], [b"3"], [None]], "80-": [[b"10"], [b"4"], [None]]})
    assert run(p, bind, vc) == [[b"10"], [b"9"], [b"4"], [b"3"], [None], [None]]


def test_text_merge_needs_the_c_collation() -> None:
    rows: dict[str, list[list[bytes | None]]] = {"-80": [[b"B"], [b"a"]], "80-": [[b"A"], [b"b"]]}
    p, bind = plan("SELECT name FROM customers ORDER BY name", collation="en_US.utf8")
    with pytest.raises(PgError) as e:
        run(p, bind, Shards([Field("name", TEXT)], rows))
    assert e.value.sqlstate == "0A000"
    p, bind = plan('SELECT name FROM customers ORDER BY name COLLATE "C"', collation="en_US")
    doubled: dict[str, list[list[bytes | None]]] = {
        s: [r + r for r in v] for s, v in rows.items()}
    got = run(p, bind, Shards([Field("name", TEXT), Field("name", TEXT)], doubled))
    assert got == [[b"A"], [b"B"], [b"a"], [b"b"]]


def test_limit_offset_and_their_errors() -> None:
    p, bind = plan("SELECT order_id FROM orders ORDER BY order_id LIMIT 2 OFFSET 1")
    vc = Shards([Field("order_id", INT8)], {"-80": [[b"1"], [b"3"]], "80-": [[b"2"], [b"4"]]})
    assert run(p, bind, vc) == [[b"2"], [b"3"]]
    assert all(q.sql.endswith("LIMIT 3") for q in vc.sent)
    for b, code in ((["-1", "0"], "2201W"), (["1", "-1"], "2201X")):
        with pytest.raises(PgError) as e:
            run(p, b, vc)
        assert e.value.sqlstate == code


def test_scalar_aggregate_types_and_names() -> None:
    p, bind = plan("SELECT count(*), avg(qty) FROM order_lines")
    vc = Shards([Field("count", INT8), Field("sum", INT8), Field("count", INT8)],
                {"-80": [[b"2", b"7", b"2"]], "80-": [[b"1", b"2", b"1"]]})
    r = asyncio.run(p.execute(vc, bind))
    assert [(f.name, f.type_oid) for f in r.fields or []] == [("count", 20), ("avg", 1700)]
    assert [RowView(x).values() for x in r.rows] == [[b"3", b"3.0000000000000000"]]


def test_unsupported_names_the_construct() -> None:
    for sql, words in (
        ("SELECT row_number() OVER () FROM orders", "window functions"),
        ("SELECT string_agg(status, ',' ORDER BY status) FROM orders", "ORDER BY"),
        ("SELECT stddev(total) FROM orders", "stddev"),
        ("SELECT customer_id FROM customers INTERSECT SELECT customer_id FROM orders",
         "INTERSECT"),
    ):
        with pytest.raises(PgError) as e:
            plan(sql)
        assert e.value.sqlstate == "0A000" and words in e.value.message


def test_explain_rows() -> None:
    p, bind = plan("SELECT * FROM multigres.explain('SELECT * FROM orders WHERE customer_id = 1')")
    r = asyncio.run(p.execute(Shards([], {}), bind))
    rows = [RowView(x).values() for x in r.rows]
    assert [f.name for f in r.fields or []] == ["kind", "target", "detail"]
    assert rows[0][0] == b"plan" and b'"EqualUnique"' in (rows[0][2] or b"")
    assert rows[1] == [b"query", b"commerce/80-", b"SELECT * FROM orders WHERE customer_id = 1"]


def test_passthrough_for_unsharded_statements() -> None:
    p, _ = plan("SELECT * FROM regions WHERE region_id = 1")
    assert p.passthrough == "main"
    p, _ = plan("SELECT * FROM orders WHERE customer_id = 1")
    assert p.passthrough is None
