"""Argument parsing and output for ``multigres cluster ...``."""

from __future__ import annotations

import argparse
from pathlib import Path

from multigres.cli.cluster import lifecycle, services, status
from multigres.cli.cluster.config import load as load_config
from multigres.cli.cluster.state import ClusterPaths


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="a local cluster: init, start, stop, status")
    p.add_argument("--dir", help="cluster directory (default: $MULTIGRES_HOME or ./.multigres)")
    csub = p.add_subparsers(dest="cluster_cmd", required=True)
    sp = csub.add_parser("init", help="write the cluster config (the default, or --config FILE)")
    sp.add_argument("--config", type=Path, help="use this config file instead of the default")
    sp.add_argument("--force", action="store_true", help="overwrite an existing config")
    sp = csub.add_parser(
        "start", help="start etcd, Postgres, the poolers and the gateway (creating what is missing)"
    )
    sp.add_argument("--config", type=Path, help="initialize from this config if none yet")
    sp.add_argument("--local", action="store_true",
                    help="run the gateway and the poolers in one process (local mode)")
    csub.add_parser("stop", help="stop every process of the cluster").add_argument(
        "--clean", action="store_true", help="also delete the cluster's data"
    )
    csub.add_parser("status", help="one row per component").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )


def run(args: argparse.Namespace) -> int:
    paths = ClusterPaths.resolve(args.dir)
    cmd = args.cluster_cmd
    if cmd == "init":
        path = lifecycle.init(paths, args.config, args.force)
        print(f"wrote {path}; start the cluster with `multigres cluster start`")
        return 0
    if cmd == "start":
        if args.config is not None and not paths.config.exists():
            lifecycle.init(paths, args.config)
        cfg = lifecycle.start(paths, local=args.local)
        first = next(p for p in cfg.instances() if p.initial_primary)
        print()
        print("The cluster is up.")
        if services.GATEWAY.built():
            gw = cfg.gateway
            print("Connect through the gateway:")
            print(f"  psql -h {gw.host} -p {gw.port} -U {cfg.pg_user} {first.database}"
                  f"  (password: {cfg.pg_password})")
        print(f"Through the pooler of {first.name} (the first primary):")
        print(
            f"  PGPASSWORD={cfg.pg_password} psql -h {cfg.pooler.listen} -p {first.pooler_port} "
            f"-U {cfg.pg_user} {first.database}"
        )
        print(
            "Status: `multigres cluster status`   Stop: `multigres cluster stop` (or `make stop`)"
        )
        return 0
    if cmd == "stop":
        lifecycle.stop(paths, clean=args.clean)
        return 0
    if cmd == "status":
        load_config(paths.config)
        rows = status.collect(paths)
        print(status.render_json(rows) if args.json else status.render_table(rows))
        return 0 if all(r.healthy or not r.expected for r in rows) else 1
    raise AssertionError(cmd)
