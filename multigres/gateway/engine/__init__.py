"""The gateway's execution engine for sharded databases (Vitess's engine, on Postgres).

A plan (``multigres.gateway.planner``) is a tree of primitives, one per module here. A
primitive runs against a :class:`~multigres.gateway.engine.vcursor.VCursor` (the shards, as
the session sees them: inside its transaction, with its settings) and produces a
:class:`~multigres.gateway.engine.result.Result`. Plans are cached and shared by sessions: a
primitive keeps no per-call state; what a call needs (the bind values) is passed in.
"""
