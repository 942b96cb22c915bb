"""The throwaway test etcd never outlives the test process, however that process ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from multigres.topo.etcd_process import is_etcd_pid

STARTER = """
import sys, time
from multigres.testing.etcd import start_etcd

etcd = start_etcd()
print(etcd.process.pid, etcd.base_dir, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)  # without stopping it: the atexit hook must
time.sleep(60)
"""


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while os.path.exists(f"/proc/{pid}") and is_etcd_pid(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_etcd_dies_with_the_test_process(how: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", STARTER, how], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        pid_text, base_dir = proc.stdout.readline().split()
        etcd_pid = int(pid_text)
        try:
            if how == "sigkill":
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=15)
            assert _gone(etcd_pid, within=5)
        finally:
            if proc.poll() is None:
                proc.kill()
            if not _gone(etcd_pid, within=0):
                os.kill(etcd_pid, signal.SIGKILL)
            if how == "exit":
                assert not os.path.exists(base_dir)  # the atexit hook removed it too
            shutil.rmtree(base_dir, ignore_errors=True)
