"""Starting and stopping a real etcd server."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from multigres.netutil import free_port
from multigres.topo.etcd_process import EtcdError, EtcdProcess, is_healthy, stop_pid


def test_detached_start_and_stop_by_pid(tmp_path: Path) -> None:
    # What the local cluster does: start in the background, record the pid, and later
    # (from another CLI invocation) stop it by that pid.
    etcd = EtcdProcess(tmp_path / "etcd", free_port(), free_port())
    etcd.start(timeout=15, detached=True)
    pid = etcd.pid
    assert pid is not None
    try:
        assert is_healthy(etcd.client_url)
        assert (tmp_path / "etcd.log").stat().st_size > 0  # the log sits beside the data
        assert stop_pid(pid) is True
        assert not is_healthy(etcd.client_url, timeout=0.2)
        assert stop_pid(pid) is False  # already gone
    finally:
        etcd.stop()
    assert not etcd.is_running()


def test_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        etcd = EtcdProcess(tmp_path / "etcd", client_port=port, peer_port=free_port())
        with pytest.raises(EtcdError, match=f"client port 127.0.0.1:{port} is already in use"):
            etcd.start()
        assert etcd.pid is None


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    etcd = EtcdProcess(tmp_path / "etcd", free_port(), free_port(), binary="/nonexistent/etcd")
    with pytest.raises(EtcdError, match="apt-get install etcd-server"):
        etcd.start()


def test_failed_start_leaves_no_process(tmp_path: Path) -> None:
    data = tmp_path / "etcd"
    data.mkdir()
    (data / "member").write_text("not a directory: etcd cannot use this data dir")
    etcd = EtcdProcess(data, free_port(), free_port())
    with pytest.raises(EtcdError, match="exited with status"):
        etcd.start(timeout=10)
    assert not etcd.is_running()


def test_stop_pid_refuses_other_processes() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(EtcdError, match="not an etcd process"):
            stop_pid(sleeper.pid)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
