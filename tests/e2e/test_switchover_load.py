"""A planned switchover under pgbench load through the gateway, as a user runs it.

A local cluster (`multigres cluster start`: etcd, a primary and two replicas, a pooler each,
the gateway) on free ports; pgbench (TPC-B-like without the branch/teller updates, ``-N``)
runs through the gateway with 8 clients while `multigres switchover` moves the primary to a
replica and back, several times. pgbench 15 aborts a client at its first error, so "zero
failed transactions" is: pgbench exits 0, every client runs to the end, and it reports 0
failures. Then `cluster status` and the topology name the last new primary.

On a failure the message holds pgbench's output, each switchover's steps, the cluster's logs
during the run and the errors in each Postgres log; the logs stay in the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multigres.netutil import port_in_use
from tests.e2e.test_cluster_cli import (
    GATEWAY_BUILT,
    Ports,
    _config,
    _mg,
    _new_dir,
    _remove,
    _topology,
)

pytestmark = pytest.mark.integration

PGBIN = Path("/usr/lib/postgresql/15/bin")
SHARD = "postgres/default/0"
CLIENTS = 8
DURATION = 40  # seconds of pgbench
SWITCH_AT = 3.0  # the first switch, seconds into the run
SETTLE = 0.2  # seconds of load between the end of a switch and the next one
LAST_SWITCH_BEFORE = 4.0  # no switch starts later than this before the run's end
# A switch takes about 1.5 s (most of it the command's start): about 20 switches in a run,
# so that a race hit by one switch in four fails the run nearly every time (0.75^20 < 0.5%).
MAX_SWITCHES = 24

ROUTED_TO_REPLICA = (
    "after a switchover the gateway sent transactions to the demoted primary, now a replica "
    "(pgbench: 'cannot execute UPDATE in a read-only transaction'): the gateway must take "
    "the primary from the Shard record, not from a health poll that can predate the switch"
)
STATEMENT_CUT = (
    "a statement sent after the switch was announced reached the old primary and was cut by "
    "its shutdown: the gateway must stop sending once the Shard record says not serving, "
    "and the switchover must wait for what was already sent"
)


class RoutedToReplica(AssertionError):
    """Transactions through the gateway ran on a replica (ROUTED_TO_REPLICA)."""


class StatementCut(AssertionError):
    """A client's statement was cut by the old primary's shutdown (STATEMENT_CUT)."""


@dataclass
class LoadCluster:
    dir: Path
    ports: Ports

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": "postgres", "PGCONNECT_TIMEOUT": "10"}

    def pgbench(self, port: int, *args: str) -> list[str]:
        return [str(PGBIN / "pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                *args, "postgres"]

    def switchover(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "multigres.cli.main", "switchover", "--shard", SHARD,
             "--dir", str(self.dir), "--timeout", "20", *args],
            capture_output=True, text=True, timeout=60)

    def status(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(_mg(self.dir, "status", "--json").stdout)
        return {(r["component"], r["name"]): r for r in rows}

    def primary(self) -> str:
        name: str = _topology(self.ports.etcd)["shard_primary"]
        return name


def _pick_ports(n: int) -> Ports:
    """Free ports for a cluster of ``n`` instances, below the kernel's ephemeral range.
    ``Ports.pick`` takes them from that range (the kernel's free ports), where on a busy
    machine an outgoing connection (pg_basebackup's, a pooler's) can take one of a run of
    ports before its server binds it; below it nothing but a server binds."""
    lo, hi = 20000, 32000
    try:
        lo_eph = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        hi = min(hi, lo_eph)
    except (OSError, ValueError):
        pass
    taken: set[int] = set()

    def run(size: int) -> int:
        for _ in range(200):
            base = random.randrange(lo, hi - size)
            ports = set(range(base, base + size))
            if not ports & taken and not any(port_in_use(p) for p in ports):
                taken.update(ports)
                return base
        raise RuntimeError(f"no run of {size} free ports in {lo}-{hi}")

    return Ports(run(1), run(1), run(n), run(n), run(n), run(n), run(1), run(1))


def _start(cfg: Path) -> LoadCluster:
    """Init and start a cluster on free ports; again on other ports if another process took
    one of them in between (other test runs share the machine)."""
    for attempt in range(3):
        d = _new_dir()
        ports = _pick_ports(3)
        cfg.write_text(_config(ports))
        try:
            _mg(d, "init", "--config", str(cfg))
            _mg(d, "start")
            return LoadCluster(d, ports)
        except AssertionError as e:
            _remove(d)
            if "already in use" not in str(e) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def load_cluster(tmp_path: Path) -> Iterator[LoadCluster]:
    if not (PGBIN / "pgbench").exists():
        pytest.skip(f"no pgbench in {PGBIN}")
    if not GATEWAY_BUILT:
        pytest.skip("multigres.gateway.cli is not importable yet (gateway not built)")
    cluster = _start(tmp_path / "cluster.yaml")
    try:
        yield cluster
    finally:
        # The logs outlive the cluster, for a failure's report (pytest keeps tmp_path).
        shutil.copytree(cluster.logs, tmp_path / "logs", dirs_exist_ok=True)
        for log in cluster.dir.glob("pg/*/postgres.log"):
            shutil.copy(log, tmp_path / "logs" / f"{log.parent.name}-postgres.log")
        _remove(cluster.dir)


def _log_around(log: Path, since: float, until: float, limit: int = 80) -> str:
    """The lines of a log written between two wall-clock times (logging's asctime format),
    for the report of a failure."""
    if not log.exists():
        return f"({log} does not exist)"
    lo = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since - 1))
    hi = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until + 1))
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if ln[:19] >= lo and ln[:19] <= hi]
    return "\n".join(lines[-limit:]) or "(nothing logged then)"


def test_switchover_under_pgbench_through_the_gateway(load_cluster: LoadCluster) -> None:
    c = load_cluster
    init = subprocess.run(c.pgbench(c.ports.pg, "-i", "-s", "1", "-q"), env=c.env(),
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    first = c.primary()

    started = time.time()
    bench = subprocess.Popen(
        c.pgbench(c.ports.gateway, "-n", "-N", "-c", str(CLIENTS), "-j", "2",
                  "-T", str(DURATION), "-P", "1"),
        env=c.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    switches: list[tuple[float, float, subprocess.CompletedProcess[str]]] = []
    primaries = [first]  # the primary before the first switch, then after each

    def switch(*args: str) -> bool:
        t0 = time.time()
        sw = c.switchover(*args)
        switches.append((t0, time.time(), sw))
        if sw.returncode != 0 or "done: " not in sw.stdout:
            return False
        primaries.append(sw.stdout.split("done: ", 1)[1].split(" ", 1)[0])
        return True

    try:
        time.sleep(SWITCH_AT)
        # To the best replica, then back to the one before, and so on while the run lasts.
        while (len(switches) < MAX_SWITCHES and bench.poll() is None
               and time.time() - started < DURATION - LAST_SWITCH_BEFORE):
            back = ["--to", primaries[-2]] if len(switches) % 2 else []
            if not switch(*back):
                break
            time.sleep(SETTLE)
        out, err = bench.communicate(timeout=DURATION + 40)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    ended = time.time()

    report = [f"pgbench exit code {bench.returncode}", "--- pgbench stdout:", out,
              "--- pgbench stderr (progress and errors):", err]
    for i, (t0, t1, sw) in enumerate(switches):
        report += [f"--- switchover {i + 1} ({t0 - started:.1f}s to {t1 - started:.1f}s "
                   f"into the run), exit code {sw.returncode}:", sw.stdout, sw.stderr]
    for log in sorted(c.logs.glob("*.log")):
        if log.name != "etcd.log":
            report += [f"--- {log.name} during the run:", _log_around(log, started, ended)]
    for log in sorted(c.dir.glob("pg/*/postgres.log")):
        errors = [ln for ln in log.read_text(errors="replace").splitlines()
                  if "ERROR" in ln or "FATAL" in ln or "promot" in ln or "shut" in ln
                  or "ready to accept" in ln]
        report += [f"--- errors and state changes in {log.parent.name}'s postgres.log:",
                   "\n".join(errors[-30:])]
    why = "\n".join(report)

    assert all(sw.returncode == 0 for _, _, sw in switches), why
    if "read-only transaction" in err:
        raise RoutedToReplica(why)
    if "aborted in command" in err and "administrator command" in err:
        raise StatementCut(why)
    assert bench.returncode == 0, why
    assert "aborted" not in err and "aborted" not in out, why
    assert f"number of clients: {CLIENTS}" in out, why
    assert "number of failed transactions: 0 " in out, why
    processed = next(ln for ln in out.splitlines()
                     if ln.startswith("number of transactions actually processed"))
    assert int(processed.split(":")[1].split("/")[0]) > 0, why

    # Each switch moved the primary (there and back), and the topology and `cluster status`
    # name the last one's.
    assert len(switches) >= 2, why
    for i in range(1, len(primaries)):
        assert primaries[i] != primaries[i - 1], why
        if i % 2 == 0:
            assert primaries[i] == primaries[i - 2], why
    now = c.primary()
    assert now == primaries[-1], why
    status = c.status()
    assert status["postgres", now]["role"] == "primary", status
    pooler = status["pooler", now]
    assert (pooler["role"], pooler["state"], pooler["healthy"]) == (
        "primary", "serving", True), status
    replicas = [n for (kind, n) in status if kind == "pooler" and n != now]
    assert len(replicas) == 2, status
    for name in replicas:
        assert status["postgres", name]["role"] == "replica", status
        assert status["pooler", name]["role"] == "replica", status
    assert all(r["healthy"] or not r["expected"] for r in status.values()), status
