"""Fixtures of the pooler operations suite: a real ``multipooler`` subprocess (with its
metrics, gRPC and worker flags) in front of a real Postgres from ``pg_harness``.

``start_pooler(pg, ...)`` returns a :class:`Pooler` once the process says it listens; every
pooler started is stopped at the end of its test (its whole process group, since it may have
forked workers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.netutil import free_port
from multigres.pgctld.instance import PgInstance
from multigres.testing.postgres import PASSWORD, PgHarness

StartPooler = Callable[..., "Pooler"]


class Pooler:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int, http_port: int,
                 grpc_port: int, pg: PgInstance) -> None:
        self.proc = proc
        self.log = log
        self.port = port
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.pg = pg

    @property
    def pid(self) -> int:
        return self.proc.pid

    def conninfo(self, dbname: str = "postgres", user: str = "postgres",
                 password: str = PASSWORD, **kw: Any) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname,
            connect_timeout=10, **kw)

    def admin_conninfo(self, dbname: str = "multigres") -> str:
        return self.conninfo(dbname)

    def connect(self, dbname: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname), autocommit=True, **kw)

    def admin(self, sql: str) -> list[dict[str, Any]]:
        """Run one console command; rows as dicts."""
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            cur = conn.execute(sql)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    async def aadmin(self, sql: str) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.admin_conninfo(),
                                                         autocommit=True) as conn:
            cur = await conn.execute(sql)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=10) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the pooler's process group (it and any worker it forked)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def run_multipooler(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``multipooler`` to completion (for the ones that must fail at start)."""
    return subprocess.run([sys.executable, "-m", "multigres.pooler.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def ops_pg(pg_harness: PgHarness) -> PgInstance:
    """One Postgres primary for the suite (tests that stop Postgres make their own)."""
    return pg_harness.primary("ops-primary", settings={"max_connections": "100"})


@pytest.fixture
def start_pooler(tmp_path: Path) -> Iterator[StartPooler]:
    started: list[Pooler] = []

    def start(pg: PgInstance, *args: str, http: bool = True, grpc: bool = True,
              pool_size: int | None = 4, password: bool = True, wait: bool = True) -> Pooler:
        port, http_port = free_port(), free_port() if http else 0
        grpc_port = free_port() if grpc else 0
        ep = pg.endpoint()
        cmd = [sys.executable, "-m", "multigres.pooler.cli", "--listen", f"127.0.0.1:{port}",
               "--pg-host", ep.host, "--pg-port", str(ep.port)]
        if pool_size is not None:
            cmd += ["--pool-size", str(pool_size)]
        if password:
            cmd += ["--pg-password", ep.password or PASSWORD]
        if http:
            cmd += ["--http-port", str(http_port)]
        if grpc:
            cmd += ["--grpc-port", str(grpc_port)]
        cmd += list(args)
        log = Path(tempfile.mkstemp(prefix="multipooler-", suffix=".log", dir=tmp_path)[1])
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        pooler = Pooler(proc, log, port, http_port, grpc_port, pg)
        started.append(pooler)
        if wait:
            wait_until(lambda: "listening on" in pooler.log_text() or proc.poll() is not None,
                       timeout=30, what="pooler start")
            if proc.poll() is not None:
                raise AssertionError(f"multipooler exited ({proc.returncode}):\n"
                                     + pooler.log_text()[-3000:])
        return pooler

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.stop(timeout=10)
        # Workers a test left behind (the parent killed outright) die with their group.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def ops_shard(pg_harness: PgHarness) -> tuple[PgInstance, PgInstance]:
    """A primary with one streaming replica."""
    primary, replicas = pg_harness.shard(replicas=1, prefix="ops-shard")
    return primary, replicas[0]
