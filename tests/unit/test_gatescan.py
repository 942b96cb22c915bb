"""The gateway's per-read-event scanners: whole ordinary messages pass with the right counts,
anything the session must look at does not, and no input crashes them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from multigres._cy.buffer import build_message
from multigres._cy.gatescan import scan_client, scan_server
from multigres.wire.protocol import (
    build_command_complete,
    build_data_row,
    build_error_response,
    build_query,
    build_ready_for_query,
)

SYNC = build_message(ord("S"))


def test_client_counts_statements() -> None:
    assert scan_client(build_query("SELECT 1")) == 1
    assert scan_client(build_query("SELECT 1") + build_query("BEGIN")) == 2
    assert scan_client(build_message(ord("B"), b"\0\0\0\0\0\0\0") + SYNC) == 1
    assert scan_client(b"") == 0


def test_client_stops_where_the_session_looks() -> None:
    assert scan_client(build_query("SET search_path = x")) == -1
    assert scan_client(build_query("SELECT pg_advisory_lock(1)")) == -1
    assert scan_client(build_message(ord("P"), b"s1\0SELECT 1\0\0\0")) == -1
    assert scan_client(build_message(ord("X"))) == -1
    assert scan_client(build_query("SELECT 1")[:-1]) == -1  # a partial message


def test_server_counts_ready_and_status() -> None:
    answer = (build_data_row([b"1"]) + build_command_complete("SELECT 1")
              + build_ready_for_query(ord("T")))
    assert scan_server(answer) == 256 + ord("T")
    assert scan_server(answer + build_ready_for_query(ord("I"))) == 2 * 256 + ord("I")
    assert scan_server(build_data_row([b"x"])) == 0
    plain_error = build_error_response({"S": "ERROR", "V": "ERROR", "C": "42601", "M": "x"})
    assert scan_server(plain_error + build_ready_for_query(ord("I"))) == 256 + ord("I")


def test_server_stops_at_fatal_and_no_server_connection() -> None:
    fatal = build_error_response({"S": "FATAL", "V": "FATAL", "C": "57P01", "M": "bye"})
    no_server = build_error_response({"S": "ERROR", "V": "ERROR", "C": "08001", "M": "no"})
    assert scan_server(fatal) == -1
    assert scan_server(no_server + build_ready_for_query(ord("I"))) == -1
    assert scan_server(build_ready_for_query(ord("I"))[:-1]) == -1


def _reference_client(data: bytes) -> int:
    i = count = 0
    while i < len(data):
        if len(data) - i < 5:
            return -1
        length = int.from_bytes(data[i + 1:i + 5], "big")
        if length < 4 or i + 1 + length > len(data):
            return -1
        if data[i] in b"PCX":
            return -1
        if data[i] in b"SF":
            count += 1
        if data[i] == ord("Q"):
            return -2  # depends on the session-effect filter: not modelled here
        i += 1 + length
    return count


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    c, s = scan_client(data), scan_server(data)
    assert c >= -1 and s >= -1
    ref = _reference_client(data)
    if ref != -2:
        assert c == ref


@given(st.lists(st.sampled_from([b"S", b"H", b"D", b"E"]), max_size=10))
def test_runs_of_messages(types: list[bytes]) -> None:
    data = b"".join(build_message(t[0], b"\0") if t != b"S" else SYNC for t in types)
    assert scan_client(data) == sum(1 for t in types if t == b"S")
