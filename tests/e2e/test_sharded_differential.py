"""The random query generator end to end: a sharded cluster (the example config: an unsharded
tablegroup and a sharded one of two shards, each a primary with a replica, poolers, the
gateway) and a plain Postgres database hold the same rows; 2,000 generated SELECTs run
through the gateway (psql's simple protocol) and on the plain database, and must answer the
same: column names, rows (in order when the query's ORDER BY makes it total, as multisets
otherwise), or the same SQLSTATE. A shape the gateway refuses must fail with 0A000 (counted,
reported), never answer differently.

The data is loaded through the gateway (the engine places each row by its vindex and writes
the lookup vindexes' rows); the plain database gets the same rows directly."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from multigres.vschema.model import VSchema
from tests.e2e.test_sharded_cluster import Cluster, sharded_cluster
from tests.integration.sharding.querygen import QueryGen
from tests.integration.sharding.schema import DDL, VSCHEMA_PATH, Data

pytestmark = pytest.mark.integration

QUERIES = 2000
# The generator's VSchema names its tablegroups main/commerce; the example cluster's are
# default/shop.
RENAME = {"main": "default", "commerce": "shop"}
LOOKUP_TABLES = ("customer_email_idx", "sku_lookup")


def _vschema_doc() -> dict[str, Any]:
    text = VSCHEMA_PATH.read_text()
    for old, new in RENAME.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    doc: dict[str, Any] = json.loads(text)
    # Some customers have no email: they get no lookup row (the lookup table's column is
    # NOT NULL), as in the write engine's own differential test.
    doc["vindexes"]["email_idx"]["params"]["ignore_nulls"] = True
    return doc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Data]]:
    tmp = tmp_path_factory.mktemp("sharded_diff")
    (tmp / "vschema.json").write_text(json.dumps(_vschema_doc()))
    with sharded_cluster(tmp, tmp / "vschema.json") as c:
        data = Data(VSchema.parse(_vschema_doc()))
        _load(c, data)
        yield c, data


def _load(c: Cluster, data: Data) -> None:
    with c.direct(0) as conn:
        conn.execute("CREATE DATABASE reference")
    # A non-unique lookup whose only "from" column is the sku gets one row per order line,
    # so two lines of one customer with the same sku make the same row twice: the lookup
    # table must not have a unique key on (sku, ksid) here.
    ddl = DDL.replace("ksid bytea NOT NULL, PRIMARY KEY (sku, ksid))", "ksid bytea NOT NULL)")
    assert ddl != DDL
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    with c.gateway() as gw, c.direct(0, "reference") as ref:
        for sql in statements:
            gw.execute(sql)
            ref.execute(sql)
        for table, (cols, rows) in data.tables().items():
            if not rows:
                continue
            insert = f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
            values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
            ref.execute(insert + values)
            if table not in LOOKUP_TABLES:  # the gateway writes those itself
                gw.execute(insert + values)


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | Decimal):
        return str(v)
    if isinstance(v, bytes):
        return f"'\\x{v.hex()}'::bytea"
    return "'" + str(v).replace("'", "''") + "'"


def _answer(conn: psycopg.Connection[Any], sql: str
            ) -> tuple[list[str], list[tuple[Any, ...]]] | str:
    try:
        cur = conn.execute(sql)
        names = [d.name for d in cur.description or []]
        return names, [tuple(str(v) if isinstance(v, Decimal | float) else v for v in r)
                       for r in cur.fetchall()]
    except psycopg.Error as e:
        return e.sqlstate or "?"


def test_generated_queries_match_plain_postgres(cluster: tuple[Cluster, Data]) -> None:
    c, data = cluster
    gen = QueryGen(data, seed=4242)
    ok: collections.Counter[str] = collections.Counter()
    refused: collections.Counter[str] = collections.Counter()
    same_error = 0
    mismatches: list[str] = []
    start = time.monotonic()
    with c.gateway() as gw, c.direct(0, "reference") as ref:
        for _ in range(QUERIES):
            q = next(gen)
            got, want = _answer(gw, q.sql), _answer(ref, q.sql)
            if got == "0A000":
                refused[q.shape] += 1
                continue
            if isinstance(got, str) or isinstance(want, str):
                if got == want:
                    same_error += 1
                else:
                    mismatches.append(f"{q.sql}\n  gateway: {got!r:.300}\n  plain: {want!r:.300}")
                continue
            if not q.ordered:
                got = (got[0], sorted(got[1], key=repr))
                want = (want[0], sorted(want[1], key=repr))
            if got != want:
                mismatches.append(f"{q.sql}\n  gateway: {got!r:.300}\n  plain: {want!r:.300}")
            else:
                ok[q.shape] += 1
    elapsed = time.monotonic() - start
    print(f"\n{QUERIES} queries through the gateway in {elapsed:.1f} s: "
          f"{sum(ok.values())} equal, {same_error} same error, "
          f"{sum(refused.values())} refused (0A000) {dict(refused)}, {len(mismatches)} mismatches")
    assert not mismatches, "\n\n".join(mismatches[:10])
    assert sum(ok.values()) > QUERIES * 0.9
