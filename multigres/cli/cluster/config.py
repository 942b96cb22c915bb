"""The local cluster's configuration file (YAML), with validation that names the bad field.

The default (``multigres cluster init``): one cell ``zone1``, database ``postgres`` with one
unsharded tablegroup whose shard ``0`` has a primary and two replicas, and a durability policy
under which any 1 replica must acknowledge each commit; a multipooler per instance and one
multigateway. The ``pooler:`` and ``gateway:`` sections may be left out (files written before
they existed): their defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multigres.netutil import split_hostport
from multigres.topo.keyrange import KeyRange, KeyRangeError, canonical_shard_name, check_coverage


class ConfigError(Exception):
    """The configuration file is wrong; the message names the file and the field."""


DEFAULT_CONFIG = """\
# Multigres local cluster. `multigres cluster start` brings it up; `stop` brings it down.
etcd:
  listen: 127.0.0.1:2379      # client address; the topology lives here
  peer_port: 2380
topo_root: /multigres
postgres:
  bin_dir: null               # null: /usr/lib/postgresql/15/bin, or $MULTIGRES_PG_BIN
  user: postgres              # superuser, also used for replication
  password: postgres
  listen: 127.0.0.1
  base_port: 25432            # instances get base_port, base_port + 1, ...
  settings:                   # extra postgresql.conf settings for every instance
    shared_buffers: 128MB
    max_connections: 200
cells: [zone1]
databases:
  - name: postgres
    durability:
      num_sync: 1             # any 1 replica must have each commit's WAL before it is acknowledged
    tablegroups:
      - name: default
        sharded: false
        shards:
          - name: "0"         # key range; "0" is the whole range (unsharded)
            instances: [zone1, zone1, zone1]   # the cell of each; the first starts as primary
pooler:                       # one multipooler per Postgres instance (the i-th in config order)
  listen: 127.0.0.1
  base_port: 16000            # clients (Postgres protocol): base_port + i
  grpc_base_port: 16100       # control plane (health, status): grpc_base_port + i
  http_base_port: 16200       # /metrics, /healthz, /readyz: http_base_port + i
  pool_size: 20               # server connections per (user, database)
gateway:
  listen: 127.0.0.1:15432     # what applications connect to
  http_port: 15001            # /metrics, /debug/status
  cell: null                  # null: the first cell
  replica_lag_threshold: 30   # seconds; replicas further behind get no reads
  local: false                # true: gateway and poolers in one process (`start --local`)
"""


@dataclass
class ShardConfig:
    name: str
    instances: list[str]  # cells; the first is the initial primary


@dataclass
class TablegroupConfig:
    name: str
    sharded: bool
    shards: list[ShardConfig]


@dataclass
class DatabaseConfig:
    name: str
    num_sync: int
    tablegroups: list[TablegroupConfig]


@dataclass
class PoolerSettings:
    """The ``pooler:`` section: instance i's multipooler takes the ports ``*_port + i``."""

    listen: str = "127.0.0.1"
    base_port: int = 16000
    grpc_base_port: int = 16100
    http_base_port: int = 16200
    pool_size: int = 20


@dataclass
class GatewaySettings:
    """The ``gateway:`` section: the one multigateway of the local cluster."""

    host: str = "127.0.0.1"
    port: int = 15432
    http_port: int = 15001
    cell: str | None = None  # None: the first cell
    replica_lag_threshold: float = 30.0
    # Local mode: the gateway and every pooler in one process (`multigres local`), the
    # gateway reaching the poolers through memory.
    local: bool = False

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class InstancePlan:
    """One Postgres instance the config asks for, with its derived name and ports (its own and
    its multipooler's)."""

    name: str
    cell: str
    port: int
    database: str
    tablegroup: str
    shard: str
    initial_primary: bool
    pooler_port: int = 0
    pooler_grpc_port: int = 0
    pooler_http_port: int = 0


@dataclass
class ClusterConfig:
    path: Path
    etcd_host: str = "127.0.0.1"
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    topo_root: str = "/multigres"
    pg_bin_dir: str | None = None
    pg_user: str = "postgres"
    pg_password: str = "postgres"
    pg_listen: str = "127.0.0.1"
    pg_base_port: int = 25432
    pg_settings: dict[str, Any] = field(default_factory=dict)
    cells: list[str] = field(default_factory=lambda: ["zone1"])
    databases: list[DatabaseConfig] = field(default_factory=list)
    pooler: PoolerSettings = field(default_factory=PoolerSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)

    @property
    def gateway_cell(self) -> str:
        return self.gateway.cell or self.cells[0]

    def instances(self) -> list[InstancePlan]:
        """Every instance in config order: names ``<cell>-<uid>``, uids from 100 up."""
        out: list[InstancePlan] = []
        for db in self.databases:
            for tg in db.tablegroups:
                for shard in tg.shards:
                    for i, cell in enumerate(shard.instances):
                        n = len(out)
                        out.append(
                            InstancePlan(
                                name=f"{cell}-{100 + n}",
                                cell=cell,
                                port=self.pg_base_port + n,
                                database=db.name,
                                tablegroup=tg.name,
                                shard=shard.name,
                                initial_primary=(i == 0),
                                pooler_port=self.pooler.base_port + n,
                                pooler_grpc_port=self.pooler.grpc_base_port + n,
                                pooler_http_port=self.pooler.http_base_port + n,
                            )
                        )
        return out


def _expect(cond: bool, path: Path, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {where}: {msg}")


def _mapping(obj: Any, path: Path, where: str, allowed: set[str]) -> dict[str, Any]:
    _expect(isinstance(obj, dict), path, where, f"expected a mapping, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    _expect(
        not unknown,
        path,
        where,
        f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: "
        + ", ".join(sorted(allowed)),
    )
    return dict(obj)


def _list(obj: Any, path: Path, where: str) -> list[Any]:
    _expect(isinstance(obj, list) and bool(obj), path, where, "expected a non-empty list")
    return list(obj)


def _int(obj: Any, path: Path, where: str, lo: int = 0, hi: int = 65535) -> int:
    _expect(
        isinstance(obj, int) and not isinstance(obj, bool) and lo <= obj <= hi,
        path,
        where,
        f"expected an integer from {lo} to {hi}, got {obj!r}",
    )
    return int(obj)


def _str(obj: Any, path: Path, where: str) -> str:
    _expect(isinstance(obj, str) and obj != "", path, where, f"expected a string, got {obj!r}")
    return str(obj)


def parse(text: str, path: Path) -> ClusterConfig:
    """Parse and validate a cluster config; ConfigError names the file and field on error."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    top = _mapping(
        raw,
        path,
        "top level",
        {"etcd", "topo_root", "postgres", "cells", "databases", "pooler", "gateway"},
    )
    cfg = ClusterConfig(path=path)
    etcd = _mapping(top.get("etcd", {}), path, "etcd", {"listen", "peer_port"})
    if "listen" in etcd:
        try:
            cfg.etcd_host, cfg.etcd_port = split_hostport(_str(etcd["listen"], path, "etcd.listen"))
        except ValueError as e:
            raise ConfigError(f"{path}: etcd.listen: {e}") from e
    cfg.etcd_peer_port = _int(etcd.get("peer_port", cfg.etcd_peer_port), path, "etcd.peer_port", 1)
    cfg.topo_root = _str(top.get("topo_root", cfg.topo_root), path, "topo_root")
    _expect(cfg.topo_root.startswith("/"), path, "topo_root", "must start with '/'")
    pg = _mapping(
        top.get("postgres", {}),
        path,
        "postgres",
        {"bin_dir", "user", "password", "listen", "base_port", "settings"},
    )
    if pg.get("bin_dir") is not None:
        cfg.pg_bin_dir = _str(pg["bin_dir"], path, "postgres.bin_dir")
    cfg.pg_user = _str(pg.get("user", cfg.pg_user), path, "postgres.user")
    cfg.pg_password = _str(pg.get("password", cfg.pg_password), path, "postgres.password")
    cfg.pg_listen = _str(pg.get("listen", cfg.pg_listen), path, "postgres.listen")
    cfg.pg_base_port = _int(pg.get("base_port", cfg.pg_base_port), path, "postgres.base_port", 1)
    settings = pg.get("settings") or {}
    _expect(isinstance(settings, dict), path, "postgres.settings", "expected a mapping")
    cfg.pg_settings = dict(settings)
    cells = _list(top.get("cells", cfg.cells), path, "cells")
    _expect(
        all(isinstance(c, str) and c for c in cells), path, "cells", "expected a list of cell names"
    )
    cfg.cells = cells
    dbs = _list(top.get("databases"), path, "databases")
    for i, rdb in enumerate(dbs):
        w = f"databases[{i}]"
        db = _mapping(rdb, path, w, {"name", "durability", "tablegroups"})
        dur = _mapping(db.get("durability", {}), path, f"{w}.durability", {"num_sync"})
        num_sync = _int(dur.get("num_sync", 0), path, f"{w}.durability.num_sync", 0, 100)
        tgs = _list(db.get("tablegroups"), path, f"{w}.tablegroups")
        dbc = DatabaseConfig(_str(db.get("name"), path, f"{w}.name"), num_sync, [])
        for j, rtg in enumerate(tgs):
            wt = f"{w}.tablegroups[{j}]"
            tg = _mapping(rtg, path, wt, {"name", "sharded", "shards"})
            sharded = tg.get("sharded", False)
            _expect(isinstance(sharded, bool), path, f"{wt}.sharded", "expected true or false")
            shards = _list(tg.get("shards"), path, f"{wt}.shards")
            tgc = TablegroupConfig(_str(tg.get("name"), path, f"{wt}.name"), sharded, [])
            for k, rsh in enumerate(shards):
                ws = f"{wt}.shards[{k}]"
                sh = _mapping(rsh, path, ws, {"name", "instances"})
                insts = _list(sh.get("instances"), path, f"{ws}.instances")
                _expect(
                    all(c in cfg.cells for c in insts),
                    path,
                    f"{ws}.instances",
                    f"expected a non-empty list of cells from {cfg.cells}, got {insts!r}",
                )
                _expect(
                    num_sync <= len(insts) - 1,
                    path,
                    f"{w}.durability.num_sync",
                    f"needs {num_sync} replica(s) but shard {sh.get('name')!r} has "
                    f"{len(insts) - 1}",
                )
                name = sh.get("name")
                _expect(
                    isinstance(name, str | int),
                    path,
                    f"{ws}.name",
                    'expected a key range like "0", "-80" or "80-"',
                )
                try:
                    canonical = canonical_shard_name(str(name))
                except KeyRangeError as e:
                    raise ConfigError(f"{path}: {ws}.name: {e}") from e
                tgc.shards.append(ShardConfig(canonical, insts))
            if not sharded:
                _expect(
                    [s.name for s in tgc.shards] == ["0"],
                    path,
                    f"{wt}.shards",
                    'an unsharded tablegroup has exactly one shard, named "0"',
                )
            else:
                try:
                    check_coverage([KeyRange.parse(s.name) for s in tgc.shards])
                except KeyRangeError as e:
                    raise ConfigError(f"{path}: {wt}.shards: {e}") from e
            dbc.tablegroups.append(tgc)
        cfg.databases.append(dbc)
    cfg.pooler = _pooler(top.get("pooler") or {}, path)
    cfg.gateway = _gateway(top.get("gateway") or {}, path, cfg.cells)
    _check_port_clashes(cfg, path)
    return cfg


def _hostport(obj: Any, path: Path, where: str) -> tuple[str, int]:
    try:
        host, port = split_hostport(_str(obj, path, where))
    except ValueError as e:
        raise ConfigError(f"{path}: {where}: {e}") from e
    _int(port, path, where, 1)
    return host, port


def _pooler(raw: Any, path: Path) -> PoolerSettings:
    sec = _mapping(
        raw, path, "pooler", {"listen", "base_port", "grpc_base_port", "http_base_port",
                              "pool_size"}
    )
    out = PoolerSettings()
    out.listen = _str(sec.get("listen", out.listen), path, "pooler.listen")
    for key in ("base_port", "grpc_base_port", "http_base_port"):
        setattr(out, key, _int(sec.get(key, getattr(out, key)), path, f"pooler.{key}", 1))
    out.pool_size = _int(sec.get("pool_size", out.pool_size), path, "pooler.pool_size", 1, 10000)
    return out


def _gateway(raw: Any, path: Path, cells: list[str]) -> GatewaySettings:
    sec = _mapping(
        raw, path, "gateway", {"listen", "http_port", "cell", "replica_lag_threshold", "local"}
    )
    out = GatewaySettings()
    if "listen" in sec:
        out.host, out.port = _hostport(sec["listen"], path, "gateway.listen")
    out.http_port = _int(sec.get("http_port", out.http_port), path, "gateway.http_port", 1)
    if sec.get("cell") is not None:
        out.cell = _str(sec["cell"], path, "gateway.cell")
        _expect(out.cell in cells, path, "gateway.cell", f"expected one of {cells}")
    lag = sec.get("replica_lag_threshold", out.replica_lag_threshold)
    _expect(
        isinstance(lag, int | float) and not isinstance(lag, bool) and lag >= 0,
        path,
        "gateway.replica_lag_threshold",
        f"expected a number of seconds >= 0, got {lag!r}",
    )
    out.replica_lag_threshold = float(lag)
    local = sec.get("local", False)
    _expect(isinstance(local, bool), path, "gateway.local",
            f"expected true or false, got {local!r}")
    out.local = local
    return out


def _check_port_clashes(cfg: ClusterConfig, path: Path) -> None:
    """Every port the cluster binds is in range and wanted by one thing only."""
    plans = cfg.instances()
    wanted: list[tuple[int, str, str]] = [
        (cfg.etcd_port, "etcd.listen", "etcd"),
        (cfg.etcd_peer_port, "etcd.peer_port", "etcd peer"),
        *((p.port, "postgres.base_port", f"Postgres {p.name}") for p in plans),
        *((p.pooler_port, "pooler.base_port", f"pooler {p.name}") for p in plans),
        *((p.pooler_grpc_port, "pooler.grpc_base_port", f"pooler {p.name} gRPC") for p in plans),
        *((p.pooler_http_port, "pooler.http_base_port", f"pooler {p.name} HTTP") for p in plans),
        (cfg.gateway.port, "gateway.listen", "the gateway"),
        (cfg.gateway.http_port, "gateway.http_port", "the gateway's HTTP"),
    ]
    seen: dict[int, tuple[str, str]] = {}
    for port, where, what in wanted:
        _expect(port <= 65535, path, where, f"port {port} (for {what}) is past 65535")
        if port in seen:
            other, other_where = seen[port]
            raise ConfigError(
                f"{path}: {where}: port {port} (for {what}) is also the port of {other} "
                f"({other_where})"
            )
        seen[port] = (what, where)


def load(path: Path) -> ClusterConfig:
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise ConfigError(
            f"{path}: no such config file; `multigres cluster init` writes the default"
        ) from e
    return parse(text, path)
