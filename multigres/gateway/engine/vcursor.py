"""The engine's view of the shards: where a primitive's SQL runs.

The gateway's session implements it over its pooler connections (one per shard it touched,
inside its transaction, with its settings replayed); tests implement it over plain Postgres
databases (one database per shard) or in memory. The same primitives run on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from multigres.gateway.engine.result import Result
from multigres.vschema.shardmap import ShardMap


@dataclass(frozen=True, slots=True)
class ShardQuery:
    """One statement for one shard: SQL text with every value already in place (the engine
    renders its templates before sending; the shard gets a simple Query)."""

    tablegroup: str
    shard: str
    sql: str


class VCursor(Protocol):
    def shard_map(self, tablegroup: str) -> ShardMap:
        """The serving shards of a tablegroup (an unsharded one: its single shard "0")."""
        ...

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        """Run the queries, concurrently across shards (in order on one shard), and return
        their results in the same order. If any fails, every one is still waited for, then
        the first failure (in the given order) is raised as a PgError with the fields the
        shard sent; a transaction's state on the shards is the session's business."""
        ...
