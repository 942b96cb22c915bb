"""Postgres values as the gateway's merges see them: typed texts from DataRow messages.

The work happens in the compiled module ``multigres._cy.pgvalue`` (framing DataRows, comparing
rows as ORDER BY does, folding partial aggregates into the final text Postgres prints). This
module re-exports it and adds what the planner asks before it relies on it:

- ``SHARD_SETTINGS``: the output settings the shards' texts must be printed under. The merge
  reads these formats only; a value in another one raises ``ValueFormatError`` (never a
  wrong order). Since merged values go on to the client as the shards printed them (and the
  merge prints its own results in these formats), the client's session must have them too:
  the planner merges only for sessions with these values, and refuses (0A000) otherwise.
  (extra_float_digits: any value >= 1 prints the same shortest texts; <= 0 rounds floats,
  which would make distinct values compare equal.) TimeZone may be anything, as long as the
  shards print in the client's zone: timestamptz compares by instant.
  ``settings_problems(...)`` says what a session's settings lack.
- ``sort_key(...)``: a ``SortKey`` after checking that the sort can be merged exactly (a
  supported type, and for text types the C collation: the merge compares bytes).
- ``aggregate(name, input_oid)``: the ``AggSpec`` of an aggregate call by its SQL name, and
  ``partial_exprs(...)``: the select-list items each shard computes for it.

Anything the merge cannot do exactly raises ``UnsupportedType`` (SQLSTATE 0A000) at plan time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

from multigres._cy.pgvalue import (
    OID_BYTEA,
    OID_FLOAT4,
    AggKind,
    AggSpec,
    AggState,
    RowView,
    SortKey,
    SortSpec,
    UnsupportedType,
    ValueFormatError,
    ValueOutOfRange,
    build_datarow,
    compare,
    datarow_columns,
    fold_groups,
    kway_merge,
    merge_payloads,
    sort_rows,
    supported_aggregate,
    supported_sort_type,
    type_name,
    value_group_key,
)

# A partial aggregate as the Python API takes and gives it: a text (None for SQL NULL), or for
# avg the (sum, count) pair of texts.
Partial: TypeAlias = bytes | tuple[bytes | None, bytes | None] | None

__all__ = [
    "COLLATED_TYPES",
    "SHARD_SETTINGS",
    "AggKind",
    "AggSpec",
    "AggState",
    "Partial",
    "RowView",
    "SortKey",
    "SortSpec",
    "UnsupportedType",
    "ValueFormatError",
    "ValueOutOfRange",
    "aggregate",
    "build_datarow",
    "compare",
    "datarow_columns",
    "fold_groups",
    "kway_merge",
    "merge_payloads",
    "partial_exprs",
    "settings_problems",
    "sort_key",
    "sort_rows",
    "supported_aggregate",
    "supported_sort_type",
    "type_name",
    "value_group_key",
]

# The output formats the merge reads and prints.
SHARD_SETTINGS: Final[dict[str, str]] = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "bytea_output": "hex",
    "extra_float_digits": "1",
}

# text, varchar, bpchar, name: their order depends on the collation; the merge compares bytes,
# which is the order of the C (and POSIX) collation only. (name's default collation is C.)
COLLATED_TYPES: Final = frozenset({25, 1043, 1042, 19})
_BYTEWISE_COLLATIONS: Final = frozenset({"C", "POSIX", "ucs_basic"})

# Aggregate function names (as pglast gives them, lower case) -> kind. ``every`` is bool_and.
AGGREGATES: Final[dict[str, AggKind]] = {
    "count": AggKind.COUNT,
    "sum": AggKind.SUM,
    "min": AggKind.MIN,
    "max": AggKind.MAX,
    "avg": AggKind.AVG,
    "bool_and": AggKind.BOOL_AND,
    "every": AggKind.BOOL_AND,
    "bool_or": AggKind.BOOL_OR,
    "string_agg": AggKind.STRING_AGG,
    "array_agg": AggKind.ARRAY_AGG,
}


def settings_problems(settings: Mapping[str, str]) -> list[str]:
    """What keeps a session's output settings (name -> value as SHOW prints it; a missing one
    counts as Postgres's default) from a merge, one message each; empty when it can merge."""
    lowered = {k.lower(): v.strip() for k, v in settings.items()}
    problems = []
    datestyle = lowered.get("datestyle", "ISO, MDY")
    if datestyle.split(",")[0].strip().upper() != "ISO":
        problems.append(f"DateStyle {datestyle!r} (merges read ISO only)")
    interval = lowered.get("intervalstyle", "postgres")
    if interval.lower() != "postgres":
        problems.append(f"IntervalStyle {interval!r} (merges read postgres only)")
    bytea = lowered.get("bytea_output", "hex")
    if bytea.lower() != "hex":
        problems.append(f"bytea_output {bytea!r} (merges read hex only)")
    digits = lowered.get("extra_float_digits", "1")
    try:
        shortest = int(digits) >= 1
    except ValueError:
        shortest = False
    if not shortest:
        problems.append(f"extra_float_digits {digits} (merges need 1 or more)")
    return problems


def sort_key(
    column: int,
    type_oid: int,
    desc: bool = False,
    nulls_first: bool | None = None,
    collation: str | None = "C",
) -> SortKey:
    """A ``SortKey`` for a merge, or ``UnsupportedType`` when the merge would not order like
    Postgres: a type it cannot compare, or a text type under a collation other than C."""
    if type_oid in COLLATED_TYPES and type_oid != 19 and collation not in _BYTEWISE_COLLATIONS:
        raise UnsupportedType(
            f"cannot merge ORDER BY on {type_name(type_oid)} under collation {collation!r} "
            f"across shards (only the C collation)"
        )
    return SortKey(column, type_oid, desc, nulls_first)


def aggregate(name: str, input_oid: int = 0, delimiter: bytes | None = None) -> AggSpec:
    """The ``AggSpec`` of ``name(x)`` over a column of ``input_oid`` (``count(*)``: 0)."""
    kind = AGGREGATES.get(name.lower())
    if kind is None:
        raise UnsupportedType(f"aggregate {name}() cannot be merged across shards")
    return AggSpec(kind, input_oid, delimiter)


def partial_exprs(spec: AggSpec, arg: str, delimiter_sql: str = "NULL") -> list[str]:
    """The select-list items a shard computes for ``spec`` over the SQL expression ``arg``
    (``*`` for count(*)), in the order the gateway's AggState reads them."""
    kind = AggKind(spec.kind)
    if kind is AggKind.AVG:
        total = f"({arg})::float8" if spec.input_oid == OID_FLOAT4 else arg
        return [f"sum({total})", f"count({arg})"]
    if kind is AggKind.STRING_AGG:
        cast = "bytea" if spec.input_oid == OID_BYTEA else "text"
        return [f"string_agg({arg}, ({delimiter_sql})::{cast})"]
    return [f"{kind.name.lower()}({arg})"]
