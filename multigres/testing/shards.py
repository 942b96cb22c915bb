"""Sharded databases for tests: one real Postgres, one database per shard, and a reference.

``ShardedDatabases`` creates, on one running Postgres (``multigres.testing.postgres``), a
database for each shard of each tablegroup of a layout (``{"commerce": ["-80", "80-"],
"main": ["0"]}`` gives ``<prefix>_commerce__80``, ``<prefix>_commerce_80_``,
``<prefix>_main_0``) and one reference database (``<prefix>_ref``) that holds every row in
one place. ``load`` creates the schema everywhere and puts each row where the VSchema says:
a sharded table's row on the shard its primary vindex maps it to, a reference table's rows
on every shard of its tablegroup, an unsharded table's rows in its tablegroup's database;
and every row in the reference database. Databases are created with the C collation (as
the planner assumes by default) and dropped by ``drop``.

``ShardVCursor`` is the engine's VCursor over these databases: ``PgClient``, a small asyncio
client on our own protocol codec, sends each statement as a simple Query and keeps what
Postgres answers as the engine wants it: RowDescription fields, raw DataRow payloads,
CommandComplete's tag (psycopg cannot hand over raw DataRows). The same client runs the
statement on the reference database, so results compare byte for byte.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from multigres.gateway.engine.result import Result, parse_row_description
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.pgctld.instance import Endpoint
from multigres.vschema.model import VSchema
from multigres.vschema.shardmap import ShardMap
from multigres.vschema.vindexes.base import FunctionalVindex
from multigres.wire.auth import ClientAuthExchange, parse_auth_request
from multigres.wire.errors import PgError

_HEADER = struct.Struct("!ci")


class PgClient:
    """A minimal asyncio Postgres client: simple queries, results as raw DataRows."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.lock = asyncio.Lock()  # one statement at a time on the connection

    @classmethod
    async def connect(cls, ep: Endpoint, database: str) -> PgClient:
        reader, writer = await asyncio.open_connection(ep.host, ep.port)
        c = cls(reader, writer)
        body = struct.pack("!i", 196608)
        for k, v in (("user", ep.user), ("database", database), ("client_encoding", "UTF8")):
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        writer.write(struct.pack("!i", len(body) + 4) + body)
        auth = ClientAuthExchange(ep.user, password=ep.password)
        while True:
            t, payload = await c._recv()
            if t == b"R":
                answer = auth.feed(parse_auth_request(payload))
                if answer is not None:
                    writer.write(b"p" + struct.pack("!i", len(answer) + 4) + answer)
            elif t == b"E":
                raise PgError.from_payload(payload)
            elif t == b"Z":
                return c

    async def _recv(self) -> tuple[bytes, bytes]:
        buf = self.buf
        while True:
            if len(buf) >= 5:
                t, n = _HEADER.unpack_from(buf, 0)
                if len(buf) >= n + 1:
                    payload = bytes(buf[5:n + 1])
                    del buf[:n + 1]
                    return t, payload
            chunk = await self.reader.read(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk

    async def query(self, sql: str) -> Result:
        """Run one statement; PgError (with the server's fields) if it fails."""
        async with self.lock:
            return await self._query(sql)

    async def _query(self, sql: str) -> Result:
        data = sql.encode("utf-8", "surrogateescape") + b"\0"
        self.writer.write(b"Q" + struct.pack("!i", len(data) + 4) + data)
        result = Result()
        error: PgError | None = None
        rows = result.rows
        while True:
            t, payload = await self._recv()
            if t == b"D":
                rows.append(payload)
            elif t == b"T":
                result.fields = parse_row_description(payload)
            elif t == b"C":
                result.tag = payload.rstrip(b"\0")
            elif t == b"E":
                error = PgError.from_payload(payload)
            elif t == b"N":
                result.notices.append(payload)
            elif t == b"Z":
                break
        if error is not None:
            raise error
        return result

    async def close(self) -> None:
        try:
            self.writer.write(b"X\0\0\0\4")
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


@dataclass(eq=False)
class ShardVCursor:
    """The engine's VCursor over one client per shard database."""

    clients: dict[tuple[str, str], PgClient]
    maps: dict[str, ShardMap]
    log: list[ShardQuery] = field(default_factory=list)
    record: bool = False

    def shard_map(self, tablegroup: str) -> ShardMap:
        return self.maps[tablegroup]

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        if self.record:
            self.log.extend(queries)
        by_shard: dict[tuple[str, str], list[int]] = {}
        for i, q in enumerate(queries):
            by_shard.setdefault((q.tablegroup, q.shard), []).append(i)
        results: list[Result | BaseException | None] = [None] * len(queries)

        async def run(key: tuple[str, str], idx: list[int]) -> None:
            client = self.clients[key]
            for i in idx:
                try:
                    results[i] = await client.query(queries[i].sql)
                except PgError as e:
                    results[i] = e

        if len(by_shard) == 1:
            key, idx = next(iter(by_shard.items()))
            await run(key, idx)
        else:
            await asyncio.gather(*(run(k, v) for k, v in by_shard.items()))
        out: list[Result] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            assert r is not None
            out.append(r)
        return out

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


def _db_part(text: str) -> str:
    return text.replace("-", "_")


class ShardedDatabases:
    """Shard databases (and a reference database) of a layout on one Postgres."""

    def __init__(self, endpoint: Endpoint, layout: Mapping[str, Sequence[str]],
                 prefix: str = "mg") -> None:
        self.endpoint = endpoint
        self.layout = {tg: list(shards) for tg, shards in layout.items()}
        self.prefix = prefix
        self.maps = {tg: ShardMap(shards) for tg, shards in self.layout.items()}

    def database(self, tablegroup: str, shard: str) -> str:
        return f"{self.prefix}_{tablegroup}_{_db_part(shard)}"

    @property
    def reference_database(self) -> str:
        return f"{self.prefix}_ref"

    def databases(self) -> list[str]:
        out = [self.database(tg, s) for tg, shards in self.layout.items() for s in shards]
        return [*out, self.reference_database]

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.endpoint.conninfo("postgres"), autocommit=True)

    def create(self) -> None:
        with self._admin() as conn:
            for db in self.databases():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
                conn.execute(
                    f'CREATE DATABASE "{db}" TEMPLATE template0 ENCODING \'UTF8\' '
                    "LC_COLLATE 'C' LC_CTYPE 'C'"
                )

    def drop(self) -> None:
        with self._admin() as conn:
            for db in self.databases():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def placement(self, vs: VSchema, table: str, rows: Iterable[Sequence[Any]],
                  columns: Sequence[str]) -> dict[tuple[str, str], list[Sequence[Any]]]:
        """Which shard database gets each row of a table."""
        t = vs.table(table)
        assert t is not None, table
        tg = t.tablegroup.name
        rows = list(rows)
        if not t.sharded:
            shards = self.layout[tg] if t.reference else self.layout[tg][:1]
            return {(tg, s): rows for s in shards}
        pv = t.primary_vindex
        assert pv is not None and isinstance(pv.vindex, FunctionalVindex)
        pos = columns.index(pv.column)
        ids = pv.vindex.map([r[pos] for r in rows])
        out: dict[tuple[str, str], list[Sequence[Any]]] = {(tg, s): [] for s in self.layout[tg]}
        for r, ksid in zip(rows, ids, strict=True):
            assert ksid is not None
            out[(tg, self.maps[tg].shard_for(ksid))].append(r)
        return out

    def load(self, vs: VSchema, ddl: str,
             data: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]]) -> None:
        """Create the schema in every database and place the rows (table -> (columns, rows))."""
        per_db: dict[str, list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]]] = {}
        for table, (columns, rows) in data.items():
            for (tg, shard), part in self.placement(vs, table, rows, columns).items():
                per_db.setdefault(self.database(tg, shard), []).append((table, columns, part))
            per_db.setdefault(self.reference_database, []).append((table, columns, rows))
        for db in self.databases():
            with psycopg.connect(self.endpoint.conninfo(db), autocommit=True) as conn:
                conn.execute(ddl)
                for table, columns, rows in per_db.get(db, []):
                    if not rows:
                        continue
                    cols = ", ".join(f'"{c}"' for c in columns)
                    with conn.cursor() as cur, cur.copy(
                        f'COPY "{table}" ({cols}) FROM STDIN'
                    ) as cp:
                        for r in rows:
                            cp.write_row(r)
                conn.execute("ANALYZE")

    async def vcursor(self) -> ShardVCursor:
        clients = {}
        for tg, shards in self.layout.items():
            for s in shards:
                clients[(tg, s)] = await PgClient.connect(self.endpoint, self.database(tg, s))
        return ShardVCursor(clients, dict(self.maps))

    async def reference(self) -> PgClient:
        return await PgClient.connect(self.endpoint, self.reference_database)
