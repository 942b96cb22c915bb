"""A throwaway etcd for tests, and the topology backends the suites run against;
independent of pytest.

    with running_etcd() as etcd:          # free loopback ports, a temporary directory
        conn = EtcdConn(etcd.address, root="/test-1")

A pytest fixture is two lines over it (see tests/integration/topo/conftest.py):

    @pytest.fixture(scope="session")
    def etcd_server() -> Iterator[ThrowawayEtcd]:
        with running_etcd() as etcd:
            yield etcd

The server is stopped when the block exits (also on failure or KeyboardInterrupt), by an
atexit hook if the block never exits normally, and by the kernel if the test process is
killed outright (die_with_parent).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from multigres.netutil import free_port
from multigres.topo.conn import Conn
from multigres.topo.etcd import EtcdConn
from multigres.topo.etcd_process import EtcdError, EtcdProcess
from multigres.topo.memory import MemoryConn, MemoryStore
from multigres.topo.server import TopoServer

_START_ATTEMPTS = 3
# Servers started and not yet stopped, for the atexit fallback.
_running: dict[int, ThrowawayEtcd] = {}


@dataclass(frozen=True)
class ThrowawayEtcd:
    process: EtcdProcess
    base_dir: Path

    @property
    def address(self) -> str:
        """``host:port`` for :class:`~multigres.topo.etcd.EtcdConn`."""
        return self.process.address

    @property
    def client_url(self) -> str:
        return self.process.client_url


def start_etcd(base_dir: Path | None = None, timeout: float = 15.0) -> ThrowawayEtcd:
    """Start etcd on free loopback ports with its data under ``base_dir`` (default: a new
    temporary directory, removed by :func:`stop_etcd`)."""
    own_dir = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="multigres-etcd-")) if base_dir is None else base_dir
    last: EtcdError | None = None
    # free_port() cannot reserve the port: another process may bind it before etcd does, so
    # retry with new ports.
    for attempt in range(_START_ATTEMPTS):
        proc = EtcdProcess(base / f"etcd-{attempt}", client_port=free_port(), peer_port=free_port())
        try:
            proc.start(timeout, die_with_parent=True)
        except EtcdError as e:
            last = e
            if "in use" in str(e) or "address already in use" in proc.log_tail():
                continue
            break
        etcd = ThrowawayEtcd(proc, base if own_dir else proc.data_dir)
        _running[id(proc)] = etcd
        return etcd
    if own_dir:
        shutil.rmtree(base, ignore_errors=True)
    assert last is not None
    raise last


def stop_etcd(etcd: ThrowawayEtcd) -> None:
    """Stop the server and remove its temporary directory. Safe to call twice."""
    etcd.process.stop()
    _running.pop(id(etcd.process), None)
    if etcd.base_dir.name.startswith("multigres-etcd-"):
        shutil.rmtree(etcd.base_dir, ignore_errors=True)


@atexit.register
def _stop_all_at_exit() -> None:
    for etcd in list(_running.values()):
        stop_etcd(etcd)


@contextmanager
def running_etcd(base_dir: Path | None = None) -> Iterator[ThrowawayEtcd]:
    etcd = start_etcd(base_dir)
    try:
        yield etcd
    finally:
        stop_etcd(etcd)


class TopoBackend:
    """One topology store for one test: memory (``etcd=None``) or the given etcd.

    ``conn()`` opens one more client of the same store (several conns behave like several
    processes), ``server()`` a TopoServer over a new conn. With etcd, every key lives under a
    root unique to this backend, so tests sharing one etcd never see each other's keys.
    Call ``aclose()`` in the event loop the conns were used in.
    """

    def __init__(self, etcd: ThrowawayEtcd | None = None) -> None:
        self.etcd = etcd
        self.kind = "memory" if etcd is None else "etcd"
        self.root = f"/test-{uuid.uuid4().hex[:12]}"
        self.store = MemoryStore()
        self._conns: list[Conn] = []

    def conn(self) -> Conn:
        conn: Conn
        if self.etcd is None:
            conn = MemoryConn(self.store)
        else:
            conn = EtcdConn(self.etcd.address, root=self.root)
        self._conns.append(conn)
        return conn

    def server(self) -> TopoServer:
        return TopoServer(self.conn())

    async def aclose(self) -> None:
        for conn in self._conns:
            await conn.close()
        self._conns.clear()
