"""``numeric``: the keyspace id is the value itself, the 8 bytes big-endian of its uint64
(two's complement for negatives). For ids already spread evenly, or to place rows by hand."""

from __future__ import annotations

from collections.abc import Sequence

from multigres._cy import vhash
from multigres.vschema.doc import Params
from multigres.vschema.ksid import uint64_of
from multigres.vschema.vindexes.base import FunctionalVindex


class NumericVindex(FunctionalVindex):
    type_name = "numeric"
    cost = 0
    reversible = True

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)

    def _ids(self, values: Sequence[object]) -> list[bytes | None]:
        return vhash.numeric_ids(values)

    def reverse_map(self, ksids: Sequence[bytes]) -> list[int]:
        out = []
        for k in ksids:
            u = uint64_of(k)
            out.append(u - (1 << 64) if u >= 1 << 63 else u)
        return out
