"""SQL templates: made once when a statement is planned, rendered for every execution.

The planner edits the statement's AST (pglast) and deparses it once into SQL that still
holds placeholders ``$N``: the client's parameters and the normalizer's lifted literals
(``$1 .. $param_count``), and the planner's own slots above them (an IN list cut per shard,
a shard's LIMIT, a value bound from a join's outer row or a pulled-out subquery). Rendering
is a join of text pieces with ``bind[N-1]`` (the SQL text of each value), so the per-query
path never parses or deparses (building pglast's AST costs 40-400 us, deparsing 80-600 us).

The class lives in the engine (primitives render templates; the planner makes them,
``planner.templates`` re-exports it with ``deparse``).
"""

from __future__ import annotations

from collections.abc import Sequence


class Template:
    """``Template("SELECT * FROM t WHERE id = $1")``. ``render(bind)`` puts ``bind[N-1]``
    in place of each ``$N``. Placeholders inside quoted strings, quoted identifiers,
    dollar-quoted strings and comments are text, not slots."""

    __slots__ = ("params", "parts", "sql")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.parts, self.params = _split(sql)

    def render(self, bind: Sequence[str]) -> str:
        parts = self.parts
        if not self.params:
            return parts[0]
        out = [parts[0]]
        for n, part in zip(self.params, parts[1:], strict=True):
            out.append(bind[n - 1])
            out.append(part)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.sql!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.sql == self.sql

    def __hash__(self) -> int:
        return hash(self.sql)


def _split(sql: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    parts: list[str] = []
    params: list[int] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "'":
            # E'...' takes backslash escapes; a plain string only doubles quotes.
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident_char(sql[i - 2]))
            i += 1
            while i < n:
                if escapes and sql[i] == "\\":
                    i += 2
                    continue
                if sql[i] == "'":
                    if i + 1 < n and sql[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == '"':
            i = sql.find('"', i + 1)
            while 0 <= i < n - 1 and sql[i + 1] == '"':
                i = sql.find('"', i + 2)
            i = n if i < 0 else i + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "$":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1 and (i == 0 or not _ident_char(sql[i - 1])):
                parts.append(sql[start:i])
                params.append(int(sql[i + 1:j]))
                start = i = j
                continue
            # $tag$ ... $tag$ (a tag does not start with a digit)
            k = j
            while k < n and _ident_char(sql[k]):
                k += 1
            if j == i + 1 and k < n and sql[k] == "$" and (i == 0 or not _ident_char(sql[i - 1])):
                tag = sql[i:k + 1]
                end = sql.find(tag, k + 1)
                i = n if end < 0 else end + len(tag)
            else:
                i = j if j > i + 1 else i + 1
        else:
            i += 1
    parts.append(sql[start:])
    return tuple(parts), tuple(params)


def _ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"
