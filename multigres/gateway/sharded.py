"""A session's side of a sharded database: its connections to the shards the engine uses,
the transaction across them, and the VCursor the engine runs on.

The session keeps forwarding the bytes of statements that run unchanged on the database's
unsharded tablegroup (plans with ``passthrough``) to that tablegroup's pooler, as for an
unsharded database. A statement the engine runs goes through here:

- Connections to other shards' poolers are opened on first use (logged in as the session's
  user, with its replayable SETs run first) and kept for the session's life.
- Transactions (mode MULTI, the default): inside the client's transaction, the first
  statement on a shard begins a transaction there with the client's own BEGIN text. COMMIT
  commits the shards one by one in the order they joined, then the unsharded tablegroup
  (the session forwards the client's COMMIT). A shard whose commit fails (a deferred
  constraint, a lost connection) does not stop the others: the client gets a WARNING
  (SQLSTATE 40003) naming the shards that committed and those that did not, then its COMMIT's
  answer. Mode SINGLE (``SET multigres.transaction_mode = single``): a transaction that
  would touch a second shard fails instead. Atomic commit (2PC) comes later.
- Outside a transaction, a write the engine sends to shards runs in a transaction of its own
  on every shard it touches, committed as above (a partial commit is then the statement's
  error, 40003, naming the shards); a read runs without one.
- An error inside the transaction leaves the client in a failed transaction (25P02 for the
  next statements) until ROLLBACK, as on Postgres.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from multigres._cy.gatecore import ShardTable
from multigres.gateway.engine.result import Result
from multigres.gateway.engine.sequence import SequenceAllocator
from multigres.gateway.engine.vcursor import ShardQuery
from multigres.gateway.shardconn import ShardConn
from multigres.gateway.upstream import Upstream
from multigres.sql.normalize import TxVerb
from multigres.vschema.shardmap import ShardMap
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

# Opens a logged-in pooler connection for (tablegroup, shard), with the session's state.
OpenShard = Callable[[str, str], Awaitable[Upstream]]
# The serving shard names of a tablegroup.
ShardNames = Callable[[str], list[str]]
# The session's own connection to the unsharded tablegroup, lent to the engine while it runs a
# statement (None: the session has none right now), and how to give it back.
Borrow = Callable[[], Upstream | None]
GiveBack = Callable[[Upstream], None]

MULTI, SINGLE = "multi", "single"


class ShardedState:
    """The engine's VCursor for one session (and ``sequences``, the gateway's allocator for
    the database).

    The unsharded tablegroup (``unsharded``: its (tablegroup, "0")) is reached through the
    session's own pooler connection, lent for the statement (``borrow``): what the engine
    reads or writes there is in the same transaction as the statements the session forwards
    there, as on one Postgres."""

    def __init__(self, open_shard: OpenShard, shard_names: ShardNames,
                 sequences: SequenceAllocator, unsharded: tuple[str, str] | None = None,
                 borrow: Borrow | None = None, give_back: GiveBack | None = None,
                 tables: dict[str, ShardTable] | None = None) -> None:
        self._open = open_shard
        self._names = shard_names
        self.sequences = sequences
        self.unsharded = unsharded
        self._borrow = borrow
        self._give_back = give_back
        self._lent: ShardConn | None = None
        self.conns: dict[tuple[str, str], ShardConn] = {}
        # The session's ShardTables (gatecore): the shard connections the C path routes to.
        self.tables = tables if tables is not None else {}
        self._opening: dict[tuple[str, str], asyncio.Future[ShardConn]] = {}
        self._maps: dict[tuple[str, ...], ShardMap] = {}
        self.begin_sql: str | None = None  # the client's transaction is open (its BEGIN)
        self.implicit = False  # a transaction of our own for one write outside the client's
        self.failed = False
        self.mode = MULTI
        self.touched: list[tuple[str, str]] = []  # shards in the transaction, in order
        # The transaction's savepoints in effect, oldest first: (name, the client's SQL).
        # A shard that joins later makes them too, so ROLLBACK TO undoes its work as well.
        self.savepoints: list[tuple[str, str]] = []

    # -- VCursor ------------------------------------------------------------------------------

    def shard_map(self, tablegroup: str) -> ShardMap:
        names = tuple(self._names(tablegroup))
        m = self._maps.get(names)
        if m is None:
            if not names:
                raise PgError(f"tablegroup {tablegroup!r} has no serving shards",
                              codes.CONNECTION_FAILURE)
            m = self._maps[names] = ShardMap(names)
            if (tablegroup, names[0]) != self.unsharded:
                table = ShardTable(m.names, [r.start for r in m.ranges])
                for i, name in enumerate(m.names):
                    table.conns[i] = self.conns.get((tablegroup, name))
                self.tables[tablegroup] = table
        return m

    async def execute(self, queries: Sequence[ShardQuery]) -> list[Result]:
        by_conn: dict[tuple[str, str], list[int]] = {}
        for i, q in enumerate(queries):
            by_conn.setdefault((q.tablegroup, q.shard), []).append(i)
        both = sorted(set(self.touched) | set(by_conn))
        if self.mode == SINGLE and self.begin_sql is not None and len(both) > 1:
            raise PgError("this transaction would touch more than one shard "
                          f"({', '.join(f'{tg}/{s}' for tg, s in both)}), "
                          "which transaction mode SINGLE does not allow",
                          codes.FEATURE_NOT_SUPPORTED,
                          hint="SET multigres.transaction_mode = multi, or split the transaction")
        results: list[Result | None] = [None] * len(queries)
        errors: list[tuple[int, BaseException]] = []

        async def run(key: tuple[str, str], idx: list[int]) -> None:
            try:
                conn = await self._conn(key)
                if conn is self._lent and self.begin_sql is not None:
                    pass  # the session's own connection: already in the client's transaction
                elif self._in_tx() and not conn.in_tx:
                    await conn.query(self.begin_sql or "BEGIN")
                    conn.in_tx = True
                    self.touched.append(key)
                    for _name, sql in self.savepoints:
                        await conn.query(sql)
                for i in idx:
                    results[i] = await conn.query(queries[i].sql)
            except BaseException as e:  # reported once all have finished
                errors.append((idx[0], e))

        await asyncio.gather(*(run(k, idx) for k, idx in by_conn.items()))
        if errors:
            errors.sort(key=lambda e: e[0])
            raise errors[0][1]
        return [r for r in results if r is not None]

    # -- transactions ---------------------------------------------------------------------------

    def _in_tx(self) -> bool:
        return self.begin_sql is not None or self.implicit

    def begin(self, sql: str) -> None:
        self.begin_sql = sql
        self.failed = False
        self.savepoints = []

    def savepoints_note(self, verb: TxVerb, name: str, sql: str) -> None:
        """The stack after a savepoint statement (alone: one before any shard joined, which
        only the unsharded tablegroup runs). RELEASE drops the savepoint and the later ones;
        ROLLBACK TO keeps it."""
        if verb == TxVerb.SAVEPOINT:
            self.savepoints.append((name, sql))
            return
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i][0] == name:
                del self.savepoints[i + (verb == TxVerb.ROLLBACK_TO):]
                break

    async def savepoint(self, verb: TxVerb, name: str, sql: str) -> None:
        """SAVEPOINT / RELEASE / ROLLBACK TO on every shard in the transaction (the session
        sends the client's statement to the unsharded tablegroup after), and the stack kept
        for shards that join later."""
        for key in self.touched:
            conn = self._lent if key == self.unsharded and self._lent else self.conns.get(key)
            if conn is not None and conn.in_tx:
                await conn.query(sql)
        self.savepoints_note(verb, name, sql)
        if verb == TxVerb.ROLLBACK_TO:
            self.failed = False

    async def finish(self, commit: bool) -> PgError | None:
        """End the transaction on every shard it touched, one by one in the order they
        joined (mode MULTI). A shard whose COMMIT fails does not stop the others. Returns
        None, or a PgError (SQLSTATE 40003) naming the shards that committed and those that
        did not: the caller sends it as a WARNING with the client's COMMIT, or as the error
        of a write that ran in a transaction of its own."""
        touched, self.touched = self.touched, []
        self.begin_sql = None
        self.implicit = False
        self.savepoints = []
        failed, self.failed = self.failed, False
        commit = commit and not failed
        done: list[tuple[str, str]] = []
        lost: list[tuple[tuple[str, str], PgError]] = []
        for key in touched:
            conn = self._lent if key == self.unsharded and self._lent else self.conns.get(key)
            if conn is None or not conn.in_tx:
                continue
            conn.in_tx = False
            try:
                await conn.query("COMMIT" if commit else "ROLLBACK")
            except PgError as e:
                if commit:
                    lost.append((key, e))
                continue  # (a lost connection has nothing left to roll back)
            done.append(key)
        if not lost:
            return None
        names = ", ".join(f"{tg}/{s}" for tg, s in done) or "none"
        failed_on = "; ".join(f"{tg}/{s}: {e.message}" for (tg, s), e in lost)
        return PgError(
            f"the transaction committed on shards {names} but not on {failed_on}",
            codes.STATEMENT_COMPLETION_UNKNOWN,
            detail="transaction mode MULTI commits each shard in turn; atomic commit "
                   "across shards needs two-phase commit",
            hint="check the rows of the shards that did not commit")

    def give_back(self) -> None:
        """The statement is done: the session takes its connection back."""
        lent, self._lent = self._lent, None
        if lent is not None and self._give_back is not None:
            self._give_back(lent.up)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        self.tables.clear()

    def _untable(self, conn: ShardConn) -> None:
        table = self.tables.get(conn.tablegroup)
        if table is not None and conn in table.conns:
            table.conns[table.conns.index(conn)] = None

    def conn_of(self, up: Upstream) -> ShardConn | None:
        """The shard connection over ``up``, if any."""
        for conn in self.conns.values():
            if conn.up is up:
                return conn
        return None

    # -- connections ----------------------------------------------------------------------------

    async def _conn(self, key: tuple[str, str]) -> ShardConn:
        if key == self.unsharded and self._borrow is not None:
            if self._lent is None or self._lent.closed:
                up = self._borrow()
                if up is None:
                    raise PgError("the session has no connection to the unsharded tablegroup "
                                  "right now", codes.CONNECTION_FAILURE)
                self._lent = ShardConn(up, *key)
            return self._lent
        conn = self.conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        if conn is not None:  # lost: a transaction on it is gone
            del self.conns[key]
            self._untable(conn)
            if conn.in_tx:
                raise PgError(f"the connection to shard {key[0]}/{key[1]} was lost; the "
                              "transaction was rolled back there", codes.CONNECTION_FAILURE)
        fut = self._opening.get(key)
        if fut is None:
            fut = self._opening[key] = asyncio.get_running_loop().create_future()
            try:
                up = await self._open(*key)
                conn = ShardConn(up, *key)
                self.conns[key] = conn
                table = self.tables.get(key[0])
                if table is not None and key[1] in table.names:
                    table.conns[table.names.index(key[1])] = conn
                fut.set_result(conn)
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # retrieved: the waiters (if any) get it too
                raise
            finally:
                del self._opening[key]
            return conn
        return await fut
