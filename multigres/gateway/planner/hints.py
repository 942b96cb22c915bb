"""Planner hints in comments: ``/*+ multigres:shard=-80 */ SELECT ...``.

The normalizer keeps a ``/* */`` comment that contains ``multigres:`` (every other comment
goes), so a hint is part of the plan cache's key. Defined hints:

- ``multigres:shard=NAME``: run the statement unchanged on shard NAME of the tablegroup of
  the tables it names (for tables in several tablegroups:
  ``multigres:shard=TABLEGROUP/NAME``). No merging, no routing: what that one shard answers
  is the answer. For operators looking at one shard's data, and for statements the planner
  cannot spread over shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SHARD = re.compile(r"/\*[^*]*?\bmultigres:shard=([A-Za-z0-9_./-]+)")


@dataclass(frozen=True, slots=True)
class ShardHint:
    shard: str
    tablegroup: str | None = None


def shard_hint(sql: str) -> ShardHint | None:
    """The ``multigres:shard=`` hint of a statement's text, if any."""
    m = _SHARD.search(sql)
    if m is None:
        return None
    target = m.group(1)
    if "/" in target:
        tg, _, shard = target.rpartition("/")
        return ShardHint(shard, tg)
    return ShardHint(target)
