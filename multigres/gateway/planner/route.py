"""Where a statement's rows are: tables to tablegroups, and a WHERE clause to a route.

Shared by the SELECT planner and the DML planner:

- :func:`resolve_table`: a RangeVar to its VSchema ``Table`` (an unnamed table is in the
  default tablegroup; without one, 42P01).
- :class:`TableRef`: a table as one statement names it (its alias).
- :func:`choose_route`: the cheapest route the conjuncts of a WHERE clause allow for a set of
  co-located tables (tables whose rows for one query are on one shard: joined on their
  primary vindex, plus reference tables): EqualUnique < Equal < IN < Scatter, then vindex
  cost. Values must be constants of the statement (``$n``, ``-$n``, NULL, a cast of those).
- :func:`rewrite_in`: give an IN list's values one template slot, so that each shard gets
  only its own values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pglast import ast, enums

from multigres.gateway.engine.route import Opcode, Value
from multigres.gateway.planner.nodes import Node, column_name, is_
from multigres.vschema.model import ColumnVindex, Table, VSchema
from multigres.wire.errors import PgError

UNDEFINED_TABLE = "42P01"


def table_name(rv: Node) -> str:
    return rv.relname if rv.schemaname is None else f"{rv.schemaname}.{rv.relname}"


def resolve_table(vs: VSchema, rv: Node) -> Table:
    """The VSchema table a RangeVar names."""
    name = table_name(rv)
    t = vs.table(name)
    if t is None:
        raise PgError(
            f'relation "{name}" is not in the VSchema and the database has no unsharded '
            "tablegroup for it",
            UNDEFINED_TABLE,
        )
    return t


@dataclass(eq=False)
class TableRef:
    """A table as a statement names it: ``alias`` is what its columns are qualified with."""

    table: Table
    alias: str
    node: Node = field(default=None, repr=False)

    @property
    def tablegroup(self) -> str:
        return self.table.tablegroup.name


def value_of(expr: Node) -> Value | None:
    """The routing value of an expression that is a constant of the statement, else None."""
    if is_(expr, ast.ParamRef):
        return Value(param=expr.number)
    if is_(expr, ast.TypeCast):
        return value_of(expr.arg)
    if is_(expr, ast.A_Const):
        if expr.isnull:
            return Value(const="NULL")
        v = expr.val
        if is_(v, ast.Integer):
            return Value(const=str(v.ival))
        if is_(v, ast.String):
            return Value(const="'" + v.sval.replace("'", "''") + "'")
        return None
    if (
        is_(expr, ast.A_Expr)
        and expr.kind == enums.A_Expr_Kind.AEXPR_OP
        and expr.lexpr is None
        and _op(expr) == "-"
        and is_(expr.rexpr, ast.ParamRef)
    ):
        return Value(param=expr.rexpr.number, negate=True)
    return None


def _op(expr: Node) -> str:
    names = expr.name or ()
    return names[-1].sval if names else ""


class Columns:
    """Which table of a scope a column reference belongs to."""

    def __init__(self, tables: Sequence[TableRef]) -> None:
        self.tables = list(tables)
        self.by_alias = {t.alias: t for t in self.tables}

    def owner(self, ref: Node) -> tuple[TableRef, str] | None:
        cn = column_name(ref)
        if cn is None:
            return None
        qual, col = cn
        if qual is not None:
            t = self.by_alias.get(qual)
            return (t, col) if t is not None else None
        if len(self.tables) == 1:
            return self.tables[0], col
        # Unqualified with several tables: if exactly one of them routes by this column,
        # that is the one (if another table had it too, Postgres would call it ambiguous).
        having = [t for t in self.tables if t.table.vindexes_for_column(col)]
        if len(having) == 1:
            return having[0], col
        return None


@dataclass(eq=False)
class RouteChoice:
    opcode: Opcode
    tablegroup: str
    vindex: ColumnVindex | None = None
    values: tuple[Value, ...] = ()
    # IN: the predicate whose list becomes a per-shard slot (see rewrite_in); for
    # ``= ANY($n)`` the array param itself is the slot.
    in_expr: Node = None
    array: bool = False
    in_slot: int = 0

    @property
    def single_shard(self) -> bool:
        """At most one shard answers (the statement can go there whole)."""
        return self.opcode in (
            Opcode.UNSHARDED, Opcode.REFERENCE, Opcode.SHARD, Opcode.NONE
        ) or (self.opcode is Opcode.EQUAL_UNIQUE)


_RANK = {Opcode.NONE: -1, Opcode.EQUAL_UNIQUE: 0, Opcode.EQUAL: 1, Opcode.IN: 2}


def choose_route(
    tables: Sequence[TableRef], terms: Sequence[Node], columns: Columns | None = None
) -> RouteChoice:
    """The route of co-located ``tables`` under the WHERE conjuncts ``terms``."""
    columns = columns or Columns(tables)
    sharded = [t for t in tables if t.table.sharded]
    tg = tables[0].tablegroup if tables else ""
    if not sharded:
        kind = tables[0].table.kind if tables else "unsharded"
        op = Opcode.REFERENCE if kind == "reference" else Opcode.UNSHARDED
        return RouteChoice(op, tg)
    tg = sharded[0].tablegroup
    for term in terms:
        if is_(term, ast.A_Const) and (
            term.isnull or (is_(term.val, ast.Boolean) and not term.val.boolval)
        ):
            return RouteChoice(Opcode.NONE, tg)  # WHERE false, WHERE NULL
    best: RouteChoice | None = None
    best_key: tuple[int, int] = (99, 0)
    equalities: dict[tuple[int, str], list[Value]] = {}
    for term in terms:
        cand = _candidate(term, columns)
        if cand is None:
            continue
        tref, col, kind, vals, array = cand
        if not tref.table.sharded:
            continue
        for cv in tref.table.vindexes_for_column(col):
            if cv.vindex.column_count > 1 and not cv.vindex.needs_vcursor:
                continue  # multi-column vindexes route only with every column (not yet)
            if kind == "eq":
                if any(v.const == "NULL" for v in vals):
                    return RouteChoice(Opcode.NONE, tg, cv)
                op = Opcode.EQUAL_UNIQUE if cv.unique else Opcode.EQUAL
                key = (id(tref), cv.name)
                equalities.setdefault(key, []).extend(vals)
                choice = RouteChoice(op, tg, cv, tuple(equalities[key]))
            else:
                if not array and vals and all(v.const == "NULL" for v in vals):
                    return RouteChoice(Opcode.NONE, tg, cv)
                choice = RouteChoice(Opcode.IN, tg, cv, tuple(vals), in_expr=term, array=array)
            rank = (_RANK[choice.opcode], cv.cost)
            if rank < best_key or (rank == best_key and choice.opcode is not Opcode.IN):
                best, best_key = choice, rank
    return best or RouteChoice(Opcode.SCATTER, tg)


def _candidate(
    term: Node, columns: Columns
) -> tuple[TableRef, str, str, list[Value], bool] | None:
    """(table, column, "eq"|"in", values, array) of a routable predicate."""
    if not is_(term, ast.A_Expr):
        return None
    kind = term.kind
    if kind == enums.A_Expr_Kind.AEXPR_OP and _op(term) == "=":
        for col, val in ((term.lexpr, term.rexpr), (term.rexpr, term.lexpr)):
            owner = columns.owner(col)
            v = value_of(val)
            if owner is not None and v is not None:
                return owner[0], owner[1], "eq", [v], False
        return None
    if kind == enums.A_Expr_Kind.AEXPR_IN and _op(term) == "=":
        owner = columns.owner(term.lexpr)
        if owner is None:
            return None
        vals = [value_of(x) for x in term.rexpr]
        if any(v is None for v in vals):
            return None
        return owner[0], owner[1], "in", [v for v in vals if v is not None], False
    if kind == enums.A_Expr_Kind.AEXPR_OP_ANY and _op(term) == "=":
        owner = columns.owner(term.lexpr)
        if owner is None:
            return None
        r = term.rexpr
        if is_(r, ast.TypeCast):
            r = r.arg
        if is_(r, ast.ParamRef):
            return owner[0], owner[1], "in", [Value(param=r.number)], True
        if is_(r, ast.A_ArrayExpr) and r.elements:
            vals = [value_of(x) for x in r.elements]
            if any(v is None for v in vals):
                return None
            return owner[0], owner[1], "in", [v for v in vals if v is not None], False
    return None


def rewrite_in(choice: RouteChoice, slot: int) -> None:
    """Replace the chosen IN list's values (in the AST) by one slot ``$slot``, which the
    Route fills with each shard's own values. For ``= ANY($n)`` the array param is the
    slot and nothing changes."""
    if choice.opcode is not Opcode.IN or choice.in_expr is None:
        return
    if choice.array:
        r = choice.in_expr.rexpr
        if is_(r, ast.TypeCast):
            r = r.arg
        choice.in_slot = r.number
        return
    term = choice.in_expr
    if term.kind == enums.A_Expr_Kind.AEXPR_IN:
        term.rexpr = (ast.ParamRef(number=slot),)
    else:
        r = term.rexpr
        arr = r.arg if is_(r, ast.TypeCast) else r
        arr.elements = (ast.ParamRef(number=slot),)
    choice.in_slot = slot
