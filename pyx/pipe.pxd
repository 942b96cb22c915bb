# The interface of pyx/pipe.pyx (two protocols joined in memory): what poolcore.pyx and
# gatecore.pyx cimport to write to a pipe end with a C call.

cimport cython


@cython.final
cdef class PipeTransport:
    cdef:
        object _loop
        object _protocol
        # The protocol is a FastProtocol: deliveries are C calls of its relay_data().
        bint _fast
        str _name
        public PipeTransport peer
        bint _closing
        bint _paused
        bint _delivering
        list _held
        public dict extra

    # write() without the Python call: delivered to the peer's protocol (or held, see .pyx).
    cdef int send(self, bytes data) except -1
    cdef int _deliver(self, bytes data) except -1
    cdef int _set_protocol(self, object protocol) except -1
    cdef int _tell_writer(self, bint pause) except -1
