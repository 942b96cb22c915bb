"""Postgres's md5 password authentication: the stored hash, the salted response, the check.

Postgres stores ``"md5" + hex(md5(password + user))``. The server sends a 4-byte random salt and
the client answers ``"md5" + hex(md5(hex_part_of_stored_hash + salt))``. Knowing the stored hash
is enough to answer, which is what lets a pooler that holds only hashes (PgBouncer's userlist,
or pg_authid) log in to Postgres with md5 ("pass-through"), and also why md5 is weak.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

MD5_PREFIX = "md5"
MD5_HASH_LENGTH = 35  # "md5" + 32 hex digits
SALT_LENGTH = 4
_HEX_DIGITS = frozenset("0123456789abcdef")


def _to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def is_md5_hash(text: str) -> bool:
    """True for a stored md5 hash: "md5" and 32 lowercase hex digits, as Postgres decides."""
    return (
        len(text) == MD5_HASH_LENGTH
        and text.startswith(MD5_PREFIX)
        and all(ch in _HEX_DIGITS for ch in text[3:])
    )


def md5_password_hash(user: str | bytes, password: str | bytes) -> str:
    """What Postgres stores for ``password`` with password_encryption = md5."""
    digest = hashlib.md5(_to_bytes(password) + _to_bytes(user)).hexdigest()
    return MD5_PREFIX + digest


def make_salt() -> bytes:
    return secrets.token_bytes(SALT_LENGTH)


def md5_response_from_hash(stored_hash: str, salt: bytes) -> bytes:
    """The client's answer to an md5 challenge, computed from the stored hash."""
    if not is_md5_hash(stored_hash):
        raise ValueError("not an md5 password hash (expected md5 and 32 hex digits)")
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"the md5 salt is {SALT_LENGTH} bytes")
    return (MD5_PREFIX + hashlib.md5(stored_hash[3:].encode("ascii") + salt).hexdigest()).encode(
        "ascii"
    )


def md5_response(user: str | bytes, password: str | bytes, salt: bytes) -> bytes:
    """The client's answer to an md5 challenge (the PasswordMessage text, without the NUL)."""
    return md5_response_from_hash(md5_password_hash(user, password), salt)


def verify_md5_response(response: bytes, salt: bytes, stored_hash: str) -> bool:
    """Check a client's md5 answer against the stored hash (constant time)."""
    if not is_md5_hash(stored_hash):
        return False
    expected = md5_response_from_hash(stored_hash, salt)
    return hmac.compare_digest(bytes(response), expected)
