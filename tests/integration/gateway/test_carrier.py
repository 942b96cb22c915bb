"""The gateway -> pooler carrier: a gateway's sessions to a pooler share one TCP connection
(pyx/mux.pyx), each still a Postgres session of its own; `--pooler-mux off` and poolers that
decline (several workers) get a connection per session."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from multigres.netutil import free_port
from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.pooler import RawClient
from multigres.testing.postgres import PgHarness

from .conftest import GatewayCluster, Proc, wait_until

pytestmark = pytest.mark.integration


def established(port: int) -> int:
    """TCP connections established to local ``port`` (the pooler's side of each)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def second_gateway(cluster: GatewayCluster, *flags: str) -> tuple[Proc, int]:
    """Another gateway on the same topology, with ``flags``."""
    port = free_port()
    cmd = list(cluster.gateway.cmd)
    cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{port}"
    cmd[cmd.index("--http-port") + 1] = str(free_port())
    proc = Proc(f"gateway-{port}", [*cmd, *flags], cluster.dir, "gateway listening on")
    proc.start()
    return proc, port


def test_sessions_share_one_connection_to_the_pooler(gw_cluster: GatewayCluster) -> None:
    pooler_port = gw_cluster.pooler_ports["zone1-gw1"]
    conns = [gw_cluster.connect(application_name=f"carrier-{i}") for i in range(8)]
    try:
        for i, c in enumerate(conns):
            row = c.execute("SELECT current_setting('application_name')").fetchone()
            assert row == (f"carrier-{i}",)
        assert established(pooler_port) == 1
        wait_until(lambda: "multigateway_pooler_carriers 1.0" in urllib.request.urlopen(
            f"http://127.0.0.1:{gw_cluster.http_port}/metrics", timeout=5).read().decode(),
            what="the carrier in /metrics")
        # Each session is a client of its own at the pooler.
        admin = RawClient("127.0.0.1", pooler_port, database="pgbouncer")
        try:
            rows = [p for t, p in admin.query("SHOW CLIENTS") if t == "D"]
        finally:
            admin.close()
        mine = [r for r in rows if b"carrier-" in r]
        assert len(mine) == 8
        # Their address is the gateway's end of the carrier.
        assert all(b"127.0.0.1" in r and b"local" not in r for r in mine)
    finally:
        for c in conns:
            c.close()


def test_pooler_mux_off_opens_a_connection_per_session(gw_cluster: GatewayCluster) -> None:
    pooler_port = gw_cluster.pooler_ports["zone1-gw1"]
    before = established(pooler_port)  # the first gateway's carrier, if it has one yet
    gw, port = second_gateway(gw_cluster, "--pooler-mux", "off")
    clients: list[RawClient] = []
    try:
        # (The probe's pooler connection is parked, then taken by the first session below.)
        wait_until(lambda: _serves(port), what="the second gateway to serve")
        clients = [RawClient("127.0.0.1", port) for _ in range(5)]
        for c in clients:
            assert any(t == "C" for t, _ in c.query("SELECT 1"))
        assert established(pooler_port) == before + 5
    finally:
        for c in clients:
            c.close()
        gw.stop()


def _serves(port: int) -> bool:
    try:
        c = RawClient("127.0.0.1", port, timeout=2)
    except Exception:
        return False
    try:
        return any(t == "C" for t, _ in c.query("SELECT 1"))
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["gw_cluster", "local_cluster"])
def test_a_slow_reader_holds_only_its_own_session(mode: str,
                                                  request: pytest.FixtureRequest) -> None:
    """A client that stops reading a large result stalls neither the other sessions on the
    carrier (or, in local mode, the in-memory pipes) nor the gateway's memory: the pooler
    stops reading that session's server."""
    gw_cluster: GatewayCluster = request.getfixturevalue(mode)
    assert gw_cluster.gateway.proc is not None
    gateway_pid = gw_cluster.gateway.proc.pid
    slow = RawClient("127.0.0.1", gw_cluster.port, timeout=30)
    rows = 200_000
    try:
        rss_before = rss_kb(gateway_pid)
        # About 200 MB of DataRows, not read for now.
        slow.send(b"Q", f"SELECT repeat('x', 1000) FROM generate_series(1, {rows})".encode()
                  + b"\0")
        time.sleep(1.0)
        done = threading.Event()

        def others() -> None:
            with gw_cluster.connect() as c:
                for i in range(200):
                    assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
            done.set()

        t = threading.Thread(target=others, daemon=True)
        t.start()
        assert done.wait(30), "a session on the same carrier was stalled by the slow reader"
        grown_mb = (rss_kb(gateway_pid) - rss_before) / 1024
        assert grown_mb < 64, f"the gateway buffered {grown_mb:.0f} MB for a slow reader"
        got = 0
        while True:
            kind, payload = slow.recv()
            if kind == "D":
                got += 1
                assert payload.endswith(b"x" * 10)
            elif kind == "Z":
                break
        assert got == rows
    finally:
        slow.close()


def test_a_pooler_with_workers_declines_and_sessions_still_work(
        pg_harness: PgHarness, etcd_server: ThrowawayEtcd) -> None:
    """A carrier would put every session on the one worker that accepted it: a pooler with
    several workers answers no, and the gateway opens a connection per session."""
    primary, _ = pg_harness.shard(replicas=0)
    cluster = GatewayCluster(etcd_server, primary, primary,
                             Path(tempfile.mkdtemp(prefix="multigres-carrier-")))
    clients: list[RawClient] = []
    try:
        proc = Proc("workers", [sys.executable, "-m", "multigres.pooler.cli",
                                *cluster.pooler_args("zone1-w", primary), "--workers", "2"],
                    cluster.dir, "listening on")
        cluster.poolers["zone1-w"] = proc
        proc.start()
        port = cluster.pooler_ports["zone1-w"]
        cluster.gateway.start()
        wait_until(lambda: _serves(cluster.port), what="the gateway to serve")
        clients = [RawClient("127.0.0.1", cluster.port) for _ in range(4)]
        for c in clients:
            assert any(t == "C" for t, _ in c.query("SELECT 1"))
        assert established(port) == 4
        assert "takes no carrier" in cluster.gateway.log_text()
    finally:
        for c in clients:
            c.close()
        cluster.stop()
