"""Plans for statements, cached by their normalized text.

The per-statement path never parses: the Cython normalizer turns a statement's literals into
parameters, and the normalized text (with the database) keys a bounded plan cache. Only a
miss parses, with pglast (Postgres's own parser), to build the plan: what the statement is
(read, write, transaction control, session state, DDL) and which relations it names. For an
unsharded database every plan routes to the database's one shard; sharding (issue 5) adds the
routes that the tables' vindexes give. A statement pglast cannot parse is planned as passing
through, so that Postgres answers it with its own error, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from multigres.sql.normalize import Normalized, StatementKind, normalize
from multigres.sql.plancache import PlanCache

UNSHARDED = "unsharded"


@dataclass(frozen=True, slots=True)
class Plan:
    kind: StatementKind
    route: str
    tables: tuple[str, ...]  # the relations named, as written ("schema.name" or "name")
    statements: int = 1
    error: str = ""  # pglast's complaint, when it could not parse (Postgres will answer)


class _Relations(Visitor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_RangeVar(self, ancestors: Any, node: Any) -> None:
        name = node.relname if node.schemaname is None else f"{node.schemaname}.{node.relname}"
        if name not in self.names:
            self.names.append(name)


class Planner:
    def __init__(self, max_entries: int = 5000) -> None:
        self.cache: PlanCache[Plan] = PlanCache(max_entries)

    def plan(self, sql: bytes, database: str) -> Plan | None:
        """The plan of one statement string; None when it does not even lex (an unterminated
        quote or comment: Postgres reports it)."""
        try:
            norm = normalize(sql)
        except ValueError:
            return None
        plan = self.cache.get(norm.text, database)
        if plan is None:
            plan = build(norm)
            self.cache.put(norm.text, plan, database, cost=len(norm.text))
        return plan


def build(norm: Normalized) -> Plan:
    """A cache miss: parse the normalized text and make the plan."""
    kind = StatementKind(norm.kind)
    try:
        tree = parse_sql(norm.text.decode("utf-8", "surrogateescape"))
    except (ParseError, UnicodeError) as e:
        return Plan(kind, UNSHARDED, (), norm.statements, error=str(e))
    rel = _Relations()
    rel(tree)
    return Plan(kind, UNSHARDED, tuple(rel.names), norm.statements)
