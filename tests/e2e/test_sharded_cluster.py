"""A sharded cluster end to end, as a user runs it: `multigres cluster init --config` with an
unsharded tablegroup and a sharded one of two shards (each a primary with a replica), the
VSchema applied with `multigres vschema apply`, then SQL through the gateway. Every query's
result is compared with the same query on a plain Postgres database holding the same rows
(created directly on the unsharded primary, outside the cluster's view)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres._cy import vhash
from tests.e2e.test_cluster_cli import Ports, _mg, _new_dir, _our_pids, _remove

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VSCHEMA = ROOT / "examples" / "vschema_sharded.json"

COLS = "(customer_id, email, name, region, score)"
SCHEMA = [
    "CREATE TABLE customers (customer_id bigint PRIMARY KEY, email text, name text, "
    "region text, score int)",
    "CREATE TABLE orders (order_id bigint, customer_id bigint, amount numeric(10,2), "
    "status text, PRIMARY KEY (customer_id, order_id))",
    "CREATE TABLE products (sku text PRIMARY KEY, title text, price numeric(10,2))",
    # The lookup vindex of customers.email (the VSchema shards it by email).
    "CREATE TABLE customer_email_idx (email text PRIMARY KEY, keyspace_id bytea)",
]


def _sharded_config(ports: Ports) -> str:
    text = (ROOT / "examples" / "sharded.yaml").read_text()
    for old, new in [("127.0.0.1:2379", f"127.0.0.1:{ports.etcd}"),
                     ("peer_port: 2380", f"peer_port: {ports.peer}"),
                     ("base_port: 25432", f"base_port: {ports.pg}"),
                     ("shared_buffers: 128MB", 'shared_buffers: 16MB\n    fsync: "off"'),
                     ("base_port: 16000", f"base_port: {ports.pooler}"),
                     ("grpc_base_port: 16100", f"grpc_base_port: {ports.grpc}"),
                     ("http_base_port: 16200", f"http_base_port: {ports.http}"),
                     ("pool_size: 20", "pool_size: 5"),
                     ("127.0.0.1:15432", f"127.0.0.1:{ports.gateway}"),
                     ("http_port: 15001", f"http_port: {ports.gateway_http}")]:
        assert old in text, old
        text = text.replace(old, new)
    return text


class Cluster:
    def __init__(self, d: Path, ports: Ports) -> None:
        self.dir = d
        self.ports = ports

    def gateway(self, **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.ports.gateway, user="postgres",
                               password="postgres", dbname="postgres", connect_timeout=10,
                               autocommit=True, **kw)

    def direct(self, instance: int, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Postgres instance ``instance`` (config order: 0 the unsharded primary, 2 and 4 the
        shards' primaries), bypassing the cluster."""
        return psycopg.connect(host="127.0.0.1", port=self.ports.pg + instance,
                               user="postgres", password="postgres", dbname=dbname,
                               connect_timeout=10, autocommit=True)


def apply_vschema(cluster_dir: Path, path: Path) -> None:
    """`multigres vschema apply` as a user runs it."""
    out = subprocess.run([sys.executable, "-m", "multigres.cli.main", "vschema", "apply",
                          "--dir", str(cluster_dir), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@contextlib.contextmanager
def sharded_cluster(workdir: Path, vschema: Path) -> Iterator[Cluster]:
    """The example cluster on free ports, with ``vschema`` applied; stopped (and checked to
    leave no process) at the end."""
    d = _new_dir()
    try:
        ports = Ports.pick(6)
        cfg = workdir / "sharded.yaml"
        cfg.write_text(_sharded_config(ports))
        _mg(d, "init", "--config", str(cfg))
        _mg(d, "start")
        apply_vschema(d, vschema)
        yield Cluster(d, ports)
        _mg(d, "stop")
        assert _our_pids(d) == []
    finally:
        _remove(d)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with sharded_cluster(tmp_path_factory.mktemp("sharded"), VSCHEMA) as c:
        with c.direct(0) as conn:
            conn.execute("CREATE DATABASE reference")
        yield c


def _both(c: Cluster, statements: list[str]) -> None:
    """Run each statement through the gateway and on the reference database."""
    with c.gateway() as gw, c.direct(0, "reference") as ref:
        for sql in statements:
            gw.execute(sql)
            ref.execute(sql)


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def _norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(str(v) if isinstance(v, Decimal) else v for v in r) for r in rows]


@pytest.fixture(scope="module")
def loaded(cluster: Cluster) -> Cluster:
    _both(cluster, SCHEMA)
    rows = []
    for i in range(1, 201):
        region = ["north", "south", "east", "west", None][i % 5]
        rows.append(f"({i}, 'c{i}@example.com', 'Name {i % 37}', "
                    f"{'NULL' if region is None else repr(region)}, {(i * 7919) % 1000})")
    orders = []
    for i in range(1, 601):
        cust = (i * 31) % 200 + 1
        orders.append(f"({i}, {cust}, {(i * 17) % 1000}.{i % 100:02d}, "
                      f"'{['new', 'paid', 'shipped'][i % 3]}')")
    _both(cluster, [
        "INSERT INTO customers (customer_id, email, name, region, score) VALUES "
        + ", ".join(rows),
        "INSERT INTO orders (order_id, customer_id, amount, status) VALUES " + ", ".join(orders),
        "INSERT INTO products (sku, title, price) VALUES ('a', 'Apple', 1.50), "
        "('b', 'Banana', 0.25), ('c', 'Cherry', 7.00)",
    ])
    return cluster


def test_rows_are_spread_over_the_shards(loaded: Cluster) -> None:
    counts = []
    for inst in (2, 4):
        with loaded.direct(inst) as conn:
            counts.append(_rows(conn, "SELECT count(*) FROM customers")[0][0])
            # The reference table has every row on every shard.
            assert _rows(conn, "SELECT count(*) FROM products") == [(3,)]
    assert sum(counts) == 200
    assert min(counts) > 50  # the hash spreads 200 ids roughly evenly


QUERIES = [
    ("SELECT * FROM customers WHERE customer_id = 17", False),
    ("SELECT name, email FROM customers WHERE customer_id IN (1, 2, 3, 150, 199)", False),
    ("SELECT customer_id, score FROM customers ORDER BY score DESC, customer_id LIMIT 7", True),
    ("SELECT customer_id FROM customers ORDER BY region NULLS FIRST, customer_id "
     "LIMIT 5 OFFSET 3", True),
    ("SELECT count(*), sum(score), min(score), max(score), avg(score) FROM customers", True),
    ("SELECT region, count(*), avg(score) FROM customers GROUP BY region "
     "ORDER BY region", True),
    ("SELECT region, count(*) FROM customers GROUP BY region HAVING count(*) > 39 "
     "ORDER BY region", True),
    ("SELECT DISTINCT status FROM orders ORDER BY status", True),
    ("SELECT c.name, o.order_id, o.amount FROM customers c JOIN orders o "
     "ON o.customer_id = c.customer_id WHERE c.customer_id = 42 ORDER BY o.order_id", True),
    ("SELECT o.customer_id, sum(o.amount) FROM orders o GROUP BY o.customer_id "
     "ORDER BY 2 DESC, 1 LIMIT 5", True),
    ("SELECT p.title FROM products p ORDER BY p.sku", True),
    ("SELECT count(*) FROM customers WHERE customer_id = 1 AND customer_id = 2", True),
]


@pytest.mark.parametrize(("sql", "ordered"), QUERIES, ids=[q[0][:50] for q in QUERIES])
def test_query_matches_plain_postgres(loaded: Cluster, sql: str, ordered: bool) -> None:
    with loaded.gateway() as gw, loaded.direct(0, "reference") as ref:
        got, want = _norm(_rows(gw, sql)), _norm(_rows(ref, sql))
    if ordered:
        assert got == want
    else:
        assert sorted(got, key=repr) == sorted(want, key=repr)


def test_transactions_across_shards(loaded: Cluster) -> None:
    ids = (1001, 1002, 1003, 1004)  # enough ids that both shards get some
    values = ", ".join(f"({i}, 'tx{i}@example.com', 'tx', 'north', 1)" for i in ids)
    with loaded.gateway() as gw:
        gw.execute("BEGIN")
        gw.execute(f"INSERT INTO customers {COLS} VALUES {values}")
        inside = gw.execute("SELECT count(*) FROM customers WHERE name = 'tx'").fetchone()
        gw.execute("ROLLBACK")
        assert inside == (4,)
        assert gw.execute("SELECT count(*) FROM customers WHERE name = 'tx'").fetchone() == (0,)
        gw.execute("BEGIN")
        gw.execute(f"INSERT INTO customers {COLS} VALUES {values}")
        gw.execute("COMMIT")
        assert gw.execute("SELECT count(*) FROM customers WHERE name = 'tx'").fetchone() == (4,)
        # An error inside the transaction fails it, as on Postgres, and rolls back every shard.
        gw.execute("BEGIN")
        gw.execute("DELETE FROM customers WHERE name = 'tx'")
        with pytest.raises(psycopg.errors.UniqueViolation):
            gw.execute(f"INSERT INTO customers {COLS} VALUES (1, 'dup', 'dup', NULL, 0)")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            gw.execute("SELECT 1")
        gw.execute("ROLLBACK")
        assert gw.execute("SELECT count(*) FROM customers WHERE name = 'tx'").fetchone() == (4,)
        gw.execute("DELETE FROM customers WHERE name = 'tx'")


def test_single_mode_refuses_a_second_shard(loaded: Cluster) -> None:
    with loaded.gateway() as gw:
        gw.execute("SET multigres.transaction_mode = 'single'")
        gw.execute("BEGIN")
        gw.execute("SELECT * FROM customers WHERE customer_id = 1")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="more than one shard"):
            gw.execute("SELECT * FROM customers")
        gw.execute("ROLLBACK")


def test_vschema_change_is_seen_within_a_second(loaded: Cluster) -> None:
    doc = json.loads(VSCHEMA.read_text())
    doc["tables"]["audit_log"] = {"tablegroup": "shop", "type": "reference"}
    doc["tables"]["ledger"] = {"tablegroup": "shop",
                               "column_vindexes": [{"column": "id", "name": "hash"}]}
    doc["tables"]["events"] = {"tablegroup": "shop",
                               "column_vindexes": [{"column": "customer_id", "name": "hash"}],
                               "auto_increment": {"column": "event_id",
                                                  "sequence": "orders_id_seq"}}
    path = loaded.dir / "vs2.json"
    path.write_text(json.dumps(doc))
    apply_vschema(loaded.dir, path)
    time.sleep(1.0)
    with loaded.gateway() as gw:
        gw.execute("CREATE TABLE audit_log (id int)")
    # A reference table: created on every shard of the sharded tablegroup.
    for inst in (2, 4):
        with loaded.direct(inst) as conn:
            assert conn.execute("SELECT to_regclass('audit_log') IS NOT NULL").fetchone() == (
                True,)


def test_parameters_of_the_extended_protocol(loaded: Cluster) -> None:
    """psycopg sends parameters with Parse/Bind/Describe/Execute: they route like literals
    (the plan is cached once, each execution's values pick the shard), and the rows equal
    plain Postgres's."""
    sql = "SELECT customer_id, name, score FROM customers WHERE customer_id = %s"
    with loaded.gateway() as gw, loaded.direct(0, "reference") as ref:
        for cid in (3, 77, 150, 199, 4242):
            assert _rows_p(gw, sql, (cid,)) == _rows_p(ref, sql, (cid,))
        many = "SELECT customer_id FROM customers WHERE customer_id = ANY(%s) ORDER BY 1"
        ids = [5, 6, 7, 120, 121]
        assert _rows_p(gw, many, (ids,)) == _rows_p(ref, many, (ids,))
        agg = "SELECT region, count(*) FROM customers WHERE score > %s GROUP BY 1 ORDER BY 1"
        assert _rows_p(gw, agg, (500,)) == _rows_p(ref, agg, (500,))
        # Prepared after repeated use (psycopg's prepare_threshold): still right.
        for _ in range(6):
            assert _rows_p(gw, sql, (11,)) == _rows_p(ref, sql, (11,))
        # Writes with parameters, in a transaction.
        ins = f"INSERT INTO customers {COLS} VALUES (%s, %s, %s, %s, %s)"
        with gw.transaction():
            gw.execute(ins, (3001, "p1@example.com", "param", "east", 5))
            gw.execute(ins, (3002, "p2@example.com", "param", None, 6))
        got = _rows_p(gw, "SELECT customer_id, region FROM customers WHERE name = %s "
                          "ORDER BY 1", ("param",))
        assert got == [(3001, "east"), (3002, None)]
        gw.execute("DELETE FROM customers WHERE name = %s", ("param",))
        # An error keeps the session usable.
        with pytest.raises(psycopg.errors.UniqueViolation):
            gw.execute(ins, (1, "x@example.com", "dup", None, 0))
        assert _rows_p(gw, sql, (3,)) == _rows_p(ref, sql, (3,))


def _rows_p(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]
            ) -> list[tuple[Any, ...]]:
    return _norm(conn.execute(sql, params).fetchall())


def test_lookup_sequences_and_explain(loaded: Cluster) -> None:
    with loaded.gateway() as gw, loaded.direct(0, "reference") as ref:
        # customers.email is a unique lookup vindex: one shard, found through its table.
        sql = "SELECT customer_id, name FROM customers WHERE email = 'c42@example.com'"
        assert _rows(gw, sql) == _rows(ref, sql) == [(42, "Name 5")]
        plan = _rows(gw, "SELECT * FROM multigres.explain('SELECT * FROM customers "
                         "WHERE customer_id = 42')")
        text = json.dumps(plan)
        assert "shop" in text and "customer_id" in text
        # Ids from the VSchema's sequence (backed by a sequence in the unsharded tablegroup),
        # unique across shards.
        gw.execute("CREATE SEQUENCE orders_id_seq INCREMENT BY 1000")
        gw.execute("INSERT INTO orders (customer_id, amount, status) VALUES "
                   "(1, 1.00, 'seq'), (2, 2.00, 'seq'), (3, 3.00, 'seq'), (150, 4.00, 'seq')")
        ids = [r[0] for r in _rows(gw, "SELECT order_id FROM orders WHERE status = 'seq'")]
        assert len(ids) == 4 and len(set(ids)) == 4
        (nxt,) = gw.execute("SELECT nextval('orders_id_seq')").fetchone() or (None,)
        assert nxt is not None and nxt not in ids
        gw.execute("DELETE FROM orders WHERE status = 'seq'")


def test_point_queries_take_the_direct_path(loaded: Cluster) -> None:
    """An equality on the hash vindex is routed to its shard by the gateway's data path
    (counted in /debug/status), with the same rows as the engine path and plain Postgres."""
    url = f"http://127.0.0.1:{loaded.ports.gateway_http}/debug/status?format=json"

    def direct() -> int:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(json.load(r)["counters"]["direct_statements"])

    before = direct()
    with loaded.gateway() as gw, loaded.direct(0, "reference") as ref:
        for cid in [*range(1, 60), 9999]:
            sql = f"SELECT customer_id, name, score FROM customers WHERE customer_id = {cid}"
            assert _rows(gw, sql) == _rows(ref, sql)
    # The first query of each shard opens its connection through the engine; then direct.
    assert direct() - before >= 50


def _shard_of(i: int) -> str:
    (ksid,) = vhash.hash_ids([i])
    assert ksid is not None
    return "-80" if ksid < b"\x80" else "80-"


def test_a_partial_commit_is_a_warning_naming_the_shards(loaded: Cluster) -> None:
    """Mode MULTI commits shard by shard: a deferred constraint that fails at COMMIT on one
    shard leaves the other shard's rows committed, and the client is told which."""
    ids_low = [i for i in range(1, 100) if _shard_of(i) == "-80"][:2]
    ids_high = [i for i in range(1, 100) if _shard_of(i) == "80-"][:1]
    notices: list[str] = []
    with loaded.gateway() as gw:
        gw.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        gw.execute("CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, v int, "
                   "CONSTRAINT ledger_v UNIQUE (v) DEFERRABLE INITIALLY DEFERRED)")
        gw.execute("BEGIN")
        # Two rows with the same v on shard -80 (fails at its COMMIT), one on 80-.
        gw.execute(f"INSERT INTO ledger (id, v) VALUES ({ids_low[0]}, 5), ({ids_low[1]}, 5), "
                   f"({ids_high[0]}, 7)")
        gw.execute("COMMIT")
        got = gw.execute("SELECT id FROM ledger ORDER BY id").fetchall()
    assert got == [(ids_high[0],)]  # 80- committed, -80 did not
    warning = " ".join(notices)
    assert "committed on shards shop/80-" in warning and "not on shop/-80" in warning


def test_identity_columns_take_the_sequences_values(loaded: Cluster) -> None:
    """An auto-increment column declared GENERATED ALWAYS AS IDENTITY on the shards gets
    the VSchema sequence's values (the shards' own identity sequences would collide)."""
    with loaded.gateway() as gw:
        gw.execute("CREATE SEQUENCE IF NOT EXISTS orders_id_seq INCREMENT BY 1000")
        gw.execute("CREATE TABLE events (event_id bigint GENERATED ALWAYS AS IDENTITY, "
                   "customer_id bigint NOT NULL, what text)")
        gw.execute("INSERT INTO events (customer_id, what) VALUES (1, 'a'), (2, 'b'), "
                   "(3, 'c'), (150, 'd')")
        ids = [r[0] for r in gw.execute("SELECT event_id FROM events").fetchall()]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_savepoints_across_shards(loaded: Cluster) -> None:
    """Nested transaction blocks (psycopg's, as ORMs use them) are savepoints: an error inside
    one rolls back to it on every shard, and the outer transaction goes on, as on Postgres."""
    low = [i for i in range(5000, 5200) if _shard_of(i) == "-80"][:2]
    high = [i for i in range(5000, 5200) if _shard_of(i) == "80-"][:2]
    ins = f"INSERT INTO customers {COLS} VALUES ({{}}, 'sp{{}}@example.com', 'sp', NULL, 0)"
    with loaded.gateway() as gw:
        with gw.transaction():
            gw.execute(ins.format(low[0], low[0]))
            with pytest.raises(psycopg.errors.UniqueViolation), gw.transaction():
                gw.execute(ins.format(high[0], high[0]))  # kept? no: rolled back with it
                gw.execute(ins.format(low[0], "dup"))  # a duplicate key on -80
            with gw.transaction():
                gw.execute(ins.format(high[1], high[1]))
            gw.execute(ins.format(low[1], low[1]))
        got = [r[0] for r in gw.execute("SELECT customer_id FROM customers WHERE name = 'sp' "
                                        "ORDER BY 1").fetchall()]
        gw.execute("DELETE FROM customers WHERE name = 'sp'")
    assert got == sorted([low[0], low[1], high[1]])


def test_a_shard_pooler_lost_and_back(loaded: Cluster) -> None:
    """A shard's pooler dies: queries on that shard get a clear error (08006) once the
    gateway's buffer time is up, the other shard keeps answering, and when the pooler is back
    (`cluster start`) the same session uses that shard again. Runs last: it breaks a shard."""
    on_low = next(i for i in range(1, 200) if _shard_of(i) == "-80")
    on_high = next(i for i in range(1, 200) if _shard_of(i) == "80-")
    sql = "SELECT customer_id FROM customers WHERE customer_id = {}"
    state = json.loads((loaded.dir / "state.json").read_text())["processes"]
    with loaded.gateway() as gw:
        for _ in range(3):  # the shard connections open, then the direct path takes over
            assert _rows(gw, sql.format(on_low)) == [(on_low,)]
            assert _rows(gw, sql.format(on_high)) == [(on_high,)]
        os.kill(state["pooler zone1-102"], signal.SIGKILL)  # the primary of shop/-80
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.ConnectionFailure, match=r"shop/-80|pooler"):
            for _ in range(3):  # the first may still be answered before the kill lands
                _rows(gw, sql.format(on_low))
        assert time.monotonic() - t0 < 60
        assert _rows(gw, sql.format(on_high)) == [(on_high,)]  # the other shard still serves
        _mg(loaded.dir, "start")  # brings the pooler back
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _rows(gw, sql.format(on_low)) == [(on_low,)]
                break
            except psycopg.errors.ConnectionFailure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
