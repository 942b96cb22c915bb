"""Writes through the engine on shards against the same writes on one plain Postgres.

One Postgres 15 holds a database per shard (tablegroup ``shop``: ``-80``, ``80-``; the
unsharded ``default``) and a reference database. The VSchema is ``examples/
vschema_sharded.json`` (customers with an owned unique email lookup sharded by email,
orders, order lines with an owned non-unique sku lookup in the unsharded tablegroup, a
reference table of products, three sequences). Random INSERT / UPDATE / DELETE statements
run through the DML planner and engine (each statement in one transaction over every shard,
as the session's implicit transaction) and directly on the reference database; after every
statement both fail or both succeed (same SQLSTATE), with the same count and RETURNING rows
(as multisets), and at the end (and every 50 statements) every table is compared in full
and the lookup tables are checked against the rows they index.

Ids from the gateway's sequences are not the reference's to guess: an INSERT that lets the
engine fill them returns every column, and the reference gets those rows.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pglast import parse_sql

from multigres._cy.pgvalue import RowView, build_datarow
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.sequence import SequenceAllocator
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import ddl as ddl_planner
from multigres.gateway.planner import dml
from multigres.gateway.planner.plan import Plan
from multigres.sql.normalize import normalize
from multigres.testing.postgres import PgHarness
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.vschema.vindexes import HashVindex, UnicodeXxhashVindex
from multigres.wire.errors import PgError

pytestmark = pytest.mark.integration

VSCHEMA = Path(__file__).parents[3] / "examples" / "vschema_sharded.json"
SHARDS = {"shop": ["-80", "80-"], "default": ["0"]}
STATEMENTS = 1500

SCHEMA_SHOP = """
CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text, email text);
CREATE TABLE orders (order_id bigint, customer_id bigint NOT NULL, total numeric,
                     PRIMARY KEY (customer_id, order_id));
CREATE TABLE order_lines (order_line_id bigint, customer_id bigint NOT NULL, sku text,
                          qty int, PRIMARY KEY (customer_id, order_line_id));
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);
CREATE TABLE customer_email_idx (email text PRIMARY KEY, keyspace_id bytea NOT NULL);
"""
SCHEMA_DEFAULT = """
CREATE TABLE order_line_sku_idx (sku text, order_line_id bigint, keyspace_id bytea,
                                 PRIMARY KEY (sku, order_line_id));
CREATE SEQUENCE customers_id_seq INCREMENT BY 1000 START 1000;
CREATE SEQUENCE orders_id_seq START 1000;
CREATE SEQUENCE order_lines_id_seq INCREMENT BY 1000 START 1005;
"""
# The reference: one database with every table, as a plain Postgres would hold them (the
# email is unique there as the unique lookup makes it through the gateway). Its own ids are
# used only by statements that fail on both sides.
SCHEMA_REF = """
CREATE SEQUENCE ref_ids START 1000000000;
CREATE TABLE customers (customer_id bigint PRIMARY KEY DEFAULT nextval('ref_ids'),
                        name text, email text UNIQUE);
CREATE TABLE orders (order_id bigint DEFAULT nextval('ref_ids'), customer_id bigint NOT NULL,
                     total numeric, PRIMARY KEY (customer_id, order_id));
CREATE TABLE order_lines (order_line_id bigint DEFAULT nextval('ref_ids'),
                          customer_id bigint NOT NULL, sku text, qty int,
                          PRIMARY KEY (customer_id, order_line_id));
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);
"""
TABLES = {
    "customers": "customer_id",
    "orders": "customer_id, order_id",
    "order_lines": "customer_id, order_line_id",
    "products": "id",
}


class Shards:
    """The engine's VCursor over one database per shard (psycopg's raw libpq results)."""

    def __init__(self, conns: dict[tuple[str, str], psycopg.Connection[Any]]) -> None:
        self.conns = conns
        self.maps = {tg: ShardMap(names) for tg, names in SHARDS.items()}
        self.sequences = SequenceAllocator()
        self.log: list[ShardQuery] = []

    def shard_map(self, tablegroup: str) -> ShardMap:
        return self.maps[tablegroup]

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        out = []
        first_error: PgError | None = None
        for q in queries:
            self.log.append(q)
            try:
                out.append(run_raw(self.conns[(q.tablegroup, q.shard)], q.sql))
            except PgError as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return out

    def all(self, sql: str) -> None:
        for c in self.conns.values():
            c.pgconn.exec_(sql.encode())


def run_raw(conn: psycopg.Connection[Any], sql: str) -> Result:
    res = conn.pgconn.exec_(sql.encode())
    status = res.status
    if status not in (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK):
        raise PgError.from_fields({
            "C": (res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"XX000").decode(),
            "M": (res.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode(),
        })
    fields: list[Field] | None = None
    rows = []
    if status == psycopg.pq.ExecStatus.TUPLES_OK:
        fields = [Field((res.fname(i) or b"").decode(), res.ftype(i)) for i in range(res.nfields)]
        for r in range(res.ntuples):
            rows.append(build_datarow([res.get_value(r, c) for c in range(res.nfields)]))
    return Result(fields=fields, rows=rows, tag=res.command_status or b"")


def plan_of(vs: VSchema, sql: str) -> tuple[Plan, list[str]]:
    n = normalize(sql.encode())
    text = n.text.decode()
    stmt = parse_sql(text)[0].stmt
    kind = type(stmt).__name__
    fn = {"InsertStmt": dml.plan_insert, "UpdateStmt": dml.plan_update,
          "DeleteStmt": dml.plan_delete}.get(kind)
    if fn is None:
        plan = ddl_planner.plan_ddl(stmt, vs, text, n.n_params)
    else:
        plan = fn(stmt, vs, text, n.n_params)
    return plan, [p.raw.decode() for p in n.params]


async def run_engine(shards: Shards, vs: VSchema, sql: str) -> Result:
    plan, bind = plan_of(vs, sql)
    shards.all("BEGIN")
    try:
        if plan.passthrough is not None:
            tg = plan.passthrough
            (res,) = await shards.execute([ShardQuery(tg, "0", sql)])
        else:
            res = await plan.execute(shards, bind)
    except BaseException:
        shards.all("ROLLBACK")
        raise
    shards.all("COMMIT")
    return res


def rows_of(res: Result) -> Counter[tuple[bytes | None, ...]]:
    return Counter(tuple(RowView(r).values()) for r in res.rows)


@pytest.fixture(scope="module")
def setup(pg_harness: PgHarness) -> Iterator[tuple[Shards, psycopg.Connection[Any], VSchema]]:
    inst = pg_harness.primary()
    try:
        with inst.connect() as admin:
            admin.autocommit = True
            dbs = [f"{tg}_{s}" for tg, names in SHARDS.items() for s in names] + ["ref"]
            for db in dbs:
                admin.execute(f'CREATE DATABASE "{db}"'.encode())
        conns = {}
        for tg, names in SHARDS.items():
            for s in names:
                c = inst.connect(f"{tg}_{s}")
                c.autocommit = True
                c.execute((SCHEMA_SHOP if tg == "shop" else SCHEMA_DEFAULT).encode())
                conns[(tg, s)] = c
        ref = inst.connect("ref")
        ref.autocommit = True
        ref.execute(SCHEMA_REF.encode())
        doc = json.loads(VSCHEMA.read_text())
        # Emails may be NULL here: such customers get no lookup row.
        doc["vindexes"]["customer_email_lookup"]["params"]["ignore_nulls"] = True
        vs = VSchema.parse(doc)
        yield Shards(conns), ref, vs
        for c in [*conns.values(), ref]:
            c.close()
    finally:
        inst.stop()


# -- checks ----------------------------------------------------------------------------------


def table_rows(shards: Shards, table: str) -> Counter[tuple[Any, ...]]:
    tg_shards = SHARDS["shop"]
    out: Counter[tuple[Any, ...]] = Counter()
    for s in tg_shards:
        res = run_raw(shards.conns[("shop", s)], f"SELECT * FROM {table}")
        out.update(tuple(RowView(r).values()) for r in res.rows)
    return out


def compare_tables(shards: Shards, ref: psycopg.Connection[Any]) -> None:
    for table in TABLES:
        mine = table_rows(shards, table)
        if table == "products":  # every copy holds the whole table
            for s in SHARDS["shop"]:
                res = run_raw(shards.conns[("shop", s)], "SELECT * FROM products")
                copy = Counter(tuple(RowView(r).values()) for r in res.rows)
                theirs = Counter(tuple(RowView(r).values())
                                 for r in run_raw(ref, "SELECT * FROM products").rows)
                assert copy == theirs, f"products on {s}"
            continue
        theirs = Counter(tuple(RowView(r).values())
                         for r in run_raw(ref, f"SELECT * FROM {table}").rows)
        assert mine == theirs, table


def check_lookups(shards: Shards, vs: VSchema) -> None:
    """Each lookup table holds exactly one row per indexed row, on the right shard, with
    the row's keyspace id."""
    hash_v = vs.vindexes["hash"]
    name_hash = vs.vindexes["name_hash"]
    assert isinstance(hash_v, HashVindex) and isinstance(name_hash, UnicodeXxhashVindex)
    smap = shards.maps["shop"]
    expected_email: set[tuple[str, str, bytes]] = set()
    expected_sku: set[tuple[str, int, bytes]] = set()
    for s in SHARDS["shop"]:
        conn = shards.conns[("shop", s)]
        for cid, email in conn.execute("SELECT customer_id, email FROM customers").fetchall():
            if email is not None:
                ksid = hash_v.map([cid])[0]
                assert ksid is not None
                expected_email.add((smap.shard_for(name_hash.map([email])[0] or b""), email,
                                    ksid))
        for cid, sku, olid in conn.execute(
            "SELECT customer_id, sku, order_line_id FROM order_lines"
        ).fetchall():
            ksid = hash_v.map([cid])[0]
            assert ksid is not None
            expected_sku.add((sku, olid, ksid))
    got_email = set()
    for s in SHARDS["shop"]:
        for email, ksid in shards.conns[("shop", s)].execute(
            "SELECT email, keyspace_id FROM customer_email_idx"
        ).fetchall():
            got_email.add((s, email, bytes(ksid)))
    assert got_email == expected_email
    got_sku = {
        (sku, olid, bytes(k)) for sku, olid, k in shards.conns[("default", "0")].execute(
            "SELECT sku, order_line_id, keyspace_id FROM order_line_sku_idx"
        ).fetchall()
    }
    assert got_sku == expected_sku


# -- the random workload ----------------------------------------------------------------------


class Workload:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.ids: list[int] = list(range(1, 30))

    def cid(self) -> int:
        r = self.rnd
        return r.choice(self.ids) if self.ids and r.random() < 0.8 else r.randint(-5, 60)

    def lit(self, v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return str(v)

    def email(self) -> str | None:
        r = self.rnd
        return None if r.random() < 0.1 else f"u{r.randint(1, 40)}@x"

    def statement(self) -> tuple[str, bool]:
        """(SQL, whether the engine fills ids: the reference then gets the returned rows)."""
        r = self.rnd
        k = r.randint(0, 20)
        ids = ", ".join(str(self.cid()) for _ in range(r.randint(1, 4)))
        if k == 0:
            rows = ", ".join(
                f"({self.cid()}, 'n{r.randint(1, 9)}', {self.lit(self.email())})"
                for _ in range(r.randint(1, 4))
            )
            return f"INSERT INTO customers (customer_id, name, email) VALUES {rows}", False
        if k == 1:
            rows = ", ".join(f"('auto', {self.lit(self.email())})"
                             for _ in range(r.randint(1, 3)))
            return ("INSERT INTO customers (name, email) VALUES " + rows + " RETURNING *",
                    True)
        if k == 2:
            rows = ", ".join(f"({self.cid()}, {r.randint(1, 500)}.{r.randint(0, 99)})"
                             for _ in range(r.randint(1, 5)))
            return f"INSERT INTO orders (customer_id, total) VALUES {rows} RETURNING *", True
        if k == 3:
            rows = ", ".join(
                f"({self.cid()}, 'sku{r.randint(1, 8)}', {r.randint(1, 5)})"
                for _ in range(r.randint(1, 4))
            )
            return (f"INSERT INTO order_lines (customer_id, sku, qty) VALUES {rows} "
                    "RETURNING order_line_id, customer_id, sku, qty", True)
        if k == 4:
            return (f"UPDATE customers SET email = {self.lit(self.email())} "
                    f"WHERE customer_id = {self.cid()} RETURNING customer_id, email", False)
        if k == 5:
            return (f"UPDATE customers SET name = 'm{r.randint(1, 9)}' "
                    f"WHERE email = {self.lit(self.email())}", False)
        if k == 6:
            return f"DELETE FROM customers WHERE customer_id IN ({ids}) RETURNING name", False
        if k == 7:
            return f"DELETE FROM customers WHERE email = {self.lit(self.email())}", False
        if k == 8:
            return f"UPDATE orders SET total = total + 1 WHERE customer_id IN ({ids})", False
        if k == 9:
            return f"DELETE FROM orders WHERE total > {r.randint(100, 500)}", False
        if k == 10:
            return (f"UPDATE order_lines SET sku = 'sku{r.randint(1, 8)}' "
                    f"WHERE customer_id = {self.cid()} AND qty > {r.randint(0, 4)}", False)
        if k == 11:
            return f"DELETE FROM order_lines WHERE sku = 'sku{r.randint(1, 8)}'", False
        if k == 12:
            c = self.cid()
            new = c if r.random() < 0.5 else self.cid()
            return (f"UPDATE customers SET customer_id = {new}, name = 'moved' "
                    f"WHERE customer_id = {c}", False)
        if k == 13:
            p = r.randint(1, 10)
            return (f"INSERT INTO products (id, name, price) VALUES ({p}, 'p{p}', {p}.5) "
                    "ON CONFLICT (id) DO UPDATE SET price = products.price + 1", False)
        if k == 14:
            return f"UPDATE products SET price = price * 2 WHERE id < {r.randint(1, 10)}", False
        if k == 15:
            return f"DELETE FROM products WHERE id = {r.randint(1, 10)}", False
        if k == 16:
            return (f"INSERT INTO orders (customer_id, order_id, total) VALUES "
                    f"({self.cid()}, {r.randint(1, 20)}, 1) ON CONFLICT (customer_id, order_id) "
                    "DO UPDATE SET total = orders.total + excluded.total", False)
        if k == 17:
            c = self.cid()
            return (f"INSERT INTO orders (order_id, customer_id, total) VALUES (DEFAULT, {c}, 1),"
                    f" (nextval('orders_id_seq'), {c}, 2) RETURNING *", True)
        if k == 18:
            return (f"UPDATE order_lines SET customer_id = customer_id + 1 "
                    f"WHERE customer_id = {self.cid()}", False)
        if k == 19:
            return f"DELETE FROM order_lines WHERE qty = {r.randint(1, 5)} RETURNING *", False
        return (f"UPDATE customers SET email = lower(name) || '@y' "
                f"WHERE customer_id IN ({ids})", False)


def apply_reference(ref: psycopg.Connection[Any], sql: str, res: Result | None) -> Result:
    """The same statement on the reference, or the engine's returned rows when the engine
    chose the ids (the statement's RETURNING lists the table's columns)."""
    if res is None:
        return run_raw(ref, sql)
    table = sql.split()[2]
    cols = [f.name for f in res.fields or []]
    out = Result(fields=res.fields, tag=res.tag)
    for payload in res.rows:
        vals = RowView(payload).values()
        lits = ", ".join("NULL" if v is None else "'" + v.decode().replace("'", "''") + "'"
                         for v in vals)
        run_raw(ref, f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({lits})")
        out.rows.append(payload)
    return out


async def test_random_writes_match_one_postgres(
    setup: tuple[Shards, psycopg.Connection[Any], VSchema],
) -> None:
    shards, ref, vs = setup
    rnd = random.Random(20240501)
    w = Workload(rnd)
    refusals = Counter[str]()
    outcomes = Counter[str]()
    for i in range(STATEMENTS):
        sql, engine_ids = w.statement()
        try:
            mine: Result | PgError = await run_engine(shards, vs, sql)
        except PgError as e:
            mine = e
        ref.execute(b"BEGIN")
        try:
            theirs: Result | PgError = apply_reference(
                ref, sql, mine if engine_ids and isinstance(mine, Result) else None
            )
        except PgError as e:
            theirs = e
        if isinstance(mine, PgError) and mine.sqlstate == "0A000":
            ref.execute(b"ROLLBACK")
            refusals[" ".join(mine.message.split()[:6])] += 1
            assert "sharding" in mine.message, (sql, mine)
            continue
        ref.execute(b"COMMIT" if isinstance(theirs, Result) else b"ROLLBACK")
        if isinstance(mine, PgError) or isinstance(theirs, PgError):
            assert isinstance(mine, PgError) and isinstance(theirs, PgError), (sql, mine, theirs)
            assert mine.sqlstate == theirs.sqlstate, (sql, mine, theirs)
            outcomes["error " + mine.sqlstate] += 1
            continue
        outcomes[sql.split()[0] + " " + ("rows" if mine.row_count else "none")] += 1
        assert mine.tag == theirs.tag, sql
        assert rows_of(mine) == rows_of(theirs), sql
        if i % 50 == 49:
            compare_tables(shards, ref)
            check_lookups(shards, vs)
    compare_tables(shards, ref)
    check_lookups(shards, vs)
    print(f"outcomes: {dict(outcomes)}; refused: {dict(refusals)}")
    assert outcomes["INSERT rows"] > STATEMENTS // 10 and outcomes["UPDATE rows"] > 20
    assert outcomes["DELETE rows"] > 20


async def test_sequence_blocks_are_shared_and_disjoint(
    setup: tuple[Shards, psycopg.Connection[Any], VSchema],
) -> None:
    shards, _, vs = setup
    seq = vs.sequences["customers_id_seq"]
    other = SequenceAllocator()  # a second gateway
    a = await asyncio.gather(*(shards.sequences.take(shards, seq, 7) for _ in range(20)))
    b = await asyncio.gather(*(other.take(shards, seq, 300) for _ in range(5)))
    ids = [v for vs_ in [*a, *b] for v in vs_]
    assert len(ids) == len(set(ids)) == 20 * 7 + 5 * 300
    seq2 = vs.sequences["orders_id_seq"]  # INCREMENT BY 1: one nextval per id
    c = await asyncio.gather(*(shards.sequences.take(shards, seq2, 3) for _ in range(4)),
                             *(other.take(shards, seq2, 5) for _ in range(3)))
    ids2 = [v for x in c for v in x]
    assert len(ids2) == len(set(ids2)) == 27
