"""Where a local cluster keeps its files, and what it has started (state.json).

<cluster dir>/cluster.yaml   the config (written by `cluster init`)
<cluster dir>/state.json     what `cluster start` started: etcd's pid, the instances
<cluster dir>/etcd/          etcd's data dir;  <cluster dir>/logs/ the logs of our processes
<cluster dir>/pg/<name>/     one pgctld instance dir per Postgres instance
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".multigres"


@dataclass
class ClusterPaths:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | Path | None) -> ClusterPaths:
        raw = explicit or os.environ.get("MULTIGRES_HOME") or DEFAULT_DIR
        return cls(Path(raw).absolute())

    @property
    def config(self) -> Path:
        return self.root / "cluster.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def etcd_dir(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pg_root(self) -> Path:
        return self.root / "pg"

    def instance_dir(self, name: str) -> Path:
        return self.pg_root / name


@dataclass
class ClusterState:
    """Processes `cluster start` started. Written as soon as each starts, so that a start that
    fails half way, or a later `cluster stop`, can find and stop them."""

    etcd_pid: int | None = None
    etcd_url: str | None = None
    topo_root: str = "/multigres"
    instances: list[str] = field(default_factory=list)
    processes: dict[str, int] = field(default_factory=dict)  # later: poolers, gateway

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(**raw)
