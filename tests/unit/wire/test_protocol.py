"""The message codec: exact bytes, builder/parser round trips, rewriting, forwarding, fuzzing."""

from __future__ import annotations

import itertools
import pickle
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres.wire import protocol as p
from multigres.wire import sqlstate
from multigres.wire.buffer import ReadBuffer, WriteBuffer
from multigres.wire.errors import PgError
from multigres.wire.protocol import ProtocolError

# Expected bytes are encoded here with struct, independently of the code under test, following
# the "Message Formats" page of the Postgres protocol documentation.


def msg(t: bytes, payload: bytes = b"") -> bytes:
    return t + struct.pack("!i", len(payload) + 4) + payload


def startup(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload) + 4) + payload


def frame(message: bytes) -> tuple[int, bytes]:
    """(type, payload) of one whole typed message, framed by ReadBuffer."""
    buf = ReadBuffer()
    buf.feed_data(message)
    assert buf.take_message()
    t = buf.get_message_type()
    payload = buf.consume_message()
    assert buf.buffered() == 0
    return t, payload


def payload_of(message: bytes, t: bytes) -> bytes:
    msg_type, payload = frame(message)
    assert msg_type == t[0]
    return payload


# Exact bytes -----------------------------------------------------------------------------------


def test_constant_messages_match_the_protocol_docs() -> None:
    assert p.READY_FOR_QUERY_IDLE_MSG == b"Z\x00\x00\x00\x05I"
    assert p.READY_FOR_QUERY_IN_TRANSACTION_MSG == b"Z\x00\x00\x00\x05T"
    assert p.READY_FOR_QUERY_FAILED_MSG == b"Z\x00\x00\x00\x05E"
    assert p.SSL_REQUEST_MSG == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert p.GSSENC_REQUEST_MSG == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert p.AUTHENTICATION_OK_MSG == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert p.AUTHENTICATION_CLEARTEXT_PASSWORD_MSG == b"R\x00\x00\x00\x08\x00\x00\x00\x03"
    for message, t in [
        (p.SYNC_MSG, b"S"),
        (p.FLUSH_MSG, b"H"),
        (p.TERMINATE_MSG, b"X"),
        (p.PARSE_COMPLETE_MSG, b"1"),
        (p.BIND_COMPLETE_MSG, b"2"),
        (p.CLOSE_COMPLETE_MSG, b"3"),
        (p.NO_DATA_MSG, b"n"),
        (p.EMPTY_QUERY_RESPONSE_MSG, b"I"),
        (p.PORTAL_SUSPENDED_MSG, b"s"),
        (p.COPY_DONE_MSG, b"c"),
    ]:
        assert message == t + b"\x00\x00\x00\x04"
        assert p.build_empty_message(t[0]) == message
    assert p.SSL_ACCEPTED == b"S" and p.SSL_REFUSED == b"N"


def test_ready_for_query_returns_the_prebuilt_messages() -> None:
    assert p.build_ready_for_query(p.TXN_IDLE) is p.READY_FOR_QUERY_IDLE_MSG
    assert p.build_ready_for_query(ord("T")) is p.READY_FOR_QUERY_IN_TRANSACTION_MSG
    assert p.build_ready_for_query(ord("E")) is p.READY_FOR_QUERY_FAILED_MSG
    with pytest.raises(ValueError, match="transaction status"):
        p.build_ready_for_query(ord("X"))
    buf = WriteBuffer()
    p.write_ready_for_query(buf, p.TXN_FAILED)
    assert buf.getvalue() == p.READY_FOR_QUERY_FAILED_MSG


def test_server_messages_exact_bytes() -> None:
    assert p.build_auth_md5_password(b"\x01\x02\x03\x04") == msg(
        b"R", struct.pack("!i", 5) + b"\x01\x02\x03\x04"
    )
    assert p.build_auth_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]) == msg(
        b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"
    )
    assert p.build_auth_sasl_continue(b"r=abc") == msg(b"R", struct.pack("!i", 11) + b"r=abc")
    assert p.build_auth_sasl_final(b"v=xyz") == msg(b"R", struct.pack("!i", 12) + b"v=xyz")
    assert p.build_parameter_status("server_version", "15.4") == msg(
        b"S", b"server_version\x0015.4\x00"
    )
    assert p.build_backend_key_data(4242, -7) == msg(b"K", struct.pack("!ii", 4242, -7))
    assert p.build_command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert p.build_data_row([b"1", None, "é"]) == msg(
        b"D",
        struct.pack("!h", 3)
        + struct.pack("!i", 1)
        + b"1"
        + struct.pack("!i", -1)
        + struct.pack("!i", 2)
        + "é".encode(),
    )
    assert p.build_row_description([("id", 23), ("name", 25)]) == msg(
        b"T",
        struct.pack("!h", 2)
        + b"id\x00"
        + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
        + b"name\x00"
        + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0),
    )
    assert p.build_error_response(
        {"S": "ERROR", "V": "ERROR", "C": "42601", "M": "syntax error", "P": "8"}
    ) == msg(b"E", b"SERROR\x00VERROR\x00C42601\x00Msyntax error\x00P8\x00\x00")
    assert p.build_notice_response({"S": "NOTICE", "M": "hi"}) == msg(
        b"N", b"SNOTICE\x00Mhi\x00\x00"
    )
    assert p.build_parameter_description([23, 25]) == msg(b"t", struct.pack("!hII", 2, 23, 25))
    assert p.build_notification_response(77, "jobs", "42") == msg(
        b"A", struct.pack("!i", 77) + b"jobs\x0042\x00"
    )
    assert p.build_negotiate_protocol_version(0, ["_pq_.x"]) == msg(
        b"v", struct.pack("!ii", 0, 1) + b"_pq_.x\x00"
    )
    assert p.build_copy_response(ord("G"), 0, [0, 0]) == msg(
        b"G", b"\x00" + struct.pack("!hhh", 2, 0, 0)
    )
    assert p.build_copy_data(b"1\tx\n") == msg(b"d", b"1\tx\n")
    assert p.build_copy_fail("stop") == msg(b"f", b"stop\x00")


def test_client_messages_exact_bytes() -> None:
    assert p.build_startup_message({"user": "postgres"}) == (
        b"\x00\x00\x00\x17\x00\x03\x00\x00user\x00postgres\x00\x00"
    )
    assert p.build_startup_message({"user": "u", "database": "d"}, minor=2) == startup(
        struct.pack("!i", 196610) + b"user\x00u\x00database\x00d\x00\x00"
    )
    assert p.build_cancel_request(1234, 5678) == struct.pack("!iiii", 16, 80877102, 1234, 5678)
    assert p.build_password_message("secret") == msg(b"p", b"secret\x00")
    assert p.build_sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x") == msg(
        b"p", b"SCRAM-SHA-256\x00" + struct.pack("!i", 9) + b"n,,n=,r=x"
    )
    assert p.build_sasl_initial_response("X", None) == msg(b"p", b"X\x00" + struct.pack("!i", -1))
    assert p.build_sasl_response(b"c=biws") == msg(b"p", b"c=biws")
    assert p.build_query("select 1") == b"Q\x00\x00\x00\x0dselect 1\x00"
    assert p.build_parse("s1", "select $1", [23]) == msg(
        b"P", b"s1\x00select $1\x00" + struct.pack("!hI", 1, 23)
    )
    assert p.build_bind("", "s1", [1], [b"\x00\x00\x00\x2a", None], [1]) == msg(
        b"B",
        b"\x00s1\x00"
        + struct.pack("!hh", 1, 1)
        + struct.pack("!h", 2)
        + struct.pack("!i", 4)
        + b"\x00\x00\x00\x2a"
        + struct.pack("!i", -1)
        + struct.pack("!hh", 1, 1),
    )
    assert p.build_describe(p.KIND_STATEMENT, "s1") == msg(b"D", b"Ss1\x00")
    assert p.build_execute("", 0) == msg(b"E", b"\x00" + struct.pack("!i", 0))
    assert p.build_close(p.KIND_PORTAL, "c1") == msg(b"C", b"Pc1\x00")


def test_write_functions_append_to_one_buffer() -> None:
    # What a pooler does on a read event: several replies, one transport.write.
    buf = WriteBuffer()
    p.write_parameter_status(buf, "TimeZone", "UTC")
    p.write_backend_key_data(buf, 1, 2)
    p.write_ready_for_query(buf, p.TXN_IDLE)
    p.write_empty_message(buf, ord("S"))
    assert buf.getvalue() == (
        p.build_parameter_status("TimeZone", "UTC")
        + p.build_backend_key_data(1, 2)
        + p.READY_FOR_QUERY_IDLE_MSG
        + p.SYNC_MSG
    )
    buf = WriteBuffer()
    p.write_ssl_request(buf)
    p.write_cancel_request(buf, 5, 6)
    assert buf.getvalue() == p.SSL_REQUEST_MSG + p.build_cancel_request(5, 6)


# Round trips through the parsers ---------------------------------------------------------------

# Any text but NUL (which no string field can hold) and lone surrogates (which no encoding can).
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
name_bytes = st.binary(max_size=20).filter(lambda b: b"\x00" not in b)
values = st.one_of(st.none(), st.binary(max_size=40))
int32s = st.integers(-(2**31), 2**31 - 1)
oids = st.integers(0, 2**32 - 1)
int16s = st.integers(-(2**15), 2**15 - 1)


@given(st.lists(values, max_size=20))
def test_data_row_round_trip(row: list[bytes | None]) -> None:
    assert p.parse_data_row(payload_of(p.build_data_row(row), b"D")) == row


def test_data_row_takes_str_and_any_bytes_like() -> None:
    message = p.build_data_row(["é", bytearray(b"ab"), memoryview(b"cd"), None])
    assert p.parse_data_row(payload_of(message, b"D")) == ["é".encode(), b"ab", b"cd", None]


@given(
    st.lists(
        st.tuples(names, oids, int16s, oids, int16s, int32s, st.sampled_from([0, 1])),
        max_size=10,
    )
)
def test_row_description_round_trip(
    columns: list[tuple[str, int, int, int, int, int, int]],
) -> None:
    message = p.build_row_description(columns)
    assert p.parse_row_description(payload_of(message, b"T")) == columns
    # What a gateway does with a column it relays: parse, rebuild, same bytes.
    assert p.build_row_description(p.parse_row_description(message[5:])) == message


def test_row_description_short_forms_and_column() -> None:
    parsed = p.parse_row_description(
        payload_of(
            p.build_row_description(
                [
                    ("a", 20),
                    ("b", 1043, -1, 36, 0),
                    ("c", 16, None, -1, 1),
                    p.Column("d", table_oid=16384, attnum=3, type_oid=23),
                ]
            ),
            b"T",
        )
    )
    assert parsed == [
        ("a", 0, 0, 20, 8, -1, 0),
        ("b", 0, 0, 1043, -1, 36, 0),
        ("c", 0, 0, 16, 1, -1, 1),
        ("d", 16384, 3, 23, 4, -1, 0),
    ]
    assert p.Column._make(parsed[3]).type_oid == 23
    with pytest.raises(ValueError, match="a column must be"):
        p.build_row_description([("a", 23, 4)])  # type: ignore[list-item]


@given(st.dictionaries(st.sampled_from("SVCMDHPpqWstcdnFLRx"), names, max_size=12))
def test_error_and_notice_round_trip(fields: dict[str, str]) -> None:
    assert p.parse_error_response(payload_of(p.build_error_response(fields), b"E")) == fields
    assert p.parse_notice_response(payload_of(p.build_notice_response(fields), b"N")) == fields


def test_text_that_is_not_utf8_survives_parse_and_rebuild() -> None:
    # Postgres sends text in client_encoding (LATIN1 here): parse, rebuild, same bytes.
    message = msg(b"E", b"SERROR\x00C22021\x00Mcaf\xe9\x00\x00")
    fields = p.parse_error_response(message[5:])
    assert fields["M"] == "caf\udce9"
    assert p.build_error_response(fields) == message
    status = msg(b"S", b"client_encoding\x00LATIN1\xff\x00")
    assert p.build_parameter_status(*p.parse_parameter_status(status[5:])) == status


@given(names, names)
def test_parameter_status_round_trip(name: str, value: str) -> None:
    message = p.build_parameter_status(name, value)
    assert p.parse_parameter_status(payload_of(message, b"S")) == (name, value)


@given(int32s, int32s)
def test_backend_key_data_and_cancel_round_trip(pid: int, key: int) -> None:
    assert p.parse_backend_key_data(payload_of(p.build_backend_key_data(pid, key), b"K")) == (
        pid,
        key,
    )
    packet = p.parse_startup(p.build_cancel_request(pid, key)[4:])
    assert (packet.kind, packet.pid, packet.key) == (p.STARTUP_CANCEL_REQUEST, pid, key)


@given(int32s, names, names)
def test_notification_round_trip(pid: int, channel: str, payload: str) -> None:
    message = p.build_notification_response(pid, channel, payload)
    assert p.parse_notification_response(payload_of(message, b"A")) == (pid, channel, payload)


def test_small_server_messages_round_trip() -> None:
    for status in (p.TXN_IDLE, p.TXN_IN_TRANSACTION, p.TXN_FAILED):
        assert p.parse_ready_for_query(payload_of(p.build_ready_for_query(status), b"Z")) == status
    assert p.parse_command_complete(payload_of(p.build_command_complete("INSERT 0 5"), b"C")) == (
        "INSERT 0 5"
    )
    assert p.parse_parameter_description(
        payload_of(p.build_parameter_description([23, 2**32 - 1, 0]), b"t")
    ) == [23, 2**32 - 1, 0]
    assert p.parse_negotiate_protocol_version(
        payload_of(p.build_negotiate_protocol_version(0, ["_pq_.a", "_pq_.b"]), b"v")
    ) == (0, ["_pq_.a", "_pq_.b"])
    for t in b"GHW":
        assert p.parse_copy_response(
            payload_of(p.build_copy_response(t, 1, [1, 1, 1]), bytes([t]))
        ) == (1, [1, 1, 1])


def test_authentication_round_trip() -> None:
    assert p.parse_authentication(payload_of(p.AUTHENTICATION_OK_MSG, b"R")) == (p.AUTH_OK, b"")
    assert p.parse_authentication(payload_of(p.build_auth_md5_password(b"salt"), b"R")) == (
        p.AUTH_MD5_PASSWORD,
        b"salt",
    )
    code, data = p.parse_authentication(payload_of(p.build_auth_sasl(["SCRAM-SHA-256"]), b"R"))
    assert code == p.AUTH_SASL
    assert p.parse_auth_sasl_mechanisms(data) == ["SCRAM-SHA-256"]
    assert p.parse_authentication(payload_of(p.build_auth_sasl_continue(b"r=1,s=2"), b"R")) == (
        p.AUTH_SASL_CONTINUE,
        b"r=1,s=2",
    )
    with pytest.raises(ValueError, match="4 bytes"):
        p.build_auth_md5_password(b"12345")
    with pytest.raises(ProtocolError, match="Authentication"):
        p.parse_authentication(struct.pack("!i", p.AUTH_MD5_PASSWORD) + b"12")


@given(name_bytes, name_bytes, st.lists(oids, max_size=10))
def test_parse_round_trip(name: bytes, sql: bytes, param_oids: list[int]) -> None:
    message = p.build_parse(name, sql, param_oids)
    assert p.parse_parse(payload_of(message, b"P")) == (name, sql, param_oids)


@given(
    name_bytes,
    name_bytes,
    st.lists(st.sampled_from([0, 1]), max_size=5),
    st.lists(values, max_size=10),
    st.lists(st.sampled_from([0, 1]), max_size=5),
)
def test_bind_round_trip(
    portal: bytes,
    statement: bytes,
    formats: list[int],
    params: list[bytes | None],
    result_formats: list[int],
) -> None:
    message = p.build_bind(portal, statement, formats, params, result_formats)
    payload = payload_of(message, b"B")
    assert p.parse_bind(payload) == (portal, statement, formats, params, result_formats)
    assert p.parse_bind_header(payload) == (portal, statement)


@given(st.sampled_from([p.KIND_STATEMENT, p.KIND_PORTAL]), name_bytes, int32s)
def test_describe_close_execute_round_trip(kind: int, name: bytes, max_rows: int) -> None:
    assert p.parse_describe(payload_of(p.build_describe(kind, name), b"D")) == (kind, name)
    assert p.parse_close(payload_of(p.build_close(kind, name), b"C")) == (kind, name)
    assert p.parse_execute(payload_of(p.build_execute(name, max_rows), b"E")) == (name, max_rows)


def test_client_auth_and_query_round_trip() -> None:
    assert p.parse_query(payload_of(p.build_query("select 'é'"), b"Q")) == "select 'é'".encode()
    assert p.parse_password_message(payload_of(p.build_password_message(b"md5abc"), b"p")) == (
        b"md5abc"
    )
    assert p.parse_sasl_initial_response(
        payload_of(p.build_sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc"), b"p")
    ) == ("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert p.parse_sasl_initial_response(
        payload_of(p.build_sasl_initial_response("X", None), b"p")
    ) == ("X", None)


# The startup packet ----------------------------------------------------------------------------


@given(st.dictionaries(names.filter(bool), names, max_size=8), st.integers(0, 0xFFFF))
def test_startup_message_round_trip(params: dict[str, str], minor: int) -> None:
    packet = p.parse_startup(p.build_startup_message(params, minor)[4:])
    assert packet.kind == p.STARTUP_MESSAGE
    assert (packet.major, packet.minor) == (3, minor)
    assert packet.code == p.PROTOCOL_3_0 + minor
    assert {**packet.params, **packet.options} == params
    assert all(k.startswith("_pq_.") for k in packet.options)
    assert not any(k.startswith("_pq_.") for k in packet.params)


def test_startup_message_fields_and_negotiation() -> None:
    packet = p.parse_startup(
        p.build_startup_message({"user": "alice", "database": "app", "_pq_.compression": "on"}, 2)[
            4:
        ]
    )
    assert packet.user == "alice" and packet.database == "app"
    assert packet.params == {"user": "alice", "database": "app"}
    assert packet.options == {"_pq_.compression": "on"}
    assert "alice" in repr(packet)
    assert p.negotiate_protocol_version_reply(packet) == p.build_negotiate_protocol_version(
        0, ["_pq_.compression"]
    )
    plain = p.parse_startup(p.build_startup_message({"user": "bob"})[4:])
    assert plain.database is None
    assert p.negotiate_protocol_version_reply(plain) is None
    # Only the terminator: Postgres accepts it (and then complains there is no user).
    assert p.parse_startup(struct.pack("!i", p.PROTOCOL_3_0) + b"\x00").params == {}


def test_startup_requests() -> None:
    ssl = p.parse_startup(p.SSL_REQUEST_MSG[4:])
    assert ssl.kind == p.STARTUP_SSL_REQUEST and ssl.code == p.SSL_REQUEST_CODE
    assert p.parse_startup(p.GSSENC_REQUEST_MSG[4:]).kind == p.STARTUP_GSSENC_REQUEST
    assert p.negotiate_protocol_version_reply(ssl) is None
    # Protocol 2.0, a future major version, an unknown request code: the caller refuses them.
    for code in (2 << 16, 4 << 16 | 1, 1234 << 16 | 5681):
        packet = p.parse_startup(struct.pack("!i", code) + b"whatever")
        assert packet.kind == p.STARTUP_UNSUPPORTED
        assert (packet.major, packet.minor) == (code >> 16, code & 0xFFFF)
        assert "unsupported" in repr(packet)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "truncated"),
        (b"\x00\x03", "truncated"),
        (struct.pack("!i", p.PROTOCOL_3_0), "terminating NUL after the parameters"),
        (struct.pack("!i", p.PROTOCOL_3_0) + b"user\x00", "has no value"),
        (struct.pack("!i", p.PROTOCOL_3_0) + b"user\x00bob", "no terminating NUL"),
        (struct.pack("!i", p.PROTOCOL_3_0) + b"user\x00bob\x00", "terminating NUL"),
        (struct.pack("!i", p.PROTOCOL_3_0) + b"user\x00bob\x00\x00x", "unexpected byte"),
        (struct.pack("!i", p.SSL_REQUEST_CODE) + b"\x00", "SSLRequest: 1 unexpected"),
        (struct.pack("!ii", p.CANCEL_REQUEST_CODE, 1), "CancelRequest: truncated"),
        (struct.pack("!iiii", p.CANCEL_REQUEST_CODE, 1, 2, 3), "CancelRequest: 4 unexpected"),
    ],
)
def test_malformed_startup_packets(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as info:
        p.parse_startup(payload)
    assert info.value.sqlstate == sqlstate.PROTOCOL_VIOLATION


# Malformed messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "payload", "match"),
    [
        (p.parse_ready_for_query, b"X", "invalid transaction status 'X'"),
        (p.parse_ready_for_query, b"II", "unexpected"),
        (p.parse_ready_for_query, b"", "truncated"),
        (p.parse_error_response, b"SERROR\x00", "terminating NUL after the fields"),
        (p.parse_error_response, b"SERROR\x00\x00\x00", "1 unexpected byte"),
        (p.parse_data_row, struct.pack("!hi", 1, -2), "invalid value length -2"),
        (p.parse_data_row, struct.pack("!hi", 1, 10) + b"abc", "truncated: a 10-byte field"),
        (p.parse_data_row, struct.pack("!h", 2), "truncated"),
        (p.parse_row_description, struct.pack("!h", 1) + b"a\x00" + b"\x00" * 17, "truncated"),
        (p.parse_backend_key_data, b"\x00" * 12, "BackendKeyData: 4 unexpected"),
        (p.parse_describe, b"Xname\x00", "invalid kind 'X'"),
        (p.parse_close, b"\x01name\x00", "Close: invalid kind 0x01"),
        (p.parse_execute, b"\x00\x00\x00", "Execute: truncated"),
        (p.parse_query, b"select 1", "no terminating NUL"),
        (p.parse_query, b"select 1\x00x", "unexpected"),
        (p.parse_password_message, b"pw\x00\x00", "unexpected"),
        (p.parse_sasl_initial_response, b"M\x00" + struct.pack("!i", -5), "invalid data length"),
        (p.parse_negotiate_protocol_version, struct.pack("!ii", 0, -1), "negative option count"),
        (p.parse_negotiate_protocol_version, struct.pack("!ii", 0, 2**31 - 1), "where a string"),
        (p.parse_auth_sasl_mechanisms, b"SCRAM-SHA-256\x00", "terminating NUL"),
    ],
)
def test_malformed_messages_raise_protocol_error(
    parser: Callable[[bytes], object], payload: bytes, match: str
) -> None:
    with pytest.raises(ProtocolError, match=match):
        parser(payload)


PARSERS: list[Callable[[bytes], object]] = [
    p.parse_startup,
    p.parse_authentication,
    p.parse_auth_sasl_mechanisms,
    p.parse_parameter_status,
    p.parse_backend_key_data,
    p.parse_ready_for_query,
    p.parse_error_response,
    p.parse_notice_response,
    p.parse_notification_response,
    p.parse_command_complete,
    p.parse_row_description,
    p.parse_data_row,
    p.parse_parameter_description,
    p.parse_negotiate_protocol_version,
    p.parse_copy_response,
    p.parse_query,
    p.parse_parse,
    p.parse_bind_header,
    p.parse_bind,
    p.parse_describe,
    p.parse_close,
    p.parse_execute,
    p.parse_password_message,
    p.parse_sasl_initial_response,
    lambda b: p.rewrite_parse_name(b, b"mg_1"),
    lambda b: p.rewrite_bind_statement(b, b"mg_1"),
    lambda b: p.rewrite_describe_or_close_name(ord("D"), b, b"mg_1"),
    lambda b: p.rewrite_describe_or_close_name(ord("C"), b, b"mg_1"),
    lambda b: p.rewrite_notification_pid(b, 1),
    PgError.from_payload,
]

# Valid payloads, to be truncated and mutated: more of the fuzzing reaches deep fields.
SEEDS = [
    p.build_startup_message({"user": "u", "database": "d", "_pq_.x": "y"})[4:],
    p.build_cancel_request(1, 2)[4:],
    p.build_auth_sasl(["SCRAM-SHA-256"])[5:],
    p.build_error_response({"S": "ERROR", "C": "XX000", "M": "m", "D": "d"})[5:],
    p.build_row_description([("a", 23), ("b", 25)])[5:],
    p.build_data_row([b"1", None, b"xyz"])[5:],
    p.build_parse("s", "select $1", [23])[5:],
    p.build_bind("", "s", [0], [b"1", None], [1])[5:],
    p.build_describe(ord("S"), "s")[5:],
    p.build_execute("", 10)[5:],
    p.build_notification_response(1, "c", "x")[5:],
    p.build_negotiate_protocol_version(0, ["_pq_.a"])[5:],
    p.build_sasl_initial_response("SCRAM-SHA-256", b"data")[5:],
]


def check_parser(parser: Callable[[bytes], object], data: bytes) -> None:
    try:
        parser(data)
    except ProtocolError as e:
        assert str(e)


@settings(max_examples=300)
@given(st.sampled_from(PARSERS), st.binary(max_size=200))
def test_fuzz_any_bytes_give_a_value_or_a_protocol_error(
    parser: Callable[[bytes], object], data: bytes
) -> None:
    check_parser(parser, data)


@settings(max_examples=500)
@given(
    st.sampled_from(PARSERS),
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 200),
)
def test_fuzz_mutated_messages_give_a_value_or_a_protocol_error(
    parser: Callable[[bytes], object],
    seed: bytes,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    check_parser(parser, bytes(data[: len(data) - cut % (len(data) + 1)]))


# Builders refuse bad arguments, and leave the buffer whole ------------------------------------


def test_builders_refuse_nul_and_bad_types() -> None:
    with pytest.raises(ValueError, match="NUL"):
        p.build_query("select 1\x00; drop table t")
    with pytest.raises(ValueError, match="NUL"):
        p.build_startup_message({"user": "a\x00b"})
    with pytest.raises(ValueError, match="empty"):
        p.build_startup_message({"": "x"})
    with pytest.raises(TypeError, match="str or bytes"):
        p.build_parameter_status("a", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one character"):
        p.build_error_response({"MM": "x"})
    with pytest.raises(ValueError, match="kind"):
        p.build_describe(ord("X"), "s")
    with pytest.raises(ValueError, match="copy response"):
        p.build_copy_response(ord("D"), 0, [])
    with pytest.raises(ValueError, match="too many"):
        p.build_data_row([None] * 65536)
    with pytest.raises(OverflowError):
        p.build_parse("s", "select 1", [-1])
    # A lone surrogate is text no encoding can send (surrogateescape ones are raw bytes).
    with pytest.raises(UnicodeEncodeError):
        p.build_query("select '\ud800'")


def test_a_failed_write_leaves_the_buffer_with_whole_messages() -> None:
    buf = WriteBuffer()
    p.write_empty_message(buf, ord("S"))
    with pytest.raises(TypeError):
        p.write_data_row(buf, [b"ok", object()])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        p.write_row_description(buf, [("a", 23), ("b\x00", 25)])
    with pytest.raises(OverflowError):
        p.write_bind(buf, "", "s", [], [b"1"], [70000])
    assert not buf.in_message()
    assert buf.getvalue() == p.SYNC_MSG
    # And the scratch buffer behind build_* still works after a failure.
    assert p.build_data_row([b"x"]) == msg(b"D", struct.pack("!hi", 1, 1) + b"x")


def test_writing_inside_an_open_message_is_refused() -> None:
    buf = WriteBuffer()
    buf.start_message(ord("Q"))
    with pytest.raises(RuntimeError):
        p.write_ready_for_query(buf, p.TXN_IDLE)
    with pytest.raises(RuntimeError):
        p.write_data_row(buf, [])
    assert buf.in_message()


def test_build_reentered_from_a_values_iterator() -> None:
    # A sequence whose iteration builds another message: each call gets its own buffer.
    inner: list[bytes] = []

    class Row(list[Any]):
        def __iter__(self) -> Any:
            inner.append(p.build_command_complete("X"))
            return super().__iter__()

    assert p.build_data_row(Row([b"a"])) == p.build_data_row([b"a"])
    assert inner == [p.build_command_complete("X")]


# Rewriting -------------------------------------------------------------------------------------


@given(name_bytes, name_bytes, name_bytes, st.lists(oids, max_size=5))
def test_rewrite_parse_keeps_the_rest(old: bytes, new: bytes, sql: bytes, types: list[int]) -> None:
    payload = payload_of(p.build_parse(old, sql, types), b"P")
    out = p.rewrite_parse_name(payload, new)
    assert out == p.build_parse(new, sql, types)
    assert out[5:] == new + b"\x00" + payload[len(old) + 1 :]
    buf = WriteBuffer()
    p.write_renamed(buf, ord("P"), payload, new)
    assert buf.getvalue() == out


@given(name_bytes, name_bytes, name_bytes, st.lists(values, max_size=5))
def test_rewrite_bind_keeps_portal_and_params(
    portal: bytes, old: bytes, new: bytes, params: list[bytes | None]
) -> None:
    payload = payload_of(p.build_bind(portal, old, [1], params, [0, 1]), b"B")
    out = p.rewrite_bind_statement(payload, new)
    tail = payload[len(portal) + 1 + len(old) + 1 :]
    assert out[5:] == portal + b"\x00" + new + b"\x00" + tail
    assert p.parse_bind(payload_of(out, b"B")) == (portal, new, [1], params, [0, 1])
    buf = WriteBuffer()
    p.write_renamed(buf, ord("B"), payload, new)
    assert buf.getvalue() == out


@given(st.sampled_from(b"DC"), st.sampled_from(b"SP"), name_bytes, name_bytes)
def test_rewrite_describe_and_close(msg_type: int, kind: int, old: bytes, new: bytes) -> None:
    build = p.build_describe if msg_type == ord("D") else p.build_close
    payload = payload_of(build(kind, old), bytes([msg_type]))
    out = p.rewrite_describe_or_close_name(msg_type, payload, new)
    assert out == build(kind, new)
    buf = WriteBuffer()
    p.write_renamed(buf, msg_type, payload, new.decode("latin-1").encode("latin-1"))
    assert buf.getvalue() == out


def test_rewrite_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="NUL"):
        p.rewrite_parse_name(b"s\x00select 1\x00\x00\x00", b"a\x00b")
    with pytest.raises(ProtocolError, match="Parse"):
        p.rewrite_parse_name(b"no terminator", b"x")
    with pytest.raises(ProtocolError, match="Bind"):
        p.rewrite_bind_statement(b"portal\x00", b"x")
    with pytest.raises(ValueError, match="Describe or Close"):
        p.rewrite_describe_or_close_name(ord("P"), b"Ss\x00", b"x")
    with pytest.raises(ValueError, match="cannot rename"):
        p.write_renamed(WriteBuffer(), ord("Q"), b"x\x00", b"x")
    with pytest.raises(ProtocolError, match="over the limit"):
        p.write_renamed(
            WriteBuffer(max_message_size=16), ord("P"), b"s\x00" + b"x" * 20 + b"\x00", "n"
        )


@given(int32s, int32s, names, names)
def test_rewrite_notification_pid(old: int, new: int, channel: str, payload: str) -> None:
    original = payload_of(p.build_notification_response(old, channel, payload), b"A")
    out = p.rewrite_notification_pid(original, new)
    assert out == p.build_notification_response(new, channel, payload)
    assert out[9:] == original[4:]
    buf = WriteBuffer()
    p.write_notification_with_pid(buf, original, new)
    assert buf.getvalue() == out


# Forwarding ------------------------------------------------------------------------------------


def result_set(rows: int) -> list[bytes]:
    return [
        p.build_row_description([("id", 23), ("name", 25)]),
        *(p.build_data_row([str(i), f"row {i}"]) for i in range(rows)),
        p.build_command_complete(f"SELECT {rows}"),
    ]


def test_scan_backend_run_forwards_up_to_ready_for_query() -> None:
    notice = p.build_notice_response({"S": "NOTICE", "M": "n"})
    stream = [*result_set(1000), notice, p.READY_FOR_QUERY_IDLE_MSG, p.PARSE_COMPLETE_MSG]
    buf = ReadBuffer()
    buf.feed_data(b"".join(stream))
    out = WriteBuffer()
    moved = p.scan_backend_run(buf, out)
    assert out.getvalue() == b"".join(stream[:-2])
    assert moved == len(out)
    assert buf.take_message() and buf.get_message_type() == ord("Z")
    assert p.parse_ready_for_query(buf.consume_message()) == p.TXN_IDLE
    # '1' is ordinary unless the pooler tracks injected Parses.
    assert p.scan_backend_run(buf, WriteBuffer(), tracking=True) == 0
    assert p.scan_backend_run(buf, out) == len(p.PARSE_COMPLETE_MSG)


@pytest.mark.parametrize("stop", list(p.BACKEND_STOP_TYPES))
def test_scan_backend_run_stops_at_each_stop_type(stop: int) -> None:
    buf = ReadBuffer()
    buf.feed_data(p.build_data_row([b"1"]) + msg(bytes([stop]), b"xx") + p.build_data_row([b"2"]))
    out = WriteBuffer()
    assert p.scan_backend_run(buf, out) == len(p.build_data_row([b"1"]))
    assert buf.take_message() and buf.get_message_type() == stop


def test_scan_frontend_run_forwards_only_execute_and_copy_data() -> None:
    bind = p.build_bind("", "s", [], [b"1"])
    execute = p.build_execute("", 0)
    copy = [p.build_copy_data(b"1\n"), p.build_copy_data(b"2\n")]
    buf = ReadBuffer()
    buf.feed_data(bind + execute + p.SYNC_MSG + b"".join(copy) + p.COPY_DONE_MSG + msg(b"\x7f"))
    out = WriteBuffer()
    assert p.scan_frontend_run(buf, out) == 0
    assert buf.take_message() and buf.get_message_type() == ord("B")
    assert p.scan_frontend_run(buf, out) == len(execute)
    assert buf.take_message() and buf.get_message_type() == ord("S")
    assert p.scan_frontend_run(buf, out) == len(b"".join(copy))
    assert buf.take_message() and buf.get_message_type() == ord("c")
    # An unknown type stops the run: the pooler refuses it instead of costing a backend.
    assert p.scan_frontend_run(buf, out) == 0
    assert buf.take_message() and buf.get_message_type() == 0x7F
    assert out.getvalue() == execute + b"".join(copy)
    assert set(p.FRONTEND_STOP_TYPES) | set(p.FRONTEND_FORWARD_TYPES) == set(range(256))
    assert set(b"QPBDCSHFXcfp") <= set(p.FRONTEND_STOP_TYPES)


backend_messages = st.sampled_from(
    [
        *result_set(2),
        p.READY_FOR_QUERY_IDLE_MSG,
        p.build_error_response({"S": "ERROR", "M": "e"}),
        p.build_parameter_status("a", "b"),
        p.build_notification_response(1, "c", ""),
        p.PARSE_COMPLETE_MSG,
        p.build_copy_response(ord("H"), 0, []),
        p.build_copy_data(b"x"),
    ]
)


@given(st.lists(backend_messages, max_size=30), st.lists(st.integers(0), max_size=10))
def test_scan_backend_run_over_any_split(messages: list[bytes], cuts: list[int]) -> None:
    # Whatever the read sizes: forwarded runs + stop messages taken = the stream, in order,
    # and the pooler sees exactly the stop types.
    stream = b"".join(messages)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])]
    buf = ReadBuffer()
    out = WriteBuffer()
    seen: list[int] = []
    for chunk in chunks:
        buf.feed_data(chunk)
        while True:
            p.scan_backend_run(buf, out)
            if not buf.take_message():
                break
            seen.append(buf.get_message_type())
            out.write_raw(buf.message_bytes())
    assert out.getvalue() == stream
    assert seen == [m[0] for m in messages if m[0] in p.BACKEND_STOP_TYPES]


any_messages = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 255), st.binary(max_size=20)).map(
            lambda tp: msg(bytes([tp[0]]), tp[1])
        ),
        st.binary(min_size=1, max_size=8),  # garbage: bad lengths, partial headers
    ),
    max_size=20,
)


@settings(max_examples=300)
@given(any_messages, st.lists(st.integers(0), max_size=6), st.sampled_from([0, 1, 2]))
def test_scanners_do_what_take_run_into_does(
    parts: list[bytes], cuts: list[int], which: int
) -> None:
    # The scanners use ready tables instead of ReadBuffer.take_run_into(out, stop_types): same
    # runs, same stops, same errors, over any bytes and any split.
    scan, stops = [
        (lambda b, o: p.scan_backend_run(b, o), p.BACKEND_STOP_TYPES),
        (lambda b, o: p.scan_backend_run(b, o, tracking=True), p.BACKEND_TRACKING_STOP_TYPES),
        (p.scan_frontend_run, p.FRONTEND_STOP_TYPES),
    ][which]
    stream = b"".join(parts)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])]

    def run(step: Callable[[ReadBuffer, WriteBuffer], int]) -> list[object]:
        buf, out = ReadBuffer(max_message_size=64), WriteBuffer()
        trace: list[object] = []
        try:
            for chunk in chunks:
                buf.feed_data(chunk)
                while True:
                    trace.append(step(buf, out))
                    if not buf.take_message():
                        break
                    trace.append(buf.message_bytes())
        except ProtocolError as e:
            trace.append(str(e))
        trace.append(out.getvalue())
        return trace

    assert run(scan) == run(lambda b, o: b.take_run_into(o, stops))


def test_scanners_refuse_an_open_write_message() -> None:
    buf = ReadBuffer()
    buf.feed_data(p.build_data_row([b"1"]))
    out = WriteBuffer()
    out.start_message(ord("D"))
    with pytest.raises(RuntimeError, match="inside a message"):
        p.scan_backend_run(buf, out)
    with pytest.raises(TypeError):
        p.scan_frontend_run(buf, None)  # type: ignore[arg-type]


# PgError ---------------------------------------------------------------------------------------


def test_pg_error_to_message_puts_fields_in_postgres_order() -> None:
    err = PgError(
        "no more connections allowed",
        sqlstate.TOO_MANY_CONNECTIONS,
        severity="FATAL",
        hint="raise pool_size",
        detail="100 clients",
        where="pool app/alice",
    )
    assert err.to_message() == msg(
        b"E",
        b"SFATAL\x00VFATAL\x00C53300\x00Mno more connections allowed\x00D100 clients\x00"
        b"Hraise pool_size\x00Wpool app/alice\x00\x00",
    )
    assert err.is_fatal
    assert "53300" in str(err) and "HINT: raise pool_size" in str(err)
    assert PgError("x").sqlstate == sqlstate.INTERNAL_ERROR
    assert PgError("x", position=7).fields()["P"] == "7"
    notice = PgError("careful", "01000", severity="WARNING").to_notice_message()
    assert notice[:1] == b"N"
    assert p.parse_notice_response(notice[5:])["V"] == "WARNING"
    with pytest.raises(TypeError, match="unexpected keyword"):
        PgError("x", nonsense="y")


def test_pg_error_from_postgres_keeps_every_field() -> None:
    fields = {
        "S": "ERREUR",
        "V": "ERROR",
        "C": "23505",
        "M": "duplicate key",
        "D": "Key (id)=(1) already exists.",
        "s": "public",
        "t": "users",
        "n": "users_pkey",
        "F": "nbtinsert.c",
        "L": "666",
        "R": "_bt_check_unique",
        "Z": "a field from the future",
    }
    err = PgError.from_payload(p.build_error_response(fields)[5:])
    assert (err.severity, err.localized_severity, err.sqlstate) == ("ERROR", "ERREUR", "23505")
    assert (err.table_name, err.constraint_name, err.line) == ("users", "users_pkey", "666")
    assert err.extra == {"Z": "a field from the future"}
    assert not err.is_fatal
    assert err.fields() == fields
    assert p.parse_error_response(err.to_message()[5:]) == fields
    assert pickle.loads(pickle.dumps(err)).fields() == fields


def test_pg_error_defaults_for_sparse_responses() -> None:
    err = PgError.from_fields({"S": "FATAL"})
    assert (err.severity, err.sqlstate, err.message) == ("FATAL", "XX000", "")
    assert err.is_fatal
    with pytest.raises(ProtocolError):
        PgError.from_payload(b"SERROR")


def test_pg_error_from_protocol_error() -> None:
    try:
        p.parse_ready_for_query(b"?")
    except ProtocolError as exc:
        err = PgError.from_protocol_error(exc)
    assert (err.severity, err.sqlstate) == ("FATAL", "08P01")
    assert "ReadyForQuery" in err.message


# SQLSTATE --------------------------------------------------------------------------------------


def test_sqlstate_codes() -> None:
    assert sqlstate.PROTOCOL_VIOLATION == "08P01"
    assert sqlstate.IDLE_SESSION_TIMEOUT == "57P05"
    assert sqlstate.IDLE_IN_TRANSACTION_SESSION_TIMEOUT == "25P03"
    assert sqlstate.DUPLICATE_PREPARED_STATEMENT == "42P05"
    assert sqlstate.SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION == "08004"
    assert sqlstate.condition_name("53300") == "too_many_connections"
    assert sqlstate.condition_name("99999") == "99999"
    assert sqlstate.sqlstate_class("08006") == "08"
    assert sqlstate.is_connection_error(sqlstate.CONNECTION_FAILURE)
    assert sqlstate.is_connection_error(sqlstate.ADMIN_SHUTDOWN)
    assert not sqlstate.is_connection_error(sqlstate.QUERY_CANCELED)
    codes = list(sqlstate.CONDITION_NAMES)
    assert all(len(c) == 5 and c.isalnum() and c.upper() == c for c in codes)
    assert len(codes) == len(set(codes))
