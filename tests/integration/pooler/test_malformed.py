"""Malformed protocol: garbage, unknown message types, lying lengths. The offender gets a clear
error (08P01) and its connection is closed; the pooler and its other clients carry on.

The fuzz test sends random bytes after a login and at the start of a connection (bounded in
examples and time) and checks that every answer is well-formed, that the pooler closes or
answers rather than hang, and that another session keeps working.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multigres.pgctld.instance import PgInstance
from multigres.testing.pooler import PoolerProcess, RawClient, error_fields
from tests.integration.pooler.conftest import module_pooler

pytestmark = pytest.mark.integration

# Known message types (frontend), to make some examples nearly valid.
TYPES = b"QPBDESHCXFcdfp"


@pytest.fixture(scope="module")
def fuzz_pooler(pg: PgInstance, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[PoolerProcess]:
    # trust: logins cost nothing, so examples are many; small messages allowed.
    with module_pooler(pg, tmp_path_factory, pool_size=2, auth="trust",
                       args=["--max-message-size", str(1 << 16),
                             "--query-wait-timeout", "5"]) as p:
        yield p


@pytest.fixture(scope="module")
def canary(fuzz_pooler: PoolerProcess) -> Iterator[psycopg.Connection[Any]]:
    with fuzz_pooler.connect() as conn:
        yield conn


def _answers(raw: RawClient) -> list[tuple[str, bytes]]:
    """Everything the pooler sends until it closes, after we stopped sending."""
    raw.sock.shutdown(socket.SHUT_WR)
    raw.sock.settimeout(10)
    out = raw.read_all()
    assert not raw.buf, f"a partial message before the close: {raw.buf[:40]!r}"
    return out


def _check_errors(answers: list[tuple[str, bytes]]) -> None:
    for t, payload in answers:
        assert t in "EZCTDIn123stNASKGHWcdv", f"unexpected message type {t!r}"
        if t == "E":
            fields = error_fields(payload)
            assert fields.get("C") and fields.get("M"), fields
            if fields.get("S") == "FATAL":
                assert fields["C"] in ("08P01", "0A000", "54000", "57P01"), fields


def test_invalid_message_type(fuzz_pooler: PoolerProcess, canary: Any) -> None:
    with RawClient.to(fuzz_pooler) as raw:
        raw.send_raw(b"\x01\x00\x00\x00\x04")
        answers = _answers(raw)
    assert [t for t, _ in answers] == ["E"]
    fields = error_fields(answers[0][1])
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    assert "invalid frontend message type" in fields["M"]
    assert canary.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("length", [0x7FFFFFFF, 1 << 20, 3, -5])
def test_lying_length(fuzz_pooler: PoolerProcess, canary: Any, length: int) -> None:
    with RawClient.to(fuzz_pooler) as raw:
        raw.send_raw(b"Q" + struct.pack("!i", length) + b"SELECT 1")
        answers = _answers(raw)
    assert [t for t, _ in answers] == ["E"]
    fields = error_fields(answers[0][1])
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    assert "length" in fields["M"]
    assert canary.execute("SELECT 1").fetchone() == (1,)


def test_truncated_message_then_close(fuzz_pooler: PoolerProcess, canary: Any) -> None:
    with RawClient.to(fuzz_pooler) as raw:
        raw.send_raw(b"Q" + struct.pack("!i", 60000) + b"SELECT ")
        assert _answers(raw) == []
    assert canary.execute("SELECT 1").fetchone() == (1,)


def test_bad_startup_packets(fuzz_pooler: PoolerProcess, canary: Any) -> None:
    for packet in (
        struct.pack("!i", 3),  # length below the minimum
        struct.pack("!ii", 8, 0x00020000),  # protocol 2.0
        struct.pack("!ii", 12, 196608) + b"user",  # not terminated
        struct.pack("!ii", 9, 196608) + b"\0",  # no user
    ):
        with RawClient.to(fuzz_pooler, login=False) as raw:
            raw.send_raw(packet)
            answers = _answers(raw)
        assert [t for t, _ in answers] == ["E"], (packet, answers)
        fields = error_fields(answers[0][1])
        assert fields["S"] == "FATAL" and fields["C"] in ("08P01", "0A000", "28000"), fields
    assert canary.execute("SELECT 1").fetchone() == (1,)


def _message(t: int, payload: bytes) -> bytes:
    return bytes([t]) + struct.pack("!i", len(payload) + 4) + payload


garbage = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.lists(st.tuples(st.sampled_from(TYPES), st.binary(max_size=40)), min_size=1,
             max_size=6).map(lambda ms: b"".join(_message(t, p) for t, p in ms)),
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=garbage)
def test_fuzz_after_login(fuzz_pooler: PoolerProcess, canary: Any, data: bytes) -> None:
    with RawClient.to(fuzz_pooler) as raw:
        raw.send_raw(data)
        _check_errors(_answers(raw))
    assert canary.execute("SELECT 1").fetchone() == (1,)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=200))
def test_fuzz_at_startup(fuzz_pooler: PoolerProcess, canary: Any, data: bytes) -> None:
    with RawClient.to(fuzz_pooler, login=False) as raw:
        raw.send_raw(data)
        raw.sock.shutdown(socket.SHUT_WR)
        raw.sock.settimeout(10)
        # The answer to a startup packet may be a single byte (SSL/GSSENC refusal).
        received = b""
        while True:
            chunk = raw.sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert len(received) < 10000
    assert canary.execute("SELECT 1").fetchone() == (1,)


def test_pool_intact_after_fuzz(fuzz_pooler: PoolerProcess, canary: Any) -> None:
    """No backend was lost or left dirty: both serve transactions, with clean sessions."""
    with fuzz_pooler.connect() as a, fuzz_pooler.connect() as b:
        a.execute("BEGIN")
        b.execute("BEGIN")
        pids = {c.execute("SELECT pg_backend_pid()").fetchone() for c in (a, b)}
        assert len(pids) == 2
        for c in (a, b):
            assert c.execute("SELECT count(*) FROM pg_prepared_statements WHERE from_sql"
                             " OR name NOT LIKE 'mg\\_%'").fetchone() == (0,)
            c.execute("COMMIT")
