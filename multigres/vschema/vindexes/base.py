"""What every vindex is, Vitess's interfaces in Python.

A vindex maps a column value to where its row lives: a *destination*.

- ``bytes``: one keyspace id (8 bytes), the row is on the shard that owns it;
- ``tuple[bytes, ...]``: any of these keyspace ids (a non-unique lookup; empty: nowhere);
- :class:`~multigres.topo.keyrange.KeyRange`: every shard that intersects the range (a
  prefix of a multi-column vindex; the full range means every shard);
- ``None``: no row can match (SQL NULL, or a lookup that found nothing).

Two families, so that the hot path stays synchronous:

- :class:`FunctionalVindex` (hash, xxhash, numeric, unicode_xxhash, multicol): a pure function
  of the value, computed in C for a whole list at once; ``map`` is a plain call.
- :class:`LookupVindex`: reads a table through a
  :class:`~multigres.vschema.vcursor.VCursor`; ``map`` and the writes are coroutines.

``unique``: every value maps to at most one keyspace id (only a unique vindex can be a primary
vindex, which decides where a row is written). ``cost``: what routing by it costs, as in
Vitess (0 numeric, 1 hashes, 10 unique lookup, 20 non-unique lookup): the planner prefers the
cheapest usable vindex.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from multigres.topo.keyrange import KeyRange
from multigres.vschema.doc import Params
from multigres.vschema.errors import VindexError

Destination = bytes | tuple[bytes, ...] | KeyRange | None


class Vindex:
    """A named vindex of the VSchema. Subclasses read their params in ``__init__`` (errors go
    to ``params``, which names the bad field)."""

    type_name: ClassVar[str] = ""
    cost: ClassVar[int] = 0
    unique: ClassVar[bool] = True
    needs_vcursor: ClassVar[bool] = False
    # Can give the value back from the keyspace id (hash, numeric).
    reversible: ClassVar[bool] = False

    def __init__(self, name: str, params: Params) -> None:
        self.name = name
        self.params: dict[str, Any] = dict(params.raw)

    @property
    def column_count(self) -> int:
        """How many columns the vindex reads (multicol: several)."""
        return 1

    def describe(self) -> str:
        return f"{self.name} ({self.type_name})"

    def _fail(self, e: Exception) -> VindexError:
        return VindexError(f"vindex {self.name!r} ({self.type_name}): {e}")


class FunctionalVindex(Vindex):
    """A unique vindex computed from the value alone."""

    def map(self, values: Sequence[object]) -> list[bytes | None]:
        """One keyspace id per value (None for None), computed in C over the whole list.
        VindexError for a value of the wrong kind."""
        try:
            return self._ids(values)
        except (ValueError, TypeError, OverflowError) as e:
            raise self._fail(e) from None

    def _ids(self, values: Sequence[object]) -> list[bytes | None]:
        raise NotImplementedError

    def verify(self, values: Sequence[object], ksids: Sequence[bytes]) -> list[bool]:
        """Whether each value maps to the keyspace id beside it."""
        return [a is not None and a == b for a, b in zip(self.map(values), ksids, strict=True)]

    def reverse_map(self, ksids: Sequence[bytes]) -> list[int]:
        raise self._fail(ValueError("cannot give values back from keyspace ids"))
