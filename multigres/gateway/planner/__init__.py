"""The planner for sharded databases: a statement (pglast AST of its normalized text) and the
database's VSchema in, a plan out.

Entry point (``multigres.gateway.planner.build``)::

    plan = build(normalized_sql: str, vschema: VSchema, param_count: int) -> Plan

``Plan`` (``planner/plan.py``) holds the root primitive and, when the whole statement runs
unchanged on one tablegroup that is unsharded (every table it names is there), that
tablegroup's name in ``passthrough``: the session then forwards the client's own bytes to that
tablegroup's pooler, as for an unsharded database (no engine on the hot path). A statement the
engine cannot run correctly raises PgError with SQLSTATE 0A000 naming the construct: never a
plan that could give a wrong answer.
"""
