"""Route: run one SQL template on the shards a statement's values pick (Vitess's Route).

The opcode says how the shards are found (one switch, in ``_targets``):

- ``Unsharded``: the tablegroup's only shard.
- ``Reference``: any one shard (reference tables are copied to every shard): the first.
- ``EqualUnique``: a unique vindex maps the value to one keyspace id. Several equalities on
  the column (``id = $1 AND id = $2``) must agree; when they map to different shards, no row
  can match (as for ``None``).
- ``Equal``: a non-unique (lookup) vindex maps the value to any number of keyspace ids.
- ``IN``: each value is mapped and each shard gets only its own values: the IN list (or the
  array of ``= ANY($n)``) is rewritten per shard through a slot of the template.
- ``Scatter``: every shard.
- ``None``: no row can match (a NULL compared, contradicting equalities, a lookup that
  found nothing).
- ``Shard``: the shard a ``/*+ multigres:shard=NAME */`` hint names.

When the values select no shard, the statement still runs on one shard (the first), whole:
its own WHERE then answers "no rows", with the RowDescription (and, for an aggregate, the
row of an empty aggregate) that Postgres gives. A value that routing cannot read (a numeric
for an integer vindex, an odd literal) sends it to every shard: a bigger search, never a
miss.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multigres.gateway.engine import bindvalues
from multigres.gateway.engine.arrays import NotAnArray, array_literal, parse_array
from multigres.gateway.engine.lookup import LookupCursor
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.template import Template
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.vschema.errors import VindexError
from multigres.vschema.shardmap import ShardMap
from multigres.vschema.vindexes.base import Destination, FunctionalVindex, Vindex
from multigres.vschema.vindexes.lookup import LookupVindex
from multigres.wire.errors import PgError

# A typed literal the gateway wrote (engine.literals): the cast does not change routing.
_TYPED = re.compile(r"(?s)^('(?:[^']|'')*'|NULL)::[A-Za-z0-9_\[\]\" ]+$")


class Opcode(enum.Enum):
    UNSHARDED = "Unsharded"
    EQUAL_UNIQUE = "EqualUnique"
    EQUAL = "Equal"
    IN = "IN"
    SCATTER = "Scatter"
    REFERENCE = "Reference"
    NONE = "None"
    SHARD = "Shard"


class Undecodable(ValueError):
    """A routing value that cannot be read: route it to every shard."""


@dataclass(frozen=True, slots=True)
class Value:
    """A value known at execution: bind ``$param`` (negated for ``-$n``) or a constant's SQL
    text kept in the statement (``NULL``, ``true``)."""

    param: int = 0
    const: str = ""
    negate: bool = False

    def sql(self, bind: Sequence[str]) -> str:
        if self.param:
            text = bind[self.param - 1]
            return f"-{text}" if self.negate else text
        return self.const

    def decoded(self, bind: Sequence[str]) -> object:
        """The value a vindex reads; Undecodable when routing cannot read it."""
        text = bind[self.param - 1] if self.param else self.const
        m = _TYPED.match(text)
        if m is not None:  # a value the gateway bound: '<text>'::type or NULL::type
            text = m.group(1)
        try:
            bv = bindvalues.decode(text)
            if self.negate:
                bv = bindvalues.negate(bv)
        except PgError as e:
            raise Undecodable(str(e)) from None
        return bindvalues.vindex_input(bv)

    def describe(self) -> str:
        if self.param:
            return f"-${self.param}" if self.negate else f"${self.param}"
        return self.const


@dataclass(frozen=True, slots=True)
class LimitSlot:
    """A shard's LIMIT: the client's limit plus offset (each shard returns the rows the
    gateway might need; the gateway skips the offset once)."""

    slot: int
    count: Value | None
    offset: Value | None

    def render(self, bind: Sequence[str]) -> str:
        count = _int_or_none(self.count, bind)
        if count is None:
            return "ALL"
        offset = _int_or_none(self.offset, bind) or 0
        return str(max(count, 0) + max(offset, 0))


def _int_or_none(v: Value | None, bind: Sequence[str]) -> int | None:
    if v is None:
        return None
    try:
        bv = bindvalues.decode(v.sql(bind))
    except PgError:
        return None
    if bv.value is None:
        return None
    try:
        return int(bv.value)
    except (TypeError, ValueError):
        return None


@dataclass(eq=False)
class Route:
    """Run ``template`` on the shards the opcode picks; ``execute`` concatenates their rows,
    ``execute_shards`` gives one Result per shard for a merge above."""

    opcode: Opcode
    tablegroup: str
    template: Template
    vindex: Vindex | None = None
    values: tuple[Value, ...] = ()
    # IN: the slot that gets each shard's values (an IN list's slot, or the array param of
    # ``= ANY($n)`` when ``array``).
    in_slot: int = 0
    array: bool = False
    shard: str = ""  # Shard
    limit: LimitSlot | None = None
    comment: str = ""  # what the planner wants a reader of the plan to know
    # The statement is right only on exactly one shard (the inner side of a LEFT JOIN):
    # a value that routes to several shards is refused rather than answered twice.
    one_shard: bool = False

    # -- execution ------------------------------------------------------------------------------

    async def execute(self, vc: VCursor, bind: Sequence[str]) -> Result:
        results = await self.execute_shards(vc, bind)
        return concat(results)

    async def execute_shards(self, vc: VCursor, bind: Sequence[str]) -> list[Result]:
        return await vc.execute(await self.queries(vc, bind))

    async def queries(self, vc: VCursor, bind: Sequence[str]) -> list[ShardQuery]:
        """The SQL each shard gets for these bind values."""
        targets = await self._targets(vc, bind)
        if self.one_shard and len(targets) > 1:
            raise PgError(
                "unsupported on a sharded database: a LEFT JOIN whose right side is not on "
                "one shard for a row of its left side",
                "0A000",
            )
        out = []
        for shard, overrides in targets:
            b = bind
            if overrides or self.limit is not None:
                b = list(bind)
                for n, text in overrides.items():
                    b[n - 1] = text
                if self.limit is not None:
                    b[self.limit.slot - 1] = self.limit.render(bind)
            out.append(ShardQuery(self.tablegroup, shard, self.template.render(b)))
        return out

    async def _targets(
        self, vc: VCursor, bind: Sequence[str]
    ) -> list[tuple[str, dict[int, str]]]:
        op = self.opcode
        smap = vc.shard_map(self.tablegroup)
        if op is Opcode.SCATTER:
            return [(s, {}) for s in smap.names]
        if op in (Opcode.UNSHARDED, Opcode.REFERENCE, Opcode.NONE):
            return [(smap.names[0], {})]
        if op is Opcode.SHARD:
            if self.shard not in smap.names:
                raise PgError(
                    f"shard {self.shard!r} of tablegroup {self.tablegroup!r} is not serving "
                    f"(shards: {', '.join(smap.names)})",
                    "42704",
                )
            return [(self.shard, {})]
        if op is Opcode.EQUAL_UNIQUE or op is Opcode.EQUAL:
            shards = await self._equal_shards(vc, smap, bind)
            if shards is None:
                return [(s, {}) for s in smap.names]
            return [(s, {}) for s in shards] or [(smap.names[0], {})]
        if op is Opcode.IN:
            return await self._in_targets(vc, smap, bind)
        raise AssertionError(op)

    async def _map(self, vc: VCursor, values: Sequence[object]) -> list[Destination]:
        vindex = self.vindex
        assert vindex is not None
        if isinstance(vindex, FunctionalVindex):
            return list(vindex.map(values))
        assert isinstance(vindex, LookupVindex)
        return await vindex.map(LookupCursor(vc), values)

    async def _equal_shards(
        self, vc: VCursor, smap: ShardMap, bind: Sequence[str]
    ) -> list[str] | None:
        """The shards of an equality (None: every shard)."""
        decoded = []
        for v in self.values:
            try:
                decoded.append(v.decoded(bind))
            except Undecodable:
                continue
        if not decoded:
            return None
        try:
            dests = await self._map(vc, decoded)
        except VindexError:
            return None
        # Every equality must hold: the row is on a shard all of them allow.
        found: set[str] | None = None
        for d in dests:
            shards = set(smap.shards_for(d))
            found = shards if found is None else found & shards
        return [s for s in smap.names if found and s in found]

    async def _in_targets(
        self, vc: VCursor, smap: ShardMap, bind: Sequence[str]
    ) -> list[tuple[str, dict[int, str]]]:
        texts: list[str | None]
        if self.array:
            try:
                elems = parse_array(bind[self.in_slot - 1])
            except NotAnArray:
                return [(s, {}) for s in smap.names]
            texts = elems
            values: list[object] = list(elems)
        else:
            texts = [v.sql(bind) for v in self.values]
            values = []
            for v in self.values:
                try:
                    values.append(v.decoded(bind))
                except Undecodable:
                    values.append(_EVERYWHERE)
        known = [i for i, v in enumerate(values) if v is not _EVERYWHERE]
        everywhere = [i for i, v in enumerate(values) if v is _EVERYWHERE]
        per_shard: dict[str, list[int]] = {s: list(everywhere) for s in smap.names}
        try:
            dests = await self._map(vc, [values[i] for i in known]) if known else []
        except VindexError:
            return [(s, {}) for s in smap.names]
        for i, d in zip(known, dests, strict=True):
            for s in smap.shards_for(d):
                per_shard[s].append(i)
        out = []
        for s in smap.names:
            idx = sorted(per_shard[s])
            if not idx:
                continue
            if self.array:
                text = array_literal([texts[i] for i in idx])
            else:
                text = ", ".join(str(texts[i]) for i in idx)
            out.append((s, {self.in_slot: text}))
        if not out:
            # No value can match: the whole statement on one shard answers "no rows".
            full = (
                bind[self.in_slot - 1]
                if self.array
                else ", ".join(str(t) for t in texts)
            )
            return [(smap.names[0], {self.in_slot: full})]
        return out

    # -- description ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "primitive": "route",
            "opcode": self.opcode.value,
            "tablegroup": self.tablegroup,
        }
        if self.vindex is not None:
            d["vindex"] = self.vindex.name
        if self.values:
            d["values"] = [v.describe() for v in self.values]
        if self.in_slot:
            d["in_slot"] = f"${self.in_slot}"
        if self.array:
            d["array"] = True
        if self.shard:
            d["shard"] = self.shard
        if self.one_shard:
            d["one_shard"] = True
        if self.limit is not None:
            d["limit"] = {
                "slot": f"${self.limit.slot}",
                "count": self.limit.count.describe() if self.limit.count else None,
                "offset": self.limit.offset.describe() if self.limit.offset else None,
            }
        d["sql"] = self.template.sql
        if self.comment:
            d["comment"] = self.comment
        return d


_EVERYWHERE: Any = object()


def concat(results: Sequence[Result]) -> Result:
    """One Result of several shards' results (same columns), rows in shard order."""
    if len(results) == 1:
        return results[0]
    out = Result(fields=results[0].fields if results else [])
    for r in results:
        out.rows.extend(r.rows)
        out.notices.extend(r.notices)
    out.tag = b"SELECT %d" % len(out.rows)
    return out
