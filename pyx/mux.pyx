# cython: language_level=3
"""Many Postgres sessions over one TCP connection: the gateway -> pooler carrier.

Every session between a gateway and a pooler is still an ordinary Postgres v3 session (its
own StartupMessage, SCRAM login, BackendKeyData, messages); the carrier only frames each
session's bytes with a channel number, so that the statements of all the sessions a gateway
forwards in one batch of events go out in one send() and arrive at the pooler in one recv(),
and their answers come back the same way. That is what the hop costs in the kernel: one
send and one wake-up per batch instead of per statement.

The gateway asks for a carrier with a request shaped like SSLRequest (length 8, code
1234.5690). A multipooler answers ``M`` and the connection carries frames from then on; it
answers ``N`` when it declines (a pooler with several worker processes: one carrier would put
every session on one worker); Postgres, or any other server, answers with an error. The
gateway then uses one connection per session, as before.

Frames, both ways: a type byte, an int32 length counting itself, the int32 channel, payload.

- ``O`` (gateway -> pooler) opens a channel: the pooler starts a new client session for it.
- ``D`` carries the channel's bytes (any run of v3 messages, or part of one; at most 1 MB).
- ``X`` closes the channel (the sender's end is gone; the receiver closes its end).
- ``P`` / ``R``: the sender's end stopped / resumed reading the channel: the receiver holds
  the channel's writer (backpressure per session: one slow client does not stall the carrier).

On each side a channel is a ``MuxChannel`` joined by an in-memory pipe (pyx/pipe) to the
session's own protocol: the pooler's ``Client`` or the gateway's ``Upstream``, the same objects
local mode joins directly. The carrier's connection defers its writes to the end of the
relay's batch (``Conn.defer_writes``), which is where the frames of a batch meet.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from multigres._cy.pipe cimport PipeTransport
from multigres._cy.relay cimport Conn, FastProtocol

import asyncio
import logging
import struct

from multigres._cy.pipe import pipe

log = logging.getLogger("multigres.mux")

MUX_REQUEST_CODE = (1234 << 16) | 5690
MUX_REQUEST = struct.pack("!ii", 8, MUX_REQUEST_CODE)
MUX_ACCEPT = b"M"
MUX_DECLINE = b"N"

cdef enum:
    HEADER = 9
    # A session's longer writes go out as several frames, so that what a carrier buffers for
    # one incomplete frame is bounded; a longer frame means a broken (or hostile) peer.
    FRAME_PAYLOAD_MAX = 1 << 20
    MAX_FRAME = FRAME_PAYLOAD_MAX + 8
    # Payloads up to this size are copied behind their header and sent in one call.
    SCRATCH_MAX = 16384
    F_OPEN = 79     # 'O'
    F_DATA = 68     # 'D'
    F_CLOSE = 88    # 'X'
    F_PAUSE = 80    # 'P'
    F_RESUME = 82   # 'R'
    H_WAITING = 0   # the gateway waits for the pooler's answer to the request
    H_OPEN = 1
    H_CLOSED = 2
    ID_LIMIT = 0x7FFFFFFF


class MuxError(Exception):
    """The carrier's peer broke the framing."""


cdef inline void _put32(char *p, uint32_t v) noexcept:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef inline uint32_t _get32(const unsigned char *p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


@cython.final
@cython.auto_pickle(False)
cdef class MuxChannel(FastProtocol):
    """One session's end of a carrier: what the session writes is framed onto the carrier;
    what arrives for it is written to the session's pipe end."""

    cdef readonly int id
    cdef MuxCarrier _carrier
    cdef PipeTransport _pipe
    cdef bint _remote_paused
    cdef bint _holding
    cdef readonly bint closed

    def __cinit__(self, MuxCarrier carrier, int id):
        self._carrier = carrier
        self.id = id

    def __repr__(self):
        return f"<MuxChannel {self.id}{' closed' if self.closed else ''}>"

    def connection_made(self, transport):
        self._pipe = <PipeTransport?>transport

    cdef int relay_data(self, bytes data) except -1:
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t step
        while n > 0 and not self.closed:
            step = n if n <= FRAME_PAYLOAD_MAX else FRAME_PAYLOAD_MAX
            self._carrier._frame(F_DATA, self.id, p, step)
            p += step
            n -= step
        return 0

    def data_received(self, data):
        self.relay_data(bytes(data))

    def connection_lost(self, exc):
        # Our pipe closed: the session ended here (or the carrier closed it, then closed is set).
        if not self.closed:
            self.closed = True
            self._carrier._forget(self, True)

    def pause_writing(self):
        # The session stopped reading: tell the other side to hold this channel's writer.
        if not self.closed:
            self._carrier._frame(F_PAUSE, self.id, NULL, 0)

    def resume_writing(self):
        if not self.closed:
            self._carrier._frame(F_RESUME, self.id, NULL, 0)

    cdef int _deliver(self, const char *data, Py_ssize_t n) except -1:
        if self._pipe is not None and not self.closed:
            self._pipe.send(PyBytes_FromStringAndSize(data, n))
        return 0

    cdef int _update_hold(self) except -1:
        """Hold the session's writes while the peer asked so or the carrier's socket is full
        (the pipe then tells the session's protocol pause_writing)."""
        cdef bint hold = self._remote_paused or self._carrier._out_paused
        if hold == self._holding or self._pipe is None or self.closed:
            return 0
        self._holding = hold
        if hold:
            self._pipe.pause_reading()
        else:
            self._pipe.resume_reading()
        return 0

    cdef int _close_local(self) except -1:
        """The carrier or the peer closed the channel: close the session's pipe, send nothing."""
        if not self.closed:
            self.closed = True
            if self._pipe is not None:
                self._pipe.close()
        return 0


@cython.final
@cython.auto_pickle(False)
cdef class MuxCarrier(FastProtocol):
    """The protocol of a carrier connection, on the gateway's side (``client()``: opens
    channels) or the pooler's (``server(factory)``: a new session per opened channel)."""

    cdef Conn _conn
    cdef dict _channels
    cdef bint _server
    cdef object _factory
    cdef int _state
    cdef int _next_id
    cdef bint _out_paused
    # A frame split across reads: its pieces, how many bytes they hold and how many it needs.
    cdef list _pieces
    cdef Py_ssize_t _have
    cdef Py_ssize_t _need
    cdef char *_scratch
    cdef readonly object ready
    cdef public object on_lost

    def __cinit__(self):
        self._channels = {}
        self._pieces = []
        self._next_id = 1
        self._scratch = <char *>PyMem_Malloc(HEADER + SCRATCH_MAX)
        if self._scratch == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._scratch)

    @staticmethod
    def client():
        """The gateway's end: ``ready`` becomes True when the pooler accepted, False when it
        declined or does not know the request."""
        cdef MuxCarrier c = MuxCarrier()
        c._state = H_WAITING
        c.ready = asyncio.get_running_loop().create_future()
        return c

    @staticmethod
    def server(factory):
        """The pooler's end, already accepted: ``factory()`` makes the protocol of each new
        session (the pooler's ``local_client``)."""
        cdef MuxCarrier c = MuxCarrier()
        c._state = H_OPEN
        c._server = True
        c._factory = factory
        return c

    def __repr__(self):
        return f"<MuxCarrier channels={len(self._channels)} state={self._state}>"

    @property
    def closed(self):
        return self._state == H_CLOSED

    @property
    def channels(self):
        return len(self._channels)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport):
        self._conn = <Conn?>transport
        # The frames written while the relay handles a batch of events leave in one send.
        self._conn.defer_writes = True

    def data_received(self, data):
        self.relay_data(bytes(data))

    def connection_lost(self, exc):
        cdef MuxChannel ch
        if self._state == H_WAITING and self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionResetError(
                "the pooler closed the connection before answering the carrier request"))
        self._state = H_CLOSED
        channels = list(self._channels.values())
        self._channels.clear()
        for ch in channels:
            ch._close_local()
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost(self)

    def pause_writing(self):
        self._out_paused = True
        self._update_holds()

    def resume_writing(self):
        self._out_paused = False
        self._update_holds()

    cdef int _update_holds(self) except -1:
        cdef MuxChannel ch
        for ch in list(self._channels.values()):
            ch._update_hold()
        return 0

    # -- the gateway's side ------------------------------------------------------------------

    def send_request(self):
        """Ask the pooler for a carrier (its answer sets ``ready``)."""
        self._conn.write(MUX_REQUEST)

    def open_channel(self):
        """A new channel (the pooler starts a session for it); join it to the session's
        protocol with ``pipe(protocol, channel)``."""
        cdef MuxChannel ch
        if self._state != H_OPEN or self._conn is None or self._conn.closing:
            raise ConnectionResetError("the carrier to the pooler is closed")
        while self._next_id in self._channels:
            self._advance_id()
        ch = MuxChannel(self, self._next_id)
        self._advance_id()
        self._channels[ch.id] = ch
        self._frame(F_OPEN, ch.id, NULL, 0)
        return ch

    cdef int _advance_id(self) except -1:
        self._next_id = 1 if self._next_id >= ID_LIMIT else self._next_id + 1
        return 0

    def close(self):
        if self._conn is not None:
            self._conn.close()

    # -- frames out --------------------------------------------------------------------------

    cdef int _frame(self, int kind, int channel, const char *data, Py_ssize_t n) except -1:
        cdef char *h = self._scratch
        if self._state == H_CLOSED or self._conn is None:
            return 0
        h[0] = <char>kind
        _put32(h + 1, <uint32_t>(8 + n))
        _put32(h + 5, <uint32_t>channel)
        if n <= SCRATCH_MAX:
            if n:
                memcpy(h + HEADER, data, n)
            self._conn.send_ptr(h, HEADER + n)
        else:
            self._conn.send_ptr(h, HEADER)
            self._conn.send_ptr(data, n)
        return 0

    cdef int _forget(self, MuxChannel ch, bint tell) except -1:
        if self._channels.get(ch.id) is ch:
            del self._channels[ch.id]
            if tell:
                self._frame(F_CLOSE, ch.id, NULL, 0)
        return 0

    # -- frames in ---------------------------------------------------------------------------

    cdef int relay_data(self, bytes data) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if self._state == H_WAITING:
            if n == 0:
                return 0
            if data[0] != MUX_ACCEPT[0]:
                # 'N', or Postgres's ErrorResponse: no carrier here.
                self._state = H_CLOSED
                if not self.ready.done():
                    self.ready.set_result(False)
                self._conn.close()
                return 0
            self._state = H_OPEN
            if not self.ready.done():
                self.ready.set_result(True)
            data = data[1:]
            n -= 1
        if self._state != H_OPEN or n == 0:
            return 0
        if self._need:
            self._pieces.append(data)
            self._have += n
            if self._have < self._need:
                return 0
            data = b"".join(self._pieces)
            self._pieces = []
            self._have = self._need = 0
        try:
            self._frames(data)
        except MuxError as e:
            log.error("carrier %s: %s; closing it and its %d sessions",
                      self._conn.get_extra_info("peername"), e, len(self._channels))
            self._conn.abort()
        return 0

    cdef int _frames(self, bytes data) except -1:
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t off = 0
        cdef uint32_t length
        while n - off >= HEADER and self._state == H_OPEN:
            length = _get32(p + off + 1)
            if length < 8 or length > MAX_FRAME:
                raise MuxError(f"bad frame length {length}")
            if n - off < 1 + <Py_ssize_t>length:
                break
            self._frame_in(p[off], <int>_get32(p + off + 5), <const char *>p + off + HEADER,
                           length - 8)
            off += 1 + length
        if off < n and self._state == H_OPEN:
            rest = data[off:]
            self._pieces = [rest]
            self._have = n - off
            self._need = (1 + <Py_ssize_t>_get32(p + off + 1)) if n - off >= 5 else HEADER
        return 0

    cdef int _frame_in(self, int kind, int channel, const char *payload, Py_ssize_t n) except -1:
        cdef MuxChannel ch = self._channels.get(channel)
        if kind == F_DATA:
            if ch is not None:
                try:
                    ch._deliver(payload, n)
                except Exception:
                    # A failure of one session's code ends that session, not the carrier.
                    log.exception("carrier: session on channel %d failed; closing it", channel)
                    self._forget(ch, True)
                    ch._close_local()
            # else: the channel closed here and its X is on the way.
        elif kind == F_CLOSE:
            if ch is not None:
                del self._channels[channel]
                ch._close_local()
        elif kind == F_PAUSE or kind == F_RESUME:
            if ch is not None:
                ch._remote_paused = kind == F_PAUSE
                ch._update_hold()
        elif kind == F_OPEN and self._server:
            if ch is not None:
                raise MuxError(f"channel {channel} opened twice")
            ch = MuxChannel(self, channel)
            self._channels[channel] = ch
            _, session_end = pipe(ch, self._factory())
            # The session's addresses are the carrier's (SHOW CLIENTS, logs).
            (<PipeTransport>session_end).extra = {
                "peername": self._conn.get_extra_info("peername"),
                "sockname": self._conn.get_extra_info("sockname")}
        else:
            raise MuxError(f"unexpected frame {chr(kind)!r}")
        return 0
