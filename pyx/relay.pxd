# The interface of the relay I/O engine (pyx/relay.pyx): what other extensions cimport with
# ``from multigres._cy.relay cimport Relay, Conn, FastProtocol``.
#
# Relay and Conn are final (see buffer.pxd): their cdef methods are plain C calls. FastProtocol
# is the one class meant to be subclassed: a cdef subclass in another module overrides
# relay_data() and is called through the vtable, with no Python call per read event.
#
# Error returns follow buffer.pxd: ``except -1`` where -1 is never a valid result.

cimport cython
from libc.stdint cimport uint32_t


cdef enum:
    # One recv() buffer per Relay, shared by all its connections: a read event is copied out of
    # it into one bytes object before any protocol code runs, so it is never held across events.
    RELAY_READ_BUFFER_SIZE = 256 * 1024
    # Events taken per epoll_wait(). More ready connections stay ready (level-triggered) and are
    # served on the next loop iteration, so one busy relay cannot starve the rest of the loop.
    RELAY_MAX_EVENTS = 256
    # Drained output buffers (of the minimum size) a Relay keeps for its connections' next
    # writes: an idle connection holds no output storage, and a busy one no malloc per write.
    RELAY_SPARE_BUFFERS = 64
    # How many more recv() calls a read event makes when one filled the whole buffer.
    RELAY_MAX_EXTRA_READS = 3
    # Connections accepted per readability event of a listening socket.
    RELAY_MAX_ACCEPTS = 64
    # asyncio's default write-buffer limits.
    RELAY_DEFAULT_HIGH_WATER = 64 * 1024
    RELAY_DEFAULT_LOW_WATER = 16 * 1024


cdef class Conn


cdef class FastProtocol:
    # Called with each read event's bytes when the protocol of a Conn is a FastProtocol, as a C
    # call. The default calls self.data_received(data) (a Python call).
    cdef int relay_data(self, bytes data) except -1


@cython.final
cdef class Relay:
    cdef:
        readonly object loop
        int _epfd
        # fd -> Conn of every live connection: dispatch goes through the Conn pointer stored in
        # each epoll_event, and this dict is what keeps those Conns alive.
        dict _conns
        set _listeners
        char *_rbuf
        # True while _on_ready walks a batch of events. Conns that leave _conns meanwhile are
        # parked in _graveyard until the batch ends, so that a later event of the same batch
        # never points at a freed Conn (or at a new Conn allocated at the same address).
        bint _in_batch
        list _graveyard
        # Conns whose writes were held back during the batch (Conn.defer_writes), sent when it
        # ends: back to back, so that a peer woken by the first finds the others ready too.
        list _deferred_conns
        char *_spare[RELAY_SPARE_BUFFERS]
        int _n_spare

    cdef Conn _adopt_fd(self, int fd, object protocol, bint nonblocking)
    cdef int _forget(self, Conn conn) except -1
    cdef int _send_deferred(self) except -1


@cython.final
cdef class Conn:
    cdef:
        readonly int fd
        public object protocol
        readonly bint closing
        # Writes made while the relay handles a batch of events wait for the batch's end.
        public bint defer_writes
        bint _deferred
        Relay _relay
        # The epoll interest currently registered: 0 means not registered at all (a connection
        # with nothing to wait for is removed, so an EPOLLHUP it cannot act on does not spin).
        uint32_t _mask
        bint _reading
        # The peer's EOF was seen (no more reads) / write_eof() was called (no more writes).
        bint _eof
        bint _write_eof
        bint _lost_scheduled
        # Protocol dispatch, recomputed when self.protocol is not _checked_protocol (it is a
        # public field, so Cython and Python code may assign it directly).
        object _checked_protocol
        bint _fast
        object _data_received
        # Pending output: bytes [_out_start, _out_end) of _out (capacity _out_cap).
        char *_out
        Py_ssize_t _out_start
        Py_ssize_t _out_end
        Py_ssize_t _out_cap
        Py_ssize_t _high_water
        Py_ssize_t _low_water
        bint _writing_paused
        object _peername
        object _sockname

    # Same as write() without a Python object; a no-op after close() or abort().
    cdef int send_ptr(self, const char *data, Py_ssize_t n) except -1

    cdef int _on_event(self, uint32_t events) except -1
    cdef int _read_ready(self) except -1
    cdef int _deliver(self, bytes data) except -1
    cdef int _on_eof(self) except -1
    cdef int _write_ready(self) except -1
    cdef int _append_output(self, const char *data, Py_ssize_t n) except -1
    cdef int _release_output(self) except -1
    cdef int _update_mask(self) except -1
    cdef int _check_protocol(self) except -1
    cdef int _maybe_pause_protocol(self) except -1
    cdef int _maybe_resume_protocol(self) except -1
    cdef int _close_fd(self) except -1
    cdef int _schedule_connection_lost(self, object exc) except -1
    cdef int _force_close(self, object exc) except -1
    cdef int _fatal_error(self, object exc, str message) except -1
    cdef int _report(self, object exc, str message) except -1


@cython.final
cdef class Listener:
    cdef:
        Relay _relay
        object _sock
        int _fd
        object _factory
        object _resume_handle
        readonly bint closed

    cdef int _pause(self) except -1
