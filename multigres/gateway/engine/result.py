"""What a statement returns, as the engine passes it around: Postgres's own bytes.

Rows stay the DataRow payloads a shard sent (column count, then each value's length and text),
so a route that needs no merge forwards them untouched, and a merge reads only its key columns
(``multigres._cy.pgvalue``). ``fields`` is None for a statement that returns no rows (no
RowDescription), a list (possibly empty) otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from multigres._cy.buffer import build_message

_RD, _DR, _CC = ord("T"), ord("D"), ord("C")
_FIELD_TAIL = struct.Struct("!IhIhih")


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription."""

    name: str
    type_oid: int
    table_oid: int = 0
    column: int = 0
    type_size: int = -1
    type_mod: int = -1
    format: int = 0  # 0 text; the engine asks shards for text only

    def pack(self) -> bytes:
        return (self.name.encode() + b"\0"
                + _FIELD_TAIL.pack(self.table_oid, self.column, self.type_oid,
                                   self.type_size, self.type_mod, self.format))


def parse_row_description(payload: bytes) -> list[Field]:
    """The fields of a RowDescription payload."""
    (n,) = struct.unpack_from("!h", payload, 0)
    pos = 2
    out = []
    for _ in range(n):
        end = payload.index(b"\0", pos)
        name = payload[pos:end].decode()
        table_oid, column, type_oid, size, mod, fmt = _FIELD_TAIL.unpack_from(payload, end + 1)
        out.append(Field(name, type_oid, table_oid, column, size, mod, fmt))
        pos = end + 1 + _FIELD_TAIL.size
    return out


def row_description(fields: list[Field]) -> bytes:
    """A whole RowDescription message."""
    return build_message(_RD, struct.pack("!h", len(fields)) + b"".join(f.pack() for f in fields))


@dataclass(slots=True)
class Result:
    fields: list[Field] | None = None
    rows: list[bytes] = field(default_factory=list)  # DataRow payloads
    tag: bytes = b""  # CommandComplete's tag: b"SELECT 3", b"INSERT 0 2", b"UPDATE 5"
    notices: list[bytes] = field(default_factory=list)  # NoticeResponse payloads, in order

    @property
    def row_count(self) -> int:
        """The count in the tag (rows returned or affected), 0 if it has none."""
        last = self.tag.rsplit(b" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    def to_messages(self) -> bytes:
        """RowDescription (if any), DataRows and CommandComplete, as one Postgres would send
        them for this statement (notices are the caller's: they go out before)."""
        parts = []
        if self.fields is not None:
            parts.append(row_description(self.fields))
        parts.extend(build_message(_DR, r) for r in self.rows)
        parts.append(build_message(_CC, self.tag + b"\0"))
        return b"".join(parts)
