"""Client authentication methods other than the suite's default (scram with the auth query):
md5 with a PgBouncer userlist, and trust. Isolation still holds between users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.testing.pooler import LoginError, PoolerProcess, RawClient
from multigres.wire.md5 import md5_password_hash
from multigres.wire.userlist import format_userlist_line

pytestmark = pytest.mark.integration

MakePooler = Callable[..., PoolerProcess]


def _userlist(tmp_path: Path, entries: list[tuple[str, str]]) -> Path:
    path = tmp_path / "userlist.txt"
    path.write_text("".join(format_userlist_line(u, s) + "\n" for u, s in entries))
    path.chmod(0o600)
    return path


def test_md5_with_userlist(make_pooler: MakePooler, tmp_path: Path) -> None:
    # A plaintext password lets the pooler log in to Postgres (which asks for SCRAM) as the
    # user; an md5 hash is enough to check clients.
    userlist = _userlist(tmp_path, [
        ("alice", "alice"),
        ("bob", "bob"),
    ])
    pooler = make_pooler(auth="md5", userlist=userlist, pool_size=2)
    with pooler.connect(user="alice", password="alice") as a, \
            pooler.connect(user="bob", password="bob") as b:
        assert a.execute("SELECT current_user").fetchone() == ("alice",)
        assert b.execute("SELECT current_user").fetchone() == ("bob",)
        # Pools are per user: a's settings never reach b.
        a.execute("SET work_mem = '11MB'")
        assert b.execute("SHOW work_mem").fetchone() == ("4MB",)
        assert a.execute("SHOW work_mem").fetchone() == ("11MB",)
    with pytest.raises(LoginError) as info:
        RawClient.to(pooler, user="alice", password="wrong")
    assert info.value.sqlstate == "28P01"
    # A user missing from the userlist is looked up with the auth query (a SCRAM verifier:
    # md5 is refused for it, as Postgres would, the client is asked for SCRAM).
    with pooler.connect(user="carol", password="carol") as c:
        assert c.execute("SELECT current_user").fetchone() == ("carol",)


def test_md5_hash_in_userlist_checks_clients(
    make_pooler: MakePooler, tmp_path: Path
) -> None:
    userlist = _userlist(tmp_path, [("postgres", md5_password_hash("postgres", "postgres"))])
    pooler = make_pooler(auth="md5", userlist=userlist)
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(LoginError) as info:
        RawClient.to(pooler, password="nope")
    assert info.value.sqlstate == "28P01"


def test_trust(make_pooler: MakePooler) -> None:
    pooler = make_pooler(auth="trust")
    # No password needed from the client; the pooler logs in with --pg-password.
    with pooler.connect(password="anything") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    # A user the pooler has no password for: a clear error, not a hang.
    with pytest.raises(psycopg.OperationalError) as err:
        pooler.connect(user="alice")
    assert "alice" in str(err.value)


def test_scram_pass_through_for_other_users(pooler: PoolerProcess, direct: Any) -> None:
    """With the auth query, the pooler logs in to Postgres as each user with the key the
    user's own SCRAM proof carries: no password stored anywhere."""
    with pooler.connect(user="bob", password="bob") as b, \
            pooler.connect(user="carol", password="carol") as c:
        assert b.execute("SELECT current_user, session_user").fetchone() == ("bob", "bob")
        assert c.execute("SELECT current_user").fetchone() == ("carol",)
        # A second login of the same user reuses the pool.
        with pooler.connect(user="bob", password="bob") as b2:
            assert b2.execute("SELECT 1").fetchone() == (1,)


def test_tls_from_clients(make_pooler: MakePooler, tmp_path: Path) -> None:
    from multigres.wire.tls import make_self_signed_cert

    cert, key = make_self_signed_cert(tmp_path)
    pooler = make_pooler(args=["--tls-cert", str(cert), "--tls-key", str(key)])
    with pooler.connect(sslmode="verify-full", sslrootcert=str(cert), host="127.0.0.1",
                        channel_binding="require") as conn:
        assert conn.pgconn.ssl_in_use  # and SCRAM-SHA-256-PLUS: bound to the certificate
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        # SCRAM over TLS, prepared statements and a COPY ride the encrypted connection too.
        assert conn.execute("SELECT %s::int", (5,), prepare=True).fetchone() == (5,)
        with conn.cursor() as cur, cur.copy("COPY (SELECT generate_series(1, 1000)) TO STDOUT"
                                            ) as copy:
            assert sum(len(b) for b in copy) > 0
    # Without TLS the pooler still serves (sslmode=disable).
    with pooler.connect(sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use
    # Many handshakes at once: the ClientHello follows the "S" at once and must never be read
    # as protocol bytes (a login that hung until its timeout, one in a few).
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> bool:
        with pooler.connect(sslmode="require", connect_timeout=10) as c:
            return bool(c.pgconn.ssl_in_use)

    with ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(64)))
    # A handshake that fails (garbage instead of a ClientHello) leaves nothing behind.
    import socket
    import struct
    import time

    for _ in range(5):
        with socket.create_connection(("127.0.0.1", pooler.port), timeout=10) as s:
            s.sendall(struct.pack("!ii", 8, 80877103))
            assert s.recv(1) == b"S"
            s.sendall(b"this is not a TLS ClientHello" * 4)
            s.recv(100)
    deadline = time.monotonic() + 10
    with pooler.connect(dbname="multigres", sslmode="disable") as admin:
        while True:
            rows = admin.execute("SHOW CLIENTS").fetchall()
            if len(rows) == 1 or time.monotonic() > deadline:  # the console's own
                break
            time.sleep(0.1)
        assert len(rows) == 1, rows


def test_tls_to_postgres(
    make_pooler: MakePooler, direct: Any, pg_cert: Path, tmp_path: Path
) -> None:
    pooler = make_pooler(args=["--server-tls", "verify-full", "--server-tls-ca", str(pg_cert)])
    with pooler.connect(user="carol", password="carol") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        assert direct.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = %s",
                              (pid[0],)).fetchone() == (True,)
    # A server certificate the pooler cannot check: the client gets a clear error.
    from multigres.wire.tls import make_self_signed_cert

    other_ca, _ = make_self_signed_cert(tmp_path, name="other")
    bad = make_pooler(args=["--server-tls", "verify-ca", "--server-tls-ca", str(other_ca)])
    with pytest.raises(psycopg.OperationalError) as info:
        bad.connect()
    assert "TLS with the server" in str(info.value)
    assert "certificate verify failed" in str(info.value)


def test_auth_query_that_cannot_log_in(make_pooler: MakePooler) -> None:
    pooler = make_pooler(args=["--pg-password", "wrong"])
    with pytest.raises(psycopg.OperationalError) as info:
        pooler.connect(user="alice", password="alice")
    msg = str(info.value)
    assert "cannot look up user 'alice'" in msg
    assert "password authentication failed" in msg
