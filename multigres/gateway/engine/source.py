"""What a merge reads from: a primitive that gives one Result per shard query it ran.

Route gives one Result per shard; a nested-loop join gives one per inner query (outer row x
shard). The merges above (merge-sort, aggregate) read these partial results, all with the
same columns, and never care which kind of source made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from multigres.gateway.engine.result import Field, Result
from multigres.gateway.engine.vcursor import VCursor
from multigres.wire import sqlstate
from multigres.wire.errors import PgError


class Source(Protocol):
    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result: ...

    async def execute_shards(self, vc: VCursor, bind: Sequence[str]) -> list[Result]: ...

    def describe(self) -> dict[str, Any]: ...


def fields_of(results: Sequence[Result]) -> list[Field]:
    """The columns of a source's results (every shard sends the same RowDescription)."""
    for r in results:
        if r.fields is not None:
            return r.fields
    return []


def merge_error(e: Exception) -> PgError:
    """A value-layer error (pgvalue's UnsupportedType, ValueFormatError, ValueOutOfRange)
    as the PgError a client gets, with its SQLSTATE."""
    if isinstance(e, PgError):
        return e
    code = getattr(e, "sqlstate", sqlstate.FEATURE_NOT_SUPPORTED)
    if code == sqlstate.FEATURE_NOT_SUPPORTED:
        return PgError(f"unsupported on a sharded database: {e}", code)
    return PgError(str(e), code)
