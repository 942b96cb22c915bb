"""The interface a vindex that reads or writes tables (a lookup) runs its SQL through.

The engine implements it over its shard connections (inside the session's transaction where
there is one); tests implement it in memory. Keeping the vindex to this one call means the
lookup logic is the same whichever side runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

# Where a statement runs, in the given tablegroup:
# - a str: the shard of that name (``-80``, ``0``);
# - bytes: the shard that owns that keyspace id;
# - None: the tablegroup's only shard when it is unsharded, every shard when it is sharded.
Target = str | bytes | None


class VCursor(Protocol):
    async def execute(
        self, tablegroup: str, target: Target, sql: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` (Postgres placeholders ``$1``, ``$2``, ...) with ``params`` and return
        its rows (no rows for a statement without a result); with several shards, the rows of
        all of them. A failure raises (the engine's error, with its SQLSTATE)."""
        ...
