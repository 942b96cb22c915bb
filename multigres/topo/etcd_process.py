"""Start and stop a real etcd server (Debian's ``etcd-server`` package) on loopback.

Two users: the local cluster, which starts etcd detached (its own session, outliving the
CLI) and stops it later from the pid in its state file (:func:`stop_pid`); and the tests,
which start a throwaway etcd tied to the test process (:mod:`multigres.testing.etcd`).

Waiting for readiness and for exit polls: these are one-off waits on another process at
start and stop, not runtime state, which is always watched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from multigres.netutil import port_in_use
from multigres.procutil import pid_alive

DEFAULT_BINARY = "/usr/bin/etcd"
INSTALL_HINT = "install it with `apt-get install etcd-server`"
_POLL = 0.02


class EtcdError(RuntimeError):
    """etcd could not be found, started or stopped; the message says why and what to do."""


def find_etcd(binary: str | None = None) -> str:
    """The etcd binary to run: ``binary`` if given, else ``etcd`` on PATH, else /usr/bin/etcd."""
    if binary is not None:
        if not os.access(binary, os.X_OK):
            raise EtcdError(f"etcd binary {binary} not found or not executable: {INSTALL_HINT}")
        return binary
    found = shutil.which("etcd")
    if found:
        return found
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    raise EtcdError(f"etcd not found on PATH nor at {DEFAULT_BINARY}: {INSTALL_HINT}")


def is_healthy(client_url: str, timeout: float = 1.0) -> bool:
    """True if the etcd at ``client_url`` answers its /health endpoint as healthy."""
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=timeout) as resp:
            return b'"true"' in resp.read()
    except (OSError, urllib.error.URLError):
        return False


class EtcdProcess:
    """One single-member etcd with its data in ``data_dir``, listening on ``host``.

    Its log goes to ``log_path`` (default: ``<data_dir>.log``, beside the data directory,
    so that deleting the data keeps the log of what happened).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        client_port: int,
        peer_port: int,
        host: str = "127.0.0.1",
        *,
        binary: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        name: str = "multigres",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.client_port = client_port
        self.peer_port = peer_port
        self.host = host
        self.binary = binary
        self.name = name
        self.log_path = (
            Path(log_path)
            if log_path is not None
            else self.data_dir.parent / f"{self.data_dir.name}.log"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def address(self) -> str:
        """``host:port`` of the client endpoint, as :class:`~multigres.topo.etcd.EtcdConn`
        takes it."""
        return f"{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            "--initial-cluster-state", "new",
            # One member, no peers: a short election timeout only makes it elect itself in
            # about 0.1 s instead of 1 s. It also lowers etcd's minimum lease ttl to 1 s,
            # which the lock tests use.
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip

    def start(
        self, timeout: float = 10.0, *, detached: bool = False, die_with_parent: bool = False
    ) -> None:
        """Start etcd and return once it answers; on failure, leave no process behind.

        ``detached``: in its own session, so that it survives the caller (the local cluster).
        ``die_with_parent``: killed by the kernel if the caller dies, even by SIGKILL (tests).
        """
        if self._proc is not None and self._proc.poll() is None:
            raise EtcdError(f"etcd (pid {self._proc.pid}) is already running")
        binary = find_etcd(self.binary)
        for what, port in (("client", self.client_port), ("peer", self.peer_port)):
            if port_in_use(port, self.host):
                raise EtcdError(
                    f"cannot start etcd: its {what} port {self.host}:{port} is already in use "
                    "(another etcd still running? pick another port or stop it)"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(binary)
        setpriv = shutil.which("setpriv")
        if die_with_parent and setpriv:
            # PR_SET_PDEATHSIG through util-linux's setpriv rather than a preexec_fn: the
            # caller has gRPC threads, and running Python code between fork and exec in a
            # threaded process can deadlock. The flag survives the exec of etcd.
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detached,
                close_fds=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise EtcdError(
                    f"etcd exited with status {rc} while starting on {self.client_url}; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            if is_healthy(self.client_url, timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise EtcdError(
                    f"etcd did not answer on {self.client_url} within {timeout:g}s; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns when the process is gone."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def is_etcd_pid(pid: int) -> bool:
    """True if ``pid`` runs etcd (directly or under setpriv). Without /proc, assume so."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return any(os.path.basename(a) == b"etcd" for a in argv[:4])


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """Stop the etcd started earlier (maybe by another process) with this pid: SIGTERM,
    SIGKILL after ``timeout``. Returns False if it was not running.

    Refuses a pid that does not run etcd: after a reboot the pid in a state file may belong
    to an unrelated process.
    """
    if not pid_alive(pid):
        return False
    if not is_etcd_pid(pid):
        raise EtcdError(f"pid {pid} is not an etcd process; not stopping it")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if _wait_gone(pid, timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if not _wait_gone(pid, 5.0):
        raise EtcdError(f"etcd pid {pid} survived SIGKILL")
    return True
