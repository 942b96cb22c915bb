"""The Postgres v3 message codec: building, parsing and rewriting messages, on the buffers.

The buffer layer (pyx/buffer.pyx) frames messages and reads fields; this layer knows what the
messages mean, for both roles a pooler plays:

- server role (to clients): Authentication*, ParameterStatus, BackendKeyData, ReadyForQuery,
  ErrorResponse/NoticeResponse, RowDescription, DataRow, CommandComplete, ..., and the startup
  packet parser (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest);
- client role (to Postgres): StartupMessage, SSLRequest, CancelRequest, password and SASL
  messages, Query, and the extended protocol (Parse, Bind, Describe, Execute, Close, Sync, ...).

Builders append to a ``WriteBuffer`` (``write_<message>``), so a read event is answered with one
``transport.write``; ``build_<message>`` returns the message as ``bytes``. Constant messages are
built once, at import. Parsers take a payload (what follows the type byte and length) and
return Python values; anything malformed raises ``ProtocolError`` (SQLSTATE 08P01), never
another exception, whatever the bytes.

Text (names, messages, settings) is given as ``str`` (sent as UTF-8) or ``bytes`` (sent as is)
and parsed to ``str`` with the ``surrogateescape`` error handler: Postgres sends text in the
session's client_encoding, which need not be UTF-8, and bytes that are not UTF-8 survive a parse
and a rebuild unchanged. SQL text and statement/portal names are parsed to ``bytes``: the pooler
forwards and compares them, it never needs them decoded.

Integers are as on the wire: process ids and cancel keys are signed int32, type OIDs unsigned
(0 .. 2**32-1), counts unsigned int16 (0 .. 65535, Postgres's limit on bind parameters).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.stdint cimport INT32_MAX, int16_t, int32_t, int64_t, uint16_t, uint32_t
from libc.string cimport memchr, memcmp, memcpy, memset

from multigres._cy.buffer cimport (
    PG_HEADER_SIZE,
    ReadBuffer,
    WriteBuffer,
    pg_load_int16,
    pg_load_int32,
    pg_store_int16,
    pg_store_int32,
)

from multigres._cy.buffer import ProtocolError


# -- constants (Python-visible) -----------------------------------------------------------------

PROTOCOL_3_0 = PG_PROTOCOL_3_0
CANCEL_REQUEST_CODE = PG_CANCEL_REQUEST_CODE
SSL_REQUEST_CODE = PG_SSL_REQUEST_CODE
GSSENC_REQUEST_CODE = PG_GSSENC_REQUEST_CODE

STARTUP_MESSAGE = PG_STARTUP_MESSAGE
STARTUP_SSL_REQUEST = PG_STARTUP_SSL_REQUEST
STARTUP_GSSENC_REQUEST = PG_STARTUP_GSSENC_REQUEST
STARTUP_CANCEL_REQUEST = PG_STARTUP_CANCEL_REQUEST
STARTUP_UNSUPPORTED = PG_STARTUP_UNSUPPORTED

AUTH_OK = PG_AUTH_OK
AUTH_CLEARTEXT_PASSWORD = PG_AUTH_CLEARTEXT_PASSWORD
AUTH_MD5_PASSWORD = PG_AUTH_MD5_PASSWORD
AUTH_SASL = PG_AUTH_SASL
AUTH_SASL_CONTINUE = PG_AUTH_SASL_CONTINUE
AUTH_SASL_FINAL = PG_AUTH_SASL_FINAL

# ReadyForQuery's transaction status, as ints (byte values) like message types.
TXN_IDLE = ord("I")
TXN_IN_TRANSACTION = ord("T")
TXN_FAILED = ord("E")

# What a Describe or Close names: a prepared statement or a portal.
KIND_STATEMENT = ord("S")
KIND_PORTAL = ord("P")

# The one-byte answers to SSLRequest and GSSENCRequest (not messages: no header).
SSL_ACCEPTED = b"S"
SSL_REFUSED = b"N"

# The prefix of protocol options in a startup packet (answered by NegotiateProtocolVersion).
PROTOCOL_OPTION_PREFIX = "_pq_."

cdef enum:
    # Counts (columns, parameters, formats) are unsigned int16 on the wire.
    _MAX_COUNT = 0xFFFF


# -- errors ---------------------------------------------------------------------------------------


cdef struct _Reader:
    # A bounds-checked cursor over one payload; `what` names the message for error messages.
    const char *start
    const char *p
    const char *end
    const char *what


cdef inline void _reader_init(
    _Reader *r, const char *data, Py_ssize_t size, const char *what
) noexcept:
    r.start = data
    r.p = data
    r.end = data + size
    r.what = what


cdef int _malformed(_Reader *r, str reason) except -1:
    raise ProtocolError(f"malformed {r.what.decode('ascii')}: {reason}")


cdef int _truncated(_Reader *r, Py_ssize_t n) except -1:
    return _malformed(
        r,
        f"truncated: a {n}-byte field at offset {r.p - r.start} overruns its "
        f"{r.end - r.start}-byte payload",
    )


cdef inline int _need(_Reader *r, Py_ssize_t n) except -1:
    if r.end - r.p < n:
        return _truncated(r, n)
    return 0


cdef inline int _get_byte(_Reader *r) except -1:
    _need(r, 1)
    r.p += 1
    return <unsigned char>(r.p - 1)[0]


cdef inline int16_t _get_int16(_Reader *r) except? -1:
    _need(r, 2)
    r.p += 2
    return pg_load_int16(r.p - 2)


cdef inline int _get_count(_Reader *r) except -1:
    _need(r, 2)
    r.p += 2
    return <uint16_t>pg_load_int16(r.p - 2)


cdef inline int32_t _get_int32(_Reader *r) except? -1:
    _need(r, 4)
    r.p += 4
    return pg_load_int32(r.p - 4)


cdef inline int64_t _get_oid(_Reader *r) except -1:
    _need(r, 4)
    r.p += 4
    return <uint32_t>pg_load_int32(r.p - 4)


cdef inline const char *_get_bytes(_Reader *r, Py_ssize_t n) except NULL:
    _need(r, n)
    r.p += n
    return r.p - n


cdef const char *_get_cstr(_Reader *r, Py_ssize_t *size) except NULL:
    cdef const char *start = r.p
    cdef const char *nul
    if r.p == r.end:
        _malformed(r, f"ends at offset {r.p - r.start} where a string was expected")
    nul = <const char *>memchr(start, 0, <size_t>(r.end - start))
    if nul == NULL:
        _malformed(r, f"the string at offset {start - r.start} has no terminating NUL")
    size[0] = nul - start
    r.p = nul + 1
    return start


cdef inline int _expect_end(_Reader *r) except -1:
    if r.p != r.end:
        return _malformed(
            r, f"{r.end - r.p} unexpected byte(s) after the last field, at offset {r.p - r.start}"
        )
    return 0


cdef inline str _text(const char *data, Py_ssize_t size):
    # surrogateescape: never fails, and the bytes come back unchanged when the str is rebuilt.
    return PyUnicode_DecodeUTF8(<char *>data, size, "surrogateescape")


cdef inline str _get_text(_Reader *r):
    cdef Py_ssize_t n
    cdef const char *s = _get_cstr(r, &n)
    return _text(s, n)


cdef inline bytes _get_cbytes(_Reader *r):
    cdef Py_ssize_t n
    cdef const char *s = _get_cstr(r, &n)
    return PyBytes_FromStringAndSize(<char *>s, n)


# -- writing helpers --------------------------------------------------------------------------


cdef inline int _abort_message(WriteBuffer buf) noexcept:
    # Drop a half-built message (an argument failed to convert after start_message), so the
    # buffer keeps only whole messages and the caller can still send what was built before.
    if buf._msg_start >= 0:
        buf._size = buf._msg_begin
        buf._msg_start = -1
    return 0


cdef inline int _check_between_messages(WriteBuffer buf, const char *caller) except -1:
    if buf is None:
        raise TypeError(f"{caller.decode('ascii')}(): buf must be a WriteBuffer, not None")
    if buf._msg_start >= 0:
        raise RuntimeError(f"{caller.decode('ascii')}(): the WriteBuffer is inside a message")
    return 0


cdef object _text_source(object value, const char *what):
    """A str or bytes value as an object whose bytes ``_text_ptr`` can point at."""
    if PyBytes_Check(value):
        return value
    if PyUnicode_Check(value):
        try:
            # Encodes once and caches the UTF-8 in the str (ASCII strings are their own UTF-8).
            PyUnicode_AsUTF8AndSize(value, NULL)
            return value
        except UnicodeEncodeError:
            # Lone surrogates: what parsing non-UTF-8 text with surrogateescape gives.
            return (<str>value).encode("utf-8", "surrogateescape")
    raise TypeError(f"{what.decode('ascii')} must be str or bytes, not {type(value).__name__}")


cdef inline const char *_text_ptr(object source, Py_ssize_t *size) except NULL:
    """Point at the bytes of what ``_text_source`` returned (alive as long as it is)."""
    if PyBytes_Check(source):
        size[0] = PyBytes_GET_SIZE(source)
        return PyBytes_AS_STRING(source)
    return PyUnicode_AsUTF8AndSize(source, size)


cdef int _write_text(WriteBuffer buf, object value, const char *what) except -1:
    """Append a str or bytes value as a NUL-terminated string."""
    cdef Py_ssize_t n
    cdef object source = _text_source(value, what)
    cdef const char *data = _text_ptr(source, &n)
    cdef char *dst
    # An embedded NUL would end the string early and turn the rest into other fields.
    if memchr(data, 0, <size_t>n) != NULL:
        raise ValueError(
            f"{what.decode('ascii')} cannot contain a NUL byte (at offset "
            f"{<const char *>memchr(data, 0, <size_t>n) - data})"
        )
    dst = buf.reserve(n + 1)
    memcpy(dst, data, n)
    dst[n] = 0
    return 0


cdef int _write_sized(WriteBuffer buf, object value) except -1:
    """Append int32 length + bytes (None: length -1), as DataRow and Bind encode values."""
    cdef char *dst
    cdef Py_ssize_t n
    cdef const char *data
    cdef object source
    cdef Py_buffer view
    if value is None:
        dst = buf.reserve(4)
        pg_store_int32(dst, -1)
        return 0
    if PyBytes_CheckExact(value):
        data = PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
    elif PyUnicode_Check(value):
        source = _text_source(value, b"a value")
        data = _text_ptr(source, &n)
    else:
        # bytearray, memoryview, ...: copied while the view is held.
        PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
        try:
            if view.len > INT32_MAX:
                raise ValueError(f"a value of {view.len} bytes is too large for a message")
            dst = buf.reserve(4 + view.len)
            pg_store_int32(dst, <int32_t>view.len)
            memcpy(dst + 4, view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0
    if n > INT32_MAX:
        raise ValueError(f"a value of {n} bytes is too large for a message")
    dst = buf.reserve(4 + n)
    pg_store_int32(dst, <int32_t>n)
    memcpy(dst + 4, data, n)
    return 0


cdef int _write_raw_data(WriteBuffer buf, object data) except -1:
    """Append bytes-like data as they are (no length, no NUL)."""
    if data is None:
        raise TypeError("data must be a bytes-like object, not None")
    buf.write_bytes(data)
    return 0


cdef inline int _write_count(WriteBuffer buf, Py_ssize_t n, const char *what) except -1:
    cdef char *dst
    if n > _MAX_COUNT:
        raise ValueError(f"too many {what.decode('ascii')}: {n} (the protocol allows {_MAX_COUNT})")
    dst = buf.reserve(2)
    pg_store_int16(dst, <int16_t><uint16_t>n)
    return 0


cdef int _write_int16_seq(WriteBuffer buf, object seq, const char *what) except -1:
    """Append uint16 count + int16 items (format codes)."""
    cdef Py_ssize_t n = len(seq)
    cdef Py_ssize_t i = 0
    cdef int16_t v
    _write_count(buf, n, what)
    for item in seq:
        if i == n:
            break
        # Converted before reserving: an item's __index__ runs Python code, which must not
        # find a pointer into the buffer held across it.
        v = item
        pg_store_int16(buf.reserve(2), v)
        i += 1
    if i != n:
        raise ValueError(f"{what.decode('ascii')} changed size while being written")
    return 0


cdef int _write_oid_seq(WriteBuffer buf, object seq, const char *what) except -1:
    """Append uint16 count + uint32 OIDs."""
    cdef Py_ssize_t n = len(seq)
    cdef Py_ssize_t i = 0
    cdef uint32_t v
    _write_count(buf, n, what)
    for item in seq:
        if i == n:
            break
        v = item
        pg_store_int32(buf.reserve(4), <int32_t>v)
        i += 1
    if i != n:
        raise ValueError(f"{what.decode('ascii')} changed size while being written")
    return 0


cdef int _field_code(object key) except -1:
    """An ErrorResponse field key ('M', or the int ord('M')) as its byte."""
    cdef int code
    if PyUnicode_Check(key) and len(<str>key) == 1:
        code = ord(<str>key)
    elif isinstance(key, int):
        code = key
    else:
        raise ValueError(f"an error field code must be one character, not {key!r}")
    if code <= 0 or code > 255:
        raise ValueError(f"invalid error field code {key!r}")
    return code


cdef inline int _type_len(uint32_t oid) noexcept:
    # pg_type.typlen of common types, so that a RowDescription built from (name, type_oid)
    # says what Postgres would; -1 (variable length) for the rest.
    if oid == 16 or oid == 18:          # bool, char
        return 1
    if oid == 21:                        # int2
        return 2
    if oid == 23 or oid == 24 or oid == 26 or oid == 700 or oid == 1082:
        return 4                         # int4, regproc, oid, float4, date
    if oid == 20 or oid == 701 or oid == 1083 or oid == 1114 or oid == 1184 or oid == 3220:
        return 8                         # int8, float8, time, timestamp(tz), pg_lsn
    if oid == 1186 or oid == 2950:       # interval, uuid
        return 16
    if oid == 19:                        # name
        return 64
    return -1


cdef str _byte_repr(int b):
    return repr(chr(b)) if 0x20 <= b < 0x7f else f"0x{b:02x}"


# -- the startup packet ------------------------------------------------------------------------


@cython.final
@cython.auto_pickle(False)
cdef class StartupPacket:
    """What the first packet of a connection asks for (``parse_startup()``).

    ``kind`` is one of STARTUP_MESSAGE, STARTUP_SSL_REQUEST, STARTUP_GSSENC_REQUEST,
    STARTUP_CANCEL_REQUEST, STARTUP_UNSUPPORTED; ``code`` the raw int32 (protocol version or
    request code), ``major``/``minor`` its two halves. A StartupMessage (major 3) carries
    ``params`` (user, database, options, application_name, any setting) and ``options``
    (the ``_pq_.*`` protocol options). If ``minor > 0`` or ``options`` is not empty, answer with
    NegotiateProtocolVersion (minor 0, the option names) before authentication. A
    CancelRequest carries ``pid`` and ``key``.
    """

    def __cinit__(self):
        self.params = {}
        self.options = {}

    @property
    def user(self):
        """The ``user`` parameter, or None."""
        return self.params.get("user")

    @property
    def database(self):
        """The ``database`` parameter (Postgres defaults it to the user name), or None."""
        return self.params.get("database")

    def __repr__(self):
        if self.kind == PG_STARTUP_MESSAGE:
            return (
                f"StartupPacket(startup {self.major}.{self.minor}, params={self.params!r}, "
                f"options={self.options!r})"
            )
        if self.kind == PG_STARTUP_CANCEL_REQUEST:
            return f"StartupPacket(cancel pid={self.pid} key={self.key})"
        if self.kind == PG_STARTUP_SSL_REQUEST:
            return "StartupPacket(SSLRequest)"
        if self.kind == PG_STARTUP_GSSENC_REQUEST:
            return "StartupPacket(GSSENCRequest)"
        return f"StartupPacket(unsupported protocol {self.major}.{self.minor})"


cdef StartupPacket parse_startup_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef StartupPacket pkt = StartupPacket.__new__(StartupPacket)
    cdef int32_t code
    cdef Py_ssize_t n, vn
    cdef const char *name
    cdef const char *value
    _reader_init(&r, data, size, b"startup packet")
    code = _get_int32(&r)
    pkt.code = code
    pkt.major = (<uint32_t>code) >> 16
    pkt.minor = (<uint32_t>code) & 0xFFFF
    if code == PG_SSL_REQUEST_CODE or code == PG_GSSENC_REQUEST_CODE:
        r.what = b"SSLRequest" if code == PG_SSL_REQUEST_CODE else b"GSSENCRequest"
        _expect_end(&r)
        if code == PG_SSL_REQUEST_CODE:
            pkt.kind = PG_STARTUP_SSL_REQUEST
        else:
            pkt.kind = PG_STARTUP_GSSENC_REQUEST
    elif code == PG_CANCEL_REQUEST_CODE:
        r.what = b"CancelRequest"
        pkt.pid = _get_int32(&r)
        pkt.key = _get_int32(&r)
        # Protocol 3.2 (Postgres 18) allows longer keys; we negotiate every client down to 3.0,
        # which has 4-byte keys.
        _expect_end(&r)
        pkt.kind = PG_STARTUP_CANCEL_REQUEST
    elif pkt.major == 3:
        r.what = b"StartupMessage"
        pkt.kind = PG_STARTUP_MESSAGE
        # name\0value\0 pairs, ended by an empty name (a lone NUL, the last byte).
        while True:
            if r.p == r.end:
                _malformed(&r, "missing the terminating NUL after the parameters")
            name = _get_cstr(&r, &n)
            if n == 0:
                break
            if r.p == r.end:
                _malformed(&r, f"parameter {_text(name, n)!r} has no value")
            value = _get_cstr(&r, &vn)
            if n >= 5 and memcmp(name, b"_pq_.", 5) == 0:
                pkt.options[_text(name, n)] = _text(value, vn)
            else:
                pkt.params[_text(name, n)] = _text(value, vn)
        _expect_end(&r)
    else:
        # Protocol 2.0 and older, a future major version, or an unknown 1234.x request: the
        # caller answers with an error (Postgres says "unsupported frontend protocol").
        pkt.kind = PG_STARTUP_UNSUPPORTED
    return pkt


def parse_startup(bytes payload not None):
    """Parse a startup-phase packet's payload (after its length; starts with the int32 code)."""
    return parse_startup_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


# -- server role: builders ---------------------------------------------------------------------


cpdef write_auth(WriteBuffer buf, int32_t code, object data=b""):
    """Authentication request 'R': the int32 code, then the code's data (salt, SASL data)."""
    buf.start_message(b'R')
    try:
        pg_store_int32(buf.reserve(4), code)
        _write_raw_data(buf, data)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_auth_sasl(WriteBuffer buf, object mechanisms):
    """AuthenticationSASL: the mechanisms the server offers (e.g. ["SCRAM-SHA-256"])."""
    buf.start_message(b'R')
    try:
        pg_store_int32(buf.reserve(4), PG_AUTH_SASL)
        for mech in mechanisms:
            _write_text(buf, mech, b"a SASL mechanism")
        buf.write_byte(0)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_parameter_status(WriteBuffer buf, object name, object value):
    """ParameterStatus 'S': a run-time setting the client should know (server_version, ...)."""
    buf.start_message(b'S')
    try:
        _write_text(buf, name, b"a parameter name")
        _write_text(buf, value, b"a parameter value")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_backend_key_data(WriteBuffer buf, int32_t pid, int32_t key):
    """BackendKeyData 'K': the process id and secret key a CancelRequest must quote."""
    cdef char *p
    _check_between_messages(buf, b"write_backend_key_data")
    p = buf.reserve(13)
    p[0] = b'K'
    pg_store_int32(p + 1, 12)
    pg_store_int32(p + 5, pid)
    pg_store_int32(p + 9, key)


cpdef write_ready_for_query(WriteBuffer buf, int status):
    """ReadyForQuery 'Z' with a transaction status: TXN_IDLE, TXN_IN_TRANSACTION, TXN_FAILED."""
    cdef char *p
    if status != b'I' and status != b'T' and status != b'E':
        raise ValueError(
            f"invalid transaction status {_byte_repr(status)}: expected 'I', 'T' or 'E'"
        )
    _check_between_messages(buf, b"write_ready_for_query")
    p = buf.reserve(6)
    p[0] = b'Z'
    pg_store_int32(p + 1, 5)
    p[5] = <char>status


cdef int _write_fields(WriteBuffer buf, unsigned char msg_type, object fields) except -1:
    buf.start_message(msg_type)
    try:
        for key, value in fields.items():
            buf.write_byte(_field_code(key))
            _write_text(buf, value, b"an error field")
        buf.write_byte(0)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()
    return 0


cpdef write_error_response(WriteBuffer buf, object fields):
    """ErrorResponse 'E' from {field letter: text}, in the mapping's order.

    Letters (Postgres's "Error and Notice Message Fields"): S severity (localized), V severity,
    C SQLSTATE, M message, D detail, H hint, P position, p internal position, q internal query,
    W where, s schema, t table, c column, d data type, n constraint, F file, L line, R routine.
    A client needs at least S, V, C and M; ``multigres.wire.errors.PgError`` fills them in order.
    """
    _write_fields(buf, b'E', fields)


cpdef write_notice_response(WriteBuffer buf, object fields):
    """NoticeResponse 'N': the fields of ``write_error_response``, severity NOTICE/WARNING/..."""
    _write_fields(buf, b'N', fields)


cpdef write_row_description(WriteBuffer buf, object columns):
    """RowDescription 'T'. Each column is a tuple, in one of three forms:

    - ``(name, type_oid)``: not from a table, type length from the OID when known, typmod -1,
      text format;
    - ``(name, type_oid, type_len, typmod, format)``;
    - ``(name, table_oid, attnum, type_oid, type_len, typmod, format)``: every wire field, as
      ``parse_row_description`` returns them (type_len None: from the OID).
    """
    cdef Py_ssize_t n = len(columns)
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t m
    cdef uint32_t table_oid, type_oid
    cdef int16_t attnum, type_len, fmt
    cdef int32_t typmod
    cdef char *p
    cdef tuple col
    if n > _MAX_COUNT:
        raise ValueError(f"too many columns: {n} (the protocol allows {_MAX_COUNT})")
    buf.start_message(b'T')
    try:
        pg_store_int16(buf.reserve(2), <int16_t><uint16_t>n)
        for c in columns:
            if i == n:
                break
            col = c if type(c) is tuple else tuple(c)
            m = len(col)
            if m == 2:
                table_oid = 0
                attnum = 0
                type_oid = col[1]
                type_len = _type_len(type_oid)
                typmod = -1
                fmt = 0
            elif m == 5:
                table_oid = 0
                attnum = 0
                type_oid = col[1]
                type_len = _type_len(type_oid) if col[2] is None else col[2]
                typmod = col[3]
                fmt = col[4]
            elif m == 7:
                table_oid = col[1]
                attnum = col[2]
                type_oid = col[3]
                type_len = _type_len(type_oid) if col[4] is None else col[4]
                typmod = col[5]
                fmt = col[6]
            else:
                raise ValueError(
                    f"a column must be (name, type_oid), (name, type_oid, type_len, typmod, "
                    f"format) or the 7 wire fields, not {col!r}"
                )
            _write_text(buf, col[0], b"a column name")
            p = buf.reserve(18)
            pg_store_int32(p, <int32_t>table_oid)
            pg_store_int16(p + 4, attnum)
            pg_store_int32(p + 6, <int32_t>type_oid)
            pg_store_int16(p + 10, type_len)
            pg_store_int32(p + 12, typmod)
            pg_store_int16(p + 16, fmt)
            i += 1
        if i != n:
            raise ValueError("columns changed size while being written")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_data_row(WriteBuffer buf, object values):
    """DataRow 'D': one value per column, bytes (or any bytes-like) as is, str as UTF-8,
    None as NULL."""
    cdef Py_ssize_t n = len(values)
    cdef Py_ssize_t i = 0
    if n > _MAX_COUNT:
        raise ValueError(f"too many columns: {n} (the protocol allows {_MAX_COUNT})")
    buf.start_message(b'D')
    try:
        pg_store_int16(buf.reserve(2), <int16_t><uint16_t>n)
        if type(values) is list:
            for v in <list>values:
                _write_sized(buf, v)
                i += 1
        else:
            for v in values:
                if i == n:
                    break
                _write_sized(buf, v)
                i += 1
        if i != n:
            raise ValueError("values changed size while being written")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_command_complete(WriteBuffer buf, object tag):
    """CommandComplete 'C' with its tag ("SELECT 3", "INSERT 0 1", "BEGIN", ...)."""
    buf.start_message(b'C')
    try:
        _write_text(buf, tag, b"a command tag")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_parameter_description(WriteBuffer buf, object type_oids):
    """ParameterDescription 't': the type OID of each parameter of a prepared statement."""
    buf.start_message(b't')
    try:
        _write_oid_seq(buf, type_oids, b"parameter types")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_notification_response(WriteBuffer buf, int32_t pid, object channel, object payload):
    """NotificationResponse 'A': a NOTIFY on ``channel`` from process ``pid``."""
    buf.start_message(b'A')
    try:
        pg_store_int32(buf.reserve(4), pid)
        _write_text(buf, channel, b"a channel name")
        _write_text(buf, payload, b"a notification payload")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_negotiate_protocol_version(WriteBuffer buf, int32_t newest_minor, object options):
    """NegotiateProtocolVersion 'v': the newest minor version we speak for the requested major,
    and the requested ``_pq_.*`` options we do not recognize."""
    cdef Py_ssize_t n = len(options)
    cdef char *p
    buf.start_message(b'v')
    try:
        p = buf.reserve(8)
        pg_store_int32(p, newest_minor)
        pg_store_int32(p + 4, <int32_t>n)
        for opt in options:
            _write_text(buf, opt, b"a protocol option")
            n -= 1
        if n != 0:
            raise ValueError("options changed size while being written")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_copy_response(
    WriteBuffer buf, int msg_type, int overall_format, object column_formats
):
    """CopyInResponse 'G', CopyOutResponse 'H' or CopyBothResponse 'W' (``msg_type``):
    the overall format (0 text, 1 binary) and each column's format."""
    if msg_type != b'G' and msg_type != b'H' and msg_type != b'W':
        raise ValueError(f"not a copy response type: {_byte_repr(msg_type)}")
    if overall_format != 0 and overall_format != 1:
        raise ValueError(f"invalid copy format {overall_format}: expected 0 or 1")
    buf.start_message(<unsigned char>msg_type)
    try:
        buf.write_byte(overall_format)
        _write_int16_seq(buf, column_formats, b"column formats")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


# -- both roles ---------------------------------------------------------------------------------


cpdef write_empty_message(WriteBuffer buf, int msg_type):
    """A message with no payload: Sync 'S', Flush 'H', Terminate 'X', ParseComplete '1',
    BindComplete '2', CloseComplete '3', NoData 'n', EmptyQueryResponse 'I',
    PortalSuspended 's', CopyDone 'c'."""
    cdef char *p
    if msg_type < 1 or msg_type > 255:
        raise ValueError(f"invalid message type {msg_type}")
    _check_between_messages(buf, b"write_empty_message")
    p = buf.reserve(PG_HEADER_SIZE)
    p[0] = <char>msg_type
    pg_store_int32(p + 1, 4)


cpdef write_copy_data(WriteBuffer buf, object data):
    """CopyData 'd': a chunk of COPY data (bytes-like)."""
    buf.start_message(b'd')
    try:
        _write_raw_data(buf, data)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_copy_fail(WriteBuffer buf, object message):
    """CopyFail 'f': the client aborts a COPY FROM STDIN, with the reason."""
    buf.start_message(b'f')
    try:
        _write_text(buf, message, b"a CopyFail message")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


# -- client role: builders -------------------------------------------------------------------


cpdef write_startup_message(WriteBuffer buf, object params, int minor=0):
    """StartupMessage for protocol 3.``minor``: {name: value}, ``user`` at least."""
    if minor < 0 or minor > 0xFFFF:
        raise ValueError(f"invalid protocol minor version {minor}")
    buf.start_startup_message()
    try:
        pg_store_int32(buf.reserve(4), <int32_t>(PG_PROTOCOL_3_0 | minor))
        for name, value in params.items():
            if not name:
                raise ValueError("a startup parameter name cannot be empty")
            _write_text(buf, name, b"a startup parameter name")
            _write_text(buf, value, b"a startup parameter value")
        buf.write_byte(0)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_ssl_request(WriteBuffer buf):
    """SSLRequest: asks the server to start TLS (the answer is one byte, 'S' or 'N')."""
    cdef char *p
    _check_between_messages(buf, b"write_ssl_request")
    p = buf.reserve(8)
    pg_store_int32(p, 8)
    pg_store_int32(p + 4, PG_SSL_REQUEST_CODE)


cpdef write_cancel_request(WriteBuffer buf, int32_t pid, int32_t key):
    """CancelRequest, sent on a new connection: cancel what process ``pid`` runs."""
    cdef char *p
    _check_between_messages(buf, b"write_cancel_request")
    p = buf.reserve(16)
    pg_store_int32(p, 16)
    pg_store_int32(p + 4, PG_CANCEL_REQUEST_CODE)
    pg_store_int32(p + 8, pid)
    pg_store_int32(p + 12, key)


cpdef write_password_message(WriteBuffer buf, object password):
    """PasswordMessage 'p' (cleartext, or "md5" + hex digest)."""
    buf.start_message(b'p')
    try:
        _write_text(buf, password, b"a password")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_sasl_initial_response(WriteBuffer buf, object mechanism, object data):
    """SASLInitialResponse 'p': the chosen mechanism and its first message (None: no data)."""
    buf.start_message(b'p')
    try:
        _write_text(buf, mechanism, b"a SASL mechanism")
        _write_sized(buf, data)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_sasl_response(WriteBuffer buf, object data):
    """SASLResponse 'p': the next client message of the SASL exchange."""
    buf.start_message(b'p')
    try:
        _write_raw_data(buf, data)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_query(WriteBuffer buf, object sql):
    """Query 'Q': simple-protocol SQL (several statements allowed)."""
    buf.start_message(b'Q')
    try:
        _write_text(buf, sql, b"SQL text")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_parse(WriteBuffer buf, object name, object sql, object param_oids=()):
    """Parse 'P': prepare ``sql`` as statement ``name`` ("" is the unnamed statement), with
    parameter type OIDs (0 or missing: let the server infer)."""
    buf.start_message(b'P')
    try:
        _write_text(buf, name, b"a statement name")
        _write_text(buf, sql, b"SQL text")
        _write_oid_seq(buf, param_oids, b"parameter types")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_bind(
    WriteBuffer buf,
    object portal,
    object statement,
    object param_formats,
    object params,
    object result_formats=(),
):
    """Bind 'B': bind ``params`` (bytes/str/None) to ``statement`` as ``portal``.

    Formats (0 text, 1 binary): none (all text), one (for all), or one per parameter/column.
    """
    cdef Py_ssize_t n = len(params)
    cdef Py_ssize_t i = 0
    buf.start_message(b'B')
    try:
        _write_text(buf, portal, b"a portal name")
        _write_text(buf, statement, b"a statement name")
        _write_int16_seq(buf, param_formats, b"parameter formats")
        _write_count(buf, n, b"parameters")
        for v in params:
            if i == n:
                break
            _write_sized(buf, v)
            i += 1
        if i != n:
            raise ValueError("params changed size while being written")
        _write_int16_seq(buf, result_formats, b"result formats")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cdef int _check_kind(int kind) except -1:
    if kind != b'S' and kind != b'P':
        raise ValueError(
            f"invalid kind {_byte_repr(kind)}: expected ord('S') (statement) or ord('P') (portal)"
        )
    return 0


cpdef write_describe(WriteBuffer buf, int kind, object name):
    """Describe 'D' of a statement (kind ord('S')) or portal (ord('P'))."""
    _check_kind(kind)
    buf.start_message(b'D')
    try:
        buf.write_byte(kind)
        _write_text(buf, name, b"a statement or portal name")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_execute(WriteBuffer buf, object portal, int32_t max_rows=0):
    """Execute 'E': run ``portal``, returning at most ``max_rows`` rows (0: all)."""
    buf.start_message(b'E')
    try:
        _write_text(buf, portal, b"a portal name")
        pg_store_int32(buf.reserve(4), max_rows)
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


cpdef write_close(WriteBuffer buf, int kind, object name):
    """Close 'C' of a statement (kind ord('S')) or portal (ord('P'))."""
    _check_kind(kind)
    buf.start_message(b'C')
    try:
        buf.write_byte(kind)
        _write_text(buf, name, b"a statement or portal name")
    except BaseException:
        _abort_message(buf)
        raise
    buf.end_message()


# -- build_*: the same messages as bytes ---------------------------------------------------------
#
# One scratch WriteBuffer serves every build_* call (no allocation per message); a nested call
# (a value's conversion re-entering the codec) gets a fresh buffer.

cdef WriteBuffer _scratch = WriteBuffer(4096)
cdef bint _scratch_busy = False


cdef inline WriteBuffer _acquire():
    global _scratch_busy
    if _scratch_busy:
        return WriteBuffer(256)
    _scratch_busy = True
    _scratch.reset()
    return _scratch


cdef inline int _release(WriteBuffer buf) noexcept:
    global _scratch_busy
    if buf is _scratch:
        _scratch_busy = False
    return 0


def build_auth(int32_t code, data=b""):
    """An Authentication request 'R' as bytes; see the AUTH_* codes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_auth(b, code, data)
        return b.getvalue()
    finally:
        _release(b)


def build_auth_md5_password(salt):
    """AuthenticationMD5Password with its 4-byte salt."""
    if len(salt) != 4:
        raise ValueError(f"an MD5 salt is 4 bytes, not {len(salt)}")
    return build_auth(PG_AUTH_MD5_PASSWORD, salt)


def build_auth_sasl(mechanisms):
    """AuthenticationSASL offering ``mechanisms`` (e.g. ["SCRAM-SHA-256"])."""
    cdef WriteBuffer b = _acquire()
    try:
        write_auth_sasl(b, mechanisms)
        return b.getvalue()
    finally:
        _release(b)


def build_auth_sasl_continue(data):
    """AuthenticationSASLContinue with the server's SASL message."""
    return build_auth(PG_AUTH_SASL_CONTINUE, data)


def build_auth_sasl_final(data):
    """AuthenticationSASLFinal with the server's final SASL message."""
    return build_auth(PG_AUTH_SASL_FINAL, data)


def build_parameter_status(name, value):
    """ParameterStatus 'S' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_parameter_status(b, name, value)
        return b.getvalue()
    finally:
        _release(b)


def build_backend_key_data(int32_t pid, int32_t key):
    """BackendKeyData 'K' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_backend_key_data(b, pid, key)
        return b.getvalue()
    finally:
        _release(b)


def build_ready_for_query(int status):
    """ReadyForQuery 'Z' as bytes (one of the prebuilt READY_FOR_QUERY_*_MSG)."""
    if status == b'I':
        return READY_FOR_QUERY_IDLE_MSG
    if status == b'T':
        return READY_FOR_QUERY_IN_TRANSACTION_MSG
    if status == b'E':
        return READY_FOR_QUERY_FAILED_MSG
    raise ValueError(f"invalid transaction status {_byte_repr(status)}: expected 'I', 'T' or 'E'")


def build_error_response(fields):
    """ErrorResponse 'E' as bytes; see ``write_error_response``."""
    cdef WriteBuffer b = _acquire()
    try:
        write_error_response(b, fields)
        return b.getvalue()
    finally:
        _release(b)


def build_notice_response(fields):
    """NoticeResponse 'N' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_notice_response(b, fields)
        return b.getvalue()
    finally:
        _release(b)


def build_row_description(columns):
    """RowDescription 'T' as bytes; see ``write_row_description``."""
    cdef WriteBuffer b = _acquire()
    try:
        write_row_description(b, columns)
        return b.getvalue()
    finally:
        _release(b)


def build_data_row(values):
    """DataRow 'D' as bytes; see ``write_data_row``."""
    cdef WriteBuffer b = _acquire()
    try:
        write_data_row(b, values)
        return b.getvalue()
    finally:
        _release(b)


def build_command_complete(tag):
    """CommandComplete 'C' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_command_complete(b, tag)
        return b.getvalue()
    finally:
        _release(b)


def build_parameter_description(type_oids):
    """ParameterDescription 't' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_parameter_description(b, type_oids)
        return b.getvalue()
    finally:
        _release(b)


def build_notification_response(int32_t pid, channel, payload):
    """NotificationResponse 'A' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_notification_response(b, pid, channel, payload)
        return b.getvalue()
    finally:
        _release(b)


def build_negotiate_protocol_version(int32_t newest_minor, options=()):
    """NegotiateProtocolVersion 'v' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_negotiate_protocol_version(b, newest_minor, options)
        return b.getvalue()
    finally:
        _release(b)


def build_copy_response(int msg_type, int overall_format, column_formats):
    """CopyInResponse/CopyOutResponse/CopyBothResponse as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_copy_response(b, msg_type, overall_format, column_formats)
        return b.getvalue()
    finally:
        _release(b)


def build_copy_data(data):
    """CopyData 'd' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_copy_data(b, data)
        return b.getvalue()
    finally:
        _release(b)


def build_copy_fail(message):
    """CopyFail 'f' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_copy_fail(b, message)
        return b.getvalue()
    finally:
        _release(b)


def build_startup_message(params, int minor=0):
    """StartupMessage as bytes (not to be confused with ``buffer.build_startup_message``,
    which frames a ready-made payload)."""
    cdef WriteBuffer b = _acquire()
    try:
        write_startup_message(b, params, minor)
        return b.getvalue()
    finally:
        _release(b)


def build_cancel_request(int32_t pid, int32_t key):
    """CancelRequest as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_cancel_request(b, pid, key)
        return b.getvalue()
    finally:
        _release(b)


def build_password_message(password):
    """PasswordMessage 'p' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_password_message(b, password)
        return b.getvalue()
    finally:
        _release(b)


def build_sasl_initial_response(mechanism, data):
    """SASLInitialResponse 'p' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_sasl_initial_response(b, mechanism, data)
        return b.getvalue()
    finally:
        _release(b)


def build_sasl_response(data):
    """SASLResponse 'p' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_sasl_response(b, data)
        return b.getvalue()
    finally:
        _release(b)


def build_query(sql):
    """Query 'Q' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_query(b, sql)
        return b.getvalue()
    finally:
        _release(b)


def build_parse(name, sql, param_oids=()):
    """Parse 'P' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_parse(b, name, sql, param_oids)
        return b.getvalue()
    finally:
        _release(b)


def build_bind(portal, statement, param_formats, params, result_formats=()):
    """Bind 'B' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_bind(b, portal, statement, param_formats, params, result_formats)
        return b.getvalue()
    finally:
        _release(b)


def build_describe(int kind, name):
    """Describe 'D' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_describe(b, kind, name)
        return b.getvalue()
    finally:
        _release(b)


def build_execute(portal, int32_t max_rows=0):
    """Execute 'E' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_execute(b, portal, max_rows)
        return b.getvalue()
    finally:
        _release(b)


def build_close(int kind, name):
    """Close 'C' as bytes."""
    cdef WriteBuffer b = _acquire()
    try:
        write_close(b, kind, name)
        return b.getvalue()
    finally:
        _release(b)


cdef bytes _build_ready_for_query(int status):
    cdef WriteBuffer b = WriteBuffer(6)
    write_ready_for_query(b, status)
    return b.getvalue()


cdef bytes _build_empty(int msg_type):
    cdef WriteBuffer b = WriteBuffer(PG_HEADER_SIZE)
    write_empty_message(b, msg_type)
    return b.getvalue()


def build_empty_message(int msg_type):
    """A message with no payload, as bytes (see ``write_empty_message``)."""
    return _build_empty(msg_type)


# Constant messages, built once.
AUTHENTICATION_OK_MSG = build_auth(PG_AUTH_OK)
AUTHENTICATION_CLEARTEXT_PASSWORD_MSG = build_auth(PG_AUTH_CLEARTEXT_PASSWORD)
READY_FOR_QUERY_IDLE_MSG = _build_ready_for_query(b'I')
READY_FOR_QUERY_IN_TRANSACTION_MSG = _build_ready_for_query(b'T')
READY_FOR_QUERY_FAILED_MSG = _build_ready_for_query(b'E')
EMPTY_QUERY_RESPONSE_MSG = _build_empty(b'I')
NO_DATA_MSG = _build_empty(b'n')
PARSE_COMPLETE_MSG = _build_empty(b'1')
BIND_COMPLETE_MSG = _build_empty(b'2')
CLOSE_COMPLETE_MSG = _build_empty(b'3')
PORTAL_SUSPENDED_MSG = _build_empty(b's')
COPY_DONE_MSG = _build_empty(b'c')
SYNC_MSG = _build_empty(b'S')
FLUSH_MSG = _build_empty(b'H')
TERMINATE_MSG = _build_empty(b'X')


cdef bytes _build_request(int32_t code):
    cdef WriteBuffer b = WriteBuffer(8)
    b.start_startup_message()
    b.write_int32(code)
    b.end_message()
    return b.getvalue()


SSL_REQUEST_MSG = _build_request(PG_SSL_REQUEST_CODE)
GSSENC_REQUEST_MSG = _build_request(PG_GSSENC_REQUEST_CODE)


# -- parsers: messages from Postgres -------------------------------------------------------------


cdef tuple parse_authentication_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t code
    cdef const char *rest
    _reader_init(&r, data, size, b"Authentication request")
    code = _get_int32(&r)
    rest = r.p
    # The codes with a fixed layout are checked; the others carry data for their mechanism.
    if code == PG_AUTH_OK or code == PG_AUTH_CLEARTEXT_PASSWORD:
        _expect_end(&r)
    elif code == PG_AUTH_MD5_PASSWORD:
        _get_bytes(&r, 4)
        _expect_end(&r)
    return (code, PyBytes_FromStringAndSize(<char *>rest, r.end - rest))


def parse_authentication(bytes payload not None):
    """Authentication request 'R' -> (code, data): data is the rest (salt, SASL message)."""
    return parse_authentication_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


def parse_auth_sasl_mechanisms(bytes data not None):
    """The data of AuthenticationSASL (code 10) -> the mechanisms offered, in order."""
    cdef _Reader r
    cdef list mechanisms = []
    cdef Py_ssize_t n
    cdef const char *s
    _reader_init(&r, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), b"AuthenticationSASL")
    while True:
        if r.p == r.end:
            _malformed(&r, "missing the terminating NUL after the mechanisms")
        s = _get_cstr(&r, &n)
        if n == 0:
            break
        mechanisms.append(_text(s, n))
    _expect_end(&r)
    return mechanisms


cdef tuple parse_parameter_status_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"ParameterStatus")
    name = _get_text(&r)
    value = _get_text(&r)
    _expect_end(&r)
    return (name, value)


def parse_parameter_status(bytes payload not None):
    """ParameterStatus 'S' -> (name, value)."""
    return parse_parameter_status_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_backend_key_data_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t pid, key
    _reader_init(&r, data, size, b"BackendKeyData")
    pid = _get_int32(&r)
    key = _get_int32(&r)
    _expect_end(&r)
    return (pid, key)


def parse_backend_key_data(bytes payload not None):
    """BackendKeyData 'K' -> (pid, key) (protocol 3.0: a 4-byte key)."""
    return parse_backend_key_data_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef int parse_ready_for_query_ptr(const char *data, Py_ssize_t size) except -1:
    cdef _Reader r
    cdef int status
    _reader_init(&r, data, size, b"ReadyForQuery")
    status = _get_byte(&r)
    _expect_end(&r)
    if status != b'I' and status != b'T' and status != b'E':
        _malformed(&r, f"invalid transaction status {_byte_repr(status)}")
    return status


def parse_ready_for_query(bytes payload not None):
    """ReadyForQuery 'Z' -> the transaction status: TXN_IDLE, TXN_IN_TRANSACTION or TXN_FAILED."""
    return parse_ready_for_query_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef dict _parse_fields(const char *data, Py_ssize_t size, const char *what):
    cdef _Reader r
    cdef dict fields = {}
    cdef int code
    _reader_init(&r, data, size, what)
    while True:
        if r.p == r.end:
            _malformed(&r, "missing the terminating NUL after the fields")
        code = _get_byte(&r)
        if code == 0:
            break
        fields[chr(code)] = _get_text(&r)
    _expect_end(&r)
    return fields


cdef dict parse_error_response_ptr(const char *data, Py_ssize_t size):
    return _parse_fields(data, size, b"ErrorResponse")


def parse_error_response(bytes payload not None):
    """ErrorResponse 'E' -> {field letter: text} (see ``write_error_response``)."""
    return _parse_fields(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), b"ErrorResponse")


def parse_notice_response(bytes payload not None):
    """NoticeResponse 'N' -> {field letter: text}."""
    return _parse_fields(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), b"NoticeResponse")


cdef tuple parse_notification_response_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t pid
    _reader_init(&r, data, size, b"NotificationResponse")
    pid = _get_int32(&r)
    channel = _get_text(&r)
    payload = _get_text(&r)
    _expect_end(&r)
    return (pid, channel, payload)


def parse_notification_response(bytes payload not None):
    """NotificationResponse 'A' -> (pid, channel, payload)."""
    return parse_notification_response_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef str parse_command_complete_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"CommandComplete")
    tag = _get_text(&r)
    _expect_end(&r)
    return tag


def parse_command_complete(bytes payload not None):
    """CommandComplete 'C' -> its tag ("SELECT 3", "INSERT 0 1", ...)."""
    return parse_command_complete_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef list parse_row_description_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int n, i
    cdef list columns
    cdef const char *f
    _reader_init(&r, data, size, b"RowDescription")
    n = _get_count(&r)
    columns = []
    for i in range(n):
        name = _get_text(&r)
        f = _get_bytes(&r, 18)
        columns.append((
            name,
            <uint32_t>pg_load_int32(f),     # table OID (0: not a table column)
            pg_load_int16(f + 4),           # column attribute number
            <uint32_t>pg_load_int32(f + 6), # type OID
            pg_load_int16(f + 10),          # type length (pg_type.typlen)
            pg_load_int32(f + 12),          # type modifier
            pg_load_int16(f + 16),          # format code
        ))
    _expect_end(&r)
    return columns


def parse_row_description(bytes payload not None):
    """RowDescription 'T' -> [(name, table_oid, attnum, type_oid, type_len, typmod, format)]."""
    return parse_row_description_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef list _parse_values(_Reader *r, int n):
    cdef list values = []
    cdef int i
    cdef int32_t length
    cdef const char *v
    for i in range(n):
        length = _get_int32(r)
        if length == -1:
            values.append(None)
        elif length < 0:
            _malformed(r, f"invalid value length {length} at offset {r.p - 4 - r.start}")
        else:
            v = _get_bytes(r, length)
            values.append(PyBytes_FromStringAndSize(<char *>v, length))
    return values


cdef list parse_data_row_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef list values
    _reader_init(&r, data, size, b"DataRow")
    values = _parse_values(&r, _get_count(&r))
    _expect_end(&r)
    return values


def parse_data_row(bytes payload not None):
    """DataRow 'D' -> [bytes or None (NULL)], one per column."""
    return parse_data_row_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef list _parse_oids(_Reader *r):
    cdef int n = _get_count(r)
    cdef int i
    cdef list oids = []
    for i in range(n):
        oids.append(_get_oid(r))
    return oids


cdef list parse_parameter_description_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"ParameterDescription")
    oids = _parse_oids(&r)
    _expect_end(&r)
    return oids


def parse_parameter_description(bytes payload not None):
    """ParameterDescription 't' -> [type OID of each parameter]."""
    return parse_parameter_description_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_negotiate_protocol_version_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t minor, n, i
    cdef list options = []
    _reader_init(&r, data, size, b"NegotiateProtocolVersion")
    minor = _get_int32(&r)
    n = _get_int32(&r)
    if n < 0:
        _malformed(&r, f"negative option count {n}")
    # Each option takes at least one byte: a count the payload cannot hold fails at the first
    # missing string, so a huge count costs nothing.
    for i in range(n):
        options.append(_get_text(&r))
    _expect_end(&r)
    return (minor, options)


def parse_negotiate_protocol_version(bytes payload not None):
    """NegotiateProtocolVersion 'v' -> (newest minor version, [unrecognized options])."""
    return parse_negotiate_protocol_version_ptr(
        PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload)
    )


cdef tuple parse_copy_response_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int overall, n, i
    cdef list formats = []
    _reader_init(&r, data, size, b"copy response")
    overall = _get_byte(&r)
    n = _get_count(&r)
    for i in range(n):
        formats.append(_get_int16(&r))
    _expect_end(&r)
    return (overall, formats)


def parse_copy_response(bytes payload not None):
    """CopyInResponse 'G' / CopyOutResponse 'H' / CopyBothResponse 'W' ->
    (overall format, [column formats])."""
    return parse_copy_response_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


# -- parsers: messages from clients ------------------------------------------------------------


cdef bytes parse_query_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"Query")
    sql = _get_cbytes(&r)
    _expect_end(&r)
    return sql


def parse_query(bytes payload not None):
    """Query 'Q' -> the SQL text (bytes, in the client's encoding)."""
    return parse_query_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_parse_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"Parse")
    name = _get_cbytes(&r)
    query = _get_cbytes(&r)
    oids = _parse_oids(&r)
    _expect_end(&r)
    return (name, query, oids)


def parse_parse(bytes payload not None):
    """Parse 'P' -> (statement name, SQL text, [parameter type OIDs]); names and SQL as bytes."""
    return parse_parse_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_bind_header_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"Bind")
    portal = _get_cbytes(&r)
    statement = _get_cbytes(&r)
    return (portal, statement)


def parse_bind_header(bytes payload not None):
    """Bind 'B' -> (portal, statement), without reading the parameters."""
    return parse_bind_header_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef list _parse_formats(_Reader *r):
    cdef int n = _get_count(r)
    cdef int i
    cdef list formats = []
    for i in range(n):
        formats.append(_get_int16(r))
    return formats


cdef tuple parse_bind_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"Bind")
    portal = _get_cbytes(&r)
    statement = _get_cbytes(&r)
    param_formats = _parse_formats(&r)
    params = _parse_values(&r, _get_count(&r))
    result_formats = _parse_formats(&r)
    _expect_end(&r)
    return (portal, statement, param_formats, params, result_formats)


def parse_bind(bytes payload not None):
    """Bind 'B' -> (portal, statement, [param formats], [params: bytes or None],
    [result formats])."""
    return parse_bind_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_describe_or_close_ptr(int msg_type, const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int kind
    _reader_init(&r, data, size, b"Describe" if msg_type == b'D' else b"Close")
    kind = _get_byte(&r)
    if kind != b'S' and kind != b'P':
        _malformed(&r, f"invalid kind {_byte_repr(kind)}: expected 'S' or 'P'")
    name = _get_cbytes(&r)
    _expect_end(&r)
    return (kind, name)


def parse_describe(bytes payload not None):
    """Describe 'D' -> (kind: KIND_STATEMENT or KIND_PORTAL, name)."""
    return parse_describe_or_close_ptr(b'D', PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


def parse_close(bytes payload not None):
    """Close 'C' -> (kind: KIND_STATEMENT or KIND_PORTAL, name)."""
    return parse_describe_or_close_ptr(b'C', PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_execute_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t max_rows
    _reader_init(&r, data, size, b"Execute")
    portal = _get_cbytes(&r)
    max_rows = _get_int32(&r)
    _expect_end(&r)
    return (portal, max_rows)


def parse_execute(bytes payload not None):
    """Execute 'E' -> (portal, max_rows) (max_rows 0: no limit)."""
    return parse_execute_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef bytes parse_password_message_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    _reader_init(&r, data, size, b"PasswordMessage")
    password = _get_cbytes(&r)
    _expect_end(&r)
    return password


def parse_password_message(bytes payload not None):
    """PasswordMessage 'p' (cleartext or md5) -> the password (bytes)."""
    return parse_password_message_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef tuple parse_sasl_initial_response_ptr(const char *data, Py_ssize_t size):
    cdef _Reader r
    cdef int32_t n
    cdef const char *d
    _reader_init(&r, data, size, b"SASLInitialResponse")
    mechanism = _get_text(&r)
    n = _get_int32(&r)
    if n == -1:
        response = None
    elif n < 0:
        _malformed(&r, f"invalid data length {n}")
    else:
        d = _get_bytes(&r, n)
        response = PyBytes_FromStringAndSize(<char *>d, n)
    _expect_end(&r)
    return (mechanism, response)


def parse_sasl_initial_response(bytes payload not None):
    """SASLInitialResponse 'p' -> (mechanism, data or None). (A SASLResponse's payload is the
    SASL message itself: nothing to parse.)"""
    return parse_sasl_initial_response_ptr(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


# -- rewriting ---------------------------------------------------------------------------------
#
# The pooler gives client statements names of its own on each backend, so Parse, Bind,
# Describe and Close are re-emitted with another name. Each rewrite locates the old name, then
# writes header + the bytes before the name + the new name + the untouched tail: one copy.


cdef int _locate_name(
    int msg_type, const char *payload, Py_ssize_t size, Py_ssize_t *head, Py_ssize_t *tail
) except -1:
    """The old name is payload[head[0] : tail[0] - 1] (then its NUL)."""
    cdef _Reader r
    cdef Py_ssize_t n
    cdef int kind
    if msg_type == b'P':
        _reader_init(&r, payload, size, b"Parse")
    elif msg_type == b'B':
        _reader_init(&r, payload, size, b"Bind")
        _get_cstr(&r, &n)                    # the portal name stays
    elif msg_type == b'D' or msg_type == b'C':
        _reader_init(&r, payload, size, b"Describe" if msg_type == b'D' else b"Close")
        kind = _get_byte(&r)
        if kind != b'S' and kind != b'P':
            _malformed(&r, f"invalid kind {_byte_repr(kind)}: expected 'S' or 'P'")
    else:
        raise ValueError(f"cannot rename in message {_byte_repr(msg_type)}")
    head[0] = r.p - r.start
    _get_cstr(&r, &n)
    tail[0] = r.p - r.start
    return 0


cdef inline void _fill_message(
    char *dst, int msg_type, int32_t length,
    const char *a, Py_ssize_t a_size,
    const char *b, Py_ssize_t b_size,
    const char *c, Py_ssize_t c_size,
) noexcept:
    # type, length, then a + b + NUL + c.
    dst[0] = <char>msg_type
    pg_store_int32(dst + 1, length)
    dst += PG_HEADER_SIZE
    memcpy(dst, a, a_size)
    memcpy(dst + a_size, b, b_size)
    dst[a_size + b_size] = 0
    memcpy(dst + a_size + b_size + 1, c, c_size)


cdef int32_t _renamed_length(
    Py_ssize_t size, Py_ssize_t head, Py_ssize_t tail, const char *name, Py_ssize_t name_size,
    Py_ssize_t limit
) except -1:
    cdef Py_ssize_t length
    if memchr(name, 0, <size_t>name_size) != NULL:
        raise ValueError("a statement or portal name cannot contain a NUL byte")
    length = 4 + head + name_size + 1 + (size - tail)
    if length > limit:
        raise ProtocolError(f"renamed message of {length} bytes is over the limit of {limit}")
    return <int32_t>length


cdef int _write_renamed(
    WriteBuffer out, int msg_type, const char *payload, Py_ssize_t size,
    const char *name, Py_ssize_t name_size,
) except -1:
    cdef Py_ssize_t head, tail
    cdef int32_t length
    cdef char *dst
    _check_between_messages(out, b"rewrite")
    _locate_name(msg_type, payload, size, &head, &tail)
    length = _renamed_length(size, head, tail, name, name_size, out._max_message_size)
    dst = out.reserve(1 + length)
    _fill_message(
        dst, msg_type, length, payload, head, name, name_size, payload + tail, size - tail
    )
    return 0


cdef bytes _renamed_bytes(int msg_type, bytes payload, object new_name):
    cdef Py_ssize_t head, tail, name_size
    cdef int32_t length
    cdef object source = _text_source(new_name, b"a new name")
    cdef const char *name = _text_ptr(source, &name_size)
    cdef const char *data = PyBytes_AS_STRING(payload)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
    cdef bytes out
    _locate_name(msg_type, data, size, &head, &tail)
    length = _renamed_length(size, head, tail, name, name_size, INT32_MAX)
    out = PyBytes_FromStringAndSize(NULL, 1 + length)
    _fill_message(
        PyBytes_AS_STRING(out), msg_type, length, data, head, name, name_size, data + tail,
        size - tail,
    )
    return out


cdef int write_renamed_parse_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, const char *name, Py_ssize_t name_size
) except -1:
    return _write_renamed(out, b'P', payload, size, name, name_size)


cdef int write_renamed_bind_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, const char *name, Py_ssize_t name_size
) except -1:
    return _write_renamed(out, b'B', payload, size, name, name_size)


cdef int write_renamed_describe_or_close_ptr(
    WriteBuffer out,
    int msg_type,
    const char *payload,
    Py_ssize_t size,
    const char *name,
    Py_ssize_t name_size,
) except -1:
    if msg_type != b'D' and msg_type != b'C':
        raise ValueError(f"not a Describe or Close: {_byte_repr(msg_type)}")
    return _write_renamed(out, msg_type, payload, size, name, name_size)


def rewrite_parse_name(bytes payload not None, new_name):
    """A Parse payload -> the whole Parse message 'P' with the statement named ``new_name``."""
    return _renamed_bytes(b'P', payload, new_name)


def rewrite_bind_statement(bytes payload not None, new_statement):
    """A Bind payload -> the whole Bind message 'B' naming statement ``new_statement``."""
    return _renamed_bytes(b'B', payload, new_statement)


def rewrite_describe_or_close_name(int msg_type, bytes payload not None, new_name):
    """A Describe ('D') or Close ('C') payload -> the whole message naming ``new_name``."""
    if msg_type != b'D' and msg_type != b'C':
        raise ValueError(f"not a Describe or Close: {_byte_repr(msg_type)}")
    return _renamed_bytes(msg_type, payload, new_name)


def write_renamed(WriteBuffer out, int msg_type, bytes payload not None, new_name):
    """Append to ``out`` the Parse ('P'), Bind ('B'), Describe ('D') or Close ('C') whose
    payload is given, with its statement (or Describe/Close target) named ``new_name``."""
    cdef object source = _text_source(new_name, b"a new name")
    cdef Py_ssize_t name_size
    cdef const char *name = _text_ptr(source, &name_size)
    cdef const char *data = PyBytes_AS_STRING(payload)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
    if msg_type == b'P':
        write_renamed_parse_ptr(out, data, size, name, name_size)
    elif msg_type == b'B':
        write_renamed_bind_ptr(out, data, size, name, name_size)
    elif msg_type == b'D' or msg_type == b'C':
        write_renamed_describe_or_close_ptr(out, msg_type, data, size, name, name_size)
    else:
        raise ValueError(f"cannot rename in message {_byte_repr(msg_type)}")


cdef int write_notification_with_pid_ptr(
    WriteBuffer out, const char *payload, Py_ssize_t size, int32_t pid
) except -1:
    cdef char *dst
    _check_between_messages(out, b"write_notification_with_pid")
    if size < 4:
        raise ProtocolError(f"malformed NotificationResponse: {size}-byte payload, no process id")
    if size + 4 > out._max_message_size:
        raise ProtocolError(f"NotificationResponse of {size + 4} bytes is over the limit")
    dst = out.reserve(1 + 4 + size)
    dst[0] = b'A'
    pg_store_int32(dst + 1, <int32_t>(size + 4))
    pg_store_int32(dst + 5, pid)
    memcpy(dst + 9, payload + 4, size - 4)
    return 0


def write_notification_with_pid(WriteBuffer out, bytes payload not None, int32_t new_pid):
    """Append to ``out`` the NotificationResponse whose payload is given, from ``new_pid``."""
    write_notification_with_pid_ptr(
        out, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), new_pid
    )


def rewrite_notification_pid(bytes payload not None, int32_t new_pid):
    """A NotificationResponse payload -> the whole message 'A' from process ``new_pid``
    (the pid the client was given in BackendKeyData)."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
    cdef bytes out
    cdef char *dst
    if size < 4:
        raise ProtocolError(f"malformed NotificationResponse: {size}-byte payload, no process id")
    if size + 4 > INT32_MAX:
        raise ProtocolError(f"NotificationResponse of {size + 4} bytes is too large")
    out = PyBytes_FromStringAndSize(NULL, 1 + 4 + size)
    dst = PyBytes_AS_STRING(out)
    dst[0] = b'A'
    pg_store_int32(dst + 1, <int32_t>(size + 4))
    pg_store_int32(dst + 5, new_pid)
    memcpy(dst + 9, PyBytes_AS_STRING(payload) + 4, size - 4)
    return out


# -- forwarding --------------------------------------------------------------------------------
#
# ReadBuffer.take_run_into() moves a run of whole messages in one copy, up to a stop type given
# as bytes, building a 256-entry table from them on every call. The scanners here use tables
# built once at import instead: the frontend set stops at 254 of the 256 types, and rebuilding
# that per call cost more than the run itself (measured on pgbench -M prepared requests, B E S:
# 151 ns per message with take_run_into, 70 with a ready table). take_run_until() is
# take_run_into() with a ready table; it works on ReadBuffer's
# fields as declared in buffer.pxd and must keep its semantics (see _scan_run in buffer.pyx).
#
# Where to stop: the pooler must see a message when it changes the pooler's state or must be
# rewritten; everything else passes through in C.

# Server -> client. Always stop at:
#   'Z' ReadyForQuery       transaction status: the backend may go back to the pool;
#   'E' ErrorResponse       errors end an extended-protocol batch early; FATAL ends the backend;
#   'S' ParameterStatus     the session's reported settings, tracked per client and backend;
#   'A' Notification        its pid is rewritten to the client's, and LISTENers fan out;
#   'K' BackendKeyData, 'R' Authentication*, 'v' NegotiateProtocolVersion: startup only,
#                           never forwarded as they are;
#   'G'/'H'/'W' Copy{In,Out,Both}Response: the session enters COPY (the client now sends
#                           CopyData, and the backend stays pinned).
# Forwarded: 'D' 'T' 'C' 'I' 'n' 't' 's' '1' '2' '3' 'N' 'd' 'c' 'V'.
# With tracking=True also stop at '1' ParseComplete and '3' CloseComplete: while the pooler has
# injected a Parse (preparing a statement on this backend) or answered a Close itself, it drops
# or adds these, so it must count them.
BACKEND_STOP_TYPES = b"ZESAKRvGHW"
BACKEND_TRACKING_STOP_TYPES = BACKEND_STOP_TYPES + b"13"

# Client -> server: an allow list, since anything unknown must be refused by the pooler rather
# than cost a backend (Postgres ends the session on an invalid message type). Forwarded in C:
#   'E' Execute (its portal and batch were set up by a Bind the pooler saw) and
#   'd' CopyData (COPY FROM STDIN, the bulk of the bytes).
# Everything else stops: 'Q' 'P' 'B' 'D' 'C' 'S' 'H' 'F' 'X' 'c' 'f' 'p' and unknown types.
FRONTEND_FORWARD_TYPES = b"Ed"
FRONTEND_STOP_TYPES = bytes(b for b in range(256) if b not in FRONTEND_FORWARD_TYPES)

cdef unsigned char _BACKEND_STOPS[256]
cdef unsigned char _BACKEND_TRACKING_STOPS[256]
cdef unsigned char _FRONTEND_STOPS[256]


cdef void _fill_stop_table(unsigned char *table, bytes stop_types) noexcept:
    cdef Py_ssize_t i
    memset(table, 0, 256)
    for i in range(PyBytes_GET_SIZE(stop_types)):
        table[<unsigned char>PyBytes_AS_STRING(stop_types)[i]] = 1


_fill_stop_table(_BACKEND_STOPS, BACKEND_STOP_TYPES)
_fill_stop_table(_BACKEND_TRACKING_STOPS, BACKEND_TRACKING_STOP_TYPES)
_fill_stop_table(_FRONTEND_STOPS, FRONTEND_STOP_TYPES)


cdef Py_ssize_t take_run_until(
    ReadBuffer buf, WriteBuffer out, const unsigned char *stops
) except -1:
    cdef Py_ssize_t start, p
    cdef const char *data
    cdef int32_t length
    cdef unsigned char msg_type
    if buf is None or out is None:
        raise TypeError("take_run_until(): buf and out must not be None")
    if out._msg_start >= 0:
        raise RuntimeError("take_run_until(): the WriteBuffer is inside a message")
    buf._end_message()
    data = buf._data
    start = p = buf._pos
    while buf._len - p >= PG_HEADER_SIZE:
        msg_type = <unsigned char>data[p]
        if stops[msg_type]:
            break
        length = pg_load_int32(data + p + 1)
        if length < 4 or length > buf._max_message_size:
            if p > start:
                # Hand over the valid messages before it; the next take_message() raises.
                break
            buf._raise_bad_length(msg_type, length)
        if buf._len - p - 1 < length:
            break
        p += 1 + length
    if p > start:
        out.write_cbytes(data + start, p - start)
        buf._pos = buf._msg_start = buf._rpos = p
    return p - start


cpdef Py_ssize_t scan_backend_run(ReadBuffer buf, WriteBuffer out, bint tracking=False) except -1:
    """Move the whole messages from Postgres that a client gets unchanged from ``buf`` to
    ``out`` (one copy); return the bytes moved.

    Stops at a message the pooler must see (BACKEND_STOP_TYPES, or
    BACKEND_TRACKING_STOP_TYPES with ``tracking``) or at an incomplete one, without taking it.
    Then ``buf.take_message()`` takes the stop message (False: more bytes needed; it raises
    ProtocolError on a bad header)::

        while True:
            scan_backend_run(buf, out)
            if not buf.take_message():
                break
            ...  # handle 'Z', 'E', 'S', ...
    """
    if tracking:
        return take_run_until(buf, out, _BACKEND_TRACKING_STOPS)
    return take_run_until(buf, out, _BACKEND_STOPS)


cpdef Py_ssize_t scan_frontend_run(ReadBuffer buf, WriteBuffer out) except -1:
    """As ``scan_backend_run`` for client messages: forwards only Execute and CopyData."""
    return take_run_until(buf, out, _FRONTEND_STOPS)
