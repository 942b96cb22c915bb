"""One Postgres instance managed by pgctld: create, start/stop, clone, promote, rewind.

An instance lives in one directory::

    <instance dir>/pgctld.json   the instance spec (name, port, upstream, durability, ...)
    <instance dir>/pgpass        the superuser password, for replication and pg_rewind
    <instance dir>/postgres.log  the server log
    <instance dir>/data/         PGDATA

Every operation is idempotent where it can be (start of a running server, stop of a stopped
one) and fails with a message that names the problem otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from multigres.netutil import port_in_use
from multigres.pgctld import config
from multigres.pgctld.binaries import find_bin_dir
from multigres.pgctld.config import Durability, Upstream
from multigres.pgctld.errors import (
    CommandFailed,
    DataDirConflict,
    NotRunning,
    PgctldError,
    PortInUse,
)
from multigres.pgctld.osuser import RunAs, resolve_run_as

SPEC_FILE = "pgctld.json"
# A Unix socket's path must fit sockaddr_un (107 bytes in Postgres's check); the lock file
# beside it is the longest name.
MAX_SOCKET_PATH = 100


@dataclass
class InstanceSpec:
    """What pgctld knows about an instance; stored as pgctld.json in the instance dir."""

    name: str
    port: int
    listen: str = "127.0.0.1"
    superuser: str = "postgres"
    password: str = "postgres"
    upstream: Upstream | None = None
    durability: Durability | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Also listen on a Unix socket in the instance's run/ directory, for the pooler beside it
    # (password logins there too). Skipped when the path would be too long for a socket.
    unix_socket: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InstanceSpec:
        raw = json.loads(text)
        up = raw.pop("upstream", None)
        dur = raw.pop("durability", None)
        return cls(
            upstream=Upstream(**up) if up else None,
            durability=Durability(**dur) if dur else None,
            **raw,
        )


@dataclass(frozen=True)
class Endpoint:
    """How to reach a server as the superuser."""

    host: str
    port: int
    user: str = "postgres"
    password: str = "postgres"

    def conninfo(self, dbname: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=5,
        )


@dataclass
class InstanceStatus:
    name: str
    data_dir: str
    port: int
    running: bool
    pid: int | None = None
    role: str | None = None  # "primary" | "replica"
    timeline: int | None = None
    lsn: str | None = None
    upstream: str | None = None
    synchronous_standby_names: str | None = None
    replicas: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class PgInstance:
    """A Postgres instance in ``inst_dir``; see the module docstring for the layout."""

    def __init__(
        self, inst_dir: Path | str, bin_dir: Path | None = None, run_as: RunAs | None = None
    ) -> None:
        self.inst_dir = Path(inst_dir).absolute()
        self.data_dir = self.inst_dir / "data"
        self.log_file = self.inst_dir / "postgres.log"
        self.pgpass = self.inst_dir / "pgpass"
        self._bin_dir = bin_dir
        self.run_as = run_as or resolve_run_as()
        self._spec: InstanceSpec | None = None

    # -- spec -----------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def spec(self) -> InstanceSpec:
        if self._spec is None:
            path = self.inst_dir / SPEC_FILE
            try:
                self._spec = InstanceSpec.from_json(path.read_text())
            except FileNotFoundError as e:
                raise PgctldError(
                    f"{self.inst_dir} is not a pgctld instance (no {SPEC_FILE}); "
                    "create it first with `pgctld init`"
                ) from e
        return self._spec

    def exists(self) -> bool:
        return (self.inst_dir / SPEC_FILE).exists() and (self.data_dir / "PG_VERSION").exists()

    def endpoint(self) -> Endpoint:
        s = self.spec
        host = "127.0.0.1" if s.listen in ("*", "0.0.0.0", "") else s.listen.split(",")[0]
        return Endpoint(host, s.port, s.superuser, s.password)

    def _save_spec(self) -> None:
        path = self.inst_dir / SPEC_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.spec.to_json())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def socket_dir(self) -> Path | None:
        """The directory of this instance's Unix socket, or None (TCP only)."""
        if not self.spec.unix_socket:
            return None
        path = self.inst_dir / "run"
        if len(str(path / f".s.PGSQL.{self.spec.port}.lock")) > MAX_SOCKET_PATH:
            return None
        return path

    def _settings(self) -> dict[str, Any]:
        settings = dict(self.spec.settings)
        sock = self.socket_dir()
        if sock is not None:
            settings["unix_socket_directories"] = str(sock)
        return settings

    def _write_conf(self) -> None:
        s = self.spec
        settings = self._settings()
        text = config.render_multigres_conf(
            name=s.name,
            listen=s.listen,
            port=s.port,
            upstream=s.upstream,
            durability=s.durability,
            conninfo_auth=f"user={s.superuser} passfile={self.pgpass}",
            settings=settings,
        )
        conf = self.data_dir / "multigres.conf"
        conf.write_text(text)
        pgconf = self.data_dir / "postgresql.conf"
        if config.INCLUDE_LINE not in pgconf.read_text():
            with pgconf.open("a") as f:
                f.write("\n" + config.INCLUDE_LINE + "\n")
        (self.data_dir / "pg_hba.conf").write_text(config.hba(settings))
        self.run_as.chown_tree(conf)
        self.run_as.chown_tree(self.data_dir / "pg_hba.conf")

    def _write_pgpass(self) -> None:
        s = self.spec
        esc = s.password.replace("\\", "\\\\").replace(":", "\\:")
        self.pgpass.write_text(f"*:*:*:{s.superuser}:{esc}\n")
        os.chmod(self.pgpass, 0o600)
        self.run_as.chown_tree(self.pgpass)

    # -- creation -------------------------------------------------------------------------

    def _prepare_dir(self, spec: InstanceSpec) -> None:
        """Check the instance dir is free for ``spec`` and claim it."""
        spec_path = self.inst_dir / SPEC_FILE
        if spec_path.exists():
            other = InstanceSpec.from_json(spec_path.read_text())
            raise DataDirConflict(
                f"{self.inst_dir} already holds instance {other.name!r} (port {other.port}); "
                "pick another directory, or remove it with `pgctld destroy` first"
            )
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DataDirConflict(
                f"data directory {self.data_dir} is not empty; pgctld will not overwrite it. "
                "Pick another directory or empty it first"
            )
        self.inst_dir.mkdir(parents=True, exist_ok=True)
        self.run_as.check_traversable(self.inst_dir)
        self._spec = spec
        self._save_spec()
        self._write_pgpass()

    def _finish_create(self) -> None:
        os.chmod(self.data_dir, 0o700)
        self._write_conf()
        self.run_as.chown_tree(self.inst_dir)

    @classmethod
    def create(
        cls,
        inst_dir: Path | str,
        spec: InstanceSpec,
        *,
        template: Path | None = None,
        bin_dir: Path | None = None,
        run_as: RunAs | None = None,
        no_sync: bool = False,
    ) -> PgInstance:
        """initdb a new primary (or copy ``template``, a data dir made by make_template)."""
        inst = cls(inst_dir, bin_dir, run_as)
        inst.bin_dir  # noqa: B018 -- fail on missing binaries before touching the disk
        inst._prepare_dir(spec)
        try:
            if template is not None:
                shutil.copytree(template, inst.data_dir, symlinks=True, dirs_exist_ok=True)
                inst.run_as.chown_tree(inst.inst_dir)
            else:
                inst.run_as.chown_tree(inst.inst_dir)
                _initdb(inst.bin_dir, inst.run_as, inst.data_dir, spec, no_sync=no_sync)
            inst._finish_create()
        except BaseException:
            shutil.rmtree(inst.inst_dir, ignore_errors=True)
            raise
        return inst

    @classmethod
    def clone(
        cls,
        inst_dir: Path | str,
        spec: InstanceSpec,
        source: Endpoint,
        *,
        bin_dir: Path | None = None,
        run_as: RunAs | None = None,
        start: bool = True,
        timeout: float = 300,
    ) -> PgInstance:
        """Make a streaming replica of ``source`` with pg_basebackup and a replication slot."""
        inst = cls(inst_dir, bin_dir, run_as)
        inst.bin_dir  # noqa: B018
        slot = config.slot_name(spec.name)
        spec.upstream = Upstream(source.host, source.port, slot)
        inst._prepare_dir(spec)
        try:
            _drop_slot_if_idle(source, slot)
            inst.run_as.chown_tree(inst.inst_dir)
            inst.run_as.run(
                [
                    inst._bin("pg_basebackup"),
                    "-h",
                    source.host,
                    "-p",
                    str(source.port),
                    "-U",
                    source.user,
                    "-D",
                    str(inst.data_dir),
                    "-X",
                    "stream",
                    "-C",
                    "-S",
                    slot,
                    "--checkpoint=fast",
                    "--no-password",
                ],
                env={"PGPASSFILE": str(inst.pgpass), "PGAPPNAME": spec.name},
                timeout=timeout,
                what="pg_basebackup",
            )
            (inst.data_dir / "standby.signal").touch()
            # The copy carries the primary's multigres.conf: this replica gets its own.
            inst._finish_create()
        except BaseException:
            shutil.rmtree(inst.inst_dir, ignore_errors=True)
            raise
        if start:
            inst.start()
        return inst

    def destroy(self) -> None:
        """Stop the server (if running) and delete the whole instance directory."""
        if self.inst_dir.exists() and (self.data_dir / "PG_VERSION").exists():
            self.stop()
        shutil.rmtree(self.inst_dir, ignore_errors=True)

    # -- lifecycle ------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The postmaster's pid, if one is running for this data dir."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections."""
        s = self.spec
        if self.is_running():
            self.wait_ready(timeout)
            return
        host = self.endpoint().host
        if port_in_use(s.port, host):
            raise PortInUse(
                f"cannot start {s.name!r}: port {s.port} on {host} is already in use by "
                "another process; stop it or give this instance another port"
            )
        self._write_conf()
        sock = self.socket_dir()
        if sock is not None:
            sock.mkdir(exist_ok=True)
            self.run_as.chown_tree(sock)
        try:
            self.run_as.run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-s",
                ],
                timeout=timeout + 10,
                what=f"starting {s.name}",
            )
        except CommandFailed as e:
            raise CommandFailed(f"{e}; last lines of {self.log_file}:\n{self.log_tail()}") from e
        self.wait_ready(timeout)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server: fast shutdown, then immediate if it takes longer than timeout."""
        if not self.is_running():
            return
        proc = self.run_as.run(
            [
                self._bin("pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "-s",
            ],
            timeout=timeout + 10,
            check=False,
        )
        if proc.returncode != 0 and self.is_running():
            self.run_as.run(
                [
                    self._bin("pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-s",
                ],
                timeout=timeout + 10,
                what=f"stopping {self.spec.name} (immediate)",
            )

    def kill(self) -> None:
        """Crash the server (SIGKILL of the postmaster's whole process group). For tests."""
        pid = self.pid()
        if pid is None:
            return
        import signal

        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Children exit once they notice the postmaster is gone.
            if not _any_child_of(pid):
                break
            time.sleep(0.05)

    def restart(self, timeout: float = 60) -> None:
        self.stop(timeout)
        self.start(timeout)

    def reload(self) -> None:
        """Rewrite multigres.conf from the spec and make the server re-read its config."""
        self._write_conf()
        if not self.is_running():
            return
        self.run_as.run(
            [self._bin("pg_ctl"), "reload", "-D", str(self.data_dir), "-s"],
            what=f"reloading {self.spec.name}",
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server accepts a query (a standby once it is consistent)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise NotRunning(
                    f"{self.spec.name} is not running; last lines of {self.log_file}:\n"
                    + self.log_tail()
                )
            try:
                with self.connect(connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.05)
        raise PgctldError(f"{self.spec.name} not ready after {timeout:.0f}s: {last}")

    def connect(
        self, dbname: str = "postgres", connect_timeout: int = 5
    ) -> psycopg.Connection[Any]:
        ep = self.endpoint()
        return psycopg.connect(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            password=ep.password,
            dbname=dbname,
            connect_timeout=connect_timeout,
            autocommit=True,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- replication ----------------------------------------------------------------------

    def promote(self, timeout: float = 60) -> None:
        """Promote this replica to a primary; it stops following its upstream."""
        if not self.is_running():
            raise NotRunning(f"cannot promote {self.spec.name}: it is not running")
        with self.connect() as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if in_recovery is not None and not in_recovery[0]:
            self.spec.upstream = None
            self._save_spec()
            return
        self.run_as.run(
            [
                self._bin("pg_ctl"),
                "promote",
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                str(int(timeout)),
                "-s",
            ],
            timeout=timeout + 10,
            what=f"promoting {self.spec.name}",
        )
        self.spec.upstream = None
        self._save_spec()
        self.reload()
        self.wait_ready(timeout)
        # Promotion does not checkpoint; pg_rewind against this server reads the timeline
        # from its control file, which only a checkpoint updates.
        with self.connect() as conn:
            conn.execute("CHECKPOINT")

    def follow(self, source: Endpoint) -> None:
        """Stream from ``source`` (a new primary) instead; reload is enough on PG 13+."""
        slot = config.slot_name(self.spec.name)
        _ensure_slot(source, slot)
        self.spec.upstream = Upstream(source.host, source.port, slot)
        self._save_spec()
        if not (self.data_dir / "standby.signal").exists():
            # A primary cannot just start following: it may have diverged. That is rewind.
            raise PgctldError(
                f"{self.spec.name} is a primary; use rewind to make it follow {source.host}:"
                f"{source.port}"
            )
        self.reload()

    def rewind(self, source: Endpoint, timeout: float = 300) -> None:
        """Make a former primary a replica of ``source`` (pg_rewind, then stream from it)."""
        self.stop()
        slot = config.slot_name(self.spec.name)
        _ensure_slot(source, slot)
        # pg_rewind compares timelines from the source's control file: make it current
        # (a freshly promoted source has not checkpointed its new timeline yet).
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        self.run_as.run(
            [
                self._bin("pg_rewind"),
                "-D",
                str(self.data_dir),
                "--source-server",
                source.conninfo(),
                "--no-sync",
            ],
            env={"PGPASSFILE": str(self.pgpass)},
            timeout=timeout,
            what=f"pg_rewind of {self.spec.name}",
        )
        (self.data_dir / "standby.signal").touch()
        self.run_as.chown_tree(self.data_dir / "standby.signal")
        self.spec.upstream = Upstream(source.host, source.port, slot)
        # pg_rewind copied the source's multigres.conf; start() writes ours back.
        self._save_spec()
        self.start()

    def shutdown_checkpoint_lsn(self) -> str:
        """The LSN of the shutdown checkpoint of a cleanly stopped server (pg_controldata).

        After a clean shutdown that record is the last WAL the server wrote: a replica that
        has replayed past it has everything, so it can be promoted and this server can
        follow it without pg_rewind. Raises if the server did not shut down cleanly.
        """
        if self.is_running():
            raise PgctldError(f"{self.spec.name} is running; stop it before reading its end LSN")
        out = self.run_as.run(
            [self._bin("pg_controldata"), "-D", str(self.data_dir)],
            timeout=30,
            what=f"pg_controldata of {self.spec.name}",
        ).stdout
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines())
        )
        state = fields.get("Database cluster state", "")
        if state != "shut down":
            raise PgctldError(
                f"{self.spec.name} did not shut down cleanly (cluster state {state!r}); "
                "its last WAL position is unknown"
            )
        return fields["Latest checkpoint location"]

    def demote(self, source: Endpoint, timeout: float = 60) -> None:
        """Restart a former primary as a streaming replica of ``source``, without pg_rewind.

        Only for a server whose WAL ``source`` already has (a clean shutdown replayed by the
        new primary before its promotion); one that diverged needs :meth:`rewind`.
        """
        self.stop()
        slot = config.slot_name(self.spec.name)
        _ensure_slot(source, slot)
        (self.data_dir / "standby.signal").touch()
        self.run_as.chown_tree(self.data_dir / "standby.signal")
        self.spec.upstream = Upstream(source.host, source.port, slot)
        # The policy named this server's replicas; as a replica it has none.
        self.spec.durability = None
        self._save_spec()
        self.start(timeout)
        # The slots its replicas used would keep WAL on this standby for ever: they now
        # stream from the new primary, which has slots of its own for them.
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_type = 'physical' AND NOT active"
            )

    def wait_replicas_streaming(self, names: list[str], timeout: float = 60) -> None:
        """Wait until each named replica streams from this primary."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            streaming = {r["name"] for r in st.replicas if r["state"] == "streaming"}
            missing = [n for n in names if n not in streaming]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise PgctldError(
                    f"replica(s) {', '.join(missing)} not streaming from {st.name} after "
                    f"{timeout:.0f}s; see their postgres.log"
                )
            time.sleep(0.05)

    def set_durability(self, durability: Durability | None) -> None:
        """Apply a durability policy (synchronous_standby_names = ANY k (...)) and reload."""
        if durability is not None:
            durability.validate()
        self.spec.durability = durability
        self._save_spec()
        self.reload()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> InstanceStatus:
        s = self.spec
        st = InstanceStatus(name=s.name, data_dir=str(self.data_dir), port=s.port, running=False)
        st.pid = self.pid()
        st.running = st.pid is not None
        if s.upstream:
            st.upstream = f"{s.upstream.host}:{s.upstream.port}"
        if not st.running:
            return st
        try:
            with self.connect(connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),"
                    " CASE WHEN pg_is_in_recovery()"
                    "  THEN (SELECT received_tli FROM pg_stat_wal_receiver)"
                    "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))"
                    "::bit(32)::int END"
                ).fetchone()
                assert row is not None
                recovery, st.synchronous_standby_names, st.timeline = row
                st.role = "replica" if recovery else "primary"
                if recovery:
                    lsn = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
                else:
                    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                    cur = conn.execute(
                        "SELECT application_name, state, sync_state,"
                        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
                        " extract(epoch FROM replay_lag)::float8"
                        " FROM pg_stat_replication ORDER BY application_name"
                    )
                    st.replicas = [
                        {
                            "name": r[0],
                            "state": r[1],
                            "sync_state": r[2],
                            "lag_bytes": r[3],
                            "replay_lag_s": r[4],
                        }
                        for r in cur.fetchall()
                    ]
                st.lsn = lsn[0] if lsn else None
        except psycopg.Error as e:
            st.error = str(e).strip()
        return st


def make_template(
    template_dir: Path,
    *,
    superuser: str = "postgres",
    password: str = "postgres",
    bin_dir: Path | None = None,
    run_as: RunAs | None = None,
) -> Path:
    """initdb once into ``template_dir`` (a data dir to copy for fast instance creation)."""
    bin_dir = bin_dir or find_bin_dir()
    run_as = run_as or resolve_run_as()
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    run_as.check_traversable(template_dir.parent)
    spec = InstanceSpec(name="template", port=0, superuser=superuser, password=password)
    template_dir.mkdir()
    run_as.chown_tree(template_dir)
    _initdb(bin_dir, run_as, template_dir, spec, no_sync=True)
    return template_dir


def _initdb(
    bin_dir: Path, run_as: RunAs, data_dir: Path, spec: InstanceSpec, no_sync: bool
) -> None:
    with tempfile.NamedTemporaryFile("w", prefix="pgctld-pw-", delete=False) as pw:
        pw.write(spec.password + "\n")
    try:
        os.chmod(pw.name, 0o600)
        if run_as.switches:
            os.chown(pw.name, run_as.uid, run_as.gid)
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            spec.superuser,
            f"--pwfile={pw.name}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if no_sync:
            argv.append("--no-sync")
        run_as.run(argv, timeout=120, what="initdb")
    finally:
        os.unlink(pw.name)
    with (data_dir / "postgresql.conf").open("a") as f:
        f.write("\n" + config.INCLUDE_LINE + "\n")
    (data_dir / "pg_hba.conf").write_text(config.HBA)
    run_as.chown_tree(data_dir)


def _drop_slot_if_idle(source: Endpoint, slot: str) -> None:
    """A re-clone reuses its slot name: drop a leftover, unused slot of that name."""
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return
        if row[0]:
            raise PgctldError(
                f"replication slot {slot!r} on {source.host}:{source.port} is in use by a "
                "running replica of the same name"
            )
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _ensure_slot(source: Endpoint, slot: str) -> None:
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_create_physical_replication_slot(%s, true)"
            " WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
            (slot, slot),
        )


def _any_child_of(pid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised command) is the parent pid.
        fields = stat.rsplit(")", 1)[1].split()
        if fields and int(fields[1]) == pid:
            return True
    return False
