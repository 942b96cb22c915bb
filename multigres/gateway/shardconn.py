"""A session's connection to one shard's pooler, as the engine uses it: one statement at a
time (a simple Query), its answer collected into a Result.

The session forwards bytes to its unsharded tablegroup's pooler; for the other shards the
engine needs answers as values (rows to merge, counts to add), so the bytes are framed here:
RowDescription gives the fields, DataRows are kept as their payloads (never decoded unless a
merge reads a key column), CommandComplete the tag, notices are kept in order, an
ErrorResponse becomes the PgError the query raises (with every field the shard sent), and
ReadyForQuery ends the statement and says the transaction status.
"""

from __future__ import annotations

import asyncio
from collections import deque

from multigres._cy.buffer import ReadBuffer, build_message
from multigres.gateway.engine.result import Result, parse_row_description
from multigres.gateway.upstream import Upstream
from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError
from multigres.wire.protocol import build_query

_T, _D, _C, _N, _E, _Z, _I, _G, _H, _f = (ord(c) for c in "TDCNEZIGHf")


class _Pending:
    __slots__ = ("error", "future", "result")

    def __init__(self, future: asyncio.Future[Result]) -> None:
        self.future = future
        self.result = Result()
        self.error: PgError | None = None


class ShardConn:
    def __init__(self, up: Upstream, tablegroup: str, shard: str) -> None:
        self.up = up
        self.tablegroup = tablegroup
        self.shard = shard
        self.rb = ReadBuffer()
        self.pending: deque[_Pending] = deque()
        self.tx_status = _I
        self.in_tx = False  # a transaction the session began here is open
        self.closed = False
        rest = up.attach(self)
        if rest:
            self.upstream_data(up, rest)

    def __repr__(self) -> str:
        return f"<ShardConn {self.tablegroup}/{self.shard} via {self.up.pooler_id}>"

    async def query(self, sql: str) -> Result:
        """Run one statement; PgError if the shard answered with an error (or was lost:
        SQLSTATE 08006)."""
        if self.closed:
            raise self._lost_error()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(fut))
        # The session's C path may have sent a statement here directly and taken the answers
        # (it leaves itself as the sink); the engine's statements are framed here again.
        self.up.sink = self
        self.up.write(build_query(sql))
        return await fut

    def close(self) -> None:
        self.closed = True
        self.up.close()
        self._fail_all()

    # -- the pooler's answers -------------------------------------------------------------------

    def upstream_data(self, up: Upstream, data: bytes) -> None:
        rb = self.rb
        rb.feed_data(data)
        while rb.take_message():
            t = rb.get_message_type()
            p = self.pending[0] if self.pending else None
            if t == _D:
                if p is not None:
                    p.result.rows.append(rb.consume_message())
                else:
                    rb.discard_message()
            elif t == _Z:
                self.tx_status = rb.read_byte()
                rb.discard_message()
                if p is not None:
                    self.pending.popleft()
                    if not p.future.done():
                        if p.error is not None:
                            p.future.set_exception(p.error)
                        else:
                            p.future.set_result(p.result)
            elif t == _T:
                if p is not None:
                    p.result.fields = parse_row_description(rb.consume_message())
                else:
                    rb.discard_message()
            elif t == _C:
                if p is not None:
                    p.result.tag = rb.consume_message().rstrip(b"\0")
                else:
                    rb.discard_message()
            elif t == _E:
                err = PgError.from_payload(rb.consume_message())
                if p is not None and p.error is None:
                    p.error = err
            elif t == _N:
                if p is not None:
                    p.result.notices.append(rb.consume_message())
                else:
                    rb.discard_message()
            elif t in (_G, _H):
                # COPY is not something the engine sends; refuse rather than hang.
                rb.discard_message()
                self.up.write(build_message(_f, b"COPY is not supported through the engine\0"))
            else:  # ParameterStatus, NotificationResponse, EmptyQueryResponse, ...
                rb.discard_message()

    def upstream_lost(self, up: Upstream, exc: Exception | None) -> None:
        self.closed = True
        self._fail_all()

    def _lost_error(self) -> PgError:
        return PgError(f"the connection to shard {self.tablegroup}/{self.shard} (pooler "
                       f"{self.up.pooler_id}) was lost", codes.CONNECTION_FAILURE)

    def _fail_all(self) -> None:
        while self.pending:
            p = self.pending.popleft()
            if not p.future.done():
                p.future.set_exception(self._lost_error())
