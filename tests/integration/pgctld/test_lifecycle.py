"""pgctld lifecycle and its errors, against real Postgres."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from multigres.pgctld.binaries import find_bin_dir
from multigres.pgctld.errors import DataDirConflict, MissingBinaries, PortInUse
from multigres.pgctld.instance import InstanceSpec, PgInstance
from multigres.testing.postgres import PASSWORD, PgHarness

pytestmark = pytest.mark.integration


def test_start_stop_restart_reload_status(pg_harness: PgHarness) -> None:
    inst = pg_harness.primary("life")
    st = inst.status()
    assert st.running and st.role == "primary" and st.pid == inst.pid()
    with inst.connect() as conn:
        row = conn.execute("SELECT current_setting('max_prepared_transactions'),"
                           " current_setting('wal_level'), current_setting('port')").fetchone()
    assert row == ("100", "logical", str(inst.spec.port))
    # Reload applies a changed spec without a restart.
    inst.spec.settings["work_mem"] = "7MB"
    inst.reload()
    with inst.connect() as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
    old_pid = inst.pid()
    inst.restart()
    assert inst.pid() != old_pid and inst.status().running
    inst.stop()
    assert not inst.is_running()
    assert not inst.status().running
    inst.stop()  # stopping a stopped server is fine
    inst.start()
    inst.start()  # and so is starting a running one
    assert inst.status().running


def test_server_runs_as_unprivileged_user(pg_harness: PgHarness) -> None:
    inst = pg_harness.primary("owner")
    pid = inst.pid()
    assert pid is not None
    uid = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert uid != 0
        assert os.stat(inst.data_dir).st_uid == uid
    else:
        assert uid == os.geteuid()
    assert oct(os.stat(inst.data_dir).st_mode & 0o777) == "0o700"


def test_port_in_use_is_named(pg_harness: PgHarness, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        base = pg_harness.base / "busy"
        inst = PgInstance.create(base, InstanceSpec("busy", port, password=PASSWORD),
                                 template=pg_harness.template())
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            inst.start()
        assert not inst.is_running()


def test_data_dir_conflicts(pg_harness: PgHarness) -> None:
    inst = pg_harness.primary("taken")
    with pytest.raises(DataDirConflict, match="already holds instance 'taken'"):
        PgInstance.create(inst.inst_dir, InstanceSpec("other", 1, password=PASSWORD),
                          template=pg_harness.template())
    stray = pg_harness.base / "stray"
    (stray / "data").mkdir(parents=True)
    (stray / "data" / "somefile").write_text("not ours")
    with pytest.raises(DataDirConflict, match="is not empty"):
        PgInstance.create(stray, InstanceSpec("stray", 1, password=PASSWORD),
                          template=pg_harness.template())
    assert (stray / "data" / "somefile").read_text() == "not ours"
    assert inst.status().running  # the instance in the way is untouched


def test_missing_binaries_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingBinaries, match="apt-get install postgresql-15"):
        find_bin_dir(str(tmp_path))


def test_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multigres.pgctld.cli", "--pg-bin", str(tmp_path),
         "init", "--dir", str(tmp_path / "x"), "--name", "x", "--port", "5999"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("pgctld: error: PostgreSQL server binaries not found")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_cli_init_status_stop(pg_harness: PgHarness) -> None:
    from multigres.netutil import free_port

    d = pg_harness.base / "cli"
    port = free_port()
    cli = [sys.executable, "-m", "multigres.pgctld.cli"]
    subprocess.run([*cli, "init", "--dir", str(d), "--name", "cli", "--port", str(port),
                    "--template", str(pg_harness.template()), "--start"], check=True)
    try:
        out = subprocess.run([*cli, "status", "--dir", str(d)], capture_output=True, text=True)
        assert out.returncode == 0 and '"role": "primary"' in out.stdout
    finally:
        subprocess.run([*cli, "stop", "--dir", str(d)], check=True)
    out = subprocess.run([*cli, "status", "--dir", str(d)], capture_output=True, text=True)
    assert out.returncode == 3 and '"running": false' in out.stdout
