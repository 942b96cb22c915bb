# cython: language_level=3
"""The gateway's per-read-event checks in C: is this chunk of bytes whole messages that the
gateway can forward as they are?

For an unsharded session the gateway forwards the protocol both ways and only needs to know
how many statements are in flight and the transaction status. These scanners walk the
messages of one read event without copying them: if the chunk is whole messages of the
ordinary kinds, the caller forwards the very same bytes object (no framing buffer, no copy)
and updates two counters; anything else (a partial message, a Parse or Close the session
tracks, a Query that may change session state, a FATAL or 08001 error from the pooler)
returns -1 and the caller takes its Python path.
"""

from libc.stdint cimport uint32_t
from libc.string cimport memchr, memcmp

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from multigres._cy.poolcore import may_have_effects_bytes
from multigres._cy.sqlnorm cimport Normalized, normalize_ptr


cdef inline Py_ssize_t _msg_len(const unsigned char *p) noexcept nogil:
    return <Py_ssize_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
                        | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline Py_ssize_t _message_end(const unsigned char *p, Py_ssize_t n,
                                    Py_ssize_t i) noexcept nogil:
    """Where the whole message at ``p[i]`` ends, or -1 if it is not whole in ``p[:n]`` (or
    its length is impossible)."""
    cdef Py_ssize_t length
    if n - i < 5:
        return -1
    length = _msg_len(p + i + 1)
    if length < 4 or i + 1 + length > n:
        return -1
    return i + 1 + length


cdef bint _has(const char *p, Py_ssize_t n, const char *needle, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef const char *q
    while i + k <= n:
        q = <const char *>memchr(p + i, needle[0], n - i - k + 1)
        if q == NULL:
            return False
        i = q - p
        if memcmp(p + i, needle, k) == 0:
            return True
        i += 1
    return False


cdef object cache_get(object plans, bytes text, object extra):
    """PlanCache.get without its Python frame (a hit: the entry's reference bit and the hit
    count, as get() does; a miss counts nothing). It reads the cache's entries the way
    multigres/sql/plancache.py lays them out: a dict from (extra, text) to [plan, ref, ...]."""
    cdef dict entries = <dict?>plans._entries
    if not entries:
        return None
    cdef object entry = entries.get(text if extra is None else (extra, text))
    if entry is None:
        return None
    (<list?>entry)[1] = True
    plans.hits += 1
    return (<list>entry)[0]


cdef inline bint _cache_hit(object plans, bytes text, object extra) except -1:
    return cache_get(plans, text, extra) is not None


def scan_client(bytes data, object plans=None, object extra=None):
    """See scan_client_c."""
    return scan_client_c(data, plans, extra)


def scan_server(bytes data):
    """See scan_server_c."""
    return scan_server_c(data)


cdef Py_ssize_t scan_client_c(bytes data, object plans, object extra) except -2:
    """The number of Query, Sync and FunctionCall messages (each answered by one
    ReadyForQuery) if ``data`` is whole frontend messages the gateway forwards untouched;
    -1 if the session must look.

    With ``plans`` (a PlanCache), each Query's statement is normalized and must have a plan
    cached under ``extra`` (the database): a miss, or a statement that does not lex, is -1
    (the session plans it)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, end
    cdef int count = 0
    cdef unsigned char t
    cdef bytes sql
    cdef Normalized norm
    while i < n:
        end = _message_end(p, n, i)
        if end < 0:
            return -1
        t = p[i]
        if t == b'Q':
            if end - i < 6:
                return -1
            sql = data[i + 5:end - 1]  # one copy, for both checks
            if may_have_effects_bytes(sql):
                return -1
            if plans is not None:
                try:
                    norm = normalize_ptr(PyBytes_AS_STRING(sql), PyBytes_GET_SIZE(sql), sql,
                                         True)
                except ValueError:
                    return -1
                if not _cache_hit(plans, norm.text, extra):
                    return -1  # the session plans it (and counts the miss then)
            count += 1
        elif t == b'S' or t == b'F':
            count += 1
        elif t == b'P' or t == b'C' or t == b'X':
            return -1
        i = end
    return count


cdef Py_ssize_t scan_server_c(bytes data) except -2:
    """``ready * 256 + last status`` (``ready``: ReadyForQuery messages, ``last status`` the
    transaction status of the last one, 0 if none) if ``data`` is whole backend messages the
    gateway forwards untouched; -1 if the session must look (a partial message, an error that
    is FATAL or says the pooler got no server connection)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, end, length
    cdef int ready = 0
    cdef int status = 0
    cdef unsigned char t
    while i < n:
        end = _message_end(p, n, i)
        if end < 0:
            return -1
        t = p[i]
        length = end - i - 1
        if t == b'Z':
            if length != 5:
                return -1
            ready += 1
            status = p[i + 5]
        elif t == b'E':
            if (_has(<const char *>p + i + 5, length - 4, b"SFATAL\x00", 7)
                    or _has(<const char *>p + i + 5, length - 4, b"SPANIC\x00", 7)
                    or _has(<const char *>p + i + 5, length - 4, b"C08001\x00", 7)):
                return -1
        i = end
    return ready * 256 + status
