"""A socket I/O engine for plain TCP connections, with asyncio Transport semantics.

Why: with uvloop, every read event of every connection is one trip through libuv's callback
machinery into Python. The same forwarding done from C costs measurably less CPU per
transaction (on this machine: 1.3x PgBouncer's CPU with uvloop transports, 1.17x like this). So
a ``Relay`` owns its connections' sockets on a private epoll fd, which is registered with the
event loop once (``loop.add_reader(epfd, ...)``); each time it is readable, one callback takes
the ready events with ``epoll_wait(timeout=0)`` and does recv()/send() directly from C.

- ``Relay.adopt(sock, protocol)`` takes over a connected socket and returns a ``Conn``, an
  ``asyncio.Transport`` look-alike: existing ``asyncio.Protocol`` classes run on it unchanged.
- ``Relay.listen(sock, protocol_factory)`` accepts connections and adopts each one.
- ``FastProtocol`` is a base class whose ``relay_data()`` is called as a C function with each read
  event's bytes; Cython subclasses override it, and ``Conn.send_ptr()`` writes without a Python
  object. A chain of both forwards bytes with no Python call at all.

No TLS: to upgrade a connection, ``Conn.detach()`` hands its fd back, to be wrapped in a socket
and given to the event loop. Everything runs on the event loop's thread, like the loop's own
transports.
"""

# Debug checks (internal invariants) compile in only with MULTIGRES_DEBUG=1 (see setup.py).
DEF MG_DEBUG = MULTIGRES_DEBUG

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.errno cimport (
    EAGAIN,
    ECONNABORTED,
    EINTR,
    EMFILE,
    ENFILE,
    ENOBUFS,
    ENOMEM,
    EPERM,
    EPROTO,
    errno,
)
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memmove
from posix.fcntl cimport F_GETFL, F_SETFL, O_NONBLOCK, fcntl
from posix.unistd cimport close

import os
import socket as _socket
import ssl as _ssl


cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass

    enum:
        MSG_NOSIGNAL
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SHUT_WR

    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int accept4(int fd, sockaddr *addr, socklen_t *addrlen, int flags)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int name, const void *value, socklen_t size)

cdef extern from "netinet/in.h":
    enum: IPPROTO_TCP

cdef extern from "netinet/tcp.h":
    enum: TCP_NODELAY


cdef enum:
    # Pending-output storage is allocated at least this big; drained, it goes back to the
    # relay's spares (or is freed, if bigger), so an idle connection holds none.
    _MIN_OUTPUT_CAPACITY = 16 * 1024

# How long a listener stops accepting when the process is out of file descriptors (or the
# kernel out of memory): the backlog keeps the connections meanwhile.
ACCEPT_PAUSE_SECONDS = 0.1
READ_BUFFER_SIZE = RELAY_READ_BUFFER_SIZE
DEFAULT_HIGH_WATER = RELAY_DEFAULT_HIGH_WATER
DEFAULT_LOW_WATER = RELAY_DEFAULT_LOW_WATER


cdef object _os_error(int err):
    # OSError(errno, ...) gives the matching subclass: ConnectionResetError, BrokenPipeError, ...
    return OSError(err, os.strerror(err))


cdef inline bint _would_block(int err) noexcept nogil:
    # EWOULDBLOCK is EAGAIN on Linux, the only system with epoll.
    return err == EAGAIN


cdef inline ssize_t _recv(int fd, char *buf, size_t size) noexcept nogil:
    cdef ssize_t n
    while True:
        n = recv(fd, buf, size, 0)
        if n >= 0 or errno != EINTR:
            return n


cdef inline ssize_t _send(int fd, const char *data, size_t size) noexcept nogil:
    # MSG_NOSIGNAL: a peer that went away gives EPIPE, not a SIGPIPE.
    cdef ssize_t n
    while True:
        n = send(fd, data, size, MSG_NOSIGNAL)
        if n >= 0 or errno != EINTR:
            return n


@cython.auto_pickle(False)
cdef class FastProtocol:
    """A protocol base class with a C-level hook for received data.

    A ``Conn`` whose protocol is a FastProtocol calls ``relay_data(data)`` as a C function with
    each read event's bytes. Cython subclasses override ``relay_data``; the default calls
    ``self.data_received(data)``, so a Python subclass just defines ``data_received``. The other
    protocol methods are the no-ops of ``asyncio.Protocol`` (it is not an ``asyncio.Protocol``
    subclass at runtime: an extension type cannot derive from a Python class).
    """

    cdef int relay_data(self, bytes data) except -1:
        self.data_received(data)
        return 0

    def connection_made(self, transport):
        pass

    def data_received(self, data):
        pass

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        pass

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass


@cython.final
@cython.auto_pickle(False)
cdef class Relay:
    """The I/O engine of one event loop: owns an epoll fd and the connections registered on it.

    ``Relay(loop)`` registers the epoll fd with ``loop.add_reader``; ``close()`` aborts every
    connection, closes every listener and unregisters it. Use it from the loop's thread only.
    """

    def __cinit__(self, loop):
        self._epfd = -1
        self._rbuf = NULL
        self._in_batch = False
        self.loop = loop
        self._conns = {}
        self._listeners = set()
        self._graveyard = []
        self._deferred_conns = []
        self._rbuf = <char *>PyMem_Malloc(RELAY_READ_BUFFER_SIZE)
        if self._rbuf == NULL:
            raise MemoryError()
        self._epfd = epoll_create1(EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise _os_error(errno)
        try:
            loop.add_reader(self._epfd, self._on_ready)
        except BaseException:
            close(self._epfd)
            self._epfd = -1
            raise

    def __dealloc__(self):
        # Only reached without close() when the relay is garbage (its loop is gone): the
        # connections it held are collected with it and close their own fds.
        if self._epfd >= 0:
            close(self._epfd)
            self._epfd = -1
        PyMem_Free(self._rbuf)
        self._rbuf = NULL
        while self._n_spare > 0:
            self._n_spare -= 1
            PyMem_Free(self._spare[self._n_spare])

    def __repr__(self):
        return f"<Relay epfd={self._epfd} connections={len(self._conns)}>"

    @property
    def connections(self):
        """The number of live connections (adopted, and neither closed nor detached)."""
        return len(self._conns)

    @property
    def closed(self):
        return self._epfd < 0

    # -- connections -------------------------------------------------------------------------

    def adopt(self, sock, protocol):
        """Take over a connected socket and return its ``Conn``.

        ``sock`` is a ``socket.socket`` (detached: the relay owns the fd from now on) or an int
        fd. The socket is made non-blocking, with TCP_NODELAY, and read from at once;
        ``protocol.connection_made(conn)`` is called before this returns. If it raises, the fd
        is closed (no ``connection_lost``) and the exception propagates.
        """
        cdef int fd
        if self._epfd < 0:
            raise RuntimeError("the relay is closed")
        if isinstance(sock, _ssl.SSLSocket):
            # Its fd carries TLS records: adopting it would send and read them as plain bytes.
            raise TypeError("adopt() takes plain TCP sockets: the relay does not speak TLS")
        if isinstance(sock, _socket.socket):
            fd = sock.fileno()
        elif isinstance(sock, int):
            fd = sock
        else:
            raise TypeError(f"adopt() takes a socket.socket or an int fd, not {type(sock).__name__}")
        if fd < 0:
            raise ValueError("the socket is closed")
        if fd in self._conns:
            raise ValueError(f"fd {fd} already belongs to a connection of this relay")
        if isinstance(sock, _socket.socket):
            sock.detach()
        return self._adopt_fd(fd, protocol, False)

    cdef Conn _adopt_fd(self, int fd, object protocol, bint nonblocking):
        cdef Conn conn
        cdef int one = 1
        cdef int flags
        cdef int err
        if self._epfd < 0:
            close(fd)
            raise RuntimeError("the relay is closed")
        if not nonblocking:
            flags = fcntl(fd, F_GETFL)
            if flags < 0 or fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0:
                err = errno
                close(fd)
                raise _os_error(err)
        # Nagle's algorithm would hold a small write back until the previous one is acked, and
        # nearly every Postgres message is small. Fails harmlessly on non-TCP sockets (AF_UNIX).
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))

        conn = Conn.__new__(Conn)
        conn.fd = fd
        conn._relay = self
        conn.protocol = protocol
        conn._reading = True
        self._conns[fd] = conn
        try:
            conn._update_mask()
        except BaseException:
            del self._conns[fd]
            conn.fd = -1
            close(fd)
            raise
        try:
            protocol.connection_made(conn)
        except BaseException:
            conn._lost_scheduled = True
            conn.closing = True
            conn._close_fd()
            raise
        return conn

    cdef int _forget(self, Conn conn) except -1:
        del self._conns[conn.fd]
        if self._in_batch:
            # An event of this batch may still point at conn: keep it alive until the batch ends.
            self._graveyard.append(conn)
        return 0

    def listen(self, sock, protocol_factory):
        """Accept connections on a bound, listening socket; adopt each with a new protocol.

        ``protocol_factory()`` is called once per connection. The listener owns ``sock``:
        ``Listener.close()`` (or ``Relay.close()``) closes it.
        """
        cdef Listener listener
        if self._epfd < 0:
            raise RuntimeError("the relay is closed")
        sock.setblocking(False)
        listener = Listener.__new__(Listener)
        listener._relay = self
        listener._sock = sock
        listener._fd = sock.fileno()
        listener._factory = protocol_factory
        self.loop.add_reader(listener._fd, listener._on_readable)
        self._listeners.add(listener)
        return listener

    def close(self):
        """Close every listener, abort every connection, and release the epoll fd.

        Each connection gets ``connection_lost(None)`` from ``loop.call_soon`` (none if the loop
        is already closed). Idempotent.
        """
        cdef Conn conn
        if self._epfd < 0:
            return
        for listener in list(self._listeners):
            listener.close()
        for conn in list(self._conns.values()):
            conn._force_close(None)
        if not self.loop.is_closed():
            self.loop.remove_reader(self._epfd)
        close(self._epfd)
        self._epfd = -1

    # -- the event loop's callback -----------------------------------------------------------

    def _on_ready(self):
        # One call per loop iteration in which any connection is ready. timeout=0: the loop's
        # own poll already waited; this only collects what is ready.
        cdef epoll_event events[RELAY_MAX_EVENTS]
        cdef int n
        cdef int i
        cdef Conn conn
        if self._epfd < 0:
            return
        n = epoll_wait(self._epfd, events, RELAY_MAX_EVENTS, 0)
        if n <= 0:
            if n < 0 and errno != EINTR:
                raise _os_error(errno)
            return
        self._in_batch = True
        try:
            for i in range(n):
                # The event carries the Conn itself, not its fd: a callback earlier in this
                # batch may have closed this conn and adopted a new socket that reuses the fd.
                # A closed conn (kept alive by the graveyard) has fd -1 and is skipped.
                conn = <Conn>events[i].data.ptr
                if conn.fd < 0:
                    continue
                try:
                    conn._on_event(events[i].events)
                except Exception as exc:
                    # Protocol callbacks are guarded inside; this is the net for the relay's own
                    # failures (MemoryError, a failed epoll_ctl): lose this conn, not the loop.
                    conn._fatal_error(exc, "Fatal error in relay event handling")
        finally:
            self._in_batch = False
            if self._deferred_conns:
                self._send_deferred()
            if self._graveyard:
                self._graveyard.clear()

    cdef int _send_deferred(self) except -1:
        cdef list conns = self._deferred_conns
        cdef Conn conn
        self._deferred_conns = []
        for conn in conns:
            conn._deferred = False
            if conn.fd < 0 or conn._out_end == conn._out_start or conn._mask & EPOLLOUT:
                continue
            try:
                conn._write_ready()
            except Exception as exc:
                conn._fatal_error(exc, "Fatal error in relay event handling")
        return 0


@cython.final
@cython.auto_pickle(False)
cdef class Conn:
    """One connection of a ``Relay``: an ``asyncio.Transport`` look-alike, with its semantics.

    Differences from asyncio's socket transport: writes after ``close()`` are ignored (not
    queued); ``get_extra_info('socket')`` is None (the relay owns the fd: use ``detach()`` to
    take it back); ``detach()`` is added.
    """

    def __cinit__(self):
        self.fd = -1
        self._mask = 0
        self._out = NULL
        self._out_start = self._out_end = self._out_cap = 0
        self._high_water = RELAY_DEFAULT_HIGH_WATER
        self._low_water = RELAY_DEFAULT_LOW_WATER

    def __init__(self):
        raise TypeError("Conn objects are made by Relay.adopt() and Relay.listen()")

    def __dealloc__(self):
        # An open fd here means the relay was collected without close(): do not leak it.
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        PyMem_Free(self._out)
        self._out = NULL

    def __repr__(self):
        return (
            f"<Conn fd={self.fd} closing={self.closing} reading={self.is_reading()} "
            f"pending={self._out_end - self._out_start}>"
        )

    # -- writing -----------------------------------------------------------------------------

    cdef int send_ptr(self, const char *data, Py_ssize_t n) except -1:
        cdef ssize_t sent
        if self._write_eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.closing or n <= 0:
            return 0
        if self.defer_writes and self._relay._in_batch:
            self._append_output(data, n)
            if not self._deferred:
                self._deferred = True
                self._relay._deferred_conns.append(self)
            self._maybe_pause_protocol()
            return 0
        if self._out_end == self._out_start:
            # Nothing queued: send now. A reply or a forwarded run of messages almost always
            # fits in the socket buffer, so this one syscall is all the write costs.
            sent = _send(self.fd, data, <size_t>n)
            if sent < 0:
                if not _would_block(errno):
                    self._force_close(_os_error(errno))
                    return 0
                sent = 0
            if sent == n:
                return 0
            data += sent
            n -= sent
        self._append_output(data, n)
        self._update_mask()
        self._maybe_pause_protocol()
        return 0

    def write(self, data):
        """Send ``data`` (bytes-like): at once if possible, the rest when the socket is writable."""
        cdef Py_buffer view
        if PyBytes_CheckExact(data):
            self.send_ptr(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            return
        if not PyObject_CheckBuffer(data):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self.send_ptr(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def writelines(self, list_of_data):
        # One send for the lot (a syscall per item would cost more than the join).
        self.write(b"".join(list_of_data))

    def write_eof(self):
        """Shut down the write side (``shutdown(SHUT_WR)``) once the pending output is sent."""
        if self._write_eof or self.closing:
            return
        self._write_eof = True
        if self._out_end == self._out_start:
            shutdown(self.fd, SHUT_WR)

    def can_write_eof(self):
        return True

    def get_write_buffer_size(self):
        return self._out_end - self._out_start

    def get_write_buffer_limits(self):
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = RELAY_DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    cdef int _append_output(self, const char *data, Py_ssize_t n) except -1:
        cdef Py_ssize_t used = self._out_end - self._out_start
        cdef Py_ssize_t new_cap
        cdef char *new_out
        if self._out_cap - self._out_end < n:
            if self._out_cap - used >= n and self._out_start >= used:
                # Compact: moves `used` bytes to reclaim at least as many already sent, so each
                # byte is moved a bounded number of times however the output is split.
                memmove(self._out, self._out + self._out_start, used)
            else:
                # Grow to twice what is live, so growth too is paid for by the bytes appended.
                new_cap = 2 * (used + n)
                if new_cap < _MIN_OUTPUT_CAPACITY:
                    new_cap = _MIN_OUTPUT_CAPACITY
                if self._out == NULL and new_cap == _MIN_OUTPUT_CAPACITY and self._relay._n_spare:
                    self._relay._n_spare -= 1
                    new_out = self._relay._spare[self._relay._n_spare]
                elif self._out_start == 0:
                    new_out = <char *>PyMem_Realloc(self._out, new_cap)
                    if new_out == NULL:
                        raise MemoryError()
                else:
                    new_out = <char *>PyMem_Malloc(new_cap)
                    if new_out == NULL:
                        raise MemoryError()
                    memcpy(new_out, self._out + self._out_start, used)
                    PyMem_Free(self._out)
                self._out = new_out
                self._out_cap = new_cap
            self._out_start = 0
            self._out_end = used
        memcpy(self._out + self._out_end, data, n)
        self._out_end += n
        if MG_DEBUG:
            _check_conn(self)
        return 0

    cdef int _release_output(self) except -1:
        """The output is drained: give its storage back to the relay's spares (or free it)."""
        cdef Relay relay = self._relay
        if self._out == NULL:
            return 0
        if self._out_cap == _MIN_OUTPUT_CAPACITY and relay._n_spare < RELAY_SPARE_BUFFERS:
            relay._spare[relay._n_spare] = self._out
            relay._n_spare += 1
        else:
            PyMem_Free(self._out)
        self._out = NULL
        self._out_cap = 0
        return 0

    cdef int _write_ready(self) except -1:
        cdef ssize_t sent
        cdef Py_ssize_t left = self._out_end - self._out_start
        sent = _send(self.fd, self._out + self._out_start, <size_t>left)
        if sent < 0:
            if _would_block(errno):
                return 0
            self._force_close(_os_error(errno))
            return 0
        # A short send means the socket buffer is full: a second send would only say EAGAIN.
        self._out_start += sent
        if self._out_start == self._out_end:
            self._out_start = self._out_end = 0
            self._release_output()
        self._maybe_resume_protocol()
        if self.fd < 0:
            return 0
        if self._out_start == self._out_end:
            if self.closing:
                self._close_fd()
                self._schedule_connection_lost(None)
                return 0
            if self._write_eof:
                shutdown(self.fd, SHUT_WR)
        self._update_mask()
        return 0

    cdef int _maybe_pause_protocol(self) except -1:
        if self._writing_paused or self._out_end - self._out_start <= self._high_water:
            return 0
        self._writing_paused = True
        try:
            self.protocol.pause_writing()
        except Exception as exc:
            self._report(exc, "protocol.pause_writing() failed")
        return 0

    cdef int _maybe_resume_protocol(self) except -1:
        if not self._writing_paused or self._out_end - self._out_start > self._low_water:
            return 0
        self._writing_paused = False
        try:
            self.protocol.resume_writing()
        except Exception as exc:
            self._report(exc, "protocol.resume_writing() failed")
        return 0

    # -- reading -----------------------------------------------------------------------------

    def pause_reading(self):
        if self.closing or not self._reading:
            return
        self._reading = False
        self._update_mask()

    def resume_reading(self):
        if self.closing or self._reading:
            return
        self._reading = True
        self._update_mask()

    def is_reading(self):
        return self._reading and not self.closing

    cdef int _on_event(self, uint32_t events) except -1:
        # EPOLLHUP/EPOLLERR are reported whatever the mask: they go to the reader, which sees
        # the EOF or the error from recv(), else to the writer, which sees it from send(). The
        # mask is never 0 while registered, so one of them takes it.
        if events & (EPOLLIN | EPOLLHUP | EPOLLERR) and self._mask & EPOLLIN:
            self._read_ready()
            if self.fd < 0:
                return 0
        if events & (EPOLLOUT | EPOLLHUP | EPOLLERR) and self._out_end > self._out_start:
            self._write_ready()
        return 0

    cdef int _read_ready(self) except -1:
        cdef char *buf = self._relay._rbuf
        cdef ssize_t n
        cdef int err = 0
        cdef int i
        cdef bint eof = False
        cdef bytes data
        cdef list parts
        n = _recv(self.fd, buf, RELAY_READ_BUFFER_SIZE)
        if n < 0:
            if not _would_block(errno):
                self._force_close(_os_error(errno))
            return 0
        if n == 0:
            return self._on_eof()
        data = PyBytes_FromStringAndSize(buf, n)
        if n == RELAY_READ_BUFFER_SIZE:
            # The buffer filled up, so more is probably waiting: take some now, so that a bulk
            # stream reaches the protocol in a few large calls rather than one per iteration.
            parts = [data]
            for i in range(RELAY_MAX_EXTRA_READS):
                n = _recv(self.fd, buf, RELAY_READ_BUFFER_SIZE)
                if n > 0:
                    parts.append(PyBytes_FromStringAndSize(buf, n))
                    if n < RELAY_READ_BUFFER_SIZE:
                        break
                    continue
                if n == 0:
                    eof = True
                elif not _would_block(errno):
                    err = errno
                break
            if len(parts) > 1:
                data = b"".join(parts)
        self._deliver(data)
        if self.fd < 0:
            return 0
        if err:
            # recv() reported the error once and cleared it: act on it now or lose it.
            self._force_close(_os_error(err))
        elif eof and self._mask & EPOLLIN:
            # (While reading is paused the EOF waits: it stays readable, level-triggered.)
            self._on_eof()
        return 0

    cdef int _check_protocol(self) except -1:
        cdef object protocol = self.protocol
        self._checked_protocol = protocol
        self._fast = isinstance(protocol, FastProtocol)
        self._data_received = None if self._fast else protocol.data_received
        return 0

    cdef int _deliver(self, bytes data) except -1:
        try:
            # protocol is a public field: whoever sets it, dispatch follows (one pointer compare).
            if self.protocol is not self._checked_protocol:
                self._check_protocol()
            if self._fast:
                (<FastProtocol>self.protocol).relay_data(data)
            else:
                self._data_received(data)
        except Exception as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        return 0

    cdef int _on_eof(self) except -1:
        self._eof = True
        try:
            eof_received = getattr(self.protocol, "eof_received", None)
            keep_open = eof_received() if eof_received is not None else None
        except Exception as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return 0
        if self.fd < 0:
            return 0
        if keep_open:
            self._update_mask()
        else:
            self.close()
        return 0

    # -- closing -----------------------------------------------------------------------------

    def close(self):
        """Stop reading; close once the pending output is sent. ``connection_lost(None)`` follows
        from ``loop.call_soon``."""
        if self.closing:
            return
        self.closing = True
        if self._out_end == self._out_start:
            self._close_fd()
            self._schedule_connection_lost(None)
        else:
            self._update_mask()

    def abort(self):
        """Close now, dropping the pending output. ``connection_lost(None)`` follows."""
        self._force_close(None)

    def is_closing(self):
        return self.closing

    def detach(self):
        """Stop managing the connection without closing it, and return its fd (now the caller's).

        For handing a socket to the event loop (a TLS upgrade): wrap it with
        ``socket.socket(fileno=fd)``. No ``connection_lost`` is called. Raises RuntimeError if
        output is pending (wait for ``get_write_buffer_size() == 0``) or the connection is closed.
        """
        cdef int fd = self.fd
        if fd < 0:
            raise RuntimeError("the connection is closed")
        if self._out_end != self._out_start:
            raise RuntimeError(
                f"cannot detach with {self._out_end - self._out_start} bytes of output pending"
            )
        if self._mask:
            epoll_ctl(self._relay._epfd, EPOLL_CTL_DEL, fd, NULL)
            self._mask = 0
        self._relay._forget(self)
        self.fd = -1
        self.closing = True
        self._lost_scheduled = True
        PyMem_Free(self._out)
        self._out = NULL
        self._out_cap = 0
        return fd

    cdef int _update_mask(self) except -1:
        cdef uint32_t want = 0
        cdef epoll_event ev
        cdef int op
        if self.fd < 0:
            return 0
        if self._reading and not self.closing and not self._eof:
            want = EPOLLIN
        if self._out_end > self._out_start:
            want |= EPOLLOUT
        if want == self._mask:
            return 0
        # A connection with nothing to wait for leaves the epoll set instead of staying with an
        # empty mask: EPOLLHUP is reported even then, and nobody would act on it (a spin).
        if want == 0:
            op = EPOLL_CTL_DEL
        elif self._mask == 0:
            op = EPOLL_CTL_ADD
        else:
            op = EPOLL_CTL_MOD
        ev.events = want
        ev.data.ptr = <void *>self
        if epoll_ctl(self._relay._epfd, op, self.fd, &ev) < 0:
            raise _os_error(errno)
        self._mask = want
        if MG_DEBUG:
            _check_conn(self)
        return 0

    cdef int _close_fd(self) except -1:
        cdef int fd = self.fd
        if fd < 0:
            return 0
        # Out of the epoll set before close(): a dup of the fd elsewhere would keep the
        # registration (and its events) alive.
        if self._mask:
            epoll_ctl(self._relay._epfd, EPOLL_CTL_DEL, fd, NULL)
            self._mask = 0
        self._relay._forget(self)
        self.fd = -1
        close(fd)
        self._out_start = self._out_end = 0
        PyMem_Free(self._out)
        self._out = NULL
        self._out_cap = 0
        return 0

    cdef int _schedule_connection_lost(self, object exc) except -1:
        if self._lost_scheduled:
            return 0
        self._lost_scheduled = True
        loop = self._relay.loop
        if not loop.is_closed():
            # Never synchronously: the caller may be in the middle of a protocol callback.
            loop.call_soon(self._call_connection_lost, exc)
        return 0

    def _call_connection_lost(self, exc):
        protocol = self.protocol
        try:
            protocol.connection_lost(exc)
        finally:
            # Break the protocol <-> transport cycle, as asyncio does.
            self.protocol = None
            self._checked_protocol = None
            self._data_received = None

    cdef int _force_close(self, object exc) except -1:
        if self.fd < 0:
            return 0
        self.closing = True
        self._close_fd()
        self._schedule_connection_lost(exc)
        return 0

    cdef int _fatal_error(self, object exc, str message) except -1:
        self._report(exc, message)
        self._force_close(exc)
        return 0

    cdef int _report(self, object exc, str message) except -1:
        self._relay.loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self.protocol}
        )
        return 0

    # -- the rest of the Transport interface -------------------------------------------------

    def get_protocol(self):
        return self.protocol

    def set_protocol(self, protocol):
        self.protocol = protocol

    def get_extra_info(self, name, default=None):
        """'peername', 'sockname' (as socket.getpeername() gives them) and 'fd'; no 'socket'."""
        if name == "peername":
            if self._peername is None:
                self._peername = self._address(True)
            return default if self._peername is None else self._peername
        if name == "sockname":
            if self._sockname is None:
                self._sockname = self._address(False)
            return default if self._sockname is None else self._sockname
        if name == "fd":
            return default if self.fd < 0 else self.fd
        return default

    def _address(self, bint peer):
        # A socket object over our fd, without dup, detached before it can close it: Python's
        # own address formatting, for the price of a few syscalls on the first request only.
        if self.fd < 0:
            return None
        try:
            sock = _socket.socket(fileno=self.fd)
        except OSError:
            return None
        try:
            return sock.getpeername() if peer else sock.getsockname()
        except OSError:
            return None
        finally:
            sock.detach()


cdef inline int _check_conn(Conn c) except -1:
    if not (0 <= c._out_start <= c._out_end <= c._out_cap):
        raise AssertionError(
            f"Conn output offsets: start={c._out_start} end={c._out_end} cap={c._out_cap}"
        )
    if c._out_cap and c._out == NULL:
        raise AssertionError("Conn: output capacity without storage")
    if c.fd < 0:
        if c._mask or c._out_end:
            raise AssertionError("Conn: closed, yet registered or holding output")
    elif c._relay._conns.get(c.fd) is not c:
        raise AssertionError(f"Conn: fd {c.fd} is open but not in its relay's table")
    return 0


@cython.final
@cython.auto_pickle(False)
cdef class Listener:
    """Accepts connections on a listening socket for a ``Relay`` (see ``Relay.listen``)."""

    def __init__(self):
        raise TypeError("Listener objects are made by Relay.listen()")

    def __repr__(self):
        return f"<Listener fd={self._fd} closed={self.closed}>"

    def close(self):
        """Stop accepting and close the listening socket. Idempotent."""
        if self.closed:
            return
        self.closed = True
        loop = self._relay.loop
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        elif not loop.is_closed():
            loop.remove_reader(self._fd)
        self._relay._listeners.discard(self)
        self._sock.close()

    def _on_readable(self):
        cdef int i
        cdef int fd
        cdef int err
        cdef Relay relay = self._relay
        # A bounded batch, so that a flood of connections cannot hold the loop.
        for i in range(RELAY_MAX_ACCEPTS):
            if self.closed:
                return
            fd = accept4(self._fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                err = errno
                if _would_block(err):
                    return
                if err == EINTR or err == ECONNABORTED or err == EPROTO or err == EPERM:
                    # Interrupted, or this one connection failed before we took it: next.
                    continue
                if err != EMFILE and err != ENFILE and err != ENOBUFS and err != ENOMEM:
                    relay.loop.call_exception_handler(
                        {"message": "accept() failed", "exception": _os_error(err), "listener": self}
                    )
                # Out of fds or memory (or worse): the backlog keeps the connections, and the
                # socket stays readable, so stop for a while instead of spinning on it.
                self._pause()
                return
            try:
                protocol = self._factory()
            except Exception as exc:
                close(fd)
                relay.loop.call_exception_handler(
                    {"message": "protocol_factory() failed", "exception": exc, "listener": self}
                )
                continue
            try:
                relay._adopt_fd(fd, protocol, True)
            except Exception as exc:
                relay.loop.call_exception_handler(
                    {
                        "message": "Error on transport creation for incoming connection",
                        "exception": exc,
                        "protocol": protocol,
                        "listener": self,
                    }
                )

    cdef int _pause(self) except -1:
        loop = self._relay.loop
        loop.remove_reader(self._fd)
        self._resume_handle = loop.call_later(ACCEPT_PAUSE_SECONDS, self._resume)
        return 0

    def _resume(self):
        self._resume_handle = None
        if not self.closed and not self._relay.closed:
            self._relay.loop.add_reader(self._fd, self._on_readable)
