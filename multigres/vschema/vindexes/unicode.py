"""``unicode_xxhash``: text compared as Unicode text, not as bytes.

key = NFKC(value); with ``case_insensitive``, key = NFKC(casefold(key)); keyspace id = XXH64
(seed 0) of the key's UTF-8, 8 bytes big-endian. Equal strings (and strings that differ only
by Unicode compatibility forms, or by case when case-insensitive) go to the same shard. Use
``case_insensitive`` for a column compared without case (citext, a nondeterministic ICU
collation); a case-sensitive vindex on such a column would send 'A' and 'a' apart.

``unicode_loose_xxhash`` (Vitess's name) is this vindex with ``case_insensitive`` on.
"""

from __future__ import annotations

from collections.abc import Sequence

from multigres._cy import vhash
from multigres.vschema.doc import Params
from multigres.vschema.vindexes.base import FunctionalVindex


class UnicodeXxhashVindex(FunctionalVindex):
    type_name = "unicode_xxhash"
    cost = 1

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)
        self.case_insensitive = params.boolean("case_insensitive", self._default_ci())

    def _default_ci(self) -> bool:
        return False

    def _ids(self, values: Sequence[object]) -> list[bytes | None]:
        return vhash.unicode_ids(values, self.case_insensitive)


class UnicodeLooseXxhashVindex(UnicodeXxhashVindex):
    type_name = "unicode_loose_xxhash"

    def _default_ci(self) -> bool:
        return True
