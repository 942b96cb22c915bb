"""The SELECT planner: a statement's AST in, a tree of engine primitives out.

One SELECT block at a time (``plan_block``):

1. CTEs become derived tables; uncorrelated subqueries over tables that are not on every
   shard of the block's route are pulled out (run first, result bound in); correlated ones
   stay only when they stay on the outer row's shard (0A000 otherwise).
2. The FROM clause's tables are put in groups that can run together on one shard: sharded
   tables joined by equality on the same primary vindex, plus reference tables of their
   tablegroup; each unsharded tablegroup is one group.
3. One group: the WHERE clause picks its route (``planner.route``). A route on one shard
   takes the whole block. Across shards, the gateway adds what one Postgres would have done
   over all rows: merge-sort, LIMIT/OFFSET, DISTINCT, aggregation of partials, and whatever
   remains after aggregation (HAVING, expressions, ORDER BY) evaluated by Postgres over the
   aggregated rows (``engine.evaluate``).
4. Several groups: a nested-loop join (``planner.joins``).

UNION [ALL] runs its branches as blocks and concatenates (or lets Postgres unify and dedupe).
Anything else raises PgError 0A000 naming the construct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pglast import ast, enums

from multigres._cy.pgvalue import AggKind
from multigres.gateway.engine.aggregate import AggDef, Aggregate
from multigres.gateway.engine.concatenate import Concatenate
from multigres.gateway.engine.distinct import Distinct
from multigres.gateway.engine.evaluate import EvalInput, Evaluate
from multigres.gateway.engine.limit import Limit
from multigres.gateway.engine.merge_sort import MergeSort, OrderKey
from multigres.gateway.engine.primitive import Primitive
from multigres.gateway.engine.project import Project
from multigres.gateway.engine.route import LimitSlot, Opcode, Route, Value
from multigres.gateway.engine.source import Source
from multigres.gateway.engine.subquery import Pullout
from multigres.gateway.planner import aggregates as aggs
from multigres.gateway.planner.nodes import (
    Node,
    column_name,
    conjuncts,
    figure_colname,
    func_name,
    is_,
    unsupported,
    walk,
)
from multigres.gateway.planner.options import PlannerOptions
from multigres.gateway.planner.rewrite import (
    clone,
    col,
    deparse_with_slots,
    inline_ctes,
    int_const,
    replace,
    slot_relation,
)
from multigres.gateway.planner.route import (
    Columns,
    RouteChoice,
    TableRef,
    choose_route,
    resolve_table,
    rewrite_in,
    value_of,
)
from multigres.gateway.planner.templates import Template, deparse
from multigres.vschema.model import Table, VSchema

BYTEWISE = frozenset({"C", "POSIX", "ucs_basic"})

# make_source(shard statement, the shard LIMIT slot) -> the Source that runs it
MakeSource = Callable[[Node, LimitSlot | None], Source]


@dataclass
class Planned:
    prim: Primitive
    # Set when the block is a plain route: its SQL run per shard, rows concatenated, is the
    # answer (so an outer query can embed it as a derived table).
    choice: RouteChoice | None = None


@dataclass
class Group:
    kind: str  # sharded | reference | unsharded
    tablegroup: str
    tables: list[TableRef] = field(default_factory=list)


@dataclass
class Scope:
    """The FROM clause of one block."""

    tables: list[TableRef] = field(default_factory=list)
    derived: list[Node] = field(default_factory=list)
    functions: list[Node] = field(default_factory=list)
    terms: list[Node] = field(default_factory=list)  # WHERE + inner-join conditions
    coloc: list[Node] = field(default_factory=list)  # + outer-join conditions, USING
    outer_joins: bool = False

    @property
    def columns(self) -> Columns:
        return Columns(self.tables)


def is_star(target: Node) -> bool:
    v = target.val
    return is_(v, ast.ColumnRef) and is_(v.fields[-1], ast.A_Star)


def output_name(target: Node) -> str:
    return str(target.name) if target.name else figure_colname(target.val)


def same_vindex(a: Table, b: Table) -> bool:
    pa, pb = a.primary_vindex, b.primary_vindex
    if pa is None or pb is None or len(pa.columns) != 1 or len(pb.columns) != 1:
        return False
    if a.tablegroup.name != b.tablegroup.name:
        return False
    return pa.name == pb.name or (
        type(pa.vindex) is type(pb.vindex) and pa.vindex.params == pb.vindex.params
    )


def is_primary_column(t: Table, column: str) -> bool:
    pv = t.primary_vindex
    return t.sharded and pv is not None and pv.columns == (column,)


class SelectPlanner:
    def __init__(
        self, vs: VSchema, param_count: int, options: PlannerOptions, home: str
    ) -> None:
        self.vs = vs
        self.options = options
        self.next_slot = param_count + 1
        self.home = home  # the tablegroup where gateway-held rows are evaluated

    def slot(self) -> int:
        n = self.next_slot
        self.next_slot += 1
        return n

    # -- blocks ------------------------------------------------------------------------------

    def plan_block(self, stmt: Node) -> Planned:
        if stmt.op != enums.SetOperation.SETOP_NONE:
            return self.plan_setop(stmt)
        if stmt.valuesLists:
            return Planned(self.home_route(stmt))
        inline_ctes(stmt)
        if stmt.intoClause is not None:
            raise unsupported("SELECT INTO")
        scope = self.scope(stmt)
        pulled = self.pull_out(stmt, scope)
        planned = self.plan_from(stmt, scope)
        if pulled:
            prim = planned.prim
            for kind, sub, slot in reversed(pulled):
                prim = Pullout(kind, sub, slot, prim)
            return Planned(prim)
        return planned

    def home_route(self, stmt: Node) -> Route:
        """A statement over no table (or reference data only): any one shard of home."""
        tg = self.vs.tablegroups.get(self.home)
        op = Opcode.REFERENCE if tg is not None and tg.sharded else Opcode.UNSHARDED
        return Route(op, self.home, Template(deparse_with_slots(stmt)))

    def route_of(
        self, choice: RouteChoice, stmt: Node, limit: LimitSlot | None = None
    ) -> Route:
        return Route(
            choice.opcode,
            choice.tablegroup,
            Template(deparse_with_slots(stmt)),
            vindex=choice.vindex.vindex if choice.vindex is not None else None,
            values=choice.values,
            in_slot=choice.in_slot,
            array=choice.array,
            limit=limit,
        )

    # -- FROM --------------------------------------------------------------------------------

    def scope(self, stmt: Node) -> Scope:
        sc = Scope()
        for item in stmt.fromClause or ():
            self._add_from(sc, item)
        where = conjuncts(stmt.whereClause)
        sc.terms.extend(where)
        sc.coloc.extend(where)
        return sc

    def _add_from(self, sc: Scope, item: Node) -> None:
        if is_(item, ast.RangeVar):
            t = resolve_table(self.vs, item)
            alias = item.alias.aliasname if item.alias is not None else item.relname
            sc.tables.append(TableRef(t, alias, item))
        elif is_(item, ast.JoinExpr):
            self._add_from(sc, item.larg)
            self._add_from(sc, item.rarg)
            quals = conjuncts(item.quals)
            using = self._using_terms(item)
            if item.jointype == enums.JoinType.JOIN_INNER:
                sc.terms.extend(quals)
                sc.terms.extend(using)
            else:
                sc.outer_joins = True
            sc.coloc.extend(quals)
            sc.coloc.extend(using)
        elif is_(item, ast.RangeSubselect):
            if item.lateral:
                raise unsupported("LATERAL subqueries across shards")
            sc.derived.append(item)
        elif is_(item, ast.RangeFunction):
            if item.lateral:
                raise unsupported("LATERAL functions across shards")
            sc.functions.append(item)
        else:
            raise unsupported(f"{type(item).__name__} in FROM")

    @staticmethod
    def _using_terms(j: Node) -> list[Node]:
        """``a JOIN b USING (x)`` between two tables: the equality ``a.x = b.x``."""
        if not j.usingClause or not is_(j.larg, ast.RangeVar) or not is_(j.rarg, ast.RangeVar):
            return []
        la = j.larg.alias.aliasname if j.larg.alias else j.larg.relname
        ra = j.rarg.alias.aliasname if j.rarg.alias else j.rarg.relname
        return [
            ast.A_Expr(
                kind=enums.A_Expr_Kind.AEXPR_OP, name=(ast.String(sval="="),),
                lexpr=col(la, u.sval), rexpr=col(ra, u.sval),
            )
            for u in j.usingClause
        ]

    def groups(self, scope: Scope) -> list[Group]:
        """The tables of a FROM clause in groups that run together on one shard."""
        cols = scope.columns
        sharded = [t for t in scope.tables if t.table.sharded]
        parent = {id(t): id(t) for t in sharded}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for term in scope.coloc:
            if not (is_(term, ast.A_Expr) and term.kind == enums.A_Expr_Kind.AEXPR_OP):
                continue
            if not term.name or term.name[-1].sval != "=":
                continue
            a, b = cols.owner(term.lexpr), cols.owner(term.rexpr)
            if a is None or b is None or a[0] is b[0]:
                continue
            (ta, ca), (tb, cb) = a, b
            if (
                id(ta) in parent and id(tb) in parent
                and is_primary_column(ta.table, ca) and is_primary_column(tb.table, cb)
                and same_vindex(ta.table, tb.table)
            ):
                parent[find(id(ta))] = find(id(tb))
        out: list[Group] = []
        by_root: dict[int, Group] = {}
        for t in sharded:
            r = find(id(t))
            if r not in by_root:
                by_root[r] = Group("sharded", t.tablegroup)
                out.append(by_root[r])
            by_root[r].tables.append(t)
        for t in scope.tables:
            if t.table.sharded:
                continue
            kind = t.table.kind
            home = next((g for g in out if g.tablegroup == t.tablegroup and (
                g.kind == "sharded" if kind == "reference" else g.kind == kind)), None)
            if home is None:
                home = next((g for g in out if g.tablegroup == t.tablegroup and g.kind == kind),
                            None)
            if home is None:
                home = Group(kind, t.tablegroup)
                out.append(home)
            home.tables.append(t)
        # Keep FROM order among tables inside each group.
        order = {id(t): i for i, t in enumerate(scope.tables)}
        for g in out:
            g.tables.sort(key=lambda t: order[id(t)])
        out.sort(key=lambda g: order[id(g.tables[0])])
        return out

    def plan_from(self, stmt: Node, scope: Scope) -> Planned:
        if scope.derived:
            if len(scope.derived) == 1 and not scope.tables and not scope.functions:
                return self.plan_over_derived(stmt, scope.derived[0])
            raise unsupported("a derived table or CTE joined with other tables across shards")
        groups = self.groups(scope)
        if not groups:
            return Planned(self.home_route(stmt))
        if len(groups) > 1:
            from multigres.gateway.planner.joins import plan_join

            return plan_join(self, stmt, scope, groups)
        g = groups[0]
        cols = scope.columns
        choice = choose_route(g.tables, scope.terms, cols)
        if choice.single_shard or g.kind != "sharded":
            return Planned(self.route_of(choice, stmt), choice)
        if choice.opcode is Opcode.IN:
            rewrite_in(choice, self.slot())

        def sharding(n: Node) -> bool:
            o = cols.owner(n)
            return o is not None and is_primary_column(o[0].table, o[1])

        def make(shard_stmt: Node, limit: LimitSlot | None) -> Source:
            return self.route_of(choice, shard_stmt, limit)

        return self.plan_multi(stmt, sharding, make, g.tablegroup, choice)

    def plan_over_derived(self, stmt: Node, rs: Node) -> Planned:
        sub = self.plan_block(rs.subquery)
        if sub.choice is not None:
            choice = sub.choice
            if choice.single_shard or choice.opcode in (Opcode.UNSHARDED, Opcode.REFERENCE):
                return Planned(self.route_of(choice, stmt), choice)

            # The derived table is the same on each shard's part: the outer block runs over
            # each shard's rows as over a table's.
            def make(shard_stmt: Node, limit: LimitSlot | None) -> Source:
                return self.route_of(choice, shard_stmt, limit)

            return self.plan_multi(stmt, lambda n: False, make, choice.tablegroup, choice)
        # The derived table needed the gateway: Postgres evaluates the outer block over its rows.
        slot = self.slot()
        outer = clone(stmt)
        outer.fromClause = (slot_relation(slot),)
        alias = rs.alias.aliasname if rs.alias is not None else "unnamed_subquery"
        names = tuple(c.sval for c in rs.alias.colnames) if rs.alias and rs.alias.colnames else None
        ev = Evaluate(
            (EvalInput(sub.prim, slot, alias, names),),
            Template(deparse_with_slots(outer)),
            self.home,
        )
        return Planned(ev)

    # -- subqueries in expressions -------------------------------------------------------------

    def pull_out(self, stmt: Node, scope: Scope) -> list[tuple[str, Primitive, int]]:
        from multigres.gateway.planner.subqueries import pull_out

        return pull_out(self, stmt, scope)

    # -- across shards: merge, limit, distinct, aggregate --------------------------------------

    def plan_multi(
        self,
        stmt: Node,
        sharding: Callable[[Node], bool],
        make: MakeSource,
        tablegroup: str,
        choice: RouteChoice | None = None,
    ) -> Planned:
        if aggs.has_window(stmt.targetList) or aggs.has_window(stmt.sortClause):
            raise unsupported("window functions across shards")
        if stmt.lockingClause:
            raise unsupported("SELECT ... FOR UPDATE/SHARE across shards")
        found = (
            aggs.aggregates_in(stmt.targetList)
            + aggs.aggregates_in(stmt.havingClause)
            + aggs.aggregates_in(stmt.sortClause)
        )
        grouped = bool(stmt.groupClause) or bool(found) or stmt.havingClause is not None
        if grouped:
            group_exprs = self.group_exprs(stmt)
            if not any(sharding(e) for e in group_exprs):
                return self.plan_aggregate(stmt, group_exprs, found, sharding, make, tablegroup)
        elif stmt.distinctClause and stmt.distinctClause != (None,):
            raise unsupported("DISTINCT ON across shards")
        return self.plan_plain(stmt, make, choice)

    def limit_values(self, stmt: Node) -> tuple[Value | None, Value | None]:
        if stmt.limitOption == enums.LimitOption.LIMIT_OPTION_WITH_TIES:
            raise unsupported("FETCH FIRST ... WITH TIES across shards")
        count = offset = None
        if stmt.limitCount is not None:
            count = value_of(stmt.limitCount)
            if count is None:
                raise unsupported("a LIMIT that is not a constant across shards")
        if stmt.limitOffset is not None:
            offset = value_of(stmt.limitOffset)
            if offset is None:
                raise unsupported("an OFFSET that is not a constant across shards")
        return count, offset

    def bytewise(self, node: Node) -> bool:
        if self.options.collation in BYTEWISE:
            return True
        return is_(node, ast.CollateClause) and node.collname[-1].sval in BYTEWISE

    def match_target(self, node: Node, targets: tuple[Node, ...]) -> int | None:
        """The select-list column an ORDER BY item names (None: it needs its own column)."""
        if is_(node, ast.A_Const) and is_(node.val, ast.Integer):
            return int(node.val.ival) - 1  # a position counts the expanded list: the same
        star_at = next((i for i, t in enumerate(targets) if is_star(t)), len(targets))
        cn = column_name(node)
        if cn is not None and cn[0] is None:
            hits = [i for i, t in enumerate(targets) if not is_star(t) and output_name(t) == cn[1]]
            if hits:
                if hits[0] >= star_at:
                    raise unsupported("ORDER BY an output name after SELECT * across shards")
                return hits[0]
        text = deparse(node)
        for i, t in enumerate(targets[:star_at]):
            if deparse(t.val) == text:
                return i
        return None

    def plan_plain(self, stmt: Node, make: MakeSource, choice: RouteChoice | None) -> Planned:
        shard = clone(stmt)
        targets = tuple(stmt.targetList or ())
        keys: list[tuple[int | None, bool, bool | None, bool]] = []
        hidden: list[Node] = []
        for sb in stmt.sortClause or ():
            if sb.sortby_dir == enums.SortByDir.SORTBY_USING:
                raise unsupported("ORDER BY ... USING across shards")
            desc = sb.sortby_dir == enums.SortByDir.SORTBY_DESC
            nulls = None
            if sb.sortby_nulls != enums.SortByNulls.SORTBY_NULLS_DEFAULT:
                nulls = sb.sortby_nulls == enums.SortByNulls.SORTBY_NULLS_FIRST
            idx = self.match_target(sb.node, targets)
            if idx is None:
                hidden.append(ast.ResTarget(val=clone(sb.node)))
            keys.append((idx, desc, nulls, self.bytewise(sb.node)))
        distinct = bool(stmt.distinctClause)
        if distinct and hidden:
            raise unsupported("ORDER BY an expression outside a DISTINCT select list")
        order: list[OrderKey] = []
        h = 0
        for idx, desc, nulls, bw in keys:
            if idx is None:
                idx = -(len(hidden) - h)
                h += 1
            order.append(OrderKey(idx, desc, nulls, bw))
        if hidden:
            shard.targetList = tuple(shard.targetList) + tuple(hidden)
        count, offset = self.limit_values(stmt)
        limit: LimitSlot | None = None
        shard.limitOffset = None
        if count is not None:
            s = self.slot()
            shard.limitCount = ast.ParamRef(number=s)
            limit = LimitSlot(s, count, offset)
        prim: Primitive = make(shard, limit)
        if order:
            # Without DISTINCT, the merge can stop after limit + offset rows.
            prim = MergeSort(prim, tuple(order), None if distinct else limit)  # type: ignore[arg-type]
        if distinct:
            prim = Distinct(prim)
        if count is not None or offset is not None:
            prim = Limit(prim, count, offset)
        if hidden:
            prim = Project(prim, drop_last=len(hidden))
        pure = not (order or distinct or count or offset or hidden)
        return Planned(prim, choice if pure else None)

    def group_exprs(self, stmt: Node) -> list[Node]:
        targets = tuple(stmt.targetList or ())
        out: list[Node] = []
        seen: set[str] = set()
        for g in stmt.groupClause or ():
            if is_(g, ast.GroupingSet):
                raise unsupported("GROUPING SETS, ROLLUP or CUBE across shards")
            expr = g
            if is_(g, ast.A_Const) and is_(g.val, ast.Integer):
                k = int(g.val.ival)
                if not 1 <= k <= len(targets) or any(is_star(t) for t in targets[:k]):
                    raise unsupported("GROUP BY a position after SELECT * across shards")
                expr = targets[k - 1].val
            else:
                cn = column_name(g)
                if cn is not None and cn[0] is None:
                    for t in targets:
                        if t.name == cn[1] and column_name(t.val) != (None, cn[1]):
                            raise unsupported("GROUP BY an output column name across shards")
            text = deparse(expr)
            if text not in seen:
                seen.add(text)
                out.append(expr)
        return out

    def plan_aggregate(
        self,
        stmt: Node,
        group_exprs: list[Node],
        found: list[Node],
        sharding: Callable[[Node], bool],
        make: MakeSource,
        tablegroup: str,
    ) -> Planned:
        calls: list[Node] = []
        index: dict[str, int] = {}
        for fc in found:
            text = deparse(fc)
            if text in index:
                continue
            name = func_name(fc)
            if name not in aggs.MERGEABLE:
                raise unsupported(f"aggregate {name}() across shards")
            if fc.agg_order:
                raise unsupported(f"{name}(... ORDER BY ...) across shards")
            if fc.agg_within_group:
                raise unsupported(f"{name}() WITHIN GROUP across shards")
            index[text] = len(calls)
            calls.append(fc)
        distinct = [fc for fc in calls if fc.agg_distinct]
        raw = bool(distinct) and not all(
            fc.args and len(fc.args) == 1 and sharding(fc.args[0]) for fc in distinct
        )
        if raw:
            args = {deparse(fc.args[0]) for fc in calls if fc.args}
            ok = len(args) == 1 and all(
                fc.args and len(fc.args) == 1 and not fc.agg_star and fc.agg_filter is None
                and aggs.MERGEABLE[func_name(fc)] in _RAW_KINDS
                and (fc.agg_distinct or aggs.MERGEABLE[func_name(fc)] in _ORDER_KINDS)
                for fc in calls
            )
            if not ok:
                raise unsupported(
                    "DISTINCT aggregates mixed with other aggregates (or over several "
                    "expressions) across shards"
                )
        ng = len(group_exprs)
        targets: list[Node] = [ast.ResTarget(val=clone(g)) for g in group_exprs]
        defs: list[AggDef] = []
        if raw:
            targets.append(ast.ResTarget(val=clone(calls[0].args[0])))
            for j, fc in enumerate(calls):
                defs.append(AggDef(aggs.MERGEABLE[func_name(fc)], ng, f"_mg_a{j + 1}"))
            group_by = ng + 1
        else:
            column = ng
            for j, fc in enumerate(calls):
                kind = aggs.MERGEABLE[func_name(fc)]
                parts = _partials(fc, kind)
                delim = None
                if kind == AggKind.STRING_AGG:
                    if not fc.args or len(fc.args) != 2:
                        raise unsupported("string_agg without a delimiter")
                    delim = value_of(fc.args[1])
                    if delim is None:
                        raise unsupported("string_agg with a delimiter that is not a constant")
                defs.append(AggDef(kind, column, f"_mg_a{j + 1}", delim))
                column += len(parts)
                targets.extend(ast.ResTarget(val=p) for p in parts)
            group_by = ng
        shard = clone(stmt)
        shard.targetList = tuple(targets)
        shard.groupClause = tuple(int_const(i + 1) for i in range(group_by)) or None
        shard.havingClause = None
        shard.sortClause = None
        shard.limitCount = None
        shard.limitOffset = None
        shard.distinctClause = None
        shard.limitOption = enums.LimitOption.LIMIT_OPTION_DEFAULT
        agg = Aggregate(
            make(shard, None), ng, tuple(defs),
            group_names=tuple(f"_mg_g{i + 1}" for i in range(ng)), raw=raw,
        )
        # What the client sees.
        gsql = [deparse(g) for g in group_exprs]
        cols: list[int] = []
        names: list[str] = []
        evaluate = bool(
            stmt.havingClause is not None or stmt.sortClause or stmt.distinctClause
            or stmt.limitCount is not None or stmt.limitOffset is not None
        )
        for t in stmt.targetList or ():
            if is_star(t):
                raise unsupported("SELECT * with aggregates across shards")
            names.append(output_name(t))
            text = deparse(t.val)
            if text in gsql:
                cols.append(gsql.index(text))
            elif aggs.is_aggregate(t.val) and text in index:
                cols.append(ng + index[text])
            else:
                evaluate = True
        if not evaluate:
            return Planned(Project(agg, tuple(cols), tuple(names)))
        return Planned(self._evaluate_after(stmt, agg, gsql, index, names, tablegroup))

    def _evaluate_after(
        self,
        stmt: Node,
        agg: Primitive,
        gsql: list[str],
        index: dict[str, int],
        names: list[str],
        tablegroup: str,
    ) -> Primitive:
        """What follows the aggregation, evaluated by Postgres over the aggregated rows."""

        def rw(n: Node) -> Node | None:
            if not is_(n, ast.Node) or is_(n, (ast.ResTarget, ast.SortBy)):
                return None
            if aggs.is_aggregate(n):
                return col("_mg_v", f"_mg_a{index[deparse(n)] + 1}")
            try:
                text = deparse(n)
            except Exception:
                return None
            if text in gsql:
                return col("_mg_v", f"_mg_g{gsql.index(text) + 1}")
            return None

        ev = clone(stmt)
        ev.targetList = tuple(
            ast.ResTarget(name=name, val=replace(clone(t.val), rw, into_subqueries=False))
            for name, t in zip(names, stmt.targetList, strict=True)
        )
        ev.whereClause = (
            replace(clone(stmt.havingClause), rw, into_subqueries=False)
            if stmt.havingClause is not None else None
        )
        ev.havingClause = None
        ev.groupClause = None
        out_names = set(names)
        sort = []
        for sb in stmt.sortClause or ():
            sb2 = clone(sb)
            cn = column_name(sb.node)
            is_pos = is_(sb.node, ast.A_Const)
            if not (is_pos or (cn is not None and cn[0] is None and cn[1] in out_names)):
                sb2.node = replace(sb2.node, rw, into_subqueries=False)
            sort.append(sb2)
        ev.sortClause = tuple(sort) or None
        slot = self.slot()
        ev.fromClause = (slot_relation(slot),)
        for part, allow_names in (
            (ev.targetList, False), (ev.whereClause, False), (ev.sortClause, True)
        ):
            for n in walk(part):
                cn = column_name(n)
                if cn is None or cn[0] == "_mg_v":
                    continue
                if allow_names and cn[0] is None and cn[1] in out_names:
                    continue
                raise unsupported(
                    f"column {deparse(n)} outside GROUP BY and aggregates across shards"
                )
        return Evaluate((EvalInput(agg, slot, "_mg_v"),), Template(deparse_with_slots(ev)),
                        tablegroup)

    # -- UNION ---------------------------------------------------------------------------------

    def plan_setop(self, stmt: Node) -> Planned:
        leaves: list[Node] = []
        all_all = True

        def collect(s: Node, top: bool) -> None:
            nonlocal all_all
            if s.op == enums.SetOperation.SETOP_NONE:
                leaves.append(s)
                return
            if s.op != enums.SetOperation.SETOP_UNION:
                raise unsupported("INTERSECT or EXCEPT across shards")
            if not top and (s.sortClause or s.limitCount is not None or s.limitOffset is not None):
                raise unsupported("ORDER BY or LIMIT inside a UNION branch across shards")
            if s.withClause is not None:
                raise unsupported("WITH on a UNION across shards")
            all_all = all_all and bool(s.all)
            collect(s.larg, False)
            collect(s.rarg, False)

        collect(stmt, True)
        planned = [self.plan_block(leaf).prim for leaf in leaves]
        bare = not stmt.sortClause and stmt.limitCount is None and stmt.limitOffset is None
        if all_all and bare:
            return Planned(Concatenate(tuple(planned)))
        ev = clone(stmt)
        slots = [self.slot() for _ in leaves]
        it = iter(slots)

        def swap(s: Node) -> Node:
            if s.op == enums.SetOperation.SETOP_NONE:
                return ast.SelectStmt(
                    targetList=(ast.ResTarget(val=ast.ColumnRef(fields=(ast.A_Star(),))),),
                    fromClause=(slot_relation(next(it)),),
                    limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT,
                    op=enums.SetOperation.SETOP_NONE,
                )
            s.larg = swap(s.larg)
            s.rarg = swap(s.rarg)
            return s

        ev = swap(ev)
        inputs = tuple(
            EvalInput(p, s, f"_mg_u{i + 1}") for i, (p, s) in enumerate(zip(planned, slots,
                                                                              strict=True))
        )
        return Planned(Evaluate(inputs, Template(deparse_with_slots(ev)), self.home))


_RAW_KINDS = frozenset({
    AggKind.COUNT, AggKind.SUM, AggKind.AVG, AggKind.MIN, AggKind.MAX
})
_ORDER_KINDS = frozenset({AggKind.MIN, AggKind.MAX})


def _partials(fc: Node, kind: AggKind) -> list[Node]:
    """The calls a shard computes for one aggregate (avg: sum and count)."""
    if kind == AggKind.AVG:
        s, c = clone(fc), clone(fc)
        s.funcname = (ast.String(sval="sum"),)
        c.funcname = (ast.String(sval="count"),)
        return [s, c]
    p = clone(fc)
    if func_name(fc) == "every":
        p.funcname = (ast.String(sval="bool_and"),)
    return [p]
