"""What the planner must know about a database beyond its VSchema.

``collation``: the database's default collation (``datcollate``). The gateway merges text
sort keys bytewise, which is the order of the C collation only: under any other collation
an ORDER BY on text across shards is refused (0A000) unless it says ``COLLATE "C"``. Text
GROUP BY and DISTINCT do not depend on it (deterministic collations compare equal exactly
when the bytes are equal). The session reads it once per database (``SHOW lc_collate``);
the default is C, which is how Multigres creates its test and local clusters.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlannerOptions:
    collation: str = "C"
