"""A client's session state as the pooler keeps it, and the rules for when it pins a backend.

Settings follow the client from backend to backend: the pooler keeps the client's settings
(``name -> SQL value``: its startup parameters, then every SET that committed) and re-applies
the difference on a backend that does not match. State that cannot move (temp tables,
LISTEN, session advisory locks, SQL prepared statements, WITH HOLD cursors, settings changed
in ways we cannot follow) pins the backend to the client until the state is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multigres.sql.session import Effect, Kind

# Startup parameters that are not settings.
NOT_SETTINGS = frozenset({"user", "database", "replication", "options"})


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """A client's startup parameters as settings (name -> SQL value)."""
    out = {
        k.lower(): quote_literal(v) for k, v in params.items() if k not in NOT_SETTINGS
    }
    for name, value in _parse_options(params.get("options", "")):
        out[name.lower()] = quote_literal(value)
    return out


def _parse_options(options: str) -> list[tuple[str, str]]:
    """``-c name=value`` and ``--name=value`` switches of the options parameter."""
    out: list[tuple[str, str]] = []
    tokens: list[str] = []
    cur = []
    escape = False
    for ch in options:
        if escape:
            cur.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch.isspace():
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-c" and i + 1 < len(tokens):
            tok = "--" + tokens[i + 1]
            i += 1
        elif tok.startswith("-c") and len(tok) > 2:
            tok = "--" + tok[2:]
        if tok.startswith("--") and "=" in tok:
            name, value = tok[2:].split("=", 1)
            out.append((name.replace("-", "_"), value))
        i += 1
    return out


@dataclass
class SessionState:
    base: dict[str, str]
    settings: dict[str, str] = field(default_factory=dict)
    version: int = 0
    listening: set[str] = field(default_factory=set)
    temp_objects: bool = False
    advisory_locks: bool = False
    sql_prepared: set[str] = field(default_factory=set)
    held_cursors: set[str] = field(default_factory=set)
    untracked: bool = False

    def __post_init__(self) -> None:
        self.settings = dict(self.base)

    def pin_reasons(self) -> list[str]:
        reasons = []
        if self.listening:
            reasons.append("LISTEN")
        if self.temp_objects:
            reasons.append("temporary objects")
        if self.advisory_locks:
            reasons.append("session advisory lock")
        if self.sql_prepared:
            reasons.append("SQL PREPARE")
        if self.held_cursors:
            reasons.append("WITH HOLD cursor")
        if self.untracked:
            reasons.append("untracked session state")
        return reasons

    @property
    def pinned(self) -> bool:
        return bool(self.listening or self.temp_objects or self.advisory_locks
                    or self.sql_prepared or self.held_cursors or self.untracked)

    def apply(self, effects: list[Effect]) -> bool:
        """Apply committed effects; True when the backend's state was reset (DISCARD ALL or
        DEALLOCATE ALL: its protocol-level prepared statements are gone too)."""
        server_reset = False
        before = dict(self.settings)
        for e in effects:
            k = e.kind
            if k is Kind.SET:
                self.settings[e.name] = e.value
            elif k is Kind.RESET:
                if e.name in self.base:
                    self.settings[e.name] = self.base[e.name]
                else:
                    self.settings.pop(e.name, None)
            elif k is Kind.RESET_ALL:
                self.settings = dict(self.base)
            elif k is Kind.DISCARD_ALL:
                self.settings = dict(self.base)
                self.listening.clear()
                self.temp_objects = self.advisory_locks = self.untracked = False
                self.sql_prepared.clear()
                self.held_cursors.clear()
                server_reset = True
            elif k is Kind.DISCARD_TEMP:
                self.temp_objects = False
            elif k is Kind.LISTEN:
                self.listening.add(e.name)
            elif k is Kind.UNLISTEN:
                self.listening.discard(e.name)
            elif k is Kind.UNLISTEN_ALL:
                self.listening.clear()
            elif k is Kind.PREPARE:
                self.sql_prepared.add(e.name)
            elif k is Kind.DEALLOCATE:
                self.sql_prepared.discard(e.name)
            elif k is Kind.DEALLOCATE_ALL:
                self.sql_prepared.clear()
                server_reset = True
            elif k is Kind.DECLARE_HOLD:
                self.held_cursors.add(e.name)
            elif k is Kind.CLOSE:
                self.held_cursors.discard(e.name)
            elif k is Kind.CLOSE_ALL:
                self.held_cursors.clear()
            elif k is Kind.TEMP_OBJECT:
                self.temp_objects = True
            elif k is Kind.ADVISORY_LOCK:
                self.advisory_locks = True
            elif k is Kind.ADVISORY_UNLOCK_ALL:
                self.advisory_locks = False
            elif k is Kind.UNTRACKED:
                self.untracked = True
        if self.settings != before:
            self.version += 1
        return server_reset


def settings_diff(current: dict[str, str], wanted: dict[str, str]) -> str:
    """SQL that turns a backend with ``current`` settings into one with ``wanted``.

    Role and session authorization go first (RESET SESSION AUTHORIZATION also resets the
    role), then the rest in name order so the text is stable.
    """
    stmts: list[str] = []
    rank = {"session_authorization": 0, "role": 1}
    order = sorted(set(current) | set(wanted), key=lambda n: (rank.get(n, 2), n))
    # SET/RESET SESSION AUTHORIZATION also resets the role: then the role is applied again.
    auth_changes = wanted.get("session_authorization") != current.get("session_authorization")
    for name in order:
        want = wanted.get(name)
        if want == current.get(name) and not (name == "role" and auth_changes):
            continue
        if want is None:
            stmts.append(_reset_stmt(name))
        else:
            stmts.append(_set_stmt(name, want))
    return "; ".join(stmts)


def _set_stmt(name: str, value: str) -> str:
    if name == "timezone":
        return f"SET TIME ZONE {value}"
    if name == "role":
        return f"SET ROLE {value}"
    if name == "session_authorization":
        return f"SET SESSION AUTHORIZATION {value}"
    return f"SET {_ident(name)} TO {value}"


def _reset_stmt(name: str) -> str:
    if name == "role":
        return "RESET ROLE"
    if name == "session_authorization":
        return "RESET SESSION AUTHORIZATION"
    return f"RESET {_ident(name)}"


def _ident(name: str) -> str:
    parts = name.split(".")
    out = []
    for p in parts:
        if p.isidentifier() and p.lower() == p:
            out.append(p)
        else:
            out.append('"' + p.replace('"', '""') + '"')
    return ".".join(out)
