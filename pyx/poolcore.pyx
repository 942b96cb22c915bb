# cython: language_level=3
"""The pooler's per-message paths in C: the state a client, a server connection and a pool
share on every transaction, and the code that runs for the common messages.

``multigres.pooler.client.Client``, ``multigres.pooler.backend.Backend`` and
``multigres.pooler.pool.Pool`` are Python subclasses of the classes here. This module holds
what runs per message of an ordinary transaction: framing the client's messages, a simple
Query with no session effect, the server's answers up to ReadyForQuery, taking a backend from
the pool and giving it back. Everything rarer (login, the extended protocol's renaming of
prepared statements, session effects, errors, COPY, cancel, timeouts) stays in the Python
subclasses, which these classes call by name (``self._handle_other(...)``): a Python method call
only on the paths that are not per transaction.

The state lives in typed fields (``cdef public``), so that the C code reads them without a
dictionary lookup and the Python subclasses read and write the same fields as attributes.
A Python subclass must not give one of these names a class-level default: the class attribute
would shadow the field's descriptor and assignments would land in the instance dict.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "<time.h>" nogil:
    enum: CLOCK_MONOTONIC_COARSE

from multigres._cy.buffer cimport ReadBuffer, WriteBuffer
from multigres._cy.pipe cimport PipeTransport
from multigres._cy.relay cimport Conn, FastProtocol

from collections import deque

from multigres._cy.buffer import ProtocolError
from multigres.pooler import msgs
from multigres.pooler.errors import PoolerError
from multigres.sql.session import Kind, session_effects
from multigres.wire import sqlstate as codes

# Client states (client.py uses these).
STARTUP, AUTH, LOGIN, READY, CLOSED = range(5)
cdef enum:
    C_STARTUP = 0
    C_AUTH = 1
    C_LOGIN = 2
    C_READY = 3
    C_CLOSED = 4

cdef enum:
    # What a client waiting for a backend may send before the pooler stops reading from it.
    WAIT_BUFFER_LIMIT = 256 * 1024

cdef enum:
    M_Q = 81   # 'Q'
    M_S = 83   # 'S' (Sync from clients, ParameterStatus from servers)
    M_H = 72   # 'H'
    M_X = 88   # 'X'
    M_F = 70   # 'F'
    M_Z = 90   # 'Z'
    M_B = 66   # 'B'
    M_E = 69   # 'E'
    M_COPY_DONE = 99  # 'c'
    M_COMPLETE = 67   # 'C' (CommandComplete from servers)
    ST_I = 73  # 'I'
    ST_E = 69  # 'E'

# The server messages the pooler looks at (backend.py's docstring says why); the rest are
# forwarded in runs.
cdef bytes _STOP_TYPES = b"ZSEA13GHW"
cdef list _NO_EFFECTS = []
NO_EFFECTS = _NO_EFFECTS
cdef object _DEALLOCATE = Kind.DEALLOCATE
cdef bytes _RFQ_IDLE = msgs.RFQ_IDLE
cdef bytes _RFQ_FAILED = msgs.RFQ_FAILED
cdef bytes _RFQ_IN_TX = msgs.RFQ_IN_TX
# The answers to a deferred BEGIN (see ClientCore._process_c), as Postgres gives them.
cdef bytes _BEGIN_DONE = msgs.command_complete("BEGIN") + msgs.RFQ_IN_TX
cdef bytes _START_DONE = msgs.command_complete("START TRANSACTION") + msgs.RFQ_IN_TX
cdef bytes _BEGIN_QUERY = msgs.query("BEGIN")
# ClientCore._inject_kind for the deferred BEGIN (client.py's _INJECT_BEGIN).
cdef enum:
    INJECT_SYNC = 0
    INJECT_BEGIN = 2


cdef inline double _now() noexcept nogil:
    # time.monotonic() reads the same clock.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double _now_coarse() noexcept nogil:
    # The same clock as of the last tick (a few ms behind at most) for a fraction of the
    # cost: good enough for when a backend was last used (idle reaping, SHOW SERVERS).
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


# -- the session-effect pre-filter ---------------------------------------------------------

# Words one of which every statement with a session effect contains: the pre-filter must say
# yes wherever multigres.sql.session.session_effects finds an effect (tests/unit/pooler/
# test_poolcore_prefilter.py checks it). Compared without case (ASCII only: SQL keywords are
# ASCII), and only where a word starts (after a byte that is not an ASCII letter:
# "pg_advisory_lock" and "pg_temp" have theirs after "_"). The first N_STATEMENT_NEEDLES take
# effect only as a statement's first word (session_effects looks at nothing else for them), so
# they count only where a statement may start: at the start, after ";", or after a newline or
# a "/" (the end of a comment), with blanks between. The last two are looked for anywhere.
NEEDLES = (b"set", b"reset", b"listen", b"unlisten", b"prepare", b"deallocate", b"declare",
           b"close", b"discard", b"load", b"drop", b"savepoint", b"rollback", b"abort",
           b"release", b"temp", b"chain", b"advisory", b"set_config")
DEF N_NEEDLES = 19
DEF N_STATEMENT_NEEDLES = 15
DEF N_WORD_NEEDLES = 17
cdef const char *_needle[N_NEEDLES]
cdef Py_ssize_t _needle_len[N_NEEDLES]
# First letter -> bit mask of the needles that start with it (all of them / those looked for
# anywhere, not only where a word starts).
cdef unsigned int _first[256]
cdef unsigned int _first_anywhere[256]
cdef unsigned int _statement_only = (1u << N_STATEMENT_NEEDLES) - 1


cdef _init_needles():
    cdef Py_ssize_t i
    cdef bytes n
    for i in range(256):
        _first[i] = 0
        _first_anywhere[i] = 0
    for i in range(N_NEEDLES):
        n = NEEDLES[i]
        _needle[i] = PyBytes_AS_STRING(n)  # NEEDLES keeps the bytes alive
        _needle_len[i] = PyBytes_GET_SIZE(n)
        _first[<unsigned char>_needle[i][0]] |= 1u << i
        if i >= N_WORD_NEEDLES:
            _first_anywhere[<unsigned char>_needle[i][0]] |= 1u << i


_init_needles()


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    if c >= 65 and c <= 90:
        return c + 32
    return c


cdef inline bint _is_letter(unsigned char c) noexcept nogil:
    return (c >= 65 and c <= 90) or (c >= 97 and c <= 122)


cdef bint _may_start_statement(const char *p, Py_ssize_t i) noexcept nogil:
    """Could a statement start at p[i] (only blanks back to the start, a ";", a newline or a
    comment's closing "/")?"""
    cdef unsigned char c
    while i > 0:
        i -= 1
        c = <unsigned char>p[i]
        if c == 32 or c == 9 or c == 13 or c == 11 or c == 12:
            continue
        return c == 59 or c == 10 or c == 47  # ; newline /
    return True


cdef bint may_have_effects_c(const char *p, Py_ssize_t n) noexcept nogil:
    """Could this SQL text have a session effect? False means certainly not."""
    cdef Py_ssize_t i, j, k, m
    cdef unsigned int mask
    for i in range(n):
        if i > 0 and _is_letter(<unsigned char>p[i - 1]):
            mask = _first_anywhere[_lower(<unsigned char>p[i])]
        else:
            mask = _first[_lower(<unsigned char>p[i])]
            if mask & _statement_only and not _may_start_statement(p, i):
                mask &= ~_statement_only
        if not mask:
            continue
        for j in range(N_NEEDLES):
            if not (mask >> j) & 1:
                continue
            m = _needle_len[j]
            if m > n - i:
                continue
            k = 1
            while k < m and _lower(<unsigned char>p[i + k]) == <unsigned char>_needle[j][k]:
                k += 1
            if k == m:
                return True
    return False


def may_have_effects_bytes(bytes sql):
    return may_have_effects_c(PyBytes_AS_STRING(sql), PyBytes_GET_SIZE(sql))


# -- a plain BEGIN --------------------------------------------------------------------------

cdef enum:
    NOT_BEGIN = 0
    PLAIN_BEGIN = 1     # BEGIN [WORK | TRANSACTION]: command tag BEGIN
    PLAIN_START = 2     # START TRANSACTION: command tag START TRANSACTION


cdef inline bint _is_blank(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12


cdef Py_ssize_t _skip_blanks(const char *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and _is_blank(<unsigned char>p[i]):
        i += 1
    return i


cdef Py_ssize_t _word(const char *p, Py_ssize_t i, Py_ssize_t n, const char *word) noexcept nogil:
    """The index after ``word`` (lower case) if it is at p[i] as a whole word, else -1."""
    cdef Py_ssize_t k = 0
    while word[k]:
        if i + k >= n or _lower(<unsigned char>p[i + k]) != <unsigned char>word[k]:
            return -1
        k += 1
    if i + k < n and (_is_letter(<unsigned char>p[i + k]) or p[i + k] == 95
                      or (p[i + k] >= 48 and p[i + k] <= 57)):
        return -1
    return i + k


cdef int plain_begin_c(const char *p, Py_ssize_t n) noexcept nogil:
    """Is this SQL text exactly one BEGIN or START TRANSACTION with no options (blanks and one
    trailing ";" allowed, no comments)? PLAIN_BEGIN / PLAIN_START, else NOT_BEGIN."""
    cdef Py_ssize_t i = _skip_blanks(p, 0, n)
    cdef Py_ssize_t j
    cdef int kind
    j = _word(p, i, n, b"begin")
    if j >= 0:
        kind = PLAIN_BEGIN
        i = _skip_blanks(p, j, n)
        j = _word(p, i, n, b"work")
        if j < 0:
            j = _word(p, i, n, b"transaction")
        if j >= 0:
            i = j
    else:
        j = _word(p, i, n, b"start")
        if j < 0:
            return NOT_BEGIN
        j = _word(p, _skip_blanks(p, j, n), n, b"transaction")
        if j < 0:
            return NOT_BEGIN
        kind = PLAIN_START
        i = j
    i = _skip_blanks(p, i, n)
    if i < n and p[i] == 59:  # ;
        i = _skip_blanks(p, i + 1, n)
    return kind if i == n else NOT_BEGIN


def plain_begin(bytes sql):
    """plain_begin_c for tests: 0 (not a plain BEGIN), 1 (BEGIN), 2 (START TRANSACTION)."""
    return plain_begin_c(PyBytes_AS_STRING(sql), PyBytes_GET_SIZE(sql))


cdef inline bint _pinned(object s) except -1:
    """SessionState.pinned, without a Python frame."""
    return bool(s.listening or s.temp_objects or s.advisory_locks or s.sql_prepared
                or s.held_cursors or s.untracked)


# -- latency histograms ------------------------------------------------------------------------

cdef class Histogram:
    """Counts per bucket (``counts[i]``: observations <= ``bounds[i]``, the last one: above
    every bound) and the sum; cumulative Prometheus buckets are made at scrape time. The counts
    are C integers: an observation allocates nothing."""

    cdef public tuple bounds
    cdef public double sum
    cdef double _b[64]
    cdef long long _counts[65]
    cdef Py_ssize_t _nb

    def __init__(self, bounds):
        cdef Py_ssize_t i
        self.bounds = tuple(bounds)
        if len(self.bounds) > 64:
            raise ValueError("at most 64 bounds")
        self._nb = len(self.bounds)
        for i in range(self._nb):
            self._b[i] = self.bounds[i]
        for i in range(self._nb + 1):
            self._counts[i] = 0
        self.sum = 0.0

    cpdef observe(self, double value):
        cdef Py_ssize_t i = 0
        # bisect_left: the first bound >= value.
        while i < self._nb and self._b[i] < value:
            i += 1
        self._counts[i] += 1
        self.sum += value

    @property
    def counts(self):
        return [self._counts[i] for i in range(self._nb + 1)]

    @property
    def count(self):
        cdef long long total = 0
        cdef Py_ssize_t i
        for i in range(self._nb + 1):
            total += self._counts[i]
        return total

    def to_dict(self):
        return {"bounds": list(self.bounds), "counts": self.counts, "sum": self.sum}


# -- connections ---------------------------------------------------------------------------------

cdef int _send_buffer(object transport, WriteBuffer buf) except -1:
    """Send what ``buf`` holds: from its memory on a relay connection, as bytes by a C call
    to a local-mode pipe, else as bytes through write() (TLS on uvloop's transports); nothing
    without a transport."""
    if transport is None or not buf._size:
        return 0
    if type(transport) is Conn:
        return (<Conn>transport).send_ptr(buf._buf, buf._size)
    if type(transport) is PipeTransport:
        return (<PipeTransport>transport).send(buf.getvalue())
    transport.write(buf.getvalue())
    return 0


cdef class _Protocol(FastProtocol):
    """What a client and a server connection share: the bytes of a read event go to _on_data,
    by a C call from the relay, or through data_received from uvloop's transports (TLS)."""

    def data_received(self, bytes data):
        self._on_data(data)

    cdef int relay_data(self, bytes data) except -1:
        return self._on_data(data)

    cdef int _on_data(self, bytes data) except -1:
        raise NotImplementedError


# -- the pool ------------------------------------------------------------------------------------

cdef class _Protocol
cdef class ClientCore
cdef class BackendCore


cdef class PoolCore:
    """Checkout and return of a pool's backends (the rest is in pool.py)."""

    cdef public object user, database
    cdef public Py_ssize_t size
    cdef public object _connector
    cdef public double wait_timeout, lifetime, idle_timeout
    # The clients' timeouts (config.query_timeout, config.idle_transaction_timeout), here so
    # that the per-message path reads a C field: server.py sets them, and again on RELOAD.
    cdef public double query_timeout, idle_transaction_timeout
    # config.defer_begin (server.py sets it, and again on RELOAD).
    cdef public bint defer_begin
    cdef public dict idle  # insertion-ordered set, most recently used last
    cdef public set active
    cdef public Py_ssize_t connecting
    cdef public object waiters  # deque of (waiter, when it began to wait: time.monotonic())
    # One timer for all the waits, armed for the earliest deadline (pool.py).
    cdef public object _wait_timer
    cdef public bint paused
    cdef public Py_ssize_t total_waits, connect_errors
    cdef public double total_wait_time, max_wait

    def total(self):
        return self._total()

    cdef inline Py_ssize_t _total(self):
        return len(self.idle) + len(self.active) + self.connecting

    def acquire(self, waiter, prefer=None):
        """An idle backend now, or None: then ``waiter.on_backend`` is called later."""
        return self._acquire(waiter, prefer)

    def release(self, BackendCore backend):
        """A client is done with ``backend`` (idle, no transaction, nothing pinned)."""
        self._release(backend)

    def _dispatch(self):
        self._dispatch_c()

    cdef object _acquire(self, object waiter, object prefer):
        cdef object backend
        if not self.paused and self.idle and not self.waiters:
            if prefer is not None and prefer in self.idle:
                del self.idle[prefer]
                backend = prefer
            else:
                backend, _ = self.idle.popitem()
            self.active.add(backend)
            return backend
        self._enqueue_c(waiter)
        return None

    def _enqueue(self, waiter):
        self._enqueue_c(waiter)

    cdef int _enqueue_c(self, object waiter) except -1:
        """No idle backend for ``waiter``: it waits, in FIFO order."""
        self.waiters.append((waiter, _now()))
        self.total_waits += 1
        if self.wait_timeout > 0 and self._wait_timer is None:
            self._arm_wait_timer()
        if not self.paused and self._total() < self.size:
            self._grow()
        return 0

    cdef int _release(self, BackendCore backend) except -1:
        if backend.cancels_in_flight and not backend.closed:
            # Not before Postgres has taken the cancel (backend.send_cancel releases it).
            backend.release_after_cancel = True
            return 0
        self.active.discard(backend)
        cdef double now = _now_coarse()
        if backend.closed or (self.lifetime > 0 and now - backend.created_at > self.lifetime):
            backend.close()
            self._grow()
            return 0
        backend.last_used = now
        self.idle[backend] = None
        if self.waiters:
            self._dispatch_c()
        return 0

    cdef int _dispatch_c(self) except -1:
        cdef object backend
        while self.waiters and self.idle and not self.paused:
            waiter, _ = self.waiters.popleft()
            backend, _ = self.idle.popitem()
            self.active.add(backend)
            if isinstance(waiter, ClientCore):
                (<ClientCore>waiter)._on_backend(backend)
            else:
                waiter.on_backend(backend)
        return 0


# -- a server connection ---------------------------------------------------------------------

cdef class BackendCore(_Protocol):
    """A server connection's state and its answer path (see backend.py)."""

    cdef public PoolCore pool
    cdef public object transport, auth, startup_params, ready
    cdef public ReadBuffer rbuf
    cdef public WriteBuffer out
    cdef public bint connected, closed
    cdef public int pid, key
    cdef public dict params, settings
    cdef public tuple synced_with
    cdef public set prepared, confirmed
    cdef public ClientCore client
    cdef public double created_at, last_used
    cdef public int tx_status
    cdef public Py_ssize_t pending, syncs_sent, syncs_done, _seq
    cdef public object parses, closes, dropping
    cdef public bint error_in_batch, copy, injecting
    # The injected query is a client's deferred BEGIN (its answer is taken in C).
    cdef public bint begin_injected
    cdef public object inject_error, inject_rows, held
    cdef public Py_ssize_t queries, bytes_in
    cdef public int cancels_in_flight
    cdef public bint release_after_cancel, _reading_paused
    cdef public object fatal_fields
    cdef public list cleanup

    def is_idle(self):
        """Nothing in flight and no transaction: the backend could serve another client."""
        return self._is_idle()

    cdef inline bint _is_idle(self) noexcept:
        return (self.pending == 0 and self.tx_status == ST_I and not self.copy
                and not self.injecting)

    def write(self, data):
        self._write(data)

    cdef inline int _write(self, object data) except -1:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
        return 0

    cdef inline int _write_buffer(self, WriteBuffer buf) except -1:
        if not self.closed:
            _send_buffer(self.transport, buf)
        return 0

    cdef int _on_data(self, bytes data) except -1:
        self.bytes_in += len(data)
        self.rbuf.feed_data(data)
        try:
            if not self.connected:
                self._startup_messages()
            elif self.injecting:
                self._injected_c()
            else:
                self._forward_c()
        except ProtocolError as e:
            self._fail(PoolerError(codes.PROTOCOL_VIOLATION,
                                   f"invalid message from the server: {e}"))
        return 0

    cpdef start_inject(self, list held, bint begin):
        """The pooler's own query goes out next (the caller sends it): its answers are
        taken, not forwarded, and ``held`` messages follow them. ``begin``: a client's
        deferred BEGIN, whose answer is taken in C."""
        self.injecting = True
        self.begin_injected = begin
        self.inject_error = None
        self.inject_rows = []
        self.held = held

    cpdef end_inject(self):
        """The current message is the ReadyForQuery ending the pooler's own query."""
        self.tx_status = self.rbuf.read_byte()
        self.injecting = False
        self.begin_injected = False
        self.error_in_batch = False

    cdef int _injected_c(self) except -1:
        """Answers to the pooler's own query: a deferred BEGIN's here, the others in
        backend.py (_inject_messages)."""
        if self.begin_injected:
            return self._begin_answer_c()
        self._inject_messages()
        return 0

    cdef int _begin_answer_c(self) except -1:
        """The answer to a client's deferred BEGIN: CommandComplete, then ReadyForQuery, and
        the client's statements go on. Anything else (an error, a parameter change) is left
        to backend.py, which handles every injected query's answers."""
        cdef ReadBuffer rb = self.rbuf
        cdef ClientCore client
        cdef int t
        while True:
            t = rb.peek_type()
            if t != M_COMPLETE and t != M_Z:
                if t >= 0:
                    self.begin_injected = False
                    self._inject_messages()
                return 0
            if not rb.take_message():
                return 0
            if t == M_Z:
                break
        self.end_inject()
        client = self.client
        if client is None:
            return 0
        client._inject_kind = INJECT_SYNC
        if client.state == C_READY:
            client._process_c()
        if rb.buffered() and self.client is not None:
            if self.injecting:
                self._injected_c()
            else:
                self._forward_c()
        return 0

    def _forward(self):
        self._forward_c()

    cdef int _forward_c(self) except -1:
        cdef ClientCore client = self.client
        cdef ReadBuffer rb = self.rbuf
        cdef WriteBuffer out
        cdef int t
        cdef Py_ssize_t n
        cdef const char *p
        if client is None:
            # Answers nobody waits for (a client left): keep the state, drop the bytes.
            self._drain_unlinked()
            return 0
        out = client.out
        while True:
            rb.take_run_into(out, _STOP_TYPES)
            if not rb.take_message():
                break
            t = rb.get_message_type()
            if t == M_Z:
                self.tx_status = rb.read_byte()
                self.pending -= 1
                self.syncs_done += 1
                self.error_in_batch = False
                self.copy = False
                if self.dropping:
                    self._dropped()
                p = rb.message_ptr(&n)
                out.write_cbytes(p, n)
                client._on_ready_for_query(self, self.tx_status)
                if self.client is not client or self.injecting:
                    # Released to the pool: what follows (nothing, normally) is not theirs;
                    # or the pooler's own query went out, its answers come next.
                    break
            else:
                self._forward_other(t, client, out)
        client._flush()
        if rb.buffered():
            if self.client is None:
                self._drain_unlinked()
            elif self.injecting:
                self._injected_c()
        return 0


# -- a client connection ---------------------------------------------------------------------

cdef class ClientCore(_Protocol):
    """A client's state and its message path (see client.py)."""

    cdef public object server, transport
    cdef public ReadBuffer rbuf
    cdef public WriteBuffer out, to_backend
    cdef public int state
    cdef public Py_ssize_t id
    cdef public object session, tx, admin
    cdef public PoolCore pool
    cdef public BackendCore backend, last_backend
    cdef public bint waiting
    cdef public object inflight
    # Protocol-level prepared statements (client name -> (server name, Parse, effects)), the
    # effects of each portal's statement, and of the extended batch up to its Sync.
    cdef public dict statements, portal_effects
    cdef public list batch_effects
    cdef public object _fixups
    cdef public bint _probe_wanted
    cdef public int _inject_kind
    cdef public bint query_failed, in_batch, _skipping, lost_tx, _fake_rollback
    # The client's plain BEGIN was answered by the pooler and goes to the server (injected)
    # only before the client's next statement: a backend is held for the transaction's
    # statements, not for the client's think time after BEGIN.
    cdef public bint _begin_deferred
    # The session may pin its backend (effects applied since the last check found nothing);
    # the open transaction has effects or failed (self.tx is not empty). Both spare a look at
    # the Python objects on every ReadyForQuery.
    cdef public bint _pin_check, _tx_dirty
    cdef public bint _have_current, _reading_paused, _writing_paused
    cdef public object _idle_tx_timer, _query_timer
    cdef public Py_ssize_t queries, transactions, bytes_in
    cdef public double xact_time, query_time, _tx_start, _query_start, _wait_start
    # The server's latency histograms (server.meters), looked up once.
    cdef Histogram _query_latency, _tx_latency, _pool_wait

    cdef int _on_data(self, bytes data) except -1:
        self.bytes_in += len(data)
        try:
            self.rbuf.feed_data(data)
            if self.waiting and self.rbuf.buffered() > WAIT_BUFFER_LIMIT:
                # Waiting for a backend and sending on: leave the rest in the kernel.
                self.pause_reading()
            if self.state == C_READY:
                self._process_c()
            elif self.state == C_STARTUP or self.state == C_AUTH:
                self.server.startup.handle(self)
        except ProtocolError as e:
            self._fail(PoolerError(codes.PROTOCOL_VIOLATION, str(e)))
        except PoolerError as e:
            self._fail(e)
        return 0

    # -- output ---------------------------------------------------------------------------

    def flush(self):
        self._flush()

    cdef int _flush(self) except -1:
        cdef WriteBuffer out = self.out
        if out._size:
            _send_buffer(self.transport, out)
            out.reset()
        return 0

    def send(self, bytes data):
        self.out.write_raw(data)

    def _flush_backend(self):
        self._flush_backend_c()

    cdef int _flush_backend_c(self) except -1:
        cdef WriteBuffer buf = self.to_backend
        if buf._size and self.backend is not None:
            self.backend._write_buffer(buf)
        buf.reset()
        return 0

    # -- the data path -----------------------------------------------------------------------

    def _process(self):
        self._process_c()

    cdef int _process_c(self) except -1:
        cdef ReadBuffer rb = self.rbuf
        cdef BackendCore backend
        cdef int t
        while self.state == C_READY:
            if not self._have_current:
                if not rb.take_message():
                    break
                self._have_current = True
            t = rb.get_message_type()
            if ((t == M_S or t == M_H or t == M_X or t == M_COPY_DONE)
                    and rb.get_message_length() != 4):
                # Postgres would answer with an error nobody expects (a Sync or Flush is
                # not answered by one), and the pooler lose count of what is in flight.
                raise PoolerError(codes.PROTOCOL_VIOLATION,
                                  f"invalid message format: message {chr(t)!r} has a body")
            if self.admin is not None:
                self._have_current = False
                self.admin.handle(self, t, rb)
                continue
            backend = self.backend
            if backend is None:
                if t == M_X:
                    self._terminate()
                    return 0
                if t == M_S or t == M_H or self._skipping or self._fake_rollback:
                    # A Sync or Flush with nothing before it, or the rest of a batch after an
                    # error the pooler reported.
                    self._have_current = False
                    if self._fake_rollback:
                        self._answer_rollback(t)
                    elif t == M_S:
                        self._skipping = False
                        self.out.write_raw(self._rfq())
                    continue
                if self.lost_tx and not self._in_lost_tx(t):
                    self._have_current = False
                    continue
                if t == M_Q and self.pool.defer_begin and not self._begin_deferred:
                    if self._defer_begin_c():
                        self._have_current = False
                        continue
                if not self._want_backend_c():
                    break
                backend = self.backend
            elif backend.injecting:
                break
            if self._begin_deferred:
                # The BEGIN goes first; this message waits for its answer (a failed BEGIN
                # must not leave the statements after it to run outside a transaction).
                self._begin_deferred = False
                self._inject_kind = INJECT_BEGIN
                backend.start_inject([], True)
                self.to_backend.write_raw(_BEGIN_QUERY)
                break
            self._have_current = False
            if t == M_Q:
                self._handle_query(backend)
            elif t == M_B:
                self._handle_bind(backend)
            elif t == M_E:
                self._handle_execute(backend)
            elif t == M_S:
                self._handle_sync(backend)
            else:
                self._handle_other(t, backend)
        self._flush_backend_c()
        self._flush()
        return 0

    cpdef bytes _rfq(self):
        """ReadyForQuery for a client that holds no backend."""
        if self.lost_tx:
            return _RFQ_FAILED
        return _RFQ_IN_TX if self._begin_deferred else _RFQ_IDLE

    cdef bint _defer_begin_c(self) except -1:
        """A plain BEGIN from a client without a backend: answer it now, send it later."""
        cdef Py_ssize_t n
        cdef const char *p = self.rbuf.message_ptr(&n)
        cdef int kind = plain_begin_c(p + 5, n - 6) if n > 6 else NOT_BEGIN
        if kind == NOT_BEGIN:
            return False
        self._begin_deferred = True
        self.queries += 1
        self.out.write_raw(_BEGIN_DONE if kind == PLAIN_BEGIN else _START_DONE)
        return True

    cdef int _handle_query(self, BackendCore backend) except -1:
        cdef bytes msg
        cdef list effects = _NO_EFFECTS
        cdef Py_ssize_t n
        cdef const char *p
        self._mark_busy_c()
        p = self.rbuf.message_ptr(&n)
        if n > 6 and may_have_effects_c(p + 5, n - 6):
            msg = self.rbuf.message_bytes()
            effects = session_effects(msg[5:n - 1].decode("utf-8", "replace"))
            if effects and effects[0].kind is _DEALLOCATE:
                sql = self._deallocate_sql(backend, effects)
                if sql is not None:
                    msg = msgs.query(sql)
            self.to_backend.write_raw(msg)
        else:
            # Forwarded as received, from the read buffer.
            self.to_backend.write_cbytes(p, n)
        self.inflight.append(effects)
        backend.pending += 1
        backend.syncs_sent += 1
        self.queries += 1
        if self._query_timer is None and self.pool.query_timeout > 0:
            self._start_query_timer()
        return 0

    cdef int _handle_bind(self, BackendCore backend) except -1:
        """Bind: to a named statement, by its server name (prepared there first if needed)."""
        cdef ReadBuffer rb = self.rbuf
        cdef WriteBuffer out = self.to_backend
        cdef Py_ssize_t n
        cdef const char *p
        cdef const char *rest
        cdef Py_ssize_t rest_len
        self._mark_busy_c()
        self.in_batch = True
        p = rb.message_ptr(&n)
        portal = rb.read_cstr()
        stmt = rb.read_cstr()
        entry = self.statements.get(stmt)
        self.portal_effects[portal] = (<tuple>entry)[2] if entry is not None else _NO_EFFECTS
        if not stmt or entry is None:
            # Unnamed, or unknown (Postgres will say it does not exist, by this name).
            out.write_cbytes(p, n)
            return 0
        sname = (<tuple>entry)[0]
        if sname not in backend.prepared:
            self._ensure_prepared(backend, entry)
        # The rest of the message (parameters, formats) is copied as it is.
        rest_len = 5 + len(<bytes>portal) + 1 + len(<bytes>stmt) + 1
        rest = p + rest_len
        rest_len = n - rest_len
        out.start_message(M_B)
        out.write_bytes(portal)
        out.write_byte(0)
        out.write_bytes((<str>sname).encode())
        out.write_byte(0)
        out.write_cbytes(rest, rest_len)
        out.end_message()
        return 0

    cdef int _handle_execute(self, BackendCore backend) except -1:
        cdef Py_ssize_t n
        cdef const char *p
        self._mark_busy_c()
        self.in_batch = True
        p = self.rbuf.message_ptr(&n)
        effects = self.portal_effects.get(self.rbuf.read_cstr())
        if effects:
            self.batch_effects.extend(effects)
        self.queries += 1
        self.to_backend.write_cbytes(p, n)
        if self._query_timer is None and self.pool.query_timeout > 0:
            self._start_query_timer()
        return 0

    cdef int _handle_sync(self, BackendCore backend) except -1:
        cdef Py_ssize_t n
        cdef const char *p
        self._mark_busy_c()
        self.in_batch = False
        if self.batch_effects:
            self.inflight.append(self.batch_effects)
            self.batch_effects = []
        else:
            self.inflight.append(_NO_EFFECTS)
        backend.pending += 1
        backend.syncs_sent += 1
        p = self.rbuf.message_ptr(&n)
        self.to_backend.write_cbytes(p, n)
        return 0

    def _mark_busy(self):
        self._mark_busy_c()

    cdef int _mark_busy_c(self) except -1:
        """A message goes to the server: stop the idle-in-transaction clock, start the
        query's (one clock read per busy period and per transaction, not per message)."""
        if self._idle_tx_timer is not None:
            self._cancel_idle_tx_timer()
        if not self._query_start:
            self._query_start = _now()
            if not self._tx_start:
                self._tx_start = self._query_start
        return 0

    # -- getting a backend ---------------------------------------------------------------------

    def _want_backend(self):
        """True when a backend is linked and in sync now; else it comes later."""
        return self._want_backend_c()

    cdef bint _want_backend_c(self) except -1:
        if self.waiting:
            return False
        backend = self.pool._acquire(self, self.last_backend)
        if backend is None:
            # (Reading goes on: what comes meanwhile is buffered, up to WAIT_BUFFER_LIMIT.)
            self.waiting = True
            self._wait_start = _now()
            return False
        return self._link_c(backend)

    def on_backend(self, BackendCore backend):
        """The pool hands over a backend this client waited for."""
        self._on_backend(backend)

    cdef int _on_backend(self, BackendCore backend) except -1:
        self.waiting = False
        self._waited_c()
        if self._reading_paused:
            self.resume_reading()
        if self.state == C_CLOSED:
            self.pool._release(backend)
            return 0
        if self._link_c(backend):
            if self.state == C_READY:
                self._process_c()
            else:
                self._resume()
        return 0

    def _waited(self):
        self._waited_c()

    cdef int _waited_c(self) except -1:
        cdef double waited
        if self._wait_start:
            waited = _now() - self._wait_start
            self._wait_start = 0.0
            if self._pool_wait is None:
                self._pool_wait = self.server.meters.pool_wait
            self._pool_wait.observe(waited)
            if self.pool is not None:
                self.pool.total_wait_time += waited
                if waited > self.pool.max_wait:
                    self.pool.max_wait = waited
        return 0

    def _link(self, BackendCore backend):
        return self._link_c(backend)

    cdef bint _link_c(self, BackendCore backend) except -1:
        backend.client = self
        backend.last_used = _now_coarse()
        if self._writing_paused:
            backend.pause_reading()
        self.backend = backend
        self.last_backend = backend
        cdef tuple synced = backend.synced_with
        session = self.session
        version = session.version
        if (synced is not None and len(synced) == 2 and synced[0] == self.id
                and synced[1] == version):
            return True
        if backend.settings == session.settings:
            # Another client's backend with the same settings (the common case: clients of
            # one application): nothing to set (settings_diff would find nothing).
            backend.synced_with = (self.id, version)
            return True
        return self._sync_settings(backend)

    # -- events from the backend ---------------------------------------------------------------

    def on_ready_for_query(self, BackendCore backend, int status):
        self._on_ready_for_query(backend, status)

    cdef int _on_ready_for_query(self, BackendCore backend, int status) except -1:
        cdef double now, took
        cdef bint failed
        cdef list effects
        if self._query_timer is not None:
            self._cancel_query_timer()
        effects = self.inflight.popleft() if self.inflight else _NO_EFFECTS
        failed = self.query_failed
        self.query_failed = False
        if self._query_start:
            now = _now()
            took = now - self._query_start
            self.query_time += took
            if self._query_latency is None:
                meters = self.server.meters
                self._query_latency = meters.query_latency
                self._tx_latency = meters.tx_latency
            self._query_latency.observe(took)
            self._query_start = now if backend.pending else 0.0
            if status == ST_I and self._tx_start:
                took = now - self._tx_start
                self.xact_time += took
                self._tx_latency.observe(took)
                self._tx_start = 0.0
        if status == ST_I:
            self.transactions += 1
        if effects or self._tx_dirty:
            self._pin_check = True
            self._account(backend, status, effects, failed)
            tx = self.tx
            self._tx_dirty = bool(tx.pending or tx.failed)
        if self.state == C_LOGIN or self.backend is not backend:
            return 0
        if (backend.pending == 0 and not self.in_batch and status != ST_E
                and (self._fixups or (self._probe_wanted and status == ST_I))):
            self._inject_after(backend, status)
            return 0
        return self._settle_c(backend)

    def _settle(self, BackendCore backend):
        """Nothing in flight from the pooler: release the backend, or time the idle
        transaction."""
        self._settle_c(backend)

    cdef int _settle_c(self, BackendCore backend) except -1:
        self._maybe_release_c(backend)
        if self.backend is not None and backend.pending == 0 and backend.tx_status != ST_I:
            if self.pool.idle_transaction_timeout > 0:
                self._start_idle_tx_timer()
        return 0

    def _maybe_release(self, BackendCore backend):
        self._maybe_release_c(backend)

    cdef int _maybe_release_c(self, BackendCore backend) except -1:
        if self.backend is not backend or not backend._is_idle() or self.in_batch:
            return 0
        if self._pin_check:
            if _pinned(self.session):
                return 0
            self._pin_check = False
        self.backend = None
        backend.client = None
        if backend._reading_paused:
            backend.resume_reading()
        self.pool._release(backend)
        return 0
