"""PgBouncer's userlist.txt: what loads, and errors that point at the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres.wire.auth import Credential, CredentialKind
from multigres.wire.md5 import md5_password_hash
from multigres.wire.scram import make_verifier
from multigres.wire.userlist import (
    UserlistError,
    format_userlist_line,
    load_userlist,
    parse_userlist,
)

VERIFIER = make_verifier("pw", iterations=10).format()
MD5 = md5_password_hash("bob", "pw")


def test_a_typical_file(tmp_path: Path) -> None:
    path = tmp_path / "userlist.txt"
    path.write_text(
        "; written by hand\n"
        "# and by mkauth\n"
        "\n"
        '"alice" "plain text"\n'
        f'"bob" "{MD5}"\n'
        f'  "carol"\t"{VERIFIER}"  \n'
        '"dave" "say ""hi""" "an old pg_auth column" 12345\n'
        '"we""ird user" ""\n'
        '"j\u00fcrgen" "p\u00e4ss"\r\n'
    )
    users = load_userlist(path)
    assert users == {
        "alice": Credential.plaintext("plain text"),
        "bob": Credential.md5(MD5),
        "carol": Credential.scram(VERIFIER),
        "dave": Credential.plaintext('say "hi"'),
        'we"ird user': Credential.plaintext(""),
        "j\u00fcrgen": Credential.plaintext("p\u00e4ss"),
    }
    assert users["bob"].kind is CredentialKind.MD5
    assert users["carol"].kind is CredentialKind.SCRAM


def test_a_user_listed_twice_takes_the_last_line() -> None:
    assert parse_userlist('"a" "1"\n"a" "2"\n') == {"a": Credential.plaintext("2")}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('"ok" "x"\nalice "pw"\n', 2, "expected the user name in double quotes"),
        ('"alice" pw\n', 1, "expected the password in double quotes"),
        ('"alice"\n', 1, "found end of line"),
        ('"alice "pw"\n', 1, "expected the password"),
        ('"alice" "pw\n', 1, "the password has no closing double quote"),
        ('"" "pw"\n', 1, "the user name is empty"),
        ('# c\n"a" "SCRAM-SHA-256$4096:bad"\n', 2, "SCRAM secret of user 'a' is malformed"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(UserlistError) as exc:
        parse_userlist(text, "/etc/multigres/userlist.txt")
    assert exc.value.line == line
    assert str(exc.value).startswith(f"/etc/multigres/userlist.txt:{line}: ")
    assert message in str(exc.value)


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserlistError, match=r"u\.txt:2: .*UTF-8"):
        parse_userlist(b'"a" "b"\n"\xff" "x"\n', "u.txt")
    missing = tmp_path / "nope.txt"
    with pytest.raises(UserlistError, match="cannot read the userlist"):
        load_userlist(missing)


def test_md5_looking_password_is_a_hash_as_in_pgbouncer() -> None:
    users = parse_userlist(f'"a" "{MD5}"\n"b" "md5-but-not-a-hash"\n')
    assert users["a"].kind is CredentialKind.MD5
    assert users["b"].kind is CredentialKind.PLAINTEXT


_field = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"))


@given(user=_field.filter(bool), secret=_field.filter(lambda s: not s.startswith("SCRAM-SHA-256$")))
def test_format_then_parse_round_trips(user: str, secret: str) -> None:
    line = format_userlist_line(user, secret)
    assert parse_userlist(line) == {user: Credential.from_stored(secret)}


def test_quoted_comment_characters_are_data() -> None:
    assert parse_userlist(format_userlist_line(";x", "#y")) == {";x": Credential.plaintext("#y")}
    with pytest.raises(ValueError):
        format_userlist_line("a\nb", "c")
