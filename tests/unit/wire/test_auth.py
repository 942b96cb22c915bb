"""The server-side login policy (AuthExchange) and our client side (ClientAuthExchange).

The two are run against each other through the message payloads the codec would carry, and
the server side's answers are compared with what Postgres does for each method and secret.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres.wire.auth import (
    AuthCode,
    AuthExchange,
    AuthMethod,
    AuthRequest,
    ClientAuthExchange,
    Credential,
    CredentialKind,
    ScramPassThrough,
    parse_auth_request,
    parse_password_message,
    parse_sasl_initial_response,
    parse_sasl_mechanisms,
    password_message,
    sasl_initial_response,
)
from multigres.wire.auth_errors import AuthFailed, AuthProtocolError
from multigres.wire.md5 import md5_password_hash, md5_response
from multigres.wire.scram import SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, make_verifier

PASSWORD = "correct horse"
CBIND = hashlib.sha256(b"our certificate").digest()


def credential(kind: str) -> Credential | None:
    if kind == "plaintext":
        return Credential.plaintext(PASSWORD)
    if kind == "md5":
        return Credential.md5(md5_password_hash("bob", PASSWORD))
    if kind == "scram":
        return Credential.scram(make_verifier(PASSWORD, iterations=500))
    return None


def login(server: AuthExchange, client: ClientAuthExchange) -> list[int]:
    """Run a login to its end through payload bytes; return the request codes the server sent."""
    codes: list[int] = []
    requests = server.start()
    while True:
        answer = None
        for request in requests:
            codes.append(request.code)
            # Through bytes, as the codec carries them.
            got = client.feed(parse_auth_request(request.payload()))
            answer = got if got is not None else answer
        if server.done:
            assert client.done
            return codes
        assert answer is not None and server.waiting
        requests = server.feed(answer)


# -- what each method does with each kind of secret -------------------------------------------

OK, FAIL = "ok", "fail"
MATRIX = [
    # method, stored secret, requests the client sees first, outcome with the right password
    (AuthMethod.TRUST, "plaintext", AuthCode.OK, OK),
    (AuthMethod.TRUST, "unknown", AuthCode.OK, OK),
    (AuthMethod.CLEARTEXT, "plaintext", AuthCode.CLEARTEXT_PASSWORD, OK),
    (AuthMethod.CLEARTEXT, "md5", AuthCode.CLEARTEXT_PASSWORD, OK),
    (AuthMethod.CLEARTEXT, "scram", AuthCode.CLEARTEXT_PASSWORD, OK),
    (AuthMethod.CLEARTEXT, "unknown", AuthCode.CLEARTEXT_PASSWORD, FAIL),
    (AuthMethod.MD5, "plaintext", AuthCode.MD5_PASSWORD, OK),
    (AuthMethod.MD5, "md5", AuthCode.MD5_PASSWORD, OK),
    (AuthMethod.MD5, "scram", AuthCode.SASL, OK),  # md5 cannot check a verifier: SCRAM
    (AuthMethod.MD5, "unknown", AuthCode.SASL, FAIL),  # as password_encryption=scram-sha-256
    (AuthMethod.SCRAM, "plaintext", AuthCode.SASL, OK),
    (AuthMethod.SCRAM, "scram", AuthCode.SASL, OK),
    (AuthMethod.SCRAM, "md5", AuthCode.SASL, FAIL),  # an md5 hash cannot answer SCRAM
    (AuthMethod.SCRAM, "unknown", AuthCode.SASL, FAIL),
]


@pytest.mark.parametrize(("method", "kind", "first_code", "outcome"), MATRIX)
def test_method_and_secret_matrix(
    method: AuthMethod, kind: str, first_code: int, outcome: str
) -> None:
    server = AuthExchange(method, "bob", credential(kind))
    client = ClientAuthExchange("bob", password=PASSWORD)
    if outcome == OK:
        codes = login(server, client)
        assert codes[0] == first_code and codes[-1] == AuthCode.OK
        return
    with pytest.raises(AuthFailed) as exc:
        login(server, client)
    assert type(exc.value) is AuthFailed
    assert exc.value.sqlstate == "28P01"
    assert exc.value.message == 'password authentication failed for user "bob"'
    assert not server.done and not server.waiting


@pytest.mark.parametrize(("method", "kind", "first_code", "outcome"), MATRIX)
def test_wrong_password_always_fails_the_same_way(
    method: AuthMethod, kind: str, first_code: int, outcome: str
) -> None:
    if method is AuthMethod.TRUST:
        return
    server = AuthExchange(method, "bob", credential(kind))
    with pytest.raises(AuthFailed) as exc:
        login(server, ClientAuthExchange("bob", password="wrong"))
    assert exc.value.sqlstate == "28P01"
    assert str(exc.value.message) == 'password authentication failed for user "bob"'


def test_unknown_user_cannot_be_told_from_a_wrong_password() -> None:
    def transcript(cred: Credential | None) -> tuple[list[int], dict[str, str], AuthFailed]:
        server = AuthExchange(AuthMethod.SCRAM, "bob", cred)
        (sasl,) = server.start()
        client = ScramClient("bob", "guess")
        (cont,) = server.feed(sasl_initial_response(SCRAM_SHA_256, client.client_first()))
        fields = dict(p.split("=", 1) for p in cont.data.decode().split(","))
        with pytest.raises(AuthFailed) as exc:
            server.feed(client.handle_server_first(cont.data))
        return [sasl.code, cont.code], fields, exc.value

    real_codes, real, real_err = transcript(Credential.scram(make_verifier(PASSWORD)))
    ghost_codes, ghost, ghost_err = transcript(None)
    _, ghost_again, _ = transcript(None)
    assert real_codes == ghost_codes == [AuthCode.SASL, AuthCode.SASL_CONTINUE]
    assert real["i"] == ghost["i"]
    assert len(base64.b64decode(real["s"])) == len(base64.b64decode(ghost["s"]))
    assert ghost["s"] == ghost_again["s"]  # stable, like a real user's salt
    assert (real_err.sqlstate, real_err.message) == (ghost_err.sqlstate, ghost_err.message)
    assert ghost_err.log_detail == 'Role "bob" does not exist.'


def test_md5_for_unknown_user_can_follow_password_encryption_md5() -> None:
    server = AuthExchange(AuthMethod.MD5, "bob", None, password_encryption=CredentialKind.MD5)
    (request,) = server.start()
    assert request.code == AuthCode.MD5_PASSWORD and len(request.data) == 4
    with pytest.raises(AuthFailed):
        server.feed(password_message(md5_response("bob", PASSWORD, request.data)))


@pytest.mark.parametrize("method", [AuthMethod.CLEARTEXT, AuthMethod.MD5, AuthMethod.SCRAM])
def test_an_empty_stored_password_lets_nobody_in(method: AuthMethod) -> None:
    # A PgBouncer userlist may list "" for users of trust auth.
    server = AuthExchange(method, "bob", Credential.plaintext(""))
    client = ClientAuthExchange("bob", password="")
    with pytest.raises(AuthFailed) as exc:
        login(server, client)
    assert exc.value.sqlstate == "28P01"


def test_success_tells_what_a_pooler_can_log_in_with() -> None:
    verifier = make_verifier(PASSWORD)
    cleartext = AuthExchange(AuthMethod.CLEARTEXT, "bob", Credential.scram(verifier))
    login(cleartext, ClientAuthExchange("bob", password=PASSWORD))
    assert cleartext.method_used is AuthMethod.CLEARTEXT
    assert cleartext.password == PASSWORD.encode()
    assert cleartext.client_key is not None

    scram = AuthExchange(AuthMethod.MD5, "bob", Credential.scram(verifier))
    login(scram, ClientAuthExchange("bob", password=PASSWORD))
    assert scram.method_used is AuthMethod.SCRAM
    assert scram.password is None
    assert scram.client_key == cleartext.client_key
    assert scram.scram_server is not None and scram.scram_server.verifier == verifier


def test_scram_pass_through_end_to_end() -> None:
    verifier = make_verifier(PASSWORD)
    # The application logs in to the pooler, which knows the verifier from Postgres.
    front = AuthExchange(AuthMethod.SCRAM, "bob", Credential.scram(verifier))
    login(front, ClientAuthExchange("bob", password=PASSWORD))
    secret = ScramPassThrough.from_exchange(front)
    assert secret is not None and secret.salt == verifier.salt
    assert secret.client_key.hex() not in repr(secret) and "client_key" not in repr(secret)
    # The pooler logs in to "Postgres" (here another exchange on the same verifier).
    back = AuthExchange(AuthMethod.SCRAM, "bob", Credential.scram(verifier))
    client = ClientAuthExchange("bob", scram=secret)
    login(back, client)
    assert client.scram_client is not None and client.scram_client.done
    # md5 cannot be answered with a ClientKey: a clear error, not a failed login.
    md5_server = AuthExchange(AuthMethod.MD5, "bob", Credential.plaintext(PASSWORD))
    with pytest.raises(AuthFailed, match="md5") as exc:
        login(md5_server, ClientAuthExchange("bob", scram=secret))
    assert exc.value.sqlstate == "08001"


def test_no_pass_through_secret_from_a_plaintext_credential() -> None:
    # Its verifier is made up here, with a salt Postgres has never seen.
    front = AuthExchange(AuthMethod.SCRAM, "bob", Credential.plaintext(PASSWORD))
    login(front, ClientAuthExchange("bob", password=PASSWORD))
    assert front.client_key is not None
    assert ScramPassThrough.from_exchange(front) is None


def test_md5_pass_through_with_the_stored_hash() -> None:
    stored = md5_password_hash("bob", PASSWORD)
    server = AuthExchange(AuthMethod.MD5, "bob", Credential.plaintext(PASSWORD))
    login(server, ClientAuthExchange("bob", md5_hash=stored))
    with pytest.raises(AuthFailed, match="cleartext"):
        login(
            AuthExchange(AuthMethod.CLEARTEXT, "bob", Credential.plaintext(PASSWORD)),
            ClientAuthExchange("bob", md5_hash=stored),
        )


# -- SASL details ----------------------------------------------------------------------------


def test_plus_is_offered_over_tls_and_used_by_a_binding_client() -> None:
    cred = Credential.scram(make_verifier(PASSWORD))
    server = AuthExchange(AuthMethod.SCRAM, "bob", cred, cbind_data=CBIND)
    (sasl,) = server.start()
    assert parse_sasl_mechanisms(sasl.data) == [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
    client = ClientAuthExchange(
        "bob", password=PASSWORD, cbind_data=CBIND, channel_binding="require"
    )
    server = AuthExchange(AuthMethod.SCRAM, "bob", cred, cbind_data=CBIND)
    login(server, client)
    assert client.scram_client is not None
    assert client.scram_client.mechanism == SCRAM_SHA_256_PLUS


def test_channel_binding_require_refuses_a_server_that_cannot() -> None:
    server = AuthExchange(AuthMethod.SCRAM, "bob", Credential.plaintext(PASSWORD))
    client = ClientAuthExchange(
        "bob", password=PASSWORD, cbind_data=CBIND, channel_binding="require"
    )
    with pytest.raises(AuthFailed, match="channel binding is required"):
        login(server, client)
    trusting = AuthExchange(AuthMethod.TRUST, "bob", None)
    with pytest.raises(AuthFailed, match="without channel binding"):
        login(trusting, ClientAuthExchange("bob", channel_binding="require"))


def test_client_picking_an_unoffered_mechanism_is_a_protocol_violation() -> None:
    server = AuthExchange(AuthMethod.SCRAM, "bob", Credential.plaintext(PASSWORD))
    server.start()
    with pytest.raises(AuthProtocolError, match="invalid SASL authentication mechanism") as exc:
        server.feed(sasl_initial_response(SCRAM_SHA_256_PLUS, b"p=tls-server-end-point,,n=,r=x"))
    assert exc.value.sqlstate == "08P01"


def test_initial_response_without_data_gets_an_empty_challenge() -> None:
    server = AuthExchange(AuthMethod.SCRAM, "bob", Credential.plaintext(PASSWORD))
    server.start()
    (challenge,) = server.feed(sasl_initial_response(SCRAM_SHA_256, None))
    assert challenge == AuthRequest.sasl_continue(b"")
    client = ScramClient("bob", PASSWORD)
    (cont,) = server.feed(client.client_first())
    final, ok = server.feed(client.handle_server_first(cont.data))
    client.verify_server_final(final.data)
    assert ok == AuthRequest.ok() and server.done


def test_scram_data_with_nul_is_malformed() -> None:
    server = AuthExchange(AuthMethod.SCRAM, "bob", Credential.plaintext(PASSWORD))
    server.start()
    with pytest.raises(AuthProtocolError):
        server.feed(sasl_initial_response(SCRAM_SHA_256, b"n,,n=,r=abc\0"))


def test_feeding_out_of_turn_is_a_protocol_violation() -> None:
    server = AuthExchange(AuthMethod.TRUST, "bob", None)
    with pytest.raises(AuthProtocolError):
        server.feed(b"pw\0")
    server.start()
    assert server.done
    with pytest.raises(AuthProtocolError):
        server.feed(b"pw\0")
    with pytest.raises(RuntimeError):
        server.start()


# -- message payloads ----------------------------------------------------------------------------


def test_request_payloads_are_postgres_bytes() -> None:
    assert AuthRequest.ok().message() == b"R\0\0\0\x08\0\0\0\0"
    assert AuthRequest.cleartext().payload() == struct.pack("!i", 3)
    assert AuthRequest.md5(b"salt").payload() == struct.pack("!i", 5) + b"salt"
    assert AuthRequest.sasl([SCRAM_SHA_256]).payload() == (
        struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0"
    )
    assert AuthRequest.sasl_continue(b"r=x").payload() == struct.pack("!i", 11) + b"r=x"
    assert AuthRequest.sasl_final(b"v=x").payload() == struct.pack("!i", 12) + b"v=x"
    assert parse_auth_request(AuthRequest.md5(b"salt").payload()) == AuthRequest.md5(b"salt")
    with pytest.raises(AuthProtocolError):
        parse_auth_request(b"\0\0")


def test_password_message_parsing() -> None:
    assert parse_password_message(b"secret\0") == b"secret"
    assert parse_password_message(password_message(b"x")) == b"x"
    for bad in (b"", b"secret", b"sec\0ret\0", b"secret\0\0"):
        with pytest.raises(AuthProtocolError, match="invalid password packet size"):
            parse_password_message(bad)


def test_sasl_initial_response_parsing() -> None:
    assert parse_sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x03abc") == (SCRAM_SHA_256, b"abc")
    assert parse_sasl_initial_response(b"SCRAM-SHA-256\0\xff\xff\xff\xff") == (SCRAM_SHA_256, None)
    assert parse_sasl_initial_response(sasl_initial_response("M", b"")) == ("M", b"")
    for bad in (
        b"SCRAM-SHA-256",
        b"SCRAM-SHA-256\0\0\0",
        b"SCRAM-SHA-256\0\0\0\0\x04abc",
        b"SCRAM-SHA-256\0\0\0\0\x02abc",
        b"SCRAM-SHA-256\0\xff\xff\xff\xffabc",
        b"\xff\0\0\0\0\0",
    ):
        with pytest.raises(AuthProtocolError):
            parse_sasl_initial_response(bad)


def test_sasl_mechanism_list_parsing() -> None:
    assert parse_sasl_mechanisms(b"A\0B\0\0") == ["A", "B"]
    assert parse_sasl_mechanisms(b"\0") == []
    for bad in (b"", b"A\0", b"A\0\0junk", b"A"):
        with pytest.raises(AuthProtocolError):
            parse_sasl_mechanisms(bad)


def test_method_and_credential_parsing() -> None:
    assert AuthMethod.parse("scram-sha-256") is AuthMethod.SCRAM
    assert AuthMethod.parse(" SCRAM ") is AuthMethod.SCRAM
    assert AuthMethod.parse("password") is AuthMethod.CLEARTEXT
    with pytest.raises(ValueError, match="unknown authentication method"):
        AuthMethod.parse("gss")
    verifier = make_verifier("x", iterations=10).format()
    assert Credential.from_stored(verifier).kind is CredentialKind.SCRAM
    assert Credential.from_stored("md5" + "a" * 32).kind is CredentialKind.MD5
    # As Postgres: a malformed verifier is taken for a plaintext password.
    assert Credential.from_stored("SCRAM-SHA-256$oops").kind is CredentialKind.PLAINTEXT
    assert PASSWORD not in repr(Credential.plaintext(PASSWORD))
    with pytest.raises(ValueError):
        Credential.md5("md5xyz")


# -- the client side against odd servers -----------------------------------------------------------


def test_client_side_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(AuthFailed, match="unsupported authentication method"):
        ClientAuthExchange("bob", password="x").feed(AuthRequest(AuthCode.GSS))
    with pytest.raises(AuthProtocolError):
        ClientAuthExchange("bob", password="x").feed(AuthRequest(AuthCode.MD5_PASSWORD, b"ab"))
    with pytest.raises(AuthProtocolError):
        ClientAuthExchange("bob", password="x").feed(AuthRequest.sasl_continue(b"r=x"))
    client = ClientAuthExchange("bob", password="x")
    client.feed(AuthRequest.sasl([SCRAM_SHA_256]))
    with pytest.raises(AuthFailed, match="before finishing SCRAM"):
        client.feed(AuthRequest.ok())
    with pytest.raises(ValueError):
        ClientAuthExchange("bob", channel_binding="sometimes")


# -- fuzz: any payload gives a reply or an AuthFailed ---------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from([AuthMethod.CLEARTEXT, AuthMethod.MD5, AuthMethod.SCRAM]),
    kind=st.sampled_from(["plaintext", "md5", "scram", "unknown"]),
    payloads=st.lists(st.binary(max_size=80), min_size=1, max_size=3),
)
def test_fuzzed_answers_only_raise_auth_errors(
    method: AuthMethod, kind: str, payloads: list[bytes]
) -> None:
    server = AuthExchange(method, "bob", _FUZZ_CREDENTIALS[kind])
    server.start()
    for payload in payloads:
        try:
            server.feed(payload)
        except AuthFailed:
            assert not server.done
            return


_FUZZ_CREDENTIALS = {kind: credential(kind) for kind in ("plaintext", "md5", "scram", "unknown")}
