"""A client's session state as the pooler keeps it, and the rules for when it pins a backend.

Settings follow the client from backend to backend: the pooler keeps the client's settings
(``name -> SQL value``: its startup parameters, then every SET that committed) and re-applies
the difference on a backend that does not match. State that cannot move (temp tables,
LISTEN, session advisory locks, SQL prepared statements, WITH HOLD cursors, settings changed
in ways we cannot follow) pins the backend to the client until the state is gone.

The pooler sees statements, not what runs inside functions: a SET, set_config(), LISTEN or
temp table made inside a function or a DO block (plpgsql ``SET``, ``EXECUTE 'SET ...'``) is
invisible to it and stays on the backend for the next client, as in PgBouncer's transaction
mode. (``set_config`` with literal arguments written in the statement itself, even inside a
DO block's text, is followed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multigres.sql.session import CONFIG_VALUE, Effect, Kind

# A backend's value for a setting the pooler lost track of: differs from every real value,
# so the next client to take the backend sets (or resets) it.
UNKNOWN = "\x00unknown"

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


# Settings that RESET ALL leaves alone (GUC_NO_RESET_ALL in Postgres).
ROLE_KEYS = ("session_authorization", "role")

# What pins a backend, as Postgres sees it: one round trip, run only after a statement whose
# effect on these the pooler cannot know from its text (a pg_try_advisory_lock that may have
# failed, an unlock, a DROP of what may be the last temp table, a failed PREPARE, ...).
PROBE_SQL = (
    "SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_catalog.pg_backend_pid()),"
    " (SELECT count(*) FROM pg_catalog.pg_class"
    " WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
    " + (SELECT count(*) FROM pg_catalog.pg_proc"
    " WHERE pronamespace = pg_catalog.pg_my_temp_schema())"
    " + (SELECT count(*) FROM pg_catalog.pg_type"
    " WHERE typnamespace = pg_catalog.pg_my_temp_schema()),"
    " (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql),"
    " (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable),"
    " (SELECT count(*) FROM pg_catalog.pg_listening_channels())"
)

# Effects on what pins a backend (for deciding when to probe).
_PIN_KINDS = frozenset({
    Kind.PREPARE, Kind.DEALLOCATE, Kind.DEALLOCATE_ALL, Kind.DECLARE_HOLD, Kind.CLOSE,
    Kind.CLOSE_ALL, Kind.TEMP_OBJECT, Kind.ADVISORY_LOCK, Kind.ADVISORY_UNLOCK,
    Kind.ADVISORY_UNLOCK_ALL, Kind.LISTEN, Kind.UNLISTEN, Kind.UNLISTEN_ALL, Kind.DROP,
})
# Non-transactional effects that end a pin: not applied when their message failed (they may
# not have run), and the probe finds out.
_UNPIN_KINDS = frozenset({
    Kind.DEALLOCATE, Kind.DEALLOCATE_ALL, Kind.CLOSE, Kind.CLOSE_ALL, Kind.ADVISORY_UNLOCK_ALL,
})


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
        # (pyx/poolcore.pyx's _pinned reads the same fields, on the per-transaction path.)
        return bool(self.listening or self.temp_objects or self.advisory_locks
                    or self.sql_prepared or self.held_cursors or self.untracked)

    def apply(self, effects: list[Effect], failed: bool = False) -> bool:
        """Apply effects that happened (committed, or not transactional); True when the
        backend's state was reset (DISCARD ALL or DEALLOCATE ALL: its protocol-level prepared
        statements are gone too). ``failed``: the message they came in failed part way, so
        only effects that pin are applied (the probe tells the rest)."""
        server_reset = False
        before = dict(self.settings)
        for e in effects:
            k = e.kind
            if failed and k in _UNPIN_KINDS:
                continue
            if k is Kind.SET:
                self.settings[e.name] = e.value
                if e.name == "session_authorization":
                    # SET SESSION AUTHORIZATION also resets the role.
                    self.settings.pop("role", None)
            elif k is Kind.RESET:
                if e.name == "session_authorization":
                    self.settings.pop("session_authorization", None)
                    self.settings.pop("role", None)
                elif e.name in self.base:
                    self.settings[e.name] = self.base[e.name]
                else:
                    self.settings.pop(e.name, None)
            elif k is Kind.RESET_ALL:
                kept = dict(self.base)
                for key in ROLE_KEYS:
                    if key in self.settings:
                        kept[key] = self.settings[key]
                    else:
                        kept.pop(key, None)
                self.settings = kept
            elif k is Kind.DISCARD_ALL:
                self.settings = {k: v for k, v in self.base.items() if k not in ROLE_KEYS}
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

    def needs_probe(self, effects: list[Effect], failed: bool) -> bool:
        """After ``effects`` ran (``failed``: their message failed part way), is it unknown
        whether something still pins the backend?"""
        for e in effects:
            k = e.kind
            if k not in _PIN_KINDS:
                continue
            if failed:
                return True
            if k is Kind.ADVISORY_LOCK and e.name == "try":
                return True
            if k is Kind.ADVISORY_UNLOCK and self.advisory_locks:
                return True
            if k is Kind.DROP and self.temp_objects:
                return True
        return False

    def apply_probe(self, row: list[int]) -> None:
        """What PROBE_SQL found: [advisory locks, temp objects, SQL prepared statements,
        holdable cursors, channels listened to]."""
        locks, temps, prepared, held, listening = row
        self.advisory_locks = locks > 0
        self.temp_objects = temps > 0
        if not prepared:
            self.sql_prepared.clear()
        elif not self.sql_prepared:
            self.sql_prepared.add("?")
        if not held:
            self.held_cursors.clear()
        elif not self.held_cursors:
            self.held_cursors.add("?")
        if not listening:
            self.listening.clear()
        elif not self.listening:
            self.listening.add("?")


def reset_fixups(effects: list[Effect], base: dict[str, str]) -> set[str]:
    """Settings to apply again after ``effects`` ran on a backend: RESET there returns to the
    server's default, where the client expects the value its own startup packet gave."""
    out: set[str] = set()
    if not base:
        return out
    for e in effects:
        if e.kind is Kind.RESET and e.name in base:
            out.add(e.name)
        elif e.kind is Kind.RESET_ALL or e.kind is Kind.DISCARD_ALL:
            out.update(k for k in base if k not in ROLE_KEYS)
        elif e.kind is Kind.SET:
            out.discard(e.name)
    return out


def effective_settings(session: SessionState, pending: list[Effect]) -> dict[str, str]:
    """The client's settings if the open transaction's ``pending`` effects commit."""
    if not pending:
        return session.settings
    view = SessionState(base=session.base)
    view.settings = dict(session.settings)
    view.apply([e for e in pending if e.kind in _SETTING_KINDS])
    return view.settings


_SETTING_KINDS = frozenset({Kind.SET, Kind.RESET, Kind.RESET_ALL})


def touched_settings(effects: list[Effect], current: dict[str, str]) -> set[str]:
    """Names of the settings ``effects`` may have changed."""
    out: set[str] = set()
    for e in effects:
        if e.kind is Kind.SET or e.kind is Kind.RESET:
            out.add(e.name)
            if e.name == "session_authorization":
                out.add("role")
        elif e.kind is Kind.RESET_ALL or e.kind is Kind.DISCARD_ALL:
            out.update(current)
    return out


class Transaction:
    """The effects of a client's open transaction, until the transaction ends.

    Postgres undoes the transactional effects (SET, LISTEN, temp tables, WITH HOLD cursors)
    of a transaction that rolls back: ROLLBACK, or COMMIT after an error, and ROLLBACK TO
    SAVEPOINT for those after the savepoint. The pooler sees the statements and the status of
    each ReadyForQuery, so effects wait here and are handed back as committed or undone when
    the status says the transaction is over. Savepoints are kept in the list as markers.
    """

    __slots__ = ("failed", "pending")

    def __init__(self) -> None:
        self.pending: list[Effect] = []
        # The transaction hit an error and no ROLLBACK TO has recovered it since.
        self.failed = False

    def __bool__(self) -> bool:
        return bool(self.pending) or self.failed

    def on_ready(
        self, status: int, effects: list[Effect], failed: bool
    ) -> tuple[list[Effect], list[Effect]]:
        """A message (query or batch up to Sync) completed with transaction ``status`` (an
        int: I, T or E); ``effects`` are its transactional effects in order, ``failed`` when it
        reported an error. Returns (committed, undone) effects, without savepoint markers."""
        committed: list[Effect] = []
        undone: list[Effect] = []
        pending = self.pending
        for e in effects:
            k = e.kind
            if k is Kind.SAVEPOINT:
                pending.append(e)
            elif k is Kind.RELEASE:
                # Releasing a savepoint also releases those made after it; effects stay.
                i = _last_marker(pending, e.name)
                if i is not None:
                    pending[i:] = [p for p in pending[i:] if p.kind is not Kind.SAVEPOINT]
            elif k is Kind.ROLLBACK_TO:
                # In a message that failed, this may not have run (or failed itself).
                i = _last_marker(pending, e.name)
                if not failed and i is not None:
                    undone.extend(pending[i + 1:])
                    del pending[i + 1:]
                    self.failed = False
            elif k is Kind.ROLLBACK:
                if not failed:
                    undone.extend(pending)
                    pending.clear()
                    self.failed = False
            elif k is Kind.COMMIT_AND_CHAIN:
                if not failed and not self.failed:
                    committed.extend(pending)
                    pending.clear()
            else:
                pending.append(e)
        if status == _I:
            if failed or self.failed:
                undone.extend(pending)
            else:
                committed.extend(pending)
            pending.clear()
            self.failed = False
        elif status == _E or failed:
            self.failed = True
        return (_effects_only(committed), _effects_only(undone))


_I, _E = ord("I"), ord("E")


def _last_marker(pending: list[Effect], name: str) -> int | None:
    for i in range(len(pending) - 1, -1, -1):
        e = pending[i]
        if e.kind is Kind.SAVEPOINT and e.name == name:
            return i
    return None


def _effects_only(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if e.kind is not Kind.SAVEPOINT]


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
    # A newline between statements: a comment can never run into the next one.
    return ";\n".join(stmts)


def set_statement(name: str, value: str) -> str:
    """The SQL that sets ``name`` to ``value`` (a SQL value as the client wrote it)."""
    return _set_stmt(name, value)


def _set_stmt(name: str, value: str) -> str:
    if value.startswith(CONFIG_VALUE):
        return f"SELECT pg_catalog.set_config({quote_literal(name)}, {value[1:]}, false)"
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
