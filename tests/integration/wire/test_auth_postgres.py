"""Our SCRAM, md5 and TLS pieces against the real thing, in both directions.

- As a client: a minimal blocking client (startup, SSLRequest, authentication, built by hand
  with struct) logs in to a real Postgres with ``ClientAuthExchange``: SCRAM, md5, SCRAM over
  TLS with channel binding, and SCRAM pass-through with a ClientKey recovered by our server
  side from a verifier read out of pg_authid.
- As a server: a minimal fake server runs ``AuthExchange`` and libpq (psycopg) logs in to it,
  with every method, over TLS with SCRAM-SHA-256-PLUS too.
- SASLprep and the stored formats (md5 hash, SCRAM verifier) match Postgres's byte for byte.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from multigres.pgctld.instance import PgInstance
from multigres.pgctld.osuser import resolve_run_as
from multigres.testing.postgres import PgHarness
from multigres.wire.auth import (
    AuthExchange,
    AuthMethod,
    ClientAuthExchange,
    Credential,
    CredentialKind,
    ScramPassThrough,
    parse_auth_request,
)
from multigres.wire.auth_errors import AuthFailed
from multigres.wire.md5 import md5_password_hash
from multigres.wire.scram import (
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ScramClient,
    ScramServer,
    ScramVerifier,
    make_verifier,
)
from multigres.wire.tls import (
    SslMode,
    cert_file_channel_binding_data,
    channel_binding_data,
    make_client_context,
    make_self_signed_cert,
    make_server_context,
    peer_channel_binding_data,
)

pytestmark = pytest.mark.integration

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104

SCRAM_USER, SCRAM_PW = "scram_user", "scram pw"
MD5_USER, MD5_PW = "md5_user", "md5 pw"
# SASLprep maps the soft hyphen to nothing, the no-break space to a space, and NFKC folds the
# fullwidth letters: Postgres stores the verifier of "IX pass".
UNICODE_USER, UNICODE_PW, UNICODE_PREPARED = "unicode_user", "I\u00adX\u00a0\uff50ass", "IX pass"
# A control character next to a non-ASCII one: SASLprep refuses it, Postgres uses the raw bytes.
RAW_USER, RAW_PW = "raw_user", "caf\u00e9\x07"
OURS_USER, OURS_PW = "ours_user", "made by multigres"


# -- a minimal blocking client ---------------------------------------------------------------


class PgError(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"{fields.get('C')}: {fields.get('M')}")
        self.sqlstate = fields.get("C", "")
        self.message = fields.get("M", "")


def _startup_packet(code: int, params: dict[str, str] | None = None) -> bytes:
    body = struct.pack("!i", code)
    if params is not None:
        body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
        body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _recv_exact(sock, 5)
    (length,) = struct.unpack("!i", head[1:])
    return head[:1], _recv_exact(sock, length - 4)


def _error_fields(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


@dataclass
class Login:
    exchange: ClientAuthExchange
    params: dict[str, str]
    tls_version: str | None


def pg_login(
    inst: PgInstance,
    user: str,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "localhost",
    **exchange_args: Any,
) -> Login:
    """Log in as ``user`` with our client side; return when the server is ready for queries."""
    ep = inst.endpoint()
    sock = socket.create_connection((ep.host, ep.port), timeout=10)
    try:
        cbind = None
        if tls is not None:
            sock.sendall(_startup_packet(SSL_REQUEST))
            assert _recv_exact(sock, 1) == b"S", "the server refused TLS"
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            cbind = peer_channel_binding_data(sock)
        exchange = ClientAuthExchange(user, cbind_data=cbind, **exchange_args)
        sock.sendall(_startup_packet(PROTOCOL_3_0, {"user": user, "database": "postgres"}))
        params: dict[str, str] = {}
        while True:
            kind, payload = _read_message(sock)
            if kind == b"R":
                reply = exchange.feed(parse_auth_request(payload))
                if reply is not None:
                    sock.sendall(_message(b"p", reply))
            elif kind == b"E":
                raise PgError(_error_fields(payload))
            elif kind == b"S":
                name, value, _ = payload.split(b"\0")
                params[name.decode()] = value.decode()
            elif kind == b"Z":
                assert exchange.done
                sock.sendall(_message(b"X", b""))
                version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
                return Login(exchange, params, version)
    finally:
        sock.close()


# -- fixtures ----------------------------------------------------------------------------------


@dataclass
class Server:
    inst: PgInstance
    cert: Path
    key: Path

    def rolpassword(self, user: str) -> str:
        with self.inst.connect() as conn:
            row = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,)
            ).fetchone()
        assert row is not None and row[0] is not None
        return str(row[0])

    def verifier(self, user: str) -> ScramVerifier:
        return ScramVerifier.parse(self.rolpassword(user))


@pytest.fixture(scope="module")
def pg(pg_harness: PgHarness) -> Iterator[Server]:
    tls_dir = pg_harness.base / "auth-tls"
    cert, key = make_self_signed_cert(tls_dir)
    resolve_run_as().chown_tree(tls_dir)  # the server reads them as the postgres OS user
    inst = pg_harness.primary(
        "auth",
        settings={"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)},
    )
    # md5 for the md5 role only; everything else stays scram-sha-256 (pgctld's default).
    hba = inst.data_dir / "pg_hba.conf"
    hba.write_text(f"host all {MD5_USER} 127.0.0.1/32 md5\n" + hba.read_text())
    with inst.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")
        for user, password in (
            (SCRAM_USER, SCRAM_PW),
            (UNICODE_USER, UNICODE_PW),
            (RAW_USER, RAW_PW),
        ):
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(MD5_USER), sql.Literal(MD5_PW)
            )
        )
        conn.execute("RESET password_encryption")
        # A verifier that we made, stored as is: Postgres must read our format.
        ours = make_verifier(OURS_PW).format()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(OURS_USER), sql.Literal(ours)
            )
        )
    yield Server(inst, cert, key)


# -- our client against Postgres -----------------------------------------------------------------


def test_scram_login(pg: Server) -> None:
    login = pg_login(pg.inst, SCRAM_USER, password=SCRAM_PW)
    assert login.exchange.scram_client is not None
    assert login.exchange.scram_client.mechanism == SCRAM_SHA_256
    assert login.exchange.scram_client.done  # Postgres proved it knows the verifier
    assert login.params["session_authorization"] == SCRAM_USER


def test_wrong_password_is_refused_by_postgres(pg: Server) -> None:
    with pytest.raises(PgError) as exc:
        pg_login(pg.inst, SCRAM_USER, password="wrong")
    assert exc.value.sqlstate == "28P01"
    assert exc.value.message == f'password authentication failed for user "{SCRAM_USER}"'


def test_md5_login_with_password_and_with_stored_hash(pg: Server) -> None:
    stored = pg.rolpassword(MD5_USER)
    assert stored == md5_password_hash(MD5_USER, MD5_PW)
    pg_login(pg.inst, MD5_USER, password=MD5_PW)
    pg_login(pg.inst, MD5_USER, md5_hash=stored)  # pass-through: the hash answers md5
    with pytest.raises(PgError) as exc:
        pg_login(pg.inst, MD5_USER, password="wrong")
    assert exc.value.sqlstate == "28P01"


def test_postgres_reads_our_verifier_and_we_read_its(pg: Server) -> None:
    pg_login(pg.inst, OURS_USER, password=OURS_PW)
    theirs = pg.verifier(SCRAM_USER)
    assert theirs.format() == pg.rolpassword(SCRAM_USER)  # parse/format is lossless
    assert theirs.verify_password(SCRAM_PW)
    assert not theirs.verify_password("wrong")


def test_saslprep_matches_postgres(pg: Server) -> None:
    verifier = pg.verifier(UNICODE_USER)
    assert verifier.verify_password(UNICODE_PW)
    assert verifier.verify_password(UNICODE_PREPARED)  # what SASLprep made of it
    pg_login(pg.inst, UNICODE_USER, password=UNICODE_PW)
    pg_login(pg.inst, UNICODE_USER, password=UNICODE_PREPARED)

    raw = pg.verifier(RAW_USER)  # SASLprep refused: the raw bytes were hashed
    assert raw.verify_password(RAW_PW.encode())
    pg_login(pg.inst, RAW_USER, password=RAW_PW)


def test_scram_server_accepts_our_client_for_a_pg_authid_verifier(pg: Server) -> None:
    verifier = pg.verifier(SCRAM_USER)
    server = ScramServer(verifier, SCRAM_USER)
    client = ScramClient(SCRAM_USER, SCRAM_PW)
    server_first = server.handle_client_first(client.client_first())
    client.verify_server_final(server.handle_client_final(client.handle_server_first(server_first)))
    assert server.done and client.done

    server = ScramServer(verifier, SCRAM_USER)
    client = ScramClient(SCRAM_USER, "wrong")
    server_first = server.handle_client_first(client.client_first())
    with pytest.raises(AuthFailed):
        server.handle_client_final(client.handle_server_first(server_first))


def _pooler_front_login(pg: Server, user: str, password: str) -> ScramPassThrough:
    """An application logs in to the pooler, which holds only pg_authid's verifier."""
    credential = Credential.from_stored(pg.rolpassword(user))
    assert credential.kind is CredentialKind.SCRAM
    front = AuthExchange(AuthMethod.SCRAM, user, credential)
    app = ClientAuthExchange(user, password=password)
    requests = front.start()
    while not front.done:
        answer = None
        for request in requests:
            answer = app.feed(request) or answer
        assert answer is not None
        requests = front.feed(answer)
    for request in requests:
        app.feed(request)
    secret = ScramPassThrough.from_exchange(front)
    assert secret is not None
    return secret


def test_pass_through_logs_in_to_postgres_with_the_recovered_client_key(pg: Server) -> None:
    secret = _pooler_front_login(pg, SCRAM_USER, SCRAM_PW)
    login = pg_login(pg.inst, SCRAM_USER, scram=secret)
    client = login.exchange.scram_client
    assert client is not None and client.done  # Postgres's signature checked with ServerKey
    # The bare ScramClient API does the same.
    bare = ScramPassThrough(secret.client_key)
    assert pg_login(pg.inst, SCRAM_USER, scram=bare).exchange.done


def test_pass_through_after_a_password_change_is_reported_clearly(pg: Server) -> None:
    user = "changing_user"
    with pg.inst.connect() as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'before'")
    secret = _pooler_front_login(pg, user, "before")
    with pg.inst.connect() as conn:
        conn.execute(f"ALTER ROLE {user} PASSWORD 'after'")
    with pytest.raises(AuthFailed, match="differs") as exc:
        pg_login(pg.inst, user, scram=secret)
    assert exc.value.sqlstate == "08001"


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_verify_full_with_channel_binding(pg: Server) -> None:
    ctx = make_client_context(SslMode.VERIFY_FULL, root_cert=pg.cert)
    assert ctx is not None
    login = pg_login(pg.inst, SCRAM_USER, tls=ctx, password=SCRAM_PW, channel_binding="require")
    assert login.tls_version in ("TLSv1.2", "TLSv1.3")
    client = login.exchange.scram_client
    assert client is not None and client.mechanism == SCRAM_SHA_256_PLUS and client.done


def test_tls_pass_through_with_channel_binding(pg: Server) -> None:
    secret = _pooler_front_login(pg, SCRAM_USER, SCRAM_PW)
    ctx = make_client_context("require")
    assert ctx is not None
    login = pg_login(pg.inst, SCRAM_USER, tls=ctx, scram=secret, channel_binding="require")
    assert login.exchange.scram_client is not None
    assert login.exchange.scram_client.mechanism == SCRAM_SHA_256_PLUS


def test_tls_without_binding_when_disabled(pg: Server) -> None:
    ctx = make_client_context("prefer")
    assert ctx is not None
    login = pg_login(pg.inst, SCRAM_USER, tls=ctx, password=SCRAM_PW, channel_binding="disable")
    assert login.exchange.scram_client is not None
    assert login.exchange.scram_client.mechanism == SCRAM_SHA_256


def test_postgres_refuses_wrong_channel_binding(pg: Server) -> None:
    ctx = make_client_context("require")
    assert ctx is not None
    ep = pg.inst.endpoint()
    with socket.create_connection((ep.host, ep.port), timeout=10) as raw:
        raw.sendall(_startup_packet(SSL_REQUEST))
        assert _recv_exact(raw, 1) == b"S"
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            # As if a man in the middle had terminated TLS with its own certificate.
            fake = hashlib.sha256(b"someone else's certificate").digest()
            client = ScramClient(
                SCRAM_USER, SCRAM_PW, mechanism=SCRAM_SHA_256_PLUS, cbind_data=fake
            )
            sock.sendall(_startup_packet(PROTOCOL_3_0, {"user": SCRAM_USER}))
            kind, _ = _read_message(sock)
            assert kind == b"R"
            first = client.client_first()
            init = SCRAM_SHA_256_PLUS.encode() + b"\0" + struct.pack("!i", len(first)) + first
            sock.sendall(_message(b"p", init))
            kind, payload = _read_message(sock)
            sock.sendall(_message(b"p", client.handle_server_first(payload[4:])))
            kind, payload = _read_message(sock)
    assert kind == b"E"
    fields = _error_fields(payload)
    assert fields["C"] == "28000" and fields["M"] == "SCRAM channel binding check failed"
    # Our server side answers the same way.
    server = ScramServer(make_verifier(SCRAM_PW), SCRAM_USER, mechanism=SCRAM_SHA_256_PLUS,
                         cbind_data=hashlib.sha256(b"our certificate").digest())  # fmt: skip
    client = ScramClient(SCRAM_USER, SCRAM_PW, mechanism=SCRAM_SHA_256_PLUS, cbind_data=fake)
    server_first = server.handle_client_first(client.client_first())
    with pytest.raises(AuthFailed) as exc:
        server.handle_client_final(client.handle_server_first(server_first))
    assert (exc.value.sqlstate, exc.value.message) == (fields["C"], fields["M"])


def test_tls_certificate_checks(pg: Server) -> None:
    ctx = make_client_context(SslMode.VERIFY_FULL, root_cert=pg.cert)
    assert ctx is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        pg_login(pg.inst, SCRAM_USER, tls=ctx, server_hostname="db.example.com", password="x")
    other_ca, _ = make_self_signed_cert(pg.cert.parent / "other", name="other")
    strict = make_client_context(SslMode.VERIFY_CA, root_cert=other_ca)
    assert strict is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        pg_login(pg.inst, SCRAM_USER, tls=strict, password="x")
    # libpq's rule: require with a root certificate checks the chain like verify-ca.
    require = make_client_context(SslMode.REQUIRE, root_cert=other_ca)
    assert require is not None and require.verify_mode == ssl.CERT_REQUIRED
    assert not require.check_hostname
    # Our certificate suits libpq too.
    ep = pg.inst.endpoint()
    with psycopg.connect(
        host="localhost", port=ep.port, user=SCRAM_USER, password=SCRAM_PW, dbname="postgres",
        sslmode="verify-full", sslrootcert=str(pg.cert), channel_binding="require",
    ) as conn:  # fmt: skip
        assert conn.info.pgconn.ssl_in_use


def test_context_settings_and_channel_binding_data(pg: Server) -> None:
    assert make_client_context("disable") is None
    server_ctx = make_server_context(pg.cert, pg.key)
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    der = ssl.PEM_cert_to_DER_cert(pg.cert.read_text())
    # An ECDSA-with-SHA256 certificate binds with SHA-256 of its DER form.
    assert cert_file_channel_binding_data(pg.cert) == hashlib.sha256(der).digest()
    cert384, _ = make_self_signed_cert(pg.cert.parent / "sha384", digest="sha384")
    der384 = ssl.PEM_cert_to_DER_cert(cert384.read_text())
    assert channel_binding_data(der384) == hashlib.sha384(der384).digest()
    with pytest.raises(ValueError):
        make_server_context(pg.cert, pg.cert.parent / "missing.key")
    with pytest.raises(ValueError, match="sslmode"):
        SslMode.parse("always")
    assert SslMode.PREFER.tls_first and not SslMode.PREFER.tls_required
    assert not SslMode.ALLOW.tls_first and SslMode.VERIFY_CA.tls_required


# -- libpq against our server side ---------------------------------------------------------------


@dataclass
class FakeServer:
    """Speaks just enough of the protocol for libpq to log in: startup, TLS, auth, ready."""

    make_exchange: Callable[[str, bytes | None], AuthExchange]
    tls: ssl.SSLContext | None = None
    cbind_data: bytes | None = None
    results: list[AuthExchange | AuthFailed] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(): poll a stop flag.
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            try:
                self._handle(conn)
            except (OSError, ConnectionError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def _read_startup(self, sock: socket.socket) -> tuple[int, bytes]:
        (length,) = struct.unpack("!i", _recv_exact(sock, 4))
        body = _recv_exact(sock, length - 4)
        return struct.unpack("!i", body[:4])[0], body[4:]

    def _handle(self, sock: socket.socket) -> None:
        cbind = None
        code, body = self._read_startup(sock)
        while code in (SSL_REQUEST, GSSENC_REQUEST):
            if code == SSL_REQUEST and self.tls is not None:
                sock.sendall(b"S")
                sock = self.tls.wrap_socket(sock, server_side=True)
                cbind = self.cbind_data
            else:
                sock.sendall(b"N")
            code, body = self._read_startup(sock)
        parts = body.split(b"\0")
        params = dict(zip(parts[0::2], parts[1::2], strict=False))
        exchange = self.make_exchange(params[b"user"].decode(), cbind)
        try:
            requests = exchange.start()
            while True:
                sock.sendall(b"".join(r.message() for r in requests))
                if exchange.done:
                    break
                kind, payload = _read_message(sock)
                assert kind == b"p"
                requests = exchange.feed(payload)
        except AuthFailed as e:
            self.results.append(e)
            fields = [b"SFATAL", b"VFATAL", b"C" + e.sqlstate.encode(), b"M" + e.message.encode()]
            sock.sendall(_message(b"E", b"\0".join(fields) + b"\0\0"))
            return
        self.results.append(exchange)
        ready = [
            _message(b"S", b"server_version\x0015.0\0"),
            _message(b"S", b"client_encoding\0UTF8\0"),
            _message(b"S", b"server_encoding\0UTF8\0"),
            _message(b"S", b"standard_conforming_strings\0on\0"),
            _message(b"S", b"DateStyle\0ISO, MDY\0"),
            _message(b"S", b"integer_datetimes\0on\0"),
            _message(b"K", struct.pack("!ii", 4242, 99)),
            _message(b"Z", b"I"),
        ]
        sock.sendall(b"".join(ready))
        _read_message(sock)  # Terminate


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(*args: Any, **kwargs: Any) -> FakeServer:
        server = FakeServer(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _libpq_connect(port: int, user: str, password: str, **extra: str) -> None:
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=port, user=user, password=password, dbname="db",
        connect_timeout=10, **{"sslmode": "disable", "gssencmode": "disable", **extra},
    )  # fmt: skip
    with psycopg.connect(conninfo):
        pass


@pytest.mark.parametrize(
    ("method", "stored", "used"),
    [
        (AuthMethod.SCRAM, "SCRAM", AuthMethod.SCRAM),
        (AuthMethod.SCRAM, "plaintext", AuthMethod.SCRAM),
        (AuthMethod.MD5, "md5", AuthMethod.MD5),
        (AuthMethod.MD5, "SCRAM", AuthMethod.SCRAM),
        (AuthMethod.CLEARTEXT, "SCRAM", AuthMethod.CLEARTEXT),
    ],
)
def test_libpq_logs_in_to_our_server_side(
    fake_server: Callable[..., FakeServer], method: AuthMethod, stored: str, used: AuthMethod
) -> None:
    credentials = {
        "SCRAM": Credential.scram(make_verifier("app pw")),
        "plaintext": Credential.plaintext("app pw"),
        "md5": Credential.md5(md5_password_hash("app", "app pw")),
    }
    users = {"app": credentials[stored]}
    server = fake_server(lambda user, cbind: AuthExchange(method, user, users.get(user)))
    _libpq_connect(server.port, "app", "app pw")
    (result,) = server.results
    assert isinstance(result, AuthExchange) and result.method_used is used
    with pytest.raises(
        psycopg.OperationalError, match='password authentication failed for user "app"'
    ):
        _libpq_connect(server.port, "app", "wrong")
    # An unknown user fails exactly like a wrong password.
    with pytest.raises(
        psycopg.OperationalError, match='password authentication failed for user "ghost"'
    ):
        _libpq_connect(server.port, "ghost", "app pw")


def test_libpq_binds_the_channel_to_our_tls_certificate(
    pg: Server, fake_server: Callable[..., FakeServer]
) -> None:
    verifier = make_verifier("app pw")
    server = fake_server(
        lambda user, cbind: AuthExchange(
            AuthMethod.SCRAM, user, Credential.scram(verifier), cbind_data=cbind
        ),
        tls=make_server_context(pg.cert, pg.key),
        cbind_data=cert_file_channel_binding_data(pg.cert),
    )
    _libpq_connect(server.port, "app", "app pw", sslmode="verify-full", sslrootcert=str(pg.cert),
                   channel_binding="require")  # fmt: skip
    (result,) = server.results
    assert isinstance(result, AuthExchange) and result.scram_server is not None
    assert result.scram_server.mechanism == SCRAM_SHA_256_PLUS
    # A server that binds to the wrong certificate data is caught by libpq's proof check.
    wrong = fake_server(
        lambda user, cbind: AuthExchange(
            AuthMethod.SCRAM, user, Credential.scram(verifier), cbind_data=b"\0" * 32
        ),
        tls=make_server_context(pg.cert, pg.key),
        cbind_data=b"\0" * 32,
    )
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        _libpq_connect(wrong.port, "app", "app pw", sslmode="require", channel_binding="require")
