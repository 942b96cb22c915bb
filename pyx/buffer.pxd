# The interface of the wire-protocol buffer layer (pyx/buffer.pyx): what other extensions cimport
# with ``from multigres._cy.buffer cimport ReadBuffer, WriteBuffer``.
#
# Both classes are final: a final class has no Python subclass that could override a cpdef
# method, so Cython calls cpdef methods as plain C functions (no override check, no dict lookup)
# and the C compiler can inline them inside this module. The codec composes buffers, it never
# subclasses them.
#
# Error returns: methods that return a C value declare how an exception crosses them. ``except -1``
# where -1 can never be a valid result, ``except? -1`` where it can (the caller then checks
# PyErr_Occurred only when it sees -1), ``except NULL`` for pointers; methods that return a
# Python object signal errors with NULL implicitly.

cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t

cdef extern from "pg_endian.h" nogil:
    int16_t pg_load_int16(const char *p)
    int32_t pg_load_int32(const char *p)
    int64_t pg_load_int64(const char *p)
    void pg_store_int16(char *p, int16_t x)
    void pg_store_int32(char *p, int32_t x)
    void pg_store_int64(char *p, int64_t x)


cdef enum:
    # A typed message: 1 type byte + int32 length (which counts itself, not the type byte).
    PG_HEADER_SIZE = 5
    # A startup-phase message (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) has no
    # type byte: int32 length + payload, and the payload starts with an int32 code.
    PG_STARTUP_HEADER_SIZE = 4
    # The default limit on a message's length field: 1 GiB, the size of the largest allocation
    # Postgres itself makes (MaxAllocSize), so nothing Postgres accepts is refused.
    PG_DEFAULT_MAX_MESSAGE_SIZE = 0x40000000
    # Postgres refuses startup packets shorter than length + protocol code, or longer than
    # MAX_STARTUP_PACKET_LENGTH (10000): the client is not authenticated yet, so keep it small.
    PG_MIN_STARTUP_MESSAGE_SIZE = 8
    PG_MAX_STARTUP_MESSAGE_SIZE = 10000


@cython.final
cdef class WriteBuffer:
    cdef:
        char *_buf
        Py_ssize_t _size
        Py_ssize_t _cap
        Py_ssize_t _initial_cap
        # Offset of the open message's length slot, or -1 outside a message; and of its first
        # byte (the type byte of a typed message), to drop it whole if it ends over the limit.
        Py_ssize_t _msg_start
        Py_ssize_t _msg_begin
        int32_t _max_message_size
        # Live buffer-protocol exports (memoryviews): while any exists the storage must neither
        # move (grow) nor be overwritten (reset).
        Py_ssize_t _exports

    cdef int _grow(self, Py_ssize_t extra) except -1

    # Capacity check before a write; inline because every write starts with it and it almost
    # never fails.
    cdef inline int _ensure(self, Py_ssize_t extra) except -1:
        if self._cap - self._size < extra:
            return self._grow(extra)
        return 0

    # Fast paths for Cython callers.
    cdef char *reserve(self, Py_ssize_t n) except NULL
    cdef int write_cbytes(self, const char *data, Py_ssize_t n) except -1

    # Building messages.
    cpdef start_message(self, unsigned char msg_type)
    cpdef start_startup_message(self)
    cpdef end_message(self)
    cpdef write_byte(self, unsigned char value)
    cpdef write_int16(self, int16_t value)
    cpdef write_int32(self, int32_t value)
    cpdef write_int64(self, int64_t value)
    cpdef write_bytes(self, object data)
    cpdef write_cstr(self, bytes value)
    cpdef write_str(self, str value)
    cpdef write_raw(self, object data)

    # Output.
    cpdef bint in_message(self) noexcept
    cpdef bytes getvalue(self)
    cpdef reset(self)


@cython.final
cdef class ReadBuffer:
    cdef:
        # Zero-copy mode: the last chunk fed, framed in place. It is used while nothing older is
        # pending, which is the common case: a read event delivers whole messages.
        bytes _chunk
        # Copy mode: owned storage, used only once a message straddles two chunks.
        char *_own
        Py_ssize_t _own_cap

        # The active region (the chunk's bytes or _own) and how many bytes it holds.
        const char *_data
        Py_ssize_t _len

        # Offsets into the active region. With a current message: _msg_start is its first byte
        # (type byte, or length for a startup message), _rpos the read cursor in its payload,
        # _pos the end of the message (= start of the next one). Without one, all three are equal.
        Py_ssize_t _pos
        Py_ssize_t _msg_start
        Py_ssize_t _rpos

        int32_t _msg_len
        unsigned char _msg_type
        bint _has_msg

        int32_t _max_message_size

    # Internals.
    cdef int _append(self, const char *data, Py_ssize_t n) except -1
    cdef int _end_message(self) noexcept
    cdef int _raise_bad_length(self, int msg_type, int32_t length) except -1
    cdef int _raise_short_read(self, Py_ssize_t n) except -1
    cdef int _current_type(self) noexcept
    cdef Py_ssize_t _scan_run(self, bytes stop_types) except -1

    # Bounds check for a read of n bytes inside the current message (inline: it guards every
    # field read, and the failing branch is out of line).
    cdef inline int _check_read(self, Py_ssize_t n) except -1:
        if self._pos - self._rpos < n:
            return self._raise_short_read(n)
        return 0

    # Receiving and framing.
    cpdef feed_data(self, object data)
    cpdef bint take_message(self) except -1
    cpdef bint take_startup_message(self) except -1
    cpdef discard_message(self)

    # The current message.
    cpdef bint has_message(self) noexcept
    cpdef unsigned char get_message_type(self) noexcept
    cpdef int32_t get_message_length(self) noexcept
    cpdef Py_ssize_t remaining(self) noexcept
    cpdef Py_ssize_t buffered(self) noexcept
    cdef int peek_type(self) noexcept
    cpdef bytes consume_message(self)
    cpdef bytes message_bytes(self)

    # Field reads inside the current message (bounds-checked; ProtocolError on overrun).
    cpdef int read_byte(self) except -1
    cpdef int16_t read_int16(self) except? -1
    cpdef int32_t read_int32(self) except? -1
    cpdef int64_t read_int64(self) except? -1
    cpdef bytes read_bytes(self, Py_ssize_t n)
    cpdef bytes read_cstr(self)
    cpdef str read_str(self)

    # Zero-copy reads for Cython callers: the pointer is valid until the next feed_data(),
    # take_*() or discard_message() call.
    cdef const char *read_ptr(self, Py_ssize_t n) except NULL
    cdef const char *read_cstr_ptr(self, Py_ssize_t *size) except NULL
    cdef const char *message_ptr(self, Py_ssize_t *size) except NULL

    # Forwarding: a run of consecutive complete messages with one copy.
    cpdef bytes take_run(self, bytes stop_types=*)
    cpdef Py_ssize_t take_run_into(self, WriteBuffer out, bytes stop_types=*) except -1
