"""Buffers for the Postgres v3 wire protocol: framing what comes in, building what goes out.

This is the layer under the protocol codec (client and server roles, pooler, gateway). It knows
how messages are framed and how fields are encoded, and nothing about what the messages mean.

- ``ReadBuffer`` takes the chunks a transport delivers and frames messages in place: taking a
  message moves offsets, it creates no Python object and copies nothing. Fields are read from the
  current message with bounds checks; a peer that lies about lengths gets a ``ProtocolError``,
  never a crash. Runs of whole messages can be taken in one copy, for forwarding.
- ``WriteBuffer`` builds any number of messages in one growable buffer (length slots patched when
  a message ends), so a read event is answered with one ``transport.write``.

Postgres framing: a typed message is 1 type byte + int32 length + payload, where the length
counts itself and the payload but not the type byte. The first message of a connection
(StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) has no type byte. All integers are
big-endian.
"""

# Debug checks (internal invariants) compile in only with MULTIGRES_DEBUG=1 (see setup.py):
# ``if MG_DEBUG:`` on a compile-time constant is removed by Cython, so release builds pay nothing.
# DEF is supported by Cython 3.2 without a warning (IF is deprecated, so it is not used).
DEF MG_DEBUG = MULTIGRES_DEBUG

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport INT32_MAX, int16_t, int32_t, int64_t
from libc.string cimport memchr, memcpy, memmove, memset


# The default limit on a message's length field (1 GiB, as Postgres's largest allocation).
DEFAULT_MAX_MESSAGE_SIZE = PG_DEFAULT_MAX_MESSAGE_SIZE
# Startup-phase messages must have a length field in [MIN, MAX], as Postgres requires.
MIN_STARTUP_MESSAGE_SIZE = PG_MIN_STARTUP_MESSAGE_SIZE
MAX_STARTUP_MESSAGE_SIZE = PG_MAX_STARTUP_MESSAGE_SIZE


cdef enum:
    # The smallest owned read storage worth allocating: a straddling message usually comes with
    # the rest of a socket read (up to 64 KiB with uvloop), so tiny buffers would regrow at once.
    _READ_MIN_CAPACITY = 8192
    # Storage above this size (left by one large message) is freed once drained, rather than
    # held for the life of the connection.
    _KEEP_CAPACITY = 1 << 20
    _WRITE_DEFAULT_CAPACITY = 1024
    _WRITE_MIN_CAPACITY = 16


class ProtocolError(Exception):
    """The peer broke the Postgres wire protocol: a bad length, a truncated field, bad UTF-8.

    The connection cannot be trusted past this point: report the error to the peer (SQLSTATE
    ``sqlstate``) and close it.
    """

    # protocol_violation: what Postgres reports for the same faults.
    sqlstate = "08P01"


cdef str _type_repr(int msg_type):
    """How a message type appears in error messages: 'Q' when printable, hex otherwise."""
    if msg_type < 0:
        return "startup message"
    if 0x21 <= msg_type <= 0x7e:
        return f"message '{chr(msg_type)}'"
    return f"message of type 0x{msg_type:02x}"


cdef inline Py_ssize_t _max(Py_ssize_t a, Py_ssize_t b) noexcept:
    return a if a > b else b


@cython.auto_pickle(False)
cdef class ReadBuffer:
    """Frames Postgres messages in place over the chunks fed to it.

    Usage in ``data_received``::

        buf.feed_data(data)
        while buf.take_message():
            t = buf.get_message_type()      # an int: compare with ord("Q") or b"Q"[0]
            ...                             # read fields, or skip: the next take skips the rest

    Messages are framed where they lie. While nothing is pending from an earlier chunk (the usual
    case) the chunk itself is framed and nothing is copied; only a message split across chunks
    makes the buffer copy the unconsumed tail into storage of its own. That storage is compacted
    only when the bytes reclaimed are at least the bytes moved, so each received byte is moved a
    bounded number of times however the stream is split (no quadratic copying).
    """

    def __cinit__(self, Py_ssize_t max_message_size=PG_DEFAULT_MAX_MESSAGE_SIZE):
        if max_message_size < 4 or max_message_size > INT32_MAX:
            raise ValueError(
                f"max_message_size must be between 4 and {INT32_MAX}, not {max_message_size}"
            )
        self._max_message_size = <int32_t>max_message_size
        self._chunk = None
        self._own = NULL
        self._own_cap = 0
        self._data = NULL
        self._len = 0
        self._pos = 0
        self._msg_start = 0
        self._rpos = 0
        self._msg_len = 0
        self._msg_type = 0
        self._has_msg = False

    def __dealloc__(self):
        PyMem_Free(self._own)
        self._own = NULL

    @property
    def max_message_size(self) -> int:
        """The largest accepted value of a message's length field."""
        return self._max_message_size

    # -- receiving ---------------------------------------------------------------------------

    cpdef feed_data(self, object data):
        """Add received bytes (``bytes``, or any object with the buffer protocol).

        A ``bytes`` chunk that arrives while nothing is pending is kept by reference and framed
        in place. Other objects (bytearray, memoryview) are copied, as their owner may reuse them.
        The current message, if any, stays readable.
        """
        cdef Py_buffer view
        cdef Py_ssize_t n
        if PyBytes_CheckExact(data):
            n = PyBytes_GET_SIZE(data)
            if n == 0:
                return
            if self._msg_start == self._len:
                # Nothing pending: adopt the chunk. This is the zero-copy path of nearly every
                # read event, as clients and servers send whole messages.
                self._chunk = <bytes>data
                self._data = PyBytes_AS_STRING(data)
                self._len = n
                self._pos = self._msg_start = self._rpos = 0
                if self._own_cap > _KEEP_CAPACITY:
                    PyMem_Free(self._own)
                    self._own = NULL
                    self._own_cap = 0
            else:
                self._append(PyBytes_AS_STRING(data), n)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                if view.len > 0:
                    self._append(<const char *>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
        if MG_DEBUG:
            _check_read_buffer(self)

    cdef int _append(self, const char *data, Py_ssize_t n) except -1:
        """Copy n bytes after the pending ones, into owned storage (switching to it if needed)."""
        # Everything from the current message's start (or, without one, from the next message)
        # must survive; what precedes it is consumed and may be overwritten.
        cdef Py_ssize_t keep = self._msg_start
        cdef Py_ssize_t pending = self._len - keep
        cdef Py_ssize_t need = pending + n
        cdef Py_ssize_t new_cap
        cdef char *new_own
        cdef bint from_chunk = self._chunk is not None

        if from_chunk or self._own_cap - self._len < n:
            if self._own_cap >= need and (from_chunk or keep >= pending):
                # The storage is big enough. Compacting in place moves `pending` bytes to
                # reclaim `keep` consumed ones, so do it only when keep >= pending: the cost is
                # paid by bytes already consumed, and the total stays linear in the stream.
                if from_chunk:
                    memcpy(self._own, self._data + keep, pending)
                elif pending:
                    memmove(self._own, self._own + keep, pending)
            else:
                # Grow geometrically, to what was received and no more. The declared length of
                # a pending message is not used to reserve ahead: a peer could declare 1 GiB and
                # send a trickle, making us commit memory it never sends.
                new_cap = _max(_max(need, 2 * self._own_cap), _READ_MIN_CAPACITY)
                if not from_chunk and keep == 0:
                    # Nothing consumed to drop: realloc may extend in place (or mremap).
                    new_own = <char *>PyMem_Realloc(self._own, new_cap)
                    if new_own == NULL:
                        raise MemoryError()
                else:
                    # Copy only the pending bytes; realloc would also copy the consumed prefix.
                    new_own = <char *>PyMem_Malloc(new_cap)
                    if new_own == NULL:
                        raise MemoryError()
                    if pending:
                        memcpy(new_own, self._data + keep, pending)
                    PyMem_Free(self._own)
                self._own = new_own
                self._own_cap = new_cap
            self._chunk = None
            self._data = self._own
            self._len = pending
            self._pos -= keep
            self._rpos -= keep
            self._msg_start = 0

        memcpy(self._own + self._len, data, n)
        self._len += n
        return 0

    # -- framing -----------------------------------------------------------------------------

    cdef int _end_message(self) noexcept:
        self._has_msg = False
        self._msg_type = 0
        self._msg_len = 0
        self._msg_start = self._rpos = self._pos
        return 0

    cpdef bint take_message(self) except -1:
        """Make the next typed message current: True if it is complete, False if more bytes are needed.

        Whatever was not read of the previous message is skipped. Raises ``ProtocolError`` as
        soon as a header declares a length below 4 or above ``max_message_size``, without
        waiting for the payload.
        """
        cdef Py_ssize_t p = self._pos
        cdef const char *header
        cdef int32_t length
        self._end_message()
        if self._len - p < PG_HEADER_SIZE:
            return False
        header = self._data + p
        length = pg_load_int32(header + 1)
        if length < 4 or length > self._max_message_size:
            return self._raise_bad_length(<unsigned char>header[0], length)
        if self._len - p - 1 < length:
            return False
        self._msg_type = <unsigned char>header[0]
        self._msg_len = length
        self._has_msg = True
        self._rpos = p + PG_HEADER_SIZE
        self._pos = p + 1 + length
        if MG_DEBUG:
            _check_read_buffer(self)
        return True

    cpdef bint take_startup_message(self) except -1:
        """Make the next untyped (startup-phase) message current; False if more bytes are needed.

        StartupMessage, SSLRequest, GSSENCRequest and CancelRequest have no type byte: the
        payload starts with an int32 code (protocol version or request code), read it with
        ``read_int32()``. ``get_message_type()`` is 0 for these. The length must be between
        MIN_STARTUP_MESSAGE_SIZE and MAX_STARTUP_MESSAGE_SIZE, as Postgres requires.

        After an SSLRequest or GSSENCRequest, check ``buffered() == 0`` before answering: bytes
        sent ahead of the TLS handshake must not be read as if they came over TLS (the
        Postgres fix for CVE-2021-23214).
        """
        cdef Py_ssize_t p = self._pos
        cdef int32_t length
        self._end_message()
        if self._len - p < PG_STARTUP_HEADER_SIZE:
            return False
        length = pg_load_int32(self._data + p)
        if length < PG_MIN_STARTUP_MESSAGE_SIZE or length > PG_MAX_STARTUP_MESSAGE_SIZE:
            return self._raise_bad_length(-1, length)
        if self._len - p < length:
            return False
        self._msg_len = length
        self._has_msg = True
        self._rpos = p + PG_STARTUP_HEADER_SIZE
        self._pos = p + length
        if MG_DEBUG:
            _check_read_buffer(self)
        return True

    cpdef discard_message(self):
        """End the current message (a no-op without one); the next take starts after it."""
        self._end_message()

    cdef int _raise_bad_length(self, int msg_type, int32_t length) except -1:
        if msg_type < 0:
            raise ProtocolError(
                f"invalid startup message length {length}: must be between "
                f"{PG_MIN_STARTUP_MESSAGE_SIZE} and {PG_MAX_STARTUP_MESSAGE_SIZE}"
            )
        if length < 4:
            raise ProtocolError(
                f"invalid length {length} in the header of {_type_repr(msg_type)}: "
                f"must be at least 4"
            )
        raise ProtocolError(
            f"{_type_repr(msg_type)} declares length {length}, over the limit of "
            f"{self._max_message_size} bytes"
        )

    # -- the current message -----------------------------------------------------------------

    cpdef bint has_message(self) noexcept:
        """True while a message is current (after a successful take, until the next one)."""
        return self._has_msg

    cpdef unsigned char get_message_type(self) noexcept:
        """The current message's type byte (an int for Python: ``ord("Z")``); 0 if none."""
        return self._msg_type

    cpdef int32_t get_message_length(self) noexcept:
        """The current message's length field: payload size + 4 (no type byte); 0 if none."""
        return self._msg_len

    cpdef Py_ssize_t remaining(self) noexcept:
        """Bytes of the current message's payload not read yet."""
        return self._pos - self._rpos

    cpdef Py_ssize_t buffered(self) noexcept:
        """Bytes received after the current message (not yet taken as messages)."""
        return self._len - self._pos

    cdef int peek_type(self) noexcept:
        """The type byte of the message after the current one (complete or not), -1 if no
        byte of it is here yet."""
        if self._len - self._pos < 1:
            return -1
        return <unsigned char>self._data[self._pos]

    cpdef bytes consume_message(self):
        """The unread rest of the current payload (all of it if nothing was read); ends the message."""
        cdef bytes payload
        if not self._has_msg:
            raise RuntimeError("consume_message(): there is no current message")
        payload = PyBytes_FromStringAndSize(<char *>self._data + self._rpos, self._pos - self._rpos)
        self._end_message()
        return payload

    cpdef bytes message_bytes(self):
        """The whole current message as on the wire (header included), to forward it."""
        cdef Py_ssize_t size
        cdef const char *start = self.message_ptr(&size)
        return PyBytes_FromStringAndSize(<char *>start, size)

    cdef const char *message_ptr(self, Py_ssize_t *size) except NULL:
        if not self._has_msg:
            raise RuntimeError("message_bytes(): there is no current message")
        size[0] = self._pos - self._msg_start
        return self._data + self._msg_start

    # -- field reads -------------------------------------------------------------------------

    cdef int _raise_short_read(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t payload_size
        if not self._has_msg:
            raise RuntimeError(
                f"cannot read {n} bytes: there is no current message (take one first)"
            )
        payload_size = self._msg_len - 4
        raise ProtocolError(
            f"{_type_repr(self._current_type())} is too short: reading {n} "
            f"byte{'' if n == 1 else 's'} at offset {payload_size - (self._pos - self._rpos)} "
            f"of its {payload_size}-byte payload"
        )

    cdef int _current_type(self) noexcept:
        """The current message's type for error messages; -1 for a startup message."""
        # A typed message spans its type byte plus its length field; a startup message only
        # the length field.
        if self._pos - self._msg_start == self._msg_len:
            return -1
        return self._msg_type

    cpdef int read_byte(self) except -1:
        """Read one byte (0..255)."""
        self._check_read(1)
        self._rpos += 1
        return <unsigned char>self._data[self._rpos - 1]

    cpdef int16_t read_int16(self) except? -1:
        """Read a big-endian signed int16."""
        self._check_read(2)
        self._rpos += 2
        return pg_load_int16(self._data + self._rpos - 2)

    cpdef int32_t read_int32(self) except? -1:
        """Read a big-endian signed int32."""
        self._check_read(4)
        self._rpos += 4
        return pg_load_int32(self._data + self._rpos - 4)

    cpdef int64_t read_int64(self) except? -1:
        """Read a big-endian signed int64."""
        self._check_read(8)
        self._rpos += 8
        return pg_load_int64(self._data + self._rpos - 8)

    cdef const char *read_ptr(self, Py_ssize_t n) except NULL:
        """Advance over n bytes and point at them (no copy)."""
        if n < 0:
            # Lengths come from the wire (a DataRow column is -1 for NULL): the caller must
            # handle -1, and any other negative value is the peer's fault.
            raise ProtocolError(f"invalid negative length {n} in {_type_repr(self._current_type())}")
        if not self._has_msg:
            self._raise_short_read(n)
        self._check_read(n)
        self._rpos += n
        return self._data + self._rpos - n

    cpdef bytes read_bytes(self, Py_ssize_t n):
        """Read n bytes."""
        cdef const char *start = self.read_ptr(n)
        return PyBytes_FromStringAndSize(<char *>start, n)

    cdef const char *read_cstr_ptr(self, Py_ssize_t *size) except NULL:
        """Advance over a NUL-terminated string; point at it, its size (without NUL) in size."""
        cdef const char *start
        cdef const char *nul
        self._check_read(1)
        start = self._data + self._rpos
        nul = <const char *>memchr(start, 0, <size_t>(self._pos - self._rpos))
        if nul == NULL:
            raise ProtocolError(f"unterminated string in {_type_repr(self._current_type())}")
        size[0] = nul - start
        self._rpos += size[0] + 1
        return start

    cpdef bytes read_cstr(self):
        """Read a NUL-terminated string, as bytes without the NUL."""
        cdef Py_ssize_t size
        cdef const char *start = self.read_cstr_ptr(&size)
        return PyBytes_FromStringAndSize(<char *>start, size)

    cpdef str read_str(self):
        """Read a NUL-terminated UTF-8 string (invalid UTF-8 is a ProtocolError)."""
        cdef Py_ssize_t size
        cdef const char *start = self.read_cstr_ptr(&size)
        try:
            return start[:size].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(
                f"invalid UTF-8 in {_type_repr(self._current_type())}: {e}"
            ) from e

    # -- forwarding --------------------------------------------------------------------------

    cdef Py_ssize_t _scan_run(self, bytes stop_types) except -1:
        """End the current message; return the end offset of the run of complete messages after it."""
        # A 256-entry table makes the per-message stop test one load, whatever the set's size.
        cdef unsigned char stops[256]
        cdef const unsigned char *types
        cdef Py_ssize_t i, p
        cdef unsigned char msg_type
        cdef int32_t length
        cdef const char *data = self._data
        memset(stops, 0, sizeof(stops))
        if stop_types is not None:
            types = <const unsigned char *>PyBytes_AS_STRING(stop_types)
            for i in range(PyBytes_GET_SIZE(stop_types)):
                stops[types[i]] = 1
        self._end_message()
        p = self._pos
        while self._len - p >= PG_HEADER_SIZE:
            msg_type = <unsigned char>data[p]
            if stops[msg_type]:
                break
            length = pg_load_int32(data + p + 1)
            if length < 4 or length > self._max_message_size:
                if p > self._pos:
                    # Hand over the valid messages before it; the next take raises, as
                    # take_message() would after delivering them one by one.
                    break
                self._raise_bad_length(msg_type, length)
            if self._len - p - 1 < length:
                break
            p += 1 + length
        return p

    cpdef bytes take_run(self, bytes stop_types=b""):
        """Take the complete messages that follow, up to the first one whose type is in
        ``stop_types`` (not included) or to incomplete data, as one ``bytes`` (one copy).

        Returns b"" when the next message is a stop type or incomplete. Each header is checked
        as by ``take_message()``. Use this to forward what needs no inspection (e.g. DataRows)
        and take the stop message (e.g. ReadyForQuery) with ``take_message()``.
        """
        cdef Py_ssize_t start = self._pos
        cdef Py_ssize_t end = self._scan_run(stop_types)
        cdef bytes run
        if end == start:
            return b""
        run = PyBytes_FromStringAndSize(<char *>self._data + start, end - start)
        self._pos = self._msg_start = self._rpos = end
        if MG_DEBUG:
            _check_read_buffer(self)
        return run

    cpdef Py_ssize_t take_run_into(self, WriteBuffer out, bytes stop_types=b"") except -1:
        """As ``take_run()``, but append the run to ``out`` (the one copy); return its size.

        ``out`` must not be inside a message: a run is whole messages.
        """
        cdef Py_ssize_t start = self._pos
        cdef Py_ssize_t end
        if out is None:
            raise TypeError("take_run_into(): out must be a WriteBuffer, not None")
        if out._msg_start >= 0:
            raise RuntimeError("take_run_into(): the WriteBuffer is inside a message")
        end = self._scan_run(stop_types)
        if end > start:
            out.write_cbytes(self._data + start, end - start)
            self._pos = self._msg_start = self._rpos = end
        if MG_DEBUG:
            _check_read_buffer(self)
        return end - start


@cython.auto_pickle(False)
cdef class WriteBuffer:
    """Builds outgoing messages in one growable buffer.

    Typed message: ``start_message(ord("Z"))``, writes, ``end_message()`` (patches the length).
    Untyped (startup-phase) message: ``start_startup_message()`` ... ``end_message()``.
    Whole pre-framed messages (forwarding): ``write_raw()``. Then send everything at once with
    ``getvalue()`` (a copy), or ``memoryview(buf)`` (no copy; the buffer then refuses to grow
    or reset until the view is released), and ``reset()`` for the next round.
    """

    def __cinit__(
        self,
        Py_ssize_t initial_capacity=_WRITE_DEFAULT_CAPACITY,
        Py_ssize_t max_message_size=PG_DEFAULT_MAX_MESSAGE_SIZE,
    ):
        if initial_capacity < 0:
            raise ValueError(f"initial_capacity must be >= 0, not {initial_capacity}")
        if max_message_size < 4 or max_message_size > INT32_MAX:
            raise ValueError(
                f"max_message_size must be between 4 and {INT32_MAX}, not {max_message_size}"
            )
        self._initial_cap = _max(initial_capacity, _WRITE_MIN_CAPACITY)
        self._buf = <char *>PyMem_Malloc(self._initial_cap)
        if self._buf == NULL:
            raise MemoryError()
        self._cap = self._initial_cap
        self._size = 0
        self._msg_start = -1
        self._msg_begin = 0
        self._max_message_size = <int32_t>max_message_size
        self._exports = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    def __len__(self):
        return self._size

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self._msg_start >= 0:
            raise BufferError("WriteBuffer: cannot export a buffer while a message is open")
        PyBuffer_FillInfo(view, self, self._buf, self._size, 1, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self._exports -= 1

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t new_cap
        cdef char *new_buf
        if self._exports:
            # Moving the storage would leave a live memoryview (maybe held by the transport
            # until the socket drains) pointing at freed memory.
            raise BufferError("WriteBuffer: cannot grow while a memoryview of it is alive")
        new_cap = _max(2 * self._cap, self._size + extra)
        new_buf = <char *>PyMem_Realloc(self._buf, new_cap)
        if new_buf == NULL:
            raise MemoryError()
        self._buf = new_buf
        self._cap = new_cap
        return 0

    # -- fast paths for Cython callers -------------------------------------------------------

    cdef char *reserve(self, Py_ssize_t n) except NULL:
        """Append n bytes to be filled in by the caller; return where they start."""
        if MG_DEBUG:
            if n < 0:
                raise ValueError(f"reserve(): negative size {n}")
        self._ensure(n)
        self._size += n
        return self._buf + self._size - n

    cdef int write_cbytes(self, const char *data, Py_ssize_t n) except -1:
        """Append n bytes from data."""
        if MG_DEBUG:
            if n < 0:
                raise ValueError(f"write_cbytes(): negative size {n}")
        self._ensure(n)
        memcpy(self._buf + self._size, data, n)
        self._size += n
        return 0

    # -- messages ----------------------------------------------------------------------------

    cpdef start_message(self, unsigned char msg_type):
        """Begin a typed message: write the type byte and reserve the length slot."""
        if self._msg_start >= 0:
            raise RuntimeError("start_message(): a message is already open (call end_message())")
        self._ensure(PG_HEADER_SIZE)
        self._buf[self._size] = <char>msg_type
        self._msg_begin = self._size
        self._msg_start = self._size + 1
        self._size += PG_HEADER_SIZE

    cpdef start_startup_message(self):
        """Begin an untyped (startup-phase) message: reserve the length slot."""
        if self._msg_start >= 0:
            raise RuntimeError(
                "start_startup_message(): a message is already open (call end_message())"
            )
        self._ensure(PG_STARTUP_HEADER_SIZE)
        self._msg_begin = self._msg_start = self._size
        self._size += PG_STARTUP_HEADER_SIZE

    cpdef end_message(self):
        """Finish the open message by writing its length.

        A message longer than ``max_message_size`` is dropped from the buffer and raises
        ``ProtocolError``: the peer would refuse it.
        """
        cdef Py_ssize_t length
        if self._msg_start < 0:
            raise RuntimeError("end_message(): no message is open")
        length = self._size - self._msg_start
        if length > self._max_message_size:
            # Drop the whole message, so the buffer holds only complete messages and what was
            # built before it can still be sent.
            self._size = self._msg_begin
            self._msg_start = -1
            raise ProtocolError(
                f"message of {length} bytes is over the limit of {self._max_message_size}"
            )
        pg_store_int32(self._buf + self._msg_start, <int32_t>length)
        self._msg_start = -1
        if MG_DEBUG:
            _check_write_buffer(self)

    cpdef write_byte(self, unsigned char value):
        """Append one byte (0..255)."""
        self._ensure(1)
        self._buf[self._size] = <char>value
        self._size += 1

    cpdef write_int16(self, int16_t value):
        """Append a big-endian int16."""
        self._ensure(2)
        pg_store_int16(self._buf + self._size, value)
        self._size += 2

    cpdef write_int32(self, int32_t value):
        """Append a big-endian int32."""
        self._ensure(4)
        pg_store_int32(self._buf + self._size, value)
        self._size += 4

    cpdef write_int64(self, int64_t value):
        """Append a big-endian int64."""
        self._ensure(8)
        pg_store_int64(self._buf + self._size, value)
        self._size += 8

    cpdef write_bytes(self, object data):
        """Append bytes (or any object with the buffer protocol) as they are."""
        cdef Py_buffer view
        if PyBytes_CheckExact(data):
            self.write_cbytes(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self.write_cbytes(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cpdef write_cstr(self, bytes value):
        """Append a NUL-terminated string; ``value`` must not contain a NUL byte."""
        cdef Py_ssize_t n
        if value is None:
            raise TypeError("write_cstr(): expected bytes, not None")
        n = PyBytes_GET_SIZE(value)
        _write_cstr(self, PyBytes_AS_STRING(value), n)

    cpdef write_str(self, str value):
        """Append a string as NUL-terminated UTF-8; ``value`` must not contain a NUL."""
        cdef Py_ssize_t n
        cdef const char *utf8
        if value is None:
            raise TypeError("write_str(): expected str, not None")
        # The UTF-8 form is cached in the str object (ASCII strings are their own UTF-8):
        # no temporary bytes object.
        utf8 = PyUnicode_AsUTF8AndSize(value, &n)
        _write_cstr(self, utf8, n)

    cpdef write_raw(self, object data):
        """Append whole, already framed messages (forwarding). Not allowed inside a message."""
        if self._msg_start >= 0:
            raise RuntimeError("write_raw(): a message is open; raw data is whole messages")
        self.write_bytes(data)

    # -- output ------------------------------------------------------------------------------

    cpdef bint in_message(self) noexcept:
        """True between start_*message() and end_message()."""
        return self._msg_start >= 0

    cpdef bytes getvalue(self):
        """Everything written since the last reset, as bytes (a copy)."""
        if self._msg_start >= 0:
            raise RuntimeError("getvalue(): a message is open (call end_message())")
        return PyBytes_FromStringAndSize(self._buf, self._size)

    cpdef reset(self):
        """Empty the buffer for the next round, keeping its storage (unless it grew large)."""
        cdef char *small
        if self._exports:
            raise BufferError("WriteBuffer: cannot reset while a memoryview of it is alive")
        self._size = 0
        self._msg_start = -1
        if self._cap > _KEEP_CAPACITY and self._cap > self._initial_cap:
            # One large message (a big forwarded result) should not pin its memory for the
            # life of the connection.
            small = <char *>PyMem_Realloc(self._buf, self._initial_cap)
            if small != NULL:
                self._buf = small
                self._cap = self._initial_cap


cdef int _write_cstr(WriteBuffer buf, const char *data, Py_ssize_t n) except -1:
    # An embedded NUL would end the string early on the other side and turn the rest into
    # other fields: refuse it rather than send a message that parses differently.
    if memchr(data, 0, <size_t>n) != NULL:
        raise ValueError("a string sent in a Postgres message cannot contain a NUL byte")
    buf._ensure(n + 1)
    memcpy(buf._buf + buf._size, data, n)
    buf._buf[buf._size + n] = 0
    buf._size += n + 1
    return 0


def build_message(unsigned char msg_type, payload=b""):
    """One complete typed message as bytes; for constant messages built once at import.

    ``build_message(ord("Z"), b"I")`` is ReadyForQuery with status idle.
    """
    cdef WriteBuffer buf = WriteBuffer(PG_HEADER_SIZE + len(payload))
    buf.start_message(msg_type)
    buf.write_bytes(payload)
    buf.end_message()
    return buf.getvalue()


def build_startup_message(payload):
    """One complete untyped (startup-phase) message as bytes; ``payload`` starts with its code."""
    cdef WriteBuffer buf = WriteBuffer(PG_STARTUP_HEADER_SIZE + len(payload))
    buf.start_startup_message()
    buf.write_bytes(payload)
    buf.end_message()
    return buf.getvalue()


# -- debug checks (called only when MULTIGRES_DEBUG=1; inline so release builds do not warn) -----

cdef inline int _check_read_buffer(ReadBuffer b) except -1:
    if not (0 <= b._msg_start <= b._rpos <= b._pos <= b._len):
        raise AssertionError(
            f"ReadBuffer offsets out of order: msg_start={b._msg_start} rpos={b._rpos} "
            f"pos={b._pos} len={b._len}"
        )
    if not b._has_msg and not (b._msg_start == b._rpos == b._pos):
        raise AssertionError("ReadBuffer: offsets differ without a current message")
    if b._chunk is not None:
        if b._data != PyBytes_AS_STRING(b._chunk) or b._len != PyBytes_GET_SIZE(b._chunk):
            raise AssertionError("ReadBuffer: region does not match the adopted chunk")
    elif b._len and (b._data != b._own or b._len > b._own_cap):
        raise AssertionError("ReadBuffer: region does not match the owned storage")
    return 0


cdef inline int _check_write_buffer(WriteBuffer b) except -1:
    if not (0 <= b._size <= b._cap) or b._msg_start >= b._size:
        raise AssertionError(
            f"WriteBuffer: size={b._size} cap={b._cap} msg_start={b._msg_start}"
        )
    return 0
