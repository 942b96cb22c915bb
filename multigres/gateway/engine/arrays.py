"""Array binds of ``col = ANY($1)``: read the elements to route them, write each shard's own.

A client that sends ``WHERE id = ANY($1)`` with ``'{1,2,3}'`` asks for three rows that may
live on three shards; each shard gets an array of only its own elements (as an IN list
does). Only one-dimensional literals are read; anything else routes to every shard with
the array unchanged (a bigger answer set on each shard, never a wrong one).
"""

from __future__ import annotations

from collections.abc import Sequence

from multigres.gateway.engine.bindvalues import decode


class NotAnArray(ValueError):
    """A bind text that is not a plain one-dimensional array literal."""


def parse_array(text: str) -> list[str | None]:
    """The elements of an array bind (``'{1,2,"a b",NULL}'``) as texts (None for NULL)."""
    try:
        v = decode(text).value
    except Exception as e:  # a malformed bind: Postgres will say so on the shard
        raise NotAnArray(str(e)) from None
    if not isinstance(v, str):
        raise NotAnArray("not an array literal")
    s = v.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise NotAnArray("not an array literal")
    body = s[1:-1]
    out: list[str | None] = []
    if not body.strip():
        return out
    i, n = 0, len(body)
    while True:
        while i < n and body[i].isspace():
            i += 1
        if i < n and body[i] in "{}":
            raise NotAnArray("nested array")
        buf: list[str] = []
        if i < n and body[i] == '"':
            i += 1
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(body[i])
                i += 1
            if i >= n:
                raise NotAnArray("unterminated array element")
            i += 1
            out.append("".join(buf))
            while i < n and body[i].isspace():
                i += 1
        else:
            while i < n and body[i] != ",":
                if body[i] in '"{}':
                    raise NotAnArray("odd array element")
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(body[i])
                i += 1
            elem = "".join(buf).strip()
            if not elem:
                raise NotAnArray("empty array element")
            out.append(None if elem.upper() == "NULL" else elem)
        if i >= n:
            return out
        if body[i] != ",":
            raise NotAnArray("odd array literal")
        i += 1


def array_literal(elements: Sequence[str | None]) -> str:
    """A quoted array literal of element texts (the inverse of :func:`parse_array`)."""
    parts = []
    for e in elements:
        if e is None:
            parts.append("NULL")
        else:
            parts.append('"' + e.replace("\\", "\\\\").replace('"', '\\"') + '"')
    text = "{" + ",".join(parts) + "}"
    return "'" + text.replace("'", "''") + "'"
