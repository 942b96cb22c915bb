"""The cluster's servers beside etcd and Postgres: a multipooler per instance, one multigateway.

Each runs detached (its own session, outliving the CLI), logs to ``logs/<name>-pooler.log`` or
``logs/gateway.log``, and is recorded in state.json (``processes``: ``pooler <instance>``,
``gateway``) as soon as it runs. Before a recorded pid is signalled, its command line is
checked to still be that program: after a reboot the pid may belong to something else.

Waiting for readiness polls: a one-off wait on another process at start, not runtime state.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from multigres.cli.cluster.config import ClusterConfig, InstancePlan
from multigres.cli.cluster.errors import ClusterError
from multigres.cli.cluster.state import ClusterPaths, ClusterState
from multigres.pgctld.instance import SPEC_FILE, PgInstance
from multigres.procutil import pid_alive
from multigres.wire.tls import make_self_signed_cert

READY_TIMEOUT = 30.0
_POLL = 0.05

Say = Callable[[str], None]


@dataclass(frozen=True)
class Program:
    """A console script of ours and the module whose ``main`` it runs."""

    script: str
    module: str

    def built(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False

    def command(self) -> list[str]:
        """The script beside this Python (the venv's bin/), else ``python -c`` its main."""
        script = Path(sys.executable).parent / self.script
        if script.exists():
            return [str(script)]
        code = f"import sys; from {self.module} import main; sys.exit(main())"
        return [sys.executable, "-c", code]

    def runs_as(self, pid: int) -> bool:
        """``pid`` runs this program (by its command line). Without /proc, assume so."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except FileNotFoundError:
            return False
        except OSError:
            return True
        head = argv[:3]
        return any(os.path.basename(a) == self.script for a in head) or any(
            f"from {self.module} import main" in a for a in head
        )


POOLER = Program("multipooler", "multigres.pooler.cli")
GATEWAY = Program("multigateway", "multigres.gateway.cli")
LOCAL = Program("multigres", "multigres.cli.main")  # `multigres local`: local mode
GATEWAY_KEY = "gateway"
LOCAL_KEY = "local"


def _runs_local(pid: int) -> bool:
    """``pid`` is a ``multigres local`` process (which is the gateway and every pooler)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return LOCAL.runs_as(pid) and "local" in argv[:4]


def pooler_key(name: str) -> str:
    return f"pooler {name}"


def program_of(key: str) -> Program:
    if key == LOCAL_KEY:
        return LOCAL
    return GATEWAY if key == GATEWAY_KEY else POOLER


def runs_as(key: str, pid: int) -> bool:
    """``pid`` is the process recorded as ``key``: its program, or (local mode) the one
    ``multigres local`` process recorded under every key."""
    if key != LOCAL_KEY and program_of(key).runs_as(pid):
        return True
    return _runs_local(pid)


def running(state: ClusterState, key: str) -> int | None:
    """The pid of the recorded process ``key`` if it still runs (as the right program)."""
    pid = state.processes.get(key)
    if pid and pid_alive(pid) and runs_as(key, pid):
        return pid
    return None


def pooler_args(cfg: ClusterConfig, plan: InstancePlan,
                socket_dir: Path | None = None) -> list[str]:
    # The auth query is the pooler's default (on unless --auth-query ''): clients log in with
    # the SCRAM verifiers of the users that exist in Postgres. ``socket_dir``: the instance's
    # Unix socket, which the pooler uses for its own connections (cheaper than TCP).
    host = cfg.pooler.listen
    sock = ["--pg-socket-dir", str(socket_dir)] if socket_dir is not None else []
    return [
        "--listen", f"{host}:{plan.pooler_port}",
        "--pg-host", cfg.pg_listen,
        "--pg-port", str(plan.port),
        "--pg-user", cfg.pg_user,
        "--pg-password", cfg.pg_password,
        "--auth", "scram",
        "--grpc-port", str(plan.pooler_grpc_port),
        "--http-port", str(plan.pooler_http_port),
        "--topo", f"{cfg.etcd_host}:{cfg.etcd_port}",
        "--topo-root", cfg.topo_root,
        "--cell", plan.cell,
        "--pooler-id", plan.name,
        "--database", plan.database,
        "--tablegroup", plan.tablegroup,
        "--shard", plan.shard,
        "--pool-size", str(cfg.pooler.pool_size),
        *sock,
    ]  # fmt: skip


def gateway_tls(paths: ClusterPaths, say: Say) -> list[str]:
    """The gateway's TLS flags: a self-signed certificate made once under ``tls/`` (clients
    that ask for TLS get it; the others are not forced). None if openssl is missing."""
    cert, key = paths.root / "tls" / "gateway.crt", paths.root / "tls" / "gateway.key"
    if not (cert.exists() and key.exists()):
        try:
            cert, key = make_self_signed_cert(paths.root / "tls", name="gateway")
        except (RuntimeError, OSError) as e:
            say(f"gateway: no TLS ({e})")
            return []
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def gateway_args(cfg: ClusterConfig, tls: list[str] | None = None) -> list[str]:
    gw = cfg.gateway
    return [*(tls or []),
        "--listen", gw.listen,
        "--topo", f"{cfg.etcd_host}:{cfg.etcd_port}",
        "--topo-root", cfg.topo_root,
        "--cell", cfg.gateway_cell,
        "--http-port", str(gw.http_port),
        "--replica-lag-threshold", f"{gw.replica_lag_threshold:g}",
    ]  # fmt: skip


@dataclass
class Launched:
    """A process this run started: to wait for, and to stop if the start fails."""

    key: str
    proc: subprocess.Popen[bytes]
    log: Path
    log_offset: int  # where this run's output starts in the log

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def spawn(
    paths: ClusterPaths, state: ClusterState, key: str, args: list[str], log: Path
) -> Launched:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            [*program_of(key).command(), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command; `cluster stop` ends it
            close_fds=True,
        )
    state.processes[key] = proc.pid
    state.save(paths.state)
    return Launched(key, proc, log, offset)


def wait_ready(
    launched: Launched, what: str, ready: Callable[[], bool], timeout: float = READY_TIMEOUT
) -> None:
    """Until ``ready()``; ClusterError with the end of its log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        rc = launched.proc.poll()
        if rc is not None:
            raise ClusterError(
                f"{what} exited with status {rc} while starting; end of {launched.log}:\n"
                f"{launched.log_tail()}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{what} did not become ready within {timeout:g}s; end of {launched.log}:\n"
                f"{launched.log_tail()}"
            )
        time.sleep(_POLL)


def http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def socket_dir(paths: ClusterPaths, plan: InstancePlan) -> Path | None:
    """The Unix socket directory of ``plan``'s instance, if its spec has one (instances made
    before sockets existed have none: their pooler stays on TCP)."""
    inst_dir = paths.instance_dir(plan.name)
    if not (inst_dir / SPEC_FILE).exists():
        return None
    return PgInstance(inst_dir).socket_dir()


def start_poolers(
    cfg: ClusterConfig,
    paths: ClusterPaths,
    state: ClusterState,
    started: list[Launched],
    say: Say,
) -> None:
    """Start the poolers that do not run (all at once), then wait until each serves."""
    waiting: list[tuple[InstancePlan, Launched]] = []
    for plan in cfg.instances():
        key = pooler_key(plan.name)
        pid = running(state, key)
        if pid is None:
            launched = spawn(
                paths, state, key, pooler_args(cfg, plan, socket_dir(paths, plan)),
                paths.logs / f"{plan.name}-pooler.log"
            )
            started.append(launched)
            waiting.append((plan, launched))
            pid = launched.proc.pid
        say(f"pooler      {plan.name}  {cfg.pooler.listen}:{plan.pooler_port}  (pid {pid})")
    for plan, launched in waiting:
        url = f"http://{cfg.pooler.listen}:{plan.pooler_http_port}/readyz"
        wait_ready(launched, f"pooler {plan.name}", functools.partial(http_ok, url))


def start_gateway(
    cfg: ClusterConfig,
    paths: ClusterPaths,
    state: ClusterState,
    started: list[Launched],
    say: Say,
) -> bool:
    """Start the gateway unless it runs; False if it is not built yet (then it is skipped)."""
    if not GATEWAY.built():
        say("gateway: not built yet, skipped")
        return False
    gw = cfg.gateway
    pid = running(state, GATEWAY_KEY)
    if pid is None:
        launched = spawn(paths, state, GATEWAY_KEY, gateway_args(cfg, gateway_tls(paths, say)),
                         paths.logs / "gateway.log")
        started.append(launched)
        wait_ready(launched, "gateway", lambda: accepts(gw.host, gw.port))
        pid = launched.proc.pid
    say(f"gateway     {gw.listen}  (pid {pid})")
    return True


def start_local(
    cfg: ClusterConfig,
    paths: ClusterPaths,
    state: ClusterState,
    started: list[Launched],
    say: Say,
) -> None:
    """Local mode: one ``multigres local`` process runs the gateway and every pooler; it is
    recorded under each of their keys too, so status and stop find it."""
    plans = cfg.instances()
    keys = [LOCAL_KEY, GATEWAY_KEY, *(pooler_key(p.name) for p in plans)]
    pid = running(state, LOCAL_KEY)
    if pid is None:
        args = ["local"]
        for plan in plans:
            args += ["--pooler", shlex.join(pooler_args(cfg, plan, socket_dir(paths, plan)))]
        args += ["--gateway", shlex.join(gateway_args(cfg, gateway_tls(paths, say)))]
        launched = spawn(paths, state, LOCAL_KEY, args, paths.logs / "local.log")
        started.append(launched)
        pid = launched.proc.pid
        for key in keys:
            state.processes[key] = pid
        state.save(paths.state)
        for plan in plans:
            url = f"http://{cfg.pooler.listen}:{plan.pooler_http_port}/readyz"
            wait_ready(launched, f"pooler {plan.name}", functools.partial(http_ok, url))
        gw = cfg.gateway
        wait_ready(launched, "gateway", lambda: accepts(gw.host, gw.port))
    say(f"local       gateway {cfg.gateway.listen} and {len(plans)} poolers in one process"
        f"  (pid {pid})")


def stop_processes(state: ClusterState, keys: list[str], say: Say, timeout: float = 10.0) -> None:
    """SIGTERM the recorded processes ``keys`` together, SIGKILL what outlives ``timeout``;
    each is dropped from ``state``. A pid that now runs another program is left alone."""
    pids: dict[str, int] = {}
    for key in keys:
        pid = state.processes.pop(key, None)
        if not pid or not pid_alive(pid):
            continue
        if not runs_as(key, pid):
            say(f"{key}: pid {pid} now runs another program; not stopping it")
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            pids[key] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    for key, pid in pids.items():
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            say(f"stopped {key} (pid {pid}, killed after {timeout:g}s)")
        else:
            say(f"stopped {key} (pid {pid})")
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
