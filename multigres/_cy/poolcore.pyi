"""Type stub for the compiled module multigres._cy.poolcore (pyx/poolcore.pyx): the pooler's
per-message state and paths, which client.py, backend.py and pool.py subclass."""

from collections import deque
from typing import Any

from multigres._cy.buffer import ReadBuffer, WriteBuffer

STARTUP: int
AUTH: int
LOGIN: int
READY: int
CLOSED: int
NO_EFFECTS: list[Any]

def may_have_effects_bytes(sql: bytes) -> bool: ...
def plain_begin(sql: bytes) -> int: ...

class Histogram:
    bounds: tuple[float, ...]
    sum: float
    @property
    def counts(self) -> list[int]: ...
    def __init__(self, bounds: tuple[float, ...]) -> None: ...
    def observe(self, value: float) -> None: ...
    @property
    def count(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...

class PoolCore:
    user: str
    database: str
    size: int
    _connector: Any
    wait_timeout: float
    lifetime: float
    idle_timeout: float
    query_timeout: float
    defer_begin: bool
    idle_transaction_timeout: float
    idle: dict[Any, None]
    active: set[Any]
    connecting: int
    waiters: deque[tuple[Any, float]]
    _wait_timer: Any
    paused: bool
    total_waits: int
    connect_errors: int
    total_wait_time: float
    max_wait: float
    def total(self) -> int: ...
    def acquire(self, waiter: Any, prefer: Any = None) -> Any: ...
    def release(self, backend: Any) -> None: ...
    def _dispatch(self) -> None: ...
    def _enqueue(self, waiter: Any) -> None: ...

class BackendCore:
    pool: Any
    transport: Any
    auth: Any
    startup_params: dict[str, str]
    ready: Any
    rbuf: ReadBuffer
    out: WriteBuffer
    connected: bool
    closed: bool
    pid: int
    key: int
    params: dict[str, str]
    settings: dict[str, str]
    synced_with: tuple[int, int]
    prepared: set[str]
    confirmed: set[str]
    client: Any
    created_at: float
    last_used: float
    tx_status: int
    pending: int
    syncs_sent: int
    syncs_done: int
    _seq: int
    parses: deque[Any]
    closes: deque[Any]
    dropping: deque[tuple[int, str]]
    error_in_batch: bool
    copy: bool
    injecting: bool
    begin_injected: bool
    def start_inject(self, held: list[bytes], begin: bool) -> None: ...
    def end_inject(self) -> None: ...
    inject_error: dict[str, str] | None
    inject_rows: list[list[bytes | None]]
    held: list[bytes]
    queries: int
    bytes_in: int
    cancels_in_flight: int
    release_after_cancel: bool
    _reading_paused: bool
    fatal_fields: dict[str, str] | None
    cleanup: list[str]
    def is_idle(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def _forward(self) -> None: ...

class ClientCore:
    server: Any
    transport: Any
    rbuf: ReadBuffer
    out: WriteBuffer
    to_backend: WriteBuffer
    state: int
    id: int
    session: Any
    tx: Any
    admin: Any
    pool: Any
    backend: Any
    last_backend: Any
    waiting: bool
    inflight: deque[Any]
    statements: dict[bytes, tuple[str, bytes, list[Any]]]
    portal_effects: dict[bytes, list[Any]]
    batch_effects: list[Any]
    _fixups: set[str]
    _probe_wanted: bool
    _inject_kind: int
    query_failed: bool
    in_batch: bool
    _skipping: bool
    lost_tx: bool
    _fake_rollback: bool
    _begin_deferred: bool
    def _rfq(self) -> bytes: ...
    _pin_check: bool
    _tx_dirty: bool
    _have_current: bool
    _reading_paused: bool
    _writing_paused: bool
    _idle_tx_timer: Any
    _query_timer: Any
    queries: int
    transactions: int
    bytes_in: int
    xact_time: float
    query_time: float
    _tx_start: float
    _query_start: float
    _wait_start: float
    def data_received(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def send(self, data: bytes) -> None: ...
    def _flush_backend(self) -> None: ...
    def _process(self) -> None: ...
    def _mark_busy(self) -> None: ...
    def _want_backend(self) -> bool: ...
    def on_backend(self, backend: Any) -> None: ...
    def _waited(self) -> None: ...
    def _link(self, backend: Any) -> bool: ...
    def on_ready_for_query(self, backend: Any, status: int) -> None: ...
    def _settle(self, backend: Any) -> None: ...
    def _maybe_release(self, backend: Any) -> None: ...
