"""Clients people use, through a pool of 2 shared by the tests: psycopg (COPY, server-side
cursors, pipeline mode), SQLAlchemy's ORM, asyncpg, psql and pgbench."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from multigres.testing.pooler import PoolerProcess

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def items(direct: psycopg.Connection[Any]) -> Any:
    direct.execute("DROP TABLE IF EXISTS compat_items")
    direct.execute("CREATE TABLE compat_items (id int PRIMARY KEY, name text, data bytea)")
    yield "compat_items"
    direct.execute("DROP TABLE compat_items")


# -- psycopg ----------------------------------------------------------------------------------


def test_psycopg_copy_in_and_out(pooler: PoolerProcess, items: str) -> None:
    rows = [(i, f"name {i}\twith tab", bytes([i % 256]) * 50) for i in range(5000)]
    with pooler.connect() as conn, pooler.connect() as other:
        with conn.cursor() as cur, cur.copy(
                "COPY compat_items (id, name, data) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        with conn.cursor(binary=True) as cur, cur.copy(
                "COPY compat_items (id, name, data) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "bytea"])
            for i, name, data in rows[:100]:
                copy.write_row((i + 10000, name, data))
        with other.cursor() as cur:
            assert cur.execute("SELECT count(*) FROM compat_items").fetchone() == (5100,)
        out: list[tuple[Any, ...]] = []
        with conn.cursor() as cur, cur.copy(
                "COPY (SELECT id, name, data FROM compat_items WHERE id < 10000 ORDER BY id)"
                " TO STDOUT") as copy:
            copy.set_types(["int4", "text", "bytea"])
            out.extend(copy.rows())
        assert out == rows
        # A COPY that fails half way leaves the session usable.
        with pytest.raises(errors.InvalidTextRepresentation):
            with conn.cursor() as cur, cur.copy("COPY compat_items (id) FROM STDIN") as copy:
                copy.write(b"1\nnot a number\n")
        assert conn.execute("SELECT count(*) FROM compat_items").fetchone() == (5100,)
        # COPY inside a transaction, rolled back.
        with pytest.raises(RuntimeError), conn.transaction():
            with conn.cursor() as cur, cur.copy("COPY compat_items (id) FROM STDIN") as copy:
                copy.write_row((99999,))
            raise RuntimeError("roll back")
        assert other.execute("SELECT count(*) FROM compat_items").fetchone() == (5100,)


def test_psycopg_server_side_cursors(pooler: PoolerProcess, items: str) -> None:
    with pooler.connect() as conn:
        conn.execute("INSERT INTO compat_items SELECT g, 'n' || g FROM generate_series(1, 1000) g")
        with conn.transaction(), conn.cursor("named") as cur:
            cur.itersize = 100
            cur.execute("SELECT id FROM compat_items ORDER BY id")
            assert [r[0] for r in cur] == list(range(1, 1001))
        # A WITH HOLD cursor lives past its transaction (and holds the backend) until closed.
        with conn.cursor("held", withhold=True) as cur:
            cur.execute("SELECT id FROM compat_items ORDER BY id")
            first = cur.fetchmany(10)
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()
            rest = cur.fetchall()
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid
        assert [r[0] for r in first + rest] == list(range(1, 1001))
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


def test_psycopg_pipeline_mode(pooler: PoolerProcess, items: str) -> None:
    with pooler.connect() as conn:
        with conn.pipeline():
            conn.execute("INSERT INTO compat_items (id, name) VALUES (%s, %s)", (1, "a"))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO compat_items (id, name) VALUES (%s, %s)",
                                [(i, f"n{i}") for i in range(2, 200)])
            c = conn.execute("SELECT count(*) FROM compat_items")
            conn.execute("SELECT pg_sleep(0.01)")
            d = conn.execute("SELECT name FROM compat_items WHERE id = %s", (150,))
        assert c.fetchone() == (199,)
        assert d.fetchone() == ("n150",)
        with conn.transaction(), conn.pipeline():
            for i in range(200, 220):
                conn.execute("INSERT INTO compat_items (id) VALUES (%s)", (i,))
        assert conn.execute("SELECT count(*) FROM compat_items").fetchone() == (219,)


# -- SQLAlchemy -------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "sa_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def test_sqlalchemy_orm_round_trip(pooler: PoolerProcess) -> None:
    url = pooler.dsn().replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url, pool_size=4)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)

        def work(n: int) -> None:
            with Session(engine) as session:
                author = Author(name=f"author {n}")
                author.books = [Book(title=f"book {n}.{i}") for i in range(5)]
                session.add(author)
                session.commit()
                got = session.scalars(select(Author).where(Author.name == f"author {n}")).one()
                assert sorted(b.title for b in got.books) == [f"book {n}.{i}" for i in range(5)]
                got.name = f"renamed {n}"
                session.commit()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Book)) == 20
            names = sorted(session.scalars(select(Author.name)))
            assert names == [f"renamed {n}" for n in range(4)]
            session.delete(session.scalars(select(Book)).first())
            session.rollback()
            assert session.scalar(select(func.count()).select_from(Book)) == 20
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


# -- asyncpg ----------------------------------------------------------------------------------


async def test_asyncpg_round_trip(pooler: PoolerProcess, items: str) -> None:
    import asyncpg

    async def client(n: int) -> None:
        conn = await asyncpg.connect(pooler.dsn())
        try:
            assert await conn.fetchval("SELECT 1") == 1
            stmt = await conn.prepare("SELECT $1::int + $2::int")
            assert await stmt.fetchval(n, 1) == n + 1
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO compat_items (id, name) VALUES ($1, $2)",
                    [(n * 100 + i, f"a{i}") for i in range(20)])
                async for row in conn.cursor(
                        "SELECT id FROM compat_items WHERE id >= $1 AND id < $2", n * 100,
                        n * 100 + 20):
                    assert n * 100 <= row["id"] < n * 100 + 20
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO compat_items (id) VALUES ($1)", n * 100)
            await conn.copy_records_to_table(
                "compat_items", records=[(n * 100 + 50, "copied", b"x")],
                columns=["id", "name", "data"])
            rows = await conn.fetch("SELECT id, name FROM compat_items WHERE id / 100 = $1"
                                    " ORDER BY id", n)
            assert len(rows) == 21 and rows[-1]["name"] == "copied"
        finally:
            await conn.close()

    await asyncio.gather(*(client(n) for n in range(1, 5)))


# -- psql and pgbench -------------------------------------------------------------------------

PSQL_SCRIPT = r"""
\set ON_ERROR_STOP 1
\set n 3
CREATE TABLE psql_t (id int, v text);
BEGIN;
INSERT INTO psql_t SELECT g, 'row ' || g FROM generate_series(1, :n) g;
COMMIT;
COPY psql_t FROM STDIN;
10	ten
11	eleven
\.
BEGIN;
INSERT INTO psql_t VALUES (99, 'rolled back');
ROLLBACK;
SET application_name = 'psql script';
SELECT count(*) AS rows, current_setting('application_name') AS app FROM psql_t
\gset
\echo rows=:rows app=:app
SELECT string_agg(v, ',' ORDER BY id) FROM psql_t;
DROP TABLE psql_t;
\lo_import :lofile
\set lo :LASTOID
SELECT length(lo_get(:lo));
\lo_unlink :lo
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PGPASSWORD="postgres", PGCONNECT_TIMEOUT="10")


def test_psql_script(pooler: PoolerProcess, tmp_path: Path) -> None:
    script = tmp_path / "script.sql"
    script.write_text(PSQL_SCRIPT)
    # A large object: psql imports it with fastpath function calls, in a transaction.
    lofile = tmp_path / "blob.bin"
    lofile.write_bytes(os.urandom(300_000))
    out = subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-q", "-At", "-h", pooler.host, "-p", str(pooler.port),
         "-U", "postgres", "-d", "postgres", "-v", f"lofile={lofile}", "-f", str(script)],
        capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "rows=5 app=psql script", "row 1,row 2,row 3,ten,eleven", "300000"]


def test_pgbench(pooler: PoolerProcess) -> None:
    common = ["-h", pooler.host, "-p", str(pooler.port), "-U", "postgres"]
    init = subprocess.run([str(PG_BIN / "pgbench"), "-i", "-s", "1", "-q", *common, "postgres"],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert init.returncode == 0, init.stderr
    for mode in (["-S", "-M", "prepared", "-t", "200"], ["-N", "-M", "extended", "-t", "50"],
                 ["-S", "-M", "simple", "-t", "100", "-C"]):
        run = subprocess.run(
            [str(PG_BIN / "pgbench"), "-n", "-c", "4", "-j", "2", *mode, *common, "postgres"],
            capture_output=True, text=True, timeout=120, env=_env())
        assert run.returncode == 0, run.stdout + run.stderr
        assert "number of failed transactions: 0" in run.stdout, run.stdout
        processed = [line for line in run.stdout.splitlines()
                     if "number of transactions actually processed" in line]
        assert processed and processed[0].split(":")[1].strip().startswith(
            str(4 * int(mode[mode.index("-t") + 1]))), run.stdout
