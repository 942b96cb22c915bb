"""multigateway's settings: command-line flags, or a YAML file of the same names (--config).

Flags win over the file. A wrong value is one line naming the setting and what it expects.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from multigres.configfile import parse_on_off, read_settings
from multigres.netutil import split_hostport


class ConfigError(Exception):
    """A wrong flag or config file; the message names the setting."""


@dataclass
class GatewayConfig:
    listen: str = "127.0.0.1:15432"
    topo: str = "127.0.0.1:2379"  # etcd HOST:PORT
    topo_root: str = "/multigres"
    cell: str = "zone1"
    http_port: int = 0  # /metrics, /debug/status (0: off)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A replica serves @replica sessions only while its lag is below this (seconds).
    replica_lag_threshold: float = 30.0
    # While a shard has no serving primary (restart, failover, switchover), statements
    # wait this long, at most buffer_size of them at once, before they fail.
    buffer_timeout: float = 10.0
    buffer_size: int = 1000
    max_client_conn: int = 10000
    max_message_size: int = 64 * 1024 * 1024
    pooler_connect_timeout: float = 5.0
    plan_cache_size: int = 5000  # plans (normalized statement texts) kept per gateway
    # One connection per pooler carries all its sessions (pyx/mux.pyx); off: one each.
    pooler_mux: bool = True
    # Users (after they authenticated as usual) allowed on the admin console (database
    # ``multigres`` or ``pgbouncer``).
    admin_users: list[str] = field(default_factory=lambda: ["postgres"])
    argv: list[str] | None = field(default=None, repr=False)

    @property
    def listen_host(self) -> str:
        return split_hostport(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_hostport(self.listen)[1]


_FLOATS = {"replica_lag_threshold", "buffer_timeout", "pooler_connect_timeout"}
_INTS = {"http_port", "buffer_size", "max_client_conn", "max_message_size",
         "plan_cache_size"}
_PATHS = {"tls_cert", "tls_key"}
_HOSTPORTS = {"listen", "topo"}
_LISTS = {"admin_users"}
_BOOLS = {"pooler_mux"}


def setting_names() -> list[str]:
    return [f.name for f in fields(GatewayConfig) if f.name != "argv"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multigateway",
        description="The Multigres gateway: one Postgres endpoint for the whole cluster.",
        argument_default=None,
    )
    p.add_argument("--config", type=Path, help="YAML file with any of the settings below")
    p.add_argument("--listen", help="HOST:PORT for clients (default 127.0.0.1:15432)")
    p.add_argument("--topo", help="etcd HOST:PORT of the topology (default 127.0.0.1:2379)")
    p.add_argument("--topo-root", help="key prefix of the topology (default /multigres)")
    p.add_argument("--cell", help="the gateway's own cell (replicas there are preferred)")
    p.add_argument("--http-port", type=int, help="port for /metrics and /debug/status")
    p.add_argument("--tls-cert", type=Path, help="offer TLS to clients with this certificate")
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--replica-lag-threshold", type=float,
                   help="seconds of lag above which a replica serves no @replica session")
    p.add_argument("--buffer-timeout", type=float,
                   help="seconds a statement waits for a primary during a failover")
    p.add_argument("--buffer-size", type=int,
                   help="statements that may wait at once during a failover")
    p.add_argument("--max-client-conn", type=int)
    p.add_argument("--max-message-size", type=int)
    p.add_argument("--pooler-connect-timeout", type=float)
    p.add_argument("--plan-cache-size", type=int, help="plans kept (default 5000)")
    p.add_argument("--pooler-mux", choices=("on", "off"),
                   help="carry all sessions to a pooler on one connection (default on)")
    p.add_argument("--admin-users",
                   help="comma-separated users allowed on the admin console (default postgres)")
    return p


def _apply(cfg: GatewayConfig, key: str, value: Any, source: str) -> None:
    if value is None:
        return
    if key not in setting_names():
        raise ConfigError(f"{source}: unknown setting {key!r}; known: "
                          f"{', '.join(setting_names())}")

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: expected {what}, got {value!r}")

    if key in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("a number of seconds")
        try:
            value = float(value)
        except ValueError:
            raise bad("a number of seconds") from None
        if value < 0:
            raise bad("a number >= 0")
    elif key in _INTS:
        if isinstance(value, bool):
            raise bad("an integer")
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise bad("an integer") from None
        if value < 0 or (key == "http_port" and value > 65535):
            raise bad("a port number" if key == "http_port" else "an integer >= 0")
    elif key in _PATHS:
        value = Path(value) if value else None
    elif key in _BOOLS:
        flag = parse_on_off(value)
        if flag is None:
            raise bad("on or off")
        value = flag
    elif key in _LISTS:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of names (or one comma-separated string)")
    else:
        if not isinstance(value, str):
            raise bad("a string")
        if key in _HOSTPORTS:
            try:
                split_hostport(value)
            except ValueError:
                raise bad("HOST:PORT") from None
    setattr(cfg, key, value)


def load(argv: list[str]) -> GatewayConfig:
    args = vars(build_parser().parse_args(argv))
    cfg = GatewayConfig(argv=list(argv))
    path = args.pop("config", None)
    if path is not None:
        raw = read_settings(path, ConfigError)
        for k, v in raw.items():
            _apply(cfg, str(k).replace("-", "_"), v, str(path))
    for k, v in args.items():
        _apply(cfg, k, v, "--" + k.replace("_", "-"))
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if cfg.plan_cache_size < 1:
        raise ConfigError("plan_cache_size (--plan-cache-size) must be at least 1")
    if cfg.buffer_size < 1:
        raise ConfigError("buffer_size (--buffer-size) must be at least 1")
    return cfg
