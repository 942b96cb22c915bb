"""``multigres cluster status``: one row per component, as a table or JSON.

Poolers are asked over gRPC (the first message of their Health stream, with a short
deadline), the gateway by a TCP connect to its Postgres port, then for its sessions and the
poolers it sees from its ``/debug/status?format=json`` (1 s timeout).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from multigres.cli.cluster import services
from multigres.cli.cluster.config import ClusterConfig, InstancePlan
from multigres.cli.cluster.config import load as load_config
from multigres.cli.cluster.state import ClusterPaths, ClusterState
from multigres.pgctld.instance import PgInstance
from multigres.procutil import pid_alive
from multigres.rpc import pooler_pb as pb

GRPC_DEADLINE = 2.0
HTTP_TIMEOUT = 1.0


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
    state: str = ""  # running, stopped; serving, not_serving, unreachable; up, down
    expected: bool = True  # False: not built yet; its health does not count


def _etcd_row(state: ClusterState, host: str, port: int) -> Row:
    address = f"{host}:{port}"
    healthy = False
    detail = "not running"
    alive = bool(state.etcd_pid and pid_alive(state.etcd_pid))
    if alive:
        detail = f"pid {state.etcd_pid}"
        try:
            with urllib.request.urlopen(f"http://{address}/health", timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
            healthy = str(body.get("health")) == "true"
        except (urllib.error.URLError, OSError, ValueError) as e:
            detail += f"; /health: {e}"
    what = "running" if healthy else ("unhealthy" if alive else "stopped")
    return Row("etcd", "etcd", address, "topology", healthy, detail=detail, state=what)


def pooler_health(address: str, deadline: float = GRPC_DEADLINE) -> Any:
    """The first message of the pooler's Health stream (a ``pb.HealthResponse``)."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(
            pb.HEALTH_METHOD,
            request_serializer=pb.HealthRequest.SerializeToString,
            response_deserializer=pb.HealthResponse.FromString,
        )(pb.HealthRequest(), timeout=deadline)
        try:
            return next(call)
        finally:
            call.cancel()


def _pooler_row(cfg: ClusterConfig, state: ClusterState, plan: InstancePlan) -> Row:
    host = cfg.pooler.listen
    row = Row("pooler", plan.name, f"{host}:{plan.pooler_port}", "-", False)
    pid = services.running(state, services.pooler_key(plan.name))
    details = [f"pid {pid}" if pid else "not running", f"gRPC :{plan.pooler_grpc_port}"]
    try:
        msg = pooler_health(f"{host}:{plan.pooler_grpc_port}")
    except grpc.RpcError as e:
        row.state = "unreachable" if pid else "stopped"
        details.append(f"Health: {e.code().name}")
        row.detail = "; ".join(details)
        return row
    row.role = msg.role or "-"
    row.state = msg.serving_state
    row.healthy = msg.serving_state == "serving" and msg.pg_reachable
    if msg.role == "replica":
        row.replication_lag_bytes = int(msg.replication_lag_bytes)
        row.replication_lag_s = float(msg.replication_lag_seconds)
    if not msg.pg_reachable:
        details.append(f"Postgres unreachable: {msg.error}" if msg.error else
                       "Postgres unreachable")
    if msg.paused:
        details.append("paused")
    row.detail = "; ".join(details)
    return row


def _gateway_row(cfg: ClusterConfig, state: ClusterState) -> Row:
    gw = cfg.gateway
    row = Row("gateway", "gateway", gw.listen, "-", False)
    if not services.GATEWAY.built():
        row.state, row.expected, row.detail = "not built", False, "multigres.gateway.cli missing"
        return row
    pid = services.running(state, services.GATEWAY_KEY)
    up = services.accepts(gw.host, gw.port)
    row.healthy = up and pid is not None
    row.state = "up" if up else "down"
    row.detail = f"pid {pid}; cell {cfg.gateway_cell}" if pid else "not running"
    if up and gw.http_port:
        row.detail += "; " + gateway_status(gw.host, gw.http_port)
    return row


def gateway_status(host: str, http_port: int, timeout: float = HTTP_TIMEOUT) -> str:
    """Sessions and poolers as the gateway sees them, from its /debug/status (one line)."""
    url = f"http://{host}:{http_port}/debug/status?format=json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        sessions = doc["sessions"]
        poolers = doc["poolers"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
        return f"status page unreachable ({getattr(e, 'reason', e)})"
    serving = sum(1 for p in poolers if p.get("serving"))
    seen = ", ".join(f"{p['id']} {p['role']}{'' if p.get('serving') else ' (not serving)'}"
                     for p in poolers)
    busy = sessions.get("active", 0)
    text = (f"{sessions.get('total', 0)} sessions ({busy} active); "
            f"{serving}/{len(poolers)} poolers serving")
    if seen:
        text += f": {seen}"
    if not doc.get("ready"):
        text += "; not ready (no serving primary)"
    return text


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
                    state="not created",
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
                state="running" if st.running else "stopped",
            )
        )
    rows += [_pooler_row(cfg, state, plan) for plan in cfg.instances()]
    rows.append(_gateway_row(cfg, state))
    return rows


def render_table(rows: list[Row]) -> str:
    header = ["COMPONENT", "NAME", "ADDRESS", "ROLE", "HEALTHY", "STATE", "LAG", "DETAIL"]
    body = []
    for r in rows:
        if r.replication_lag_bytes is None:
            lag = "-"
        else:
            lag = f"{r.replication_lag_bytes} B"
            if r.replication_lag_s is not None:
                lag += f" / {r.replication_lag_s:.3f} s"
        healthy = "yes" if r.healthy else ("NO" if r.expected else "-")
        body.append(
            [r.component, r.name, r.address, r.role, healthy, r.state or "-", lag, r.detail]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def render_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
