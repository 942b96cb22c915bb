"""The messages the pooler builds itself (everything else it forwards as received).

Constant messages are built once. Built with the codec's buffer, on paths that run once per
connection or per error, never per row.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from multigres._cy.buffer import WriteBuffer, build_message, build_startup_message

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

AUTH_OK = build_message(ord("R"), struct.pack("!i", 0))
RFQ_IDLE = build_message(ord("Z"), b"I")
RFQ_IN_TX = build_message(ord("Z"), b"T")
RFQ_FAILED = build_message(ord("Z"), b"E")
RFQ = {ord("I"): RFQ_IDLE, ord("T"): RFQ_IN_TX, ord("E"): RFQ_FAILED}
PARSE_COMPLETE = build_message(ord("1"))
CLOSE_COMPLETE = build_message(ord("3"))
SYNC = build_message(ord("S"))
TERMINATE = build_message(ord("X"))
SSL_REQUEST = build_startup_message(struct.pack("!i", SSL_REQUEST_CODE))


def error_response(
    sqlstate: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
    notice: bool = False,
) -> bytes:
    buf = WriteBuffer()
    buf.start_message(ord("N" if notice else "E"))
    for code, value in (("S", severity), ("V", severity), ("C", sqlstate), ("M", message),
                        ("D", detail), ("H", hint)):
        if value is not None:
            buf.write_byte(ord(code))
            buf.write_str(value)
    buf.write_byte(0)
    buf.end_message()
    return buf.getvalue()


def parameter_status(name: str, value: str) -> bytes:
    """ParameterStatus (built once per name and value: every login sends a dozen)."""
    key = (name, value)
    msg = _parameter_status_cache.get(key)
    if msg is None:
        buf = WriteBuffer()
        buf.start_message(ord("S"))
        buf.write_str(name)
        buf.write_str(value)
        buf.end_message()
        msg = buf.getvalue()
        if len(_parameter_status_cache) >= 4096:
            _parameter_status_cache.clear()
        _parameter_status_cache[key] = msg
    return msg


_parameter_status_cache: dict[tuple[str, str], bytes] = {}


def backend_key_data(pid: int, key: int) -> bytes:
    return build_message(ord("K"), struct.pack("!ii", pid, key))


def auth_request(code: int, data: bytes = b"") -> bytes:
    return build_message(ord("R"), struct.pack("!i", code) + data)


def startup_message(params: Mapping[str, str]) -> bytes:
    buf = WriteBuffer()
    buf.start_startup_message()
    buf.write_int32(PROTOCOL_3_0)
    for k, v in params.items():
        buf.write_str(k)
        buf.write_str(v)
    buf.write_byte(0)
    buf.end_message()
    return buf.getvalue()


def cancel_request(pid: int, key: int) -> bytes:
    return build_startup_message(struct.pack("!iii", CANCEL_REQUEST_CODE, pid, key))


def query(sql: str) -> bytes:
    buf = WriteBuffer()
    buf.start_message(ord("Q"))
    buf.write_str(sql)
    buf.end_message()
    return buf.getvalue()


def password_message(data: bytes) -> bytes:
    return build_message(ord("p"), data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return build_message(
        ord("p"), mechanism.encode() + b"\x00" + struct.pack("!i", len(data)) + data
    )


def row_description(names: Iterable[str]) -> bytes:
    """Text columns (type text, oid 25), for the admin console."""
    names = list(names)
    buf = WriteBuffer()
    buf.start_message(ord("T"))
    buf.write_int16(len(names))
    for n in names:
        buf.write_str(n)
        buf.write_int32(0)
        buf.write_int16(0)
        buf.write_int32(25)
        buf.write_int16(-1)
        buf.write_int32(-1)
        buf.write_int16(0)
    buf.end_message()
    return buf.getvalue()


def data_row(values: Iterable[object]) -> bytes:
    vals = list(values)
    buf = WriteBuffer()
    buf.start_message(ord("D"))
    buf.write_int16(len(vals))
    for v in vals:
        if v is None:
            buf.write_int32(-1)
        else:
            b = str(v).encode()
            buf.write_int32(len(b))
            buf.write_bytes(b)
    buf.end_message()
    return buf.getvalue()


def command_complete(tag: str) -> bytes:
    buf = WriteBuffer()
    buf.start_message(ord("C"))
    buf.write_str(tag)
    buf.end_message()
    return buf.getvalue()


def parse_error_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse payload -> {field letter: value}."""
    out: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def parse_startup_params(payload: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage after its version field."""
    parts = payload.split(b"\x00")
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"":
        from multigres._cy.buffer import ProtocolError

        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    items = parts[:-2]
    if len(items) % 2:
        from multigres._cy.buffer import ProtocolError

        raise ProtocolError("invalid startup packet: a parameter has no value")
    return {
        items[i].decode("utf-8", "replace"): items[i + 1].decode("utf-8", "replace")
        for i in range(0, len(items), 2)
    }


EMPTY_QUERY = build_message(ord("I"))


def build_empty_query() -> bytes:
    return EMPTY_QUERY
