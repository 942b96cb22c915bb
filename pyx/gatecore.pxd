# The interface of pyx/gatecore.pyx: the gateway session's per-read-event path in C.
#
# session.py's Session and upstream.py's Upstream are Python subclasses of SessionCore and
# UpstreamCore; the fields here are the state the C path reads and writes (``public``: the
# Python subclasses use them as attributes). A subclass must not give one of these names a
# class-level default (it would shadow the field's descriptor).

from libc.stdint cimport uint64_t

from multigres._cy.buffer cimport ReadBuffer
from multigres._cy.relay cimport FastProtocol


cdef class GateCounters:
    cdef public long long generation  # bumped by discovery at every change
    cdef public long long statements  # Queries, Syncs and FunctionCalls sent to poolers
    cdef public long long direct  # of those, Queries the C path routed to a shard itself


cdef class DirectRoute:
    # A plan the C path can route by itself: an equality on a hash or numeric vindex of one
    # lifted integer literal, the statement unchanged on the one shard it names.
    cdef public str tablegroup
    cdef public int param  # the value's $n, from 0 (a literal lifted from the text, or not)
    cdef public int kind   # DIRECT_HASH or DIRECT_NUMERIC


cdef class ShardTable:
    # A sharded tablegroup's shards as the C path routes to them: their start keys (8-byte
    # keyspace ids as uint64) and the session's connection to each (a ShardConn, or None).
    cdef uint64_t *_starts
    cdef public int n
    cdef public list names
    cdef public list conns

    cdef int locate(self, uint64_t ksid) noexcept


cdef class UpstreamCore(FastProtocol):
    cdef public object transport
    cdef public object sink  # a SessionCore in data mode, else a Python sink or None
    cdef public bint closed

    cdef int send_c(self, bytes data) except -1


cdef class SessionCore(FastProtocol):
    cdef public object server, transport
    cdef public GateCounters counters
    cdef public object plans  # the planner's PlanCache
    cdef public object database
    cdef public UpstreamCore upstream
    cdef public ReadBuffer rbuf, urbuf
    cdef public int state, tx_status
    cdef public bint busy, failed_tx, retrying
    # The pooler's next answer is the session's own (a ROLLBACK it sent): the Python path
    # takes it (session.py, _upstream_slow).
    cdef public bint divert
    # Someone waits for the answers in flight (session.idle): the Python path takes them.
    cdef public bint watch_answers
    # Every client message takes the Python path (the gateway holds extended-protocol
    # statements of its own, whose Binds and Executes it must see).
    cdef public bint slow_client
    # Sharded sessions: plans the C path routes to one shard (a PlanCache; None: none), the
    # session's ShardTables by tablegroup, and the connection of the statement in flight.
    cdef public object direct_plans
    cdef public dict shard_tables
    cdef public object direct_up
    cdef public object pending_error, awaiting_set, retry_batch
    cdef public Py_ssize_t in_flight
    cdef public long long generation  # counters.generation when the pooler was last checked
    cdef public double retry_since

    cdef int send_c(self, bytes data) except -1
    cdef int upstream_data_c(self, UpstreamCore up, bytes data) except -1
    cdef bint _try_direct(self, bytes data) except -1
