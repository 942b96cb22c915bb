"""Type stub for multigres._cy.gatecore (pyx/gatecore.pyx): the gateway session's
per-read-event path, which session.py's Session and upstream.py's Upstream subclass."""

import asyncio
from typing import Any

from multigres._cy.buffer import ReadBuffer
from multigres._cy.relay import FastProtocol

STARTUP: int
AUTH: int
CONNECTING: int
READY: int
CLOSED: int

DIRECT_HASH: int
DIRECT_NUMERIC: int

class DirectRoute:
    tablegroup: str
    param: int
    kind: int
    def __init__(self, tablegroup: str, param: int, kind: int) -> None: ...

class ShardTable:
    n: int
    names: list[str]
    conns: list[Any]
    def __init__(self, names: list[str], starts: list[bytes]) -> None: ...
    def shard_for(self, ksid: bytes) -> str: ...

class GateCounters:
    generation: int
    statements: int
    direct: int
    def __init__(self) -> None: ...

class UpstreamCore(FastProtocol):
    transport: asyncio.Transport | None
    sink: Any
    closed: bool
    def write(self, data: bytes) -> None: ...

class SessionCore(FastProtocol):
    server: Any
    transport: asyncio.Transport | None
    counters: GateCounters
    plans: Any
    database: str
    # The session's Upstream (an UpstreamCore subclass, upstream.py) or None.
    upstream: Any
    rbuf: ReadBuffer
    urbuf: ReadBuffer
    state: int
    tx_status: int
    busy: bool
    failed_tx: bool
    retrying: bool
    divert: bool
    watch_answers: bool
    slow_client: bool
    direct_plans: Any
    shard_tables: dict[str, ShardTable]
    direct_up: Any
    pending_error: Any
    awaiting_set: bytes | None
    retry_batch: bytes | None
    in_flight: int
    generation: int
    retry_since: float
    def data_received(self, data: bytes) -> None: ...
    def send(self, data: bytes) -> None: ...
    def upstream_data(self, up: UpstreamCore, data: bytes) -> None: ...
