"""``xxhash``: XXH64 (seed 0) of the value's bytes; keyspace id = the hash, 8 bytes big-endian.

Param ``input`` says what the column holds, so that every spelling of one SQL value hashes
the same (as Postgres would cast it):

- ``int`` (default): integer columns. The value (an int, or the text of one: ``'042'`` is 42)
  is hashed as its 8 bytes big-endian (two's complement).
- ``text``: text columns: the UTF-8 bytes as they are (an int is its decimal text).
- ``bytea``: the bytes as they are (text in Postgres's hex form ``\\x0102`` is decoded).
"""

from __future__ import annotations

from collections.abc import Sequence

from multigres._cy import vhash
from multigres.vschema.doc import Params
from multigres.vschema.vindexes.base import FunctionalVindex

INPUTS = {"int": vhash.XX_INT, "text": vhash.XX_TEXT, "bytea": vhash.XX_BYTES}


class XxhashVindex(FunctionalVindex):
    type_name = "xxhash"
    cost = 1

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)
        self.input = params.choice("input", tuple(INPUTS), "int")
        self._mode = INPUTS[self.input]

    def _ids(self, values: Sequence[object]) -> list[bytes | None]:
        return vhash.xxhash_ids(values, self._mode)
