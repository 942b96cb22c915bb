"""Splitting a simple-query string into statements, Postgres's lexical rules (no parser).

Handles '...' strings (with '' escapes), E'...' strings (with backslash escapes), "..."
identifiers, $tag$...$tag$ bodies, -- and nested /* */ comments. Used on the rare statements
the pooler must look inside (SET, LISTEN, ...), never on every query.
"""

from __future__ import annotations


def _skip_dollar(sql: str, i: int) -> int | None:
    """If a dollar-quote tag starts at i, return the index after its closing tag."""
    j = i + 1
    n = len(sql)
    while j < n and (sql[j].isalnum() or sql[j] == "_"):
        j += 1
    if j >= n or sql[j] != "$":
        return None
    if j > i + 1 and sql[i + 1].isdigit():
        return None  # $1 is a parameter, not a tag
    tag = sql[i : j + 1]
    end = sql.find(tag, j + 1)
    return n if end < 0 else end + len(tag)


def _quoted_end(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    """The index just after the quoted text whose body starts at ``i`` (a doubled quote is
    one quote character; with ``backslash``, as in E'...', a backslash escapes the next)."""
    n = len(sql)
    while i < n:
        if backslash and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            break
        i += 1
    return min(i + 1, n)


def skip_token(sql: str, i: int) -> int | None:
    """If a string ('...', E'...'), a quoted identifier, a comment (-- or nested /* */) or a
    dollar-quoted body starts at ``i``, the index just after it; else None. What a scanner
    that looks for ``;`` or ``$n`` must step over."""
    n = len(sql)
    c = sql[i]
    if c == "'" or (c in "eE" and i + 1 < n and sql[i + 1] == "'"
                    and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_"))):
        return _quoted_end(sql, i + (1 if c == "'" else 2), "'", backslash=c != "'")
    if c == '"':
        return _quoted_end(sql, i + 1, '"', backslash=False)
    if c == "-" and sql.startswith("--", i):
        nl = sql.find("\n", i)
        return n if nl < 0 else nl + 1
    if c == "/" and sql.startswith("/*", i):
        depth = 1
        i += 2
        while i < n and depth:
            if sql.startswith("/*", i):
                depth += 1
                i += 2
            elif sql.startswith("*/", i):
                depth -= 1
                i += 2
            else:
                i += 1
        return i
    if c == "$":
        return _skip_dollar(sql, i)
    return None


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, stripped, without their ';' (empty ones dropped)."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        end = skip_token(sql, i)
        if end is not None:
            i = end
        elif sql[i] == ";":
            stmt = sql[start:i].strip()
            if stmt:
                out.append(stmt)
            i += 1
            start = i
        else:
            i += 1
    stmt = sql[start:].strip()
    if stmt:
        out.append(stmt)
    return out


def remove_comments(stmt: str) -> str:
    """``stmt`` without its comments (each becomes a space), strings and identifiers kept."""
    if "--" not in stmt and "/*" not in stmt:
        return stmt
    out: list[str] = []
    i = 0
    n = len(stmt)
    start = 0
    while i < n:
        end = skip_token(stmt, i)
        if end is None:
            i += 1
            continue
        if stmt.startswith(("--", "/*"), i):
            out.append(stmt[start:i])
            out.append(" ")
            start = end
        i = end
    out.append(stmt[start:])
    return "".join(out).strip()


def strip_comments(stmt: str) -> str:
    """``stmt`` with leading comments and whitespace removed."""
    while True:
        s = stmt.lstrip()
        if s.startswith("--"):
            nl = s.find("\n")
            stmt = "" if nl < 0 else s[nl + 1 :]
        elif s.startswith("/*"):
            end = s.find("*/")
            stmt = "" if end < 0 else s[end + 2 :]
        else:
            return s


def words(stmt: str, count: int) -> list[str]:
    """The first ``count`` whitespace-separated words of ``stmt``, lower-cased."""
    return [w.lower() for w in strip_comments(stmt).split(None, count)[:count]]
