"""The planner of writes: INSERT, UPDATE, DELETE (and ``SELECT nextval('seq')``).

Entry points (called by ``planner.build`` with the parsed statement)::

    plan_insert(stmt: ast.InsertStmt, vs, sql, param_count) -> Plan
    plan_update(stmt: ast.UpdateStmt, vs, sql, param_count) -> Plan
    plan_delete(stmt: ast.DeleteStmt, vs, sql, param_count) -> Plan
    plan_nextval(stmt: ast.SelectStmt, vs, sql, param_count) -> Plan | None

Where a write goes is decided by its target table:

- unsharded: the statement runs unchanged on its tablegroup (``passthrough``) when every
  table it names is in that tablegroup; an INSERT whose auto-increment values come from a
  VSchema sequence goes through the engine (``engine/insert``) to fill them.
- reference: every shard of the table's tablegroup gets the statement (one transaction, the
  session's); the tables it reads must be reference tables of the same tablegroup. The answer
  is one copy's (the first shard's).
- sharded: INSERT ... VALUES is split by the primary vindex (``engine/insert``); UPDATE and
  DELETE are routed by their WHERE like a SELECT (``engine/dml``). The tables they read
  besides the target must be reference tables of its tablegroup: anything else could need
  rows of another shard, and is refused (0A000) rather than answered from one shard.

Everything refused is PgError 0A000 naming the construct.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast, enums

from multigres.gateway.engine.dml import DML, KeyChange, LookupChange
from multigres.gateway.engine.insert import Insert, Opcode, RowValue, ValueKind
from multigres.gateway.engine.route import Opcode as RouteOpcode
from multigres.gateway.engine.route import Route
from multigres.gateway.engine.sequence import SequenceNext, sequence_name_of
from multigres.gateway.planner.nodes import Node, conjuncts, is_, unsupported, walk
from multigres.gateway.planner.plan import Plan
from multigres.gateway.planner.route import (
    Columns,
    TableRef,
    choose_route,
    resolve_table,
    rewrite_in,
    table_name,
)
from multigres.gateway.planner.templates import Template, deparse
from multigres.vschema.model import ColumnVindex, Table, VSchema
from multigres.vschema.vindexes import LookupVindex
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

# Casts a vindex value may carry: they do not change the value a vindex reads (a cast to
# varchar(n), char(n), a numeric scale or a domain could, so those are refused).
_SAFE_CASTS = frozenset({
    "int2", "int4", "int8", "smallint", "integer", "bigint", "int", "text", "varchar",
    "unknown", "regclass",
})
_MARKER = "mg_values_marker"


# -- tables a statement names ------------------------------------------------------------------


def _cte_names(stmt: Node) -> set[str]:
    names: set[str] = set()
    for n in walk(stmt, into_subqueries=True):
        if is_(n, ast.CommonTableExpr):
            names.add(n.ctename)
    return names


def _other_tables(vs: VSchema, stmt: Node, target: Node) -> Iterator[tuple[Table, str]]:
    """Every table the statement reads besides its target (CTE names are not tables)."""
    ctes = _cte_names(stmt)
    for n in walk(stmt, into_subqueries=True):
        if is_(n, ast.RangeVar) and n is not target:
            name = table_name(n)
            if n.schemaname is None and name in ctes:
                continue
            yield resolve_table(vs, n), name


def _check_reads(vs: VSchema, stmt: Node, target: Node, table: Table, verb: str) -> None:
    """The tables read by a write of ``table`` must be where each shard's copy of the
    statement finds all of them: the same unsharded tablegroup, or reference tables of the
    target's tablegroup (for a sharded or reference target)."""
    tg = table.tablegroup.name
    for t, name in _other_tables(vs, stmt, target):
        if t.tablegroup.name == tg and (t.kind == "reference" or table.kind == "unsharded"):
            continue
        if t.name == table.name:
            if table.kind != "sharded":
                continue
            raise unsupported(
                f"{verb} of the sharded table {table.name} that reads {name} again (a "
                "subquery or self-join may need rows of other shards)"
            )
        where = f"{t.kind} table {name} (tablegroup {t.tablegroup.name})"
        raise unsupported(
            f"{verb} of the {table.kind} table {table.name} (tablegroup {tg}) that reads the "
            f"{where}: the statement cannot run on one route"
        )


def _passthrough(stmt_kind: str, sql: str, param_count: int, tg: str) -> Plan:
    route = Route(RouteOpcode.UNSHARDED, tg, Template(sql))
    return Plan(route, sql, param_count, param_count, passthrough=tg, kind=stmt_kind)


# -- INSERT ---------------------------------------------------------------------------------


def plan_insert(stmt: Node, vs: VSchema, sql: str, param_count: int) -> Plan:
    table = resolve_table(vs, stmt.relation)
    tg = table.tablegroup.name
    _check_reads(vs, stmt, stmt.relation, table, "INSERT")
    auto = table.auto_increment
    if table.kind == "unsharded" and auto is None:
        return _passthrough("insert", sql, param_count, tg)
    sel = stmt.selectStmt
    values = sel.valuesLists if is_(sel, ast.SelectStmt) else None
    is_values = values is not None and not _has_clauses(sel)
    if table.kind == "sharded":
        if stmt.withClause is not None:
            raise unsupported(f"WITH in an INSERT into the sharded table {table.name}")
        if sel is not None and not is_values:
            raise unsupported(
                f"INSERT ... SELECT into the sharded table {table.name} (each row must be "
                "placed by its sharding key: INSERT ... VALUES)"
            )
        if not stmt.cols:
            raise unsupported(
                f"INSERT into the sharded table {table.name} without a column list (the "
                "gateway must know which value is the sharding key)"
            )
        _check_on_conflict(stmt, table)
        _check_no_sublinks(stmt, table)
    cols = [c.name for c in stmt.cols or ()]
    if auto is not None and not is_values and (sel is not None or auto.column in cols):
        if sel is not None and auto.column not in cols:
            raise unsupported(
                f"INSERT ... SELECT into {table.name} without its auto-increment column "
                f"{auto.column} (the gateway fills it from sequence {auto.sequence} only in "
                "VALUES)"
            )
        if table.kind == "unsharded":
            return _passthrough("insert", sql, param_count, tg)
    if not is_values and table.kind == "reference" and (auto is None or sel is not None):
        return _reference_statement(stmt, sql, param_count, table)
    return _plan_values(stmt, vs, sql, param_count, table, cols, values)


def _has_clauses(sel: Node) -> bool:
    return any(
        getattr(sel, a, None)
        for a in ("withClause", "sortClause", "limitCount", "limitOffset", "lockingClause")
    )


def _reference_statement(stmt: Node, sql: str, param_count: int, table: Table) -> Plan:
    tg = table.tablegroup.name
    ins = Insert(Opcode.REFERENCE, table.name, tg, Template(sql), (), Template(""))
    return Plan(ins, sql, param_count, param_count, kind="insert")


def _check_on_conflict(stmt: Node, table: Table) -> None:
    oc = stmt.onConflictClause
    if oc is None:
        return
    keys = set(table.primary_columns)
    what = f"INSERT ... ON CONFLICT on the sharded table {table.name}"
    infer = oc.infer
    if infer is None or infer.conname or not infer.indexElems:
        raise unsupported(
            f"{what} without a conflict target of columns: the target must include the "
            f"sharding key ({', '.join(sorted(keys))}), or a conflict on another shard would "
            "go unseen"
        )
    named = {e.name for e in infer.indexElems if is_(e, ast.IndexElem) and e.name}
    if not keys <= named:
        raise unsupported(
            f"{what} whose conflict target ({', '.join(sorted(named)) or 'an expression'}) "
            f"does not include the sharding key ({', '.join(sorted(keys))})"
        )
    if table.owned_vindexes:
        raise unsupported(
            f"{what}, which owns lookup vindex(es) "
            f"{', '.join(cv.name for cv in table.owned_vindexes)} (the lookup rows of a "
            "row that conflicts would be wrong)"
        )
    for rt in oc.targetList or ():
        if rt.name in keys:
            raise unsupported(f"{what} DO UPDATE SET of the sharding column {rt.name}")
        for cv in table.secondary_vindexes:
            if rt.name in cv.columns:
                raise unsupported(f"{what} DO UPDATE SET of vindex column {rt.name}")


def _check_no_sublinks(stmt: Node, table: Table) -> None:
    for n in walk(stmt, into_subqueries=False):
        if is_(n, ast.SubLink):
            raise unsupported(f"a subquery in an INSERT into the sharded table {table.name}")


def _plan_values(
    stmt: Node,
    vs: VSchema,
    sql: str,
    param_count: int,
    table: Table,
    cols: list[str],
    values: Any,
) -> Plan:
    auto = table.auto_increment
    slots = param_count
    generated: list[RowValue] = []

    def new_slot(kind: ValueKind, sequence: str = "", param: int = 0) -> RowValue:
        nonlocal slots
        slots += 1
        rv = RowValue(kind, param=param, sequence=sequence, slot=slots)
        generated.append(rv)
        return rv

    rows_exprs: list[list[Node]]
    if values is None:  # DEFAULT VALUES
        rows_exprs = [[]]
    else:
        rows_exprs = [list(r) for r in values]
    for r in rows_exprs:
        if len(r) > len(cols) and cols:
            raise PgError("INSERT has more expressions than target columns", codes.SYNTAX_ERROR)
        if len(r) < len(cols):
            raise PgError("INSERT has more target columns than expressions", codes.SYNTAX_ERROR)
    if not cols and values is not None:
        raise unsupported(
            f"INSERT into {table.name} without a column list (its auto-increment column "
            f"{auto.column if auto else ''} must be named or left out of a column list)"
        )
    add_auto = auto is not None and auto.column not in cols
    out_cols = [*cols, auto.column] if add_auto and auto else list(cols)
    row_values: list[list[RowValue]] = []
    row_texts: list[str] = []
    for r in rows_exprs:
        rvs: list[RowValue] = []
        texts: list[str] = []
        for col, expr in zip(cols, r, strict=True):
            rv, text = _row_value(expr, col, table, vs, new_slot)
            rvs.append(rv)
            texts.append(text)
        if add_auto and auto is not None:
            rv = new_slot(ValueKind.SEQUENCE, sequence=auto.sequence)
            rvs.append(rv)
            texts.append(f"${rv.slot}")
        row_values.append(rvs)
        row_texts.append("(" + ", ".join(texts) + ")")
    vindexes = []
    if table.kind == "sharded":
        for cv in table.column_vindexes:
            per_row = []
            for rvs in row_values:
                per_row.append(tuple(_vindex_value(cv, c, out_cols, rvs, table)
                                     for c in cv.columns))
            vindexes.append((cv, tuple(per_row)))
    if generated and stmt.override in (None, enums.OverridingKind.OVERRIDING_NOT_SET):
        # The gateway writes values the column's default would have made: an identity
        # column GENERATED ALWAYS takes them only with OVERRIDING SYSTEM VALUE (a plain
        # column ignores the clause).
        stmt.override = enums.OverridingKind.OVERRIDING_SYSTEM_VALUE
    prefix, suffix = _frame(stmt, out_cols)
    opcode = {"sharded": Opcode.SHARDED, "reference": Opcode.REFERENCE}.get(
        table.kind, Opcode.UNSHARDED
    )
    ins = Insert(
        opcode,
        table.name,
        table.tablegroup.name,
        Template(prefix),
        tuple(Template(t) for t in row_texts),
        Template(suffix),
        tuple(vindexes),
        tuple(generated),
        dict(vs.sequences) if generated else None,
    )
    return Plan(ins, sql, param_count, slots, kind="insert")


def _vindex_value(
    cv: ColumnVindex, col: str, cols: list[str], rvs: list[RowValue], table: Table
) -> RowValue:
    if col not in cols:
        role = "sharding key" if cv.primary else f"vindex {cv.name}"
        raise unsupported(
            f"INSERT into {table.name} without column {col} ({role}): the gateway needs its "
            "value (a column's DEFAULT is known only to Postgres)"
        )
    rv = rvs[cols.index(col)]
    if rv.kind is ValueKind.OTHER:
        role = "sharding key" if cv.primary else f"vindex {cv.name}"
        raise unsupported(
            f"INSERT into {table.name}: the value of column {col} ({role}) is {rv.text}; it "
            "must be a constant, a parameter, or a sequence's nextval"
        )
    return rv


def _row_value(
    expr: Node, col: str, table: Table, vs: VSchema, new_slot: Any
) -> tuple[RowValue, str]:
    """What the engine knows of a VALUES item, and its SQL text in the row's template."""
    auto = table.auto_increment
    if is_(expr, ast.SetToDefault):
        if auto is not None and auto.column == col:
            rv = new_slot(ValueKind.SEQUENCE, sequence=auto.sequence)
            return rv, f"${rv.slot}"
        return RowValue(ValueKind.OTHER, text="DEFAULT"), "DEFAULT"
    seq = _nextval_of(expr, vs)
    if seq is not None:
        kind, arg = seq
        if kind == "param":
            rv = new_slot(ValueKind.NEXTVAL, param=arg)
        else:
            rv = new_slot(ValueKind.SEQUENCE, sequence=arg)
        return rv, f"${rv.slot}"
    return _known_value(expr), deparse(expr)


def _nextval_of(expr: Node, vs: VSchema) -> tuple[str, Any] | None:
    """``nextval($n)`` -> ("param", n); ``nextval('<VSchema sequence>')`` -> ("seq", name)."""
    if not (is_(expr, ast.FuncCall) and len(expr.funcname) <= 2
            and expr.funcname[-1].sval.lower() == "nextval" and len(expr.args or ()) == 1):
        return None
    if len(expr.funcname) == 2 and expr.funcname[0].sval != "pg_catalog":
        return None
    arg = expr.args[0]
    if is_(arg, ast.TypeCast):
        arg = arg.arg
    if is_(arg, ast.ParamRef):
        return "param", arg.number
    if is_(arg, ast.A_Const) and is_(arg.val, ast.String):
        name = sequence_name_of(arg.val.sval)
        if name in vs.sequences:
            return "seq", name
    return None


def _known_value(expr: Node) -> RowValue:
    """A value the gateway can read per execution: $n, -$n, NULL, TRUE/FALSE, a constant,
    or a value-preserving cast of one."""
    e = expr
    while is_(e, ast.TypeCast):
        tn = e.typeName
        name = tn.names[-1].sval if tn is not None and tn.names else ""
        if name not in _SAFE_CASTS or tn.typmods or tn.arrayBounds:
            return RowValue(ValueKind.OTHER, text=deparse(expr))
        e = e.arg
    if is_(e, ast.ParamRef):
        return RowValue(ValueKind.PARAM, param=e.number)
    if (is_(e, ast.A_Expr) and e.kind == enums.A_Expr_Kind.AEXPR_OP and e.lexpr is None
            and e.name and e.name[-1].sval == "-" and is_(e.rexpr, ast.ParamRef)):
        return RowValue(ValueKind.PARAM, param=e.rexpr.number, negate=True)
    if is_(e, ast.A_Const):
        if e.isnull:
            return RowValue(ValueKind.CONST, const=None)
        v = e.val
        if is_(v, ast.Integer):
            return RowValue(ValueKind.CONST, const=v.ival)
        if is_(v, ast.String):
            return RowValue(ValueKind.CONST, const=v.sval)
        if is_(v, ast.Boolean):
            return RowValue(ValueKind.CONST, const=str(v.boolval).lower())
    return RowValue(ValueKind.OTHER, text=deparse(expr))


def _frame(stmt: Node, cols: list[str]) -> tuple[str, str]:
    """The statement's text before and after its VALUES rows, with the final column list
    (deparsed once with a marker row in place of the rows, then cut at the marker)."""
    stmt.cols = tuple(ast.ResTarget(name=c) for c in cols) or None
    marker = ast.SelectStmt(
        valuesLists=((ast.ColumnRef(fields=(ast.String(sval=_MARKER),)),),),
        limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT, op=enums.SetOperation.SETOP_NONE,
    )
    stmt.selectStmt = marker
    text = deparse(stmt)
    cut = text.index(f"({_MARKER})")
    if "DEFAULT VALUES" in text[:cut]:  # pragma: no cover - the marker replaced them
        raise AssertionError(text)
    return text[:cut], text[cut + len(_MARKER) + 2 :]


# -- SELECT nextval --------------------------------------------------------------------------


def plan_nextval(stmt: Node, vs: VSchema, sql: str, param_count: int) -> Plan | None:
    """``SELECT nextval($1)`` (no FROM, nothing else) when the VSchema has sequences: the
    allocator answers for a VSchema sequence, the default tablegroup for any other."""
    if not vs.sequences or not is_(stmt, ast.SelectStmt) or stmt.fromClause:
        return None
    if any(getattr(stmt, a, None) for a in (
        "whereClause", "groupClause", "havingClause", "sortClause", "limitCount",
        "limitOffset", "withClause", "distinctClause", "valuesLists", "lockingClause",
    )) or stmt.op != enums.SetOperation.SETOP_NONE:
        return None
    tl: list[Node] = list(stmt.targetList or ())
    if len(tl) != 1 or tl[0].name is not None:
        return None
    seq = _nextval_of(tl[0].val, vs)
    if seq is None:
        return None
    tg = vs.default_tablegroup.name if vs.default_tablegroup else ""
    kind, arg = seq
    if kind == "seq":
        # A constant name kept in the text: its own parameter slot holds it.
        slot = param_count + 1
        text = "'" + arg.replace("'", "''") + "'"
        root = _ConstNextval(SequenceNext(dict(vs.sequences), slot, tg,
                                          Template(f"SELECT nextval(${slot})")), text)
        return Plan(root, sql, param_count, slot, kind="select")
    return Plan(SequenceNext(dict(vs.sequences), arg, tg, Template(sql)), sql, param_count,
                param_count, kind="select")


class _ConstNextval:
    """``SELECT nextval('seq')`` with the name left in the text: bound into a slot."""

    def __init__(self, inner: SequenceNext, text: str) -> None:
        self.inner = inner
        self.text = text

    async def execute(self, vc: Any, bind: Any) -> Any:
        b = list(bind)
        b[self.inner.param - 1] = self.text
        return await self.inner.execute(vc, b)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "name": self.text}


# -- UPDATE and DELETE -------------------------------------------------------------------------


def plan_update(stmt: Node, vs: VSchema, sql: str, param_count: int) -> Plan:
    return _plan_dml(stmt, vs, sql, param_count, "UPDATE")


def plan_delete(stmt: Node, vs: VSchema, sql: str, param_count: int) -> Plan:
    return _plan_dml(stmt, vs, sql, param_count, "DELETE")


def _plan_dml(stmt: Node, vs: VSchema, sql: str, param_count: int, verb: str) -> Plan:
    rel = stmt.relation
    table = resolve_table(vs, rel)
    tg = table.tablegroup.name
    kind = verb.lower()
    if stmt.whereClause is not None and any(
        is_(n, ast.CurrentOfExpr) for n in walk(stmt.whereClause)
    ):
        if table.kind == "unsharded":
            return _passthrough(kind, sql, param_count, tg)
        raise unsupported(f"{verb} ... WHERE CURRENT OF on the {table.kind} table {table.name}")
    _check_reads(vs, stmt, rel, table, verb)
    if table.kind == "unsharded":
        return _passthrough(kind, sql, param_count, tg)
    if table.kind == "reference":
        route = Route(RouteOpcode.SCATTER, tg, Template(sql), comment="every copy")
        return Plan(DML(verb, table.name, route, reference=True), sql, param_count,
                    param_count, kind=kind)
    if stmt.withClause is not None:
        raise unsupported(f"WITH in {verb} of the sharded table {table.name}")
    alias = rel.alias.aliasname if rel.alias is not None else rel.relname
    tref = TableRef(table, alias, rel)
    choice = choose_route([tref], conjuncts(stmt.whereClause), Columns([tref]))
    slots = param_count
    if choice.opcode is RouteOpcode.IN and not choice.array:
        slots += 1
        rewrite_in(choice, slots)
    elif choice.opcode is RouteOpcode.IN:
        rewrite_in(choice, 0)
    key_change, lookups, verify_sets = _changes(stmt, table, verb)
    rc = stmt.returningClause
    returning = list(rc.exprs or ()) if rc is not None else []
    extra: list[str] = []
    if verb == "DELETE" and table.owned_vindexes:
        extra = _extra_columns(table, table.owned_vindexes)
        lookups = table.owned_vindexes
    select_route = None
    tid_slot = 0
    if verb == "UPDATE" and (key_change is not None or lookups or verify_sets):
        if stmt.fromClause:
            raise unsupported(
                f"UPDATE ... FROM of the sharded table {table.name} that changes a vindex "
                "column"
            )
        extra = _extra_columns(table, lookups)
        sel_cols = ["ctid", *extra]
        select_sql = (
            f"SELECT {', '.join(_q(alias, c) for c in sel_cols)} FROM {deparse(rel)}"
            + (f" WHERE {deparse(stmt.whereClause)}" if stmt.whereClause is not None else "")
            + f" FOR UPDATE OF {_ident(alias)}"
        )
        select_route = _route(choice, tg, select_sql)
        slots += 1
        tid_slot = slots
        stmt.whereClause = _ctid_any(alias, tid_slot)
    if extra:
        exprs = tuple(returning) + tuple(
            ast.ResTarget(val=ast.ColumnRef(fields=(ast.String(sval=alias), ast.String(sval=c))))
            for c in extra
        )
        if rc is None:
            stmt.returningClause = ast.ReturningClause(exprs=exprs)
        else:
            rc.exprs = exprs
    main = _route(choice, tg, deparse(stmt))
    dml = DML(
        verb,
        table.name,
        main,
        primary=table.primary_vindex,
        lookups=tuple(LookupChange(cv) for cv in lookups),
        key_change=key_change,
        verify_sets=verify_sets,
        extra=tuple(extra),
        client_returning=bool(returning),
        select=select_route,
        tid_slot=tid_slot,
    )
    return Plan(dml, sql, param_count, slots, kind=kind)


def _route(choice: Any, tg: str, sql: str) -> Route:
    vindex = choice.vindex.vindex if choice.vindex is not None else None
    return Route(choice.opcode, tg, Template(sql), vindex=vindex, values=choice.values,
                 in_slot=choice.in_slot, array=choice.array)


VerifySets = tuple[tuple[ColumnVindex, tuple[RowValue, ...]], ...]


def _changes(
    stmt: Node, table: Table, verb: str
) -> tuple[KeyChange | None, tuple[ColumnVindex, ...], VerifySets]:
    """For an UPDATE: the new sharding key (constants), the owned lookups whose columns
    change, and the non-owned vindexes whose columns are set (to constants, verified)."""
    if verb != "UPDATE":
        return None, (), ()
    sets: dict[str, Node] = {}
    for rt in stmt.targetList:
        if rt.indirection:
            if rt.name in _vindex_columns(table):
                raise unsupported(f"UPDATE of part of vindex column {rt.name}")
            continue
        sets[rt.name] = rt.val
    if any(is_(v, ast.MultiAssignRef) for v in sets.values()):
        if set(sets) & _vindex_columns(table):
            raise unsupported(f"UPDATE (...) = (...) of a vindex column of {table.name}")
    pv = table.primary_vindex
    assert pv is not None
    key_change = None
    if set(pv.columns) & set(sets):
        new: list[Any] = []
        for c in pv.columns:
            if c not in sets:
                new.append(None)
                continue
            rv = _known_value(sets[c])
            if rv.kind is ValueKind.OTHER:
                raise unsupported(
                    f"UPDATE of the sharding column {c} of {table.name} to {rv.text}: the "
                    "new value must be a constant or parameter (a row cannot move between "
                    "shards; the gateway checks it stays on its shard)"
                )
            new.append(rv)
        key_change = KeyChange(pv, tuple(new))
    lookups = tuple(
        cv for cv in table.owned_vindexes
        if key_change is not None or set(cv.columns) & set(sets)
    )
    verify_sets = []
    for cv in table.secondary_vindexes:
        if cv.owned or not set(cv.columns) & set(sets):
            continue
        vals = []
        for c in cv.columns:
            if c not in sets:
                raise unsupported(f"UPDATE of part of the multi-column vindex {cv.name}")
            rv = _known_value(sets[c])
            if rv.kind is ValueKind.OTHER:
                raise unsupported(
                    f"UPDATE of column {c} (vindex {cv.name}, owned by another table) to "
                    f"{rv.text}: it must be a constant or parameter, to be verified"
                )
            vals.append(rv)
        verify_sets.append((cv, tuple(vals)))
    return key_change, lookups, tuple(verify_sets)


def _vindex_columns(table: Table) -> set[str]:
    return {c for cv in table.column_vindexes for c in cv.columns}


def _extra_columns(table: Table, lookups: tuple[ColumnVindex, ...]) -> list[str]:
    """The columns the engine reads back: the primary vindex's (the keyspace id), then the
    lookups' ``from`` columns."""
    out = list(table.primary_columns)
    for cv in lookups:
        assert isinstance(cv.vindex, LookupVindex)
        for c in cv.columns:
            if c not in out:
                out.append(c)
    return out


def _ctid_any(alias: str, slot: int) -> Node:
    return ast.A_Expr(
        kind=enums.A_Expr_Kind.AEXPR_OP_ANY,
        name=(ast.String(sval="="),),
        lexpr=ast.ColumnRef(fields=(ast.String(sval=alias), ast.String(sval="ctid"))),
        rexpr=ast.TypeCast(
            arg=ast.ParamRef(number=slot),
            typeName=ast.TypeName(names=(ast.String(sval="tid"),),
                                  arrayBounds=(ast.Integer(ival=-1),)),
        ),
    )


def _ident(name: str) -> str:
    return deparse(ast.ColumnRef(fields=(ast.String(sval=name),)))


def _q(alias: str, col: str) -> str:
    return f"{_ident(alias)}.{_ident(col)}"
