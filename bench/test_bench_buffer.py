"""Micro-benchmark: Postgres messages framed per second by ReadBuffer, side by side.

Workloads (streams as Postgres sends or receives them):
- result set: RowDescription + 1000 DataRow (3 columns) + CommandComplete + ReadyForQuery;
- pgbench -S replies: 250 x (RowDescription, DataRow, CommandComplete, ReadyForQuery);
- pgbench -M prepared requests: 334 x (Bind, Execute, Sync).

Ways of consuming them, in one run:
- frame: Python loop of take_message() + get_message_type() + get_message_length(), the stream
  fed whole (zero-copy path) or in 4 KiB chunks (messages straddle chunks: the copy path);
- take_run: forward every run up to ReadyForQuery with one copy, the framing loop in C;
- struct: a pure-Python framer with struct.unpack_from, the baseline the extension replaces.

``make test`` runs each once as a test (--benchmark-disable); ``make bench`` times them and
prints messages/s with the machine next to the number.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multigres.wire.buffer import ReadBuffer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe as _machine

_LENGTH = struct.Struct("!i")


def _msg(t: bytes, payload: bytes = b"") -> bytes:
    return t + _LENGTH.pack(len(payload) + 4) + payload


def _row_description(*names: bytes) -> bytes:
    fields = b"".join(
        n + b"\x00" + struct.pack("!ihihih", 16384, i + 1, 23, 4, -1, 0)
        for i, n in enumerate(names)
    )
    return _msg(b"T", struct.pack("!h", len(names)) + fields)


def _data_row(*values: bytes) -> bytes:
    cols = b"".join(_LENGTH.pack(len(v)) + v for v in values)
    return _msg(b"D", struct.pack("!h", len(values)) + cols)


def _result_set() -> list[bytes]:
    rows = [
        _data_row(str(i).encode(), b"customer-%06d" % i, b"2024-05-%02d 12:00:00" % (i % 28 + 1))
        for i in range(1000)
    ]
    return [
        _row_description(b"id", b"name", b"created_at"),
        *rows,
        _msg(b"C", b"SELECT 1000\x00"),
        _msg(b"Z", b"I"),
    ]


def _pgbench_replies() -> list[bytes]:
    one = [
        _row_description(b"abalance"),
        _data_row(b"-4172"),
        _msg(b"C", b"SELECT 1\x00"),
        _msg(b"Z", b"I"),
    ]
    return one * 250


def _pgbench_requests() -> list[bytes]:
    bind = _msg(b"B", b"\x00P0_1\x00\x00\x01\x00\x00\x00\x01" + _LENGTH.pack(5) + b"42117\x00\x00")
    one = [bind, _msg(b"E", b"\x00" + _LENGTH.pack(0)), _msg(b"S")]
    return one * 334


WORKLOADS: dict[str, Callable[[], list[bytes]]] = {
    "result set (T + 1000 D + C + Z)": _result_set,
    "pgbench -S replies (250 x T D C Z)": _pgbench_replies,
    "pgbench -M prepared requests (334 x B E S)": _pgbench_requests,
}


def _chunks(stream: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [stream]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


# Each way returns the bytes of the messages it framed: checked against the stream's size.


def _frame(chunks: list[bytes]) -> int:
    buf = ReadBuffer()
    framed = 0
    for chunk in chunks:
        buf.feed_data(chunk)
        while buf.take_message():
            buf.get_message_type()
            framed += buf.get_message_length() + 1
    return framed


def _take_run(chunks: list[bytes]) -> int:
    """Forward runs up to ReadyForQuery, which is taken and inspected as a pooler must."""
    buf = ReadBuffer()
    framed = 0
    for chunk in chunks:
        buf.feed_data(chunk)
        while True:
            framed += len(buf.take_run(b"Z"))
            if not buf.take_message():
                break
            buf.read_byte()  # transaction status
            framed += buf.get_message_length() + 1
    return framed


def _struct_baseline(chunks: list[bytes]) -> int:
    pending = b""
    framed = 0
    unpack = _LENGTH.unpack_from
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        pos = 0
        end = len(data)
        while end - pos >= 5:
            if not data[pos]:  # the type byte, read as the others do
                raise ValueError("type byte 0")
            (length,) = unpack(data, pos + 1)
            if end - pos - 1 < length:
                break
            pos += 1 + length
            framed += 1 + length
        pending = data[pos:]
    return framed


CASES = [
    pytest.param(workload, mode, chunk, id=f"{mode}-{chunk or 'whole'}-{workload.split(' (')[0]}")
    for workload in WORKLOADS
    for mode, chunk in [("frame", None), ("frame", 4096), ("take_run", None), ("struct", None)]
    if not (mode == "take_run" and "requests" in workload)  # no ReadyForQuery to stop at
]


@pytest.mark.parametrize(("workload", "mode", "chunk"), CASES)
def test_frame_messages(
    benchmark: Any,
    capsys: pytest.CaptureFixture[str],
    workload: str,
    mode: str,
    chunk: int | None,
) -> None:
    messages = WORKLOADS[workload]()
    stream = b"".join(messages)
    chunks = _chunks(stream, chunk)
    fn = {"frame": _frame, "take_run": _take_run, "struct": _struct_baseline}[mode]

    assert benchmark(fn, chunks) == len(stream)

    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once as a test, nothing timed
        return
    mean = stats.stats.mean
    rate = len(messages) / mean
    benchmark.extra_info.update(
        workload=workload,
        mode=mode,
        chunk_bytes=chunk or len(stream),
        messages=len(messages),
        stream_bytes=len(stream),
        messages_per_second=round(rate),
        machine=_machine(),
    )
    with capsys.disabled():
        print(
            f"\n  {workload}, {mode}, chunks of {chunk or len(stream)} B: "
            f"{rate / 1e6:.2f} M messages/s ({len(stream) / mean / 1e6:.0f} MB/s) "
            f"[1 thread; {_machine()}]"
        )
