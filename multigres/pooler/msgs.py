"""The messages the pooler builds itself (everything else it forwards as received).

Constant messages are built once; the rest with the codec's builders (``multigres._cy.protocol``),
on paths that run once per connection or per error, never per row.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from multigres._cy.buffer import build_message, build_startup_message
from multigres._cy.protocol import (
    build_auth,
    build_backend_key_data,
    build_cancel_request,
    build_command_complete,
    build_data_row,
    build_error_response,
    build_notice_response,
    build_parameter_status,
    build_password_message,
    build_query,
    build_row_description,
    build_sasl_initial_response,
)
from multigres._cy.protocol import build_startup_message as proto_startup_message

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
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    return build_notice_response(fields) if notice else build_error_response(fields)


def parameter_status(name: str, value: str) -> bytes:
    """ParameterStatus (built once per name and value: every login sends a dozen)."""
    key = (name, value)
    msg = _parameter_status_cache.get(key)
    if msg is None:
        msg = build_parameter_status(name, value)
        if len(_parameter_status_cache) >= 4096:
            _parameter_status_cache.clear()
        _parameter_status_cache[key] = msg
    return msg


_parameter_status_cache: dict[tuple[str, str], bytes] = {}


def backend_key_data(pid: int, key: int) -> bytes:
    return build_backend_key_data(pid, key)


def auth_request(code: int, data: bytes = b"") -> bytes:
    return build_auth(code, data)


def startup_message(params: Mapping[str, str]) -> bytes:
    return proto_startup_message(params)


def cancel_request(pid: int, key: int) -> bytes:
    return build_cancel_request(pid, key)


def query(sql: str) -> bytes:
    return build_query(sql)


def password_message(data: bytes) -> bytes:
    return build_password_message(data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return build_sasl_initial_response(mechanism, data)


def row_description(names: Iterable[str]) -> bytes:
    """Text columns (type text, oid 25), for the admin console."""
    return build_row_description([(n, 25) for n in names])


def data_row(values: Iterable[object]) -> bytes:
    """Text values (``str()`` of each), None as NULL."""
    return build_data_row([None if v is None else str(v) for v in values])


def command_complete(tag: str) -> bytes:
    return build_command_complete(tag)


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
