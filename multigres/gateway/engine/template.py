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

from multigres.sql.split import skip_token


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
    """The text between the ``$n`` placeholders, and their numbers (strings, quoted names,
    comments and dollar-quoted bodies are stepped over: a ``$1`` there is text)."""
    parts: list[str] = []
    params: list[int] = []
    start = i = 0
    n = len(sql)
    while i < n:
        if sql[i] == "$":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1 and (i == 0 or not _ident_char(sql[i - 1])):
                parts.append(sql[start:i])
                params.append(int(sql[i + 1:j]))
                start = i = j
                continue
        end = skip_token(sql, i)
        i = end if end is not None else i + 1
    parts.append(sql[start:])
    return tuple(parts), tuple(params)


def _ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"
