"""multipooler's settings: command-line flags, optionally a config file (YAML) underneath.

The file's keys are the long flag names with underscores (``pool_size: 20``, ``listen:
127.0.0.1:6432``); a flag given on the command line wins over the file. RELOAD (the admin
console, or SIGHUP) reads the file again: the settings in ``CHANGEABLE`` take effect at once,
the others are reported as needing a restart and keep their value.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multigres.configfile import parse_on_off, read_settings
from multigres.netutil import split_hostport


class ConfigError(Exception):
    """A bad flag or config file; the message names the setting."""


@dataclass
class PoolerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 6432
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    # The directory of Postgres's Unix socket: the pooler's own connections go there, while
    # pg_host:pg_port stays the address others reach this Postgres at (the topology record).
    pg_socket_dir: str | None = None
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
    # Answer a plain BEGIN at once and send it to Postgres with the transaction's first
    # statement, so that a server connection is not held through the client's think time
    # after BEGIN (docs/pooler.md: the one visible difference is now()).
    defer_begin: bool = True
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
    # Seconds between the averages of SHOW STATS, and between health polls of Postgres.
    stats_period: float = 60.0
    health_interval: float = 1.0
    # The command line the settings came from (for RELOAD); None when built in code (then
    # RELOAD re-reads the userlist only). Not a setting.
    argv: list[str] | None = field(default=None, repr=False)

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def server_host(self) -> str:
        """Where the pooler's own connections to Postgres go: the socket directory if there
        is one, else pg_host (itself a socket directory when it is an absolute path)."""
        return self.pg_socket_dir or self.pg_host


# Settings that RELOAD applies to a running pooler; every other one needs a restart.
CHANGEABLE = frozenset({
    "pool_size", "auth", "userlist", "auth_query", "max_client_conn", "query_wait_timeout",
    "idle_transaction_timeout", "query_timeout", "client_idle_timeout", "server_lifetime",
    "server_idle_timeout", "server_connect_timeout", "max_message_size", "admin_users",
    "pg_password", "stats_period", "health_interval", "defer_begin",
})
# Not settings: derived or bookkeeping fields.
_NOT_SETTINGS = frozenset({"listen_host", "listen_port", "argv"})
_SECRETS = frozenset({"pg_password"})


_DURATIONS = {
    "query_wait_timeout", "idle_transaction_timeout", "query_timeout", "client_idle_timeout",
    "server_lifetime", "server_idle_timeout", "server_connect_timeout", "stats_period",
    "health_interval",
}
_PORTS = {"http_port", "grpc_port", "pg_port"}
_PATHS = {"userlist", "tls_cert", "tls_key", "server_tls_ca"}
_AUTH_METHODS = ("trust", "cleartext", "md5", "scram")
_SERVER_TLS = ("disable", "prefer", "require", "verify-ca", "verify-full")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multipooler",
        description="A Postgres connection pooler (a drop-in PgBouncer replacement).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", type=Path, help="YAML file with any of the settings below")
    p.add_argument("--listen", help="HOST:PORT for clients (default 127.0.0.1:6432)")
    p.add_argument("--pg-host", help="Postgres host, or the directory of its Unix socket "
                   "(an absolute path, as in libpq; default 127.0.0.1)")
    p.add_argument("--pg-port", type=int, help="Postgres port (default 5432)")
    p.add_argument("--pg-socket-dir", help="connect to Postgres on its Unix socket in this "
                   "directory (port --pg-port); --pg-host stays the address in the topology")
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
    p.add_argument("--defer-begin", choices=("on", "off"),
                   help="answer a plain BEGIN at once and send it with the transaction's "
                   "first statement (default on)")
    p.add_argument("--http-port", type=int, help="port for /metrics (0: off)")
    p.add_argument("--grpc-port", type=int, help="port for the control-plane gRPC service")
    p.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--server-tls", choices=("disable", "prefer", "require", "verify-ca",
                                            "verify-full"))
    p.add_argument("--server-tls-ca", type=Path, help="root certificate for --server-tls")
    p.add_argument("--topo", help="etcd HOST:PORT to register in")
    p.add_argument("--topo-root")
    p.add_argument("--cell")
    p.add_argument("--pooler-id")
    p.add_argument("--database", help="database this pooler serves (topology registration)")
    p.add_argument("--tablegroup")
    p.add_argument("--shard")
    p.add_argument("--stats-period", type=float, help="seconds per SHOW STATS average")
    p.add_argument("--health-interval", type=float, help="seconds between health polls")
    p.add_argument("--admin-users", help="comma-separated users allowed on the admin console")
    return p


def setting_names() -> list[str]:
    """Every setting, as the config file spells it."""
    return ["listen"] + [
        f.name for f in dataclasses.fields(PoolerConfig) if f.name not in _NOT_SETTINGS
    ]


def _apply(cfg: PoolerConfig, key: str, value: Any, source: str) -> None:
    key = key.replace("-", "_")
    if key == "listen":
        try:
            cfg.listen_host, cfg.listen_port = split_hostport(str(value))
        except ValueError as e:
            raise ConfigError(f"{source}: listen: {e}") from e
        return
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if key not in fields or key in _NOT_SETTINGS:
        close = difflib.get_close_matches(key, setting_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
    setattr(cfg, key, _convert(key, getattr(cfg, key), value, source))


def _convert(key: str, current: Any, value: Any, source: str) -> Any:
    """``value`` (from YAML or a flag) as the type of setting ``key``; ConfigError naming the
    key and the source when it does not fit."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: expected {expected}, got {value!r}")

    if key in _DURATIONS:
        if isinstance(value, bool):
            raise bad("a number of seconds")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad("a number of seconds") from None
        if out < 0:
            raise bad("a number of seconds >= 0")
        return out
    if isinstance(current, bool):
        flag = parse_on_off(value)
        if flag is None:
            raise bad("on or off")
        return flag
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, bool) or isinstance(value, float):
            raise bad("an integer")
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise bad("an integer") from None
        if n < 0:
            raise bad("an integer >= 0")
        if key in _PORTS and n > 65535:
            raise bad("a port number (0-65535)")
        return n
    if key in _PATHS:
        if value is None or value == "":
            return None
        if not isinstance(value, str | Path):
            raise bad("a file path")
        return Path(value)
    if key == "admin_users":
        items = value if isinstance(value, list) else str(value).split(",")
        users = [str(v).strip() for v in items if str(v).strip()]
        if not users:
            raise bad("a list of user names")
        return users
    if value is not None and not isinstance(value, str):
        if isinstance(value, bool | list | dict):
            raise bad("a string")
        value = str(value)
    if key == "auth" and value not in _AUTH_METHODS:
        raise ConfigError(f"{source}: auth: {value!r} is not one of {', '.join(_AUTH_METHODS)}")
    if key == "server_tls" and value not in _SERVER_TLS:
        raise ConfigError(
            f"{source}: server_tls: {value!r} is not one of {', '.join(_SERVER_TLS)}")
    return value


def load(argv: list[str] | None = None) -> PoolerConfig:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    args = vars(build_parser().parse_args(argv))
    cfg = PoolerConfig()
    cfg.argv = list(argv)
    path = args.pop("config", None)
    if path is not None:
        raw = read_settings(path, ConfigError)
        for k, v in raw.items():
            _apply(cfg, str(k), v, str(path))
    for k, v in args.items():
        _apply(cfg, k, v, "--" + k.replace("_", "-"))
    if cfg.pool_size < 1:
        raise ConfigError("pool_size (--pool-size) must be at least 1")
    if cfg.workers < 1:
        raise ConfigError("workers (--workers) must be at least 1")
    if cfg.workers > 64:
        raise ConfigError("workers (--workers) must be at most 64")
    if cfg.health_interval <= 0:
        raise ConfigError("health_interval (--health-interval) must be above 0")
    if cfg.stats_period <= 0:
        raise ConfigError("stats_period (--stats-period) must be above 0")
    if cfg.pg_socket_dir and not cfg.pg_socket_dir.startswith("/"):
        raise ConfigError(
            f"pg_socket_dir (--pg-socket-dir): expected an absolute path, got "
            f"{cfg.pg_socket_dir!r}")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if cfg.topo is not None and not cfg.database:
        raise ConfigError("--topo needs --database (the database this pooler serves)")
    return cfg


def setting_value(cfg: PoolerConfig, key: str) -> Any:
    return cfg.listen if key == "listen" else getattr(cfg, key)


def show(cfg: PoolerConfig) -> list[tuple[str, str, str, str]]:
    """SHOW CONFIG: (key, value, default, changeable) per setting, secrets masked."""
    default = PoolerConfig()
    rows = []
    for key in setting_names():
        value, dflt = setting_value(cfg, key), setting_value(default, key)
        if key in _SECRETS and value is not None:
            value = "********"
        rows.append((key, _text(value), _text(dflt), "yes" if key in CHANGEABLE else "no"))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass
class ReloadResult:
    applied: list[tuple[str, Any, Any]] = field(default_factory=list)
    need_restart: list[tuple[str, Any, Any]] = field(default_factory=list)

    def notices(self) -> list[str]:
        out = [f"{k}: changed from {_text(_mask(k, a))!r} to {_text(_mask(k, b))!r}"
               for k, a, b in self.applied]
        out += [f"{k}: changed in the configuration ({_text(_mask(k, a))!r} -> "
                f"{_text(_mask(k, b))!r}) but takes effect only after a restart"
                for k, a, b in self.need_restart]
        return out


def _mask(key: str, value: Any) -> Any:
    return "********" if key in _SECRETS and value is not None else value


def reload(cfg: PoolerConfig) -> ReloadResult:
    """Read the settings again from the same flags and config file; change ``cfg`` in place
    for the settings that can change live. ConfigError (and ``cfg`` untouched) when the new
    configuration is invalid."""
    result = ReloadResult()
    if cfg.argv is None:
        return result
    new = load(cfg.argv)
    for key in setting_names():
        old_v, new_v = setting_value(cfg, key), setting_value(new, key)
        if old_v == new_v:
            continue
        if key in CHANGEABLE:
            result.applied.append((key, old_v, new_v))
        else:
            result.need_restart.append((key, old_v, new_v))
    for key, _, new_v in result.applied:
        setattr(cfg, key, new_v)
    return result
