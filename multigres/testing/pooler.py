"""A throwaway ``multipooler`` for tests: a real subprocess on a free loopback port in front
of a given Postgres; independent of pytest.

    with running_pooler(pg.endpoint(), pool_size=2) as pooler:
        conn = psycopg.connect(pooler.conninfo())

``start()`` returns once the pooler accepts TCP connections (it listens only after it has
set everything up). The process is stopped when the block exits (also on failure or
KeyboardInterrupt), by an atexit hook if the block never exits normally, and by the kernel if
the test process is killed outright (PR_SET_PDEATHSIG through ``setpriv``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from multigres.netutil import free_port
from multigres.pgctld.instance import Endpoint
from multigres.wire.auth import ClientAuthExchange, parse_auth_request

_START_ATTEMPTS = 3
# Poolers started and not yet stopped, for the atexit fallback.
_running: dict[int, PoolerProcess] = {}


class PoolerError(Exception):
    """The pooler did not start; the message carries the end of its log."""


def _program() -> list[str]:
    """The ``multipooler`` console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("multipooler")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "multigres.pooler.cli"]


class PoolerProcess:
    """One ``multipooler`` process in front of ``pg``.

    ``auth`` is the client authentication method; with ``scram`` or ``md5`` and no
    ``userlist`` the pooler finds verifiers with its auth query, logging in to Postgres as
    ``pg.user`` with ``pg.password``. ``args`` are more command-line flags, as given.
    """

    def __init__(
        self,
        pg: Endpoint,
        *,
        pool_size: int = 4,
        auth: str = "scram",
        userlist: Path | None = None,
        args: Sequence[str] = (),
        log_dir: Path | None = None,
    ) -> None:
        self.pg = pg
        self.pool_size = pool_size
        self.auth = auth
        self.userlist = userlist
        self.args = list(args)
        self._own_dir = log_dir is None
        self.dir = log_dir or Path(tempfile.mkdtemp(prefix="multigres-pooler-"))
        self.log_path = self.dir / "multipooler.log"
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what tests use --------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the pooler is not running"
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def conninfo(self, **kwargs: Any) -> str:
        """A libpq connection string through the pooler (superuser unless overridden)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.pg.user,
            "password": self.pg.password,
            "dbname": "postgres",
            "connect_timeout": 10,
        }
        params.update(kwargs)
        return str(psycopg.conninfo.make_conninfo(**params))

    def dsn(self, user: str | None = None, password: str | None = None,
            dbname: str = "postgres") -> str:
        """A postgresql:// URL through the pooler (asyncpg, SQLAlchemy)."""
        user = user or self.pg.user
        password = self.pg.password if password is None else password
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection through the pooler, autocommit unless told otherwise; other
        keyword arguments are connection parameters (user, options, ...) or psycopg's."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo(), **kwargs)

    async def aconnect(self, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        kwargs.setdefault("autocommit", True)
        return await psycopg.AsyncConnection.connect(self.conninfo(), **kwargs)

    def rss_kib(self) -> int:
        """The pooler's resident memory (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise PoolerError(f"no VmRSS in /proc/{self.pid}/status")

    def internal_errors(self) -> str | None:
        """The pooler's log when it holds a traceback (an exception in the pooler's own
        callbacks is a bug even when no client noticed), else None."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for marker in ("Traceback", "Exception in callback", "Task exception was never"):
            if marker in text:
                return text[-6000:]
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            *_program(),
            "--listen", f"{self.host}:{self.port}",
            "--pg-host", self.pg.host,
            "--pg-port", str(self.pg.port),
            "--pg-user", self.pg.user,
            "--pg-password", self.pg.password,
            "--pg-database", "postgres",
            "--pool-size", str(self.pool_size),
            "--auth", self.auth,
        ]  # fmt: skip
        if self.userlist is not None:
            cmd += ["--userlist", str(self.userlist)]
        return cmd + self.args

    def start(self, timeout: float = 20.0) -> None:
        last = ""
        for _ in range(_START_ATTEMPTS):
            self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_ready(timeout)
            except PoolerError as e:
                self.stop()
                last = str(e)
                # free_port() cannot reserve the port: another process may have taken it.
                if "another process holds the port" in last:
                    continue
                raise
            _running[id(self)] = self
            return
        raise PoolerError(last)

    def _spawn(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        setpriv = shutil.which("setpriv")
        if setpriv:
            # Killed by the kernel if the test process dies, even by SIGKILL. setpriv rather
            # than a preexec_fn: forking a threaded process and running Python can deadlock.
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, close_fds=True,
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise PoolerError(f"multipooler exited during startup:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise PoolerError(
            f"multipooler did not listen on {self.host}:{self.port} within {timeout:g}s:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers. Safe to call twice."""
        _running.pop(id(self), None)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PoolerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@atexit.register
def _stop_all_at_exit() -> None:
    for pooler in list(_running.values()):
        pooler.stop()


@contextmanager
def running_pooler(pg: Endpoint, **kwargs: Any) -> Iterator[PoolerProcess]:
    """Start a pooler in front of ``pg`` (see :class:`PoolerProcess` for the options)."""
    pooler = PoolerProcess(pg, **kwargs)
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.cleanup()


class LoginError(ConnectionError):
    """The server refused the login; ``fields`` are its ErrorResponse's."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"login failed: {fields.get('C')}: {fields.get('M')}")
        self.fields = fields
        self.sqlstate = fields.get("C")


class RawClient:
    """A minimal blocking Postgres client over a plain socket, for what drivers will not do:
    send garbage, stop reading, leave mid-batch. ``messages`` are (type char, payload)."""

    def __init__(self, host: str, port: int, *, user: str = "postgres",
                 password: str = "postgres", database: str = "postgres",
                 timeout: float = 10.0, login: bool = True,
                 startup: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.params: dict[str, str] = {}
        self.pid = self.key = 0
        if login:
            try:
                self.login(user, password, database, startup)
            except BaseException:
                self.sock.close()
                raise

    @classmethod
    def to(cls, pooler: PoolerProcess, **kwargs: Any) -> RawClient:
        return cls(pooler.host, pooler.port, **kwargs)

    def login(self, user: str, password: str, database: str,
              startup: dict[str, str] | None = None) -> None:
        body = struct.pack("!i", 196608)
        for k, v in (("user", user), ("database", database), *(startup or {}).items()):
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        auth = ClientAuthExchange(user, password=password)
        while True:
            t, payload = self.recv()
            if t == "R":
                answer = auth.feed(parse_auth_request(payload))
                if answer is not None:
                    self.send(b"p", answer)
            elif t == "S":
                name, value, _ = payload.split(b"\0")
                self.params[name.decode()] = value.decode()
            elif t == "K":
                self.pid, self.key = struct.unpack("!ii", payload)
            elif t == "E":
                raise LoginError(error_fields(payload))
            elif t == "Z":
                return

    def send(self, msg_type: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(msg_type + struct.pack("!i", len(payload) + 4) + payload)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def query(self, sql: str) -> list[tuple[str, bytes]]:
        self.send(b"Q", sql.encode() + b"\0")
        return self.until_ready()

    def recv(self) -> tuple[str, bytes]:
        """The next message; ConnectionError when the peer closed the connection."""
        while True:
            if len(self.buf) >= 5:
                (n,) = struct.unpack_from("!i", self.buf, 1)
                if len(self.buf) >= n + 1:
                    t, payload = self.buf[:1].decode(), self.buf[5:n + 1]
                    self.buf = self.buf[n + 1:]
                    return t, payload
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk

    def until_ready(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            t, payload = self.recv()
            out.append((t, payload))
            if t == "Z":
                return out

    def read_all(self) -> list[tuple[str, bytes]]:
        """Messages until the server closes the connection."""
        out = []
        while True:
            try:
                out.append(self.recv())
            except (ConnectionError, OSError):
                return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_fields(payload: bytes) -> dict[str, str]:
    """An ErrorResponse/NoticeResponse payload as {field letter: value}."""
    return {p[:1].decode(): p[1:].decode(errors="replace") for p in payload.split(b"\0") if p}
