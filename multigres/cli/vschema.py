"""``multigres vschema apply FILE`` / ``multigres vschema show``: change and show a database's
sharding scheme (docs/vschema.md) in the topology.

``show`` prints the stored document inside an envelope that carries its version::

    {"database": "postgres", "version": 42, "vschema": {...}}

``apply`` takes either a bare document or such an envelope. With an envelope (or
``--if-version``), the write happens only if the stored VSchema is still at that version: a
``show``, edit, ``apply`` cycle never overwrites a change someone made in between. Without
one, the document replaces whatever is stored.

``apply`` checks the document first (every problem is printed with its path, nothing is
stored), then that each of its tablegroups exists in the topology as sharded or unsharded as
the document says, and writes it under the database lock with a compare-and-set on the
version it read (a writer that does not take the lock cannot be overwritten silently either).

The topology is the local cluster's (``--dir``, as ``multigres cluster`` uses it) unless
``--topo HOST:PORT`` names an etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multigres.topo.conn import DEFAULT_LOCK_TIMEOUT, Version
from multigres.topo.errors import BadVersion, NoNode
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import VSchema as VSchemaRecord
from multigres.topo.server import TopoServer
from multigres.vschema.doc import q
from multigres.vschema.errors import Problem, VSchemaError
from multigres.vschema.model import VSchema, load_json

# How often a write that lost a race with a writer that did not take the lock is retried.
WRITE_ATTEMPTS = 5
ENVELOPE_FIELDS = {"database", "version", "vschema"}


class VSchemaCommandError(Exception):
    """What the command reports as ``multigres: error: ...`` (exit code 1)."""


class _Any:
    """``expect`` for "whatever version is stored" (None already means "none stored")."""


ANY_VERSION = _Any()
Expected = Version | None | _Any


@dataclass(frozen=True)
class ApplyResult:
    database: str
    version: Version
    previous: Version | None  # None: there was no vschema
    changed: bool


def read_document(path: Path) -> tuple[dict[str, Any], str | None, Expected]:
    """The file's VSchema document, and the database and version of its envelope if it is
    one (else None and ANY_VERSION). VSchemaError for a document that is not valid."""
    try:
        text = path.read_text()
    except OSError as e:
        raise VSchemaCommandError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        raw = load_json(text)
    except ValueError as e:
        raise VSchemaCommandError(f"{path} is not JSON: {e}") from None
    if isinstance(raw, dict) and "vschema" in raw and set(raw) <= ENVELOPE_FIELDS:
        database = raw.get("database")
        if database is not None and not isinstance(database, str):
            raise VSchemaError([Problem("database", "expected a string")])
        version = raw.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise VSchemaError([Problem("version", "expected an integer or null")])
        doc = raw["vschema"]
        VSchema.parse(doc)
        return doc, database, version
    VSchema.parse(raw)
    return raw, None, ANY_VERSION


async def check_tablegroups(topo: TopoServer, database: str, vs: VSchema) -> None:
    """Every tablegroup of the document must exist in the topology, sharded as it says."""
    problems: list[Problem] = []
    names = await topo.get_tablegroup_names(database)
    for name, tg in vs.tablegroups.items():
        if name not in names:
            have = ", ".join(q(n) for n in names) or "none"
            problems.append(Problem(
                f"tablegroups.{name}",
                f"no tablegroup {q(name)} in database {q(database)} of the topology "
                f"(it has: {have})",
            ))
            continue
        record = await topo.get_tablegroup(database, name)
        if record.sharded != tg.sharded:
            problems.append(Problem(
                f"tablegroups.{name}.sharded",
                f"{json.dumps(tg.sharded)}, but tablegroup {q(name)} of the topology is "
                f"{'sharded' if record.sharded else 'unsharded'}",
            ))
    if problems:
        raise VSchemaError(problems)


async def apply_vschema(
    topo: TopoServer,
    database: str,
    doc: dict[str, Any],
    expect: Expected = ANY_VERSION,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    dry_run: bool = False,
) -> ApplyResult:
    """Check ``doc`` (also against the topology's tablegroups) and store it as the
    database's VSchema, under the database lock. ``expect``: the version the stored VSchema
    must still be at (None: there must be none), else VSchemaCommandError."""
    vs = VSchema.parse(doc)
    await topo.get_database(database)  # NoNode names the database
    await check_tablegroups(topo, database, vs)
    async with topo.lock_database(database, "vschema apply", timeout=lock_timeout) as lock:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                current: VSchemaRecord | None = await topo.get_vschema(database)
            except NoNode:
                current = None
            previous = None if current is None else current.version
            if not isinstance(expect, _Any) and expect != previous:
                raise VSchemaCommandError(
                    f"the vschema of database {q(database)} changed since version "
                    f"{_version_text(expect)}: it is at {_version_text(previous)}; nothing "
                    "was applied (show it again and redo the change)"
                )
            if current is not None and current.doc == doc:
                assert current.version is not None
                return ApplyResult(database, current.version, previous, changed=False)
            if dry_run:
                return ApplyResult(database, previous or 0, previous, changed=True)
            lock.check()
            record = VSchemaRecord(database, doc, version=previous)
            try:
                if current is None:
                    stored = await topo.create_vschema(record)
                else:
                    stored = await topo.update_vschema(record)
            except BadVersion:
                # A writer that does not take the lock changed it between our read and write.
                if not isinstance(expect, _Any) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            except NoNode:  # deleted in between: create it on the next attempt
                if not isinstance(expect, _Any) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            assert stored.version is not None
            return ApplyResult(database, stored.version, previous, changed=True)
    raise AssertionError("unreachable")


def _version_text(v: Version | None) -> str:
    return "none (no vschema)" if v is None else str(v)


def envelope(record: VSchemaRecord) -> str:
    return json.dumps(
        {"database": record.database, "version": record.version, "vschema": record.doc},
        indent=2,
        sort_keys=True,
    )


async def resolve_database(topo: TopoServer, explicit: str | None) -> str:
    if explicit:
        return explicit
    names = await topo.get_database_names()
    if len(names) == 1:
        return names[0]
    have = ", ".join(names) or "none"
    raise VSchemaCommandError(
        f"--database is needed: the topology has {len(names)} databases ({have})"
    )


def open_topology(args: argparse.Namespace) -> TopoServer:
    """The etcd of ``--topo``, else the local cluster's (from its config under ``--dir``)."""
    if args.topo:
        return TopoServer(EtcdConn(args.topo, root=args.topo_root))
    from multigres.cli.cluster.config import load as load_config
    from multigres.cli.cluster.state import ClusterPaths
    from multigres.cli.cluster.topology import open_topo

    paths = ClusterPaths.resolve(args.dir)
    if not paths.config.exists():
        raise VSchemaCommandError(
            f"no cluster at {paths.root} (no {paths.config.name}); give --dir, or --topo "
            "HOST:PORT for another etcd"
        )
    return open_topo(load_config(paths.config))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "vschema",
        help="apply or show a database's VSchema (its sharding scheme)",
        description="Change or show the VSchema of a database: which tablegroup each table "
        "is in, and its vindexes (docs/vschema.md).",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    apply = verbs.add_parser(
        "apply",
        help="check a VSchema file and store it",
        description="Check the file (a VSchema document, or the output of `vschema show`) "
        "and store it as the database's VSchema. With the output of `show`, it is stored only "
        "if nobody changed the VSchema since.",
    )
    apply.add_argument("file", type=Path, help="the JSON file")
    apply.add_argument("--if-version", type=int, metavar="N",
                       help="store only if the stored VSchema is at version N (0: none stored)")
    apply.add_argument("--force", action="store_true",
                       help="with the output of `show`: store even if the version moved on")
    apply.add_argument("--dry-run", action="store_true", help="check only; store nothing")
    apply.add_argument("--timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                       help="the longest wait for the database lock (default %(default)g)")
    show = verbs.add_parser("show", help="print the VSchema with its version")
    show.add_argument("--doc-only", action="store_true",
                      help="print the document alone, without database and version")
    for verb in (apply, show):
        verb.add_argument("--database", help="the database (default: the only one)")
        verb.add_argument("--topo", metavar="HOST:PORT",
                          help="the etcd of the topology (default: the local cluster's)")
        verb.add_argument("--topo-root", default="/multigres",
                          help="with --topo: the topology's root (default %(default)s)")
        verb.add_argument("--dir",
                          help="cluster directory (default: $MULTIGRES_HOME or ./.multigres)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.verb == "apply":
            return _run_apply(args)
        return asyncio.run(_show(args))
    except VSchemaError as e:
        where = f"{args.file}: " if args.verb == "apply" else ""
        print(f"multigres: error: {where}invalid VSchema, nothing was applied:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except VSchemaCommandError as e:
        print(f"multigres: error: {e}", file=sys.stderr)
        return 1


def _run_apply(args: argparse.Namespace) -> int:
    doc, env_db, env_version = read_document(args.file)
    expect: Expected = ANY_VERSION if args.force else env_version
    if args.if_version is not None:
        expect = None if args.if_version == 0 else args.if_version
    if env_db and args.database and env_db != args.database:
        raise VSchemaCommandError(
            f"{args.file} is the vschema of database {q(env_db)}, not {q(args.database)}"
        )

    async def go() -> ApplyResult:
        async with open_topology(args) as topo:
            database = await resolve_database(topo, args.database or env_db)
            try:
                return await apply_vschema(
                    topo, database, doc, expect, lock_timeout=args.timeout, dry_run=args.dry_run
                )
            except NoNode as e:
                if e.path.endswith("/Database"):
                    raise VSchemaCommandError(
                        f"no database {q(database)} in the topology"
                    ) from None
                raise

    result = asyncio.run(go())
    if args.dry_run:
        print(f"{args.file}: valid for database {result.database}; nothing stored (--dry-run)")
    elif not result.changed:
        print(f"vschema of database {result.database} unchanged (version {result.version})")
    else:
        was = "" if result.previous is None else f", was {result.previous}"
        print(f"applied vschema to database {result.database}: version {result.version}{was}")
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with open_topology(args) as topo:
        database = await resolve_database(topo, args.database)
        try:
            record = await topo.get_vschema(database)
        except NoNode:
            try:
                await topo.get_database(database)
            except NoNode:
                raise VSchemaCommandError(f"no database {q(database)} in the topology") from None
            raise VSchemaCommandError(
                f"database {q(database)} has no vschema (every table is in its unsharded "
                "tablegroup); `multigres vschema apply FILE` sets one"
            ) from None
    print(json.dumps(record.doc, indent=2, sort_keys=True) if args.doc_only else envelope(record))
    return 0
