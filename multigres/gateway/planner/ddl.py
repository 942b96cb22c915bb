"""Where DDL goes on a sharded database (``plan_ddl``), by the objects it names.

The rules, in order:

1. Objects of the whole Postgres instance (roles, databases, tablespaces, ``ALTER SYSTEM``,
   subscriptions, publications, event triggers, ``LOAD``): 0A000. A sharded database is
   many instances; such a statement must be run on each instance by its operator.
2. Statements on tables (and the relations that live beside them: views, sequences,
   materialized views, foreign tables): CREATE/ALTER/DROP TABLE, TRUNCATE, CREATE INDEX ...
   ON t, COMMENT ON TABLE/COLUMN, GRANT/REVOKE ON TABLE, RENAME, SET SCHEMA, triggers,
   policies, rules, statistics, VACUUM/ANALYZE/CLUSTER/REINDEX TABLE/REFRESH of named
   relations, CREATE VIEW/CREATE TABLE AS (the new relation and every table its query
   reads), a FOREIGN KEY's referenced table. Each name is placed by the VSchema (a name it
   does not have is in the default, unsharded tablegroup; a sequence of the VSchema is in its
   sequence's tablegroup). They must all be in one tablegroup (else 0A000 naming them), and
   the statement goes to:
   - every shard of that tablegroup when one of them is sharded or a reference table (a
     reference table has a copy on every shard of its own tablegroup, and nowhere else);
   - the tablegroup's only shard otherwise (the client's bytes are forwarded unchanged).
   CREATE TABLE AS of a sharded table is 0A000 (its rows would have to be placed one by
   one), and so is a view or CREATE TABLE AS that reads sharded tables unless the new
   relation is itself declared a sharded table of the same tablegroup in the VSchema.
3. Statements on an index by its name alone (DROP INDEX, ALTER INDEX, COMMENT ON INDEX,
   REINDEX INDEX): the index is where its table is, which the name does not say: at
   execution, ``to_regclass`` on the first shard of each tablegroup finds the one that has
   it, and the statement goes to every shard of it (none: the default tablegroup, whose
   Postgres gives the error or IF EXISTS notice; several: 0A000).
4. Everything else (types, domains, functions, procedures, operators, casts, collations,
   extensions, schemas, text search objects, ``GRANT ... ON ALL TABLES IN SCHEMA``, VACUUM
   or ANALYZE of the whole database, ...): every shard of every tablegroup, so that every
   shard can use them (a sharded table's column of a user type needs the type on each shard).

Results: the first shard's (tag as Postgres gives it: ``CREATE TABLE``, ``ALTER TABLE``, ...;
its notices only, as one server would send them). ``DDL.transactional`` tells the session
whether the statement may run inside a transaction block across the shards (CREATE INDEX
CONCURRENTLY, VACUUM, REINDEX CONCURRENTLY, ... may not).
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast, enums

from multigres.gateway.engine.ddl import DDL, Target
from multigres.gateway.engine.route import Opcode, Route
from multigres.gateway.planner.nodes import Node, is_, unsupported, walk
from multigres.gateway.planner.plan import Plan
from multigres.gateway.planner.route import table_name
from multigres.gateway.planner.templates import Template
from multigres.vschema.model import Table, VSchema
from multigres.wire.errors import PgError

OT = enums.ObjectType

# Object types that are relations the VSchema places (rule 2).
_RELATION_TYPES = frozenset({
    OT.OBJECT_TABLE, OT.OBJECT_VIEW, OT.OBJECT_MATVIEW, OT.OBJECT_SEQUENCE,
    OT.OBJECT_FOREIGN_TABLE, OT.OBJECT_COLUMN, OT.OBJECT_TABCONSTRAINT, OT.OBJECT_TRIGGER,
    OT.OBJECT_POLICY, OT.OBJECT_RULE,
})
# Object types named with their table last but one (COMMENT ON COLUMN t.c, TRIGGER trg ON t).
_ON_TABLE_TYPES = frozenset({OT.OBJECT_COLUMN, OT.OBJECT_TABCONSTRAINT, OT.OBJECT_TRIGGER,
                             OT.OBJECT_POLICY, OT.OBJECT_RULE})

_INSTANCE_STMTS = (
    ast.CreateRoleStmt, ast.AlterRoleStmt, ast.AlterRoleSetStmt, ast.DropRoleStmt,
    ast.CreatedbStmt, ast.AlterDatabaseStmt, ast.AlterDatabaseSetStmt, ast.DropdbStmt,
    ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt, ast.AlterTableSpaceOptionsStmt,
    ast.AlterSystemStmt, ast.CreateSubscriptionStmt, ast.AlterSubscriptionStmt,
    ast.DropSubscriptionStmt, ast.CreatePublicationStmt, ast.AlterPublicationStmt,
    ast.CreateEventTrigStmt, ast.AlterEventTrigStmt, ast.LoadStmt, ast.GrantRoleStmt,
    ast.ReassignOwnedStmt, ast.DropOwnedStmt, ast.AlterDatabaseRefreshCollStmt,
)
_INSTANCE_OBJECTS = frozenset({
    OT.OBJECT_ROLE, OT.OBJECT_DATABASE, OT.OBJECT_TABLESPACE, OT.OBJECT_SUBSCRIPTION,
    OT.OBJECT_PUBLICATION, OT.OBJECT_EVENT_TRIGGER,
})


def plan_ddl(stmt: Node, vs: VSchema, sql: str, param_count: int = 0) -> Plan:
    verb = _verb(sql)
    if is_(stmt, _INSTANCE_STMTS) or _object_type(stmt) in _INSTANCE_OBJECTS:
        raise unsupported(
            f"{verb} (an object of the whole Postgres instance) through a sharded database: "
            "run it on each instance"
        )
    transactional = _transactional(stmt)
    index = _index_name(stmt)
    if index is not None:
        tgs = tuple(sorted(vs.tablegroups))
        default = vs.default_tablegroup.name if vs.default_tablegroup else tgs[0]
        root = DDL(Template(sql), Target.PROBE, tgs, index, default, transactional)
        return Plan(root, sql, param_count, param_count, kind="ddl")
    names = list(dict.fromkeys(_relations(stmt)))
    if not names:
        tgs = tuple(sorted(vs.tablegroups))
        root = DDL(Template(sql), Target.EVERYWHERE, tgs, transactional=transactional)
        return Plan(root, sql, param_count, param_count, kind="ddl")
    tables = [(n, _place(vs, n)) for n in names]
    groups = {t.tablegroup.name for _, t in tables}
    if len(groups) > 1:
        shown = ", ".join(f"{n} ({t.tablegroup.name})" for n, t in tables)
        raise unsupported(f"{verb} naming tables in different tablegroups: {shown}")
    (tg,) = groups
    _check_derived(stmt, vs, tables, verb)
    if any(t.kind != "unsharded" for _, t in tables):
        root = DDL(Template(sql), Target.ALL_SHARDS, (tg,), transactional=transactional)
        return Plan(root, sql, param_count, param_count, kind="ddl")
    route = Route(Opcode.UNSHARDED, tg, Template(sql))
    return Plan(route, sql, param_count, param_count, passthrough=tg, kind="ddl")


def _verb(sql: str) -> str:
    words = sql.split()
    return " ".join(words[:2]).upper() if words else "DDL"


def _object_type(stmt: Node) -> object:
    for attr in ("removeType", "objtype", "objectType", "renameType"):
        v = getattr(stmt, attr, None)
        if v is not None:
            return v
    return None


def _place(vs: VSchema, name: str) -> Table:
    t = vs.table(name)
    seq = vs.sequences.get(name.removeprefix("public.")) or vs.sequences.get(name)
    if seq is not None and (t is None or not t.declared):
        return Table(name, vs.tablegroups[seq.tablegroup], declared=False)
    if t is None:
        raise PgError(
            f'relation "{name}" is not in the VSchema and the database has no unsharded '
            "tablegroup for it",
            "42P01",
        )
    return t


def _transactional(stmt: Node) -> bool:
    if is_(stmt, ast.IndexStmt) and stmt.concurrent:
        return False
    if is_(stmt, ast.DropStmt) and stmt.concurrent:
        return False
    if is_(stmt, ast.ReindexStmt):
        return not any(getattr(p, "defname", "") == "concurrently" for p in stmt.params or ())
    if is_(stmt, ast.VacuumStmt):
        return not stmt.is_vacuumcmd
    if is_(stmt, ast.RefreshMatViewStmt) and stmt.concurrent:
        return True
    if is_(stmt, ast.AlterTableStmt):
        return not any(
            is_(c, ast.AlterTableCmd) and c.subtype == enums.AlterTableType.AT_DetachPartition
            and getattr(c.def_, "concurrent", False)
            for c in stmt.cmds or ()
        )
    return True


def _index_name(stmt: Node) -> str | None:
    """The index a statement names by its name alone (rule 3), or None."""
    def qual(parts: tuple[Node, ...]) -> str:
        return ".".join(p.sval for p in parts)

    if is_(stmt, ast.DropStmt) and stmt.removeType == OT.OBJECT_INDEX:
        names = [qual(o) for o in stmt.objects]
        return ",".join(names)
    if is_(stmt, (ast.CommentStmt, ast.SecLabelStmt)) and stmt.objtype == OT.OBJECT_INDEX:
        return qual(stmt.object)
    if is_(stmt, ast.AlterTableStmt) and stmt.objtype == OT.OBJECT_INDEX:
        return table_name(stmt.relation)
    if is_(stmt, ast.RenameStmt) and stmt.renameType == OT.OBJECT_INDEX:
        return table_name(stmt.relation)
    if is_(stmt, ast.AlterObjectSchemaStmt) and stmt.objectType == OT.OBJECT_INDEX:
        return table_name(stmt.relation)
    if is_(stmt, ast.ReindexStmt) and stmt.kind == enums.ReindexObjectType.REINDEX_OBJECT_INDEX:
        return table_name(stmt.relation)
    return None


def _relations(stmt: Node) -> Iterator[str]:
    """The relation names a table statement names (rule 2); nothing for rule 4."""
    if is_(stmt, ast.DropStmt):
        if stmt.removeType in _RELATION_TYPES:
            for obj in stmt.objects:
                parts = [p.sval for p in obj]
                yield ".".join(parts[:-1] if stmt.removeType in _ON_TABLE_TYPES else parts)
        return
    if is_(stmt, (ast.CommentStmt, ast.SecLabelStmt)):
        if stmt.objtype in _RELATION_TYPES:
            parts = [p.sval for p in stmt.object]
            yield ".".join(parts[:-1] if stmt.objtype in _ON_TABLE_TYPES else parts)
        return
    if is_(stmt, ast.GrantStmt):
        if stmt.targtype == enums.GrantTargetType.ACL_TARGET_OBJECT and stmt.objtype in (
            OT.OBJECT_TABLE, OT.OBJECT_SEQUENCE,
        ):
            for rv in stmt.objects:
                yield table_name(rv)
        return
    if is_(stmt, (ast.CompositeTypeStmt, ast.CreateEnumStmt, ast.CreateRangeStmt,
                  ast.DefineStmt, ast.CreateFunctionStmt, ast.CreateSchemaStmt,
                  ast.CreateExtensionStmt, ast.CreateDomainStmt)):
        return
    if is_(stmt, (ast.RenameStmt, ast.AlterObjectSchemaStmt, ast.AlterOwnerStmt)):
        if getattr(stmt, "relation", None) is None:
            return
    if is_(stmt, ast.VacuumStmt) and not stmt.rels:
        return
    if is_(stmt, ast.ReindexStmt) and stmt.relation is None:
        return
    ctes = {n.ctename for n in walk(stmt, into_subqueries=True) if is_(n, ast.CommonTableExpr)}
    for n in walk(stmt, into_subqueries=True):
        if is_(n, ast.RangeVar):
            name = table_name(n)
            if n.schemaname is None and name in ctes:
                continue
            yield name


def _check_derived(
    stmt: Node, vs: VSchema, tables: list[tuple[str, Table]], verb: str
) -> None:
    """A view or CREATE TABLE AS reads tables: the new relation must be able to hold on each
    shard what that shard's copy of the query gives."""
    if is_(stmt, ast.CreateTableAsStmt):
        new = table_name(stmt.into.rel)
    elif is_(stmt, ast.ViewStmt):
        new = table_name(stmt.view)
    else:
        return
    target = _place(vs, new)
    read = [(n, t) for n, t in tables if n != new]
    if is_(stmt, ast.CreateTableAsStmt) and target.kind == "sharded":
        raise unsupported(
            f"{verb} AS of the sharded table {new}: its rows would have to be placed by their "
            "sharding key (create it, then INSERT ... VALUES)"
        )
    sharded = [n for n, t in read if t.kind == "sharded"]
    if sharded and target.kind != "sharded":
        raise unsupported(
            f"{verb} {new} over the sharded table(s) {', '.join(sharded)}: {new} is "
            f"{target.kind} in the VSchema, so it would hold only one shard's rows"
        )
