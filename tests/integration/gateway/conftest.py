"""A real little cluster for the gateway suite: etcd, a Postgres primary with a streaming
replica, one ``multipooler`` per instance registered in the topology, and ``multigateway``.

Each process is a subprocess on free loopback ports, stopped at the end (on failure too).
``GatewayCluster.restart_pooler`` and friends break things on purpose.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.netutil import free_port
from multigres.pgctld.instance import PgInstance
from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.postgres import PASSWORD, PgHarness


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition"
               ) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


class Proc:
    """A started subprocess with its log."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, ready: str) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log_dir / f"{name}.log"
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        before = self.log_text().count(self.ready) if self.log.exists() else 0
        with self.log.open("ab") as out:
            proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.proc = proc
        wait_until(lambda: self.log_text().count(self.ready) > before
                   or proc.poll() is not None, timeout=30, what=f"{self.name} start")
        if proc.poll() is not None:
            raise AssertionError(f"{self.name} exited ({proc.returncode}):\n"
                                 + self.log_text()[-3000:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class GatewayCluster:
    def __init__(self, etcd: ThrowawayEtcd, primary: PgInstance, replica: PgInstance,
                 log_dir: Path) -> None:
        self.etcd = etcd
        self.primary = primary
        self.replica = replica
        self.dir = log_dir
        # A topology of its own: poolers of another module's cluster are not ours.
        self.topo_root = f"/mgtest-{uuid.uuid4().hex[:8]}"
        self.poolers: dict[str, Proc] = {}
        self.pooler_ports: dict[str, int] = {}
        self.port = free_port()
        self.http_port = free_port()  # /metrics, /readyz, /debug/status
        self.gateway = Proc("gateway", [
            sys.executable, "-m", "multigres.gateway.cli", "--listen", f"127.0.0.1:{self.port}",
            "--topo", etcd.address, "--topo-root", self.topo_root, "--cell", "zone1",
            "--buffer-timeout", "10", "--http-port", str(self.http_port)],
            log_dir, "gateway listening on")

    def pooler_args(self, name: str, pg: PgInstance, pool_size: int = 4) -> list[str]:
        """The flags of a multipooler registered in this cluster's topology."""
        port = free_port()
        self.pooler_ports[name] = port
        ep = pg.endpoint()
        return [
            "--listen", f"127.0.0.1:{port}",
            "--pg-host", ep.host, "--pg-port", str(ep.port), "--pg-password",
            ep.password or PASSWORD, "--pool-size", str(pool_size),
            "--grpc-port", str(free_port()), "--health-interval", "0.5",
            "--topo", self.etcd.address, "--topo-root", self.topo_root, "--cell", "zone1",
            "--pooler-id", name, "--database", "postgres", "--tablegroup", "default",
            "--shard", "0"]

    def add_pooler(self, name: str, pg: PgInstance, pool_size: int = 4) -> Proc:
        proc = Proc(name, [sys.executable, "-m", "multigres.pooler.cli",
                           *self.pooler_args(name, pg, pool_size)], self.dir, "listening on")
        self.poolers[name] = proc
        proc.start()
        return proc

    def start_local(self, poolers: list[tuple[str, PgInstance]]) -> None:
        """Local mode: the gateway and these poolers in one ``multigres local`` process."""
        cmd = [sys.executable, "-m", "multigres.cli.main", "local"]
        for name, pg in poolers:
            cmd += ["--pooler", shlex.join(self.pooler_args(name, pg))]
        cmd += ["--gateway", shlex.join(self.gateway.cmd[3:])]
        self.gateway = Proc("local", cmd, self.dir, "gateway listening on")
        self.gateway.start()

    def conninfo(self, dbname: str = "postgres", user: str = "postgres",
                 password: str = PASSWORD, **kw: Any) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname,
            connect_timeout=10, **kw)

    def connect(self, dbname: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname, **kw), autocommit=True)

    async def aconnect(self, dbname: str = "postgres", **kw: Any
                       ) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo(dbname, **kw),
                                                     autocommit=True)

    def stop(self) -> None:
        self.gateway.stop()
        for p in self.poolers.values():
            p.stop()


@pytest.fixture(scope="module")
def gw_cluster(pg_harness: PgHarness, etcd_server: ThrowawayEtcd) -> Iterator[GatewayCluster]:
    primary, replicas = pg_harness.shard(replicas=1)
    log_dir = Path(tempfile.mkdtemp(prefix="multigres-gw-"))
    cluster = GatewayCluster(etcd_server, primary, replicas[0], log_dir)
    try:
        cluster.add_pooler("zone1-gw1", primary)
        cluster.add_pooler("zone1-gw2", replicas[0])
        cluster.gateway.start()
        # Until both poolers' health reached the gateway a replica session may land on the
        # primary; the tests that care wait for it themselves.
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_cluster(pg_harness: PgHarness, etcd_server: ThrowawayEtcd
                  ) -> Iterator[GatewayCluster]:
    """The same cluster in local mode: gateway and both poolers in one process."""
    primary, replicas = pg_harness.shard(replicas=1)
    log_dir = Path(tempfile.mkdtemp(prefix="multigres-local-"))
    cluster = GatewayCluster(etcd_server, primary, replicas[0], log_dir)
    try:
        cluster.start_local([("zone1-l1", primary), ("zone1-l2", replicas[0])])
        yield cluster
    finally:
        cluster.stop()
