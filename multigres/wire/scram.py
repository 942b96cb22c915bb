"""SCRAM-SHA-256 (RFC 5802 and RFC 7677) as Postgres speaks it: verifiers, server and client.

Pure functions and state machines over bytes, with no I/O: the protocol code feeds them the
SASL payloads it receives and sends what they return.

Postgres's dialect of SCRAM, which both sides follow here:
- the user name inside the SCRAM messages is ignored; the startup packet's user is the one that
  logs in (libpq sends an empty ``n=``);
- passwords go through SASLprep when they can, and are used as raw bytes when they cannot
  (invalid UTF-8, prohibited characters): see ``saslprep``;
- channel binding is ``tls-server-end-point`` only, offered as SCRAM-SHA-256-PLUS over TLS; a
  client that says ``y`` (it could bind, but thinks the server cannot) to a server that can is a
  downgrade and is refused;
- the server reports a failure as an ErrorResponse, never as ``e=`` in server-final.

Pass-through (PgBouncer calls it so): a server that knows only the verifier learns the
client's ClientKey from a successful proof (ClientKey = proof XOR ClientSignature), and a
``ScramClient.from_client_key`` can then log in to Postgres, which stores the same verifier, on
the client's behalf without ever knowing the password.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field

from multigres.wire.auth_errors import (
    INVALID_AUTHORIZATION_SPECIFICATION,
    UNABLE_TO_ESTABLISH_CONNECTION,
    AuthFailed,
    AuthProtocolError,
    password_failed,
)
from multigres.wire.randpool import random_bytes

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
CHANNEL_BINDING_TYPE = "tls-server-end-point"

# Postgres's defaults: 4096 iterations, 16 bytes of salt, 18 random bytes per nonce half.
DEFAULT_ITERATIONS = 4096
SALT_LENGTH = 16
NONCE_LENGTH = 18
KEY_LENGTH = 32
# Iterations are an int4 in Postgres; a bound also stops a hostile server-first from making a
# client spin in PBKDF2 for hours.
MAX_ITERATIONS = 2**31 - 1

VERIFIER_PREFIX = "SCRAM-SHA-256$"

# Seeds the salt of the fake exchange run for a user without a SCRAM secret, so that the same
# unknown user always sees the same salt, as a real user does (Postgres derives it from a
# per-cluster random nonce in the same way). Made at import, so it is shared by forked workers.
MOCK_SECRET = secrets.token_bytes(32)


# -- SASLprep (RFC 4013), with Postgres's fallbacks ----------------------------------------------


def _to_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        # surrogateescape gives back the bytes of a str that was decoded with it (os.environ,
        # file names); anything else is plain UTF-8.
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _prohibited(ch: str) -> bool:
    # RFC 4013 section 2.3: the prohibited output tables, plus unassigned code points (A.1),
    # which Postgres refuses too (stored passwords must normalize the same way forever).
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def saslprep(password: str | bytes) -> bytes:
    """The bytes a password contributes to SCRAM, exactly as Postgres and libpq compute them.

    Postgres applies SASLprep when it can and otherwise uses the password's raw bytes, so that
    any password works, even one that SASLprep refuses. Its quirks, kept here because a
    verifier made one way must match a proof made the other way:
    - pure ASCII passes unchanged (control characters included);
    - invalid UTF-8, an empty result, a prohibited character or bad bidi text: the raw bytes;
    - the prohibited and bidi checks look at the mapped input, not at the normalized output.
    """
    raw = _to_bytes(password)
    if raw.isascii():
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    # Map: non-ASCII spaces become a space, "commonly mapped to nothing" characters go away.
    mapped = [
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    ]
    if not mapped:
        return raw
    if any(_prohibited(ch) for ch in mapped):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in mapped):
        # RFC 3454 section 6: right-to-left text must not mix in left-to-right characters and
        # must begin and end with a right-to-left character.
        if any(stringprep.in_table_d2(ch) for ch in mapped):
            return raw
        if not (stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1])):
            return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode("utf-8")


# -- key derivation ------------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


_BLOCK = 64  # SHA-256's block size


@functools.lru_cache(maxsize=4096)
def _hmac_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the inner and outer padded key: an HMAC under a key used often
    (a verifier's StoredKey and ServerKey, twice per login) costs two copies and two
    updates instead of a keyed setup (RFC 2104)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _hmac_stored(key: bytes, msg: bytes) -> bytes:
    """``_hmac`` for a key that is stored and used again (a verifier's keys)."""
    inner, outer = _hmac_pads(key)
    i = inner.copy()
    i.update(msg)
    o = outer.copy()
    o.update(i.digest())
    return o.digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class ScramKeys:
    """ClientKey and ServerKey of a password for one salt and iteration count."""

    client_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    @classmethod
    def from_password(cls, password: str | bytes, salt: bytes, iterations: int) -> ScramKeys:
        # PBKDF2 is the whole cost of SCRAM (about 1 ms for 4096 iterations): callers that log
        # in repeatedly with one password should keep the keys (see ScramClient.from_client_key).
        salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
        return cls(_hmac(salted, b"Client Key"), _hmac(salted, b"Server Key"))

    @property
    def stored_key(self) -> bytes:
        return _h(self.client_key)


@dataclass(frozen=True)
class ScramVerifier:
    """What Postgres stores in pg_authid.rolpassword for a SCRAM password.

    Text form: ``SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>``. The
    keys allow an offline guess of the password, so they stay out of ``repr``.
    """

    iterations: int
    salt: bytes = field(repr=False)
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    @staticmethod
    def looks_like(text: str) -> bool:
        """True when ``text`` claims to be a SCRAM-SHA-256 verifier (it may still be malformed)."""
        return text.startswith(VERIFIER_PREFIX)

    @classmethod
    def parse(cls, text: str) -> ScramVerifier:
        """Parse the text form; ``ValueError`` says what is wrong with it."""
        if not cls.looks_like(text):
            raise ValueError(f"a SCRAM verifier starts with {VERIFIER_PREFIX!r}")
        body = text[len(VERIFIER_PREFIX) :]
        params, sep, keys = body.partition("$")
        iter_text, sep1, salt_text = params.partition(":")
        stored_text, sep2, server_text = keys.partition(":")
        if not (sep and sep1 and sep2):
            raise ValueError("expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
        if not iter_text.isascii() or not iter_text.isdigit():
            raise ValueError(f"iteration count {iter_text!r} is not a number")
        iterations = int(iter_text)
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"iteration count {iterations} is out of range")
        salt = _b64decode(salt_text, "salt")
        if not salt:
            raise ValueError("the salt is empty")
        stored_key = _b64decode(stored_text, "StoredKey")
        server_key = _b64decode(server_text, "ServerKey")
        if len(stored_key) != KEY_LENGTH or len(server_key) != KEY_LENGTH:
            raise ValueError(f"StoredKey and ServerKey must be {KEY_LENGTH} bytes each")
        return cls(iterations, salt, stored_key, server_key)

    def format(self) -> str:
        return (
            f"{VERIFIER_PREFIX}{self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    def __str__(self) -> str:
        return self.format()

    def keys_for(self, password: str | bytes) -> ScramKeys | None:
        """The password's keys when it matches this verifier, else None (cleartext auth)."""
        keys = ScramKeys.from_password(password, self.salt, self.iterations)
        # Both keys, as Postgres checks: a verifier is only matched by its own password.
        ok = hmac.compare_digest(keys.stored_key, self.stored_key) & hmac.compare_digest(
            keys.server_key, self.server_key
        )
        return keys if ok else None

    def verify_password(self, password: str | bytes) -> bool:
        return self.keys_for(password) is not None


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise ValueError(f"the {what} is not valid base64") from e


def make_verifier(
    password: str | bytes, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramVerifier:
    """The verifier Postgres would store for ``password`` (a fresh random salt by default)."""
    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    if not salt:
        raise ValueError("the salt must not be empty")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iteration count {iterations} is out of range")
    keys = ScramKeys.from_password(password, salt, iterations)
    return ScramVerifier(iterations, salt, keys.stored_key, keys.server_key)


def _mock_verifier(username: str, mock_secret: bytes) -> ScramVerifier:
    salt = _hmac(mock_secret, _to_bytes(username))[:SALT_LENGTH]
    # Random keys: no proof can match them.
    return ScramVerifier(
        DEFAULT_ITERATIONS, salt, secrets.token_bytes(KEY_LENGTH), secrets.token_bytes(KEY_LENGTH)
    )


# -- message parsing -------------------------------------------------------------------------------


def _malformed(detail: str) -> AuthProtocolError:
    return AuthProtocolError("malformed SCRAM message", detail=detail)


def _decode(data: bytes) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("The message is not valid UTF-8.") from None


def _attr(part: str, name: str) -> str:
    """The value of ``name=value``, or a malformed-message error naming what was expected."""
    if len(part) < 2 or part[0] != name or part[1] != "=":
        found = part[:1] or "end of input"
        raise _malformed(f'Expected attribute "{name}" but found "{found}".')
    return part[2:]


def _check_extension(part: str) -> None:
    # Optional extensions (attr=value) may follow; they carry no meaning for us.
    if len(part) < 2 or not (part[0].isascii() and part[0].isalpha()) or part[1] != "=":
        raise _malformed(f'Attribute expected, but found invalid text "{part[:20]}".')


# RFC 5802: a nonce is printable ASCII except ",".
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")


def _check_nonce(nonce: str) -> None:
    if _NONCE.fullmatch(nonce) is None:
        raise _malformed("The nonce contains invalid characters.")


def _b64_attr(value: str, what: str) -> bytes:
    try:
        return _b64decode(value, what)
    except ValueError:
        raise _malformed(f"Malformed {what}.") from None


def _escape_saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


# -- server ----------------------------------------------------------------------------------------


class ScramServer:
    """The server half of one SCRAM-SHA-256 exchange.

    ``secret`` is a stored verifier, a plaintext password (a verifier is made from it with a
    fresh salt), or None: the user does not exist or has no SCRAM secret. With None the
    exchange runs to the end on a fake verifier and fails there, as Postgres does, so a client
    cannot tell an unknown user from a wrong password. ``cbind_data`` is the channel-binding
    data of our TLS certificate (``multigres.wire.tls.channel_binding_data``) when the
    connection uses TLS; ``mechanism`` is the one the client chose.
    """

    def __init__(
        self,
        secret: ScramVerifier | str | bytes | None,
        username: str,
        *,
        mechanism: str = SCRAM_SHA_256,
        cbind_data: bytes | None = None,
        mock_secret: bytes = MOCK_SECRET,
        mock_reason: str = "no SCRAM secret for this user",
        nonce: str | None = None,
    ) -> None:
        if mechanism not in (SCRAM_SHA_256, SCRAM_SHA_256_PLUS):
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}")
        if mechanism == SCRAM_SHA_256_PLUS and cbind_data is None:
            raise ValueError(f"{SCRAM_SHA_256_PLUS} needs the channel-binding data")
        self.username = username
        self.mechanism = mechanism
        self._cbind_data = cbind_data
        self._mock_reason: str | None = None
        if secret is None:
            self._mock_reason = mock_reason
            self.verifier = _mock_verifier(username, mock_secret)
        elif isinstance(secret, ScramVerifier):
            self.verifier = secret
        else:
            self.verifier = make_verifier(secret)
        self._server_nonce_part = nonce or _b64(random_bytes(NONCE_LENGTH))
        self._state = "client-first"
        self._gs2_header = ""
        self._binds = False
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        #: The client's ClientKey, known once its proof checked out: for pass-through.
        self.client_key: bytes | None = None

    @property
    def done(self) -> bool:
        """True once the client's proof checked out."""
        return self._state == "done"

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise AuthProtocolError(
                "unexpected SCRAM message", detail=f"The exchange is at {self._state}."
            )

    def handle_client_first(self, data: bytes) -> bytes:
        """Read client-first-message and return server-first-message."""
        self._expect("client-first")
        self._state = "failed"
        text = _decode(data)
        flag, sep, rest = text.partition(",")
        if not sep:
            raise _malformed("Unexpected end of input.")
        self._check_cbind_flag(flag)
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise _malformed("Unexpected end of input.")
        if authzid:
            if authzid.startswith("a="):
                raise AuthProtocolError(
                    "client uses authorization identity, but it is not supported"
                )
            raise _malformed(f'Unexpected attribute "{authzid[:1]}" in client-first-message.')
        self._gs2_header = f"{flag},{authzid},"
        parts = bare.split(",")
        if parts[0].startswith("m="):
            raise AuthProtocolError("client requires an unsupported SCRAM extension")
        _attr(parts[0], "n")  # ignored: the startup packet's user logs in (as in Postgres)
        client_nonce = _attr(parts[1] if len(parts) > 1 else "", "r")
        _check_nonce(client_nonce)
        for part in parts[2:]:
            _check_extension(part)
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce_part
        v = self.verifier
        self._server_first = f"r={self._nonce},s={_b64(v.salt)},i={v.iterations}"
        self._state = "client-final"
        return self._server_first.encode("ascii")

    def _check_cbind_flag(self, flag: str) -> None:
        plus = self.mechanism == SCRAM_SHA_256_PLUS
        if flag == "n" or flag == "y":
            if plus:
                raise AuthProtocolError(
                    "malformed SCRAM message",
                    detail=f"The client selected {SCRAM_SHA_256_PLUS}, but the SCRAM message "
                    "does not include channel binding data.",
                )
            if flag == "y" and self._cbind_data is not None:
                # The client could bind and believes we cannot, yet we offered -PLUS: someone
                # between us removed it from the mechanism list.
                raise AuthProtocolError(
                    "SCRAM channel binding negotiation error",
                    detail="The client supports SCRAM channel binding but thinks the server "
                    "does not. However, this server does support channel binding.",
                )
        elif flag.startswith("p="):
            if not plus:
                raise AuthProtocolError(
                    "malformed SCRAM message",
                    detail=f"The client selected {SCRAM_SHA_256} without channel binding, but "
                    "the SCRAM message includes channel binding data.",
                )
            if flag[2:] != CHANNEL_BINDING_TYPE:
                raise AuthProtocolError(
                    "unsupported SCRAM channel-binding type",
                    detail=f'"{flag[2:]}" is not supported; use "{CHANNEL_BINDING_TYPE}".',
                )
            self._binds = True
        else:
            raise _malformed(f'Unexpected channel-binding flag "{flag[:20]}".')

    def handle_client_final(self, data: bytes) -> bytes:
        """Check client-final-message's proof and return server-final-message.

        Raises ``AuthProtocolError`` (08P01) for a malformed message or a wrong nonce,
        ``AuthFailed`` 28000 for channel binding data that does not match, and ``AuthFailed``
        28P01 (the message Postgres gives) for a wrong proof or a user without a secret.
        """
        self._expect("client-final")
        self._state = "failed"
        text = _decode(data)
        parts = text.split(",")
        cbind = _b64_attr(_attr(parts[0], "c"), "channel binding")
        expected = self._gs2_header.encode("ascii")
        if self._binds:
            assert self._cbind_data is not None
            expected += self._cbind_data
        if not hmac.compare_digest(cbind, expected):
            # 28000 as in Postgres: most likely someone between us terminated TLS.
            raise AuthFailed(
                "SCRAM channel binding check failed",
                sqlstate=INVALID_AUTHORIZATION_SPECIFICATION,
                log_detail="the channel binding data does not match this connection",
            )
        nonce = _attr(parts[1] if len(parts) > 1 else "", "r")
        if nonce != self._nonce:
            raise _malformed("Nonce does not match.")
        if len(parts) < 3:
            raise _malformed('Expected attribute "p" but found "end of input".')
        for part in parts[2:-1]:
            _check_extension(part)
        proof = _b64_attr(_attr(parts[-1], "p"), "proof")
        if len(proof) != KEY_LENGTH:
            raise _malformed("Malformed proof in client-final-message.")
        without_proof = text[: len(text) - len(parts[-1]) - 1]
        auth_message = ",".join(
            (self._client_first_bare, self._server_first, without_proof)
        ).encode("utf-8")
        v = self.verifier
        client_key = _xor(proof, _hmac_stored(v.stored_key, auth_message))
        # A fake exchange does the same work as a real one: no timing tells them apart.
        matches = hmac.compare_digest(_h(client_key), v.stored_key)
        if self._mock_reason is not None:
            raise password_failed(self.username, self._mock_reason)
        if not matches:
            raise password_failed(self.username, "the SCRAM proof does not match the verifier")
        self.client_key = client_key
        self._state = "done"
        return f"v={_b64(_hmac_stored(v.server_key, auth_message))}".encode("ascii")


# -- client ----------------------------------------------------------------------------------------


def select_mechanism(
    offered: list[str], cbind_data: bytes | None, channel_binding: str = "prefer"
) -> str:
    """The mechanism a client picks from AuthenticationSASL's list, as libpq does.

    ``channel_binding`` is libpq's setting: ``disable``, ``prefer`` (bind when we use TLS and
    the server offers -PLUS) or ``require``. ``cbind_data`` is None without TLS.
    """
    if channel_binding not in ("disable", "prefer", "require"):
        raise ValueError(f"channel_binding must be disable, prefer or require: {channel_binding!r}")
    if channel_binding != "disable" and cbind_data is not None and SCRAM_SHA_256_PLUS in offered:
        return SCRAM_SHA_256_PLUS
    if channel_binding == "require":
        raise AuthFailed(
            "channel binding is required, but the server did not offer it",
            sqlstate=UNABLE_TO_ESTABLISH_CONNECTION,
            detail=f"offered: {', '.join(offered) or 'nothing'}; TLS: {cbind_data is not None}",
        )
    if SCRAM_SHA_256 in offered:
        return SCRAM_SHA_256
    raise AuthFailed(
        "none of the server's SASL authentication mechanisms are supported",
        sqlstate=UNABLE_TO_ESTABLISH_CONNECTION,
        detail=f"offered: {', '.join(offered) or 'nothing'}",
    )


class ScramClient:
    """The client half of one SCRAM-SHA-256 exchange.

    Made from a password, or (pass-through) from a ClientKey with ``from_client_key``.
    ``cbind_data`` is the channel-binding data of the server's TLS certificate when the
    connection uses TLS: with ``mechanism`` SCRAM-SHA-256-PLUS it is bound, otherwise the
    client says ``y`` (it could bind, the server did not offer to).
    """

    def __init__(
        self,
        username: str,
        password: str | bytes,
        *,
        mechanism: str = SCRAM_SHA_256,
        cbind_data: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        if mechanism not in (SCRAM_SHA_256, SCRAM_SHA_256_PLUS):
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}")
        if mechanism == SCRAM_SHA_256_PLUS and cbind_data is None:
            raise ValueError(f"{SCRAM_SHA_256_PLUS} needs the channel-binding data")
        self.username = username
        self.mechanism = mechanism
        self._password = password
        self._cbind_data = cbind_data
        if mechanism == SCRAM_SHA_256_PLUS:
            self._gs2_header = f"p={CHANNEL_BINDING_TYPE},,"
        elif cbind_data is not None:
            self._gs2_header = "y,,"
        else:
            self._gs2_header = "n,,"
        self._client_nonce = nonce or _b64(random_bytes(NONCE_LENGTH))
        _check_nonce(self._client_nonce)
        self._client_first_bare = f"n={_escape_saslname(username)},r={self._client_nonce}"
        self._known_client_key: bytes | None = None
        self._expect_salt: bytes | None = None
        self._expect_iterations: int | None = None
        self._state = "client-first"
        self._server_signature: bytes | None = None
        #: From server-first: the salt and iteration count of the server's verifier.
        self.salt: bytes | None = None
        self.iterations: int | None = None
        #: Known after handle_server_first: keep them (with salt and iterations) to log in
        #: again without PBKDF2, through from_client_key.
        self.client_key: bytes | None = None
        self.server_key: bytes | None = None

    @classmethod
    def from_client_key(
        cls,
        username: str,
        client_key: bytes,
        server_key: bytes | None = None,
        *,
        salt: bytes | None = None,
        iterations: int | None = None,
        mechanism: str = SCRAM_SHA_256,
        cbind_data: bytes | None = None,
        nonce: str | None = None,
    ) -> ScramClient:
        """A client that proves knowledge of ``client_key`` instead of a password.

        Without ``server_key`` the server's signature cannot be checked (the server is not
        authenticated; only its message format is). ``salt``/``iterations``, when given, are
        what the key was made for: a server that sends others has another secret (the password
        changed), which is reported clearly rather than as a failed proof.
        """
        if len(client_key) != KEY_LENGTH:
            raise ValueError(f"a ClientKey is {KEY_LENGTH} bytes")
        if server_key is not None and len(server_key) != KEY_LENGTH:
            raise ValueError(f"a ServerKey is {KEY_LENGTH} bytes")
        client = cls(username, b"", mechanism=mechanism, cbind_data=cbind_data, nonce=nonce)
        client._known_client_key = client_key
        client.server_key = server_key
        client._expect_salt = salt
        client._expect_iterations = iterations
        return client

    @classmethod
    def from_keys(
        cls,
        username: str,
        keys: ScramKeys,
        *,
        mechanism: str = SCRAM_SHA_256,
        cbind_data: bytes | None = None,
        nonce: str | None = None,
    ) -> ScramClient:
        """A client from both keys: it authenticates the server too."""
        return cls.from_client_key(
            username,
            keys.client_key,
            keys.server_key,
            mechanism=mechanism,
            cbind_data=cbind_data,
            nonce=nonce,
        )

    @property
    def done(self) -> bool:
        """True once server-final was verified."""
        return self._state == "done"

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise AuthProtocolError(
                "unexpected SCRAM message", detail=f"The exchange is at {self._state}."
            )

    def client_first(self) -> bytes:
        """client-first-message: the data of SASLInitialResponse."""
        self._expect("client-first")
        self._state = "server-first"
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def handle_server_first(self, data: bytes) -> bytes:
        """Read server-first-message (SASLContinue) and return client-final-message."""
        self._expect("server-first")
        self._state = "failed"
        text = _decode(data)
        parts = text.split(",")
        if parts[0].startswith("m="):
            raise AuthProtocolError("server requires an unsupported SCRAM extension")
        nonce = _attr(parts[0], "r")
        _check_nonce(nonce)
        if not nonce.startswith(self._client_nonce) or len(nonce) == len(self._client_nonce):
            raise _malformed("The server's nonce does not extend the client's nonce.")
        salt = _b64_attr(_attr(parts[1] if len(parts) > 1 else "", "s"), "salt")
        if not salt:
            raise _malformed("The salt is empty.")
        iter_text = _attr(parts[2] if len(parts) > 2 else "", "i")
        if not (iter_text.isascii() and iter_text.isdigit()) or not (
            1 <= int(iter_text) <= MAX_ITERATIONS
        ):
            raise _malformed(f'Invalid iteration count "{iter_text[:20]}".')
        iterations = int(iter_text)
        for part in parts[3:]:
            _check_extension(part)
        self.salt, self.iterations = salt, iterations
        if self._known_client_key is not None:
            if (self._expect_salt is not None and self._expect_salt != salt) or (
                self._expect_iterations is not None and self._expect_iterations != iterations
            ):
                raise AuthFailed(
                    "the server's SCRAM secret differs from the one the ClientKey was made for",
                    sqlstate=UNABLE_TO_ESTABLISH_CONNECTION,
                    detail="The password was probably changed; fetch the verifier again.",
                )
            self.client_key = self._known_client_key
        else:
            keys = ScramKeys.from_password(self._password, salt, iterations)
            self.client_key, self.server_key = keys.client_key, keys.server_key
        cbind = self._gs2_header.encode("ascii")
        if self.mechanism == SCRAM_SHA_256_PLUS:
            assert self._cbind_data is not None
            cbind += self._cbind_data
        without_proof = f"c={_b64(cbind)},r={nonce}"
        auth_message = ",".join((self._client_first_bare, text, without_proof)).encode("utf-8")
        proof = _xor(self.client_key, _hmac(_h(self.client_key), auth_message))
        if self.server_key is not None:
            self._server_signature = _hmac(self.server_key, auth_message)
        self._state = "server-final"
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify_server_final(self, data: bytes) -> None:
        """Check server-final-message (SASLFinal): the server proves it knows the verifier."""
        self._expect("server-final")
        self._state = "failed"
        text = _decode(data)
        parts = text.split(",")
        if parts[0].startswith("e="):
            raise AuthFailed(
                "the server rejected the SCRAM exchange",
                sqlstate=UNABLE_TO_ESTABLISH_CONNECTION,
                detail=parts[0][2:200],
            )
        signature = _b64_attr(_attr(parts[0], "v"), "server signature")
        for part in parts[1:]:
            _check_extension(part)
        if self._server_signature is not None and not hmac.compare_digest(
            signature, self._server_signature
        ):
            raise AuthFailed(
                "invalid SCRAM server signature",
                sqlstate=UNABLE_TO_ESTABLISH_CONNECTION,
                detail="The server does not know this user's SCRAM secret.",
            )
        self._state = "done"
