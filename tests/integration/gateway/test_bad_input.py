"""Bad input at the gateway gets a clear error with its SQLSTATE, and nothing leaks: other
sessions keep working."""

from __future__ import annotations

import socket
import struct

import pytest

from multigres.testing.pooler import RawClient, error_fields

from .conftest import GatewayCluster

pytestmark = pytest.mark.integration


def raw(cluster: GatewayCluster, **kw: object) -> RawClient:
    return RawClient("127.0.0.1", cluster.port, **kw)  # type: ignore[arg-type]


def fatal_of(client: RawClient) -> dict[str, str]:
    while True:
        t, payload = client.recv()
        if t == "E":
            return error_fields(payload)


def test_malformed_message_is_fatal_08P01(gw_cluster: GatewayCluster) -> None:
    with gw_cluster.connect() as other:
        bad = raw(gw_cluster)
        try:
            bad.send_raw(b"Q" + struct.pack("!i", 2))  # a length below the header's own 4
            fields = fatal_of(bad)
            assert fields["S"] == "FATAL" and fields["C"] == "08P01"
        finally:
            bad.sock.close()
        assert other.execute("SELECT 1").fetchone() == (1,)


def test_oversized_message_is_refused(gw_cluster: GatewayCluster) -> None:
    bad = raw(gw_cluster)
    try:
        # Declares 1 GiB: refused at the header, before any of it is buffered.
        bad.send_raw(b"Q" + struct.pack("!i", 1 << 30) + b"SELECT")
        fields = fatal_of(bad)
        assert fields["C"] == "08P01" and "message" in fields["M"].lower()
    finally:
        bad.sock.close()


def test_ssl_and_gssenc_refused_without_tls(gw_cluster: GatewayCluster) -> None:
    for code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
        with socket.create_connection(("127.0.0.1", gw_cluster.port), timeout=10) as s:
            s.sendall(struct.pack("!ii", 8, code))
            assert s.recv(1) == b"N"


def test_unsupported_protocol_version(gw_cluster: GatewayCluster) -> None:
    with socket.create_connection(("127.0.0.1", gw_cluster.port), timeout=10) as s:
        body = struct.pack("!i", 2 << 16) + b"user\0postgres\0\0"
        s.sendall(struct.pack("!i", len(body) + 4) + body)
        data = s.recv(4096)
        assert data[:1] == b"E" and b"0A000" in data and b"3.0" in data


def test_no_user_in_startup(gw_cluster: GatewayCluster) -> None:
    with socket.create_connection(("127.0.0.1", gw_cluster.port), timeout=10) as s:
        body = struct.pack("!i", 196608) + b"database\0postgres\0\0"
        s.sendall(struct.pack("!i", len(body) + 4) + body)
        data = s.recv(4096)
        assert data[:1] == b"E" and b"28000" in data


def test_pinned_session_loses_its_pooler(gw_cluster: GatewayCluster) -> None:
    """A session with a temp table cannot move: when its pooler goes, it is told why
    (FATAL 08006), and a new connection works once a pooler serves again."""
    conn = gw_cluster.connect()
    conn.execute("CREATE TEMP TABLE pinned_here (x int)")
    pooler = gw_cluster.poolers["zone1-gw1"]
    pooler.kill()
    try:
        import psycopg

        with pytest.raises(psycopg.OperationalError) as e:
            for _ in range(3):  # the FATAL may arrive before or with the next statement
                conn.execute("SELECT 1")
        assert "temp" in str(e.value)
    finally:
        conn.close()
        pooler.start()
    with gw_cluster.connect() as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
