# cython: language_level=3
"""The gateway session's per-read-event path in C.

An unsharded session forwards the protocol both ways and, per read event, only needs to know
that the bytes are whole ordinary messages (gatescan) and keep two counters: statements in
flight and the transaction status. Done in Python, that was three Python calls per read
event on each side; here the relay calls ``relay_data`` as a C function, the scan is C, and
the write is a C call on the relay connection or the local-mode pipe: a pgbench-style
transaction crosses the gateway with no Python frame except the plan-cache lookup.

Everything else (login, a partial message, a Parse or Close the session tracks, a statement
with session effects, a moved pooler, errors the gateway acts on) goes to the Python
subclass, ``session.Session._data_slow`` / ``_upstream_slow``, and the login of an upstream to
``upstream.Upstream.data_received``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint32_t, uint64_t

from multigres._cy.buffer cimport ReadBuffer
from multigres._cy.gatescan cimport cache_get, scan_client_c, scan_server_c
from multigres._cy.pipe cimport PipeTransport
from multigres._cy.relay cimport Conn, FastProtocol
from multigres._cy.sqlnorm cimport LK_INTEGER, LitSpan, Normalized, normalize_ptr
from multigres._cy.vhash cimport mg_hash64

# Session states (session.py uses the same numbers).
STARTUP, AUTH, CONNECTING, READY, CLOSED = range(5)
cdef enum:
    S_READY = 3
    S_CLOSED = 4
    ST_I = 73  # 'I'

DIRECT_HASH = 1
DIRECT_NUMERIC = 2


cdef inline int _write(object transport, bytes data) except -1:
    """One write: a C call on a relay connection or a pipe, else transport.write (TLS)."""
    if type(transport) is Conn:
        return (<Conn>transport).send_ptr(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if type(transport) is PipeTransport:
        return (<PipeTransport>transport).send(data)
    transport.write(data)
    return 0


cdef class GateCounters:
    """Counters the C path bumps (a dict increment per read event would be a Python call)."""

    def __init__(self):
        self.generation = 0
        self.statements = 0
        self.direct = 0


cdef class DirectRoute:
    """How the C path routes a plan (see gatecore.pxd); built by plan.py."""

    def __init__(self, str tablegroup, int param, int kind):
        self.tablegroup = tablegroup
        self.param = param
        self.kind = kind


cdef class ShardTable:
    """``ShardTable(names, starts)``: ``starts`` the shards' start keys (bytes, b"" first, in
    key order, as ShardMap has them)."""

    def __cinit__(self, list names, list starts):
        cdef Py_ssize_t i, j
        cdef bytes b
        cdef uint64_t v
        self.n = len(names)
        self._starts = <uint64_t *>PyMem_Malloc(max(self.n, 1) * sizeof(uint64_t))
        if self._starts == NULL:
            raise MemoryError()
        for i in range(self.n):
            b = starts[i]
            v = 0
            # A start key is a prefix of 8-byte keyspace ids: pad it with zero bytes.
            for j in range(8):
                v = (v << 8) | (<unsigned char>b[j] if j < len(b) else 0)
            self._starts[i] = v
        self.names = list(names)
        self.conns = [None] * self.n

    def __dealloc__(self):
        PyMem_Free(self._starts)

    cdef int locate(self, uint64_t ksid) noexcept:
        # The last shard whose start is <= ksid (the first start is 0).
        cdef int lo = 0, hi = self.n - 1, mid
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if self._starts[mid] <= ksid:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def shard_for(self, bytes ksid):
        """The shard name owning an 8-byte keyspace id (for tests)."""
        cdef uint64_t v = 0
        cdef int j
        for j in range(8):
            v = (v << 8) | <unsigned char>ksid[j]
        return self.names[self.locate(v)]


cdef inline bint _int64_at(const char *p, Py_ssize_t n, int64_t *out) noexcept:
    """Decimal digits (a lifted integer literal) as an int64; False if it does not fit."""
    cdef uint64_t v = 0
    cdef Py_ssize_t i
    if n <= 0 or n > 19:
        return False
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
        v = v * 10 + <uint64_t>(p[i] - 48)
    if v > <uint64_t>0x7FFFFFFFFFFFFFFF:
        return False
    out[0] = <int64_t>v
    return True


cdef class UpstreamCore(FastProtocol):
    """A gateway's connection to a pooler (upstream.py): in data mode its bytes go to the
    session's C path; at login, or when parked, to the Python subclass's data_received."""

    cdef int relay_data(self, bytes data) except -1:
        sink = self.sink
        if isinstance(sink, SessionCore):
            return (<SessionCore>sink).upstream_data_c(self, data)
        self.data_received(data)
        return 0

    cdef int send_c(self, bytes data) except -1:
        if self.transport is not None and not self.closed:
            _write(self.transport, data)
        return 0

    def write(self, bytes data):
        self.send_c(data)


cdef class SessionCore(FastProtocol):
    """A client session's state and its forwarding path (see session.py)."""

    # -- the client's side -------------------------------------------------------------------

    def data_received(self, bytes data):
        # uvloop's transports (TLS sessions) call this; the relay calls relay_data directly.
        self.relay_data(data)

    cdef int relay_data(self, bytes data) except -1:
        cdef UpstreamCore up = self.upstream
        cdef Py_ssize_t n
        if (self.direct_plans is not None and self.state == S_READY and up is not None
                and not self.busy and not self.slow_client and not self.rbuf.buffered()
                and not self.failed_tx and self.pending_error is None
                and self.in_flight == 0 and self.tx_status == ST_I
                and self.generation == self.counters.generation and self._try_direct(data)):
            return 0
        if (self.state == S_READY and up is not None and not self.busy and not self.slow_client
                and not self.rbuf.buffered() and not self.failed_tx
                and self.pending_error is None
                and (self.in_flight or self.tx_status != ST_I
                     or self.generation == self.counters.generation)):
            # The common case: whole messages that need no look, forwarded as received.
            n = scan_client_c(data, self.plans, self.database)
            if n >= 0:
                if n == 1 and self.in_flight == 0 and self.tx_status == ST_I:
                    # Kept until its first answer: an 08001 from the pooler (nothing ran)
                    # sends it again elsewhere (session.py, _upstream_slow).
                    self.retry_batch = data
                self.in_flight += n
                self.counters.statements += n
                up.send_c(data)
                return 0
        self._data_slow(data)
        return 0

    cdef bint _try_direct(self, bytes data) except -1:
        """One Query whose plan routes to one shard by the literal's hash: sent as it is to
        that shard's pooler, its answer forwarded as it comes (upstream_data_c)."""
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef uint32_t length
        cdef Normalized norm
        cdef DirectRoute route
        cdef ShardTable table
        cdef const LitSpan *lit
        cdef int64_t value
        cdef uint64_t ksid
        cdef int index
        cdef UpstreamCore up
        if n < 7 or p[0] != b'Q':
            return False
        length = ((<uint32_t><unsigned char>p[1] << 24) | (<uint32_t><unsigned char>p[2] << 16)
                  | (<uint32_t><unsigned char>p[3] << 8) | <uint32_t><unsigned char>p[4])
        if length + 1 != n or p[n - 1] != 0:
            return False  # not exactly one whole Query
        try:
            norm = normalize_ptr(p + 5, n - 6, None, True)
        except ValueError:
            return False
        plan = cache_get(self.direct_plans, norm.text, self.database)
        if plan is None:
            return False  # the Python path plans it (and counts the miss)
        route = plan.direct
        table = self.shard_tables.get(route.tablegroup)
        index = route.param - norm.param_base  # $n among the literals lifted from the text
        if table is None or index < 0 or index >= norm.n_params:
            return False
        lit = norm.lit_at(index)
        if lit.kind != LK_INTEGER or not _int64_at(p + 5 + lit.vstart, lit.vend - lit.vstart,
                                                   &value):
            return False
        ksid = mg_hash64(<uint64_t>value) if route.kind == DIRECT_HASH else <uint64_t>value
        conn = table.conns[table.locate(ksid)]
        if conn is None or conn.closed or conn.pending:
            return False  # not opened yet, or busy with the engine: the Python path
        up = conn.up
        if up.closed:
            return False
        up.sink = self
        self.direct_up = up
        self.in_flight = 1
        self.counters.statements += 1
        self.counters.direct += 1
        up.send_c(data)
        return True

    def send(self, data):
        """Write to the client (nothing once the session is closed)."""
        self.send_c(data if type(data) is bytes else bytes(data))

    cdef int send_c(self, bytes data) except -1:
        if self.transport is not None and self.state != S_CLOSED:
            _write(self.transport, data)
        return 0

    # -- the pooler's side -------------------------------------------------------------------

    def upstream_data(self, UpstreamCore up, bytes data):
        self.upstream_data_c(up, data)

    cdef int upstream_data_c(self, UpstreamCore up, bytes data) except -1:
        cdef Py_ssize_t r
        if (not self.retrying and not self.divert and not self.watch_answers
                and self.awaiting_set is None
                and not self.urbuf.buffered()):
            r = scan_server_c(data)
            if r >= 0:
                # Whole messages, no error that the gateway acts on: forwarded as received.
                if r >= 256:
                    self.tx_status = r & 0xFF
                    self.in_flight -= r >> 8
                    if self.in_flight < 0:
                        self.in_flight = 0
                self.retry_batch = None
                self.retry_since = 0.0
                self.send_c(data)
                return 0
        self._upstream_slow(up, data)
        return 0
