"""PgBouncer's auth_file ("userlist.txt"): user names and their stored passwords.

One user per line, two double-quoted fields: the user name and its password, which is a
plaintext password, an md5 hash (``md5`` and 32 hex digits) or a SCRAM verifier
(``SCRAM-SHA-256$...``). A double quote inside a field is written twice. Blank lines and lines
starting with ``;`` or ``#`` are comments; text after the second field is ignored (old
pg_auth files carried more columns). A user listed twice takes its last line.

Unlike PgBouncer, which skips a broken line with a log message, a broken line is an error that
names the file and line: a user silently missing from the list only shows up later, as failed
logins.
"""

from __future__ import annotations

from pathlib import Path

from multigres.wire.auth import Credential
from multigres.wire.scram import ScramVerifier


class UserlistError(ValueError):
    """A line of a userlist file that cannot be read; the text names the file and line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.message = message


def _quoted(line: str, pos: int, what: str) -> tuple[str, int]:
    """Read the double-quoted field at ``pos`` (after blanks): its value and the end position."""
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    if pos >= len(line) or line[pos] != '"':
        found = "end of line" if pos >= len(line) else repr(line[pos])
        raise ValueError(f"expected the {what} in double quotes, found {found}")
    out: list[str] = []
    pos += 1
    while True:
        end = line.find('"', pos)
        if end < 0:
            raise ValueError(f"the {what} has no closing double quote")
        out.append(line[pos:end])
        if line.startswith('"', end + 1):  # a doubled quote stands for one
            out.append('"')
            pos = end + 2
            continue
        return "".join(out), end + 1


def parse_userlist(text: str | bytes, source: str = "<userlist>") -> dict[str, Credential]:
    """User name -> credential, from a userlist's contents; ``source`` names it in errors."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    users: dict[str, Credential] = {}
    for lineno, raw_line in enumerate(raw.splitlines(), 1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            raise UserlistError(source, lineno, "the line is not valid UTF-8") from None
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        try:
            user, pos = _quoted(line, 0, "user name")
            secret, _ = _quoted(line, pos, "password")
        except ValueError as e:
            raise UserlistError(source, lineno, str(e)) from None
        if not user:
            raise UserlistError(source, lineno, "the user name is empty")
        if ScramVerifier.looks_like(secret):
            # Postgres would take a broken verifier for a plaintext password; in a file that
            # someone typed, it is a mistake worth reporting.
            try:
                ScramVerifier.parse(secret)
            except ValueError as e:
                raise UserlistError(
                    source, lineno, f"the SCRAM secret of user {user!r} is malformed: {e}"
                ) from None
        users[user] = Credential.from_stored(secret)
    return users


def load_userlist(path: str | Path) -> dict[str, Credential]:
    """Read a userlist file; errors name the file and line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserlistError(str(p), 0, f"cannot read the userlist: {e.strerror or e}") from None
    return parse_userlist(data, str(p))


def format_userlist_line(user: str, secret: str) -> str:
    """One line of a userlist file (without the newline)."""

    def q(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    if "\n" in user or "\r" in user or "\n" in secret or "\r" in secret:
        raise ValueError("a user name or password in a userlist cannot contain a line break")
    return f"{q(user)} {q(secret)}"
