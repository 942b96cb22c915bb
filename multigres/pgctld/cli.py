"""``pgctld``: the Postgres lifecycle command (also ``multigres pgctld``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from multigres.netutil import split_hostport
from multigres.pgctld.binaries import find_bin_dir
from multigres.pgctld.config import Durability
from multigres.pgctld.errors import PgctldError
from multigres.pgctld.instance import Endpoint, InstanceSpec, PgInstance


def build_parser(prog: str = "pgctld") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Manage one Postgres instance.")
    p.add_argument("--pg-bin", help="directory of the Postgres server binaries")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--dir", required=True, type=Path, help="instance directory")
        return sp

    for name, help_ in (("init", "create a new primary (initdb)"),
                        ("clone", "create a replica of a primary (pg_basebackup)")):
        sp = add(name, help_)
        sp.add_argument("--name", required=True, help="instance name (replica application_name)")
        sp.add_argument("--port", required=True, type=int)
        sp.add_argument("--listen", default="127.0.0.1")
        sp.add_argument("--user", default="postgres", help="superuser name")
        sp.add_argument("--password", default="postgres", help="superuser password")
        sp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra postgresql.conf setting (repeatable)")
        if name == "init":
            sp.add_argument("--template", type=Path, help="copy this initdb'd data dir")
            sp.add_argument("--start", action="store_true", help="start it after creating")
        else:
            sp.add_argument("--source", required=True, help="primary as HOST:PORT")
    for name, help_ in (("start", "start and wait until ready"), ("stop", "fast, then immediate"),
                        ("restart", "stop, then start"), ("reload", "re-read configuration"),
                        ("promote", "promote a replica"), ("destroy", "stop and delete")):
        sp = add(name, help_)
        sp.add_argument("--timeout", type=float, default=60)
    sp = add("status", "print status as JSON")
    sp = add("wait", "wait until the server accepts connections")
    sp.add_argument("--timeout", type=float, default=60)
    sp = add("rewind", "make a former primary follow a new one (pg_rewind)")
    sp.add_argument("--source", required=True, help="new primary as HOST:PORT")
    sp = add("follow", "make a replica stream from another primary")
    sp.add_argument("--source", required=True, help="new primary as HOST:PORT")
    sp = add("durability", "apply a durability policy to a primary")
    sp.add_argument("--num-sync", type=int, required=True,
                    help="replicas that must acknowledge each commit (0: asynchronous)")
    sp.add_argument("--standbys", default="", help="comma-separated replica names")
    return p


def _settings(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep:
            raise PgctldError(f"--set expects NAME=VALUE, got {pair!r}")
        out[k.strip()] = v.strip()
    return out


def run(args: argparse.Namespace) -> int:
    bin_dir = find_bin_dir(args.pg_bin)
    inst = PgInstance(args.dir, bin_dir)
    cmd = args.cmd
    if cmd in ("init", "clone"):
        spec = InstanceSpec(
            name=args.name, port=args.port, listen=args.listen, superuser=args.user,
            password=args.password, settings=_settings(args.set),
        )
        if cmd == "init":
            inst = PgInstance.create(args.dir, spec, template=args.template, bin_dir=bin_dir)
            if args.start:
                inst.start()
        else:
            host, port = split_hostport(args.source)
            src = Endpoint(host, port, args.user, args.password)
            inst = PgInstance.clone(args.dir, spec, src, bin_dir=bin_dir)
        print(f"{cmd}: {spec.name} in {inst.data_dir}, port {spec.port}")
    elif cmd == "start":
        inst.start(args.timeout)
    elif cmd == "stop":
        inst.stop(args.timeout)
    elif cmd == "restart":
        inst.restart(args.timeout)
    elif cmd == "reload":
        inst.reload()
    elif cmd == "promote":
        inst.promote(args.timeout)
    elif cmd == "destroy":
        inst.destroy()
    elif cmd == "wait":
        inst.wait_ready(args.timeout)
    elif cmd == "status":
        st = inst.status()
        print(json.dumps(asdict(st), indent=2))
        return 0 if st.running else 3
    elif cmd in ("rewind", "follow"):
        host, port = split_hostport(args.source)
        src = Endpoint(host, port, inst.spec.superuser, inst.spec.password)
        (inst.rewind if cmd == "rewind" else inst.follow)(src)
    elif cmd == "durability":
        names = [n.strip() for n in args.standbys.split(",") if n.strip()]
        inst.set_durability(Durability(args.num_sync, names))
    return 0


def main(argv: list[str] | None = None, prog: str = "pgctld") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return run(args)
    except (PgctldError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
