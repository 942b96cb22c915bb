"""DDL on the shards that hold what it changes (the placement rules: ``planner/ddl.py``).

The statement's text goes unchanged to every shard of each target tablegroup, concurrently
(``VCursor.execute``); the answer is the first shard's (its tag, as Postgres gives it, and
its notices: one server's worth). A failure on any shard is the statement's error; inside
the session's transaction (which the session opens for a transactional DDL) nothing of it
stays. ``PROBE`` finds the tablegroup of an index named alone (``to_regclass`` on each
tablegroup's first shard) at execution, since no VSchema names indexes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from multigres._cy.pgvalue import RowView
from multigres.gateway.engine.primitive import Bind
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.sequence import quote_literal
from multigres.gateway.engine.vcursor import ShardQuery, VCursor
from multigres.gateway.planner.templates import Template
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError


class Target(enum.Enum):
    ALL_SHARDS = "all shards"  # every shard of the tablegroups (one: the table's)
    EVERYWHERE = "every tablegroup"  # every shard of every tablegroup
    PROBE = "where the index is"  # the tablegroup that has the object, found per execution


@dataclass(eq=False)
class DDL:
    sql: Template
    target: Target
    tablegroups: tuple[str, ...]
    probe: str = ""  # PROBE: the object name(s), comma-separated
    default: str = ""  # PROBE: where it goes when no tablegroup has it
    transactional: bool = True

    async def execute(self, vc: VCursor, bind: Bind) -> Result:
        tgs = self.tablegroups
        if self.target is Target.PROBE:
            tgs = await self._probe(vc)
        text = self.sql.render(bind)
        queries = [
            ShardQuery(tg, shard, text) for tg in tgs for shard in vc.shard_map(tg).names
        ]
        results = await vc.execute(queries)
        return results[0]

    async def _probe(self, vc: VCursor) -> tuple[str, ...]:
        names = [n for n in self.probe.split(",") if n]
        checks = ", ".join(
            f"to_regclass({quote_literal(n)}) IS NOT NULL" for n in names
        )
        queries = [
            ShardQuery(tg, vc.shard_map(tg).names[0], f"SELECT {checks}")
            for tg in self.tablegroups
        ]
        results = await vc.execute(queries)
        found = [
            q.tablegroup
            for q, r in zip(queries, results, strict=True)
            if r.rows and any(v == b"t" for v in RowView(r.rows[0]).values())
        ]
        if len(found) > 1:
            raise PgError(
                f"index {self.probe} exists in several tablegroups ({', '.join(found)}): "
                "the statement cannot name one of them",
                codes.FEATURE_NOT_SUPPORTED,
                hint="name the index with its schema, or use a shard hint",
            )
        return tuple(found) or (self.default,)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "primitive": "ddl",
            "to": self.target.value,
            "tablegroups": list(self.tablegroups),
        }
        if self.probe:
            d["probe"] = self.probe
            d["otherwise"] = self.default
        if not self.transactional:
            d["transactional"] = False
        d["sql"] = self.sql.sql
        return d
