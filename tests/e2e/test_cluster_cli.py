"""`multigres cluster init/start/status/stop` end to end, as a user runs them.

One cluster (etcd, a primary and two replicas, a pooler each, the gateway when it is built)
is started for the module on free ports; the tests that break things start their own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.cli.cluster import lifecycle, services
from multigres.cli.cluster.config import ConfigError, parse
from multigres.cli.cluster.state import ClusterPaths
from multigres.netutil import port_in_use
from multigres.procutil import pid_alive

pytestmark = pytest.mark.integration

GATEWAY_BUILT = services.GATEWAY.built()
needs_gateway = pytest.mark.skipif(
    not GATEWAY_BUILT, reason="multigres.gateway.cli is not importable yet (gateway not built)"
)


@dataclass
class Ports:
    """Free ports for one cluster, none shared with another of its runs."""

    etcd: int
    peer: int
    pg: int  # instance i: pg + i, likewise below
    pooler: int
    grpc: int
    http: int
    gateway: int
    gateway_http: int

    @classmethod
    def pick(cls, n: int) -> Ports:
        """Runs of ports below the kernel's ephemeral range: a port from that range (what
        binding to port 0 gives) can be taken by any outgoing connection (a pooler's to
        Postgres, a client's to etcd) between picking it and the server binding it."""
        taken: set[int] = set()
        low = _ephemeral_low()

        def run(size: int) -> int:
            for _ in range(100):
                base = random.randrange(PORTS_FROM, low - size)
                ports = set(range(base, base + size))
                if not ports & taken and not any(port_in_use(p) for p in ports):
                    taken.update(ports)
                    return base
            raise RuntimeError("no run of free ports")

        return cls(run(1), run(1), run(n), run(n), run(n), run(n), run(1), run(1))


PORTS_FROM = 20000


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _config(ports: Ports, instances: int = 3, num_sync: int = 1, extra_settings: str = "") -> str:
    cells = ", ".join(["zone1"] * instances)
    return f"""\
etcd:
  listen: 127.0.0.1:{ports.etcd}
  peer_port: {ports.peer}
postgres:
  base_port: {ports.pg}
  settings:
    shared_buffers: 16MB
    fsync: "off"
{extra_settings}
cells: [zone1]
databases:
  - name: postgres
    durability: {{num_sync: {num_sync}}}
    tablegroups:
      - name: default
        sharded: false
        shards:
          - name: "0"
            instances: [{cells}]
pooler:
  base_port: {ports.pooler}
  grpc_base_port: {ports.grpc}
  http_base_port: {ports.http}
  pool_size: 5
gateway:
  listen: 127.0.0.1:{ports.gateway}
  http_port: {ports.gateway_http}
"""


def _mg(cluster_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "multigres.cli.main", "cluster", "--dir", str(cluster_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"multigres {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _our_pids(cluster_dir: Path) -> list[int]:
    """Live processes of the cluster: under its dir, or recorded in its state.json."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(cluster_dir) in cmd and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    state_file = cluster_dir / "state.json"
    if not state_file.exists():
        return sorted(set(pids))
    state = json.loads(state_file.read_text())
    recorded = [state.get("etcd_pid"), *state.get("processes", {}).values()]
    pids += [pid for pid in recorded if pid and pid_alive(pid)]
    for name in state["instances"]:
        pidfile = cluster_dir / "pg" / name / "data" / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            if pid_alive(pid):
                pids.append(pid)
    return sorted(set(pids))


def _new_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="multigres-cluster-"))
    d.chmod(0o755)
    return d


def _remove(d: Path) -> None:
    if (d / "cluster.yaml").exists():
        _mg(d, "stop", "--clean", check=False)
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    d = _new_dir()
    try:
        yield d
    finally:
        _remove(d)


@dataclass
class Cluster:
    dir: Path
    ports: Ports
    start_output: str

    def connect(self, port: int, password: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                               dbname="postgres", connect_timeout=10, **kw)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = _new_dir()
    try:
        ports = Ports.pick(3)
        cfg = tmp_path_factory.mktemp("cfg") / "three.yaml"
        cfg.write_text(_config(ports))
        out = _mg(d, "init", "--config", str(cfg))
        assert "cluster.yaml" in out.stdout
        out = _mg(d, "start")
        yield Cluster(d, ports, out.stdout)
    finally:
        _remove(d)


def test_start_says_how_to_connect(cluster: Cluster) -> None:
    out, p = cluster.start_output, cluster.ports
    assert f"PGPASSWORD=postgres psql -h 127.0.0.1 -p {p.pooler} -U postgres postgres" in out
    assert "multigres cluster stop" in out
    for i in range(3):
        assert f"pooler      zone1-{100 + i}  127.0.0.1:{p.pooler + i}" in out
    if GATEWAY_BUILT:
        assert f"psql -h 127.0.0.1 -p {p.gateway} -U postgres postgres" in out
    else:
        assert "gateway: not built yet, skipped" in out


def test_replication_and_durability(cluster: Cluster) -> None:
    with cluster.connect(cluster.ports.pg, autocommit=True) as conn:
        names = conn.execute("SHOW synchronous_standby_names").fetchone()
        assert names == ('ANY 1 ("zone1-101", "zone1-102")',)
        streaming = conn.execute(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            " ORDER BY 1"
        ).fetchall()
        assert streaming == [("zone1-101",), ("zone1-102",)]


def test_poolers_serve_with_scram(cluster: Cluster) -> None:
    p = cluster.ports
    with cluster.connect(p.pooler) as conn:
        assert conn.info.backend_pid  # logged in through the pooler
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    with cluster.connect(p.pooler + 1) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        # The pooler beside each instance reaches it on its Unix socket (no server address).
        assert conn.execute("SELECT inet_server_addr() IS NULL").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        cluster.connect(p.pooler, password="wrong")


def test_status_shows_poolers_and_gateway(cluster: Cluster) -> None:
    p = cluster.ports
    rows: list[dict[str, Any]] = json.loads(_mg(cluster.dir, "status", "--json").stdout)
    by = {(r["component"], r["name"]): r for r in rows}
    assert by["etcd", "etcd"]["healthy"] and by["etcd", "etcd"]["address"] == f"127.0.0.1:{p.etcd}"
    assert by["postgres", "zone1-100"]["role"] == "primary"
    assert by["postgres", "zone1-101"]["replication_lag_bytes"] is not None
    poolers = [by["pooler", f"zone1-{100 + i}"] for i in range(3)]
    assert [(r["address"], r["role"], r["state"], r["healthy"]) for r in poolers] == [
        (f"127.0.0.1:{p.pooler}", "primary", "serving", True),
        (f"127.0.0.1:{p.pooler + 1}", "replica", "serving", True),
        (f"127.0.0.1:{p.pooler + 2}", "replica", "serving", True),
    ]
    assert poolers[1]["replication_lag_bytes"] is not None
    gateway = by["gateway", "gateway"]
    assert gateway["address"] == f"127.0.0.1:{p.gateway}"
    assert gateway["state"] == ("up" if GATEWAY_BUILT else "not built")
    assert all(r["healthy"] or not r["expected"] for r in rows)
    table = _mg(cluster.dir, "status").stdout
    assert table.splitlines()[0].split()[:6] == [
        "COMPONENT", "NAME", "ADDRESS", "ROLE", "HEALTHY", "STATE"]


_DUMP_TOPO = """
import asyncio, json, sys
from multigres.topo.etcd import EtcdConn
from multigres.topo.server import TopoServer
async def main():
    async with TopoServer(EtcdConn(sys.argv[1], root="/multigres")) as topo:
        poolers = await topo.get_poolers("zone1")
        shard = await topo.get_shard("postgres", "default", "0")
        print(json.dumps({
            "shard_primary": shard.primary_id,
            "poolers": {p.id: [str(p.role), str(p.serving_state), p.port, p.grpc_port,
                               p.pg_port, p.pgctld_data_dir] for p in poolers},
        }))
asyncio.run(main())
"""


def _topology(etcd_port: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _DUMP_TOPO, f"127.0.0.1:{etcd_port}"],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_topology_records_of_cluster_and_poolers_agree(cluster: Cluster) -> None:
    p, d = cluster.ports, cluster.dir
    topo = _topology(p.etcd)
    assert topo["shard_primary"] == "zone1-100"
    assert topo["poolers"] == {
        f"zone1-{100 + i}": [
            "primary" if i == 0 else "replica", "serving", p.pooler + i, p.grpc + i, p.pg + i,
            str(d / "pg" / f"zone1-{100 + i}" / "data"),
        ]
        for i in range(3)
    }


@needs_gateway
def test_gateway_serves_the_primary(cluster: Cluster) -> None:
    with cluster.connect(cluster.ports.gateway) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # TLS is offered (a certificate the cluster made), SCRAM over it.
    with cluster.connect(cluster.ports.gateway, sslmode="require",
                         channel_binding="require") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_crash_restart_stop_start(cluster: Cluster) -> None:
    """Runs last: crashes a pooler (and the gateway), restarts, stops, starts again."""
    d, p = cluster.dir, cluster.ports
    with cluster.connect(p.pooler, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (42)")
    state = json.loads((d / "state.json").read_text())
    crashed = [state["processes"]["pooler zone1-101"]]
    if GATEWAY_BUILT:
        crashed.append(state["processes"]["gateway"])
    for pid in crashed:
        os.kill(pid, signal.SIGKILL)
    while any(pid_alive(pid) for pid in crashed):
        time.sleep(0.02)
    failed = _mg(d, "status", check=False)
    assert failed.returncode == 1
    row = next(r for r in failed.stdout.splitlines() if r.split()[:2] == ["pooler", "zone1-101"])
    assert " NO " in row and "not running" in row

    # Starting again starts only what is not running, and the rest is left alone.
    out = _mg(d, "start").stdout
    assert "initdb" not in out and "cloning" not in out
    assert _mg(d, "status").returncode == 0
    with cluster.connect(p.pooler + 1) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]

    # A crashed process does not stop `stop`, and stopping twice is fine.
    running = _our_pids(d)
    assert len(running) >= 7 + GATEWAY_BUILT  # etcd, 3 Postgres, 3 poolers, the gateway
    os.kill(json.loads((d / "state.json").read_text())["processes"]["pooler zone1-102"],
            signal.SIGKILL)
    _mg(d, "stop")
    assert [pid for pid in running if pid_alive(pid)] == []
    assert _our_pids(d) == []
    bases = (p.pg, p.pooler, p.grpc, p.http)
    ports = [p.etcd, p.gateway, *(b + i for b in bases for i in range(3))]
    assert [port for port in ports if port_in_use(port)] == []
    assert "stopped" not in _mg(d, "stop").stdout
    assert _mg(d, "status", check=False).returncode == 1

    # The data survives a stop: a new start serves the same rows through the poolers.
    _mg(d, "start")
    with cluster.connect(p.pooler + 2) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]


@pytest.mark.parametrize(
    ("offset", "what"),
    [("pg", "Postgres zone1-102"), ("grpc", "pooler zone1-101 gRPC"),
     ("gateway", "the gateway")],
)
def test_port_in_use_fails_before_starting_anything(
    cluster_dir: Path, tmp_path: Path, offset: str, what: str
) -> None:
    if offset == "gateway" and not GATEWAY_BUILT:
        pytest.skip("multigres.gateway.cli is not importable yet (gateway not built)")
    ports = Ports.pick(3)
    busy = {"pg": ports.pg + 2, "grpc": ports.grpc + 1, "gateway": ports.gateway}[offset]
    cfg = tmp_path / "busy.yaml"
    cfg.write_text(_config(ports))
    _mg(cluster_dir, "init", "--config", str(cfg))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        out = _mg(cluster_dir, "start", check=False)
    assert out.returncode == 1
    assert f"port {busy} on 127.0.0.1 (for {what}) is already in use" in out.stderr
    assert "Traceback" not in out.stderr
    assert not port_in_use(ports.etcd)


def test_failure_half_way_stops_what_it_started(cluster_dir: Path, tmp_path: Path) -> None:
    ports = Ports.pick(3)
    cfg = tmp_path / "broken.yaml"
    # The primary cannot start: etcd is already up by then and must be stopped again.
    cfg.write_text(_config(ports, extra_settings="    shared_preload_libraries: no_such_lib"))
    _mg(cluster_dir, "init", "--config", str(cfg))
    out = _mg(cluster_dir, "start", check=False)
    assert out.returncode == 1
    assert "no_such_lib" in out.stderr
    assert "stopping what this start started" in out.stdout
    assert _our_pids(cluster_dir) == []
    assert not port_in_use(ports.etcd)


def test_pooler_that_fails_fails_the_start(
    cluster_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, with a flag the pooler refuses: start fails with the end of its log and
    stops etcd and Postgres again."""
    ports = Ports.pick(1)
    cfg = tmp_path / "one.yaml"
    cfg.write_text(_config(ports, instances=1, num_sync=0))
    paths = ClusterPaths(cluster_dir)
    lifecycle.init(paths, cfg)
    real = services.pooler_args
    monkeypatch.setattr(services, "pooler_args",
                        lambda c, p, s=None: [*real(c, p, s), "--workers", "0"])
    said: list[str] = []
    with pytest.raises(lifecycle.ClusterError) as err:
        lifecycle.start(paths, say=said.append)
    msg = str(err.value)
    assert "pooler zone1-100 exited with status 1 while starting" in msg
    assert "workers (--workers) must be at least 1" in msg
    assert str(cluster_dir / "logs" / "zone1-100-pooler.log") in msg
    assert "stopping what this start started ..." in said
    assert _our_pids(cluster_dir) == []
    assert not port_in_use(ports.etcd) and not port_in_use(ports.pg)


def test_wrong_config_file_is_named(cluster_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("postgres:\n  base_prot: 5000\ndatabases: []\n")
    out = _mg(cluster_dir, "init", "--config", str(cfg), check=False)
    assert out.returncode == 1
    assert f"{cfg}: postgres: unknown key(s) base_prot" in out.stderr
    assert not (cluster_dir / "cluster.yaml").exists()


_OLD_CONFIG = """\
etcd: {listen: 127.0.0.1:2379, peer_port: 2380}
postgres: {base_port: 25432}
cells: [zone1, zone2]
databases:
  - name: postgres
    tablegroups:
      - name: default
        shards: [{name: "0", instances: [zone1, zone2]}]
"""


def test_config_without_pooler_and_gateway_sections_takes_defaults() -> None:
    cfg = parse(_OLD_CONFIG, Path("old.yaml"))
    plans = cfg.instances()
    assert [(p.pooler_port, p.pooler_grpc_port, p.pooler_http_port) for p in plans] == [
        (16000, 16100, 16200), (16001, 16101, 16201)]
    assert cfg.pooler.pool_size == 20 and cfg.pooler.listen == "127.0.0.1"
    gw = cfg.gateway
    assert (gw.listen, gw.http_port, gw.replica_lag_threshold) == ("127.0.0.1:15432", 15001, 30)
    assert cfg.gateway_cell == "zone1"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("pooler: {base_port: 25433}",
         "pooler.base_port: port 25433 (for pooler zone1-100) is also the port of Postgres "
         "zone2-101 (postgres.base_port)"),
        ("pooler: {pool_size: 0}", "pooler.pool_size: expected an integer from 1 to 10000"),
        ("pooler: {base_prot: 1}", "pooler: unknown key(s) base_prot"),
        ("gateway: {listen: nowhere}", "gateway.listen: expected HOST:PORT"),
        ("gateway: {cell: zone9}", "gateway.cell: expected one of ['zone1', 'zone2']"),
        ("gateway: {replica_lag_threshold: -1}", "gateway.replica_lag_threshold: expected a "
         "number of seconds >= 0"),
        ("gateway: {http_port: 2380}", "gateway.http_port: port 2380 (for the gateway's HTTP) "
         "is also the port of etcd peer (etcd.peer_port)"),
    ],
)
def test_bad_pooler_or_gateway_config_is_named(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(_OLD_CONFIG + section + "\n", Path("c.yaml"))
    assert f"c.yaml: {message}" in str(err.value)


def test_default_config_is_the_documented_cluster(cluster_dir: Path) -> None:
    _mg(cluster_dir, "init")
    from multigres.cli.cluster.config import load

    cfg = load(cluster_dir / "cluster.yaml")
    assert cfg.cells == ["zone1"] and cfg.etcd_port == 2379
    plans = cfg.instances()
    assert [(p.name, p.port, p.pooler_port, p.initial_primary) for p in plans] == [
        ("zone1-100", 25432, 16000, True),
        ("zone1-101", 25433, 16001, False),
        ("zone1-102", 25434, 16002, False),
    ]
    assert cfg.databases[0].name == "postgres" and cfg.databases[0].num_sync == 1
    assert cfg.gateway.listen == "127.0.0.1:15432" and cfg.gateway.http_port == 15001
    assert os.path.exists(cluster_dir / "cluster.yaml")
