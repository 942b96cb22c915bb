"""`multigres vschema apply` / `show` against a real etcd (started by the session's fixture):
apply and show round-trip with versions, an invalid file is refused with the field named and
nothing stored, a stale apply (show, someone else applies, apply) is refused, a race with a
writer that does not take the lock is retried or refused as it should be, and apply waits
for the database lock."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multigres.cli.main import main
from multigres.cli.vschema import VSchemaCommandError, apply_vschema
from multigres.testing.etcd import ThrowawayEtcd
from multigres.topo.errors import BadVersion, LockTimeout
from multigres.topo.etcd import EtcdConn
from multigres.topo.records import Database, TableGroup
from multigres.topo.records import VSchema as VSchemaRecord
from multigres.topo.server import TopoServer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "vschema_sharded.json"
DB = "postgres"


class Topo:
    def __init__(self, etcd: ThrowawayEtcd) -> None:
        self.address = etcd.address
        self.root = f"/test-vschema-{uuid.uuid4().hex[:12]}"

    def server(self) -> TopoServer:
        return TopoServer(EtcdConn(self.address, root=self.root))

    def args(self) -> list[str]:
        return ["--topo", self.address, "--topo-root", self.root]

    def run(self, coro_fn: Any) -> Any:
        async def go() -> Any:
            async with self.server() as ts:
                return await coro_fn(ts)

        return asyncio.run(go())

    def stored(self) -> VSchemaRecord:
        return self.run(lambda ts: ts.get_vschema(DB))  # type: ignore[no-any-return]


@pytest.fixture
def topo(etcd_server: ThrowawayEtcd) -> Iterator[Topo]:
    t = Topo(etcd_server)

    async def setup(ts: TopoServer) -> None:
        await ts.create_database(Database(DB))
        doc = json.loads(EXAMPLE.read_text())
        for name, spec in doc["tablegroups"].items():
            await ts.create_tablegroup(TableGroup(DB, name, sharded=spec.get("sharded", False)))

    t.run(setup)
    # Every key is under the test's own root in the session's throwaway etcd.
    yield t


def example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return doc


def write(tmp_path: Path, doc: Any, name: str = "vschema.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_apply_then_show(topo: Topo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vschema", "apply", str(EXAMPLE), *topo.args()]) == 0
    out = capsys.readouterr().out
    stored = topo.stored()
    assert stored.doc == example()
    assert out.strip() == f"applied vschema to database {DB}: version {stored.version}"

    assert main(["vschema", "show", *topo.args()]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"database": DB, "version": stored.version, "vschema": example()}

    assert main(["vschema", "show", "--doc-only", "--database", DB, *topo.args()]) == 0
    assert json.loads(capsys.readouterr().out) == example()

    # The same document again: nothing written.
    assert main(["vschema", "apply", str(EXAMPLE), *topo.args()]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert topo.stored().version == stored.version

    # A change: a new version.
    doc = example()
    doc["tables"]["audit_log"] = {"tablegroup": "default"}
    assert main(["vschema", "apply", str(write(tmp_path, doc)), *topo.args()]) == 0
    after = topo.stored()
    assert after.doc == doc and after.version != stored.version
    assert f"was {stored.version}" in capsys.readouterr().out


def test_invalid_file_is_refused_and_nothing_stored(
    topo: Topo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = example()
    doc["tables"]["orders"]["column_vindexes"][0]["name"] = "hsh"
    doc["vindexes"]["hash"]["type"] = "hash"
    path = write(tmp_path, doc)
    assert main(["vschema", "apply", str(path), *topo.args()]) == 1
    err = capsys.readouterr().err
    assert f"{path}: invalid VSchema, nothing was applied" in err
    assert 'tables.orders.column_vindexes[0].name: no vindex named "hsh"' in err
    assert main(["vschema", "show", *topo.args()]) == 1
    assert "has no vschema" in capsys.readouterr().err

    # Not JSON at all.
    assert main(["vschema", "apply", str(write(tmp_path, "{", "bad.json")), *topo.args()]) == 1
    assert "is not JSON" in capsys.readouterr().err

    # Valid, but its tablegroup is not in the topology, or sharded differently.
    doc = {
        "tablegroups": {"default": {}, "shop": {}, "extra": {"sharded": True}},
        "default_tablegroup": "default",
    }
    assert main(["vschema", "apply", str(write(tmp_path, doc)), *topo.args()]) == 1
    err = capsys.readouterr().err
    assert 'tablegroups.shop.sharded: false, but tablegroup "shop" of the topology is sharded' \
        in err
    assert 'tablegroups.extra: no tablegroup "extra" in database "postgres" of the topology' in err
    assert main(["vschema", "show", *topo.args()]) == 1  # still nothing stored
    capsys.readouterr()


def test_unknown_database(topo: Topo, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--database", "nope", *topo.args()]
    assert main(["vschema", "apply", str(EXAMPLE), *args]) == 1
    assert 'no database "nope" in the topology' in capsys.readouterr().err
    assert main(["vschema", "show", *args]) == 1
    assert 'no database "nope" in the topology' in capsys.readouterr().err


def test_stale_apply_is_refused(
    topo: Topo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vschema", "apply", str(EXAMPLE), *topo.args()]) == 0
    assert main(["vschema", "show", *topo.args()]) == 0
    capsys.readouterr()
    first = topo.stored()

    # Alice edits what `show` printed ...
    assert main(["vschema", "show", *topo.args()]) == 0
    mine = json.loads(capsys.readouterr().out)
    mine["vschema"]["tables"]["alice"] = {"tablegroup": "default"}
    # ... while Bob applies his change.
    bob = example()
    bob["tables"]["bob"] = {"tablegroup": "default"}
    assert main(["vschema", "apply", str(write(tmp_path, bob, "bob.json")), *topo.args()]) == 0
    capsys.readouterr()
    bobs = topo.stored()

    # Alice's apply is refused: it would silently drop Bob's table.
    path = write(tmp_path, mine, "alice.json")
    assert main(["vschema", "apply", str(path), *topo.args()]) == 1
    err = capsys.readouterr().err
    assert f"changed since version {first.version}: it is at {bobs.version}" in err
    assert topo.stored().doc == bob

    # The same with --if-version on a bare document; 0 means "none stored yet".
    bare = write(tmp_path, mine["vschema"], "alice-bare.json")
    assert main(["vschema", "apply", str(bare), "--if-version", str(first.version),
                 *topo.args()]) == 1
    assert main(["vschema", "apply", str(bare), "--if-version", "0", *topo.args()]) == 1
    capsys.readouterr()
    assert topo.stored().doc == bob

    # Redone on the current version, it goes through; --force overrides the check.
    assert main(["vschema", "apply", str(bare), "--if-version", str(bobs.version),
                 *topo.args()]) == 0
    assert topo.stored().doc == mine["vschema"]
    assert main(["vschema", "apply", str(path), "--force", *topo.args()]) == 0
    capsys.readouterr()


class RacingTopo(TopoServer):
    """Lets another writer (one that does not take the lock) change the VSchema right after
    apply has read it, ``times`` times."""

    def __init__(self, conn: EtcdConn, other: TopoServer, times: int) -> None:
        super().__init__(conn)
        self.other = other
        self.times = times

    async def update_vschema(self, vschema: VSchemaRecord) -> VSchemaRecord:
        if self.times:
            self.times -= 1
            current = await self.other.get_vschema(vschema.database)
            current.doc = {**current.doc, "tables": {**current.doc["tables"], "x": {}}}
            await self.other.update_vschema(current)
        return await super().update_vschema(vschema)


def test_race_with_a_writer_that_does_not_lock(topo: Topo) -> None:
    async def go(ts: TopoServer) -> None:
        await apply_vschema(ts, DB, example())
        mine = example()
        mine["tables"]["mine"] = {}
        async with topo.server() as other:
            # A bare document replaces what is there: the write is retried on the new version.
            racing = RacingTopo(EtcdConn(topo.address, root=topo.root), other, times=2)
            async with racing:
                result = await apply_vschema(racing, DB, mine)
            assert result.changed
            assert (await ts.get_vschema(DB)).doc == mine
            # With an expected version, the race is refused, not retried: nothing of ours.
            current = await ts.get_vschema(DB)
            theirs_then = copy.deepcopy(current.doc)
            racing = RacingTopo(EtcdConn(topo.address, root=topo.root), other, times=1)
            changed = {**mine, "tables": {**mine["tables"], "again": {}}}
            async with racing:
                with pytest.raises(BadVersion):
                    await apply_vschema(racing, DB, changed, current.version)
            stored = await ts.get_vschema(DB)
            assert "again" not in stored.doc["tables"]
            assert stored.doc["tables"].keys() == {*theirs_then["tables"], "x"}

    topo.run(go)


def test_apply_waits_for_the_database_lock(topo: Topo) -> None:
    async def go(ts: TopoServer) -> None:
        async with topo.server() as holder:
            async with holder.lock_database(DB, "someone else's change"):
                with pytest.raises(LockTimeout, match="someone else's change"):
                    await apply_vschema(ts, DB, example(), lock_timeout=1.0)
            with pytest.raises(VSchemaCommandError, match="changed since version"):
                await apply_vschema(ts, DB, example(), 12345)
            result = await apply_vschema(ts, DB, example(), None)
            assert result.changed and result.previous is None

    topo.run(go)


def test_dry_run_stores_nothing(topo: Topo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vschema", "apply", str(EXAMPLE), "--dry-run", *topo.args()]) == 0
    assert "nothing stored (--dry-run)" in capsys.readouterr().out
    assert main(["vschema", "show", *topo.args()]) == 1
    capsys.readouterr()


# -- the lookup vindexes' SQL on a real Postgres -----------------------------------------------


class AsyncpgVCursor:
    """A VCursor over one Postgres (one shard): the statements run as the lookup sends them."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    async def execute(
        self, tablegroup: str, target: Any, sql: str, params: Any
    ) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return [tuple(r) for r in await self.conn.fetch(sql, *params)]


@pytest.fixture(scope="module")
def lookup_pg(pg_harness: Any) -> Any:
    inst = pg_harness.primary("vschema-lookup")
    with inst.connect() as conn:
        conn.execute(
            "CREATE TABLE customer_email_idx (email text PRIMARY KEY, keyspace_id bytea NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE order_line_sku_idx (sku text, order_line_id bigint,"
            " keyspace_id bytea NOT NULL, PRIMARY KEY (sku, order_line_id))"
        )
    return inst.endpoint()


def test_lookup_sql_runs_on_postgres(lookup_pg: Any) -> None:
    import asyncpg

    from multigres.vschema.model import VSchema
    from multigres.vschema.vindexes import LookupUniqueVindex, LookupVindex

    vs = VSchema.parse(example())
    email = vs.vindex("customer_email_lookup")
    sku = vs.vindex("order_sku_lookup")
    assert isinstance(email, LookupUniqueVindex) and isinstance(sku, LookupVindex)
    k1, k2 = vs.vindexes["hash"].map([1, 2])  # type: ignore[attr-defined]

    async def go() -> None:
        conn = await asyncpg.connect(
            host=lookup_pg.host, port=lookup_pg.port, user=lookup_pg.user,
            password=lookup_pg.password, database="postgres",
        )
        try:
            cur = AsyncpgVCursor(conn)
            await email.create(cur, [["a@x"], ["b@x"]], [k1, k2])
            assert await email.map(cur, ["a@x", "b@x", "c@x", None]) == [k1, k2, None, None]
            assert await email.verify(cur, ["a@x", "a@x"], [k1, k2]) == [True, False]
            with pytest.raises(asyncpg.UniqueViolationError):
                await email.create(cur, [["a@x"]], [k2])
            await email.create(cur, [["a@x"]], [k2], ignore_conflicts=True)
            await email.update(cur, ["a@x"], k1, ["z@x"])
            assert await email.map(cur, ["a@x", "z@x"]) == [None, k1]
            await email.delete(cur, [["z@x"]], k1)
            assert await email.map(cur, ["z@x"]) == [None]

            await sku.create(cur, [["s1", 10], ["s1", 11], ["s2", 12]], [k1, k2, k2])
            found = await sku.map(cur, ["s1", "s2", "s3"])
            assert [sorted(d) for d in found] == [sorted([k1, k2]), [k2], []]  # type: ignore[arg-type]
            await sku.delete(cur, [["s1", 10]], k1)
            assert await sku.map(cur, ["s1"]) == [(k2,)]
            assert all("$1" in s for s in cur.statements)
        finally:
            await conn.close()

    asyncio.run(go())
