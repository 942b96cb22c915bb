"""What every engine primitive is.

A primitive is one step of a plan (route to shards, merge-sort, aggregate, limit, join, ...).
It is built once by the planner and shared by every session that runs the same normalized
statement: it keeps no per-call state. ``execute`` gets the session's VCursor and the bind
values of this execution.

Bind values: ``bind[i]`` is the SQL text of parameter ``$(i+1)`` as it goes into a shard's
SQL: the literal's own source text for literals the normalizer lifted out (``12345``,
``'abc'``, ``E'a\\nb'``), or, for a client's extended-protocol parameter, the value rendered as
a quoted literal (``'12345'``; NULL as ``NULL``). Primitives that need the value itself (a
vindex column) decode it from that text (``multigres.gateway.engine.bindvalues``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from multigres.gateway.engine.result import Result
from multigres.gateway.engine.vcursor import VCursor

Bind = Sequence[str]


class Primitive(Protocol):
    async def execute(self, vc: VCursor, bind: Bind) -> Result: ...

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-able data for golden files and ``multigres.explain``: the
        primitive's name (its module's name), its fields, its inputs' descriptions, and for a
        route the per-shard SQL template."""
        ...
