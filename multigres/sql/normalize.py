"""Statement normalization for the plan cache (compiled module: multigres._cy.sqlnorm).

``normalize(sql)`` makes the plan cache's key in one pass over the statement's bytes, without
the parser: each literal becomes a placeholder ``$N`` (numbered after the statement's own
``$n``), whitespace runs become one space, comments go (except planner hints: a ``/* */``
comment that starts with ``/*+`` or contains ``multigres:``). It also says what the statement
is (``StatementKind``; ``TxVerb`` for transaction control) and how many statements the string
holds. The rules that keep a placeholder from changing a statement's meaning are in the
compiled module's docstring (``pyx/sqlnorm.pyx``): in short, literals stay where Postgres
wants a constant (ORDER BY 1, type modifiers, FETCH FIRST 5, ...) and in statements that take
no parameters (DDL, SET, COPY, EXPLAIN, ... and strings of several statements).

    n = normalize(b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;")
    n.text     == b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    n.values   == [b"12345"]            # text-format values, as Bind takes them
    n.params[0].raw == b"12345"         # the source text, to put back into a template
    n.render() == b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345"
    n.kind is StatementKind.READ

Classification notes:
- READ: SELECT, VALUES, TABLE, WITH that only read. SELECT ... FOR UPDATE/SHARE, SELECT INTO
  and WITH holding INSERT/UPDATE/DELETE/MERGE are WRITE (a word-level check: a column named
  ``update`` makes a SELECT a WRITE too, which errs toward the primary). A SELECT may still
  write through a function (``nextval``, a user function): ``has_function_call`` says whether a
  name is followed by ``(`` (aggregates such as ``count(*)`` included, SQL keywords that take
  parentheses excluded), for a router that sends reads elsewhere than the primary.
- WRITE: INSERT, UPDATE, DELETE, MERGE, COPY ... FROM, CALL, DO, LOCK.
- TRANSACTION: BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE,
  ROLLBACK TO, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED (``tx_verb`` says which, with
  AND CHAIN told apart).
- SESSION: SET (ROLE, SESSION AUTHORIZATION, TRANSACTION ...), RESET, DISCARD, LISTEN,
  UNLISTEN, PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE, LOAD.
- DDL: CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, REVOKE, REINDEX, CLUSTER, VACUUM,
  ANALYZE, REFRESH, SECURITY LABEL, IMPORT FOREIGN SCHEMA, REASSIGN OWNED.
- OTHER: SHOW, EXPLAIN (EXPLAIN ANALYZE of a write too: route it as the gateway routes
  EXPLAIN), COPY ... TO, NOTIFY, CHECKPOINT, an empty string, anything unknown.
- ``kind`` and ``tx_verb`` describe the first statement; ``kind_mask`` has bit ``1 << kind``
  for every statement of a multi-statement string.

Limits: the text is read as bytes in an ASCII-compatible encoding (UTF-8, LATIN*, EUC_*):
client-only encodings whose multibyte characters may hold a backslash or quote byte (SJIS,
BIG5, GBK, UHC, GB18030) must not be normalized. ``standard_conforming_strings=False``
(a session setting) makes '...' strings take backslash escapes, as Postgres does.
"""

from __future__ import annotations

from multigres._cy.sqlnorm import (
    OID_BIT,
    OID_INT4,
    OID_INT8,
    OID_NUMERIC,
    OID_UNKNOWN,
    Literal,
    LiteralKind,
    Normalized,
    StatementKind,
    TxVerb,
    normalize,
)

__all__ = [
    "OID_BIT",
    "OID_INT4",
    "OID_INT8",
    "OID_NUMERIC",
    "OID_UNKNOWN",
    "Literal",
    "LiteralKind",
    "Normalized",
    "StatementKind",
    "TxVerb",
    "kinds",
    "normalize",
]


def kinds(n: Normalized) -> set[StatementKind]:
    """Every statement kind of a (multi-statement) string."""
    return {k for k in StatementKind if n.kind_mask & (1 << k)}
