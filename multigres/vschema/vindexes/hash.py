"""``hash``: our own stable 64-bit hash of a 64-bit integer (docs/vschema.md).

keyspace id = 8 bytes big-endian of SplitMix64's mix of the value's uint64 (two's complement
for negatives). Bijective: distinct integers never share a keyspace id, and ``reverse_map``
gives the value back. Independent of Postgres's hash functions, so that a row's shard never
depends on the server's version.
"""

from __future__ import annotations

from collections.abc import Sequence

from multigres._cy import vhash
from multigres.vschema.doc import Params
from multigres.vschema.ksid import uint64_of
from multigres.vschema.vindexes.base import FunctionalVindex


class HashVindex(FunctionalVindex):
    type_name = "hash"
    cost = 1
    reversible = True

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)

    def _ids(self, values: Sequence[object]) -> list[bytes | None]:
        return vhash.hash_ids(values)

    def reverse_map(self, ksids: Sequence[bytes]) -> list[int]:
        """The int64 values whose keyspace ids these are."""
        out = []
        for k in ksids:
            u = vhash.unhash64(uint64_of(k))
            out.append(u - (1 << 64) if u >= 1 << 63 else u)
        return out
