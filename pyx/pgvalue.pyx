"""The value layer of the gateway's merges: rows as Postgres sends them, compared and aggregated
exactly as one Postgres would.

Values are the text forms of the simple query protocol's DataRow messages, typed by the OIDs of
the RowDescription. Three things are built on them, all in C over the texts:

- Framing: ``RowView`` frames a DataRow payload in place (column offsets, no copies);
  malformed input raises ``ProtocolError`` (SQLSTATE 08P01), never reads past the payload.
- Ordering: ``SortSpec`` + ``compare_rows`` order rows like ORDER BY does, per type:
  int2/int4/int8/oid as int64; numeric as exact decimal text (-Infinity < numbers < Infinity
  < NaN); float4/float8 with NaN above everything and -0 = 0; bool; text, varchar, name and
  bpchar (trailing spaces ignored) under the C collation, bytewise; bytea (hex output) by its
  bytes; date, time, timestamp, timestamptz (the instant: the printed offset is applied) in the
  ISO DateStyle with BC years and +-infinity; interval (IntervalStyle postgres; a month counts
  30 days, a day 24 hours, as interval_cmp does); uuid. DESC and NULLS FIRST/LAST, with
  Postgres's defaults (NULLS LAST for ASC, NULLS FIRST for DESC).
- Aggregates: ``AggSpec``/``AggState`` fold the partial results of many shards into the final
  text Postgres would print: count, sum, min, max, avg (from the shards' sum and count),
  bool_and, bool_or, string_agg and array_agg (without ORDER BY inside the aggregate).

What the texts must look like (the planner pins these settings on the shard sessions, or
refuses the query): DateStyle ISO, IntervalStyle postgres, bytea_output hex,
extra_float_digits >= 1 (shortest exact floats, the default), and the C collation for the
text comparisons. A text in another format raises ``ValueFormatError`` (SQLSTATE 0A000),
never a wrong order; a type without support raises ``UnsupportedType`` (SQLSTATE 0A000) when
the plan is made (``supported_sort_type``, ``supported_aggregate``).

Floats: the partial sums of sum(float) and avg(float) are added in shard order. Postgres
adds the same values in scan order, so the last bits can differ from one Postgres's result
over the same rows, exactly as they do in Postgres's own parallel aggregation (which
combines per-worker partial sums the same way). Two consequences of the same kind: a sum of
finite values that overflows in one order may not in another (each raises "value out of
range: overflow" where its own additions overflow), and Postgres's avg(float) also raises it
when its internal sum of squares overflows (values beyond about 1e154), which a merge of sums
and counts cannot see: it returns the average. The texts are Postgres's: the shortest that
reads back as the same float, never a midpoint (its Ryu), in its layout (``1e+15``,
``0.0001``, ``-0``).

The C interface (pgvalue.pxd) is what the merge engine calls: ``row_view``/``RowView``,
``compare_rows`` with a ``SortSpec``, ``group_key``, and per group ``AggSpec.new_state()``
then ``AggState.add_row``/``add``/``add_count`` and ``final_value``.
"""

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, NAN, fabs, isinf, isnan, signbit
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t, uint64_t, INT64_MAX
from libc.string cimport memcmp, memcpy, memset, strlen

import enum

from multigres._cy.buffer import ProtocolError

ctypedef unsigned char uchar

cdef extern from *:
    """
    typedef __int128 mg_int128;
    static inline int mg_add_i64(int64_t a, int64_t b, int64_t *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline int mg_mul_i64(int64_t a, int64_t b, int64_t *r) {
        return __builtin_mul_overflow(a, b, r);
    }
    """
    # Cython only needs to know it is an integer; C sees the real 128-bit type.
    ctypedef long long mg_int128
    bint mg_add_i64(int64_t a, int64_t b, int64_t *r) noexcept nogil
    bint mg_mul_i64(int64_t a, int64_t b, int64_t *r) noexcept nogil

cdef extern from "<locale.h>" nogil:
    ctypedef void *locale_t
    int LC_ALL_MASK
    locale_t newlocale(int category_mask, const char *locale, locale_t base)

cdef extern from "<stdlib.h>" nogil:
    # glibc's, correctly rounded; with the "C" locale they read '.' whatever the process's
    # LC_NUMERIC is.
    double strtod_l(const char *s, char **end, locale_t loc)
    float strtof_l(const char *s, char **end, locale_t loc)

cdef extern from "Python.h":
    # Locale-independent, correctly rounded (Python's dtoa): 'r' is repr's shortest text.
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int *ptype) except NULL

cdef locale_t _C_LOCALE = newlocale(LC_ALL_MASK, "C", NULL)
if _C_LOCALE == NULL:
    raise ImportError("newlocale(LC_ALL_MASK, \"C\") failed")


# -- errors ------------------------------------------------------------------------------------


class UnsupportedType(Exception):
    """The gateway cannot order or aggregate values of this type exactly as Postgres does.

    Raised when a plan is made; the planner reports the statement with SQLSTATE 0A000.
    """

    sqlstate = "0A000"


class ValueFormatError(ValueError):
    """A value's text is not in the output format the merge reads (for example a date in a
    DateStyle other than ISO): the merge stops rather than answer in a wrong order."""

    sqlstate = "0A000"


class ValueOutOfRange(ArithmeticError):
    """A combined aggregate overflows its type, where Postgres raises the same error."""

    sqlstate = "22003"


# -- type OIDs ---------------------------------------------------------------------------------

OID_BOOL = 16
OID_BYTEA = 17
OID_CHAR = 18
OID_NAME = 19
OID_INT8 = 20
OID_INT2 = 21
OID_INT4 = 23
OID_TEXT = 25
OID_OID = 26
OID_JSON = 114
OID_CIDR = 650
OID_FLOAT4 = 700
OID_FLOAT8 = 701
OID_MONEY = 790
OID_MACADDR = 829
OID_INET = 869
OID_BPCHAR = 1042
OID_VARCHAR = 1043
OID_DATE = 1082
OID_TIME = 1083
OID_TIMESTAMP = 1114
OID_TIMESTAMPTZ = 1184
OID_INTERVAL = 1186
OID_TIMETZ = 1266
OID_NUMERIC = 1700
OID_UUID = 2950
OID_JSONB = 3802

# Element type -> its array type (array_agg's result), for the element types array_agg merges:
# built-in scalar types whose array delimiter is ',' (box's is ';': not here).
_ARRAY_OF = {
    16: 1000, 17: 1001, 18: 1002, 19: 1003, 20: 1016, 21: 1005, 23: 1007, 25: 1009,
    26: 1028, 114: 199, 650: 651, 700: 1021, 701: 1022, 790: 791, 829: 1040, 869: 1041,
    1042: 1014, 1043: 1015, 1082: 1182, 1083: 1183, 1114: 1115, 1184: 1185, 1186: 1187,
    1266: 1270, 1700: 1231, 2950: 2951, 3802: 3807,
}

_TYPE_NAMES = {
    16: "boolean", 17: "bytea", 18: "\"char\"", 19: "name", 20: "bigint", 21: "smallint",
    23: "integer", 25: "text", 26: "oid", 114: "json", 650: "cidr", 700: "real",
    701: "double precision", 790: "money", 829: "macaddr", 869: "inet", 1042: "character",
    1043: "character varying", 1082: "date", 1083: "time without time zone",
    1114: "timestamp without time zone", 1184: "timestamp with time zone", 1186: "interval",
    1266: "time with time zone", 1700: "numeric", 2950: "uuid", 3802: "jsonb",
}

_CLASS_NAMES = {
    TC_INT: "integer", TC_NUMERIC: "numeric", TC_FLOAT: "float", TC_BOOL: "boolean",
    TC_TEXT: "text", TC_BPCHAR: "character", TC_BYTEA: "bytea", TC_DATE: "date",
    TC_TIME: "time", TC_TIMESTAMP: "timestamp", TC_TIMESTAMPTZ: "timestamptz",
    TC_INTERVAL: "interval", TC_UUID: "uuid",
}


def type_name(oid: int) -> str:
    """The SQL name of a built-in type, or "type OID n" (for error messages)."""
    return _TYPE_NAMES.get(oid, f"type OID {oid}")


cdef int type_class(uint32_t oid) noexcept nogil:
    if oid == 20 or oid == 23 or oid == 21 or oid == 26:
        return TC_INT
    if oid == 1700:
        return TC_NUMERIC
    if oid == 701 or oid == 700:
        return TC_FLOAT
    if oid == 25 or oid == 1043 or oid == 19:
        return TC_TEXT
    if oid == 1042:
        return TC_BPCHAR
    if oid == 16:
        return TC_BOOL
    if oid == 17:
        return TC_BYTEA
    if oid == 1082:
        return TC_DATE
    if oid == 1083:
        return TC_TIME
    if oid == 1114:
        return TC_TIMESTAMP
    if oid == 1184:
        return TC_TIMESTAMPTZ
    if oid == 1186:
        return TC_INTERVAL
    if oid == 2950:
        return TC_UUID
    return TC_UNSUPPORTED


def supported_sort_type(oid: int) -> bool:
    """Whether ORDER BY, min/max, GROUP BY and DISTINCT on this type can be merged exactly.

    Text types (text, varchar, bpchar, name) compare under the C collation: the planner must
    check the sort's collation before it relies on this.
    """
    return 0 <= oid <= 0xFFFFFFFF and type_class(<uint32_t>oid) != TC_UNSUPPORTED


# -- DataRow framing ---------------------------------------------------------------------------


cdef inline int32_t _be32(const uchar *p) noexcept nogil:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
                     | <uint32_t>p[3])


cdef Py_ssize_t datarow_spans(const unsigned char *p, Py_ssize_t n, ColSpan *out,
                              Py_ssize_t cap) except -1:
    cdef Py_ssize_t count, i, pos
    cdef int32_t length
    if n < 2:
        raise ProtocolError(f"malformed DataRow: {n} bytes, no column count")
    count = <int16_t>((<uint32_t>p[0] << 8) | <uint32_t>p[1])
    if count < 0:
        raise ProtocolError(f"malformed DataRow: negative column count {count}")
    if count > cap:
        return count
    pos = 2
    for i in range(count):
        if n - pos < 4:
            raise ProtocolError(
                f"malformed DataRow: column {i + 1} of {count} is cut off at byte {pos}"
            )
        length = _be32(p + pos)
        pos += 4
        out[i].off = pos
        if length == -1:
            out[i].len = -1
        elif length < 0:
            raise ProtocolError(f"malformed DataRow: column {i + 1} has length {length}")
        elif length > n - pos:
            raise ProtocolError(
                f"malformed DataRow: column {i + 1} of {length} bytes overruns the message "
                f"({n - pos} bytes left)"
            )
        else:
            out[i].len = length
            pos += length
    if pos != n:
        raise ProtocolError(f"malformed DataRow: {n - pos} bytes after the last column")
    return count


# Not tracked by the garbage collector: a row refers only to bytes (no cycles), and a merge
# makes millions of them.
@cython.no_gc
@cython.final
cdef class RowView:
    """A DataRow payload framed in place: ``RowView(data, start=0, end=-1)``.

    ``data`` is the bytes object that holds the payload (the message body after the type byte
    and the length) between ``start`` and ``end``; the view keeps a reference to it and never
    copies it. ``row[i]`` is column i's text as bytes, or None for NULL.
    """

    def __init__(self, data: bytes, start: int = 0, end: int = -1) -> None:
        _frame(self, data, start, end)

    def __dealloc__(self):
        if self.cols != NULL and self.cols != self._inline:
            PyMem_Free(self.cols)
        self.cols = NULL

    def __len__(self) -> int:
        return self.ncols

    def __getitem__(self, i: int) -> bytes | None:
        if i < 0:
            i += self.ncols
        if not 0 <= i < self.ncols:
            raise IndexError("column index out of range")
        if self.cols[i].len < 0:
            return None
        return PyBytes_FromStringAndSize(<const char *>self.base + self.cols[i].off,
                                         self.cols[i].len)

    def values(self) -> list:
        """Every column's text (None for NULL)."""
        return [self[i] for i in range(self.ncols)]

    def spans(self) -> list:
        """(offset from the payload's start, length) per column; length -1 for NULL."""
        return [(self.cols[i].off, self.cols[i].len) for i in range(self.ncols)]

    def payload(self) -> bytes:
        """The DataRow payload (``data`` itself when the view covers all of it)."""
        if self.data is None:
            raise ValueError("an empty RowView")
        if self.payload_len == PyBytes_GET_SIZE(self.data) and \
                self.base == <const uchar *>PyBytes_AS_STRING(self.data):
            return self.data
        return PyBytes_FromStringAndSize(<const char *>self.base, self.payload_len)

    def __repr__(self) -> str:
        return f"RowView({self.values()!r})"


cdef int _frame(RowView row, object data, Py_ssize_t start, Py_ssize_t end) except -1:
    cdef Py_ssize_t size, count
    if not PyBytes_CheckExact(data):
        raise TypeError(f"a DataRow payload must be bytes, not {type(data).__name__}")
    size = PyBytes_GET_SIZE(data)
    if end < 0:
        end = size
    if start < 0 or start > end or end > size:
        raise ValueError(f"bad payload range [{start}:{end}] of {size} bytes")
    if row.cols != NULL and row.cols != row._inline:
        PyMem_Free(row.cols)
    row.cols = row._inline
    row.ncols = 0
    row.data = data
    row.base = <const uchar *>PyBytes_AS_STRING(data) + start
    row.payload_len = end - start
    count = datarow_spans(row.base, row.payload_len, row._inline, 8)
    if count > 8:
        row.cols = <ColSpan *>PyMem_Malloc(count * sizeof(ColSpan))
        if row.cols == NULL:
            row.cols = row._inline
            raise MemoryError()
        datarow_spans(row.base, row.payload_len, row.cols, count)
    row.ncols = count
    return 0


cdef RowView row_view(object data, Py_ssize_t start, Py_ssize_t end):
    cdef RowView row = RowView.__new__(RowView)
    row.cols = row._inline
    _frame(row, data, start, end)
    return row


cpdef bytes build_datarow(object values):
    """The DataRow payload of column texts (bytes, None for NULL): what a merge sends on."""
    cdef Py_ssize_t n, i, total = 2, ln
    cdef bytes out
    cdef char *w
    cdef object v
    values = values if type(values) is list or type(values) is tuple else list(values)
    n = len(values)
    if n > 32767:
        raise ValueError(f"a DataRow has at most 32767 columns, not {n}")
    for v in values:
        if v is None:
            total += 4
        elif PyBytes_CheckExact(v):
            if PyBytes_GET_SIZE(v) > 0x3FFFFFFF:
                raise ValueError("a value of 1 GB or more")
            total += 4 + PyBytes_GET_SIZE(v)
        else:
            raise TypeError(f"a column's text is bytes or None, not {type(v).__name__}")
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w[0] = <char>((n >> 8) & 0xFF)
    w[1] = <char>(n & 0xFF)
    w += 2
    for i in range(n):
        v = values[i]
        ln = -1 if v is None else PyBytes_GET_SIZE(v)
        w[0] = <char>((<uint32_t>ln >> 24) & 0xFF)
        w[1] = <char>((<uint32_t>ln >> 16) & 0xFF)
        w[2] = <char>((<uint32_t>ln >> 8) & 0xFF)
        w[3] = <char>(<uint32_t>ln & 0xFF)
        w += 4
        if ln > 0:
            memcpy(w, PyBytes_AS_STRING(v), ln)
            w += ln
    return out


def datarow_columns(payload: bytes) -> list:
    """The (offset, length) of each column of a DataRow payload; length -1 for NULL."""
    return row_view(payload, 0, -1).spans()


# -- reading the texts -------------------------------------------------------------------------

cdef enum:
    # A float's text: "-1.2345678901234567e-308" is 24 bytes; extra_float_digits=3 adds none.
    FLOAT_TEXT_MAX = 63

cdef int64_t USECS_PER_DAY_I = 86400000000
cdef int64_t USECS_PER_HOUR = 3600000000


cdef int _bad_value(int tclass, const uchar *p, Py_ssize_t n) except -1:
    cdef bytes text = PyBytes_FromStringAndSize(<const char *>p, min(n, 80))
    raise ValueFormatError(
        f"cannot read the {_CLASS_NAMES.get(tclass, 'value')} value {text!r} in a merge: "
        f"the gateway reads Postgres's default output formats only (DateStyle ISO, "
        f"IntervalStyle postgres, bytea_output hex, extra_float_digits >= 1)"
    )


cdef int _parse_i64(const uchar *p, Py_ssize_t n, int64_t *out) noexcept nogil:
    """Read an integer's text (int2/int4/int8/oid output): 0, or -1 when malformed."""
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef uint64_t acc = 0
    cdef uint32_t d
    if n > 0 and p[0] == b'-':
        neg = True
        i = 1
    if i >= n or n - i > 19:
        return -1
    while i < n:
        d = <uint32_t>p[i] - 48
        if d > 9:
            return -1
        acc = acc * 10 + d
        i += 1
    if neg:
        if acc > <uint64_t>INT64_MAX + 1:
            return -1
        out[0] = <int64_t>(0 - acc)
    else:
        if acc > <uint64_t>INT64_MAX:
            return -1
        out[0] = <int64_t>acc
    return 0


cdef enum NumSpecial:
    NUM_FINITE = 0
    NUM_NAN = 1
    NUM_PINF = 2
    NUM_NINF = 3


ctypedef struct NumText:
    int special
    bint neg
    Py_ssize_t int_start      # integer digits, leading zeros skipped (int_len 0 for "0")
    Py_ssize_t int_len
    Py_ssize_t frac_start     # fraction digits as printed: frac_len is the display scale
    Py_ssize_t frac_len
    Py_ssize_t frac_sig       # fraction digits up to the last non-zero one


cdef int _parse_numeric(const uchar *p, Py_ssize_t n, NumText *t) noexcept nogil:
    """Read numeric_out's text: [-]digits[.digits], NaN, Infinity, -Infinity. 0 or -1."""
    cdef Py_ssize_t i = 0, start
    memset(t, 0, sizeof(NumText))
    if n == 3 and memcmp(p, b"NaN", 3) == 0:
        t.special = NUM_NAN
        return 0
    if n == 8 and memcmp(p, b"Infinity", 8) == 0:
        t.special = NUM_PINF
        return 0
    if n == 9 and memcmp(p, b"-Infinity", 9) == 0:
        t.special = NUM_NINF
        return 0
    if n > 0 and p[0] == b'-':
        t.neg = True
        i = 1
    start = i
    while i < n and p[i] >= b'0' and p[i] <= b'9':
        i += 1
    if i == start:
        return -1
    while start < i and p[start] == b'0':
        start += 1
    t.int_start = start
    t.int_len = i - start
    if i < n:
        if p[i] != b'.':
            return -1
        i += 1
        start = i
        while i < n and p[i] >= b'0' and p[i] <= b'9':
            i += 1
        if i != n or i == start:
            return -1
        t.frac_start = start
        t.frac_len = i - start
        t.frac_sig = t.frac_len
        while t.frac_sig > 0 and p[start + t.frac_sig - 1] == b'0':
            t.frac_sig -= 1
    return 0


cdef inline int _num_rank(int special) noexcept nogil:
    # -Infinity < every number < Infinity < NaN (NaN equals NaN), as cmp_numerics orders them.
    if special == NUM_NINF:
        return 0
    if special == NUM_FINITE:
        return 1
    if special == NUM_PINF:
        return 2
    return 3


cdef inline int _sign3(int c) noexcept nogil:
    return (c > 0) - (c < 0)


cdef int _cmp_numeric(const uchar *a, Py_ssize_t an, const uchar *b, Py_ssize_t bn) except -2:
    cdef NumText x, y
    cdef int rx, ry, sx, sy, c
    cdef Py_ssize_t m
    if _parse_numeric(a, an, &x) < 0:
        return _bad_value(TC_NUMERIC, a, an) - 1
    if _parse_numeric(b, bn, &y) < 0:
        return _bad_value(TC_NUMERIC, b, bn) - 1
    rx = _num_rank(x.special)
    ry = _num_rank(y.special)
    if rx != ry:
        return -1 if rx < ry else 1
    if rx != 1:
        return 0
    sx = 0 if x.int_len == 0 and x.frac_sig == 0 else (-1 if x.neg else 1)
    sy = 0 if y.int_len == 0 and y.frac_sig == 0 else (-1 if y.neg else 1)
    if sx != sy:
        return -1 if sx < sy else 1
    if sx == 0:
        return 0
    if x.int_len != y.int_len:
        c = -1 if x.int_len < y.int_len else 1
    else:
        c = _sign3(memcmp(a + x.int_start, b + y.int_start, x.int_len))
        if c == 0:
            m = min(x.frac_sig, y.frac_sig)
            c = _sign3(memcmp(a + x.frac_start, b + y.frac_start, m))
            if c == 0 and x.frac_sig != y.frac_sig:
                c = -1 if x.frac_sig < y.frac_sig else 1
    return c * sx


cdef int _parse_float(const uchar *p, Py_ssize_t n, double *out) noexcept nogil:
    """Read float4out/float8out's text into a double. 0, or -1 when malformed."""
    cdef char buf[FLOAT_TEXT_MAX + 1]
    cdef char *end
    cdef Py_ssize_t i
    cdef uchar ch
    if n == 3 and memcmp(p, b"NaN", 3) == 0:
        out[0] = NAN
        return 0
    if n == 8 and memcmp(p, b"Infinity", 8) == 0:
        out[0] = INFINITY
        return 0
    if n == 9 and memcmp(p, b"-Infinity", 9) == 0:
        out[0] = -INFINITY
        return 0
    if n == 0 or n > FLOAT_TEXT_MAX:
        return -1
    # Only what float out prints: strtod alone would also take hex, "inf", spaces.
    if not (p[0] == b'-' or (p[0] >= b'0' and p[0] <= b'9')):
        return -1
    for i in range(n):
        ch = p[i]
        if not ((ch >= b'0' and ch <= b'9') or ch == b'.' or ch == b'e' or ch == b'+'
                or ch == b'-'):
            return -1
    memcpy(buf, p, n)
    buf[n] = 0
    out[0] = strtod_l(buf, &end, _C_LOCALE)
    if end != buf + n:
        return -1
    return 0


cdef int _parse_float4(const uchar *p, Py_ssize_t n, float *out) noexcept nogil:
    """Read float4out's text as a float (strtof: no double rounding through a double)."""
    cdef char buf[FLOAT_TEXT_MAX + 1]
    cdef char *end
    cdef double d
    if _parse_float(p, n, &d) < 0:
        return -1
    if isnan(d) or isinf(d):
        out[0] = <float>d
        return 0
    memcpy(buf, p, n)
    buf[n] = 0
    out[0] = strtof_l(buf, &end, _C_LOCALE)
    return 0


cdef inline int _cmp_double(double x, double y) noexcept nogil:
    # float8_cmp_internal: NaN equals NaN and sorts above everything else; -0 == 0.
    if isnan(x):
        return 0 if isnan(y) else 1
    if isnan(y):
        return -1
    return (x > y) - (x < y)


cdef inline int _cmp_bytes(const uchar *a, Py_ssize_t an, const uchar *b,
                           Py_ssize_t bn) noexcept nogil:
    # varstr_cmp under the C collation: memcmp over the common length, then the shorter first.
    cdef int c = memcmp(a, b, an if an < bn else bn)
    if c != 0:
        return _sign3(c)
    return (an > bn) - (an < bn)


# Date and time texts (ISO DateStyle) become (kind, days, microseconds of the day): kind -1 is
# -infinity, 1 infinity. For timestamptz the printed offset is applied: the pair is the UTC
# instant, so texts printed in different offsets compare by the moment they name.
ctypedef struct TimeVal:
    int kind
    int64_t days
    int64_t usec


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b   # cdivision: truncates
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is 0)."""
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = _floordiv(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline Py_ssize_t _digits(const uchar *p, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t lo,
                               Py_ssize_t hi, int64_t *out) noexcept nogil:
    """Read lo..hi decimal digits at pos: the position after them, or -1."""
    cdef Py_ssize_t i = pos
    cdef int64_t v = 0
    while i < n and i - pos < hi and p[i] >= b'0' and p[i] <= b'9':
        v = v * 10 + (p[i] - 48)
        i += 1
    if i - pos < lo:
        return -1
    out[0] = v
    return i


cdef Py_ssize_t _parse_clock(const uchar *p, Py_ssize_t pos, Py_ssize_t n,
                             int64_t *usec) noexcept nogil:
    """HH:MM:SS[.f{1,6}] at pos: the position after it, or -1."""
    cdef int64_t h, mi, s, f = 0, scale
    cdef Py_ssize_t start
    pos = _digits(p, pos, n, 2, 2, &h)
    if pos < 0 or pos >= n or p[pos] != b':':
        return -1
    pos = _digits(p, pos + 1, n, 2, 2, &mi)
    if pos < 0 or pos >= n or p[pos] != b':':
        return -1
    pos = _digits(p, pos + 1, n, 2, 2, &s)
    if pos < 0 or h > 24 or mi > 59 or s > 60:
        return -1
    if pos < n and p[pos] == b'.':
        start = pos + 1
        pos = _digits(p, start, n, 1, 6, &f)
        if pos < 0:
            return -1
        scale = pos - start
        while scale < 6:
            f *= 10
            scale += 1
    usec[0] = ((h * 60 + mi) * 60 + s) * 1000000 + f
    return pos


cdef int _parse_datetime(int tclass, const uchar *p, Py_ssize_t n, TimeVal *out) noexcept nogil:
    """Read date/time/timestamp/timestamptz output in the ISO DateStyle. 0, or -1."""
    cdef Py_ssize_t pos
    cdef bint bc = False
    cdef int64_t year, month, day, usec = 0, oh, om = 0, osec = 0, off
    cdef int sign
    out.kind = 0
    out.days = 0
    out.usec = 0
    if tclass == TC_TIME:
        pos = _parse_clock(p, 0, n, &out.usec)
        return 0 if pos == n else -1
    if n == 8 and memcmp(p, b"infinity", 8) == 0:
        out.kind = 1
        return 0
    if n == 9 and memcmp(p, b"-infinity", 9) == 0:
        out.kind = -1
        return 0
    if n > 3 and memcmp(p + n - 3, b" BC", 3) == 0:
        bc = True
        n -= 3
    pos = _digits(p, 0, n, 4, 7, &year)
    if pos < 0 or pos >= n or p[pos] != b'-':
        return -1
    pos = _digits(p, pos + 1, n, 2, 2, &month)
    if pos < 0 or pos >= n or p[pos] != b'-':
        return -1
    pos = _digits(p, pos + 1, n, 2, 2, &day)
    if pos < 0 or year < 1 or month < 1 or month > 12 or day < 1 or day > 31:
        return -1
    if tclass != TC_DATE:
        if pos >= n or p[pos] != b' ':
            return -1
        pos = _parse_clock(p, pos + 1, n, &usec)
        if pos < 0:
            return -1
        if tclass == TC_TIMESTAMPTZ:
            # +HH, +HH:MM or +HH:MM:SS (local mean time offsets have seconds).
            if pos >= n or (p[pos] != b'+' and p[pos] != b'-'):
                return -1
            sign = -1 if p[pos] == b'-' else 1
            pos = _digits(p, pos + 1, n, 2, 2, &oh)
            if pos >= 0 and pos < n and p[pos] == b':':
                pos = _digits(p, pos + 1, n, 2, 2, &om)
                if pos >= 0 and pos < n and p[pos] == b':':
                    pos = _digits(p, pos + 1, n, 2, 2, &osec)
            if pos < 0:
                return -1
            off = sign * ((oh * 60 + om) * 60 + osec) * 1000000
            usec -= off
    if pos != n:
        return -1
    if bc:
        year = 1 - year
    out.days = _days_from_civil(year, month, day) + _floordiv(usec, USECS_PER_DAY_I)
    out.usec = usec - _floordiv(usec, USECS_PER_DAY_I) * USECS_PER_DAY_I
    return 0


cdef int _match_unit(const uchar *p, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t *end) noexcept nogil:
    """The interval unit at pos ("year(s)", "mon(s)", "day(s)"): 1, 2, 3, or 0."""
    cdef Py_ssize_t stop = pos
    cdef Py_ssize_t ln
    while stop < n and p[stop] != b' ':
        stop += 1
    end[0] = stop
    ln = stop - pos
    if (ln == 4 or ln == 5) and memcmp(p + pos, b"years", ln) == 0:
        return 1
    if (ln == 3 or ln == 4) and memcmp(p + pos, b"mons", ln) == 0:
        return 2
    if (ln == 3 or ln == 4) and memcmp(p + pos, b"days", ln) == 0:
        return 3
    return 0


cdef int _parse_interval(const uchar *p, Py_ssize_t n, mg_int128 *out) noexcept nogil:
    """Read interval output in IntervalStyle postgres ('1 year 2 mons -3 days +04:05:06.5')
    into interval_cmp_value's span: (months * 30 + days) * 24 h + time, in microseconds."""
    cdef Py_ssize_t pos = 0, end
    cdef int64_t v = 0, clock = 0
    cdef int sign, unit, seen = 0
    cdef mg_int128 months = 0, days = 0, usec = 0
    if n == 0:
        return -1
    while pos < n:
        if seen & 8:            # the clock comes last
            return -1
        if pos > 0:
            if p[pos] != b' ':
                return -1
            pos += 1
        sign = 1
        if pos < n and (p[pos] == b'-' or p[pos] == b'+'):
            sign = -1 if p[pos] == b'-' else 1
            pos += 1
        # A number: the hours of a clock (any number of digits: HH:MM:SS[.ffffff]), or a
        # count of years, months or days.
        end = pos
        while end < n and p[end] >= b'0' and p[end] <= b'9':
            end += 1
        if end == pos or end - pos > 18:
            return -1
        if end < n and p[end] == b':':
            if end - pos < 2:
                return -1
            _digits(p, pos, end, 1, 18, &v)
            end = _parse_minsec(p, end + 1, n, &clock)
            if end < 0:
                return -1
            usec = sign * (<mg_int128>v * USECS_PER_HOUR + clock)
            seen |= 8
            pos = end
            continue
        _digits(p, pos, end, 1, 18, &v)
        if end >= n or p[end] != b' ':
            return -1
        unit = _match_unit(p, end + 1, n, &pos)
        if unit == 0 or seen & (1 << (unit - 1)):
            return -1
        seen |= 1 << (unit - 1)
        if unit == 1:
            months += <mg_int128>sign * v * 12
        elif unit == 2:
            months += <mg_int128>sign * v
        else:
            days = <mg_int128>sign * v
    out[0] = (months * 30 + days) * <mg_int128>USECS_PER_DAY_I + usec
    return 0


cdef Py_ssize_t _parse_minsec(const uchar *p, Py_ssize_t pos, Py_ssize_t n,
                              int64_t *usec) noexcept nogil:
    """MM:SS[.f{1,6}] at pos (an interval's clock after its hours): position after, or -1."""
    cdef int64_t mi, s, f = 0, scale
    cdef Py_ssize_t start
    pos = _digits(p, pos, n, 2, 2, &mi)
    if pos < 0 or pos >= n or p[pos] != b':':
        return -1
    pos = _digits(p, pos + 1, n, 2, 2, &s)
    if pos < 0 or mi > 59 or s > 59:
        return -1
    if pos < n and p[pos] == b'.':
        start = pos + 1
        pos = _digits(p, start, n, 1, 6, &f)
        if pos < 0:
            return -1
        scale = pos - start
        while scale < 6:
            f *= 10
            scale += 1
    usec[0] = (mi * 60 + s) * 1000000 + f
    return pos


cdef inline bint _is_uuid(const uchar *p, Py_ssize_t n) noexcept nogil:
    return (n == 36 and p[8] == b'-' and p[13] == b'-' and p[18] == b'-'
            and p[23] == b'-')


cdef int compare_values(int tclass, const unsigned char *a, Py_ssize_t an,
                        const unsigned char *b, Py_ssize_t bn) except -2:
    cdef int64_t x, y
    cdef double fx, fy
    cdef TimeVal tx, ty
    cdef mg_int128 ix, iy
    if tclass == TC_INT:
        if _parse_i64(a, an, &x) < 0:
            return _bad_value(tclass, a, an) - 1
        if _parse_i64(b, bn, &y) < 0:
            return _bad_value(tclass, b, bn) - 1
        return (x > y) - (x < y)
    if tclass == TC_TEXT:
        return _cmp_bytes(a, an, b, bn)
    if tclass == TC_NUMERIC:
        return _cmp_numeric(a, an, b, bn)
    if tclass == TC_FLOAT:
        if _parse_float(a, an, &fx) < 0:
            return _bad_value(tclass, a, an) - 1
        if _parse_float(b, bn, &fy) < 0:
            return _bad_value(tclass, b, bn) - 1
        return _cmp_double(fx, fy)
    if tclass == TC_BPCHAR:
        # bpcharcmp: trailing spaces do not count.
        while an > 0 and a[an - 1] == b' ':
            an -= 1
        while bn > 0 and b[bn - 1] == b' ':
            bn -= 1
        return _cmp_bytes(a, an, b, bn)
    if tclass == TC_DATE or tclass == TC_TIMESTAMP or tclass == TC_TIMESTAMPTZ \
            or tclass == TC_TIME:
        if _parse_datetime(tclass, a, an, &tx) < 0:
            return _bad_value(tclass, a, an) - 1
        if _parse_datetime(tclass, b, bn, &ty) < 0:
            return _bad_value(tclass, b, bn) - 1
        if tx.kind != ty.kind:
            return -1 if tx.kind < ty.kind else 1
        if tx.days != ty.days:
            return -1 if tx.days < ty.days else 1
        return (tx.usec > ty.usec) - (tx.usec < ty.usec)
    if tclass == TC_BOOL:
        if an != 1 or (a[0] != b't' and a[0] != b'f'):
            return _bad_value(tclass, a, an) - 1
        if bn != 1 or (b[0] != b't' and b[0] != b'f'):
            return _bad_value(tclass, b, bn) - 1
        return (a[0] > b[0]) - (a[0] < b[0])
    if tclass == TC_BYTEA:
        # Hex output: '\x' and two lowercase digits a byte, so the texts order as the bytes.
        # The escape format never starts with '\x' (it doubles a backslash).
        if an < 2 or a[0] != b'\\' or a[1] != b'x' or an & 1:
            return _bad_value(tclass, a, an) - 1
        if bn < 2 or b[0] != b'\\' or b[1] != b'x' or bn & 1:
            return _bad_value(tclass, b, bn) - 1
        return _cmp_bytes(a + 2, an - 2, b + 2, bn - 2)
    if tclass == TC_UUID:
        if not _is_uuid(a, an):
            return _bad_value(tclass, a, an) - 1
        if not _is_uuid(b, bn):
            return _bad_value(tclass, b, bn) - 1
        return _sign3(memcmp(a, b, 36))
    if tclass == TC_INTERVAL:
        if _parse_interval(a, an, &ix) < 0:
            return _bad_value(tclass, a, an) - 1
        if _parse_interval(b, bn, &iy) < 0:
            return _bad_value(tclass, b, bn) - 1
        return (ix > iy) - (ix < iy)
    raise UnsupportedType(f"no comparison for type class {tclass}")


cdef inline const uchar *_bytes_ptr(object v, Py_ssize_t *n) except? NULL:
    if not PyBytes_CheckExact(v):
        raise TypeError(f"a value must be bytes or None, not {type(v).__name__}")
    n[0] = PyBytes_GET_SIZE(v)
    return <const uchar *>PyBytes_AS_STRING(v)


cdef int _class_of(object type_oid) except -1:
    cdef int tclass
    if not 0 <= type_oid <= 0xFFFFFFFF:
        raise UnsupportedType(f"bad type OID {type_oid}")
    tclass = type_class(<uint32_t>type_oid)
    if tclass == TC_UNSUPPORTED:
        raise UnsupportedType(
            f"cannot merge values of {type_name(type_oid)} across shards exactly as Postgres "
            f"orders them"
        )
    return tclass


def compare(type_oid: int, a: bytes | None, b: bytes | None, desc: bool = False,
            nulls_first: bool | None = None) -> int:
    """Compare two texts of a type as ORDER BY would: -1, 0 or 1 (None is NULL)."""
    cdef int tclass = _class_of(type_oid)
    cdef Py_ssize_t an, bn
    cdef const uchar *ap
    cdef const uchar *bp
    cdef int c
    if nulls_first is None:
        nulls_first = desc
    if a is None or b is None:
        if a is None and b is None:
            return 0
        c = -1 if a is None else 1
        return -c if not nulls_first else c
    ap = _bytes_ptr(a, &an)
    bp = _bytes_ptr(b, &bn)
    c = compare_values(tclass, ap, an, bp, bn)
    return -c if desc else c


# -- ORDER BY ----------------------------------------------------------------------------------


@cython.final
cdef class SortKey:
    """One ORDER BY item: ``SortKey(column, type_oid, desc=False, nulls_first=None)``.

    ``nulls_first`` defaults as in Postgres: NULLS LAST for ASC, NULLS FIRST for DESC.
    Raises ``UnsupportedType`` for a type the merge cannot order.
    """

    def __init__(self, column: int, type_oid: int, desc: bool = False,
                 nulls_first: bool | None = None) -> None:
        if column < 0:
            raise ValueError(f"bad column index {column}")
        _class_of(type_oid)
        self.column = column
        self.type_oid = type_oid
        self.desc = desc
        self.nulls_first = desc if nulls_first is None else nulls_first

    def __repr__(self) -> str:
        return (f"SortKey({self.column}, {self.type_oid}, desc={bool(self.desc)}, "
                f"nulls_first={bool(self.nulls_first)})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SortKey):
            return NotImplemented
        o = <SortKey>other
        return (self.column == o.column and self.type_oid == o.type_oid
                and self.desc == o.desc and self.nulls_first == o.nulls_first)

    def __hash__(self) -> int:
        return hash((self.column, self.type_oid, self.desc, self.nulls_first))


@cython.final
cdef class SortSpec:
    """An ORDER BY list (``SortSpec([SortKey(...), ...])``), shared by cached plans."""

    def __init__(self, keys) -> None:
        cdef SortKey k
        cdef Py_ssize_t i
        keys = tuple(keys)
        for k in keys:
            if not isinstance(k, SortKey):
                raise TypeError("a SortSpec holds SortKey items")
        self.keys = keys
        self._n = len(keys)
        if self._keys != NULL:
            PyMem_Free(self._keys)
        self._keys = <SortKeyC *>PyMem_Malloc(max(self._n, 1) * sizeof(SortKeyC))
        if self._keys == NULL:
            raise MemoryError()
        self.min_columns = 0
        for i in range(self._n):
            k = keys[i]
            self._keys[i].column = k.column
            self._keys[i].tclass = type_class(k.type_oid)
            self._keys[i].desc = k.desc
            self._keys[i].nulls_first = k.nulls_first
            self.min_columns = max(self.min_columns, k.column + 1)

    def __dealloc__(self):
        if self._keys != NULL:
            PyMem_Free(self._keys)
            self._keys = NULL

    def compare(self, RowView a not None, RowView b not None) -> int:
        """-1 if row a sorts before row b, 0 if they tie on every key, 1 after."""
        return compare_rows(a, b, self)

    def group_key(self, RowView row not None) -> bytes:
        """A key equal for two rows exactly when they tie on every key column (for hashing
        GROUP BY and DISTINCT: '1.0' and '1.00', 0 and -0, 'a' and 'a ' as bpchar group
        together, as in Postgres)."""
        return group_key(row, self)

    def __repr__(self) -> str:
        return f"SortSpec({list(self.keys)!r})"


cdef int _short_row(RowView row, SortSpec spec) except -1:
    raise ProtocolError(
        f"a row of {row.ncols} columns is too short for sort keys up to column "
        f"{spec.min_columns - 1}"
    )


cdef int compare_rows(RowView a, RowView b, SortSpec spec) except -2:
    cdef Py_ssize_t i, la, lb
    cdef const SortKeyC *k
    cdef int c
    if a.ncols < spec.min_columns:
        return _short_row(a, spec) - 2
    if b.ncols < spec.min_columns:
        return _short_row(b, spec) - 2
    for i in range(spec._n):
        k = &spec._keys[i]
        la = a.cols[k.column].len
        lb = b.cols[k.column].len
        if la < 0:
            if lb < 0:
                continue
            return -1 if k.nulls_first else 1
        if lb < 0:
            return 1 if k.nulls_first else -1
        c = compare_values(k.tclass, a.base + a.cols[k.column].off, la,
                           b.base + b.cols[k.column].off, lb)
        if c != 0:
            return -c if k.desc else c
    return 0


def kway_merge(SortSpec spec not None, runs) -> list:
    """Merge runs of RowViews, each already in ``spec``'s order (one run per shard), into one
    list in that order; ties keep the order of the runs (a stable merge)."""
    cdef list lists = [r if type(r) is list else list(r) for r in runs]
    cdef Py_ssize_t i
    for i in range(len(lists)):
        # The merge reads rows with unchecked casts: check them once here.
        for row in <list>lists[i]:
            if type(row) is not RowView:
                raise TypeError(f"kway_merge merges RowView rows, not {type(row).__name__}")
    return _merge(spec, lists, 0, -1, False)


def merge_payloads(SortSpec spec not None, runs, Py_ssize_t offset=0,
                   Py_ssize_t limit=-1) -> list:
    """Merge runs of DataRow payloads (bytes, each run in ``spec``'s order: one shard's
    ``Result.rows``) into the payloads of the merged order, skipping ``offset`` rows and
    keeping at most ``limit`` (< 0: all): ORDER BY ... OFFSET ... LIMIT over shards. A run's
    head row is framed in place in one RowView per run, so only rows that reach the head
    are framed and nothing is copied. Stable: ties keep the order of the runs."""
    cdef list lists = [r if type(r) is list else list(r) for r in runs]
    if offset < 0:
        raise ValueError(f"negative offset {offset}")
    return _merge(spec, lists, offset, limit, True)


cdef list _merge(SortSpec spec, list lists, Py_ssize_t offset, Py_ssize_t limit, bint frame):
    # A binary heap of run indexes keyed by each run's head row (ties: the lower run first).
    # heads[i] is run i's head as a RowView: the run's own row, or (frame) a RowView per run
    # re-framed in place over each next payload.
    cdef Py_ssize_t k = len(lists), i, n_live = 0, skipped = 0
    cdef list out = []
    cdef list heads = [None] * k
    cdef Py_ssize_t *pos
    cdef Py_ssize_t *size
    cdef Py_ssize_t *heap
    cdef RowView view
    if k == 0 or limit == 0:
        return out
    pos = <Py_ssize_t *>PyMem_Malloc(3 * k * sizeof(Py_ssize_t))
    if pos == NULL:
        raise MemoryError()
    size = pos + k
    heap = pos + 2 * k
    try:
        for i in range(k):
            pos[i] = 0
            size[i] = len(<list>lists[i])
            if size[i] > 0:
                if frame:
                    view = RowView.__new__(RowView)
                    view.cols = view._inline
                    heads[i] = view
                _set_head(heads, lists, i, 0, frame)
                heap[n_live] = i
                n_live += 1
        for i in range(n_live // 2 - 1, -1, -1):
            _sift_down(heap, n_live, i, heads, spec)
        while n_live > 0:
            i = heap[0]
            if skipped < offset:
                skipped += 1
            else:
                out.append((<list>lists[i])[pos[i]])
                if limit > 0 and len(out) >= limit:
                    break
            pos[i] += 1
            if pos[i] == size[i]:
                n_live -= 1
                heap[0] = heap[n_live]
            else:
                _set_head(heads, lists, i, pos[i], frame)
            if n_live > 0:
                _sift_down(heap, n_live, 0, heads, spec)
    finally:
        PyMem_Free(pos)
    return out


cdef inline int _set_head(list heads, list lists, Py_ssize_t i, Py_ssize_t j,
                          bint frame) except -1:
    if frame:
        _frame(<RowView>heads[i], (<list>lists[i])[j], 0, -1)
    else:
        heads[i] = (<list>lists[i])[j]
    return 0


cdef inline int _head_less(Py_ssize_t x, Py_ssize_t y, list heads, SortSpec spec) except -2:
    cdef int c = compare_rows(<RowView>heads[x], <RowView>heads[y], spec)
    return c < 0 or (c == 0 and x < y)


cdef int _sift_down(Py_ssize_t *heap, Py_ssize_t n, Py_ssize_t i, list heads,
                    SortSpec spec) except -1:
    cdef Py_ssize_t child, tmp
    while True:
        child = 2 * i + 1
        if child >= n:
            return 0
        if child + 1 < n and _head_less(heap[child + 1], heap[child], heads, spec):
            child += 1
        if _head_less(heap[child], heap[i], heads, spec):
            tmp = heap[i]
            heap[i] = heap[child]
            heap[child] = tmp
            i = child
        else:
            return 0


# -- group keys --------------------------------------------------------------------------------


cdef int _append_key(bytearray out, int tclass, const uchar *p, Py_ssize_t n) except -1:
    """Append a canonical form of one value: equal forms exactly when the values are equal."""
    cdef NumText t
    cdef double d
    cdef TimeVal tv
    cdef mg_int128 span
    cdef int64_t i64
    cdef char buf[24]
    cdef Py_ssize_t k
    if n < 0:
        out.append(0)           # NULL groups with NULL
        return 0
    out.append(1)
    if tclass == TC_NUMERIC:
        if _parse_numeric(p, n, &t) < 0:
            return _bad_value(tclass, p, n)
        if t.special != NUM_FINITE:
            out.append(48 + t.special)
        elif t.int_len == 0 and t.frac_sig == 0:
            out.append(ord("0"))
        else:
            if t.neg:
                out.append(ord("-"))
            out += PyBytes_FromStringAndSize(<const char *>p + t.int_start, t.int_len)
            out.append(ord("."))
            out += PyBytes_FromStringAndSize(<const char *>p + t.frac_start, t.frac_sig)
        out.append(0)
        return 0
    if tclass == TC_FLOAT:
        if _parse_float(p, n, &d) < 0:
            return _bad_value(tclass, p, n)
        if isnan(d):
            d = NAN
        elif d == 0:
            d = 0.0
        memcpy(buf, &d, 8)
        out += PyBytes_FromStringAndSize(buf, 8)
        return 0
    if tclass == TC_INT:
        if _parse_i64(p, n, &i64) < 0:
            return _bad_value(tclass, p, n)
        memcpy(buf, &i64, 8)
        out += PyBytes_FromStringAndSize(buf, 8)
        return 0
    if tclass == TC_BPCHAR:
        while n > 0 and p[n - 1] == b' ':
            n -= 1
    elif tclass == TC_TIMESTAMPTZ or tclass == TC_DATE or tclass == TC_TIMESTAMP \
            or tclass == TC_TIME:
        if _parse_datetime(tclass, p, n, &tv) < 0:
            return _bad_value(tclass, p, n)
        memcpy(buf, &tv.kind, sizeof(int))
        memcpy(buf + 4, &tv.days, 8)
        memcpy(buf + 12, &tv.usec, 8)
        out += PyBytes_FromStringAndSize(buf, 20)
        return 0
    elif tclass == TC_INTERVAL:
        if _parse_interval(p, n, &span) < 0:
            return _bad_value(tclass, p, n)
        memcpy(buf, &span, 16)
        out += PyBytes_FromStringAndSize(buf, 16)
        return 0
    elif tclass == TC_BOOL or tclass == TC_BYTEA or tclass == TC_UUID:
        # One text per value; checked so that another output format fails loudly.
        compare_values(tclass, p, n, p, n)
    # Length-prefixed, so that ('ab', 'c') and ('a', 'bc') differ.
    k = n
    memcpy(buf, &k, sizeof(Py_ssize_t))
    out += PyBytes_FromStringAndSize(buf, sizeof(Py_ssize_t))
    out += PyBytes_FromStringAndSize(<const char *>p, n)
    return 0


cdef bytes group_key(RowView row, SortSpec spec):
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i, col
    if row.ncols < spec.min_columns:
        _short_row(row, spec)
    for i in range(spec._n):
        col = spec._keys[i].column
        _append_key(out, spec._keys[i].tclass, row.base + row.cols[col].off,
                    row.cols[col].len)
    return bytes(out)


def value_group_key(type_oid: int, value: bytes | None) -> bytes:
    """The canonical key of one value (equal keys exactly for values Postgres finds equal)."""
    cdef int tclass = _class_of(type_oid)
    cdef bytearray out = bytearray()
    cdef Py_ssize_t n = -1
    cdef const uchar *p = NULL
    if value is not None:
        p = _bytes_ptr(value, &n)
    _append_key(out, tclass, p, n)
    return bytes(out)


# -- numbers as text ---------------------------------------------------------------------------

cdef int64_t _POW10[19]
_POW10[0] = 1
for _i in range(1, 19):
    _POW10[_i] = _POW10[_i - 1] * 10


cdef bytes _format_i64(int64_t v):
    cdef char buf[24]
    cdef Py_ssize_t pos = 24
    cdef uint64_t u = <uint64_t>v
    cdef bint neg = v < 0
    if neg:
        u = 0 - u
    while True:
        pos -= 1
        buf[pos] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if neg:
        pos -= 1
        buf[pos] = b'-'
    return PyBytes_FromStringAndSize(buf + pos, 24 - pos)


cdef object _ipow10(Py_ssize_t k):
    # A Python int: ``10 ** k`` on C integers would be a C double.
    return (<object>10) ** k


cdef bytes _format_scaled(object mantissa, Py_ssize_t scale):
    """numeric_out's text of mantissa * 10**-scale with exactly ``scale`` fraction digits."""
    cdef str s
    if scale == 0:
        return str(mantissa).encode()
    s = str(abs(mantissa))
    if len(s) <= scale:
        s = "0" * (scale + 1 - len(s)) + s
    s = s[:len(s) - scale] + "." + s[len(s) - scale:]
    if mantissa < 0:
        s = "-" + s
    return s.encode()


cdef object _numeric_div(object mantissa, Py_ssize_t dscale, object count):
    """numeric_div(sum, count) as Postgres prints it: the scale select_div_scale picks (at
    least 16 significant digits, at least either input's display scale, at most 1000), the
    quotient rounded half away from zero at that scale (div_var then round_var)."""
    cdef Py_ssize_t w1, f1, w2, f2, qweight, rscale, e
    cdef str d
    if mantissa == 0:
        w1, f1 = 0, 0
    else:
        # Weight and first digit in base 10000 (NBASE), as the numeric's digit array has them.
        d = str(abs(mantissa))
        e = len(d) - 1 - dscale               # decimal exponent of the leading digit
        w1 = _floordiv(e, 4)                   # floor: exponents can be negative
        f1 = int(d[:e - 4 * w1 + 1].ljust(e - 4 * w1 + 1, "0"))
    d = str(count)
    e = len(d) - 1
    w2 = e // 4                            # e >= 0 here
    f2 = int(d[:e - 4 * w2 + 1])
    qweight = w1 - w2
    if f1 <= f2:
        qweight -= 1
    rscale = 16 - qweight * 4
    rscale = max(rscale, dscale, 0)
    rscale = min(rscale, 1000)
    num = abs(mantissa)
    den = count
    if rscale >= dscale:
        num *= _ipow10(rscale - dscale)
    else:
        den *= _ipow10(dscale - rscale)
    q, r = divmod(num, den)
    if 2 * r >= den:
        q += 1
    if mantissa < 0:
        q = -q
    return _format_scaled(q, rscale)


# -- floats as text ----------------------------------------------------------------------------
#
# Postgres prints floats with its copy of Ryu: the shortest decimal that reads back as the same
# float, the closest to it of those, except that it never prints a decimal exactly halfway to
# a neighbour (STRICTLY_SHORTEST 0 in src/common/ryu_common.h).


cdef bytes _pg_float_layout(bint neg, const char *digits, Py_ssize_t nd, Py_ssize_t exp,
                            Py_ssize_t fixed_below):
    """Lay out a shortest digit string like Postgres's float out (Ryu's to_chars): fixed
    notation for -4 <= exp < fixed_below (15 for float8, 6 for float4), else d.ddde+XX."""
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i, e
    cdef char ebuf[8]
    if neg:
        out.append(ord("-"))
    if -4 <= exp < fixed_below:
        if exp < 0:
            out += b"0."
            for i in range(-exp - 1):
                out.append(ord("0"))
            out += PyBytes_FromStringAndSize(digits, nd)
        elif exp >= nd - 1:
            out += PyBytes_FromStringAndSize(digits, nd)
            for i in range(exp - nd + 1):
                out.append(ord("0"))
        else:
            out += PyBytes_FromStringAndSize(digits, exp + 1)
            out.append(ord("."))
            out += PyBytes_FromStringAndSize(digits + exp + 1, nd - exp - 1)
    else:
        out.append(<uchar>digits[0])
        if nd > 1:
            out.append(ord("."))
            out += PyBytes_FromStringAndSize(digits + 1, nd - 1)
        out.append(ord("e"))
        out.append(ord("-") if exp < 0 else ord("+"))
        e = -exp if exp < 0 else exp
        if e < 10:
            out.append(ord("0"))
        out += str(e).encode()
    return bytes(out)


cdef int _split_decimal(const char *s, char *digits, Py_ssize_t *nd, Py_ssize_t *exp,
                        bint *neg) except -1:
    """Split Python's float text ("-1.25e-07", "123.5", "1e+16") into its significant digits
    (no leading or trailing zeros) and the decimal exponent of the first one."""
    cdef Py_ssize_t i = 0, n = 0, point = -1, e = 0, lead = 0
    cdef int esign = 1
    neg[0] = False
    if s[0] == b'-':
        neg[0] = True
        i = 1
    while s[i] != 0 and s[i] != b'e' and s[i] != b'E':
        if s[i] == b'.':
            point = n
        else:
            if n >= 40:
                raise ValueError("float text too long")
            digits[n] = s[i]
            n += 1
        i += 1
    if point < 0:
        point = n
    if s[i] != 0:
        i += 1
        if s[i] == b'-':
            esign = -1
            i += 1
        elif s[i] == b'+':
            i += 1
        while s[i] != 0:
            e = e * 10 + (s[i] - 48)
            i += 1
    while lead < n and digits[lead] == b'0':
        lead += 1
    if lead == n:
        raise ValueError("zero has no significant digits")
    memcpy(digits, digits + lead, n - lead)
    n -= lead
    point -= lead
    while n > 1 and digits[n - 1] == b'0':
        n -= 1
    nd[0] = n
    exp[0] = point - 1 + esign * e
    return 0


cdef bytes _format_large_integral(double v, int precision, Py_ssize_t fixed_below):
    """The text of a float whose gap to its neighbours is 2 or more (|v| >= 2**precision, an
    integer): the fewest significant digits strictly between the midpoints to its
    neighbours, the closest to v of those. Postgres's Ryu (STRICTLY_SHORTEST 0) never prints
    a midpoint, which reading would round to even: repr's shortest may be one (1e+23 is
    printed 9.999999999999999e+22), and only for such values (a midpoint of smaller floats
    has more digits than the float itself)."""
    cdef bint neg = v < 0
    cdef object n = int(-v if neg else v)
    cdef Py_ssize_t top = n.bit_length() - 1
    cdef object gap = (<object>1) << (top - precision + 1)
    # In quarter units: strictly above lo4 and below hi4. Below a power of two the gap is half.
    cdef object lo4 = 4 * n - (gap if n == (<object>1) << top else 2 * gap)
    cdef object hi4 = 4 * n + 2 * gap
    cdef str text = str(n)
    cdef Py_ssize_t keep
    cdef object unit, down, best
    best = None
    for keep in range(1, len(text) + 1):
        unit = _ipow10(len(text) - keep)
        down = n - n % unit
        for c in (down, down + unit):
            if lo4 < 4 * c < hi4 and (best is None or abs(c - n) < abs(best - n)):
                best = c
        if best is not None:
            break
    text = str(best)
    digits = text.rstrip("0").encode()
    return _pg_float_layout(neg, digits, len(digits), len(text) - 1, fixed_below)


cdef bytes format_float8(double v):
    """float8out's text (extra_float_digits >= 1): the shortest that reads back as v."""
    cdef char *s
    cdef char digits[48]
    cdef Py_ssize_t nd, exp
    cdef bint neg
    if isnan(v):
        return b"NaN"
    if isinf(v):
        return b"Infinity" if v > 0 else b"-Infinity"
    if v == 0:
        return b"-0" if signbit(v) else b"0"
    if fabs(v) >= 9007199254740992.0:           # 2**53: the gap is 2 or more
        return _format_large_integral(v, 53, 15)
    # repr's digits: the shortest string that rounds to v, the closest to v among those.
    s = PyOS_double_to_string(v, b'r', 0, 0, NULL)
    try:
        _split_decimal(s, digits, &nd, &exp, &neg)
    finally:
        PyMem_Free(s)
    return _pg_float_layout(neg, digits, nd, exp, 15)


cdef bint _f4_round_trips(const char *s, float f) noexcept:
    cdef char *end
    return strtof_l(s, &end, _C_LOCALE) == f


cdef int _bump_last_digit(char *s) noexcept:
    """Add one unit in the last place of a "d.ddde+XX" text in place (9.99e+00 -> 1.00e+01).
    Returns 0, or -1 when the exponent grows past what fits (never for float4's range)."""
    cdef Py_ssize_t i = 0, epos, k
    cdef int e, esign
    while s[i] != b'e':
        i += 1
    epos = i
    k = epos - 1
    while k >= 0:
        if s[k] == b'.' or s[k] == b'-':
            k -= 1
            continue
        if s[k] == b'9':
            s[k] = b'0'
            k -= 1
            continue
        s[k] = s[k] + 1
        return 0
    # Every digit was 9: the mantissa is 1.000... and the exponent goes up by one.
    i = 1 if s[0] == b'-' else 0
    s[i] = b'1'
    esign = -1 if s[epos + 1] == b'-' else 1
    e = 0
    k = epos + 2
    while s[k] != 0:
        e = e * 10 + (s[k] - 48)
        k += 1
    e = esign * e + 1
    k = epos + 1
    s[k] = b'-' if e < 0 else b'+'
    if e < 0:
        e = -e
    if e >= 100:
        return -1
    s[k + 1] = <char>(48 + e // 10)
    s[k + 2] = <char>(48 + e % 10)
    s[k + 3] = 0
    return 0


cdef bytes format_float4(float f):
    """float4out's text (extra_float_digits >= 1): the shortest decimal that reads back as f,
    the closest to f among those (Ryu's choice), laid out as Postgres does (exponent form
    from 1e+06)."""
    cdef char *s
    cdef char buf[48]
    cdef char digits[48]
    cdef Py_ssize_t nd, exp, p, ln
    cdef bint neg, found = False
    cdef uint32_t bits
    cdef bint asymmetric
    cdef double d = f
    if isnan(f):
        return b"NaN"
    if isinf(f):
        return b"Infinity" if f > 0 else b"-Infinity"
    if f == 0:
        return b"-0" if signbit(f) else b"0"
    if fabs(d) >= 16777216.0:                   # 2**24: the gap is 2 or more
        return _format_large_integral(d, 24, 6)
    memcpy(&bits, &f, 4)
    # At a power of two the gap below is half the gap above: the closest p-digit decimal
    # can miss while the next one up still reads back as f.
    asymmetric = (bits & 0x7FFFFF) == 0 and ((bits >> 23) & 0xFF) > 1
    for p in range(1, 10):
        # The p-digit decimal nearest to f (exact, ties to even: as Ryu rounds).
        s = PyOS_double_to_string(d, b'e', p - 1, 0, NULL)
        try:
            ln = <Py_ssize_t>strlen(s)
            if ln >= 40:
                raise ValueError("float text too long")
            memcpy(buf, s, ln + 1)
        finally:
            PyMem_Free(s)
        if _f4_round_trips(buf, f):
            found = True
            break
        # Only when the nearest candidate is on the narrow side (below f's magnitude).
        if asymmetric and fabs(strtod_l(buf, NULL, _C_LOCALE)) < fabs(d):
            if _bump_last_digit(buf) == 0 and _f4_round_trips(buf, f):
                found = True
                break
    if not found:
        raise ValueError(f"no float4 text for {d!r}")
    _split_decimal(buf, digits, &nd, &exp, &neg)
    return _pg_float_layout(neg, digits, nd, exp, 6)


def float_text(value: float, float4: bool = False) -> bytes:
    """Postgres's text of a float8 (or, with float4, of the float4 nearest value)."""
    if float4:
        return format_float4(<float>value)
    return format_float8(value)


# -- aggregates --------------------------------------------------------------------------------


class AggKind(enum.IntEnum):
    COUNT = AGG_COUNT
    SUM = AGG_SUM
    MIN = AGG_MIN
    MAX = AGG_MAX
    AVG = AGG_AVG
    BOOL_AND = AGG_BOOL_AND
    BOOL_OR = AGG_BOOL_OR
    STRING_AGG = AGG_STRING_AGG
    ARRAY_AGG = AGG_ARRAY_AGG


cdef enum AggImpl:
    IMPL_COUNT = 0             # count: int8 partials summed, never NULL
    IMPL_SUM_INT8 = 1          # sum(int2/int4): int8 partials summed, int8 out
    IMPL_SUM_NUMERIC = 2       # sum(int8/numeric): numeric partials, exact
    IMPL_SUM_FLOAT4 = 3
    IMPL_SUM_FLOAT8 = 4
    IMPL_MIN = 5
    IMPL_MAX = 6
    IMPL_AVG_NUMERIC = 7       # avg(int2/int4/int8/numeric) from sum and count
    IMPL_AVG_FLOAT = 8         # avg(float4/float8) from sum(x::float8) and count
    IMPL_BOOL_AND = 9
    IMPL_BOOL_OR = 10
    IMPL_STRING_AGG = 11
    IMPL_ARRAY_AGG = 12


# min/max exist in Postgres 15 for these input types (varchar and name resolve to text).
_MINMAX_TYPES = frozenset({20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 25, 1043,
                           19, 1700, 1042})


cdef tuple _plan_agg(int kind, uint32_t oid):
    """(impl, result OID, partial OIDs) of an aggregate over a type, or None."""
    if kind == AGG_COUNT:
        return (IMPL_COUNT, OID_INT8, (OID_INT8,))
    if kind == AGG_SUM:
        if oid == OID_INT2 or oid == OID_INT4:
            return (IMPL_SUM_INT8, OID_INT8, (OID_INT8,))
        if oid == OID_INT8 or oid == OID_NUMERIC:
            return (IMPL_SUM_NUMERIC, OID_NUMERIC, (OID_NUMERIC,))
        if oid == OID_FLOAT4:
            return (IMPL_SUM_FLOAT4, OID_FLOAT4, (OID_FLOAT4,))
        if oid == OID_FLOAT8:
            return (IMPL_SUM_FLOAT8, OID_FLOAT8, (OID_FLOAT8,))
        return None
    if kind == AGG_MIN or kind == AGG_MAX:
        if oid not in _MINMAX_TYPES:
            return None
        res = OID_TEXT if oid == OID_VARCHAR or oid == OID_NAME else oid
        return (IMPL_MIN if kind == AGG_MIN else IMPL_MAX, res, (res,))
    if kind == AGG_AVG:
        if oid == OID_INT2 or oid == OID_INT4:
            return (IMPL_AVG_NUMERIC, OID_NUMERIC, (OID_INT8, OID_INT8))
        if oid == OID_INT8 or oid == OID_NUMERIC:
            return (IMPL_AVG_NUMERIC, OID_NUMERIC, (OID_NUMERIC, OID_INT8))
        if oid == OID_FLOAT4 or oid == OID_FLOAT8:
            return (IMPL_AVG_FLOAT, OID_FLOAT8, (OID_FLOAT8, OID_INT8))
        return None
    if kind == AGG_BOOL_AND or kind == AGG_BOOL_OR:
        if oid != OID_BOOL:
            return None
        return (IMPL_BOOL_AND if kind == AGG_BOOL_AND else IMPL_BOOL_OR, OID_BOOL, (OID_BOOL,))
    if kind == AGG_STRING_AGG:
        if oid == OID_TEXT or oid == OID_VARCHAR or oid == OID_BPCHAR or oid == OID_NAME:
            return (IMPL_STRING_AGG, OID_TEXT, (OID_TEXT,))
        if oid == OID_BYTEA:
            return (IMPL_STRING_AGG, OID_BYTEA, (OID_BYTEA,))
        return None
    if kind == AGG_ARRAY_AGG:
        arr = _ARRAY_OF.get(oid)
        if arr is None:
            return None
        return (IMPL_ARRAY_AGG, arr, (arr,))
    return None


def supported_aggregate(kind: int, input_oid: int = 0) -> bool:
    """Whether partials of this aggregate over this input type merge exactly (count ignores
    the input type: count(*) and count(x) alike)."""
    if not 0 <= input_oid <= 0xFFFFFFFF or kind not in AggKind._value2member_map_:
        return False
    return _plan_agg(kind, <uint32_t>input_oid) is not None


@cython.final
cdef class AggSpec:
    """One aggregate of a plan: ``AggSpec(kind, input_oid=0, delimiter=None)``.

    What a shard must send for it (``partial_oids``): count -> count(x); sum -> sum(x);
    min/max -> min(x)/max(x); avg -> sum(x) and count(x), two columns, except avg(float4):
    sum(x::float8) and count(x) (Postgres averages float4 in float8); bool_and/bool_or ->
    the same; string_agg(x, d) -> string_agg(x, d) with a constant delimiter ``d`` (given
    here as the delimiter's value: text bytes, or the raw bytes for bytea; None for NULL);
    array_agg(x) -> array_agg(x). None of them with ORDER BY or DISTINCT inside (count
    DISTINCT is planned as a GROUP BY). string_agg and array_agg concatenate in the order the
    partials are combined, as Postgres does in the order it happens to scan.

    Raises ``UnsupportedType`` when the aggregate cannot be merged exactly.
    """

    def __init__(self, kind: int, input_oid: int = 0, delimiter: bytes | None = None) -> None:
        if kind not in AggKind._value2member_map_:
            raise ValueError(f"unknown aggregate kind {kind}")
        plan = None
        if 0 <= input_oid <= 0xFFFFFFFF:
            plan = _plan_agg(kind, <uint32_t>input_oid)
        if plan is None:
            raise UnsupportedType(
                f"{AggKind(kind).name.lower()}({type_name(input_oid)}) cannot be merged "
                f"across shards"
            )
        self.kind = kind
        self.input_oid = input_oid
        self.impl, self.result_oid, self.partial_oids = plan
        self.tclass = type_class(input_oid)
        self.delimiter = delimiter
        self._delim_text = b""
        if kind == AGG_STRING_AGG and delimiter is not None:
            if not PyBytes_CheckExact(delimiter):
                raise TypeError("string_agg's delimiter must be bytes or None")
            self._delim_text = delimiter.hex().encode() if input_oid == OID_BYTEA else delimiter

    @property
    def columns(self) -> int:
        """How many partial columns a shard sends for this aggregate (2 for avg)."""
        return len(self.partial_oids)

    cdef AggState new_state(self):
        cdef AggState st
        cdef int impl = self.impl
        if impl == IMPL_COUNT or impl == IMPL_SUM_INT8:
            st = _IntSum.__new__(_IntSum)
        elif impl == IMPL_SUM_NUMERIC:
            st = _NumSum.__new__(_NumSum)
        elif impl == IMPL_SUM_FLOAT4 or impl == IMPL_SUM_FLOAT8:
            st = _FloatSum.__new__(_FloatSum)
            (<_FloatSum>st).float4 = impl == IMPL_SUM_FLOAT4
        elif impl == IMPL_MIN or impl == IMPL_MAX:
            st = _MinMax.__new__(_MinMax)
        elif impl == IMPL_AVG_NUMERIC:
            st = _AvgNumeric.__new__(_AvgNumeric)
            (<_Avg>st).sum = _NumSum.__new__(_NumSum)
            (<_Avg>st).sum.spec = self
        elif impl == IMPL_AVG_FLOAT:
            st = _AvgFloat.__new__(_AvgFloat)
            (<_Avg>st).sum = _FloatSum.__new__(_FloatSum)
            (<_Avg>st).sum.spec = self
        elif impl == IMPL_BOOL_AND or impl == IMPL_BOOL_OR:
            st = _BoolAgg.__new__(_BoolAgg)
            (<_BoolAgg>st).value = -1
        elif impl == IMPL_STRING_AGG:
            st = _StringAgg.__new__(_StringAgg)
        else:
            st = _ArrayAgg.__new__(_ArrayAgg)
        st.spec = self
        return st

    def state(self) -> AggState:
        """A fresh accumulator (one per group)."""
        return self.new_state()

    cpdef object combine(self, object a, object b):
        """Combine two partials (texts, None for NULL; (sum, count) pairs for avg) into the
        partial of both, in that order."""
        cdef AggState st = self.new_state()
        _add_partial(st, a)
        _add_partial(st, b)
        return st.partial_value()

    cpdef object final(self, object partial):
        """The final text (None for NULL) of a partial, exactly as Postgres prints it."""
        cdef AggState st = self.new_state()
        _add_partial(st, partial)
        return st.final_value()

    def __repr__(self) -> str:
        return (f"AggSpec({AggKind(self.kind).name}, {self.input_oid}"
                + (f", delimiter={self.delimiter!r})" if self.kind == AGG_STRING_AGG else ")"))


cdef class AggState:
    """The accumulator of one aggregate in one group (``AggSpec.state()``): fold partials in
    with ``combine``, read the result with ``final``."""

    def __init__(self) -> None:
        raise TypeError("an AggState comes from AggSpec.state()")

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        raise NotImplementedError

    cdef int add_count(self, const unsigned char *p, Py_ssize_t n) except -1:
        raise TypeError(f"{AggKind(self.spec.kind).name.lower()} takes one partial column")

    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1:
        # For most aggregates a value is its own partial (a sum of one, a min of one, ...).
        return self.add(p, n)

    cdef int add_row(self, RowView row, Py_ssize_t column) except -1:
        cdef Py_ssize_t need = column + (2 if self.spec.impl == IMPL_AVG_NUMERIC
                                         or self.spec.impl == IMPL_AVG_FLOAT else 1)
        if column < 0 or row.ncols < need:
            raise ProtocolError(
                f"a row of {row.ncols} columns has no partial aggregate at column {column}"
            )
        self.add(row.base + row.cols[column].off, row.cols[column].len)
        if need == column + 2:
            self.add_count(row.base + row.cols[column + 1].off, row.cols[column + 1].len)
        return 0

    cdef object final_value(self):
        raise NotImplementedError

    cdef object partial_value(self):
        return self.final_value()

    def combine(self, partial) -> None:
        """Fold in one partial: text (None for NULL), or a (sum, count) pair for avg."""
        _add_partial(self, partial)

    def combine_input(self, value: bytes | None) -> None:
        """Fold in one input value (not a partial), as the aggregate's transition function
        does: for aggregates the gateway computes from rows itself (DISTINCT ones)."""
        _add_value_input(self, value)

    def combine_row(self, RowView row not None, column: int) -> None:
        """Fold in the partial at ``column`` of a row (and column + 1, the count, for avg)."""
        self.add_row(row, column)

    def final(self):
        """The final text, exactly as Postgres prints it (None for SQL NULL)."""
        return self.final_value()

    def partial(self):
        """The combined partial, as a shard would have sent it."""
        return self.partial_value()


cdef int _add_partial(AggState st, object partial) except -1:
    if st.spec.impl == IMPL_AVG_NUMERIC or st.spec.impl == IMPL_AVG_FLOAT:
        if partial is None:
            return 0
        s, c = partial
        _add_value(st, s, False)
        return _add_value(st, c, True)
    return _add_value(st, partial, False)


cdef int _add_value(AggState st, object value, bint count) except -1:
    cdef Py_ssize_t n = -1
    cdef const uchar *p = NULL
    if value is not None:
        p = _bytes_ptr(value, &n)
    if count:
        return st.add_count(p, n)
    return st.add(p, n)


cdef int _add_value_input(AggState st, object value) except -1:
    cdef Py_ssize_t n = -1
    cdef const uchar *p = NULL
    if value is not None:
        p = _bytes_ptr(value, &n)
    return st.add_input(p, n)


cdef int _overflow(str what) except -1:
    raise ValueOutOfRange(what)


@cython.final
cdef class _IntSum(AggState):
    # count, and sum(int2/int4): int8 partials added as int8pl does (overflow is an error).
    cdef int64_t total
    cdef bint seen

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef int64_t v
        if n < 0:
            return 0
        if _parse_i64(p, n, &v) < 0:
            return _bad_value(TC_INT, p, n)
        if mg_add_i64(self.total, v, &self.total):
            return _overflow("bigint out of range")
        self.seen = True
        return 0

    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1:
        if self.spec.impl != IMPL_COUNT:
            return self.add(p, n)
        if n >= 0:             # count(x): the non-NULL values (int8inc_any)
            if mg_add_i64(self.total, 1, &self.total):
                return _overflow("bigint out of range")
        self.seen = True
        return 0

    cdef object final_value(self):
        if not self.seen:
            return b"0" if self.spec.impl == IMPL_COUNT else None
        return _format_i64(self.total)


@cython.final
cdef class _NumSum(AggState):
    # sum(int8/numeric) and the sum of avg: exact. The sum is small * 10**-scale while it fits
    # in an int64, then a Python int (big); the scale is the largest display scale seen, as
    # numeric addition keeps it. NaN and the infinities are counted as Postgres's
    # NumericSumAccum counts them.
    cdef int64_t small
    cdef object big
    cdef Py_ssize_t scale
    cdef bint seen
    cdef int nan
    cdef int pinf
    cdef int ninf

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef NumText t
        cdef int64_t v = 0, r
        cdef Py_ssize_t i, nd
        if n < 0:
            return 0
        if _parse_numeric(p, n, &t) < 0:
            return _bad_value(TC_NUMERIC, p, n)
        self.seen = True
        if t.special != NUM_FINITE:
            if t.special == NUM_NAN:
                self.nan = 1
            elif t.special == NUM_PINF:
                self.pinf = 1
            else:
                self.ninf = 1
            return 0
        nd = t.int_len + t.frac_len
        if self.big is None and nd <= 18:
            for i in range(t.int_len):
                v = v * 10 + (p[t.int_start + i] - 48)
            for i in range(t.frac_len):
                v = v * 10 + (p[t.frac_start + i] - 48)
            if t.neg:
                v = -v
            if t.frac_len > self.scale:
                if t.frac_len - self.scale > 18 or mg_mul_i64(
                        self.small, _POW10[t.frac_len - self.scale], &r):
                    return self._add_big(p, &t)
                self.small = r
                self.scale = t.frac_len
            elif t.frac_len < self.scale:
                if self.scale - t.frac_len > 18 or mg_mul_i64(
                        v, _POW10[self.scale - t.frac_len], &v):
                    return self._add_big(p, &t)
            if mg_add_i64(self.small, v, &r):
                return self._add_big(p, &t)
            self.small = r
            return 0
        return self._add_big(p, &t)

    cdef int _add_big(self, const uchar *p, NumText *t) except -1:
        cdef object v
        if self.big is None:
            self.big = self.small
        digits = PyBytes_FromStringAndSize(<const char *>p + t.int_start, t.int_len) \
            + PyBytes_FromStringAndSize(<const char *>p + t.frac_start, t.frac_len)
        v = int(digits) if digits else 0
        if t.neg:
            v = -v
        if t.frac_len > self.scale:
            self.big = self.big * _ipow10(t.frac_len - self.scale)
            self.scale = t.frac_len
        elif t.frac_len < self.scale:
            v = v * _ipow10(self.scale - t.frac_len)
        self.big = self.big + v
        return 0

    cdef object mantissa(self):
        return self.small if self.big is None else self.big

    cdef object special_text(self):
        # numeric_sum/numeric_avg: any NaN -> NaN; +Infinity and -Infinity -> NaN.
        if self.nan or (self.pinf and self.ninf):
            return b"NaN"
        if self.pinf:
            return b"Infinity"
        if self.ninf:
            return b"-Infinity"
        return None

    cdef object final_value(self):
        if not self.seen:
            return None
        special = self.special_text()
        if special is not None:
            return special
        return _format_scaled(self.mantissa(), self.scale)


@cython.final
cdef class _FloatSum(AggState):
    # sum(float4/float8), and avg's float8 sum: float4pl/float8pl on the partials.
    cdef double total
    cdef bint seen
    cdef bint float4

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef double v
        cdef float fv, ft
        if n < 0:
            return 0
        if self.float4:
            if _parse_float4(p, n, &fv) < 0:
                return _bad_value(TC_FLOAT, p, n)
            if not self.seen:
                self.total = fv
            else:
                ft = <float>self.total
                ft = ft + fv
                # float_overflow_error: an infinite sum of finite values.
                if isinf(ft) and not isinf(<float>self.total) and not isinf(fv):
                    return _overflow("value out of range: overflow")
                self.total = ft
        else:
            if _parse_float(p, n, &v) < 0:
                return _bad_value(TC_FLOAT, p, n)
            return self.add_double(v)
        self.seen = True
        return 0

    cdef int add_double(self, double v) except -1:
        if not self.seen:
            self.total = v
            self.seen = True
        else:
            if isinf(self.total + v) and not isinf(self.total) and not isinf(v):
                return _overflow("value out of range: overflow")
            self.total = self.total + v
        return 0

    cdef object final_value(self):
        if not self.seen:
            return None
        if self.float4:
            return format_float4(<float>self.total)
        return format_float8(self.total)


@cython.final
cdef class _MinMax(AggState):
    # The text of the least (greatest) partial. On a tie the later one wins, as numeric_smaller,
    # float8larger, interval_smaller, ... return their second argument; bpchar keeps the first
    # (bpchar_smaller/larger test <= / >=). Ties matter where equal values print differently:
    # 1.0 and 1.00, 0 and -0, '1 mon' and '30 days', 'a' and 'a  '.
    cdef object value

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef Py_ssize_t cn
        cdef const uchar *cp
        cdef int c
        if n < 0:
            return 0
        if self.value is None:
            self.value = PyBytes_FromStringAndSize(<const char *>p, n)
            return 0
        cp = <const uchar *>PyBytes_AS_STRING(self.value)
        cn = PyBytes_GET_SIZE(self.value)
        c = compare_values(self.spec.tclass, p, n, cp, cn)
        if self.spec.impl == IMPL_MAX:
            c = -c
        if c < 0 or (c == 0 and self.spec.tclass != TC_BPCHAR
                     and (cn != n or memcmp(p, cp, n) != 0)):
            self.value = PyBytes_FromStringAndSize(<const char *>p, n)
        return 0

    cdef object final_value(self):
        return self.value


cdef class _Avg(AggState):
    """avg's state: the sum (a _NumSum or a _FloatSum) and the count; its partial is the
    pair (sum, count)."""
    cdef AggState sum
    cdef int64_t count

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        return self.sum.add(p, n)

    cdef int add_count(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef int64_t v
        if n < 0:
            return 0
        if _parse_i64(p, n, &v) < 0:
            return _bad_value(TC_INT, p, n)
        if mg_add_i64(self.count, v, &self.count):
            return _overflow("bigint out of range")
        return 0

    cdef int count_one(self) except -1:
        if mg_add_i64(self.count, 1, &self.count):
            return _overflow("bigint out of range")
        return 0

    cdef object partial_value(self):
        return (self.sum.final_value(), _format_i64(self.count))


@cython.final
cdef class _AvgNumeric(_Avg):

    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1:
        if n < 0:
            return 0
        self.sum.add(p, n)
        return self.count_one()

    cdef object final_value(self):
        # int8_avg / numeric_poly_avg / numeric_avg: NULL without rows, NaN and the
        # infinities as the sum has them, else numeric_div(sum, count).
        cdef _NumSum total = <_NumSum>self.sum
        if not total.seen or self.count == 0:
            return None
        special = total.special_text()
        if special is not None:
            return special
        return _numeric_div(total.mantissa(), total.scale, self.count)


@cython.final
cdef class _AvgFloat(_Avg):

    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1:
        # float4_accum/float8_accum: Sx += the value as a double (a float4 widened exactly).
        cdef float fv
        if n < 0:
            return 0
        if self.spec.input_oid == OID_FLOAT4:
            if _parse_float4(p, n, &fv) < 0:
                return _bad_value(TC_FLOAT, p, n)
            (<_FloatSum>self.sum).add_double(<double>fv)
        else:
            self.sum.add(p, n)
        return self.count_one()

    cdef object final_value(self):
        # float8_avg: Sx / N, N counted in a double. Postgres's Sx starts at 0.0, so it is
        # never -0 (0.0 + -0.0 is 0.0), where the shards' sums of -0 values are.
        cdef _FloatSum sum = <_FloatSum>self.sum
        cdef double total = sum.total
        if self.count == 0 or not sum.seen:
            return None
        if total == 0:
            total = 0.0
        return format_float8(total / <double>self.count)


@cython.final
cdef class _BoolAgg(AggState):
    cdef int value          # -1: no input yet

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef int v
        if n < 0:
            return 0
        if n != 1 or (p[0] != b't' and p[0] != b'f'):
            return _bad_value(TC_BOOL, p, n)
        v = p[0] == b't'
        if self.value < 0:
            self.value = v
        elif self.spec.impl == IMPL_BOOL_AND:
            self.value = self.value & v
        else:
            self.value = self.value | v
        return 0

    cdef object final_value(self):
        if self.value < 0:
            return None
        return b"t" if self.value else b"f"


@cython.final
cdef class _StringAgg(AggState):
    # Partials joined with the delimiter, in the order they come (bytea: the hex digits, under
    # one '\x').
    cdef bytearray buf

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        cdef Py_ssize_t skip = 0
        if n < 0:
            return 0
        if self.spec.input_oid == OID_BYTEA:
            if n < 2 or p[0] != b'\\' or p[1] != b'x' or n & 1:
                return _bad_value(TC_BYTEA, p, n)
            skip = 2
        if self.buf is None:
            self.buf = bytearray(PyBytes_FromStringAndSize(<const char *>p + skip, n - skip))
        else:
            self.buf += self.spec._delim_text
            self.buf += PyBytes_FromStringAndSize(<const char *>p + skip, n - skip)
        return 0

    cdef object final_value(self):
        if self.buf is None:
            return None
        if self.spec.input_oid == OID_BYTEA:
            return b"\\x" + bytes(self.buf)
        return bytes(self.buf)


@cython.final
cdef class _ArrayAgg(AggState):
    # '{a,b}' + '{c}' -> '{a,b,c}': the elements keep the quoting their own output gave them
    # (array_agg of one-dimensional, lower-bound-1 arrays only: non-array input types).
    cdef bytearray buf

    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1:
        if n < 0:
            return 0
        # array_agg never returns '{}' (no rows: NULL) nor '[2:3]={...}' (bounds are 1).
        if n < 3 or p[0] != b'{' or p[n - 1] != b'}':
            return _bad_value(TC_UNSUPPORTED, p, n)
        if self.buf is None:
            self.buf = bytearray(PyBytes_FromStringAndSize(<const char *>p, n))
        else:
            self.buf[len(self.buf) - 1] = 44        # '}' -> ','
            self.buf += PyBytes_FromStringAndSize(<const char *>p + 1, n - 1)
        return 0

    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1:
        # One element (NULL included, as array_agg keeps them), quoted as array_out does.
        if self.buf is None:
            self.buf = bytearray(b"{")
        else:
            self.buf[len(self.buf) - 1] = 44        # '}' -> ','
        if n < 0:
            self.buf += b"NULL"
        else:
            _append_array_element(self.buf, p, n)
        self.buf.append(125)                        # '}'
        return 0

    cdef object final_value(self):
        if self.buf is None:
            return None
        return bytes(self.buf)


cdef int _append_array_element(bytearray out, const uchar *p, Py_ssize_t n) except -1:
    """array_out's element text: in double quotes when empty, NULL (any case), or holding a
    brace, the ',' delimiter, a quote, a backslash or white space; quotes and backslashes
    escaped with a backslash."""
    cdef Py_ssize_t i
    cdef uchar ch
    cdef bint quote = n == 0 or (n == 4 and (p[0] | 32) == b'n' and (p[1] | 32) == b'u'
                                 and (p[2] | 32) == b'l' and (p[3] | 32) == b'l')
    for i in range(n):
        ch = p[i]
        if ch == b'{' or ch == b'}' or ch == b',' or ch == b'"' or ch == b'\\' \
                or ch == b' ' or ch == b'\t' or ch == b'\n' or ch == b'\r' or ch == 11 \
                or ch == 12:
            quote = True
            break
    if not quote:
        out += PyBytes_FromStringAndSize(<const char *>p, n)
        return 0
    out.append(34)
    for i in range(n):
        ch = p[i]
        if ch == b'"' or ch == b'\\':
            out.append(92)
        out.append(ch)
    out.append(34)
    return 0


def fold_groups(rows, SortSpec group_by not None, aggs, agg_columns) -> dict:
    """Hash-aggregate partial rows (RowViews, or DataRow payloads as bytes): for each group of
    ``group_by`` (equal as Postgres's GROUP BY finds them), the first row of the group (a
    RowView) and one AggState per aggregate, with every row's partials (``aggs[i]`` at column
    ``agg_columns[i]``) folded in, in row order. Payloads are framed in place in one scratch
    RowView; only a group's first row gets its own. Returns {group key: (first row,
    [AggState, ...])}, in the order the groups first appear."""
    cdef dict groups = {}
    cdef tuple specs = tuple(aggs)
    cdef tuple cols = tuple(agg_columns)
    cdef Py_ssize_t na = len(specs), i
    cdef RowView row
    cdef RowView scratch = RowView.__new__(RowView)
    cdef bytes key
    cdef list states
    cdef object entry
    scratch.cols = scratch._inline
    if len(cols) != na:
        raise ValueError("one partial column per aggregate")
    for spec in specs:
        if not isinstance(spec, AggSpec):
            raise TypeError("aggs must be AggSpec items")
    for item in rows:
        if type(item) is RowView:
            row = <RowView>item
        elif PyBytes_CheckExact(item):
            _frame(scratch, item, 0, -1)
            row = scratch
        else:
            raise TypeError(f"fold_groups folds RowViews or payloads, not {type(item).__name__}")
        key = group_key(row, group_by)
        entry = groups.get(key)
        if entry is None:
            states = [(<AggSpec>specs[i]).new_state() for i in range(na)]
            groups[key] = (row if row is not scratch else row_view(item, 0, -1), states)
        else:
            states = <list>(<tuple>entry)[1]
        for i in range(na):
            (<AggState>states[i]).add_row(row, <Py_ssize_t>cols[i])
    return groups


def sort_rows(SortSpec spec not None, rows) -> list:
    """Rows (RowViews, or DataRow payloads as bytes) sorted by ``spec``, stable: ORDER BY at
    the gateway (after a GROUP BY, say). Returns the same items, in order."""
    cdef list items = list(rows)
    cdef Py_ssize_t n = len(items), i, width, lo, mid, hi, a, b, t
    cdef list views
    cdef Py_ssize_t *idx
    cdef Py_ssize_t *tmp
    cdef Py_ssize_t *swap
    if n < 2:
        return items
    views = [None] * n
    for i in range(n):
        item = items[i]
        if type(item) is RowView:
            views[i] = item
        elif PyBytes_CheckExact(item):
            views[i] = row_view(item, 0, -1)
        else:
            raise TypeError(f"sort_rows sorts RowViews or payloads, not {type(item).__name__}")
    idx = <Py_ssize_t *>PyMem_Malloc(2 * n * sizeof(Py_ssize_t))
    if idx == NULL:
        raise MemoryError()
    tmp = idx + n
    try:
        for i in range(n):
            idx[i] = i
        # Bottom-up merge sort of indexes: stable, n log n comparisons in C.
        width = 1
        while width < n:
            lo = 0
            while lo < n:
                mid = min(lo + width, n)
                hi = min(lo + 2 * width, n)
                a, b, t = lo, mid, lo
                while a < mid and b < hi:
                    if compare_rows(<RowView>views[idx[b]], <RowView>views[idx[a]], spec) < 0:
                        tmp[t] = idx[b]
                        b += 1
                    else:
                        tmp[t] = idx[a]
                        a += 1
                    t += 1
                while a < mid:
                    tmp[t] = idx[a]
                    a += 1
                    t += 1
                while b < hi:
                    tmp[t] = idx[b]
                    b += 1
                    t += 1
                lo = hi
            swap = idx
            idx = tmp
            tmp = swap
            width *= 2
        out = [items[idx[i]] for i in range(n)]
    finally:
        PyMem_Free(idx if idx < tmp else tmp)
    return out
