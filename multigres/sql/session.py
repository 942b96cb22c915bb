"""What a statement does to session state, as far as a connection pooler must know.

A pooled backend serves many clients, so the pooler must see every statement that leaves
state behind on the backend's session: settings (SET/RESET), and state it cannot move to
another backend (temp tables, LISTEN, session advisory locks, SQL prepared statements, WITH
HOLD cursors). This looks only at statements that can have such effects, with a lexer, not
the parser: most queries are rejected by one regex search.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from multigres.sql.split import remove_comments, split_statements, strip_comments


class Kind(enum.Enum):
    SET = "set"  # name, value (SQL text to re-apply with SET name TO value)
    RESET = "reset"  # name
    RESET_ALL = "reset_all"
    DISCARD_ALL = "discard_all"
    DISCARD_TEMP = "discard_temp"
    DISCARD_PLANS = "discard_plans"
    LISTEN = "listen"  # name
    UNLISTEN = "unlisten"  # name
    UNLISTEN_ALL = "unlisten_all"
    PREPARE = "prepare"  # name
    DEALLOCATE = "deallocate"  # name
    DEALLOCATE_ALL = "deallocate_all"
    DECLARE_HOLD = "declare_hold"  # name
    CLOSE = "close"  # name
    CLOSE_ALL = "close_all"
    TEMP_OBJECT = "temp_object"
    # name "try" for pg_try_advisory_lock (which may not get the lock)
    ADVISORY_LOCK = "advisory_lock"
    ADVISORY_UNLOCK = "advisory_unlock"
    ADVISORY_UNLOCK_ALL = "advisory_unlock_all"
    # DROP: may end a pin (a temp table dropped).
    DROP = "drop"
    # Transaction control that decides which of the effects above stick.
    SAVEPOINT = "savepoint"  # name
    RELEASE = "release"  # name
    ROLLBACK_TO = "rollback_to"  # name
    ROLLBACK = "rollback"
    COMMIT_AND_CHAIN = "commit_and_chain"
    # Session state we cannot track (set_config(..., false), SET ... FROM CURRENT, LOAD,
    # SET SESSION CHARACTERISTICS): the backend stays with this client.
    UNTRACKED = "untracked"


@dataclass(frozen=True)
class Effect:
    kind: Kind
    name: str = ""
    value: str = ""


# One C-speed search rejects statements that cannot have a session effect.
_MAYBE = re.compile(
    r"\b(?:set|reset|discard|listen|unlisten|prepare|deallocate|declare|close|temp|temporary"
    r"|load|drop|savepoint|rollback|abort|release|chain)\b|pg_temp|advisory|set_config",
    re.IGNORECASE,
)

# Effects that transaction control undoes: they stick only when their transaction commits.
# The others (SQL PREPARE, advisory locks, closing a cursor) happen at once, whatever follows.
TRANSACTIONAL = frozenset({
    Kind.SET, Kind.RESET, Kind.RESET_ALL, Kind.DISCARD_ALL, Kind.DISCARD_TEMP, Kind.LISTEN,
    Kind.UNLISTEN, Kind.UNLISTEN_ALL, Kind.DECLARE_HOLD, Kind.TEMP_OBJECT, Kind.UNTRACKED,
    Kind.DROP,
})
TX_CONTROL = frozenset({
    Kind.SAVEPOINT, Kind.RELEASE, Kind.ROLLBACK_TO, Kind.ROLLBACK, Kind.COMMIT_AND_CHAIN,
})
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_SET = re.compile(
    rf"^set\s+(?:(session|local)\s+)?({_IDENT}(?:\s*\.\s*{_IDENT})*)\s*(?:(to|=)\s*(.*)|(.*))$",
    re.IGNORECASE | re.DOTALL,
)
_TEMP_CREATE = re.compile(
    r"^create\s+(?:or\s+replace\s+)?(?:(?:global|local)\s+)?(?:temp|temporary)\b"
    r"|^create\b.*\bpg_temp\s*\."
    r"|^select\b.*\binto\s+(?:(?:global|local)\s+)?(?:temp|temporary)\b",
    re.IGNORECASE | re.DOTALL,
)
_ADVISORY_LOCK = re.compile(r"\bpg_(try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE)
_ADVISORY_UNLOCK = re.compile(r"\bpg_advisory_unlock(?:_shared)?\s*\(", re.IGNORECASE)
_ADVISORY_UNLOCK_ALL = re.compile(r"\bpg_advisory_unlock_all\s*\(", re.IGNORECASE)
_SET_CONFIG = re.compile(r"\bset_config\s*\(", re.IGNORECASE)
# set_config('name', 'value', false|true) with literal arguments: followed like SET.
_SET_CONFIG_CALL = re.compile(
    r"\bset_config\s*\(\s*'((?:[^']|'')*)'\s*,\s*('(?:[^']|'')*')\s*,\s*(true|false)\s*\)",
    re.IGNORECASE,
)
# A SET value that came from set_config: a string literal, applied again with set_config
# (SET name TO 'a, b' would read a list as one name).
CONFIG_VALUE = "\x01"
_DECLARE = re.compile(rf"^declare\s+({_IDENT})\b(.*?)\bcursor\b", re.IGNORECASE | re.DOTALL)
_WITH_HOLD = re.compile(r"\bwith\s+hold\b", re.IGNORECASE)
_ROLLBACK_TO = re.compile(
    rf"^(?:(?:work|transaction)\s+)?to\s+(?:savepoint\s+)?({_IDENT})\s*$", re.IGNORECASE
)


def normalize_name(name: str) -> str:
    """A setting or object name as Postgres folds it: unquoted lower-cased."""
    parts = re.findall(_IDENT, name)
    out = []
    for p in parts:
        if p.startswith('"'):
            out.append(p[1:-1].replace('""', '"'))
        else:
            out.append(p.lower())
    return ".".join(out)


# Substrings one of which every statement with a session effect contains (lower-cased).
# Plain `in` tests are memchr-fast; the regex above runs only when one of them is present.
_NEEDLES = ("set", "listen", "prepare", "deallocate", "declare", "close", "temp", "advisory",
            "discard", "load", "drop", "savepoint", "rollback", "abort", "release", "chain")


def may_have_effects(sql: str) -> bool:
    low = sql.lower()
    for needle in _NEEDLES:
        if needle in low:
            return _MAYBE.search(sql) is not None
    return False


def session_effects(sql: str) -> list[Effect]:
    """The session effects of a simple-query string (any number of statements)."""
    if not may_have_effects(sql):
        return []
    effects: list[Effect] = []
    for stmt in split_statements(sql):
        effects.extend(_statement_effects(strip_comments(stmt)))
    return effects


def _statement_effects(stmt: str) -> list[Effect]:
    if not stmt:
        return []
    # Values and names are kept as SQL text (to be sent again): without comments, which
    # would swallow what follows them in the pooler's own queries.
    stmt = remove_comments(stmt)
    first = stmt.split(None, 1)[0].lower()
    rest = stmt[len(first):].strip()
    words = [w.lower() for w in rest.split(None, 3)]
    if first == "set":
        return _set_effects(stmt, words)
    if first == "reset":
        if not words:
            return []
        if words[0] == "all":
            return [Effect(Kind.RESET_ALL)]
        if words[:2] == ["session", "authorization"]:
            return [Effect(Kind.RESET, "session_authorization")]
        if words[:2] == ["time", "zone"]:
            return [Effect(Kind.RESET, "timezone")]
        return [Effect(Kind.RESET, normalize_name(rest))]
    if first == "discard":
        what = words[0] if words else ""
        if what == "all":
            return [Effect(Kind.DISCARD_ALL)]
        if what in ("temp", "temporary"):
            return [Effect(Kind.DISCARD_TEMP)]
        if what == "plans":
            return [Effect(Kind.DISCARD_PLANS)]
        return []
    if first == "listen" and rest:
        return [Effect(Kind.LISTEN, normalize_name(rest))]
    if first == "unlisten" and rest:
        if rest.strip() == "*":
            return [Effect(Kind.UNLISTEN_ALL)]
        return [Effect(Kind.UNLISTEN, normalize_name(rest))]
    if first == "prepare" and words and words[0] != "transaction":
        name = re.match(_IDENT, rest)
        return [Effect(Kind.PREPARE, normalize_name(name.group(0)))] if name else []
    if first == "deallocate" and words:
        target = rest[len("prepare"):].strip() if words[0] == "prepare" else rest
        if target.lower() == "all":
            return [Effect(Kind.DEALLOCATE_ALL)]
        return [Effect(Kind.DEALLOCATE, normalize_name(target))]
    if first == "declare":
        m = _DECLARE.match(stmt)
        if m and (_WITH_HOLD.search(stmt[m.end():]) or _WITH_HOLD.search(m.group(2))):
            return [Effect(Kind.DECLARE_HOLD, normalize_name(m.group(1)))]
        return []
    if first == "close" and words:
        if words[0] == "all":
            return [Effect(Kind.CLOSE_ALL)]
        return [Effect(Kind.CLOSE, normalize_name(rest))]
    if first == "load":
        return [Effect(Kind.UNTRACKED)]
    if first in ("rollback", "abort"):
        if first == "rollback" and words and words[0] == "prepared":
            return []
        m = _ROLLBACK_TO.match(rest)
        if m:
            return [Effect(Kind.ROLLBACK_TO, normalize_name(m.group(1)))]
        return [Effect(Kind.ROLLBACK)]
    if first == "savepoint" and rest:
        return [Effect(Kind.SAVEPOINT, normalize_name(rest))]
    if first == "release" and rest:
        target = rest[len("savepoint"):].strip() if words[0] == "savepoint" else rest
        return [Effect(Kind.RELEASE, normalize_name(target))]
    if first in ("commit", "end"):
        if words[-2:] == ["and", "chain"] and "no" not in words:
            return [Effect(Kind.COMMIT_AND_CHAIN)]
        return []
    if first == "drop":
        return [Effect(Kind.DROP)]
    out: list[Effect] = []
    if _TEMP_CREATE.search(stmt):
        out.append(Effect(Kind.TEMP_OBJECT))
    if _ADVISORY_UNLOCK_ALL.search(stmt):
        out.append(Effect(Kind.ADVISORY_UNLOCK_ALL))
    elif _ADVISORY_UNLOCK.search(stmt):
        out.append(Effect(Kind.ADVISORY_UNLOCK))
    m = _ADVISORY_LOCK.search(stmt)
    if m:
        out.append(Effect(Kind.ADVISORY_LOCK, "try" if m.group(1) else ""))
    if _SET_CONFIG.search(stmt):
        out.extend(_set_config_effects(stmt))
    return out


def _set_effects(stmt: str, words: list[str]) -> list[Effect]:
    if not words:
        return []
    scope = ""
    if words[0] in ("session", "local"):
        scope = words[0]
        words = words[1:]
    if scope == "local" or not words:
        return []  # transaction-scoped: gone at the transaction's end
    if words[0] in ("transaction", "constraints"):
        return []
    if words[0] == "characteristics":
        return _characteristics_effects(stmt)
    body = stmt.split(None, 2 if scope else 1)[-1]
    if words[:2] == ["time", "zone"]:
        value = body.split(None, 2)[2] if len(body.split(None, 2)) > 2 else ""
        return [Effect(Kind.SET, "timezone", value.strip())] if value else []
    if words[0] == "role":
        if len(words) < 2:
            return []
        value = body.split(None, 1)[1].strip()
        if value.lower() == "none":
            return [Effect(Kind.RESET, "role")]
        return [Effect(Kind.SET, "role", value)]
    if words[0] == "authorization" and scope == "session":
        value = body.split(None, 1)[1].strip() if len(words) > 1 else ""
        if value.lower() == "default":
            return [Effect(Kind.RESET, "session_authorization")]
        return [Effect(Kind.SET, "session_authorization", value)] if value else []
    m = _SET.match(stmt)
    if not m:
        return [Effect(Kind.UNTRACKED)]
    name = normalize_name(m.group(2))
    value = (m.group(4) if m.group(3) else m.group(5) or "").strip()
    if value.lower().startswith("from current") or not m.group(3):
        return [Effect(Kind.UNTRACKED)]
    if value.lower() == "default":
        return [Effect(Kind.RESET, name)]
    return [Effect(Kind.SET, name, value)]


def _set_config_effects(stmt: str) -> list[Effect]:
    calls = len(_SET_CONFIG.findall(stmt))
    literal = _SET_CONFIG_CALL.findall(stmt)
    if len(literal) != calls:
        # An argument that is not a literal: the pooler cannot know what is set.
        return [Effect(Kind.UNTRACKED)]
    out = []
    for name, value, is_local in literal:
        if is_local.lower() == "false":
            out.append(Effect(Kind.SET, name.replace("''", "'").lower(), CONFIG_VALUE + value))
    return out


_ISOLATION = re.compile(
    r"isolation\s+level\s+(serializable|repeatable\s+read|read\s+committed|read\s+uncommitted)",
    re.IGNORECASE,
)


def _characteristics_effects(stmt: str) -> list[Effect]:
    """SET SESSION CHARACTERISTICS AS TRANSACTION ...: the default_transaction_* settings."""
    modes = stmt.lower().split("transaction", 1)[-1]
    out = []
    m = _ISOLATION.search(modes)
    if m:
        level = " ".join(m.group(1).split())
        out.append(Effect(Kind.SET, "default_transaction_isolation", f"'{level}'"))
    if re.search(r"\bread\s+only\b", modes):
        out.append(Effect(Kind.SET, "default_transaction_read_only", "on"))
    elif re.search(r"\bread\s+write\b", modes):
        out.append(Effect(Kind.SET, "default_transaction_read_only", "off"))
    if re.search(r"\bnot\s+deferrable\b", modes):
        out.append(Effect(Kind.SET, "default_transaction_deferrable", "off"))
    elif re.search(r"\bdeferrable\b", modes):
        out.append(Effect(Kind.SET, "default_transaction_deferrable", "on"))
    return out or [Effect(Kind.UNTRACKED)]
