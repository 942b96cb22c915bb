"""How the pooler names and reaches its Postgres: TCP, or a Unix socket in a directory."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from multigres.netutil import is_socket_dir, pg_address, pg_connect
from multigres.pgctld import config


def test_an_absolute_path_is_a_socket_directory() -> None:
    assert is_socket_dir("/var/run/postgresql")
    assert not is_socket_dir("127.0.0.1")
    assert not is_socket_dir("db.example.com")
    assert pg_address("127.0.0.1", 5432) == "127.0.0.1:5432"
    assert pg_address("/run/pg/", 5433) == 'socket "/run/pg/.s.PGSQL.5433"'


def test_pg_connect_reaches_the_socket_file(tmp_path: Path) -> None:
    path = tmp_path / ".s.PGSQL.6543"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    async def roundtrip() -> bytes:
        sock = await pg_connect(str(tmp_path), 6543)
        try:
            peer, _ = server.accept()
            with peer:
                peer.sendall(b"N")
                return await asyncio.get_running_loop().sock_recv(sock, 1)
        finally:
            sock.close()

    try:
        assert asyncio.run(roundtrip()) == b"N"
        # Nothing listening on another port's file: the connect error names no TCP address.
        with pytest.raises(FileNotFoundError):
            asyncio.run(pg_connect(str(tmp_path), 6544))
    finally:
        server.close()


def test_hba_lets_password_logins_in_on_a_socket_only_when_there_is_one() -> None:
    assert "local" not in config.hba({})
    assert "local" not in config.hba({"unix_socket_directories": "''"})
    with_socket = config.hba({"unix_socket_directories": "/tmp/pg"})
    assert with_socket.startswith(config.HBA)
    assert with_socket.splitlines()[-1].split() == ["local", "all", "all", "scram-sha-256"]
