"""`multigres cluster init/start/status/stop` end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from multigres.netutil import free_port, port_in_use
from multigres.procutil import pid_alive

pytestmark = pytest.mark.integration


def _free_run(n: int) -> int:
    """A base port with ``n`` consecutive free ports."""
    for _ in range(50):
        base = free_port()
        if base + n < 65000 and not any(port_in_use(base + i) for i in range(n)):
            return base
    raise RuntimeError("no run of free ports")


def _config(base_port: int, etcd_port: int, peer_port: int, extra_settings: str = "") -> str:
    return f"""\
etcd:
  listen: 127.0.0.1:{etcd_port}
  peer_port: {peer_port}
postgres:
  base_port: {base_port}
  settings:
    shared_buffers: 16MB
    fsync: "off"
{extra_settings}
cells: [zone1]
databases:
  - name: postgres
    durability: {{num_sync: 1}}
    tablegroups:
      - name: default
        sharded: false
        shards:
          - name: "0"
            instances: [zone1, zone1, zone1]
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
    """Live processes whose command line or data directory is under the cluster dir."""
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
    if state.get("etcd_pid") and pid_alive(state["etcd_pid"]):
        pids.append(state["etcd_pid"])
    for name in state["instances"]:
        pidfile = cluster_dir / "pg" / name / "data" / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            if pid_alive(pid):
                pids.append(pid)
    return sorted(set(pids))


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="multigres-cluster-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        if (d / "cluster.yaml").exists():
            _mg(d, "stop", "--clean", check=False)
        subprocess.run(["rm", "-rf", str(d)], check=False)


def test_start_status_stop(cluster_dir: Path, tmp_path: Path) -> None:
    base, etcd_port, peer = _free_run(3), free_port(), free_port()
    cfg = tmp_path / "three.yaml"
    cfg.write_text(_config(base, etcd_port, peer))
    out = _mg(cluster_dir, "init", "--config", str(cfg))
    assert "cluster.yaml" in out.stdout
    out = _mg(cluster_dir, "start")
    assert f"psql -h 127.0.0.1 -p {base} -U postgres postgres" in out.stdout
    assert "multigres cluster stop" in out.stdout

    with psycopg.connect(host="127.0.0.1", port=base, user="postgres", password="postgres",
                         dbname="postgres", autocommit=True) as conn:
        names = conn.execute("SHOW synchronous_standby_names").fetchone()
        assert names == ('ANY 1 ("zone1-101", "zone1-102")',)
        streaming = conn.execute(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            " ORDER BY 1"
        ).fetchall()
        assert streaming == [("zone1-101",), ("zone1-102",)]
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (42)")

    status = _mg(cluster_dir, "status", "--json")
    rows: list[dict[str, Any]] = json.loads(status.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["etcd"]["healthy"] and by_name["etcd"]["address"] == f"127.0.0.1:{etcd_port}"
    assert by_name["zone1-100"]["role"] == "primary"
    assert [by_name[n]["role"] for n in ("zone1-101", "zone1-102")] == ["replica", "replica"]
    assert all(r["healthy"] for r in rows)
    assert by_name["zone1-101"]["replication_lag_bytes"] is not None
    table = _mg(cluster_dir, "status").stdout
    assert table.splitlines()[0].split()[:5] == ["COMPONENT", "NAME", "ADDRESS", "ROLE", "HEALTHY"]

    # The topology describes the same cluster.
    topo = subprocess.run(
        [sys.executable, "-c", _DUMP_TOPO, f"127.0.0.1:{etcd_port}"],
        capture_output=True, text=True, check=True,
    )
    poolers = json.loads(topo.stdout)
    assert poolers == {"zone1-100": "primary", "zone1-101": "replica", "zone1-102": "replica"}

    # Starting again is a no-op that reports the same cluster.
    _mg(cluster_dir, "start")
    assert len(_our_pids(cluster_dir)) >= 4

    _mg(cluster_dir, "stop")
    assert _our_pids(cluster_dir) == []
    assert not port_in_use(base) and not port_in_use(etcd_port)
    failed = _mg(cluster_dir, "status", check=False)
    assert failed.returncode == 1

    # The data survives a stop: a new start serves the same rows.
    _mg(cluster_dir, "start")
    with psycopg.connect(host="127.0.0.1", port=base + 1, user="postgres", password="postgres",
                         dbname="postgres") as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    running = _our_pids(cluster_dir)
    assert len(running) >= 4
    _mg(cluster_dir, "stop", "--clean")
    assert [p for p in running if pid_alive(p)] == []
    assert not (cluster_dir / "pg").exists() and (cluster_dir / "cluster.yaml").exists()


_DUMP_TOPO = """
import asyncio, json, sys
from multigres.topo.etcd import EtcdConn
from multigres.topo.server import TopoServer
async def main():
    async with TopoServer(EtcdConn(sys.argv[1], root="/multigres")) as topo:
        poolers = await topo.get_poolers("zone1")
        print(json.dumps({p.id: str(p.role) for p in poolers}))
asyncio.run(main())
"""


def test_port_in_use_fails_before_starting_anything(cluster_dir: Path, tmp_path: Path) -> None:
    base, etcd_port, peer = _free_run(3), free_port(), free_port()
    cfg = tmp_path / "busy.yaml"
    cfg.write_text(_config(base, etcd_port, peer))
    _mg(cluster_dir, "init", "--config", str(cfg))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 2))
        holder.listen()
        out = _mg(cluster_dir, "start", check=False)
    assert out.returncode == 1
    assert f"port {base + 2} on 127.0.0.1 (for Postgres zone1-102) is already in use" in out.stderr
    assert "Traceback" not in out.stderr
    assert not port_in_use(etcd_port)


def test_failure_half_way_stops_what_it_started(cluster_dir: Path, tmp_path: Path) -> None:
    base, etcd_port, peer = _free_run(3), free_port(), free_port()
    cfg = tmp_path / "broken.yaml"
    # The primary cannot start: etcd is already up by then and must be stopped again.
    cfg.write_text(_config(base, etcd_port, peer, "    shared_preload_libraries: no_such_lib"))
    _mg(cluster_dir, "init", "--config", str(cfg))
    out = _mg(cluster_dir, "start", check=False)
    assert out.returncode == 1
    assert "no_such_lib" in out.stderr
    assert "stopping what this start started" in out.stdout
    assert _our_pids(cluster_dir) == []
    assert not port_in_use(etcd_port)


def test_wrong_config_file_is_named(cluster_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("postgres:\n  base_prot: 5000\ndatabases: []\n")
    out = _mg(cluster_dir, "init", "--config", str(cfg), check=False)
    assert out.returncode == 1
    assert f"{cfg}: postgres: unknown key(s) base_prot" in out.stderr
    assert not (cluster_dir / "cluster.yaml").exists()


def test_default_config_is_the_documented_cluster(cluster_dir: Path) -> None:
    _mg(cluster_dir, "init")
    from multigres.cli.cluster.config import load

    cfg = load(cluster_dir / "cluster.yaml")
    assert cfg.cells == ["zone1"] and cfg.etcd_port == 2379
    plans = cfg.instances()
    assert [(p.name, p.port, p.initial_primary) for p in plans] == [
        ("zone1-100", 25432, True), ("zone1-101", 25433, False), ("zone1-102", 25434, False),
    ]
    assert cfg.databases[0].name == "postgres" and cfg.databases[0].num_sync == 1
    assert os.path.exists(cluster_dir / "cluster.yaml")
