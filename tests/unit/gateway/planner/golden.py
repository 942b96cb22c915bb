"""Golden plan files: statements in ``tests/golden/planner/*.sql``, their plans and per-shard
SQL in ``*.golden.json`` beside them (format: tests/golden/planner/README.md)."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.planner import build
from multigres.gateway.planner.explain import shard_queries
from multigres.sql.normalize import normalize
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.wire.errors import PgError

GOLDEN_DIR = Path(__file__).parents[3] / "golden" / "planner"
LAYOUT = {"commerce": ["-40", "40-80", "80-c0", "c0-"], "main": ["0"]}


class GoldenVCursor:
    """Shards that answer nothing, except lookups: a looked-up value maps to the keyspace id
    of hash(crc32 of its SQL), so routes by lookup vindexes are stable."""

    def __init__(self, vs: VSchema) -> None:
        self.vs = vs
        self.maps = {tg: ShardMap(s) for tg, s in LAYOUT.items()}

    def shard_map(self, tablegroup: str) -> ShardMap:
        return self.maps[tablegroup]

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        out = []
        h = self.vs.vindex("hash")
        for q in queries:
            if q.sql.startswith('SELECT "ksid"'):
                ksid = h.map([zlib.crc32(q.sql.encode())])[0]  # type: ignore[union-attr]
                out.append(Result([Field("ksid", 17)], [
                    b"\x00\x01" + len(b"\\x" + ksid.hex().encode()).to_bytes(4, "big")
                    + b"\\x" + ksid.hex().encode()
                ], b"SELECT 1"))
            else:
                out.append(Result(fields=[]))
        return out


def vschema() -> VSchema:
    return VSchema.loads((GOLDEN_DIR / "vschema.json").read_text())


def statements(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            out.append(line)
    return out


def entry(sql: str, vs: VSchema) -> dict[str, Any]:
    norm = normalize(sql.encode())
    total = norm.param_base + norm.n_params
    bind = [f"${i + 1}" for i in range(total)]
    for p in norm.params:
        bind[p.number - 1] = p.raw.decode()
    out: dict[str, Any] = {"sql": sql}
    try:
        plan = build(norm.text.decode(), vs, total)
        d = plan.describe()
        if "passthrough" in d:
            out["passthrough"] = d["passthrough"]
        out["plan"] = d["plan"]
        queries = asyncio.run(shard_queries(plan, GoldenVCursor(vs), bind))
        out["shards"] = [f"{q.tablegroup}/{q.shard}: {q.sql}" for q in queries]
    except PgError as e:
        out["error"] = f"{e.sqlstate}: {e.message}"
    return out


def generate(path: Path, vs: VSchema) -> list[dict[str, Any]]:
    return [entry(s, vs) for s in statements(path)]


def golden_path(sql_path: Path) -> Path:
    return sql_path.with_suffix(".golden.json")


def dump(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
