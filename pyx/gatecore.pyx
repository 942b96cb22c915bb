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

from multigres._cy.buffer cimport ReadBuffer
from multigres._cy.gatescan cimport scan_client_c, scan_server_c
from multigres._cy.pipe cimport PipeTransport
from multigres._cy.relay cimport Conn, FastProtocol

# Session states (session.py uses the same numbers).
STARTUP, AUTH, CONNECTING, READY, CLOSED = range(5)
cdef enum:
    S_READY = 3
    S_CLOSED = 4
    ST_I = 73  # 'I'


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
