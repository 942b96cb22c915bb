"""``multigres cluster status``: one row per component, as a table or JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from multigres.cli.cluster.config import load as load_config
from multigres.cli.cluster.state import ClusterPaths, ClusterState
from multigres.pgctld.instance import PgInstance
from multigres.procutil import pid_alive


@dataclass
class Row:
    component: str
    name: str
    address: str
    role: str
    healthy: bool
    replication_lag_bytes: int | None = None
    replication_lag_s: float | None = None
    detail: str = ""


def _etcd_row(state: ClusterState, host: str, port: int) -> Row:
    address = f"{host}:{port}"
    healthy = False
    detail = "not running"
    if state.etcd_pid and pid_alive(state.etcd_pid):
        detail = f"pid {state.etcd_pid}"
        try:
            with urllib.request.urlopen(f"http://{address}/health", timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
            healthy = str(body.get("health")) == "true"
        except (urllib.error.URLError, OSError, ValueError) as e:
            detail += f"; /health: {e}"
    return Row("etcd", "etcd", address, "topology", healthy, detail=detail)


def collect(paths: ClusterPaths) -> list[Row]:
    cfg = load_config(paths.config)
    state = ClusterState.load(paths.state)
    rows = [_etcd_row(state, cfg.etcd_host, cfg.etcd_port)]
    lag: dict[str, tuple[int | None, float | None, str]] = {}
    statuses = []
    for plan in cfg.instances():
        inst = PgInstance(paths.instance_dir(plan.name))
        if not inst.exists():
            rows.append(
                Row(
                    "postgres",
                    plan.name,
                    f"{cfg.pg_listen}:{plan.port}",
                    "-",
                    False,
                    detail="not created",
                )
            )
            continue
        st = inst.status()
        statuses.append((plan, st))
        for r in st.replicas:
            lag[r["name"]] = (r["lag_bytes"], r["replay_lag_s"], r["state"])
    for plan, st in statuses:
        healthy = st.running and st.error is None and st.role is not None
        detail = f"shard {plan.database}/{plan.tablegroup}/{plan.shard}"
        lag_b: int | None = None
        lag_s: float | None = None
        if st.role == "replica":
            if st.name in lag:
                lag_b, lag_s, rstate = lag[st.name]
                detail += f"; {rstate} from {st.upstream}"
                healthy = healthy and rstate == "streaming"
            else:
                detail += "; not streaming"
                healthy = False
        elif st.role == "primary" and st.synchronous_standby_names:
            detail += f"; sync: {st.synchronous_standby_names}"
        if not st.running:
            detail += "; not running"
        elif st.error:
            detail += f"; {st.error}"
        rows.append(
            Row(
                "postgres",
                st.name,
                f"{cfg.pg_listen}:{st.port}",
                st.role or "-",
                healthy,
                lag_b,
                lag_s,
                detail,
            )
        )
    return rows


def render_table(rows: list[Row]) -> str:
    header = ["COMPONENT", "NAME", "ADDRESS", "ROLE", "HEALTHY", "LAG", "DETAIL"]
    body = []
    for r in rows:
        if r.replication_lag_bytes is None:
            lag = "-"
        else:
            lag = f"{r.replication_lag_bytes} B"
            if r.replication_lag_s is not None:
                lag += f" / {r.replication_lag_s:.3f} s"
        body.append(
            [r.component, r.name, r.address, r.role, "yes" if r.healthy else "NO", lag, r.detail]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def render_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
