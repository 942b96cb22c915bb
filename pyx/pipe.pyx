# cython: language_level=3
"""Two protocols joined in memory, each the other's transport (local mode: the gateway hands
statements to a pooler in the same process without a network hop).

A write is delivered at once, as a ``data_received`` call on the peer, in the writer's stack:
no copy, no syscall, no event-loop turn. When the peer's protocol is a ``FastProtocol`` (the
pooler's client, the gateway's upstream), the delivery is a C call of its ``relay_data()``,
and ``send()`` is the C entry for writers in other extensions: a statement crosses from the
gateway's session to the pooler with no Python frame at all.

A protocol is never re-entered, though: bytes for a protocol that is still inside its own
``data_received`` (it wrote, and the peer answered at once) wait, and are delivered in order
when that call returns, as a socket would. A protocol may still be called back from inside
its writes by the *other* end's answer (update state before writing, as the relay's users do
anyway). ``pause_reading`` holds deliveries until ``resume_reading``, and tells the writing protocol
``pause_writing`` (then ``resume_writing``), as a full socket would; closing either end tells
both, from the event loop (``call_soon``), never from inside a write.
"""

cimport cython

from multigres._cy.relay cimport FastProtocol

import asyncio


@cython.final
cdef class PipeTransport:
    def __init__(self, loop, protocol, str name):
        self._loop = loop
        self._set_protocol(protocol)
        self._name = name
        self.peer = None
        self._closing = False
        self._paused = False
        self._delivering = False
        self._held = []
        # get_extra_info's answers over its defaults (a carrier's channel: the carrier's
        # socket addresses).
        self.extra = None

    def __repr__(self):
        return f"<PipeTransport {self._name}{' closing' if self._closing else ''}>"

    cdef int _set_protocol(self, object protocol) except -1:
        self._protocol = protocol
        self._fast = isinstance(protocol, FastProtocol)
        return 0

    # -- writing: delivered to the peer's protocol -----------------------------------------

    def write(self, data):
        self.send(data if type(data) is bytes else bytes(data))

    cdef int send(self, bytes data) except -1:
        cdef PipeTransport peer = self.peer
        if self._closing or peer is None or peer._closing:
            return 0
        return peer._deliver(data)

    cdef int _deliver(self, bytes data) except -1:
        """Hand ``data`` to this end's protocol, unless it is paused or already inside
        ``data_received`` (then it waits its turn)."""
        if self._delivering or self._paused:
            self._held.append(data)
            return 0
        self._delivering = True
        try:
            while True:
                if self._fast:
                    (<FastProtocol>self._protocol).relay_data(data)
                else:
                    self._protocol.data_received(data)
                if not self._held or self._paused or self._closing:
                    break
                data = self._held.pop(0)
        finally:
            self._delivering = False
        return 0

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    def can_write_eof(self):
        return False

    def write_eof(self):
        raise NotImplementedError("a pipe end cannot half-close")

    def get_write_buffer_size(self):
        return 0

    def get_write_buffer_limits(self):
        return (0, 0)

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    # -- reading ---------------------------------------------------------------------------

    def pause_reading(self):
        if self._paused:
            return
        self._paused = True
        self._tell_writer(True)

    def resume_reading(self):
        if not self._paused:
            return
        self._paused = False
        if self._held and not self._delivering:
            self._deliver(self._held.pop(0))
        if not self._paused:
            self._tell_writer(False)

    cdef int _tell_writer(self, bint pause) except -1:
        """The protocol writing to this end hears pause_writing / resume_writing, as from a
        socket whose buffer filled: a pipe holds what it cannot deliver without bound, so the
        writer must stop, not the pipe."""
        cdef PipeTransport peer = self.peer
        if peer is None or peer._closing or self._closing:
            return 0
        if pause:
            peer._protocol.pause_writing()
        else:
            peer._protocol.resume_writing()
        return 0

    def is_reading(self):
        return not self._paused

    # -- closing ---------------------------------------------------------------------------

    def is_closing(self):
        return self._closing

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        peer = self.peer
        if peer is not None and not peer._closing:
            peer._closing = True
            self._loop.call_soon(peer._protocol.connection_lost, None)

    def abort(self):
        self.close()

    def get_extra_info(self, name, default=None):
        if self.extra is not None and name in self.extra:
            return self.extra[name]
        if name in ("peername", "sockname"):
            return ("local", 0)
        return default

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol):
        self._set_protocol(protocol)


def pipe(a, b):
    """Join protocols ``a`` and ``b``: each gets ``connection_made`` with its end."""
    loop = asyncio.get_running_loop()
    ta, tb = PipeTransport(loop, a, "a"), PipeTransport(loop, b, "b")
    ta.peer, tb.peer = tb, ta
    a.connection_made(ta)
    b.connection_made(tb)
    return ta, tb
