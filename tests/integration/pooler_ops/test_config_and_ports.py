"""The config file and the start-up errors an operator sees: one clear line, exit code 1, no
traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from multigres.netutil import free_port
from multigres.pgctld.instance import PgInstance
from multigres.pooler.config import ConfigError, load, reload

from .conftest import StartPooler, run_multipooler

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def assert_clean_failure(out: object, *needles: str) -> None:
    import subprocess

    assert isinstance(out, subprocess.CompletedProcess)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    for n in needles:
        assert n in out.stderr, out.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_listen_port_in_use(taken_port: int, workers: str) -> None:
    out = run_multipooler(["--listen", f"127.0.0.1:{taken_port}", "--workers", workers])
    assert_clean_failure(out, f"127.0.0.1:{taken_port}", "in use", "--listen")


def test_http_port_in_use(taken_port: int) -> None:
    out = run_multipooler(["--listen", f"127.0.0.1:{free_port()}", "--http-port",
                           str(taken_port)])
    assert_clean_failure(out, f"127.0.0.1:{taken_port}", "--http-port")


def test_grpc_port_in_use(taken_port: int) -> None:
    out = run_multipooler(["--listen", f"127.0.0.1:{free_port()}", "--grpc-port",
                           str(taken_port), "--workers", "2"])
    assert_clean_failure(out, f"127.0.0.1:{taken_port}", "--grpc-port")


def test_two_poolers_with_workers_do_not_share_a_port(ops_pg: PgInstance,
                                                      start_pooler: StartPooler) -> None:
    """SO_REUSEPORT must not let a second pooler join the first one's port."""
    first = start_pooler(ops_pg, "--workers", "2", http=False, grpc=False)
    out = run_multipooler(["--listen", f"127.0.0.1:{first.port}", "--workers", "2"])
    assert_clean_failure(out, f"127.0.0.1:{first.port}", "in use")


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cases = {
        "pool_sise: 3\n": ["unknown setting 'pool_sise'", "did you mean 'pool_size'"],
        "pool_size: many\n": ["pool_size", "expected an integer", "'many'"],
        "query_timeout: -1\n": ["query_timeout", "seconds >= 0"],
        "auth: kerberos\n": ["auth", "'kerberos'", "scram"],
        "http_port: 70000\n": ["http_port", "port number"],
        "listen: nowhere\n": ["listen", "HOST:PORT"],
        "pool_size: [1, 2]\n": ["pool_size", "expected an integer"],
        "- a list\n": ["expected a mapping"],
        "pool_size: 3\n  bad: indent\n": ["not valid YAML"],
        "defer_begin: sometimes\n": ["defer_begin", "expected on or off", "'sometimes'"],
    }
    for text, needles in cases.items():
        cfg.write_text(text)
        out = run_multipooler(["--config", str(cfg)])
        assert_clean_failure(out, str(cfg) if "YAML" not in needles[0] else "", *needles)
    out = run_multipooler(["--config", str(tmp_path / "missing.yaml")])
    assert_clean_failure(out, "missing.yaml", "cannot read config file")
    out = run_multipooler(["--pool-size", "0"])
    assert_clean_failure(out, "pool_size")
    out = run_multipooler(["--topo", "127.0.0.1:2379"])
    assert_clean_failure(out, "--database")


def test_config_file_settings_and_flags_over_them(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("listen: 127.0.0.1:7000\npool_size: 7\nadmin_users: [alice, bob]\n"
                   "query_wait_timeout: 2.5\nuserlist: /etc/users.txt\nworkers: 2\n")
    c = load(["--config", str(cfg), "--pool-size", "9"])
    assert (c.listen_host, c.listen_port) == ("127.0.0.1", 7000)
    assert c.pool_size == 9  # the flag wins
    assert c.admin_users == ["alice", "bob"]
    assert c.query_wait_timeout == 2.5
    assert c.userlist == Path("/etc/users.txt")
    assert c.workers == 2

    cfg.write_text("listen: 127.0.0.1:7001\npool_size: 3\nadmin_users: carol\n")
    result = reload(c)
    changed = {k for k, _, _ in result.applied}
    restart = {k for k, _, _ in result.need_restart}
    assert "admin_users" in changed and c.admin_users == ["carol"]
    assert c.pool_size == 9  # still the flag
    assert {"listen", "workers"} <= restart and c.listen_port == 7000 and c.workers == 2
    assert "userlist" in changed and c.userlist is None
    assert "query_wait_timeout" in changed and c.query_wait_timeout == 120.0

    cfg.write_text("pool_size: zero\n")
    with pytest.raises(ConfigError, match="pool_size"):
        reload(c)
    assert c.admin_users == ["carol"]


def test_defer_begin_setting(tmp_path: Path) -> None:
    assert load([]).defer_begin is True
    assert load(["--defer-begin", "off"]).defer_begin is False
    cfg = tmp_path / "p.yaml"
    for text, want in (("false", False), ("off", False), ('"on"', True), ("yes", True)):
        cfg.write_text(f"defer_begin: {text}\n")
        assert load(["--config", str(cfg)]).defer_begin is want, text
    # RELOAD changes it on a running pooler (server.apply_config passes it to the pools).
    c = load(["--config", str(cfg)])
    cfg.write_text("defer_begin: off\n")
    result = reload(c)
    assert "defer_begin" in {k for k, _, _ in result.applied}
    assert c.defer_begin is False


def test_pooler_from_config_file(ops_pg: PgInstance, start_pooler: StartPooler,
                                 tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"pg_port: {ops_pg.spec.port}\npool_size: 3\nadmin_users: postgres\n"
                   "stats_period: 5\n")
    pooler = start_pooler(ops_pg, "--config", str(cfg), pool_size=None, http=False,
                          grpc=False)
    with pooler.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    config = {r["key"]: r["value"] for r in pooler.admin("SHOW CONFIG")}
    assert config["pool_size"] == "3" and config["stats_period"] == "5.0"
