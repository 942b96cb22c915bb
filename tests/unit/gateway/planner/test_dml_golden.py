"""Golden files of the write and DDL planner: statement in, plan and per-shard SQL out.

Each ``tests/golden/planner/dml_*.txt`` holds cases::

    == <statement>
    <the plan, as Plan.describe() gives it, JSON>
    -> <tablegroup>/<shard>: <the SQL that shard receives, in order>
    ...

or, for a statement the planner refuses, ``ERROR <SQLSTATE>: <message>``. The per-shard SQL
comes from running the plan once on a recording VCursor whose shards answer nothing (no
rows, counts of 0) and whose backing sequences give blocks from 1000. The VSchema is
``dml_vschema.json`` (the example's tables, a multi-column vindex, an unsharded table with
an auto-increment column).

``MULTIGRES_GOLDEN_UPDATE=1`` rewrites the files from the planner's output (review the diff).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from pglast import parse_sql

from multigres._cy.pgvalue import build_datarow
from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.sequence import SequenceAllocator
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import ddl, dml
from multigres.gateway.planner.plan import Plan
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError

GOLDEN = Path(__file__).parents[3] / "golden" / "planner"
FILES = sorted(GOLDEN.glob("dml_*.txt"))
SHARDS = {"shop": ["-80", "80-"], "default": ["0"]}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ShardQuery] = []
        self.sequences = SequenceAllocator()

    def shard_map(self, tablegroup: str) -> ShardMap:
        return ShardMap(SHARDS[tablegroup])

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        self.sent.extend(queries)
        return [_answer(q.sql) for q in queries]


def _answer(sql: str) -> Result:
    if "pg_catalog.pg_sequence" in sql:
        cache = int(sql.split("seqincrement = ")[1].split()[0])
        return Result(fields=[Field("nextval", 20), Field("seqincrement", 20)],
                      rows=[build_datarow([b"1000", str(cache).encode()])], tag=b"SELECT 1")
    verb = sql.split()[0].upper()
    if verb == "SELECT":
        return Result(fields=[], tag=b"SELECT 0")
    if verb == "INSERT":
        return Result(tag=b"INSERT 0 0")
    if verb in ("UPDATE", "DELETE"):
        fields: list[Field] | None = [] if " RETURNING " in sql else None
        return Result(fields=fields, tag=verb.encode() + b" 0")
    return Result(tag=" ".join(sql.split()[:2]).upper().encode())


def plan(vs: VSchema, sql: str) -> tuple[Plan, list[str]]:
    n = normalize(sql.encode())
    text = n.text.decode()
    stmt = parse_sql(text)[0].stmt
    kind = type(stmt).__name__
    if kind == "InsertStmt":
        return dml.plan_insert(stmt, vs, text, n.n_params), _bind(n)
    if kind == "UpdateStmt":
        return dml.plan_update(stmt, vs, text, n.n_params), _bind(n)
    if kind == "DeleteStmt":
        return dml.plan_delete(stmt, vs, text, n.n_params), _bind(n)
    if kind == "SelectStmt":
        p = dml.plan_nextval(stmt, vs, text, n.n_params)
        assert p is not None, sql
        return p, _bind(n)
    return ddl.plan_ddl(stmt, vs, text, n.n_params), _bind(n)


def _bind(n: object) -> list[str]:
    return [p.raw.decode() for p in n.params]  # type: ignore[attr-defined]


def render_case(vs: VSchema, sql: str) -> str:
    try:
        p, bind = plan(vs, sql)
    except PgError as e:
        return f"== {sql}\nERROR {e.sqlstate}: {e.message}\n"
    out = [f"== {sql}", json.dumps(p.describe(), indent=2)]
    rec = Recorder()
    try:
        asyncio.run(p.execute(rec, bind))
    except PgError as e:
        out.append(f"ERROR {e.sqlstate} at execution: {e.message}")
    for q in rec.sent:
        out.append(f"-> {q.tablegroup}/{q.shard}: {q.sql}")
    return "\n".join(out) + "\n"


def render_file(vs: VSchema, text: str) -> str:
    header: list[str] = []
    cases: list[str] = []
    for line in text.splitlines():
        if line.startswith("== "):
            cases.append(line[3:])
        elif not cases and line.startswith("#"):
            header.append(line)
    parts = ["\n".join(header) + "\n"] if header else []
    parts.extend(render_case(vs, sql) for sql in cases)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def vschema() -> VSchema:
    return VSchema.loads((GOLDEN / "dml_vschema.json").read_text())


def test_enough_statements() -> None:
    total = sum(f.read_text().count("\n== ") + f.read_text().startswith("== ") for f in FILES)
    assert total >= 60


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_golden(vschema: VSchema, path: Path) -> None:
    text = path.read_text()
    got = render_file(vschema, text)
    if os.environ.get("MULTIGRES_GOLDEN_UPDATE"):
        path.write_text(got)
        return
    assert got == text
