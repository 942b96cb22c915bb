"""Password authentication as the Postgres protocol runs it, for both sides of a connection.

``AuthExchange`` is the server side (a client logging in to us): given the method and the
user's stored credential, it says which Authentication requests to send and checks the
client's answers. ``ClientAuthExchange`` is the client side (us logging in to Postgres): it
answers the server's Authentication requests with a password, an md5 hash, or a ClientKey
learned from a client (pass-through).

Both are pure state machines over message payloads: the codec frames the messages, builds
their bytes and does the I/O. Outgoing requests are ``AuthRequest(code, data)``, the body of an
``R`` message; incoming answers are the payload of a ``p`` message.

The server side follows Postgres's rules, so that a client sees exactly what Postgres would
show it:
- a method asks for a kind of proof, the stored secret decides what can check it: with md5, a
  user whose secret is a SCRAM verifier gets SCRAM instead (md5 needs the md5 hash); with scram,
  a user with only an md5 hash fails;
- an unknown user is indistinguishable from a wrong password: the exchange runs to its end
  (a fake SCRAM exchange on a made-up verifier) and fails with 28P01 and
  ``password authentication failed for user "X"``;
- a malformed answer is a protocol violation (08P01).
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass

from multigres.wire.auth_errors import (
    UNABLE_TO_ESTABLISH_CONNECTION,
    AuthFailed,
    AuthProtocolError,
    password_failed,
)
from multigres.wire.md5 import (
    is_md5_hash,
    make_salt,
    md5_password_hash,
    md5_response,
    md5_response_from_hash,
    verify_md5_response,
)
from multigres.wire.scram import (
    MOCK_SECRET,
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ScramClient,
    ScramServer,
    ScramVerifier,
    make_verifier,
    select_mechanism,
)


class AuthMethod(enum.Enum):
    """How a client must prove who it is (pg_hba.conf's methods, PgBouncer's auth_type)."""

    TRUST = "trust"
    CLEARTEXT = "cleartext"
    MD5 = "md5"
    SCRAM = "scram-sha-256"

    @classmethod
    def parse(cls, text: str) -> AuthMethod:
        """From a flag or config value; accepts Postgres's and PgBouncer's spellings."""
        key = text.strip().lower()
        method = _METHOD_NAMES.get(key)
        if method is None:
            raise ValueError(
                f"unknown authentication method {text!r}: use trust, cleartext, md5 or scram"
            )
        return method


_METHOD_NAMES = {
    "trust": AuthMethod.TRUST,
    "cleartext": AuthMethod.CLEARTEXT,
    "password": AuthMethod.CLEARTEXT,
    "plain": AuthMethod.CLEARTEXT,
    "md5": AuthMethod.MD5,
    "scram": AuthMethod.SCRAM,
    "scram-sha-256": AuthMethod.SCRAM,
}


class CredentialKind(enum.Enum):
    PLAINTEXT = "plaintext"
    MD5 = "md5"
    SCRAM = "scram-sha-256"


class Credential:
    """A user's stored secret: a plaintext password, an md5 hash or a SCRAM verifier."""

    __slots__ = ("_verifier", "kind", "secret")

    def __init__(self, kind: CredentialKind, secret: str, verifier: ScramVerifier | None = None):
        self.kind = kind
        self.secret = secret
        self._verifier = verifier

    @classmethod
    def plaintext(cls, password: str) -> Credential:
        return cls(CredentialKind.PLAINTEXT, password)

    @classmethod
    def md5(cls, stored_hash: str) -> Credential:
        if not is_md5_hash(stored_hash):
            raise ValueError("not an md5 password hash (expected md5 and 32 hex digits)")
        return cls(CredentialKind.MD5, stored_hash)

    @classmethod
    def scram(cls, verifier: ScramVerifier | str) -> Credential:
        if isinstance(verifier, str):
            verifier = ScramVerifier.parse(verifier)
        return cls(CredentialKind.SCRAM, verifier.format(), verifier)

    @classmethod
    def from_stored(cls, text: str) -> Credential:
        """Classify a stored password as Postgres does (pg_authid, userlist): an md5 hash, a
        well-formed SCRAM verifier, and anything else is a plaintext password."""
        if is_md5_hash(text):
            return cls(CredentialKind.MD5, text)
        if ScramVerifier.looks_like(text):
            try:
                return cls.scram(text)
            except ValueError:
                pass
        return cls.plaintext(text)

    def scram_verifier(self) -> ScramVerifier | None:
        """The verifier to run SCRAM against; None for an md5 hash, which cannot.

        For a plaintext password a verifier is made once (random salt) and kept, so that
        PBKDF2 runs once per credential rather than once per login.
        """
        if self.kind is CredentialKind.MD5:
            return None
        if self._verifier is None:
            self._verifier = make_verifier(self.secret)
        return self._verifier

    def md5_hash(self, username: str) -> str | None:
        """The md5 hash to check an md5 answer against; None for a SCRAM verifier."""
        if self.kind is CredentialKind.MD5:
            return self.secret
        if self.kind is CredentialKind.PLAINTEXT:
            return md5_password_hash(username, self.secret)
        return None

    def __repr__(self) -> str:
        return f"Credential({self.kind.value})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credential):
            return NotImplemented
        return self.kind is other.kind and self.secret == other.secret

    def __hash__(self) -> int:
        return hash((self.kind, self.secret))


# -- messages ------------------------------------------------------------------------------------


class AuthCode(enum.IntEnum):
    """The first int32 of an Authentication (``R``) message."""

    OK = 0
    KERBEROS_V5 = 2
    CLEARTEXT_PASSWORD = 3
    MD5_PASSWORD = 5
    GSS = 7
    GSS_CONTINUE = 8
    SSPI = 9
    SASL = 10
    SASL_CONTINUE = 11
    SASL_FINAL = 12


_INT32 = struct.Struct("!i")


@dataclass(frozen=True)
class AuthRequest:
    """An Authentication message to send: ``code`` and the bytes that follow it."""

    code: int
    data: bytes = b""

    @classmethod
    def ok(cls) -> AuthRequest:
        return cls(AuthCode.OK)

    @classmethod
    def cleartext(cls) -> AuthRequest:
        return cls(AuthCode.CLEARTEXT_PASSWORD)

    @classmethod
    def md5(cls, salt: bytes) -> AuthRequest:
        return cls(AuthCode.MD5_PASSWORD, salt)

    @classmethod
    def sasl(cls, mechanisms: list[str]) -> AuthRequest:
        # Each name as a C string, and an empty name ends the list.
        return cls(AuthCode.SASL, b"".join(m.encode("ascii") + b"\0" for m in mechanisms) + b"\0")

    @classmethod
    def sasl_continue(cls, data: bytes) -> AuthRequest:
        return cls(AuthCode.SASL_CONTINUE, data)

    @classmethod
    def sasl_final(cls, data: bytes) -> AuthRequest:
        return cls(AuthCode.SASL_FINAL, data)

    def payload(self) -> bytes:
        """The body of the ``R`` message."""
        return _INT32.pack(self.code) + self.data

    def message(self) -> bytes:
        """The whole ``R`` message (the codec can also build it from ``payload()``)."""
        body = self.payload()
        return b"R" + _INT32.pack(len(body) + 4) + body


def parse_auth_request(payload: bytes) -> AuthRequest:
    """An ``R`` message's body, as the client side receives it."""
    if len(payload) < 4:
        raise AuthProtocolError("invalid authentication request from server: too short")
    (code,) = _INT32.unpack_from(payload)
    return AuthRequest(code, bytes(payload[4:]))


def parse_sasl_mechanisms(data: bytes) -> list[str]:
    """The mechanism names of an AuthenticationSASL request (C strings, then an empty one)."""
    names: list[str] = []
    pos = 0
    while True:
        end = data.find(b"\0", pos)
        if end < 0:
            raise AuthProtocolError("invalid SASL mechanism list from server: not terminated")
        if end == pos:
            break
        names.append(data[pos:end].decode("ascii", "replace"))
        pos = end + 1
    if pos + 1 != len(data):
        raise AuthProtocolError("invalid SASL mechanism list from server: data after the list")
    return names


def parse_password_message(payload: bytes) -> bytes:
    """The text of a PasswordMessage (cleartext password or md5 answer): one C string."""
    end = payload.find(b"\0")
    if end < 0 or end != len(payload) - 1:
        raise AuthProtocolError("invalid password packet size")
    return bytes(payload[:end])


def parse_sasl_initial_response(payload: bytes) -> tuple[str, bytes | None]:
    """SASLInitialResponse: the chosen mechanism, and its data (None when the length is -1)."""
    end = payload.find(b"\0")
    if end < 0 or len(payload) < end + 5:
        raise AuthProtocolError("malformed SASL message", detail="invalid message format")
    try:
        mechanism = payload[:end].decode("ascii")
    except UnicodeDecodeError:
        raise AuthProtocolError(
            "client selected an invalid SASL authentication mechanism"
        ) from None
    (length,) = _INT32.unpack_from(payload, end + 1)
    rest = bytes(payload[end + 5 :])
    if length == -1 and not rest:
        return mechanism, None
    if length != len(rest):
        raise AuthProtocolError("malformed SASL message", detail="invalid message format")
    return mechanism, rest


def password_message(password: bytes) -> bytes:
    """A PasswordMessage payload (cleartext password or md5 answer)."""
    return bytes(password) + b"\0"


def sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    """A SASLInitialResponse payload."""
    head = mechanism.encode("ascii") + b"\0"
    if data is None:
        return head + _INT32.pack(-1)
    return head + _INT32.pack(len(data)) + data


# -- the server side -----------------------------------------------------------------------------


class AuthExchange:
    """One client's login, server side.

    ``start()`` gives the first requests to send. While ``waiting`` is true, each ``p`` message
    from the client goes to ``feed``, which gives the next requests (ending with
    ``AuthRequest.ok()`` on success) or raises ``AuthFailed`` / ``AuthProtocolError``.

    ``credential`` is None when the user is unknown. ``cbind_data`` is the channel-binding
    data of our TLS certificate when the client connected with TLS (then SCRAM-SHA-256-PLUS
    is offered too). ``password_encryption`` picks, as Postgres's setting does, what an
    unknown user is challenged with under md5: a fake SCRAM exchange (the default) or md5.

    After success, ``password`` (cleartext method) and ``client_key`` (SCRAM, or cleartext
    against a verifier) let a pooler log in to Postgres as this user. ``client_key`` fits the
    credential's verifier; it logs in to Postgres only if Postgres holds the same verifier
    (an auth query), not one made here from a plaintext userlist entry.
    """

    def __init__(
        self,
        method: AuthMethod,
        username: str,
        credential: Credential | None,
        *,
        cbind_data: bytes | None = None,
        password_encryption: CredentialKind = CredentialKind.SCRAM,
        mock_secret: bytes = MOCK_SECRET,
        md5_salt: bytes | None = None,
    ) -> None:
        self.method = method
        self.username = username
        self.credential = credential
        # An empty password proves nothing: such a user is treated as having no secret (as
        # Postgres, which never stores one; a PgBouncer userlist may list "" for trust users).
        self._secret: Credential | None = credential
        if credential is not None and credential.kind is CredentialKind.PLAINTEXT:
            if not credential.secret:
                self._secret = None
        self._cbind_data = cbind_data
        self._password_encryption = password_encryption
        self._mock_secret = mock_secret
        self._md5_salt = md5_salt
        self._phase = "new"
        self._mechanisms: list[str] = []
        self._scram: ScramServer | None = None
        #: The method actually run (md5 becomes SCRAM for a user with a SCRAM verifier).
        self.method_used: AuthMethod | None = None
        #: After a successful cleartext login: the password the client sent.
        self.password: bytes | None = None
        #: After a successful SCRAM login (or cleartext against a verifier): the ClientKey.
        self.client_key: bytes | None = None
        #: After a successful SCRAM login: the server half, for its verifier's salt and keys.
        self.scram_server: ScramServer | None = None

    @property
    def done(self) -> bool:
        """True once the client is authenticated."""
        return self._phase == "done"

    @property
    def waiting(self) -> bool:
        """True while the exchange waits for a ``p`` message from the client."""
        return self._phase in ("password", "md5", "sasl-initial", "sasl-first", "sasl-final")

    def start(self) -> list[AuthRequest]:
        if self._phase != "new":
            raise RuntimeError("AuthExchange.start called twice")
        method, cred = self.method, self._secret
        if method is AuthMethod.TRUST:
            # The credential is not consulted: whether the user exists is the caller's call
            # (Postgres finds out when it looks up the role).
            return self._succeed(AuthMethod.TRUST, [])
        if method is AuthMethod.CLEARTEXT:
            self.method_used = method
            self._phase = "password"
            return [AuthRequest.cleartext()]
        if method is AuthMethod.MD5:
            if cred is None:
                use_md5 = self._password_encryption is CredentialKind.MD5
            else:
                use_md5 = cred.kind is not CredentialKind.SCRAM
            if use_md5:
                self.method_used = method
                self._phase = "md5"
                if self._md5_salt is None:
                    self._md5_salt = make_salt()
                return [AuthRequest.md5(self._md5_salt)]
        # SCRAM: asked for, or md5 for a user whose secret is a SCRAM verifier.
        self.method_used = AuthMethod.SCRAM
        self._phase = "sasl-initial"
        self._mechanisms = [SCRAM_SHA_256]
        if self._cbind_data is not None:
            # Listed first: a client that can bind prefers it, as libpq does.
            self._mechanisms.insert(0, SCRAM_SHA_256_PLUS)
        return [AuthRequest.sasl(self._mechanisms)]

    def feed(self, payload: bytes) -> list[AuthRequest]:
        """Take the payload of the client's ``p`` message; give the requests to send next."""
        phase = self._phase
        if not self.waiting:
            raise AuthProtocolError(
                "unexpected password message", detail=f"The authentication is {phase}."
            )
        self._phase = "failed"  # until this step succeeds
        if phase == "password":
            return self._check_cleartext(parse_password_message(payload))
        if phase == "md5":
            return self._check_md5(parse_password_message(payload))
        if phase == "sasl-initial":
            mechanism, data = parse_sasl_initial_response(payload)
            if mechanism not in self._mechanisms:
                raise AuthProtocolError("client selected an invalid SASL authentication mechanism")
            self._scram = self._make_scram_server(mechanism)
            if data is None:
                # A SASL client may send no initial response; it then answers an empty
                # challenge with client-first.
                self._phase = "sasl-first"
                return [AuthRequest.sasl_continue(b"")]
            return self._scram_first(data)
        if phase == "sasl-first":
            return self._scram_first(payload)
        assert phase == "sasl-final" and self._scram is not None
        server_final = self._scram.handle_client_final(_no_nul(payload))
        self.client_key = self._scram.client_key
        self.scram_server = self._scram
        return self._succeed(AuthMethod.SCRAM, [AuthRequest.sasl_final(server_final)])

    def _succeed(self, method: AuthMethod, out: list[AuthRequest]) -> list[AuthRequest]:
        self.method_used = method
        self._phase = "done"
        out.append(AuthRequest.ok())
        return out

    def _scram_first(self, data: bytes) -> list[AuthRequest]:
        assert self._scram is not None
        server_first = self._scram.handle_client_first(_no_nul(data))
        self._phase = "sasl-final"
        return [AuthRequest.sasl_continue(server_first)]

    def _make_scram_server(self, mechanism: str) -> ScramServer:
        cred = self._secret
        verifier = cred.scram_verifier() if cred is not None else None
        reason = self._no_secret_reason("does not have a valid SCRAM secret")
        return ScramServer(
            verifier,
            self.username,
            mechanism=mechanism,
            cbind_data=self._cbind_data,
            mock_secret=self._mock_secret,
            mock_reason=reason,
        )

    def _no_secret_reason(self, what: str) -> str:
        if self.credential is None:
            return f'Role "{self.username}" does not exist.'
        return f'User "{self.username}" {what}.'

    def _check_cleartext(self, password: bytes) -> list[AuthRequest]:
        cred = self._secret
        if not password:
            raise password_failed(self.username, "empty password returned by client")
        if cred is None:
            raise password_failed(self.username, self._no_secret_reason("has no password"))
        ok = False
        if cred.kind is CredentialKind.PLAINTEXT:
            ok = hmac.compare_digest(password, cred.secret.encode("utf-8"))
        elif cred.kind is CredentialKind.MD5:
            ok = hmac.compare_digest(
                md5_password_hash(self.username, password).encode("ascii"),
                cred.secret.encode("ascii"),
            )
        else:
            verifier = cred.scram_verifier()
            assert verifier is not None
            keys = verifier.keys_for(password)
            if keys is not None:
                ok = True
                self.client_key = keys.client_key
        if not ok:
            raise password_failed(self.username, "password does not match")
        self.password = password
        return self._succeed(AuthMethod.CLEARTEXT, [])

    def _check_md5(self, response: bytes) -> list[AuthRequest]:
        cred = self._secret
        stored = cred.md5_hash(self.username) if cred is not None else None
        assert self._md5_salt is not None
        if stored is None:
            raise password_failed(self.username, self._no_secret_reason("has no md5 password"))
        if not verify_md5_response(response, self._md5_salt, stored):
            raise password_failed(self.username, "md5 answer does not match")
        return self._succeed(AuthMethod.MD5, [])


def _no_nul(data: bytes) -> bytes:
    # Postgres reads SCRAM messages as C strings: an embedded NUL is a malformed message.
    if b"\0" in data:
        raise AuthProtocolError("malformed SCRAM message", detail="The message contains NUL.")
    return data


# -- the client side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScramPassThrough:
    """What a pooler needs to log in as a user whose password it never saw.

    ``client_key`` comes from the user's successful SCRAM proof (``AuthExchange.client_key``)
    or from a previous login; ``server_key`` lets us check the server's signature, and
    ``salt``/``iterations`` let us report a changed password clearly. All come from the same
    verifier that Postgres stores.
    """

    client_key: bytes
    server_key: bytes | None = None
    salt: bytes | None = None
    iterations: int | None = None

    @classmethod
    def from_exchange(cls, exchange: AuthExchange) -> ScramPassThrough | None:
        """The pass-through secret of a successful login against a stored SCRAM verifier.

        None otherwise: a plaintext credential's verifier is made up here (its own salt), so
        its ClientKey means nothing to Postgres; log in with the password instead.
        """
        cred = exchange.credential
        if exchange.client_key is None or cred is None or cred.kind is not CredentialKind.SCRAM:
            return None
        verifier = cred.scram_verifier()
        assert verifier is not None
        return cls(exchange.client_key, verifier.server_key, verifier.salt, verifier.iterations)

    def __repr__(self) -> str:
        return f"ScramPassThrough(iterations={self.iterations})"


class ClientAuthExchange:
    """Our login to a server (the pooler to Postgres), client side.

    Give it what is known about the user: a ``password``, an ``md5_hash`` (logs in with md5
    only), or a ``scram`` pass-through secret (logs in with SCRAM only). ``feed`` takes each
    Authentication request and returns the payload of the ``p`` message to answer with, or None
    when there is nothing to send. ``done`` turns true at AuthenticationOk.

    ``cbind_data`` is the channel-binding data of the server's certificate when the connection
    uses TLS; ``channel_binding`` is libpq's setting (disable, prefer, require).
    """

    def __init__(
        self,
        username: str,
        *,
        password: str | bytes | None = None,
        md5_hash: str | None = None,
        scram: ScramPassThrough | None = None,
        cbind_data: bytes | None = None,
        channel_binding: str = "prefer",
    ) -> None:
        if channel_binding not in ("disable", "prefer", "require"):
            raise ValueError(
                f"channel_binding must be disable, prefer or require: {channel_binding!r}"
            )
        self.username = username
        self._password = password
        self._md5_hash = md5_hash
        self._scram_secret = scram
        self._cbind_data = cbind_data
        self._channel_binding = channel_binding
        self._scram: ScramClient | None = None
        self.done = False
        #: The ScramClient once SASL ran (its keys can be kept for the next login).
        self.scram_client: ScramClient | None = None

    def _fail(self, message: str, detail: str | None = None) -> AuthFailed:
        return AuthFailed(message, sqlstate=UNABLE_TO_ESTABLISH_CONNECTION, detail=detail)

    def feed(self, request: AuthRequest) -> bytes | None:
        if self.done:
            raise AuthProtocolError("authentication request after AuthenticationOk")
        code = request.code
        if code == AuthCode.OK:
            if self._scram is not None and not self._scram.done:
                # A server that skips SASLFinal has not proven that it knows the secret.
                raise self._fail("server sent AuthenticationOk before finishing SCRAM")
            if self._channel_binding == "require" and (
                self._scram is None or self._scram.mechanism != SCRAM_SHA_256_PLUS
            ):
                raise self._fail(
                    "channel binding required, but server authenticated client without "
                    "channel binding"
                )
            self.done = True
            return None
        if self._channel_binding == "require" and code != AuthCode.SASL and self._scram is None:
            raise self._fail("channel binding is required, but the server asked for a password")
        if code == AuthCode.CLEARTEXT_PASSWORD:
            if self._password is None:
                raise self._fail(
                    "the server asks for a cleartext password, which is not known here",
                    "Configure the password itself for this user, not only a hash.",
                )
            pw = (
                self._password.encode("utf-8")
                if isinstance(self._password, str)
                else self._password
            )
            return password_message(pw)
        if code == AuthCode.MD5_PASSWORD:
            if len(request.data) != 4:
                raise AuthProtocolError(
                    "invalid md5 authentication request: the salt is not 4 bytes"
                )
            if self._password is not None:
                return password_message(md5_response(self.username, self._password, request.data))
            if self._md5_hash is not None:
                return password_message(md5_response_from_hash(self._md5_hash, request.data))
            raise self._fail(
                "the server asks for md5 authentication, but no password or md5 hash is known",
                "A SCRAM secret cannot answer md5; store the role's password with SCRAM.",
            )
        if code == AuthCode.SASL:
            if self._scram is not None:
                raise AuthProtocolError("duplicate SASL authentication request")
            mechanism = select_mechanism(
                parse_sasl_mechanisms(request.data), self._cbind_data, self._channel_binding
            )
            cbind = self._cbind_data if self._channel_binding != "disable" else None
            if self._password is not None:
                client = ScramClient(
                    self.username, self._password, mechanism=mechanism, cbind_data=cbind
                )
            elif self._scram_secret is not None:
                s = self._scram_secret
                client = ScramClient.from_client_key(
                    self.username,
                    s.client_key,
                    s.server_key,
                    salt=s.salt,
                    iterations=s.iterations,
                    mechanism=mechanism,
                    cbind_data=cbind,
                )
            else:
                raise self._fail(
                    "the server asks for SCRAM authentication, but no password or ClientKey "
                    "is known",
                    "An md5 hash cannot answer SCRAM.",
                )
            self._scram = self.scram_client = client
            return sasl_initial_response(mechanism, client.client_first())
        if code == AuthCode.SASL_CONTINUE:
            if self._scram is None:
                raise AuthProtocolError("SASLContinue without a SASL exchange")
            return self._scram.handle_server_first(request.data)
        if code == AuthCode.SASL_FINAL:
            if self._scram is None:
                raise AuthProtocolError("SASLFinal without a SASL exchange")
            self._scram.verify_server_final(request.data)
            return None
        raise self._fail(f"the server asks for an unsupported authentication method (code {code})")
