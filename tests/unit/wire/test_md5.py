"""md5 authentication: the stored hash, the salted answer, and its check."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres.wire.md5 import (
    is_md5_hash,
    make_salt,
    md5_password_hash,
    md5_response,
    md5_response_from_hash,
    verify_md5_response,
)

SALT = b"\x01\x02\x03\x04"


def test_stored_hash_is_md5_of_password_then_user() -> None:
    # What Postgres stores for user postgres, password postgres (password_encryption = md5).
    assert md5_password_hash("postgres", "postgres") == "md53175bce1d3201d16594cebf9d7eb3f9d"
    assert md5_password_hash("bob", "pw") == "md5" + hashlib.md5(b"pwbob").hexdigest()
    assert (
        md5_password_hash("b\u00f6b", "p\u00e4ss")
        == "md5" + hashlib.md5("p\u00e4ssb\u00f6b".encode()).hexdigest()
    )


def test_answer_is_md5_of_hash_then_salt() -> None:
    stored = md5_password_hash("bob", "pw")
    expected = "md5" + hashlib.md5(stored[3:].encode() + SALT).hexdigest()
    assert md5_response("bob", "pw", SALT) == expected.encode()
    # The stored hash answers as well as the password: md5 pass-through.
    assert md5_response_from_hash(stored, SALT) == expected.encode()


def test_verify_accepts_only_the_right_answer() -> None:
    stored = md5_password_hash("bob", "pw")
    assert verify_md5_response(md5_response("bob", "pw", SALT), SALT, stored)
    assert not verify_md5_response(md5_response("bob", "pw", SALT), b"\0\0\0\0", stored)
    assert not verify_md5_response(md5_response("bob", "other", SALT), SALT, stored)
    assert not verify_md5_response(md5_response("alice", "pw", SALT), SALT, stored)
    assert not verify_md5_response(b"", SALT, stored)
    assert not verify_md5_response(md5_response("bob", "pw", SALT), SALT, "not a hash")


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("md5" + "0123456789abcdef" * 2, True),
        ("md5" + "0123456789ABCDEF" * 2, False),  # Postgres writes lower case only
        ("md5" + "0" * 31, False),
        ("md5" + "0" * 33, False),
        ("MD5" + "0" * 32, False),
        ("md5" + "g" * 32, False),
        ("SCRAM-SHA-256$4096:x", False),
    ],
)
def test_is_md5_hash(text: str, ok: bool) -> None:
    assert is_md5_hash(text) is ok


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        md5_response_from_hash("plaintext", SALT)
    with pytest.raises(ValueError):
        md5_response("bob", "pw", b"\0\0\0")
    assert len(make_salt()) == 4


@given(
    user=st.text(max_size=20), password=st.text(max_size=20), salt=st.binary(min_size=4, max_size=4)
)
def test_round_trip(user: str, password: str, salt: bytes) -> None:
    stored = md5_password_hash(user, password)
    assert is_md5_hash(stored)
    assert verify_md5_response(md5_response(user, password, salt), salt, stored)
