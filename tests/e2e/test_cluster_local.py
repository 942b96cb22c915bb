"""`multigres cluster start --local`: the same cluster with the gateway and the poolers in one
process; status sees them, stop ends them."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from multigres.procutil import pid_alive
from tests.e2e.test_cluster_cli import Ports, _config, _mg, _new_dir, _our_pids, _remove

pytestmark = pytest.mark.integration


def test_local_mode(tmp_path: Path) -> None:
    d = _new_dir()
    try:
        ports = Ports.pick(2)
        cfg = tmp_path / "two.yaml"
        cfg.write_text(_config(ports, instances=2))
        _mg(d, "init", "--config", str(cfg))
        out = _mg(d, "start", "--local")
        assert "in one process" in out.stdout
        state = json.loads((d / "state.json").read_text())["processes"]
        pid = state["local"]
        assert state["gateway"] == pid
        assert state["pooler zone1-100"] == pid and state["pooler zone1-101"] == pid
        with psycopg.connect(host="127.0.0.1", port=ports.gateway, user="postgres",
                             password="postgres", dbname="postgres", connect_timeout=10,
                             autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            conn.execute("CREATE TABLE IF NOT EXISTS local_mode (x int)")
            conn.execute("INSERT INTO local_mode VALUES (1)")
        # The poolers still serve their own ports too.
        with psycopg.connect(host="127.0.0.1", port=ports.pooler + 1, user="postgres",
                             password="postgres", dbname="postgres", connect_timeout=10) as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        status = _mg(d, "status", "--json")
        rows = json.loads(status.stdout)
        text = json.dumps(rows)
        assert "zone1-100" in text and "gateway" in text
        again = _mg(d, "start", "--local")  # idempotent: the same process keeps serving
        assert json.loads((d / "state.json").read_text())["processes"]["local"] == pid
        assert "in one process" in again.stdout
        _mg(d, "stop")
        assert not pid_alive(pid)
        assert _our_pids(d) == []
    finally:
        _remove(d)
