"""The ``multigres`` command."""

from __future__ import annotations

import argparse
import sys

from multigres import __version__
from multigres.cli import switchover as switchover_command
from multigres.cli import vschema as vschema_command
from multigres.cli.cluster import commands as cluster_commands
from multigres.cli.cluster.config import ConfigError
from multigres.cli.cluster.lifecycle import ClusterError
from multigres.pgctld import cli as pgctld_cli
from multigres.pgctld.errors import PgctldError
from multigres.topo.errors import TopoError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multigres", description="Multigres: many Postgres servers that look like one."
    )
    p.add_argument("--version", action="version", version=f"multigres {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    cluster_commands.add_parser(sub)
    switchover_command.add_parser(sub)
    vschema_command.add_parser(sub)
    sub.add_parser(
        "pgctld", help="manage one Postgres instance (see `multigres pgctld -h`)", add_help=False
    )
    sub.add_parser(
        "local", help="run the gateway and poolers in one process (see `multigres local -h`)",
        add_help=False,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "pgctld":
        return pgctld_cli.main(argv[1:], prog="multigres pgctld")
    if argv and argv[0] == "local":
        from multigres.cli import local

        return local.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "cluster":
            return cluster_commands.run(args)
        if args.cmd == "switchover":
            return switchover_command.run(args)
        if args.cmd == "vschema":
            return vschema_command.run(args)
    except (ClusterError, ConfigError, PgctldError, TopoError) as e:
        print(f"multigres: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("multigres: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(args.cmd)


if __name__ == "__main__":
    sys.exit(main())
