# The interface of pyx/gatescan.pyx (the gateway's per-read-event scanners): the C entry
# points gatecore.pyx calls on every read event (scan_client/scan_server wrap them for Python).
#
# Both return -1 for "the session must look", never raise for bad bytes; -2 is the error
# return (an exception from the plan cache).

cdef Py_ssize_t scan_client_c(bytes data, object plans, object extra) except -2
cdef Py_ssize_t scan_server_c(bytes data) except -2

# PlanCache.get(text, extra) without its Python frame: the plan, or None (a miss, not counted).
cdef object cache_get(object plans, bytes text, object extra)
