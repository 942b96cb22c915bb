"""``multicol``: a keyspace id built from several columns (Vitess's multicol).

Params: ``column_count`` (2..8), ``column_vindex`` (the function of each column, default
``hash`` for every one: one of hash, numeric, xxhash, unicode_xxhash, unicode_loose_xxhash,
with their default params), ``column_bytes`` (how many bytes of the keyspace id each column
gives, adding up to 8; default: 8 split evenly, the remainder to the first column).

keyspace id = the first ``column_bytes[0]`` bytes of column 0's keyspace id, then the first
``column_bytes[1]`` bytes of column 1's, and so on. Rows that share the first column are
therefore in one range of ids (on one shard, or a few): a query that fixes only a prefix of
the columns routes to :func:`~multigres.vschema.ksid.prefix_range` of that prefix's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from multigres._cy import vhash
from multigres.topo.keyrange import KeyRange
from multigres.vschema.doc import Params, q
from multigres.vschema.ksid import KSID_LEN, prefix_range
from multigres.vschema.vindexes.base import FunctionalVindex, Vindex
from multigres.vschema.vindexes.hash import HashVindex
from multigres.vschema.vindexes.numeric import NumericVindex
from multigres.vschema.vindexes.unicode import UnicodeLooseXxhashVindex, UnicodeXxhashVindex
from multigres.vschema.vindexes.xxhash import XxhashVindex

SUB_VINDEXES: dict[str, type[FunctionalVindex]] = {
    cls.type_name: cls
    for cls in (
        HashVindex,
        NumericVindex,
        XxhashVindex,
        UnicodeXxhashVindex,
        UnicodeLooseXxhashVindex,
    )
}


def default_column_bytes(count: int) -> list[int]:
    share, extra = divmod(KSID_LEN, count)
    return [share + extra] + [share] * (count - 1)


class MulticolVindex(Vindex):
    type_name = "multicol"
    cost = 1

    def __init__(self, name: str, params: Params) -> None:
        super().__init__(name, params)
        count = params.integer("column_count", 2, 2, KSID_LEN)
        if "column_count" not in params.raw:
            params.error("column_count", "missing (required)")
        kinds = params.names("column_vindex") or ["hash"] * count
        widths = params.int_list("column_bytes")
        self.subs: list[FunctionalVindex] = []
        if len(kinds) != count:
            params.error("column_vindex", f"names {len(kinds)} vindexes for {count} columns")
        for i, kind in enumerate(kinds):
            cls = SUB_VINDEXES.get(kind)
            if cls is None:
                params.error(
                    "column_vindex",
                    f"column {i}: {q(kind)} is not one of: {', '.join(SUB_VINDEXES)}",
                )
                continue
            self.subs.append(cls(f"{name}[{i}]", Params(params.checker, {}, params.path)))
        self.widths = default_column_bytes(count)
        if widths is not None:
            if len(widths) != count:
                params.error("column_bytes", f"gives {len(widths)} sizes for {count} columns")
            elif any(w < 1 for w in widths) or sum(widths) != KSID_LEN:
                params.error(
                    "column_bytes",
                    f"each column needs at least 1 byte and they must add up to {KSID_LEN}"
                    f" (got {', '.join(map(str, widths))})",
                )
            else:
                self.widths = widths
        self.count = count

    @property
    def column_count(self) -> int:
        return self.count

    def map_rows(self, rows: Sequence[Sequence[object]]) -> list[bytes | None]:
        """One keyspace id per row of ``column_count`` values (None if any is None)."""
        for row in rows:
            if len(row) != self.count:
                raise self._fail(ValueError(f"a row of {len(row)} values for {self.count} columns"))
        columns = [sub.map([row[i] for row in rows]) for i, sub in enumerate(self.subs)]
        return vhash.join_prefixes(columns, self.widths)

    def map_prefix(self, rows: Sequence[Sequence[object]]) -> list[bytes | KeyRange | None]:
        """Each row gives the first k >= 1 columns: the keyspace id when k is every column,
        else the range of ids that start with those columns' bytes (None if any is None)."""
        out: list[bytes | KeyRange | None] = []
        for row in rows:
            k = len(row)
            if not 1 <= k <= self.count:
                raise self._fail(ValueError(f"a prefix of {k} values for {self.count} columns"))
            if k == self.count:
                out.append(self.map_rows([row])[0])
                continue
            prefix = b""
            for i in range(k):
                ksid = self.subs[i].map([row[i]])[0]
                if ksid is None:
                    prefix = b""
                    break
                prefix += ksid[: self.widths[i]]
            out.append(prefix_range(prefix) if prefix else None)
        return out

    def verify_rows(self, rows: Sequence[Sequence[object]], ksids: Sequence[bytes]) -> list[bool]:
        return [a is not None and a == b for a, b in zip(self.map_rows(rows), ksids, strict=True)]
