"""DataRow framing (RowView): offsets without copies, and malformed payloads fail cleanly.

Payloads are built here with struct, independently of the code under test. The fuzz tests
feed arbitrary bytes and every cut of valid payloads: the only outcome besides a correct
frame is ProtocolError, never a crash or a read past the payload.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres._cy.buffer import ProtocolError
from multigres._cy.pgvalue import RowView, build_datarow, datarow_columns


def datarow(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


values_lists = st.lists(st.none() | st.binary(max_size=40), max_size=40)


@given(values_lists)
def test_frames_what_was_built(values: list[bytes | None]) -> None:
    payload = datarow(values)
    row = RowView(payload)
    assert len(row) == row.ncols == len(values)
    assert row.values() == values
    for (off, length), v in zip(row.spans(), values, strict=True):
        if v is None:
            assert length == -1
        else:
            assert payload[off : off + length] == v
    assert row.data is payload  # a view: the payload is not copied
    assert datarow_columns(payload) == row.spans()


@given(values_lists, st.binary(max_size=8), st.binary(max_size=8))
def test_frames_a_range_of_a_larger_buffer(
    values: list[bytes | None], before: bytes, after: bytes
) -> None:
    payload = datarow(values)
    data = before + payload + after
    row = RowView(data, len(before), len(before) + len(payload))
    assert row.values() == values
    for (off, length), v in zip(row.spans(), values, strict=True):
        if v is not None:
            assert data[len(before) + off : len(before) + off + length] == v


@given(values_lists.filter(lambda v: len(v) > 0), st.data())
def test_every_cut_is_rejected(values: list[bytes | None], data: st.DataObject) -> None:
    payload = datarow(values)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(ProtocolError):
        RowView(payload[:cut])


@given(values_lists, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_are_rejected(values: list[bytes | None], extra: bytes) -> None:
    with pytest.raises(ProtocolError, match="after the last column"):
        RowView(datarow(values) + extra)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        row = RowView(data)
    except ProtocolError:
        return
    # Accepted: then it is a well-formed row whose spans lie inside the payload.
    for off, length in row.spans():
        assert 0 <= off <= len(data)
        assert length == -1 or off + length <= len(data)
    assert datarow(row.values()) == data


@settings(max_examples=300)
@given(values_lists, st.data())
def test_corrupted_lengths_never_crash(values: list[bytes | None], data: st.DataObject) -> None:
    payload = bytearray(datarow(values))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    try:
        row = RowView(bytes(payload))
    except ProtocolError:
        return
    assert datarow(row.values()) == bytes(payload)


def test_specific_faults() -> None:
    with pytest.raises(ProtocolError, match="no column count"):
        RowView(b"\x00")
    with pytest.raises(ProtocolError, match="negative column count"):
        RowView(b"\xff\xff")
    with pytest.raises(ProtocolError, match="has length -2"):
        RowView(struct.pack("!hi", 1, -2))
    with pytest.raises(ProtocolError, match="overruns"):
        RowView(struct.pack("!hi", 1, 5) + b"abc")
    with pytest.raises(ProtocolError, match="cut off"):
        RowView(struct.pack("!hi", 2, 1) + b"a" + b"\x00\x00")
    # A huge declared column count with no columns behind it.
    with pytest.raises(ProtocolError):
        RowView(struct.pack("!h", 32767))


def test_zero_columns_and_empty_values() -> None:
    assert RowView(datarow([])).values() == []
    assert RowView(datarow([b"", None, b""])).values() == [b"", None, b""]


def test_many_columns_use_allocated_spans() -> None:
    values: list[bytes | None] = [str(i).encode() if i % 3 else None for i in range(300)]
    row = RowView(datarow(values))
    assert row.values() == values
    assert row[-1] == values[-1]
    with pytest.raises(IndexError):
        row[300]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        RowView(bytearray(datarow([b"a"])))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RowView(datarow([b"a"]), 3, 2)
    with pytest.raises(ValueError):
        RowView(datarow([b"a"]), 0, 100)


@given(values_lists)
def test_build_datarow(values: list[bytes | None]) -> None:
    assert build_datarow(values) == datarow(values)
    assert build_datarow(tuple(values)) == datarow(values)
    assert build_datarow(iter(values)) == datarow(values)


def test_build_datarow_refuses_other_values() -> None:
    with pytest.raises(TypeError):
        build_datarow([b"1", "2"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        build_datarow([None] * 32768)


@given(values_lists, st.binary(max_size=4), st.binary(max_size=4))
def test_payload(values: list[bytes | None], before: bytes, after: bytes) -> None:
    payload = datarow(values)
    assert RowView(payload).payload() is payload
    row = RowView(before + payload + after, len(before), len(before) + len(payload))
    assert row.payload() == payload
