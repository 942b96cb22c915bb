"""The VSchema of a database: which tablegroup each table is in, and how its rows are placed.

The document (JSON, one per database in the topology; docs/vschema.md has the format)::

    {
      "tablegroups": {"main": {}, "customers": {"sharded": true}},
      "vindexes": {
        "hash": {"type": "hash"},
        "email_idx": {"type": "lookup_unique", "owner": "customers",
                      "params": {"table": "customer_email_idx", "from": "email", "to": "ksid"}}
      },
      "tables": {
        "customers": {"tablegroup": "customers",
                      "column_vindexes": [{"column": "customer_id", "name": "hash"},
                                          {"column": "email", "name": "email_idx"}],
                      "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}},
        "customer_email_idx": {"tablegroup": "main"},
        "products": {"tablegroup": "customers", "type": "reference"}
      },
      "sequences": {"customer_seq": {}}
    }

:meth:`VSchema.parse` checks everything and raises :class:`~multigres.vschema.errors.VSchemaError`
naming the path of each problem. The result answers the planner's questions: the tablegroup of
a table (one the document does not name is in the default, unsharded tablegroup), whether it
is sharded or a reference table, its primary vindex and columns, its vindexes by column, the
sequence of its auto-increment column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from multigres.topo.conn import Version
from multigres.vschema.doc import Checker, Params, join, q
from multigres.vschema.errors import Problem, VSchemaError
from multigres.vschema.vindexes import VINDEX_TYPES, FunctionalVindex, LookupVindex, Vindex

DEFAULT_SEQUENCE_CACHE = 1000
MAX_SEQUENCE_CACHE = 1_000_000_000
TABLE_TYPES = ("sharded", "reference")


@dataclass(frozen=True, slots=True)
class TableGroupDef:
    name: str
    sharded: bool


@dataclass(frozen=True, slots=True)
class ColumnVindex:
    """A vindex on some columns of a table. ``primary``: the first of the table's list, which
    places its rows. ``owned``: the table is the vindex's owner (it keeps the lookup rows)."""

    columns: tuple[str, ...]
    name: str
    vindex: Vindex
    primary: bool
    owned: bool

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def cost(self) -> int:
        return self.vindex.cost

    @property
    def unique(self) -> bool:
        return self.vindex.unique


@dataclass(frozen=True, slots=True)
class AutoIncrement:
    column: str
    sequence: str


@dataclass(frozen=True, slots=True)
class SequenceDef:
    """A sequence giving ids unique across shards, backed by the Postgres sequence of the
    same name in ``tablegroup`` (unsharded); the gateway takes ``cache`` values at a time."""

    name: str
    tablegroup: str
    cache: int


@dataclass(frozen=True)
class Table:
    name: str
    tablegroup: TableGroupDef
    reference: bool = False
    column_vindexes: tuple[ColumnVindex, ...] = ()
    auto_increment: AutoIncrement | None = None
    # False for a table the document does not name (placed in the default tablegroup).
    declared: bool = True
    _by_column: dict[str, tuple[ColumnVindex, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by: dict[str, list[ColumnVindex]] = {}
        for cv in self.column_vindexes:
            by.setdefault(cv.column, []).append(cv)
        self._by_column.update(
            {c: tuple(sorted(cvs, key=lambda cv: cv.cost)) for c, cvs in by.items()}
        )

    @property
    def sharded(self) -> bool:
        """Rows are spread over the shards (not a reference table, not unsharded)."""
        return self.tablegroup.sharded and not self.reference

    @property
    def kind(self) -> str:
        """``sharded``, ``reference`` or ``unsharded``."""
        if self.reference:
            return "reference"
        return "sharded" if self.tablegroup.sharded else "unsharded"

    @property
    def primary_vindex(self) -> ColumnVindex | None:
        return self.column_vindexes[0] if self.column_vindexes else None

    @property
    def primary_columns(self) -> tuple[str, ...]:
        return self.column_vindexes[0].columns if self.column_vindexes else ()

    @property
    def secondary_vindexes(self) -> tuple[ColumnVindex, ...]:
        return self.column_vindexes[1:]

    @property
    def owned_vindexes(self) -> tuple[ColumnVindex, ...]:
        """The lookup vindexes whose rows this table's writes must keep."""
        return tuple(cv for cv in self.column_vindexes if cv.owned)

    def vindexes_for_column(self, column: str) -> tuple[ColumnVindex, ...]:
        """The vindexes whose (first) column is ``column``, cheapest first: what can route
        ``WHERE column = value``. A multi-column vindex is listed under its first column."""
        return self._by_column.get(column, ())


class VSchema:
    """A parsed, checked VSchema. Build with :meth:`parse` (a dict) or :meth:`loads` (JSON
    text). ``version`` is the topology version it was read at, if any."""

    SECTIONS: ClassVar[tuple[str, ...]] = (
        "tablegroups",
        "default_tablegroup",
        "vindexes",
        "tables",
        "sequences",
    )

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.tablegroups: dict[str, TableGroupDef] = {}
        self.default_tablegroup: TableGroupDef | None = None
        self.vindexes: dict[str, Vindex] = {}
        self.tables: dict[str, Table] = {}
        self.sequences: dict[str, SequenceDef] = {}
        self.version: Version | None = None
        self._undeclared: dict[str, Table] = {}

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def loads(cls, text: str | bytes, strict: bool = True) -> VSchema:
        """Parse JSON text; a key given twice in one object is a problem too."""
        return cls.parse(load_json(text), strict=strict)

    @classmethod
    def parse(cls, doc: Any, strict: bool = True) -> VSchema:
        """Check ``doc`` and build the VSchema; VSchemaError lists every problem. With
        ``strict=False`` (a document read back from the topology), unknown fields are
        ignored, so that an older binary reads what a newer one wrote."""
        checker = Checker(strict)
        vs = _Builder(checker).build(doc)
        checker.raise_if_problems()
        assert vs is not None
        return vs

    def to_json(self) -> str:
        return json.dumps(self.doc, indent=2, sort_keys=True)

    # -- what the planner asks ----------------------------------------------------------------

    def table(self, name: str) -> Table | None:
        """The table named ``name`` (as written in SQL: ``orders`` or ``public.orders``). A
        table the VSchema does not name is in the default tablegroup; None when there is no
        default (every tablegroup is sharded)."""
        t = self.tables.get(name)
        if t is not None:
            return t
        schema, dot, bare = name.rpartition(".")
        alias = bare if dot and schema == "public" else (f"public.{name}" if not dot else None)
        if alias is not None and alias in self.tables:
            return self.tables[alias]
        if self.default_tablegroup is None:
            return None
        t = self._undeclared.get(name)
        if t is None:
            t = Table(name, self.default_tablegroup, declared=False)
            if len(self._undeclared) < 10_000:  # names come from queries: keep the cache bounded
                self._undeclared[name] = t
        return t

    def vindex(self, name: str) -> Vindex | None:
        return self.vindexes.get(name)

    def sequence_of(self, table: str) -> SequenceDef | None:
        """The sequence that gives the table's auto-increment column its values."""
        t = self.table(table)
        if t is None or t.auto_increment is None:
            return None
        return self.sequences[t.auto_increment.sequence]

    def tables_in(self, tablegroup: str) -> list[Table]:
        return [t for t in self.tables.values() if t.tablegroup.name == tablegroup]


def load_json(text: str | bytes) -> Any:
    """JSON text to Python, with each object's repeated keys kept in ``_DupDict.repeated``
    (json keeps the last value silently; a VSchema must not)."""
    return json.loads(text, object_pairs_hook=_DupDict.from_pairs)


class _DupDict(dict[str, Any]):
    repeated: list[str]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _DupDict:
        d = cls()
        d.repeated = []
        for k, v in pairs:
            if k in d and k not in d.repeated:
                d.repeated.append(k)
            d[k] = v
        return d


class _Builder:
    def __init__(self, checker: Checker) -> None:
        self.c = checker
        # Vindexes named in the document that failed their checks: references to them are
        # not reported again.
        self.bad_vindexes: set[str] = set()
        self.bad_tablegroups: set[str] = set()
        self.bad_sequences: set[str] = set()

    def obj(
        self,
        value: Any,
        path: str,
        fields: tuple[str, ...] | None = None,
        required: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        d = self.c.obj(value, path, fields, required)
        if d is not None:
            for key in getattr(d, "repeated", ()):
                self.c.error(join(path, key), "appears more than once")
        return d

    def build(self, doc: Any) -> VSchema | None:
        top = self.obj(doc, "", VSchema.SECTIONS, required=("tablegroups",))
        if top is None:
            return None
        vs = VSchema(doc)
        self.tablegroups(vs, top.get("tablegroups", {}))
        self.default(vs, top)
        self.vindex_defs(vs, top.get("vindexes", {}))
        self.sequence_defs(vs, top.get("sequences", {}))
        owners = self.table_defs(vs, top.get("tables", {}))
        self.bind_lookups(vs, top.get("vindexes", {}), owners)
        return vs

    # tablegroups

    def tablegroups(self, vs: VSchema, raw: Any) -> None:
        d = self.obj(raw, "tablegroups")
        if d is None:
            return
        if not d:
            self.c.error("tablegroups", "names no tablegroup")
        for name, spec in d.items():
            path = join("tablegroups", name)
            if not _valid_name(name):
                self.c.error(path, "a tablegroup name must be non-empty, without '/' or spaces")
                self.bad_tablegroups.add(name)
                continue
            s = self.obj(spec, path, ("sharded",))
            if s is None:
                self.bad_tablegroups.add(name)
                continue
            sharded = self.c.boolean(s.get("sharded", False), join(path, "sharded"))
            if sharded is None:
                self.bad_tablegroups.add(name)
                continue
            vs.tablegroups[name] = TableGroupDef(name, sharded)

    def default(self, vs: VSchema, top: dict[str, Any]) -> None:
        unsharded = [tg for tg in vs.tablegroups.values() if not tg.sharded]
        if "default_tablegroup" in top:
            name = self.c.string(top["default_tablegroup"], "default_tablegroup")
            if name is None:
                return
            tg = vs.tablegroups.get(name)
            if tg is None:
                if name not in self.bad_tablegroups:
                    self.c.error("default_tablegroup", f"no tablegroup named {q(name)}")
            elif tg.sharded:
                self.c.error(
                    "default_tablegroup",
                    f"{q(name)} is sharded; tables the VSchema does not name go to an "
                    "unsharded tablegroup",
                )
            else:
                vs.default_tablegroup = tg
        elif len(unsharded) == 1:
            vs.default_tablegroup = unsharded[0]
        elif len(unsharded) > 1:
            names = ", ".join(q(tg.name) for tg in unsharded)
            self.c.error(
                "default_tablegroup",
                f"missing: there are several unsharded tablegroups ({names}); name the one "
                "that holds the tables the VSchema does not name",
            )

    # vindexes

    def vindex_defs(self, vs: VSchema, raw: Any) -> None:
        d = self.obj(raw, "vindexes")
        if d is None:
            return
        for name, spec in d.items():
            path = join("vindexes", name)
            s = self.obj(spec, path, ("type", "params", "owner"), required=("type",))
            if s is None or "type" not in s:
                self.bad_vindexes.add(name)
                continue
            kind = self.c.string(s["type"], join(path, "type"))
            if kind is None:
                self.bad_vindexes.add(name)
                continue
            cls = VINDEX_TYPES.get(kind)
            if cls is None:
                self.c.error(
                    join(path, "type"),
                    f"unknown vindex type {q(kind)} (one of: {', '.join(VINDEX_TYPES)})",
                )
                self.bad_vindexes.add(name)
                continue
            raw_params = self.obj(s.get("params", {}), join(path, "params"))
            if raw_params is None:
                self.bad_vindexes.add(name)
                continue
            params = Params(self.c, raw_params, join(path, "params"))
            vindex = cls(name, params)
            params.finish()
            if "owner" in s:
                owner_path = join(path, "owner")
                if self.c.string(s["owner"], owner_path) is not None and not isinstance(
                    vindex, LookupVindex
                ):
                    self.c.error(owner_path, f"only a lookup vindex has an owner ({kind} does not)")
            if params.failed:
                self.bad_vindexes.add(name)
                continue
            vs.vindexes[name] = vindex

    # sequences

    def sequence_defs(self, vs: VSchema, raw: Any) -> None:
        d = self.obj(raw, "sequences")
        if d is None:
            return
        for name, spec in d.items():
            path = join("sequences", name)
            s = self.obj(spec, path, ("tablegroup", "cache"))
            if s is None:
                self.bad_sequences.add(name)
                continue
            tg = self.tablegroup_ref(vs, s, path)
            cache = DEFAULT_SEQUENCE_CACHE
            if "cache" in s:
                n = self.c.integer(s["cache"], join(path, "cache"), 1, MAX_SEQUENCE_CACHE)
                if n is None:
                    self.bad_sequences.add(name)
                    continue
                cache = n
            if tg is None:
                self.bad_sequences.add(name)
                continue
            if tg.sharded:
                self.c.error(
                    join(path, "tablegroup"),
                    f"{q(tg.name)} is sharded; a sequence lives in an unsharded tablegroup "
                    "(one backing sequence for every shard)",
                )
                self.bad_sequences.add(name)
                continue
            vs.sequences[name] = SequenceDef(name, tg.name, cache)

    def tablegroup_ref(self, vs: VSchema, spec: dict[str, Any], path: str) -> TableGroupDef | None:
        """The tablegroup a table or sequence names, else the default one."""
        where = join(path, "tablegroup")
        if "tablegroup" not in spec:
            if vs.default_tablegroup is None:
                if vs.tablegroups or not self.bad_tablegroups:
                    self.c.error(where, "missing: there is no default (unsharded) tablegroup")
            return vs.default_tablegroup
        name = self.c.string(spec["tablegroup"], where)
        if name is None:
            return None
        tg = vs.tablegroups.get(name)
        if tg is None and name not in self.bad_tablegroups:
            self.c.error(where, f"no tablegroup named {q(name)} in tablegroups")
        return tg

    # tables

    def table_defs(self, vs: VSchema, raw: Any) -> dict[str, set[str]]:
        """Build the tables; returns the vindexes each table lists (for owner checks)."""
        listed: dict[str, set[str]] = {}
        d = self.obj(raw, "tables")
        if d is None:
            return listed
        bare_names: dict[str, str] = {}
        for name, spec in d.items():
            path = join("tables", name)
            if not _valid_table_name(name):
                self.c.error(path, "a table name is NAME or SCHEMA.NAME, without spaces")
                continue
            bare = name.removeprefix("public.")
            if bare in bare_names:
                self.c.error(path, f"names the same table as tables.{bare_names[bare]}")
                continue
            bare_names[bare] = name
            table = self.table(vs, name, spec, path, listed.setdefault(name, set()))
            if table is not None:
                vs.tables[name] = table
        for seq in vs.sequences.values():
            t = vs.tables.get(seq.name)
            if t is not None and t.tablegroup.name == seq.tablegroup:
                self.c.error(
                    join("sequences", seq.name),
                    f"a table of the same name is in tablegroup {q(seq.tablegroup)} "
                    "(Postgres tables and sequences share one namespace)",
                )
        return listed

    def table(
        self, vs: VSchema, name: str, spec: Any, path: str, listed: set[str]
    ) -> Table | None:
        s = self.obj(spec, path, ("tablegroup", "type", "column_vindexes", "auto_increment"))
        if s is None:
            return None
        tg = self.tablegroup_ref(vs, s, path)
        reference = False
        if "type" in s:
            kind = self.c.string(s["type"], join(path, "type"))
            if kind is not None and kind not in TABLE_TYPES:
                self.c.error(
                    join(path, "type"), f"{q(kind)} is not one of: {', '.join(TABLE_TYPES)}"
                )
            reference = kind == "reference"
        auto = self.auto_increment(vs, s, path)
        if tg is None:
            return None
        cvs = self.column_vindexes(vs, name, s, path, tg, reference, listed)
        if cvs is None:
            return None
        return Table(name, tg, reference, tuple(cvs), auto)

    def auto_increment(self, vs: VSchema, s: dict[str, Any], path: str) -> AutoIncrement | None:
        if "auto_increment" not in s:
            return None
        where = join(path, "auto_increment")
        a = self.obj(s["auto_increment"], where, ("column", "sequence"), ("column", "sequence"))
        if a is None or "column" not in a or "sequence" not in a:
            return None
        column = self.c.string(a["column"], join(where, "column"))
        seq = self.c.string(a["sequence"], join(where, "sequence"))
        if seq is not None and seq not in vs.sequences:
            if seq not in self.bad_sequences:
                self.c.error(join(where, "sequence"), f"no sequence named {q(seq)} in sequences")
            return None
        if column is None or seq is None:
            return None
        return AutoIncrement(column, seq)

    def column_vindexes(
        self,
        vs: VSchema,
        table: str,
        s: dict[str, Any],
        path: str,
        tg: TableGroupDef,
        reference: bool,
        listed: set[str],
    ) -> list[ColumnVindex] | None:
        where = join(path, "column_vindexes")
        raw = s.get("column_vindexes", [])
        if not isinstance(raw, list):
            self.c.error(where, f"expected a list, got {type(raw).__name__}")
            return None
        if raw and reference:
            self.c.error(where, "a reference table has no vindexes (it has a copy on every shard)")
            return None
        if raw and not tg.sharded:
            self.c.error(
                where, f"tablegroup {q(tg.name)} is unsharded: its tables have no vindexes"
            )
            return None
        if not raw and tg.sharded and not reference:
            self.c.error(
                where,
                f"a table of the sharded tablegroup {q(tg.name)} needs a primary vindex "
                "(the first entry places its rows), or \"type\": \"reference\"",
            )
            return None
        out: list[ColumnVindex] = []
        ok = True
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for i, item in enumerate(raw):
            cv = self.column_vindex(vs, table, item, join(where, i), primary=i == 0)
            if cv is None:
                ok = False
                continue
            listed.add(cv.name)
            if (cv.name, cv.columns) in seen:
                self.c.error(
                    join(where, i), f"vindex {q(cv.name)} on {q(list(cv.columns))} is listed twice"
                )
                ok = False
                continue
            seen.add((cv.name, cv.columns))
            out.append(cv)
        return out if ok else None

    def column_vindex(
        self, vs: VSchema, table: str, item: Any, path: str, primary: bool
    ) -> ColumnVindex | None:
        d = self.obj(item, path, ("column", "columns", "name"), required=("name",))
        if d is None:
            return None
        columns: list[str] | None = None
        if "column" in d and "columns" in d:
            self.c.error(path, "give either column or columns, not both")
        elif "column" in d:
            col = self.c.string(d["column"], join(path, "column"))
            columns = None if col is None else [col]
        elif "columns" in d:
            columns = self.c.names(d["columns"], join(path, "columns"))
        else:
            self.c.error(join(path, "column"), "missing (or columns: a list)")
        if "name" not in d:
            return None
        name = self.c.string(d["name"], join(path, "name"))
        if name is None or columns is None:
            return None
        vindex = vs.vindexes.get(name)
        if vindex is None:
            if name not in self.bad_vindexes:
                self.c.error(join(path, "name"), f"no vindex named {q(name)}")
            return None
        if len(columns) != vindex.column_count:
            self.c.error(
                join(path, "columns" if "columns" in d else "column"),
                f"names {len(columns)} column(s); vindex {vindex.describe()} reads "
                f"{vindex.column_count}",
            )
            return None
        owned = isinstance(vindex, LookupVindex) and _owner_of(vs, name) == table
        if primary:
            if not vindex.unique:
                self.c.error(
                    join(path, "name"),
                    f"the primary vindex (the first) must be unique: it places each row on one "
                    f"shard; {vindex.describe()} is not",
                )
                return None
            if owned:
                self.c.error(
                    join(path, "name"),
                    f"the primary vindex cannot be a lookup the table owns ({vindex.describe()}):"
                    " a new row's shard must be known before its lookup row is written",
                )
                return None
        return ColumnVindex(tuple(columns), name, vindex, primary, owned)

    # lookups

    def bind_lookups(
        self, vs: VSchema, raw_vindexes: Any, listed: dict[str, set[str]]
    ) -> None:
        for name, vindex in vs.vindexes.items():
            if not isinstance(vindex, LookupVindex):
                continue
            path = join("vindexes", name)
            owner = _owner_of(vs, name)
            if owner is not None:
                if owner not in vs.tables and owner not in listed:
                    self.c.error(join(path, "owner"), f"no table named {q(owner)} in tables")
                elif owner in vs.tables and name not in listed.get(owner, set()):
                    self.c.error(
                        join(path, "owner"),
                        f"table {q(owner)} does not list this vindex in its column_vindexes",
                    )
                vindex.owner = owner
            where = join(join(path, "params"), "table")
            tg_name, dot, tname = vindex.table.rpartition(".")
            table = _declared(vs, vindex.table)
            if table is None and dot and tg_name in vs.tablegroups:
                # tablegroup.table (Vitess's keyspace.table)
                table = vs.tables.get(tname)
                if table is not None and table.tablegroup.name != tg_name:
                    self.c.error(
                        where,
                        f"table {q(tname)} is in tablegroup {q(table.tablegroup.name)}, "
                        f"not {q(tg_name)}",
                    )
                    continue
            if table is None:
                if vindex.table not in listed:  # else its own errors were reported
                    self.c.error(
                        where,
                        f"no table named {q(vindex.table)} in tables: a lookup vindex's table "
                        "must be in the VSchema",
                    )
                continue
            route: FunctionalVindex | None = None
            pv = table.primary_vindex
            if (
                table.sharded
                and pv is not None
                and isinstance(pv.vindex, FunctionalVindex)
                and pv.columns == (vindex.from_columns[0],)
            ):
                route = pv.vindex
            vindex.bind(table.tablegroup.name, table.name, route)


def _declared(vs: VSchema, name: str) -> Table | None:
    """A table the document names (``public.t`` and ``t`` are one table)."""
    t = vs.table(name)
    return t if t is not None and t.declared else None


def _owner_of(vs: VSchema, vindex: str) -> str | None:
    spec = vs.doc.get("vindexes", {}).get(vindex)
    owner = spec.get("owner") if isinstance(spec, dict) else None
    return owner if isinstance(owner, str) and owner else None


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(
        c == "/" or c.isspace() or ord(c) < 32 for c in name
    )


def _valid_table_name(name: str) -> bool:
    parts = name.split(".")
    return len(parts) <= 2 and all(p and not any(c.isspace() for c in p) for p in parts)


__all__ = [
    "AutoIncrement",
    "ColumnVindex",
    "Problem",
    "SequenceDef",
    "Table",
    "TableGroupDef",
    "VSchema",
    "VSchemaError",
    "load_json",
]
