"""Routing keyspace ids to shards: the serving shards of one tablegroup, in key order.

A keyspace id belongs to the shard whose range holds it: a binary search over the shards'
start keys (in C for a list of ids, :func:`multigres._cy.vhash.locate`). A key range goes to
every shard it intersects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multigres._cy import vhash
from multigres.topo.keyrange import KeyRange, check_coverage
from multigres.vschema.vindexes.base import Destination


class ShardMap:
    """``ShardMap(["-80", "80-"])``. The shards must cover the whole key space exactly once
    (KeyRangeError otherwise), as the serving shards of a tablegroup do."""

    def __init__(self, names: Iterable[str]) -> None:
        parsed = [(KeyRange.parse(n), n) for n in names]
        check_coverage(r for r, _ in parsed)
        parsed.sort(key=lambda p: p[0].start)
        self.names: list[str] = [n for _, n in parsed]
        self.ranges: list[KeyRange] = [r for r, _ in parsed]
        self._starts: list[bytes] = [r.start for r in self.ranges]

    def __len__(self) -> int:
        return len(self.names)

    def shard_for(self, ksid: bytes) -> str:
        """The shard that owns ``ksid``."""
        return self.names[vhash.locate(self._starts, [ksid])[0]]

    def shards_for_ids(self, ksids: Sequence[bytes | None]) -> list[str | None]:
        """The owning shard of each id (None for None), in one C loop."""
        names = self.names
        return [None if i < 0 else names[i] for i in vhash.locate(self._starts, ksids)]

    def group(self, ksids: Sequence[bytes | None]) -> dict[str, list[int]]:
        """The positions of the ids owned by each shard (for an IN list or a multi-row
        INSERT: each shard gets only its own values); None ids are in no group."""
        groups = vhash.locate_groups(self._starts, ksids)
        return {name: g for name, g in zip(self.names, groups, strict=True) if g}

    def shards_for_range(self, kr: KeyRange) -> list[str]:
        """Every shard that intersects ``kr``, in key order."""
        return [n for n, r in zip(self.names, self.ranges, strict=True) if r.intersects(kr)]

    def shards_for(self, dest: Destination) -> list[str]:
        """The shards a vindex's destination names, in key order, without repeats."""
        if dest is None:
            return []
        if isinstance(dest, bytes):
            return [self.shard_for(dest)]
        if isinstance(dest, KeyRange):
            return self.shards_for_range(dest)
        found = set(self.shards_for_ids(dest))
        return [n for n in self.names if n in found]
