"""The wire-protocol buffers: framing over any split, field reads, limits, building, forwarding."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres.wire.buffer import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_STARTUP_MESSAGE_SIZE,
    ProtocolError,
    ReadBuffer,
    WriteBuffer,
    build_message,
    build_startup_message,
)

# Encoded here with struct, independently of WriteBuffer, so that reads are checked against an
# encoder that does not share the code under test.


def msg(t: bytes, payload: bytes = b"") -> bytes:
    return t + struct.pack("!i", len(payload) + 4) + payload


def startup(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload) + 4) + payload


SSL_REQUEST = startup(struct.pack("!i", 80877103))
PROTOCOL_3_0 = 196608

Message = tuple[int, bytes]


def drain(buf: ReadBuffer) -> list[Message]:
    out = []
    while buf.take_message():
        out.append((buf.get_message_type(), buf.consume_message()))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# Strategies -----------------------------------------------------------------------------------

types = st.sampled_from(b"DTCZEQPBSNdcfHGWA").map(lambda b: bytes([b]))
payloads = st.binary(max_size=300)
messages = st.lists(st.tuples(types, payloads), min_size=1, max_size=30)
# How a chunk reaches feed_data: uvloop gives bytes; the copy path takes any buffer.
chunk_kinds: st.SearchStrategy[Callable[[bytes], bytes | bytearray | memoryview]] = st.sampled_from(
    [bytes, bytearray, memoryview]
)


# Framing --------------------------------------------------------------------------------------


def test_frames_several_messages_from_one_chunk() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"T", b"\x00\x01") + msg(b"D", b"row") + msg(b"Z", b"I"))
    assert buf.take_message()
    assert buf.get_message_type() == ord("T")
    assert buf.get_message_length() == 6
    assert buf.remaining() == 2
    assert buf.buffered() == len(msg(b"D", b"row")) + len(msg(b"Z", b"I"))
    assert drain(buf) == [(ord("D"), b"row"), (ord("Z"), b"I")]
    assert not buf.take_message()
    assert not buf.has_message()
    assert buf.get_message_type() == 0
    assert buf.buffered() == 0


def test_waits_for_the_rest_of_a_split_header_and_payload() -> None:
    data = msg(b"Q", b"select 1\x00")
    buf = ReadBuffer()
    buf.feed_data(data[:3])  # inside the length field
    assert not buf.take_message()
    buf.feed_data(data[3:8])  # inside the payload
    assert not buf.take_message()
    buf.feed_data(data[8:])
    assert buf.take_message()
    assert buf.read_str() == "select 1"


def test_empty_payload_message() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"S") + msg(b"X"))
    assert drain(buf) == [(ord("S"), b""), (ord("X"), b"")]


def test_take_message_skips_the_unread_rest() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"D", b"\x00\x00\x00\x07abcdefg") + msg(b"C", b"SELECT 1\x00"))
    assert buf.take_message()
    assert buf.read_int32() == 7
    assert buf.take_message()
    assert buf.get_message_type() == ord("C")
    assert buf.read_cstr() == b"SELECT 1"


def test_current_message_survives_feed_data() -> None:
    first = msg(b"D", b"0123456789")
    second = msg(b"C", b"done\x00")
    buf = ReadBuffer()
    buf.feed_data(first + second[:2])
    assert buf.take_message()
    assert buf.read_bytes(3) == b"012"
    buf.feed_data(second[2:])  # moves the pending bytes into owned storage
    assert buf.read_bytes(7) == b"3456789"
    assert buf.message_bytes() == first
    assert drain(buf) == [(ord("C"), b"done\x00")]


def test_large_message_in_many_chunks_between_small_ones() -> None:
    # Grows the owned storage from a consumed offset, then in place, then drops it (> 1 MiB)
    # when a later chunk can be framed where it lies.
    big = msg(b"d", bytes(range(256)) * 8192)  # 2 MiB COPY data
    stream = msg(b"G", b"\x00\x00\x00") + big + msg(b"c")
    buf = ReadBuffer()
    got: list[Message] = []
    for i in range(0, len(stream), 65536):
        buf.feed_data(stream[i : i + 65536])
        got.extend(drain(buf))
    assert got == [(ord("G"), b"\x00\x00\x00"), (ord("d"), big[5:]), (ord("c"), b"")]
    buf.feed_data(b"")
    buf.feed_data(msg(b"Z", b"I"))
    assert drain(buf) == [(ord("Z"), b"I")]


def test_copied_chunks_do_not_alias_the_callers_buffer() -> None:
    data = bytearray(msg(b"D", b"abc"))
    buf = ReadBuffer()
    buf.feed_data(data)
    data[5:8] = b"xyz"
    assert drain(buf) == [(ord("D"), b"abc")]


@given(messages, st.lists(st.integers(min_value=0), max_size=40), chunk_kinds)
def test_any_split_gives_the_same_messages(
    msgs: list[tuple[bytes, bytes]],
    cuts: list[int],
    kind: Callable[[bytes], bytes | bytearray | memoryview],
) -> None:
    stream = b"".join(msg(t, p) for t, p in msgs)
    buf = ReadBuffer()
    got: list[Message] = []
    for chunk in split(stream, cuts):
        buf.feed_data(kind(chunk))
        got.extend(drain(buf))
    assert got == [(t[0], p) for t, p in msgs]
    assert buf.buffered() == 0


@given(messages, st.lists(st.integers(min_value=0), max_size=40))
def test_message_bytes_reproduces_the_stream(
    msgs: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(msg(t, p) for t, p in msgs)
    buf = ReadBuffer()
    out = bytearray()
    for chunk in split(stream, cuts):
        buf.feed_data(chunk)
        while buf.take_message():
            out += buf.message_bytes()
    assert bytes(out) == stream


@settings(max_examples=300)
@given(
    st.binary(max_size=400),
    st.lists(st.integers(min_value=0), max_size=20),
    st.booleans(),
    st.integers(min_value=4, max_value=64),
)
def test_random_bytes_give_messages_or_protocol_error(
    data: bytes, cuts: list[int], startup_first: bool, limit: int
) -> None:
    buf = ReadBuffer(max_message_size=limit)
    taken = 0
    started = not startup_first
    try:
        for chunk in split(data, cuts):
            buf.feed_data(chunk)
            while True:
                ok = buf.take_message() if started else buf.take_startup_message()
                if not ok:
                    break
                started = True
                taken += 1
                # Read more than the message holds, field by field: every overrun must be a
                # ProtocolError, never a crash or a read past the message.
                assert 0 <= buf.remaining() <= limit
                with pytest.raises(ProtocolError):
                    while True:
                        buf.read_cstr()
                        buf.read_int16()
                        buf.read_byte()
    except ProtocolError:
        pass
    # Each message is at least 5 bytes (4 for a startup message): no loop without progress.
    assert taken <= len(data) // 4


def test_a_protocol_error_repeats_instead_of_resyncing() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"Z", b"I") + b"Q\x00\x00\x00\x02junk")
    assert buf.take_message()
    for _ in range(2):
        with pytest.raises(ProtocolError):
            buf.take_message()


# Limits ---------------------------------------------------------------------------------------


def test_length_below_four_is_rejected() -> None:
    buf = ReadBuffer()
    buf.feed_data(b"Q\x00\x00\x00\x03")
    with pytest.raises(ProtocolError, match=r"invalid length 3 .*message 'Q'.*at least 4"):
        buf.take_message()


def test_negative_length_is_rejected() -> None:
    buf = ReadBuffer()
    buf.feed_data(b"\xff\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match=r"invalid length -1 .*type 0xff"):
        buf.take_message()


def test_length_over_the_limit_is_rejected_from_the_header_alone() -> None:
    buf = ReadBuffer(max_message_size=1000)
    buf.feed_data(b"D" + struct.pack("!i", 1001))  # no payload yet
    with pytest.raises(ProtocolError, match=r"message 'D' declares length 1001.*limit of 1000"):
        buf.take_message()


def test_length_at_the_limit_is_accepted() -> None:
    buf = ReadBuffer(max_message_size=10)
    buf.feed_data(msg(b"D", b"123456"))
    assert drain(buf) == [(ord("D"), b"123456")]


def test_default_limit_is_one_gibibyte() -> None:
    buf = ReadBuffer()
    assert buf.max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1 << 30
    buf.feed_data(b"D" + struct.pack("!i", (1 << 30) + 1))
    with pytest.raises(ProtocolError, match="1073741825"):
        buf.take_message()


@pytest.mark.parametrize("limit", [3, -1, 1 << 31])
def test_invalid_limit_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        ReadBuffer(max_message_size=limit)


def test_protocol_error_carries_the_protocol_violation_sqlstate() -> None:
    assert ProtocolError.sqlstate == "08P01"


# Startup phase --------------------------------------------------------------------------------


def test_startup_message() -> None:
    params = b"user\x00alice\x00database\x00app\x00\x00"
    data = startup(struct.pack("!i", PROTOCOL_3_0) + params)
    buf = ReadBuffer()
    buf.feed_data(data[:6])
    assert not buf.take_startup_message()
    buf.feed_data(data[6:])
    assert buf.take_startup_message()
    assert buf.get_message_type() == 0
    assert buf.get_message_length() == len(data)
    assert buf.message_bytes() == data
    assert buf.read_int32() == PROTOCOL_3_0
    assert buf.read_str() == "user"
    assert buf.read_str() == "alice"
    assert buf.read_str() == "database"
    assert buf.read_str() == "app"
    assert buf.read_byte() == 0
    assert buf.remaining() == 0


def test_ssl_request_then_typed_messages() -> None:
    buf = ReadBuffer()
    buf.feed_data(SSL_REQUEST)
    assert buf.take_startup_message()
    assert buf.read_int32() == 80877103
    # Nothing may ride along with an SSLRequest (CVE-2021-23214): the caller checks this.
    assert buf.buffered() == 0
    buf.feed_data(msg(b"p", b"secret\x00"))
    assert drain(buf) == [(ord("p"), b"secret\x00")]


def test_bytes_sent_ahead_of_the_tls_handshake_are_visible() -> None:
    buf = ReadBuffer()
    buf.feed_data(SSL_REQUEST + msg(b"Q", b"injected\x00"))
    assert buf.take_startup_message()
    assert buf.buffered() == len(msg(b"Q", b"injected\x00"))


@pytest.mark.parametrize("length", [7, 4, 0, -8, MAX_STARTUP_MESSAGE_SIZE + 1])
def test_startup_length_outside_postgres_bounds_is_rejected(length: int) -> None:
    buf = ReadBuffer()
    buf.feed_data(struct.pack("!i", length) + b"\x00" * 8)
    with pytest.raises(ProtocolError, match=rf"invalid startup message length {length}\b"):
        buf.take_startup_message()


def test_too_short_startup_message_names_it() -> None:
    buf = ReadBuffer()
    buf.feed_data(SSL_REQUEST)
    assert buf.take_startup_message()
    buf.read_int32()
    with pytest.raises(ProtocolError, match="startup message is too short"):
        buf.read_int16()


# Field reads ----------------------------------------------------------------------------------


def test_reads_every_field_kind() -> None:
    payload = (
        b"\xfe"
        + struct.pack("!hhiiqq", -2, 32767, -(2**31), 2**31 - 1, -(2**63), 2**63 - 1)
        + b"name\x00"
        + "h\u00e9llo \u2603\x00".encode()
        + b"raw!"
    )
    buf = ReadBuffer()
    buf.feed_data(msg(b"X", payload))
    assert buf.take_message()
    assert buf.read_byte() == 0xFE
    assert buf.read_int16() == -2
    assert buf.read_int16() == 32767
    assert buf.read_int32() == -(2**31)
    assert buf.read_int32() == 2**31 - 1
    assert buf.read_int64() == -(2**63)
    assert buf.read_int64() == 2**63 - 1
    assert buf.read_cstr() == b"name"
    assert buf.read_str() == "h\u00e9llo \u2603"
    assert buf.read_bytes(0) == b""
    assert buf.read_bytes(4) == b"raw!"
    assert buf.remaining() == 0


@pytest.mark.parametrize(
    ("read", "size"),
    [
        (ReadBuffer.read_byte, 1),
        (ReadBuffer.read_int16, 2),
        (ReadBuffer.read_int32, 4),
        (ReadBuffer.read_int64, 8),
    ],
)
def test_reading_past_the_message_is_a_protocol_error(
    read: Callable[[ReadBuffer], int], size: int
) -> None:
    # The next message's bytes are in the buffer: a read must not spill into them.
    buf = ReadBuffer()
    buf.feed_data(msg(b"D", b"\x01" * (size - 1)) + msg(b"D", b"\x02" * 8))
    assert buf.take_message()
    with pytest.raises(ProtocolError, match=rf"message 'D' is too short: reading {size} byte"):
        read(buf)
    # A failed read does not move the cursor.
    assert buf.remaining() == size - 1


def test_read_bytes_past_the_message() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"D", b"abc"))
    assert buf.take_message()
    with pytest.raises(ProtocolError, match="reading 4 bytes at offset 0 of its 3-byte payload"):
        buf.read_bytes(4)


def test_negative_length_from_the_wire_is_a_protocol_error() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"D", b"abc"))
    assert buf.take_message()
    with pytest.raises(ProtocolError, match="negative length -2"):
        buf.read_bytes(-2)


def test_unterminated_string() -> None:
    buf = ReadBuffer()
    # The next message starts with a NUL: the search must stop at the message's end.
    buf.feed_data(msg(b"Q", b"select") + msg(b"S", b"\x00"))
    assert buf.take_message()
    with pytest.raises(ProtocolError, match="unterminated string in message 'Q'"):
        buf.read_cstr()


def test_invalid_utf8() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"Q", b"\xff\xfe\x00"))
    assert buf.take_message()
    with pytest.raises(ProtocolError, match="invalid UTF-8 in message 'Q'") as info:
        buf.read_str()
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_reads_without_a_current_message_are_a_caller_bug() -> None:
    buf = ReadBuffer()
    with pytest.raises(RuntimeError, match="no current message"):
        buf.read_int32()
    with pytest.raises(RuntimeError, match="no current message"):
        buf.read_bytes(0)
    with pytest.raises(RuntimeError, match="no current message"):
        buf.message_bytes()
    with pytest.raises(RuntimeError, match="no current message"):
        buf.consume_message()
    buf.feed_data(msg(b"Z", b"I"))
    assert buf.take_message()
    buf.discard_message()
    with pytest.raises(RuntimeError, match="no current message"):
        buf.read_byte()


def test_consume_message_returns_the_unread_rest() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"D", b"\x00\x02rest"))
    assert buf.take_message()
    assert buf.read_int16() == 2
    assert buf.consume_message() == b"rest"
    assert not buf.has_message()


# Forwarding runs ------------------------------------------------------------------------------


def result_set(rows: int) -> list[bytes]:
    return [
        msg(b"T", b"\x00\x01id\x00" + b"\x00" * 18),
        *(msg(b"D", b"\x00\x01\x00\x00\x00\x01" + str(i % 10).encode()) for i in range(rows)),
        msg(b"C", b"SELECT %d\x00" % rows),
        msg(b"Z", b"I"),
    ]


def test_take_run_stops_before_a_stop_type() -> None:
    parts = result_set(3)
    buf = ReadBuffer()
    buf.feed_data(b"".join(parts))
    assert buf.take_run(b"Z") == b"".join(parts[:-1])
    assert buf.take_run(b"Z") == b""  # the stop message stays for take_message()
    assert buf.take_message()
    assert buf.get_message_type() == ord("Z")
    assert buf.read_byte() == ord("I")


def test_take_run_stops_at_incomplete_data() -> None:
    parts = result_set(3)
    stream = b"".join(parts)
    cut = len(parts[0]) + len(parts[1]) + 2
    buf = ReadBuffer()
    buf.feed_data(stream[:cut])
    assert buf.take_run(b"Z") == parts[0] + parts[1]
    buf.feed_data(stream[cut:])
    assert buf.take_run(b"Z") == b"".join(parts[2:-1])


def test_take_run_without_stop_types_takes_everything_complete() -> None:
    parts = result_set(2)
    buf = ReadBuffer()
    buf.feed_data(b"".join(parts))
    assert buf.take_run() == b"".join(parts)
    assert buf.buffered() == 0


def test_take_run_starts_after_the_current_message() -> None:
    parts = result_set(2)
    buf = ReadBuffer()
    buf.feed_data(b"".join(parts))
    assert buf.take_message()  # RowDescription
    assert buf.take_run(b"CZ") == parts[1] + parts[2]


def test_take_run_hands_over_valid_messages_before_a_bad_header() -> None:
    good = msg(b"D", b"ok")
    buf = ReadBuffer()
    buf.feed_data(good + b"D\x00\x00\x00\x01")
    assert buf.take_run() == good
    with pytest.raises(ProtocolError, match="invalid length 1"):
        buf.take_run()


def test_take_run_into_appends_to_a_write_buffer() -> None:
    parts = result_set(5)
    buf = ReadBuffer()
    buf.feed_data(b"".join(parts))
    out = WriteBuffer()
    out.write_raw(msg(b"1"))  # e.g. ParseComplete built by the gateway
    assert buf.take_run_into(out, b"Z") == sum(len(p) for p in parts[:-1])
    assert out.getvalue() == msg(b"1") + b"".join(parts[:-1])


def test_take_run_into_refuses_an_open_message() -> None:
    buf = ReadBuffer()
    buf.feed_data(msg(b"D"))
    out = WriteBuffer()
    out.start_message(ord("D"))
    with pytest.raises(RuntimeError, match="inside a message"):
        buf.take_run_into(out)


@given(messages, st.lists(st.integers(min_value=0), max_size=30), st.binary(max_size=3))
def test_runs_plus_stop_messages_reproduce_the_stream(
    msgs: list[tuple[bytes, bytes]], cuts: list[int], stops: bytes
) -> None:
    stream = b"".join(msg(t, p) for t, p in msgs)
    buf = ReadBuffer()
    out = bytearray()
    for chunk in split(stream, cuts):
        buf.feed_data(chunk)
        while True:
            run = buf.take_run(stops)
            out += run
            if buf.take_message():
                assert run == b"" or buf.get_message_type() in stops
                out += buf.message_bytes()
            else:
                break
    assert bytes(out) == stream


# Building -------------------------------------------------------------------------------------


def test_builds_a_typed_message() -> None:
    out = WriteBuffer()
    out.start_message(ord("Q"))
    out.write_str("select 1")
    out.end_message()
    assert out.getvalue() == msg(b"Q", b"select 1\x00")
    assert len(out) == 14


def test_builds_every_field_kind() -> None:
    out = WriteBuffer()
    out.start_message(ord("X"))
    out.write_byte(255)
    out.write_int16(-2)
    out.write_int32(-(2**31))
    out.write_int64(2**63 - 1)
    out.write_bytes(b"ab")
    out.write_bytes(bytearray(b"cd"))
    out.write_bytes(memoryview(b"xef")[1:])
    out.write_cstr(b"name")
    out.write_str("\u00e9")
    out.end_message()
    payload = b"\xff" + struct.pack("!hiq", -2, -(2**31), 2**63 - 1) + b"abcdefname\x00\xc3\xa9\x00"
    assert out.getvalue() == msg(b"X", payload)


def test_builds_a_startup_message() -> None:
    out = WriteBuffer()
    out.start_startup_message()
    out.write_int32(PROTOCOL_3_0)
    out.write_cstr(b"user")
    out.write_cstr(b"bob")
    out.write_byte(0)
    out.end_message()
    assert out.getvalue() == startup(struct.pack("!i", PROTOCOL_3_0) + b"user\x00bob\x00\x00")
    assert build_startup_message(struct.pack("!i", 80877103)) == SSL_REQUEST


def test_constant_messages() -> None:
    assert build_message(ord("Z"), b"I") == b"Z\x00\x00\x00\x05I"
    assert build_message(ord("1")) == msg(b"1")


def test_many_messages_in_one_buffer_grow_it() -> None:
    out = WriteBuffer(initial_capacity=0)
    for i in range(2000):
        out.start_message(ord("D"))
        out.write_int32(i)
        out.end_message()
    buf = ReadBuffer()
    buf.feed_data(out.getvalue())
    got = []
    while buf.take_message():
        got.append(buf.read_int32())
    assert got == list(range(2000))


def test_reset_empties_the_buffer() -> None:
    out = WriteBuffer()
    out.write_raw(msg(b"Z", b"I"))
    out.reset()
    assert out.getvalue() == b""
    out.write_raw(msg(b"Z", b"T"))
    assert out.getvalue() == msg(b"Z", b"T")


def test_message_over_the_limit_is_dropped_whole() -> None:
    out = WriteBuffer(max_message_size=8)
    out.write_raw(msg(b"Z", b"I"))
    out.start_message(ord("D"))
    out.write_bytes(b"12345")
    with pytest.raises(ProtocolError, match="message of 9 bytes is over the limit of 8"):
        out.end_message()
    assert not out.in_message()
    assert out.getvalue() == msg(b"Z", b"I")


def test_misuse_is_refused() -> None:
    out = WriteBuffer()
    with pytest.raises(RuntimeError, match="no message is open"):
        out.end_message()
    out.start_message(ord("Q"))
    assert out.in_message()
    with pytest.raises(RuntimeError, match="already open"):
        out.start_message(ord("Q"))
    with pytest.raises(RuntimeError, match="already open"):
        out.start_startup_message()
    with pytest.raises(RuntimeError, match="message is open"):
        out.getvalue()
    with pytest.raises(RuntimeError, match="message is open"):
        out.write_raw(msg(b"Z", b"I"))
    with pytest.raises(BufferError):
        memoryview(out)


@pytest.mark.parametrize("value", [b"a\x00b", "a\x00b"])
def test_strings_with_nul_are_refused(value: bytes | str) -> None:
    out = WriteBuffer()
    with pytest.raises(ValueError, match="NUL"):
        if isinstance(value, bytes):
            out.write_cstr(value)
        else:
            out.write_str(value)
    assert len(out) == 0


def test_out_of_range_integers_are_refused() -> None:
    out = WriteBuffer()
    with pytest.raises(OverflowError):
        out.write_int16(2**15)
    with pytest.raises(OverflowError):
        out.write_int32(2**31)
    with pytest.raises(OverflowError):
        out.write_byte(256)
    assert len(out) == 0


def test_memoryview_is_zero_copy_and_pins_the_storage() -> None:
    out = WriteBuffer(initial_capacity=16)
    out.write_raw(msg(b"Z", b"I"))
    view = memoryview(out)
    assert view.readonly
    assert view.tobytes() == msg(b"Z", b"I")
    with pytest.raises(BufferError):
        out.reset()
    with pytest.raises(BufferError):
        out.write_bytes(b"x" * 100)  # would move the storage under the view
    view.release()
    out.reset()
    out.write_bytes(b"x" * 100)
    assert len(out) == 100


field_ops = st.lists(
    st.one_of(
        st.tuples(st.just("byte"), st.integers(0, 255)),
        st.tuples(st.just("int16"), st.integers(-(2**15), 2**15 - 1)),
        st.tuples(st.just("int32"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("int64"), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just("cstr"), st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b""))),
        st.tuples(st.just("str"), st.text(max_size=20).map(lambda s: s.replace("\x00", ""))),
    ),
    max_size=20,
)


@given(st.lists(st.tuples(types, field_ops), min_size=1, max_size=10))
def test_write_then_read_round_trip(built: list[tuple[bytes, list[tuple[str, object]]]]) -> None:
    out = WriteBuffer(initial_capacity=0)
    for t, ops in built:
        out.start_message(t[0])
        for kind, value in ops:
            getattr(out, f"write_{kind}")(value)
        out.end_message()
    buf = ReadBuffer()
    buf.feed_data(out.getvalue())
    for t, ops in built:
        assert buf.take_message()
        assert buf.get_message_type() == t[0]
        for kind, value in ops:
            assert getattr(buf, f"read_{kind}")() == value
        assert buf.remaining() == 0
    assert not buf.take_message()
