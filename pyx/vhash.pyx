"""The vindex hash functions, one value or a whole list at a time.

The functions over lists (``hash_ids``, ``xxhash_ids``, ...) are what a vindex's ``map`` calls
for an IN list or a multi-row INSERT: one C loop over the values, no Python call per value
(except the Unicode normalization of non-ASCII text). Each returns one keyspace id per value,
8 bytes big-endian, or None where the value is None (SQL NULL: it matches no row).

The definitions are in csrc/vhash.h and docs/vschema.md.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

import unicodedata

ctypedef unsigned char uchar

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)

# The int64 bounds as magnitudes: a positive value up to 2^63 - 1, a negative one up to 2^63.
cdef uint64_t _POS_LIMIT = 0x7FFFFFFFFFFFFFFFULL
cdef uint64_t _NEG_LIMIT = 0x8000000000000000ULL

# xxhash_ids's modes, for Python.
XX_AUTO = XXI_AUTO
XX_INT = XXI_INT
XX_TEXT = XXI_TEXT
XX_BYTES = XXI_BYTES


cdef inline bint _is_space(uchar c) noexcept:
    # Postgres's int8in skips what C's isspace() accepts in the C locale.
    return c == 32 or (9 <= c <= 13)


cdef int _parse_int64(const uchar *p, Py_ssize_t n, object value, int64_t *out) except -1:
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef uint64_t acc = 0
    cdef uint64_t limit
    cdef Py_ssize_t digits = 0
    while i < n and _is_space(p[i]):
        i += 1
    if i < n and (p[i] == 43 or p[i] == 45):  # '+' '-'
        neg = p[i] == 45
        i += 1
    limit = _NEG_LIMIT if neg else _POS_LIMIT
    while i < n and 48 <= p[i] <= 57:
        if acc > (limit - (p[i] - 48)) // 10:
            raise OverflowError(f"{value!r} is out of range for a 64-bit integer")
        acc = acc * 10 + (p[i] - 48)
        digits += 1
        i += 1
    while i < n and _is_space(p[i]):
        i += 1
    if digits == 0 or i != n:
        raise ValueError(f"{value!r} is not an integer")
    out[0] = <int64_t>(0 - acc) if neg else <int64_t>acc
    return 0


cdef int int64_of(object value, int64_t *out) except -1:
    cdef int overflow = 0
    cdef long long v
    cdef const char *s
    cdef Py_ssize_t n
    if isinstance(value, int):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is a boolean, not an integer")
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            raise OverflowError(f"{value!r} is out of range for a 64-bit integer")
        out[0] = v
        return 0
    if isinstance(value, str):
        s = PyUnicode_AsUTF8AndSize(value, &n)
        return _parse_int64(<const uchar *>s, n, value, out)
    if isinstance(value, bytes):
        return _parse_int64(<const uchar *>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                            value, out)
    raise ValueError(f"{value!r} ({type(value).__name__}) is not an integer")


cdef bytes ksid_of(uint64_t v):
    cdef uchar buf[8]
    mg_store_be64(buf, v)
    return PyBytes_FromStringAndSize(<char *>buf, 8)


cdef uint64_t _uint64_arg(object v) except? 0:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"{v!r} is not an unsigned 64-bit integer")
    return <uint64_t>v


def hash64(v):
    """The ``hash`` vindex's function on an unsigned 64-bit integer (SplitMix64's output)."""
    return mg_hash64(_uint64_arg(v))


def unhash64(v):
    """The inverse of :func:`hash64`."""
    return mg_unhash64(_uint64_arg(v))


def to_uint64(value: object) -> int:
    """The value (an int or the text of one) as the uint64 of its two's complement."""
    cdef int64_t v
    int64_of(value, &v)
    return <uint64_t>v


def xxh64(data, seed=0):
    """XXH64 of ``data`` with ``seed``."""
    cdef const uchar[:] view = data
    cdef uint64_t s = _uint64_arg(seed)
    if view.shape[0] == 0:
        return mg_xxh64(NULL, 0, s)
    return mg_xxh64(&view[0], view.shape[0], s)


def hash_ids(values: object) -> list:
    """The ``hash`` vindex: ``ksid(hash64(uint64(v)))`` for each value; None stays None."""
    cdef list out = []
    cdef int64_t v
    for value in values:
        if value is None:
            out.append(None)
            continue
        int64_of(value, &v)
        out.append(ksid_of(mg_hash64(<uint64_t>v)))
    return out


def numeric_ids(values: object) -> list:
    """The ``numeric`` vindex: the value's own 8 bytes (two's complement, big-endian)."""
    cdef list out = []
    cdef int64_t v
    for value in values:
        if value is None:
            out.append(None)
            continue
        int64_of(value, &v)
        out.append(ksid_of(<uint64_t>v))
    return out


def _bytea_text(text: str) -> bytes:
    # A bytea in Postgres's hex text form (\x0102), or plain text without backslashes.
    if text.startswith("\\x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise ValueError(f"{text!r} is not valid bytea hex text") from None
    if "\\" in text:
        raise ValueError(f"{text!r}: only the hex form of bytea text (\\x...) is supported")
    return text.encode()


cdef uint64_t _xx_bytes(object data) except? 0:
    # XXH64 (seed 0) of a bytes, bytearray or str (UTF-8) object.
    cdef const char *s
    cdef Py_ssize_t n
    if isinstance(data, bytes):
        return mg_xxh64(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), 0)
    if isinstance(data, str):
        s = PyUnicode_AsUTF8AndSize(data, &n)
        return mg_xxh64(s, n, 0)
    if isinstance(data, bytearray):
        return mg_xxh64(PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data), 0)
    raise ValueError(f"{data!r} ({type(data).__name__}) is not text or bytes")


cdef uint64_t _xx_int(int64_t v) noexcept:
    cdef uchar buf[8]
    mg_store_be64(buf, <uint64_t>v)
    return mg_xxh64(buf, 8, 0)


def xxhash_ids(values: object, int mode=XXI_INT) -> list:
    """The ``xxhash`` vindex: XXH64 (seed 0) of each value's bytes, by ``mode``:

    - XX_INT (1): the value as a 64-bit integer (an int, or the text of one), hashed as its
      8 bytes big-endian (two's complement);
    - XX_TEXT (2): str as UTF-8, bytes as they are, an int as its decimal text;
    - XX_BYTES (3): bytes as they are, str as bytea text (``\\x`` hex, or plain text);
    - XX_AUTO (0): by the Python type: int as XX_INT, str as UTF-8, bytes as they are.
    """
    cdef list out = []
    cdef int64_t v
    cdef uint64_t h
    if mode < XXI_AUTO or mode > XXI_BYTES:
        raise ValueError(f"unknown xxhash input mode {mode}")
    for value in values:
        if value is None:
            out.append(None)
            continue
        if mode == XXI_INT or (mode == XXI_AUTO and isinstance(value, int)):
            int64_of(value, &v)
            h = _xx_int(v)
        elif mode == XXI_TEXT and isinstance(value, int) and not isinstance(value, bool):
            h = _xx_bytes(str(value))
        elif mode == XXI_BYTES and isinstance(value, str):
            h = _xx_bytes(_bytea_text(value))
        else:
            h = _xx_bytes(value)
        out.append(ksid_of(h))
    return out


def unicode_key(text: str, bint case_insensitive) -> str:
    """The text the ``unicode_xxhash`` vindex hashes: NFKC, and with ``case_insensitive``
    NFKC of its case fold."""
    key = unicodedata.normalize("NFKC", text)
    if case_insensitive:
        key = unicodedata.normalize("NFKC", key.casefold())
    return key


cdef uint64_t _xx_ascii_lower(const uchar *s, Py_ssize_t n) noexcept:
    # XXH64 of ASCII text with A-Z folded: what unicode_key gives for ASCII, without a copy
    # on the heap for short keys.
    cdef uchar stack[256]
    cdef uchar *buf = stack
    cdef Py_ssize_t i
    cdef bytes big
    if n > 256:
        big = PyBytes_FromStringAndSize(NULL, n)
        buf = <uchar *>PyBytes_AS_STRING(big)
    for i in range(n):
        buf[i] = s[i] + 32 if 65 <= s[i] <= 90 else s[i]
    return mg_xxh64(buf, n, 0)


def unicode_ids(values: object, bint case_insensitive=False) -> list:
    """The ``unicode_xxhash`` vindex: XXH64 (seed 0) of the UTF-8 of ``unicode_key(v)``.

    ASCII text (NFKC leaves it as it is, and its case fold is A-Z to a-z) is hashed in C;
    only other text goes through ``unicodedata``. bytes are read as UTF-8.
    """
    cdef list out = []
    cdef const char *s
    cdef Py_ssize_t n
    for value in values:
        if value is None:
            out.append(None)
            continue
        if isinstance(value, (bytes, bytearray)):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise ValueError(f"{value!r} is not UTF-8 text") from None
        elif not isinstance(value, str):
            raise ValueError(f"{value!r} ({type(value).__name__}) is not text")
        if PyUnicode_IS_ASCII(value):
            s = PyUnicode_AsUTF8AndSize(value, &n)
            if case_insensitive:
                out.append(ksid_of(_xx_ascii_lower(<const uchar *>s, n)))
            else:
                out.append(ksid_of(mg_xxh64(s, n, 0)))
        else:
            out.append(ksid_of(_xx_bytes(unicode_key(value, case_insensitive))))
    return out


def join_prefixes(columns: list, widths: list) -> list:
    """Row i's keyspace id from the first ``widths[c]`` bytes of ``columns[c][i]``, column by
    column (the ``multicol`` vindex). A row with a None in any column gives None. The widths
    must add up to 8 and every column must have as many rows as the first."""
    cdef Py_ssize_t ncols = len(columns)
    cdef Py_ssize_t nrows, r, c, pos, w
    cdef uchar buf[8]
    cdef list out = []
    cdef bytes part
    cdef int total = 0
    if ncols != len(widths) or ncols == 0:
        raise ValueError("join_prefixes: one width per column, at least one column")
    for c in range(ncols):
        w = widths[c]
        if w < 1 or w > 8:
            raise ValueError(f"join_prefixes: width {w} not in 1..8")
        total += w
    if total != 8:
        raise ValueError(f"join_prefixes: widths add up to {total}, not 8")
    nrows = len(columns[0])
    for c in range(1, ncols):
        if len(columns[c]) != nrows:
            raise ValueError("join_prefixes: columns of different lengths")
    for r in range(nrows):
        pos = 0
        for c in range(ncols):
            item = (<list>columns[c])[r]
            if item is None:
                pos = -1
                break
            part = <bytes>item
            w = widths[c]
            if PyBytes_GET_SIZE(part) < w:
                raise ValueError(f"join_prefixes: {part!r} is shorter than {w} bytes")
            memcpy(&buf[pos], PyBytes_AS_STRING(part), w)
            pos += w
        out.append(None if pos < 0 else PyBytes_FromStringAndSize(<char *>buf, 8))
    return out


cdef inline int _cmp(bytes a, bytes b) noexcept:
    cdef Py_ssize_t na = PyBytes_GET_SIZE(a)
    cdef Py_ssize_t nb = PyBytes_GET_SIZE(b)
    cdef int r = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), na if na < nb else nb)
    if r != 0:
        return r
    return (na > nb) - (na < nb)


cdef inline Py_ssize_t _find(list starts, Py_ssize_t n, bytes k):
    # The last start <= k: binary search for the first start > k, minus one (starts[0] is b"").
    cdef Py_ssize_t lo = 1
    cdef Py_ssize_t hi = n
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _cmp(<bytes>starts[mid], k) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


cdef Py_ssize_t _check_starts(list starts) except -1:
    cdef Py_ssize_t n = len(starts)
    if n == 0 or PyBytes_GET_SIZE(<bytes>starts[0]) != 0:
        raise ValueError("locate: starts must begin with b''")
    return n


def locate(starts: list, ids: object) -> list:
    """For each keyspace id, the index of the last entry of ``starts`` (sorted bytes, the
    first one b"") that is <= it: the shard that owns it when ``starts`` are the start keys of
    shards covering the space in order. None gives -1."""
    cdef Py_ssize_t n = _check_starts(starts)
    cdef list out = []
    for item in ids:
        out.append(-1 if item is None else _find(starts, n, <bytes?>item))
    return out


def locate_groups(starts: list, ids: object) -> list:
    """Like :func:`locate`, gathered: for each entry of ``starts``, the positions of the ids
    it owns, in order (None ids are in no group). What splits an IN list or a multi-row
    INSERT by shard, in one C loop."""
    cdef Py_ssize_t n = _check_starts(starts)
    cdef list groups = [[] for _ in range(n)]
    cdef Py_ssize_t pos = 0
    for item in ids:
        if item is not None:
            (<list>groups[_find(starts, n, <bytes?>item)]).append(pos)
        pos += 1
    return groups
