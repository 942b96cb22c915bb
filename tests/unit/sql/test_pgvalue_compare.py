"""Comparisons on Postgres's text forms, against models written here in plain Python.

Each type's texts are printed here the way Postgres prints them (numeric with its scale,
ISO dates with BC, timestamptz with its offset, IntervalStyle postgres, hex bytea, ...), and
the order of ``compare`` must be the model's: Python ints, Decimals, floats with Postgres's
NaN rule, bytes, days from the Gregorian calendar (``date.toordinal`` shifted by whole
400-year cycles for BC and beyond 9999), intervals as Postgres's interval_cmp counts them.
The real Postgres checks the same in tests/integration/sql.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import struct
import uuid
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres._cy.buffer import ProtocolError
from multigres._cy.pgvalue import (
    OID_BOOL,
    OID_BPCHAR,
    OID_BYTEA,
    OID_DATE,
    OID_FLOAT4,
    OID_FLOAT8,
    OID_INT2,
    OID_INT4,
    OID_INT8,
    OID_INTERVAL,
    OID_NAME,
    OID_NUMERIC,
    OID_OID,
    OID_TEXT,
    OID_TIME,
    OID_TIMESTAMP,
    OID_TIMESTAMPTZ,
    OID_UUID,
    OID_VARCHAR,
    RowView,
    SortKey,
    SortSpec,
    UnsupportedType,
    ValueFormatError,
    compare,
    float_text,
    kway_merge,
    merge_payloads,
    sort_rows,
    supported_sort_type,
    value_group_key,
)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def check_order(oid: int, texts: Sequence[bytes], model: Sequence[Any]) -> None:
    """compare() on every pair agrees with the model's order."""
    for i, (a, ma) in enumerate(zip(texts, model, strict=True)):
        for b, mb in zip(texts[i:], model[i:], strict=True):
            want = sign((ma > mb) - (ma < mb))
            assert compare(oid, a, b) == want, (a, b)
            assert compare(oid, b, a) == -want, (b, a)
            # Group keys are equal exactly when the values are.
            assert (value_group_key(oid, a) == value_group_key(oid, b)) == (want == 0), (a, b)


# -- integers ----------------------------------------------------------------------------------

INT_RANGES = {
    OID_INT2: (-(2**15), 2**15 - 1),
    OID_INT4: (-(2**31), 2**31 - 1),
    OID_INT8: (-(2**63), 2**63 - 1),
    OID_OID: (0, 2**32 - 1),
}


@pytest.mark.parametrize("oid", list(INT_RANGES))
@given(data=st.data())
def test_integers(oid: int, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[oid]
    edges = st.sampled_from([lo, lo + 1, -1, 0, 1, hi - 1, hi])
    values = data.draw(st.lists(st.integers(lo, hi) | edges, min_size=1, max_size=12))
    check_order(oid, [str(v).encode() for v in values], list(values))


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"-",
        b"1.0",
        b"+1",
        b" 1",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"12345678901234567890",
        b"1e3",
        b"0x10",
    ],
)
def test_integer_texts_postgres_never_prints(text: bytes) -> None:
    with pytest.raises(ValueFormatError):
        compare(OID_INT8, text, b"1")


# -- numeric -----------------------------------------------------------------------------------

NUMERIC_RANK = {"-Infinity": 0, "Infinity": 2, "NaN": 3}


def numeric_text(mantissa: int, scale: int) -> bytes:
    """numeric_out: the digits with exactly ``scale`` of them after the point."""
    digits = str(abs(mantissa)).rjust(scale + 1, "0")
    text = digits[: len(digits) - scale] + ("." + digits[len(digits) - scale :] if scale else "")
    return (("-" if mantissa < 0 else "") + text).encode()


def numeric_model(text: bytes) -> tuple[int, Decimal]:
    s = text.decode()
    if s in NUMERIC_RANK:
        return (NUMERIC_RANK[s], Decimal(0))
    return (1, Decimal(s))


numerics = st.builds(
    numeric_text,
    st.integers(-(10**40), 10**40) | st.integers(-1000, 1000),
    st.integers(0, 30),
) | st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"0", b"0.000", b"-1", b"1.0"])


@given(st.lists(numerics, min_size=1, max_size=12))
def test_numeric(texts: list[bytes]) -> None:
    check_order(OID_NUMERIC, texts, [numeric_model(t) for t in texts])


def test_numeric_equal_values_with_other_scales() -> None:
    assert compare(OID_NUMERIC, b"1.5", b"1.500") == 0
    assert compare(OID_NUMERIC, b"0", b"0.0000") == 0
    assert compare(OID_NUMERIC, b"-0.001", b"0") == -1
    assert compare(OID_NUMERIC, b"NaN", b"NaN") == 0
    assert compare(OID_NUMERIC, b"Infinity", b"99999999999999999999999") == 1
    assert compare(OID_NUMERIC, b"NaN", b"Infinity") == 1


@pytest.mark.parametrize(
    "text", [b"1e5", b".5", b"5.", b"+5", b"nan", b"inf", b"1.2.3", b"--1", b"", b"1,5"]
)
def test_numeric_texts_postgres_never_prints(text: bytes) -> None:
    with pytest.raises(ValueFormatError):
        compare(OID_NUMERIC, text, b"1")


# -- floats ------------------------------------------------------------------------------------


def float_model(x: float) -> tuple[int, float]:
    # float8_cmp_internal: NaN equals NaN and is above everything; -0 equals 0.
    return (1, 0.0) if math.isnan(x) else (0, x + 0.0)


@given(st.lists(st.floats(), min_size=1, max_size=12))
def test_float8(values: list[float]) -> None:
    texts = [float_text(v) for v in values]
    check_order(OID_FLOAT8, texts, [float_model(v) for v in values])


@given(st.lists(st.floats(width=32), min_size=1, max_size=12))
def test_float4(values: list[float]) -> None:
    texts = [float_text(v, float4=True) for v in values]
    check_order(OID_FLOAT4, texts, [float_model(v) for v in values])


def f32(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def neighbours(x: float, float4: bool) -> tuple[float, float]:
    """The floats just below and above a positive finite x (of x's width)."""
    if float4:
        bits = struct.unpack("<I", struct.pack("<f", x))[0]
        return f32(bits - 1), f32(bits + 1)
    return math.nextafter(x, 0.0), math.nextafter(x, math.inf)


def postgres_shortest(x: float, float4: bool) -> Fraction:
    """Postgres's Ryu, modelled with exact fractions: the fewest significant digits strictly
    between the midpoints to x's neighbours (never a midpoint: STRICTLY_SHORTEST 0), the
    closest to x of those (a tie to the even digit)."""
    v = Fraction(abs(x))
    below, above = neighbours(abs(x), float4)
    if math.isinf(above):  # the largest float: the gap above is the gap below
        above_f = 2 * v - Fraction(below)
    else:
        above_f = Fraction(above)
    lo, hi = (v + Fraction(below)) / 2, (v + above_f) / 2
    exp10 = math.floor(math.log10(abs(x)))
    while Fraction(10) ** exp10 > v:
        exp10 -= 1
    while Fraction(10) ** (exp10 + 1) <= v:
        exp10 += 1
    for digits in range(1, 18):
        unit = Fraction(10) ** (exp10 - digits + 1)
        down = math.floor(v / unit) * unit
        inside = [c for c in (down, down + unit) if lo < c < hi]
        if inside:
            # A tie goes to the even last digit (Ryu rounds half to even on exact ties).
            return min(inside, key=lambda c: (abs(c - v), (c / unit) % 2))
    raise AssertionError("no decimal found")


@given(st.floats(allow_nan=False, allow_infinity=False).filter(bool))
def test_float8_text_is_postgres_shortest(x: float) -> None:
    text = float_text(x).decode()
    assert float(text) == x
    assert Fraction(Decimal(text)) == postgres_shortest(x, False) * (1 if x > 0 else -1)
    assert not text.endswith(".0") and "inf" not in text


@given(st.floats(width=32, allow_nan=False, allow_infinity=False).filter(bool))
def test_float4_text_is_postgres_shortest(x: float) -> None:
    text = float_text(x, float4=True).decode()
    assert struct.unpack("f", struct.pack("f", float(text)))[0] == x
    assert Fraction(Decimal(text)) == postgres_shortest(x, True) * (1 if x > 0 else -1)


@pytest.mark.parametrize(
    ("value", "float4", "text"),
    [
        (0.1 + 0.2, False, b"0.30000000000000004"),
        (1e15, False, b"1e+15"),
        (1e23, False, b"9.999999999999999e+22"),  # 1e+23 is a midpoint: Postgres avoids it
        (24450194401656832.0, False, b"2.4450194401656832e+16"),
        (123011456.0, True, b"1.23011456e+08"),
        (3421389.75, True, b"3.4213898e+06"),  # a tie: the even digit
        (1125899906842624.75, False, b"1.1258999068426248e+15"),
        (1e14, False, b"100000000000000"),
        (123456789012345.0, False, b"123456789012345"),
        (1e-5, False, b"1e-05"),
        (0.0001, False, b"0.0001"),
        (-0.0, False, b"-0"),
        (1e100, False, b"1e+100"),
        (5e-324, False, b"5e-324"),
        (-1.5e-310, False, b"-1.5e-310"),
        (float("nan"), False, b"NaN"),
        (float("-inf"), False, b"-Infinity"),
        (1e6, True, b"1e+06"),
        (123456.0, True, b"123456"),
        (1234567.0, True, b"1.234567e+06"),
        (0.1, True, b"0.1"),
        (2.0**-149, True, b"1e-45"),
        (3.4028234663852886e38, True, b"3.4028235e+38"),
        (2.0**-126, True, b"1.1754944e-38"),
    ],
)
def test_float_texts(value: float, float4: bool, text: bytes) -> None:
    assert float_text(value, float4) == text


@pytest.mark.parametrize("text", [b"nan", b"inf", b"0x1p3", b" 1", b"1.5f", b"", b"Inf"])
def test_float_texts_postgres_never_prints(text: bytes) -> None:
    with pytest.raises(ValueFormatError):
        compare(OID_FLOAT8, text, b"1")


# -- text types and bytes ----------------------------------------------------------------------

texts = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8
).map(str.encode)


@pytest.mark.parametrize("oid", [OID_TEXT, OID_VARCHAR, OID_NAME])
@given(values=st.lists(texts, min_size=1, max_size=12))
def test_text_is_bytewise(oid: int, values: list[bytes]) -> None:
    check_order(oid, values, list(values))


@given(st.lists(st.builds(lambda t, n: t + b" " * n, texts, st.integers(0, 3)), max_size=12))
def test_bpchar_ignores_trailing_spaces(values: list[bytes]) -> None:
    check_order(OID_BPCHAR, values, [v.rstrip(b" ") for v in values])


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=12))
def test_bytea_orders_as_its_bytes(values: list[bytes]) -> None:
    check_order(OID_BYTEA, [b"\\x" + v.hex().encode() for v in values], list(values))


@pytest.mark.parametrize("text", [b"abc", b"\\\\x", b"\\x1", b"\\001"])
def test_bytea_escape_output_is_refused(text: bytes) -> None:
    with pytest.raises(ValueFormatError):
        compare(OID_BYTEA, text, b"\\x00")


@given(st.lists(st.uuids(), min_size=1, max_size=12))
def test_uuid(values: list[uuid.UUID]) -> None:
    check_order(OID_UUID, [str(u).encode() for u in values], [u.bytes for u in values])


def test_bool() -> None:
    check_order(OID_BOOL, [b"t", b"f", b"f"], [1, 0, 0])
    with pytest.raises(ValueFormatError):
        compare(OID_BOOL, b"true", b"f")


# -- dates and times ---------------------------------------------------------------------------

CYCLE_YEARS, CYCLE_DAYS = 400, 146097  # the Gregorian calendar repeats every 400 years


def day_number(year: int, month: int, day: int) -> int:
    """Days of an astronomical-year date (1 BC is year 0), from date.toordinal()."""
    shift = 0
    while year < 1:
        year += CYCLE_YEARS
        shift -= CYCLE_DAYS
    while year > 9999:
        year -= CYCLE_YEARS
        shift += CYCLE_DAYS
    return dt.date(year, month, day).toordinal() + shift


def date_text(year: int, month: int, day: int) -> str:
    """ISO DateStyle: BC years printed as 1 - year with a ' BC' suffix."""
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def bc(year: int) -> str:
    return " BC" if year <= 0 else ""


@st.composite
def dates(draw: st.DrawFn) -> tuple[int, int, int]:
    year = draw(st.integers(-4712, 9999) | st.integers(-4712, 294276) | st.sampled_from([0, 1]))
    month = draw(st.integers(1, 12))
    last = 28 if month == 2 else 30
    return (year, month, draw(st.integers(1, last)))


INFINITIES = [(b"infinity", (1, 0, 0)), (b"-infinity", (-1, 0, 0))]


@given(st.lists(dates(), min_size=1, max_size=10), st.sampled_from(INFINITIES))
def test_date(values: list[tuple[int, int, int]], inf: tuple[bytes, tuple[int, int, int]]) -> None:
    texts = [(date_text(*d) + bc(d[0])).encode() for d in values] + [inf[0]]
    check_order(OID_DATE, texts, [(0, day_number(*d), 0) for d in values] + [inf[1]])


def clock_text(usec: int) -> str:
    s, frac = divmod(usec, 1_000_000)
    text = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    return text + (f".{frac:06d}".rstrip("0") if frac else "")


usecs = st.integers(0, 86_400_000_000 - 1) | st.sampled_from([0, 1, 500_000, 86_399_999_999])


@given(st.lists(usecs, min_size=1, max_size=10))
def test_time(values: list[int]) -> None:
    texts = [clock_text(u).encode() for u in values] + [b"24:00:00"]
    check_order(OID_TIME, texts, [*values, 86_400_000_000])


@given(st.lists(st.tuples(dates(), usecs), min_size=1, max_size=10), st.sampled_from(INFINITIES))
def test_timestamp(
    values: list[tuple[tuple[int, int, int], int]], inf: tuple[bytes, tuple[int, int, int]]
) -> None:
    texts = [(date_text(*d) + " " + clock_text(u) + bc(d[0])).encode() for d, u in values] + [
        inf[0]
    ]
    model = [(0, day_number(*d), u) for d, u in values] + [inf[1]]
    check_order(OID_TIMESTAMP, texts, model)


def offset_text(seconds: int) -> str:
    """Postgres prints +HH, +HH:MM or +HH:MM:SS (local mean time)."""
    sign_char = "-" if seconds < 0 else "+"
    h, rest = divmod(abs(seconds), 3600)
    m, s = divmod(rest, 60)
    text = f"{sign_char}{h:02d}"
    if m or s:
        text += f":{m:02d}"
    if s:
        text += f":{s:02d}"
    return text


offsets = st.integers(-15 * 3600, 15 * 3600) | st.sampled_from([0, 3600, -12600, 561, 20700])


@given(
    st.lists(st.tuples(dates(), usecs, offsets), min_size=1, max_size=10),
    st.sampled_from(INFINITIES),
)
def test_timestamptz_compares_instants(
    values: list[tuple[tuple[int, int, int], int, int]], inf: tuple[bytes, tuple[int, int, int]]
) -> None:
    texts = [
        (date_text(*d) + " " + clock_text(u) + offset_text(off) + bc(d[0])).encode()
        for d, u, off in values
    ] + [inf[0]]
    # The instant: local time minus the offset.
    model: list[object] = [
        (0, day_number(*d) * 86_400_000_000 + u - off * 1_000_000, 0) for d, u, off in values
    ]
    model.append((inf[1][0], 0, 0))
    check_order(OID_TIMESTAMPTZ, texts, model)


def test_timestamptz_same_instant_in_two_offsets() -> None:
    a = b"2024-06-01 12:00:00+02"
    b = b"2024-06-01 15:30:00+05:30"
    assert compare(OID_TIMESTAMPTZ, a, b) == 0
    assert compare(OID_TIMESTAMPTZ, b"1900-01-01 00:00:00+00:09:21", b"1899-12-31 23:50:39+00") == 0
    assert value_group_key(OID_TIMESTAMPTZ, a) == value_group_key(OID_TIMESTAMPTZ, b)


@pytest.mark.parametrize(
    ("oid", "text"),
    [
        (OID_DATE, b"01/05/2024"),  # DateStyle SQL
        (OID_DATE, b"05.01.2024"),  # German
        (OID_DATE, b"2024-01-05 AD"),
        (OID_TIMESTAMP, b"Fri Jan 05 12:00:00 2024"),  # Postgres
        (OID_TIMESTAMP, b"2024-01-05T12:00:00"),
        (OID_TIMESTAMPTZ, b"2024-01-05 12:00:00"),  # no offset
        (OID_TIMESTAMPTZ, b"2024-01-05 12:00:00 CET"),
        (OID_TIME, b"12:00"),
        (OID_DATE, b"Infinity"),
    ],
)
def test_other_datestyles_are_refused(oid: int, text: bytes) -> None:
    with pytest.raises(ValueFormatError):
        compare(oid, text, text)


# -- interval ----------------------------------------------------------------------------------


def interval_text(months: int, days: int, usec: int) -> str:
    """IntervalStyle postgres, as EncodeInterval prints it."""
    parts = []
    before = False  # a previous field was negative: positive ones get a '+'
    years, mons = int(months / 12), months - int(months / 12) * 12  # C division truncates
    for value, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        if value:
            plus = "+" if before and value > 0 else ""
            parts.append(f"{plus}{value} {unit}{'' if value == 1 else 's'}")
            before = value < 0
    if not parts or usec:
        a = abs(usec)
        clock = clock_text(a % 86_400_000_000)
        hours = a // 3_600_000_000
        clock = f"{hours:02d}" + clock[2:]
        parts.append(("-" if usec < 0 else "+" if before else "") + clock)
    return " ".join(parts)


intervals = st.tuples(
    st.integers(-(2**31), 2**31 - 1) | st.integers(-30, 30),
    st.integers(-(2**31), 2**31 - 1) | st.integers(-40, 40),
    st.integers(-(2**62), 2**62) | st.integers(-(10**11), 10**11),
)


@given(st.lists(intervals, min_size=1, max_size=10))
def test_interval(values: list[tuple[int, int, int]]) -> None:
    texts = [interval_text(*v).encode() for v in values]
    model = [(m * 30 + d) * 86_400_000_000 + u for m, d, u in values]
    check_order(OID_INTERVAL, texts, model)


def test_interval_examples() -> None:
    assert compare(OID_INTERVAL, b"1 mon", b"30 days") == 0
    assert compare(OID_INTERVAL, b"1 day", b"24:00:00") == 0
    assert compare(OID_INTERVAL, b"-1 days +02:00:00", b"-22:00:00") == 0
    assert compare(OID_INTERVAL, b"1 year 2 mons -3 days +04:05:06.5", b"1 year") == 1
    assert compare(OID_INTERVAL, b"00:00:00", b"-00:00:00.000001") == 1
    for other_style in [b"P1Y", b"@ 1 year", b"1-2", b"1 year 2 mons ago", b"1 week"]:
        with pytest.raises(ValueFormatError):
            compare(OID_INTERVAL, other_style, b"1 day")


# -- options, rows, merges ---------------------------------------------------------------------


def test_nulls_and_direction() -> None:
    # ASC: NULLS LAST by default; DESC: NULLS FIRST by default.
    assert compare(OID_INT4, None, b"1") == 1
    assert compare(OID_INT4, None, b"1", desc=True) == -1
    assert compare(OID_INT4, None, b"1", nulls_first=True) == -1
    assert compare(OID_INT4, None, b"1", desc=True, nulls_first=False) == 1
    assert compare(OID_INT4, None, None) == 0
    assert compare(OID_INT4, b"1", b"2", desc=True) == 1


def test_unsupported_types() -> None:
    for oid in (114, 3802, 1266, 790, 18, 1007, 99999, -1):
        assert not supported_sort_type(oid)
        with pytest.raises(UnsupportedType):
            SortKey(0, oid)
        with pytest.raises(UnsupportedType):
            compare(oid, b"1", b"1")
    for oid in (OID_INT8, OID_TEXT, OID_NUMERIC, OID_TIMESTAMPTZ, OID_INTERVAL, OID_UUID):
        assert supported_sort_type(oid)


def datarow(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


def test_sort_key_defaults() -> None:
    assert SortKey(0, OID_INT8).nulls_first is False
    assert SortKey(0, OID_INT8, desc=True).nulls_first is True
    assert SortKey(0, OID_INT8, desc=True, nulls_first=False).nulls_first is False


rows = st.lists(
    st.tuples(
        st.none() | st.integers(-5, 5),
        st.none() | st.sampled_from(["a", "b", "ab", "", "B"]),
    ),
    max_size=30,
)


def model_key(
    row: tuple[int | None, str | None], desc1: bool, nf1: bool, desc2: bool, nf2: bool
) -> tuple[object, ...]:
    def part(v: object, desc: bool, nulls_first: bool) -> tuple[int, object]:
        if v is None:
            return (0 if nulls_first else 2, 0)
        if isinstance(v, int):
            return (1, -v if desc else v)
        enc = v.encode()  # type: ignore[attr-defined]
        return (1, (*(-b for b in enc), 1) if desc else enc)

    return part(row[0], desc1, nf1) + part(row[1], desc2, nf2)


@given(rows, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(1, 5))
def test_rows_and_kway_merge(
    values: list[tuple[int | None, str | None]],
    desc1: bool,
    nf1: bool,
    desc2: bool,
    nf2: bool,
    shards: int,
) -> None:
    spec = SortSpec([SortKey(1, OID_INT8, desc1, nf1), SortKey(2, OID_TEXT, desc2, nf2)])
    views = [
        RowView(
            datarow(
                [
                    str(i).encode(),
                    None if a is None else str(a).encode(),
                    None if b is None else b.encode(),
                ]
            )
        )
        for i, (a, b) in enumerate(values)
    ]
    expected = sorted(
        range(len(values)), key=lambda i: model_key(values[i], desc1, nf1, desc2, nf2)
    )

    def by_spec(i: int, j: int) -> int:
        return spec.compare(views[i], views[j])

    ours = sorted(range(len(values)), key=functools.cmp_to_key(by_spec))
    assert [model_key(values[i], desc1, nf1, desc2, nf2) for i in ours] == [
        model_key(values[i], desc1, nf1, desc2, nf2) for i in expected
    ]
    # sort_rows: stable like sorted(), on RowViews and on payloads.
    assert sort_rows(spec, views) == [views[i] for i in ours]
    payloads = [v.payload() for v in views]
    assert sort_rows(spec, payloads) == [payloads[i] for i in ours]
    # Split into shards, each sorted; the merge is sorted and stable across shards.
    runs: list[list[RowView]] = [[] for _ in range(shards)]
    for i in expected:
        runs[i % shards].append(views[i])
    merged = kway_merge(spec, runs)
    assert len(merged) == len(views)
    for a, b in itertools.pairwise(merged):
        assert spec.compare(a, b) <= 0
    # The same merge on payloads, with OFFSET and LIMIT.
    payload_runs = [[r.payload() for r in run] for run in runs]
    all_payloads = [r.payload() for r in merged]
    assert merge_payloads(spec, payload_runs) == all_payloads
    for offset, limit in ((0, 1), (1, 3), (len(values), 2), (2, -1), (0, 0)):
        want = all_payloads[offset:] if limit < 0 else all_payloads[offset : offset + limit]
        assert merge_payloads(spec, payload_runs, offset, limit) == want
    assert sorted(int(r[0] or b"0") for r in merged) == list(range(len(values)))


def test_short_rows_and_group_keys() -> None:
    spec = SortSpec([SortKey(2, OID_NUMERIC), SortKey(0, OID_BPCHAR)])
    assert spec.min_columns == 3
    short = RowView(datarow([b"a", b"1"]))
    with pytest.raises(ProtocolError):
        spec.compare(short, short)
    with pytest.raises(ProtocolError):
        spec.group_key(short)
    a = RowView(datarow([b"x  ", None, b"1.50"]))
    b = RowView(datarow([b"x", None, b"1.5"]))
    c = RowView(datarow([b"x", None, None]))
    assert spec.compare(a, b) == 0
    assert spec.group_key(a) == spec.group_key(b) != spec.group_key(c)


@settings(max_examples=200)
@given(numerics, numerics)
def test_numeric_group_keys(a: bytes, b: bytes) -> None:
    assert (value_group_key(OID_NUMERIC, a) == value_group_key(OID_NUMERIC, b)) == (
        compare(OID_NUMERIC, a, b) == 0
    )


def test_float_group_keys() -> None:
    assert value_group_key(OID_FLOAT8, b"-0") == value_group_key(OID_FLOAT8, b"0")
    assert value_group_key(OID_FLOAT8, b"NaN") == value_group_key(OID_FLOAT8, b"NaN")
    assert value_group_key(OID_FLOAT8, b"NaN") != value_group_key(OID_FLOAT8, b"Infinity")
    assert value_group_key(OID_FLOAT8, None) != value_group_key(OID_FLOAT8, b"0")
    assert value_group_key(OID_TEXT, b"") != value_group_key(OID_TEXT, None)


SUPPORTED = [16, 17, 19, 20, 21, 23, 25, 26, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184]
SUPPORTED += [1186, 1700, 2950]
# Bytes near the formats (digits, signs, separators, letters of NaN/Infinity/BC) and any byte.
fuzz_text = st.binary(max_size=40) | st.text(
    "0123456789-+:. eEBCNaIfinty\\xdaysmon", max_size=40
).map(str.encode)


@settings(max_examples=300)
@given(st.sampled_from(SUPPORTED), fuzz_text, fuzz_text)
def test_any_text_is_compared_or_refused(oid: int, a: bytes, b: bytes) -> None:
    try:
        c = compare(oid, a, b)
    except ValueFormatError:
        return
    assert c in (-1, 0, 1)
    assert compare(oid, b, a) == -c
    assert (value_group_key(oid, a) == value_group_key(oid, b)) == (c == 0)


def test_merge_payloads_refuses_bad_rows() -> None:
    spec = SortSpec([SortKey(0, OID_INT4)])
    good = datarow([b"1"])
    with pytest.raises(TypeError):
        merge_payloads(spec, [[good], [RowView(good)]])  # type: ignore[list-item]
    with pytest.raises(ProtocolError):
        merge_payloads(spec, [[good], [good[:-1]]])
    with pytest.raises(ValueError):
        merge_payloads(spec, [[good]], -1)
    with pytest.raises(TypeError):
        kway_merge(spec, [[good]])  # type: ignore[list-item]
    assert merge_payloads(spec, []) == []
    assert merge_payloads(spec, [[], [good]]) == [good]


def test_sort_rows_edges() -> None:
    spec = SortSpec([SortKey(0, OID_INT4, desc=True)])
    assert sort_rows(spec, []) == []
    one = datarow([b"1"])
    assert sort_rows(spec, [one]) == [one]
    rows = [datarow([str(i % 7).encode()]) for i in range(100)]
    assert [int(RowView(r)[0] or b"") for r in sort_rows(spec, rows)] == sorted(
        (i % 7 for i in range(100)), reverse=True
    )
    with pytest.raises(TypeError):
        sort_rows(spec, [one, None])  # type: ignore[type-var]
    with pytest.raises(ValueFormatError):
        sort_rows(spec, [one, datarow([b"x"])])
