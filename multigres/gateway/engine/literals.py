"""Values the gateway holds (a shard's DataRow texts) written back into SQL as typed literals.

A nested-loop join binds the outer row's values into the inner query, a pulled-out subquery
binds its result into the outer query, and an evaluation step sends rows back to Postgres.
Each value goes in as ``'<text>'::<type>``: the text is exactly what the shard printed, and
its type's input function reads it back to the same value (the shard sessions print under
the settings of ``multigres.sql.pgtypes.SHARD_SETTINGS``). A type without a name here cannot
be written back safely: 0A000.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from multigres.wire import sqlstate
from multigres.wire.errors import PgError

# OID -> a name that casts to exactly that type (internal names: "character" would mean
# char(1), "bpchar" keeps the length).
_TYPE_NAMES: Final[dict[int, str]] = {
    16: "bool", 17: "bytea", 18: '"char"', 19: "name", 20: "int8", 21: "int2", 23: "int4",
    25: "text", 26: "oid", 114: "json", 142: "xml", 650: "cidr", 700: "float4",
    701: "float8", 774: "macaddr8", 790: "money", 829: "macaddr", 869: "inet", 1042: "bpchar",
    1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
    1186: "interval", 1266: "timetz", 1560: "bit", 1562: "varbit", 1700: "numeric",
    2950: "uuid", 3802: "jsonb", 3614: "tsvector", 3904: "int4range", 3926: "int8range",
    3906: "numrange", 3912: "daterange", 3908: "tsrange", 3910: "tstzrange",
    # arrays
    1000: "bool[]", 1001: "bytea[]", 1002: '"char"[]', 1003: "name[]", 1016: "int8[]",
    1005: "int2[]", 1007: "int4[]", 1009: "text[]", 1028: "oid[]", 199: "json[]",
    1021: "float4[]", 1022: "float8[]", 791: "money[]", 1014: "bpchar[]", 1015: "varchar[]",
    1182: "date[]", 1183: "time[]", 1115: "timestamp[]", 1185: "timestamptz[]",
    1187: "interval[]", 1270: "timetz[]", 1231: "numeric[]", 2951: "uuid[]", 3807: "jsonb[]",
    1041: "inet[]", 651: "cidr[]", 1040: "macaddr[]", 1561: "bit[]", 1563: "varbit[]",
}


def type_sql(type_oid: int) -> str:
    """The SQL name of a type for a cast; 0A000 for a type the gateway cannot write back."""
    name = _TYPE_NAMES.get(type_oid)
    if name is None:
        raise PgError(
            f"cannot pass a value of type OID {type_oid} between shards",
            sqlstate.FEATURE_NOT_SUPPORTED,
        )
    return name


def typed_literal(value: bytes | None, type_oid: int) -> str:
    """``'<text>'::type`` (``NULL::type`` for NULL) for a value as a shard printed it."""
    name = type_sql(type_oid)
    if value is None:
        return f"NULL::{name}"
    text = value.decode("utf-8", "surrogateescape")
    return "'" + text.replace("'", "''") + "'::" + name


def array_of(values: Sequence[bytes | None], type_oid: int) -> str:
    """A typed array literal of the values (an uncorrelated ``IN (SELECT ...)`` pulled out
    becomes ``= ANY(<this>)``, which is exactly IN's semantics, NULLs and empty included)."""
    name = type_sql(type_oid)
    if name.endswith("[]"):
        raise PgError(
            "cannot pass a subquery's array values between shards",
            sqlstate.FEATURE_NOT_SUPPORTED,
        )
    items = []
    for v in values:
        if v is None:
            items.append("NULL")
        else:
            t = v.decode("utf-8", "surrogateescape")
            items.append('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')
    text = "{" + ",".join(items) + "}"
    return "'" + text.replace("'", "''") + "'::" + name + "[]"
