"""The servers that bench/pgbench_compare starts: its own Postgres, PgBouncer and multipooler.

Every server listens on a free loopback port and lives under one temp dir. Proxies run in
their own session (``start_new_session``) so that a Ctrl-C reaches only the script, which then
stops them in order; Postgres is started by pg_ctl, which detaches it the same way.

Authentication is the same on every path, so that no target gets a cheaper login:
- ``scram``: Postgres stores a SCRAM secret; the userlist holds that same secret, copied from
  pg_authid (what PgBouncer's docs recommend and what an auth_query returns). PgBouncer then
  checks client proofs without key derivation and logs in to Postgres with the keys the
  client's proof carries. (A plaintext password in the userlist makes PgBouncer derive keys,
  4096 PBKDF2 rounds, for every client login: about 4 ms of CPU each here.)
- ``md5``: Postgres stores an md5 hash and pg_hba says md5; the userlist holds the hash.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from multigres.netutil import free_port
from multigres.pgctld.instance import InstanceSpec, PgInstance
from multigres.pgctld.osuser import RunAs, resolve_run_as

USER = "postgres"
PASSWORD = "postgres"
DATABASE = "postgres"
HOST = "127.0.0.1"

DEFAULT_PGBOUNCER = "/usr/sbin/pgbouncer"
DEFAULT_MULTIPOOLER_CMD = (
    ".venv/bin/multipooler --listen 127.0.0.1:{port} --pg-host {pg_host} --pg-port {pg_port}"
    " --pg-user postgres --pg-password {password} --pg-database postgres"
    " --pool-size {pool_size} --max-client-conn {max_clients} --auth {auth} --userlist {userlist}"
)
AUTH_METHODS = ("scram", "md5")

# Postgres for a benchmark: the data is throwaway (fsync off; commits still write WAL), the
# whole scale-10 data set fits in shared_buffers, and no checkpoint falls inside a run.
PG_SETTINGS: dict[str, Any] = {
    "fsync": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "log_connections": "off",
    "log_disconnections": "off",
}


class BenchError(Exception):
    """A server did not start, or a step of the benchmark failed; the message says why."""


class TargetUnavailable(BenchError):
    """A target cannot run on this machine (binary missing); the run skips it."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_connectable(
    port: int, *, timeout: float, alive: Any = None, what: str = "server", log: Path | None = None
) -> None:
    """Wait until a login through ``port`` runs ``SELECT 1``; fail early if ``alive()`` is false."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            tail = f"; last lines of {log}:\n{_tail(log)}" if log else ""
            raise BenchError(f"{what} exited during startup{tail}")
        try:
            with psycopg.connect(
                host=HOST,
                port=port,
                user=USER,
                password=PASSWORD,
                dbname=DATABASE,
                connect_timeout=2,
                autocommit=True,
            ) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as e:
            last = e
            time.sleep(0.1)
    tail = f"; last lines of {log}:\n{_tail(log)}" if log else ""
    raise BenchError(
        f"{what} did not accept a login on port {port} within {timeout:.0f}s: {last}{tail}"
    )


class PostgresServer:
    """The Postgres every target reaches, made with pgctld (initdb, config, start/stop)."""

    def __init__(
        self, base: Path, *, max_connections: int, auth: str, socket: bool = False
    ) -> None:
        self.auth = auth
        # With ``socket``, Postgres also listens on a Unix socket in this directory, and the
        # proxies reach it there (as a pooler beside its Postgres does); pgbench's direct
        # runs stay on TCP, as clients on other hosts would.
        self.socket_dir = base / "pgsock" if socket else None
        settings = {**PG_SETTINGS, "max_connections": str(max_connections)}
        if self.socket_dir is not None:
            settings["unix_socket_directories"] = str(self.socket_dir)
        self.spec = InstanceSpec(
            name="bench",
            port=free_port(),
            password=PASSWORD,
            superuser=USER,
            settings=settings,
        )
        self.inst_dir = base / "postgres"
        self.inst: PgInstance | None = None

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def proxy_host(self) -> str:
        """Where the proxies reach Postgres: the socket directory, or the loopback address."""
        return str(self.socket_dir) if self.socket_dir is not None else HOST

    def start(self) -> None:
        self.inst = PgInstance.create(self.inst_dir, self.spec, no_sync=True)
        if self.socket_dir is not None:
            self.socket_dir.mkdir()
            self.inst.run_as.chown_tree(self.socket_dir)  # pgctld adds its `local` hba line
        self.inst.start()
        if self.auth == "md5":
            self._switch_to_md5()

    def _write_hba(self, method: str) -> None:
        assert self.inst is not None
        hba = self.inst.data_dir / "pg_hba.conf"
        local = f"local all all {method}\n" if self.socket_dir is not None else ""
        hba.write_text(
            f"# Written by bench/pgbench_compare.\n{local}"
            f"host all all 127.0.0.1/32 {method}\n"
            f"host all all ::1/128 {method}\n"
        )
        self.inst.run_as.chown_tree(hba)

    def _switch_to_md5(self) -> None:
        """Store the password as md5 and make pg_hba ask for md5 (pgctld writes SCRAM)."""
        self._write_hba("md5")
        with self.connect() as conn:
            conn.execute("SET password_encryption = 'md5'")
            conn.execute(f"ALTER ROLE {USER} PASSWORD '{PASSWORD}'")
            conn.execute("SELECT pg_reload_conf()")
        # The reload is asynchronous: wait until a fresh login goes through md5.
        wait_connectable(self.port, timeout=10, what="Postgres (after switching to md5)")

    def connect(self) -> psycopg.Connection[Any]:
        assert self.inst is not None
        return self.inst.connect()

    def pid(self) -> int | None:
        return self.inst.pid() if self.inst else None

    def password_secret(self) -> str:
        """What Postgres stores for the user (SCRAM secret or md5 hash), for a userlist."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (USER,)
            ).fetchone()
        if row is None or not row[0]:
            raise BenchError(f"role {USER!r} has no password in pg_authid")
        return str(row[0])

    def log_tail(self) -> str:
        return self.inst.log_tail() if self.inst else "(not created)"

    def stop(self) -> None:
        if self.inst is None:
            return
        try:
            self.inst.stop(timeout=15)
        except Exception:
            self.inst.kill()


class Target:
    """Something pgbench connects to: Postgres directly, or a proxy in front of it."""

    name = "?"

    def __init__(self) -> None:
        self.port = 0

    def proxy_pid(self) -> int | None:
        """The proxy's root process (its CPU and RSS are measured); None for direct."""
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class DirectTarget(Target):
    name = "direct"

    def __init__(self, pg: PostgresServer) -> None:
        super().__init__()
        self.port = pg.port


class ProxyTarget(Target):
    """A proxy process we start, log to a file, measure through /proc and stop."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write config files before the start."""

    def proxy_pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.prepare()
        argv = self.argv()
        with self.log.open("ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        proc = self.proc
        wait_connectable(
            self.port,
            timeout=30,
            alive=lambda: proc.poll() is None,
            what=self.name,
            log=self.log,
        )

    def stop(self) -> None:
        """SIGTERM the proxy's process group, SIGKILL it if it lingers, then any leftovers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # start_new_session: the proxy leads its own group, which holds any worker processes.
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        _signal_group(proc.pid, signal.SIGKILL)

    def log_tail(self) -> str:
        return _tail(self.log)


class PgBouncer(ProxyTarget):
    """PgBouncer in transaction pooling mode with the same pool size as multipooler."""

    name = "pgbouncer"

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str,
        pg: PostgresServer,
        pool_size: int,
        max_clients: int,
        auth: str,
        run_as: RunAs | None = None,
    ) -> None:
        super().__init__(workdir)
        if not os.access(binary, os.X_OK):
            raise TargetUnavailable(
                f"PgBouncer not found at {binary}: install it with `apt-get install pgbouncer` "
                "(or pass --pgbouncer PATH)"
            )
        self.binary = binary
        self.pg = pg
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.auth = auth
        self.run_as = run_as or resolve_run_as()
        self.ini = workdir / "pgbouncer.ini"
        self.userlist = workdir / "userlist.txt"

    def prepare(self) -> None:
        secret = self.pg.password_secret()
        self.userlist.write_text(f'"{USER}" "{secret}"\n')
        auth_type = "scram-sha-256" if self.auth == "scram" else "md5"
        # Defaults otherwise, except: no log line per connection (multipooler writes none,
        # and -C would measure log writes), and room for every client of the run.
        self.ini.write_text(
            f"""\
[databases]
{DATABASE} = host={self.pg.proxy_host} port={self.pg.port} dbname={DATABASE}

[pgbouncer]
listen_addr = {HOST}
listen_port = {self.port}
listen_backlog = 4096
unix_socket_dir =
auth_type = {auth_type}
auth_file = {self.userlist}
admin_users = {USER}
pool_mode = transaction
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {self.max_clients}
max_db_connections = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
ignore_startup_parameters = extra_float_digits
"""
        )
        for path in (self.ini, self.userlist):
            path.chmod(0o600)
        # PgBouncer refuses to run as root: it runs as the user that runs Postgres.
        self.run_as.chown_tree(self.workdir)

    def argv(self) -> list[str]:
        cmd = [self.binary, str(self.ini)]
        if self.run_as.switches:
            setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
            cmd = [
                setpriv,
                f"--reuid={self.run_as.uid}",
                f"--regid={self.run_as.gid}",
                "--clear-groups",
                "--",
                *cmd,
            ]
        return cmd


class Multipooler(ProxyTarget):
    """multipooler, started from a command template (see DEFAULT_MULTIPOOLER_CMD)."""

    name = "multipooler"

    def __init__(
        self,
        workdir: Path,
        *,
        template: str,
        pg: PostgresServer,
        pool_size: int,
        max_clients: int,
        auth: str,
        repo_root: Path,
    ) -> None:
        super().__init__(workdir)
        self.template = template
        self.pg = pg
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.auth = auth
        self.userlist = workdir / "userlist.txt"
        words = shlex.split(template)
        if not words:
            raise BenchError("--multipooler-cmd is empty")
        self.program = resolve_program(words[0], repo_root)
        if self.program is None:
            raise TargetUnavailable(
                f"multipooler not found ({words[0]!r} does not exist yet, or is not on PATH); "
                "build it (`make`), or pass --multipooler-cmd"
            )

    def prepare(self) -> None:
        self.userlist.write_text(f'"{USER}" "{self.pg.password_secret()}"\n')
        self.userlist.chmod(0o600)

    def argv(self) -> list[str]:
        fields = {
            "port": self.port,
            "host": HOST,
            "pg_host": self.pg.proxy_host,
            "pg_port": self.pg.port,
            "pool_size": self.pool_size,
            "max_clients": self.max_clients,
            "auth": self.auth,
            "userlist": self.userlist,
            "user": USER,
            "password": PASSWORD,
            "database": DATABASE,
            "dir": self.workdir,
        }
        try:
            words = [w.format(**fields) for w in shlex.split(self.template)]
        except (KeyError, IndexError, ValueError) as e:
            raise BenchError(
                f"--multipooler-cmd has an unknown placeholder ({e}); known: "
                + ", ".join("{" + k + "}" for k in fields)
            ) from e
        words[0] = str(self.program)
        return words

    def env(self) -> dict[str, str]:
        # The password for multipooler's own logins to Postgres, as libpq reads it.
        return {**os.environ, "PGPASSWORD": PASSWORD}


class Multigateway(Multipooler):
    """multigateway over the network in front of one multipooler (registered in a throwaway
    etcd): client -> gateway -> pooler -> Postgres. Both run as one process tree (the
    pooler is the gateway's child), so the measured proxy CPU is gateway + pooler."""

    name = "multigateway"

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.gateway = resolve_program(".venv/bin/multigateway", kwargs["repo_root"])
        if self.gateway is None:
            raise TargetUnavailable("multigateway not found; build it (`make`)")
        self.etcd: Any = None
        self.pooler_port = 0

    def prepare(self) -> None:
        from multigres.testing.etcd import start_etcd

        super().prepare()
        self.etcd = start_etcd(self.workdir / "etcd")
        self.pooler_port = free_port()

    def commands(self) -> tuple[list[str], list[str]]:
        """The pooler's and the gateway's command lines."""
        gateway_port, self.port = self.port, self.pooler_port
        try:
            pooler = super().argv()
        finally:
            self.port = gateway_port
        topo = ["--topo", self.etcd.address, "--topo-root", "/bench", "--cell", "zone1"]
        pooler += [*topo, "--grpc-port", str(free_port()), "--pooler-id", "bench-pooler",
                   "--database", DATABASE, "--tablegroup", "default", "--shard", "0"]
        gateway = [str(self.gateway), "--listen", f"{HOST}:{self.port}", *topo,
                   "--max-client-conn", str(self.max_clients)]
        return pooler, gateway

    def argv(self) -> list[str]:
        pooler, gateway = self.commands()
        # `exec`: the shell becomes the gateway, and the pooler stays its child.
        return ["/bin/sh", "-c", f"{shlex.join(pooler)} & exec {shlex.join(gateway)}"]

    def start(self) -> None:
        super().start()
        # The gateway listens at once; it serves once the pooler is in the topology.
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(host=HOST, port=self.port, user=USER, password=PASSWORD,
                                     dbname=DATABASE, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as e:
                if time.monotonic() > deadline:
                    raise BenchError(f"multigateway does not serve: {e}") from e
                time.sleep(0.2)

    def stop(self) -> None:
        super().stop()
        if self.etcd is not None:
            from multigres.testing.etcd import stop_etcd

            stop_etcd(self.etcd)
            self.etcd = None


class MultigatewayLocal(Multigateway):
    """Local mode: the gateway and its pooler in one process (`multigres local`), the
    gateway reaching the pooler through memory."""

    name = "multigateway-local"

    def argv(self) -> list[str]:
        pooler, gateway = self.commands()
        program = self.gateway.with_name("multigres") if self.gateway else None
        assert program is not None
        return [str(program), "local", "--pooler", shlex.join(pooler[1:]),
                "--gateway", shlex.join(gateway[1:])]


def resolve_program(word: str, repo_root: Path) -> Path | None:
    """The executable a command starts with: a path (relative to cwd or the repo) or a name."""
    if "/" not in word:
        found = shutil.which(word)
        return Path(found) if found else None
    candidates = [Path(word)] if Path(word).is_absolute() else [Path.cwd() / word, repo_root / word]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.absolute()
    return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
