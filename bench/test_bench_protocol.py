"""Micro-benchmark: the message codec (multigres._cy.protocol), side by side with pure Python.

Workloads, each timed over a batch of 1000 operations:
- build DataRow (3 text columns): ``build_data_row`` (bytes), ``write_data_row`` into one
  reused WriteBuffer (what a gateway does for a result), and a struct-based Python builder;
- build RowDescription (3 columns): ``build_row_description`` and the struct builder;
- parse ErrorResponse (S V C M D H F L R fields): ``parse_error_response`` and a Python parser;
- forward a result set (RowDescription + 1000 DataRow + CommandComplete + ReadyForQuery) from
  Postgres to a client: ``scan_backend_run`` (one C loop, one copy) and a Python loop of
  take_message() + message_bytes();
- forward pgbench -M prepared requests (334 x Bind, Execute, Sync) from a client:
  ``scan_frontend_run`` (stops at each Bind and Sync, as the pooler must look at them).

``make test`` runs each once as a test (--benchmark-disable); ``make bench`` times them and
prints operations/s with the machine next to the number.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multigres.wire import protocol as p
from multigres.wire.buffer import ReadBuffer, WriteBuffer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe as _machine

BATCH = 1000
ROWS = [
    [str(i).encode(), b"customer-%06d" % i, b"2024-05-%02d 12:00:00" % (i % 28 + 1)]
    for i in range(BATCH)
]
COLUMNS = [("id", 23), ("name", 25), ("created_at", 1114)]
ERROR = p.build_error_response(
    {
        "S": "ERROR",
        "V": "ERROR",
        "C": "23505",
        "M": 'duplicate key value violates unique constraint "users_pkey"',
        "D": "Key (id)=(42) already exists.",
        "H": "Pick another id.",
        "F": "nbtinsert.c",
        "L": "666",
        "R": "_bt_check_unique",
    }
)
ERROR_PAYLOAD = ERROR[5:]
RESULT_SET = b"".join(
    [
        p.build_row_description(COLUMNS),
        *(p.build_data_row(r) for r in ROWS),
        p.build_command_complete(f"SELECT {BATCH}"),
        p.READY_FOR_QUERY_IDLE_MSG,
    ]
)
PREPARED_REQUESTS = (
    p.build_bind("", "P0_1", [], [b"42117"]) + p.build_execute("", 0) + p.SYNC_MSG
) * 334

_I32 = struct.Struct("!i")
_FIELD = struct.Struct("!ihihih")


# -- the pure-Python baselines -----------------------------------------------------------------


def _py_data_row(values: list[bytes]) -> bytes:
    parts = [struct.pack("!h", len(values))]
    for v in values:
        parts.append(_I32.pack(len(v)))
        parts.append(v)
    body = b"".join(parts)
    return b"D" + _I32.pack(len(body) + 4) + body


def _py_row_description(columns: list[tuple[str, int]]) -> bytes:
    parts = [struct.pack("!h", len(columns))]
    for name, oid in columns:
        parts.append(name.encode() + b"\x00")
        parts.append(_FIELD.pack(0, 0, oid, -1, -1, 0))
    body = b"".join(parts)
    return b"T" + _I32.pack(len(body) + 4) + body


def _py_parse_error(payload: bytes) -> dict[str, str]:
    fields = {}
    for part in payload[:-1].split(b"\x00")[:-1]:
        fields[chr(part[0])] = part[1:].decode()
    return fields


# -- the workloads (each returns a checksum: bytes produced or fields parsed) ------------------


def build_rows_bytes() -> int:
    build = p.build_data_row
    return sum(len(build(r)) for r in ROWS)


def write_rows_buffer() -> int:
    buf = WriteBuffer(64 * 1024)
    write = p.write_data_row
    for r in ROWS:
        write(buf, r)
    return len(buf)


def build_rows_python() -> int:
    return sum(len(_py_data_row(r)) for r in ROWS)


def build_row_descriptions() -> int:
    build = p.build_row_description
    return sum(len(build(COLUMNS)) for _ in range(BATCH))


def build_row_descriptions_python() -> int:
    return sum(len(_py_row_description(COLUMNS)) for _ in range(BATCH))


def parse_errors() -> int:
    parse = p.parse_error_response
    return sum(len(parse(ERROR_PAYLOAD)) for _ in range(BATCH))


def parse_errors_python() -> int:
    return sum(len(_py_parse_error(ERROR_PAYLOAD)) for _ in range(BATCH))


def forward_result_scan() -> int:
    buf = ReadBuffer()
    out = WriteBuffer(len(RESULT_SET))
    buf.feed_data(RESULT_SET)
    while True:
        p.scan_backend_run(buf, out)
        if not buf.take_message():
            break
        out.write_raw(buf.message_bytes())  # the 'Z', after looking at its status
    return len(out)


def forward_result_python() -> int:
    buf = ReadBuffer()
    out = WriteBuffer(len(RESULT_SET))
    buf.feed_data(RESULT_SET)
    while buf.take_message():
        buf.get_message_type()
        out.write_raw(buf.message_bytes())
    return len(out)


def forward_requests_scan() -> int:
    buf = ReadBuffer()
    out = WriteBuffer(len(PREPARED_REQUESTS))
    buf.feed_data(PREPARED_REQUESTS)
    while True:
        p.scan_frontend_run(buf, out)
        if not buf.take_message():
            break
        out.write_raw(buf.message_bytes())  # Bind (renamed in the pooler) and Sync
    return len(out)


# name -> (function, operations per call, unit)
WORKLOADS: dict[str, tuple[Callable[[], int], int, str]] = {
    "DataRow build_data_row": (build_rows_bytes, BATCH, "rows"),
    "DataRow write_data_row": (write_rows_buffer, BATCH, "rows"),
    "DataRow python struct": (build_rows_python, BATCH, "rows"),
    "RowDescription build": (build_row_descriptions, BATCH, "messages"),
    "RowDescription python struct": (build_row_descriptions_python, BATCH, "messages"),
    "ErrorResponse parse": (parse_errors, BATCH, "messages"),
    "ErrorResponse python split": (parse_errors_python, BATCH, "messages"),
    "forward 1000-row result scan_backend_run": (forward_result_scan, BATCH + 3, "messages"),
    "forward 1000-row result python loop": (forward_result_python, BATCH + 3, "messages"),
    "forward 334 x (B E S) scan_frontend_run": (forward_requests_scan, 3 * 334, "messages"),
}

# What each workload returns: bytes produced or forwarded, fields parsed.
_ROWS_BYTES = sum(len(p.build_data_row(r)) for r in ROWS)
_EXPECTED = {
    "DataRow build_data_row": _ROWS_BYTES,
    "DataRow write_data_row": _ROWS_BYTES,
    "DataRow python struct": _ROWS_BYTES,
    "RowDescription build": BATCH * len(p.build_row_description(COLUMNS)),
    "RowDescription python struct": BATCH * len(p.build_row_description(COLUMNS)),
    "ErrorResponse parse": 9 * BATCH,
    "ErrorResponse python split": 9 * BATCH,
    "forward 1000-row result scan_backend_run": len(RESULT_SET),
    "forward 1000-row result python loop": len(RESULT_SET),
    "forward 334 x (B E S) scan_frontend_run": len(PREPARED_REQUESTS),
}


def test_baselines_build_the_same_bytes() -> None:
    assert all(_py_data_row(r) == p.build_data_row(r) for r in ROWS[:10])
    assert _py_parse_error(ERROR_PAYLOAD) == p.parse_error_response(ERROR_PAYLOAD)
    # The Python RowDescription writes typlen -1 for every type; the codec knows int4's is 4.
    assert len(_py_row_description(COLUMNS)) == len(p.build_row_description(COLUMNS))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_codec(benchmark: Any, capsys: pytest.CaptureFixture[str], name: str) -> None:
    fn, ops, unit = WORKLOADS[name]

    assert benchmark(fn) == _EXPECTED[name]

    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once as a test, nothing timed
        return
    mean = stats.stats.mean
    rate = ops / mean
    benchmark.extra_info.update(
        workload=name, operations=ops, unit=unit, per_second=round(rate), machine=_machine()
    )
    with capsys.disabled():
        print(
            f"\n  {name}: {rate / 1e6:.2f} M {unit}/s ({mean / ops * 1e9:.0f} ns each) "
            f"[1 thread; {_machine()}]"
        )
