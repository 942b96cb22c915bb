"""multipooler's settings: command-line flags, optionally a config file (YAML) underneath."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multigres.netutil import split_hostport


class ConfigError(Exception):
    """A bad flag or config file; the message names the setting."""


@dataclass
class PoolerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 6432
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    # The user and database the pooler itself uses (auth query, health); clients bring their own.
    pg_user: str = "postgres"
    pg_password: str | None = None
    pg_database: str = "postgres"
    pool_size: int = 20
    auth: str = "scram"  # trust | md5 | scram | cleartext
    userlist: Path | None = None
    # Look up a user's password hash in Postgres when it is not in the userlist.
    auth_query: str | None = (
        "SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1"
    )
    max_client_conn: int = 10000
    # Seconds; 0 disables.
    query_wait_timeout: float = 120.0
    idle_transaction_timeout: float = 0.0
    query_timeout: float = 0.0
    client_idle_timeout: float = 0.0
    server_lifetime: float = 3600.0
    server_idle_timeout: float = 600.0
    server_connect_timeout: float = 15.0
    max_message_size: int = 64 * 1024 * 1024
    http_port: int = 0
    grpc_port: int = 0
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    server_tls: str = "disable"  # disable | prefer | require | verify-ca | verify-full
    server_tls_ca: Path | None = None
    admin_users: list[str] = field(default_factory=lambda: ["postgres"])
    topo: str | None = None
    topo_root: str = "/multigres"
    cell: str = "zone1"
    pooler_id: str | None = None
    database: str | None = None
    tablegroup: str = "default"
    shard: str = "0"

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"


_DURATIONS = {
    "query_wait_timeout", "idle_transaction_timeout", "query_timeout", "client_idle_timeout",
    "server_lifetime", "server_idle_timeout", "server_connect_timeout",
}
_AUTH_METHODS = ("trust", "cleartext", "md5", "scram")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multipooler",
        description="A Postgres connection pooler (a drop-in PgBouncer replacement).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", type=Path, help="YAML file with any of the settings below")
    p.add_argument("--listen", help="HOST:PORT for clients (default 127.0.0.1:6432)")
    p.add_argument("--pg-host", help="Postgres host (default 127.0.0.1)")
    p.add_argument("--pg-port", type=int, help="Postgres port (default 5432)")
    p.add_argument("--pg-user", help="user for the pooler's own queries (default postgres)")
    p.add_argument("--pg-password", help="its password (default: from --userlist)")
    p.add_argument("--pg-database", help="database for the pooler's own queries")
    p.add_argument("--pool-size", type=int, help="server connections per (user, database)")
    p.add_argument("--auth", choices=_AUTH_METHODS, help="client authentication (default scram)")
    p.add_argument("--userlist", type=Path, help="PgBouncer-format userlist.txt")
    p.add_argument("--auth-query", help="SQL returning (user, password hash) for $1")
    p.add_argument("--max-client-conn", type=int)
    p.add_argument("--query-wait-timeout", type=float, help="seconds to wait for a server")
    p.add_argument("--idle-transaction-timeout", type=float)
    p.add_argument("--query-timeout", type=float)
    p.add_argument("--client-idle-timeout", type=float)
    p.add_argument("--server-lifetime", type=float)
    p.add_argument("--server-idle-timeout", type=float)
    p.add_argument("--max-message-size", type=int)
    p.add_argument("--http-port", type=int, help="port for /metrics (0: off)")
    p.add_argument("--grpc-port", type=int, help="port for the control-plane gRPC service")
    p.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--server-tls", choices=("disable", "prefer", "require", "verify-ca",
                                            "verify-full"))
    p.add_argument("--topo", help="etcd HOST:PORT to register in")
    p.add_argument("--topo-root")
    p.add_argument("--cell")
    p.add_argument("--pooler-id")
    p.add_argument("--database", help="database this pooler serves (topology registration)")
    p.add_argument("--tablegroup")
    p.add_argument("--shard")
    return p


def _apply(cfg: PoolerConfig, key: str, value: Any, source: str) -> None:
    key = key.replace("-", "_")
    if key == "listen":
        try:
            cfg.listen_host, cfg.listen_port = split_hostport(str(value))
        except ValueError as e:
            raise ConfigError(f"{source}: listen: {e}") from e
        return
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if key not in fields or key in ("listen_host", "listen_port"):
        raise ConfigError(f"{source}: unknown setting {key!r}")
    current = getattr(cfg, key)
    try:
        if key in _DURATIONS:
            value = float(value)
            if value < 0:
                raise ValueError("must be >= 0")
        elif isinstance(current, bool):
            value = bool(value)
        elif isinstance(current, int):
            value = int(value)
            if value < 0:
                raise ValueError("must be >= 0")
        elif key in ("userlist", "tls_cert", "tls_key", "server_tls_ca"):
            value = Path(value) if value is not None else None
        elif key == "admin_users":
            value = [str(v) for v in (value if isinstance(value, list) else str(value).split(","))]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {key}: bad value {value!r}: {e}") from e
    if key == "auth" and value not in _AUTH_METHODS:
        raise ConfigError(f"{source}: auth: {value!r} is not one of {', '.join(_AUTH_METHODS)}")
    setattr(cfg, key, value)


def load(argv: list[str] | None = None) -> PoolerConfig:
    args = vars(build_parser().parse_args(argv))
    cfg = PoolerConfig()
    path = args.pop("config", None)
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        for k, v in raw.items():
            _apply(cfg, str(k), v, str(path))
    for k, v in args.items():
        _apply(cfg, k, v, "--" + k.replace("_", "-"))
    if cfg.pool_size < 1:
        raise ConfigError("--pool-size must be at least 1")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    return cfg
