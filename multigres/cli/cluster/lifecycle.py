"""Starting and stopping a local cluster: etcd, then Postgres through pgctld, the topology
records, a multipooler per instance, and the gateway; stopping in the reverse order.

A start that fails half way stops everything it started in that run and says why. Every
process is recorded in state.json as soon as it runs, so `cluster stop` finds it even after a
crash of the CLI itself.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from multigres.cli.cluster import services, topology
from multigres.cli.cluster.config import DEFAULT_CONFIG, ClusterConfig, InstancePlan
from multigres.cli.cluster.config import load as load_config
from multigres.cli.cluster.errors import ClusterError as ClusterError  # main.py catches it here
from multigres.cli.cluster.state import ClusterPaths, ClusterState
from multigres.netutil import port_in_use
from multigres.pgctld.binaries import find_bin_dir
from multigres.pgctld.config import Durability
from multigres.pgctld.errors import PgctldError
from multigres.pgctld.instance import InstanceSpec, PgInstance
from multigres.procutil import pid_alive
from multigres.topo.etcd_process import EtcdError, EtcdProcess, is_etcd_pid, stop_pid

Say = Callable[[str], None]


def init(paths: ClusterPaths, source: Path | None = None, force: bool = False) -> Path:
    """Write the cluster config: ``source``'s text, or the default."""
    if paths.config.exists() and not force:
        raise ClusterError(
            f"{paths.config} already exists; use --force to overwrite it, or `multigres "
            "cluster stop --clean` to remove the whole cluster"
        )
    text = source.read_text() if source else DEFAULT_CONFIG
    from multigres.cli.cluster.config import parse

    parse(text, source or paths.config)  # validate before writing
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(text)
    return paths.config


@dataclass
class _Started:
    """What this run started, to undo if it fails half way."""

    etcd_pid: int | None = None
    instances: list[PgInstance] = field(default_factory=list)
    processes: list[services.Launched] = field(default_factory=list)  # poolers, gateway


def _instances_by_shard(cfg: ClusterConfig) -> dict[tuple[str, str, str], list[InstancePlan]]:
    out: dict[tuple[str, str, str], list[InstancePlan]] = {}
    for plan in cfg.instances():
        out.setdefault((plan.database, plan.tablegroup, plan.shard), []).append(plan)
    return out


def _etcd_alive(state: ClusterState) -> bool:
    """The recorded etcd runs (a stale pid may now belong to another program)."""
    return bool(state.etcd_pid and pid_alive(state.etcd_pid) and is_etcd_pid(state.etcd_pid))


def _check_ports(cfg: ClusterConfig, paths: ClusterPaths, state: ClusterState) -> None:
    wanted: list[tuple[str, str, int]] = []
    if not _etcd_alive(state):
        wanted += [
            ("etcd client", cfg.etcd_host, cfg.etcd_port),
            ("etcd peer", cfg.etcd_host, cfg.etcd_peer_port),
        ]
    for plan in cfg.instances():
        inst = PgInstance(paths.instance_dir(plan.name))
        if inst.exists() and inst.is_running():
            continue
        wanted.append((f"Postgres {plan.name}", cfg.pg_listen, plan.port))
    for plan in cfg.instances():
        if services.running(state, services.pooler_key(plan.name)) is None:
            host = cfg.pooler.listen
            wanted += [
                (f"pooler {plan.name}", host, plan.pooler_port),
                (f"pooler {plan.name} gRPC", host, plan.pooler_grpc_port),
                (f"pooler {plan.name} HTTP", host, plan.pooler_http_port),
            ]
    if services.GATEWAY.built() and services.running(state, services.GATEWAY_KEY) is None:
        gw = cfg.gateway
        wanted += [("the gateway", gw.host, gw.port), ("the gateway's HTTP", gw.host, gw.http_port)]
    for what, host, port in wanted:
        if port_in_use(port, host):
            raise ClusterError(
                f"port {port} on {host} (for {what}) is already in use by another process; "
                f"stop that process or change the port in {cfg.path}"
            )


def start(paths: ClusterPaths, say: Say = print, local: bool = False) -> ClusterConfig:
    """Bring the cluster up (creating what does not exist yet); idempotent. ``local`` (or
    ``gateway.local`` in the config) runs the gateway and the poolers in one process."""
    if not paths.config.exists():
        init(paths)
        say(f"wrote the default cluster config to {paths.config}")
    cfg = load_config(paths.config)
    bin_dir = find_bin_dir(cfg.pg_bin_dir)
    if shutil.which("etcd") is None:
        raise ClusterError(
            "etcd is not installed (no `etcd` on PATH); install it with "
            "`apt-get install etcd-server`"
        )
    for d in (paths.root, paths.logs, paths.pg_root):
        d.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o755)
    state = ClusterState.load(paths.state)
    _check_ports(cfg, paths, state)
    started = _Started()
    try:
        _start_etcd(cfg, paths, state, started, say)
        verifiers: dict[str, str] = {}
        for plans in _instances_by_shard(cfg).values():
            _start_shard(cfg, paths, bin_dir, plans, state, started, say, verifiers)
        poolers_running = {
            p.name
            for p in cfg.instances()
            if services.running(state, services.pooler_key(p.name)) is not None
        }
        asyncio.run(topology.record(cfg, paths, poolers_running))
        if local or cfg.gateway.local:
            services.start_local(cfg, paths, state, started.processes, say)
            asyncio.run(topology.wait_poolers_serving(cfg, paths))
        else:
            services.start_poolers(cfg, paths, state, started.processes, say)
            asyncio.run(topology.wait_poolers_serving(cfg, paths))
            services.start_gateway(cfg, paths, state, started.processes, say)
    except BaseException as e:
        say(f"start failed: {e}")
        say("stopping what this start started ...")
        services.stop_processes(
            state, [launched.key for launched in reversed(started.processes)], say
        )
        state.save(paths.state)
        for inst in reversed(started.instances):
            try:
                inst.stop()
            except PgctldError as stop_err:
                say(f"  could not stop {inst.spec.name}: {stop_err}")
        if started.etcd_pid is not None:
            stop_pid(started.etcd_pid)
            state.etcd_pid = None
            state.save(paths.state)
        if isinstance(e, ClusterError | PgctldError | EtcdError):
            raise
        raise ClusterError(str(e)) from e
    return cfg


def _start_etcd(
    cfg: ClusterConfig, paths: ClusterPaths, state: ClusterState, started: _Started, say: Say
) -> None:
    if _etcd_alive(state):
        return
    etcd = EtcdProcess(
        paths.etcd_dir,
        client_port=cfg.etcd_port,
        peer_port=cfg.etcd_peer_port,
        host=cfg.etcd_host,
        log_path=paths.logs / "etcd.log",
    )
    # Detached: etcd outlives this command, `cluster stop` ends it by its recorded pid.
    etcd.start(timeout=30, detached=True)
    assert etcd.pid is not None
    started.etcd_pid = etcd.pid
    state.etcd_pid = etcd.pid
    state.etcd_url = etcd.client_url
    state.topo_root = cfg.topo_root
    state.save(paths.state)
    say(f"etcd        {cfg.etcd_host}:{cfg.etcd_port}  (pid {etcd.pid})")


def _spec(cfg: ClusterConfig, plan: InstancePlan) -> InstanceSpec:
    return InstanceSpec(
        name=plan.name,
        port=plan.port,
        listen=cfg.pg_listen,
        superuser=cfg.pg_user,
        password=cfg.pg_password,
        settings=dict(cfg.pg_settings),
        unix_socket=True,  # the pooler beside it connects there (see services.pooler_args)
    )


def _start_shard(
    cfg: ClusterConfig,
    paths: ClusterPaths,
    bin_dir: Path,
    plans: list[InstancePlan],
    state: ClusterState,
    started: _Started,
    say: Say,
    verifiers: dict[str, str],
) -> None:
    """Start (or create) one shard's instances: primary first, then replicas, then policy.
    ``verifiers``: the superuser's SCRAM verifier per database, from its first shard."""
    insts = {p.name: PgInstance(paths.instance_dir(p.name), bin_dir) for p in plans}
    for p in plans:
        if p.name not in state.instances:
            state.instances.append(p.name)
    state.save(paths.state)
    existing = [p for p in plans if insts[p.name].exists()]
    # The primary is whoever has no upstream (a switchover may have moved it from the first).
    primaries = [p for p in existing if insts[p.name].spec.upstream is None]
    primary = primaries[0] if primaries else plans[0]
    pinst = insts[primary.name]
    if not pinst.exists():
        say(f"postgres    {primary.name}: initdb (port {primary.port})")
        pinst = PgInstance.create(
            paths.instance_dir(primary.name), _spec(cfg, primary), bin_dir=bin_dir
        )
        insts[primary.name] = pinst
    if not pinst.is_running():
        pinst.start()
        started.instances.append(pinst)
    try:
        _same_verifier(pinst, primary.database, verifiers)
    except psycopg.Error as e:
        # Not fatal: only logins through the gateway to this shard are affected.
        say(f"warning: could not align the superuser's password verifier on {primary.name}: "
            f"{str(e).strip()}")
    say(f"postgres    {primary.name}  {cfg.pg_listen}:{pinst.spec.port}  primary")
    replicas = [p for p in plans if p.name != primary.name]
    for p in replicas:
        inst = insts[p.name]
        if not inst.exists():
            say(f"postgres    {p.name}: cloning from {primary.name} (pg_basebackup)")
            inst = PgInstance.clone(
                paths.instance_dir(p.name), _spec(cfg, p), pinst.endpoint(), bin_dir=bin_dir
            )
            insts[p.name] = inst
            started.instances.append(inst)
        elif not inst.is_running():
            inst.start()
            started.instances.append(inst)
        say(f"postgres    {p.name}  {cfg.pg_listen}:{inst.spec.port}  replica")
    db = next(d for d in cfg.databases if d.name == primary.database)
    pinst.wait_replicas_streaming([p.name for p in replicas if insts[p.name].spec.upstream])
    if db.num_sync > 0:
        pinst.set_durability(Durability(db.num_sync, [p.name for p in replicas]))


def _same_verifier(pinst: PgInstance, database: str, verifiers: dict[str, str]) -> None:
    """Every primary of a database gets the superuser's SCRAM verifier of its first shard
    (replicas then inherit it). The gateway logs in to every shard's pooler with the
    ClientKey a client proved against one verifier, and a ClientKey only fits the salt and
    iterations it was made with: initdb salts each instance's password differently. (The
    same password, so nothing changes for a client; a cluster made before this is repaired
    at its next start.)"""
    with psycopg.connect(pinst.endpoint().conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (pinst.spec.superuser,)).fetchone()
        current = row[0] if row is not None else None
        want = verifiers.get(database)
        if want is None:
            if current:
                verifiers[database] = current
        elif current != want:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(pinst.spec.superuser), sql.Literal(want)))


def stop(paths: ClusterPaths, clean: bool = False, say: Say = print) -> None:
    """Stop every process the cluster started (gateway, poolers, Postgres, etcd; those that
    crashed are skipped); with ``clean`` also delete its data. Idempotent."""
    state = ClusterState.load(paths.state)
    # The gateway first (clients leave through it), then the poolers, then what they front.
    services.stop_processes(state, [k for k in state.processes if k == services.GATEWAY_KEY], say)
    services.stop_processes(state, sorted(state.processes), say)
    if paths.root.exists():
        state.save(paths.state)
    names = set(state.instances)
    if paths.pg_root.exists():
        names |= {d.name for d in paths.pg_root.iterdir() if (d / "pgctld.json").exists()}
    errors: list[str] = []
    for name in sorted(names):
        inst = PgInstance(paths.instance_dir(name))
        if inst.exists() and inst.is_running():
            try:
                inst.stop()
                say(f"stopped postgres {name}")
            except PgctldError as e:
                errors.append(f"{name}: {e}")
    if _etcd_alive(state) and state.etcd_pid and stop_pid(state.etcd_pid):
        say(f"stopped etcd (pid {state.etcd_pid})")
    state.etcd_pid = None
    if paths.root.exists():
        state.save(paths.state)
    if errors:
        raise ClusterError("could not stop: " + "; ".join(errors))
    if clean and paths.root.exists():
        for sub in (paths.pg_root, paths.etcd_dir, paths.logs, paths.state):
            if sub.is_dir():
                shutil.rmtree(sub)
            elif sub.exists():
                sub.unlink()
        say(f"removed the cluster's data under {paths.root}")
