"""Merging partial aggregates: the final texts Postgres prints, from models and known outputs.

Exact aggregates (count, integer and numeric sums, min/max, bool_*, string_agg, array_agg)
are checked against Python models over random values split into random shards. avg's
numeric division is checked against outputs taken from Postgres 15 (the differential tests
in tests/integration/sql run it against a live server on random data).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres._cy.buffer import ProtocolError
from multigres._cy.pgvalue import (
    OID_BOOL,
    OID_BPCHAR,
    OID_BYTEA,
    OID_FLOAT4,
    OID_FLOAT8,
    OID_INT2,
    OID_INT4,
    OID_INT8,
    OID_INTERVAL,
    OID_NAME,
    OID_NUMERIC,
    OID_TEXT,
    OID_VARCHAR,
    AggKind,
    AggSpec,
    RowView,
    SortKey,
    SortSpec,
    UnsupportedType,
    ValueFormatError,
    ValueOutOfRange,
    fold_groups,
    supported_aggregate,
)
from multigres.sql import pgtypes
from multigres.sql.pgtypes import Partial

T = TypeVar("T")


def fold(spec: AggSpec, partials: Sequence[Partial]) -> bytes | None:
    state = spec.state()
    for p in partials:
        state.combine(p)
    return state.final()


def shards_of(values: list[T], cuts: list[int]) -> list[list[T]]:
    """Split values (in order) into consecutive runs at the given cut points."""
    points = sorted({c % (len(values) + 1) for c in cuts})
    out: list[list[T]] = []
    start = 0
    for p in [*points, len(values)]:
        out.append(values[start:p])
        start = p
    return out


# -- count and integer sums --------------------------------------------------------------------


@given(st.lists(st.integers(0, 2**40), max_size=8))
def test_count(counts: list[int]) -> None:
    spec = AggSpec(AggKind.COUNT)
    assert fold(spec, [str(c).encode() for c in counts]) == str(sum(counts)).encode()
    assert spec.result_oid == OID_INT8 and spec.partial_oids == (OID_INT8,)


def test_count_without_partials_is_zero() -> None:
    assert fold(AggSpec(AggKind.COUNT), []) == b"0"


@pytest.mark.parametrize("oid", [OID_INT2, OID_INT4])
@given(data=st.data())
def test_sum_int(oid: int, data: st.DataObject) -> None:
    partials = data.draw(st.lists(st.none() | st.integers(-(2**50), 2**50), max_size=8))
    spec = AggSpec(AggKind.SUM, oid)
    assert spec.result_oid == OID_INT8
    got = fold(spec, [None if p is None else str(p).encode() for p in partials])
    present = [p for p in partials if p is not None]
    assert got == (str(sum(present)).encode() if present else None)


def test_int8_overflow_is_postgres_error() -> None:
    spec = AggSpec(AggKind.SUM, OID_INT4)
    with pytest.raises(ValueOutOfRange, match="bigint out of range") as info:
        fold(spec, [b"9223372036854775807", b"1"])
    assert info.value.sqlstate == "22003"
    assert fold(spec, [b"9223372036854775807", b"-9223372036854775808"]) == b"-1"


# -- numeric sums ------------------------------------------------------------------------------


def numeric_text(mantissa: int, scale: int) -> bytes:
    digits = str(abs(mantissa)).rjust(scale + 1, "0")
    text = digits[: len(digits) - scale] + ("." + digits[len(digits) - scale :] if scale else "")
    return (("-" if mantissa < 0 else "") + text).encode()


finite_numerics = st.tuples(
    st.integers(-(10**30), 10**30) | st.integers(-(10**6), 10**6), st.integers(0, 25)
)


@given(st.lists(finite_numerics, min_size=1, max_size=10), st.lists(st.integers(0, 20)))
def test_sum_numeric_is_exact_with_the_largest_scale(
    values: list[tuple[int, int]], cuts: list[int]
) -> None:
    spec = AggSpec(AggKind.SUM, OID_NUMERIC)
    partials: list[Partial] = []
    for shard in shards_of(values, cuts):
        partials.append(fold(spec, [numeric_text(m, s) for m, s in shard]))
    scale = max(s for _, s in values)
    want = numeric_text(sum(m * 10 ** (scale - s) for m, s in values), scale)
    assert fold(spec, partials) == want


@pytest.mark.parametrize(
    ("partials", "want"),
    [
        ([b"1", b"NaN"], b"NaN"),
        ([b"Infinity", b"5"], b"Infinity"),
        ([b"-Infinity", b"5.5"], b"-Infinity"),
        ([b"Infinity", b"-Infinity"], b"NaN"),
        ([None, None], None),
        ([b"1.50", None, b"-1.5"], b"0.00"),
        ([b"99999999999999999999999", b"1"], b"100000000000000000000000"),
        ([b"999999999999999999", b"999999999999999999"], b"1999999999999999998"),
        ([b"0.000000000000000000000000001", b"1"], b"1.000000000000000000000000001"),
    ],
)
def test_sum_numeric_cases(partials: list[Partial], want: bytes | None) -> None:
    assert fold(AggSpec(AggKind.SUM, OID_NUMERIC), partials) == want


def test_sum_int8_is_numeric() -> None:
    spec = AggSpec(AggKind.SUM, OID_INT8)
    assert spec.result_oid == OID_NUMERIC
    assert fold(spec, [b"9223372036854775807", b"9223372036854775807"]) == b"18446744073709551614"


# -- float sums --------------------------------------------------------------------------------


def test_float_sums() -> None:
    f8 = AggSpec(AggKind.SUM, OID_FLOAT8)
    assert fold(f8, [b"0.1", b"0.2"]) == b"0.30000000000000004"
    assert fold(f8, [b"-0", b"-0"]) == b"-0"
    assert fold(f8, [b"-0", b"0"]) == b"0"
    assert fold(f8, [b"Infinity", b"-Infinity"]) == b"NaN"
    assert fold(f8, [b"NaN", None]) == b"NaN"
    assert fold(f8, [None]) is None
    with pytest.raises(ValueOutOfRange, match="overflow"):
        fold(f8, [b"1e+308", b"1e+308"])
    f4 = AggSpec(AggKind.SUM, OID_FLOAT4)
    assert f4.result_oid == OID_FLOAT4
    # float4 arithmetic: 0.1f + 0.2f is 0.3f exactly.
    assert fold(f4, [b"0.1", b"0.2"]) == b"0.3"
    assert fold(f4, [b"16777216", b"1"]) == b"1.6777216e+07"
    with pytest.raises(ValueOutOfRange):
        fold(f4, [b"3e+38", b"3e+38"])


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=8))
def test_float8_sum_adds_partials_in_order(values: list[float]) -> None:
    spec = AggSpec(AggKind.SUM, OID_FLOAT8)
    total = None
    for v in values:
        total = v if total is None else total + v
    try:
        got = fold(spec, [repr(v).encode() for v in values])
    except ValueOutOfRange:
        assert total is not None and abs(total) == float("inf")
        return
    if total is None:
        assert got is None
    else:
        assert got is not None and float(got) == total


# -- avg ---------------------------------------------------------------------------------------

# (input type, values one per row, Postgres 15's avg text)
AVG_CASES = [
    (OID_INT4, [b"1", b"2", b"2"], b"1.6666666666666667"),
    (OID_INT8, [b"10000", b"20001"], b"15000.500000000000"),
    (OID_NUMERIC, [b"0.001", b"0.0020"], b"0.00150000000000000000"),
    (OID_NUMERIC, [b"-7.5", b"2"], b"-2.7500000000000000"),
    (
        OID_NUMERIC,
        [b"123456789012345678901234567890.123", b"1"],
        b"61728394506172839450617283945.562",
    ),
    (
        OID_NUMERIC,
        [b"0.000000000000000000000000000001", b"0"],
        b"0.000000000000000000000000000000500000000000000000",
    ),
    (OID_NUMERIC, [b"0.00", b"0.00"], b"0.00000000000000000000"),
    (OID_NUMERIC, [b"NaN", b"0"], b"NaN"),
    (OID_NUMERIC, [b"Infinity", b"0"], b"Infinity"),
    (OID_NUMERIC, [b"Infinity", b"-Infinity"], b"NaN"),
    (OID_INT2, [b"5"], b"5.0000000000000000"),
    (OID_INT4, [b"9999", b"1"], b"5000.0000000000000000"),
    (OID_INT4, [b"-1", b"0", b"0"], b"-0.33333333333333333333"),
    (OID_FLOAT8, [b"0.1", b"0.2"], b"0.15000000000000002"),
    (OID_FLOAT8, [b"-0", b"-0"], b"0"),  # avg's sum starts at 0.0: never -0
    (OID_FLOAT4, [b"-0"], b"0"),
]


@pytest.mark.parametrize(("oid", "values", "want"), AVG_CASES)
def test_avg_matches_postgres(oid: int, values: list[bytes], want: bytes) -> None:
    spec = AggSpec(AggKind.AVG, oid)
    assert spec.columns == 2
    # One shard per value, and all values in one shard, give the same text.
    assert fold(spec, [(v, b"1") for v in values]) == want
    if oid not in (OID_FLOAT4, OID_FLOAT8):
        total = fold(AggSpec(AggKind.SUM, OID_NUMERIC), list(values))
        assert fold(spec, [(total, str(len(values)).encode())]) == want


def test_avg_edges() -> None:
    spec = AggSpec(AggKind.AVG, OID_INT4)
    assert fold(spec, []) is None
    assert fold(spec, [(None, b"0"), (None, b"0")]) is None
    assert spec.combine((b"3", b"2"), (b"4", b"1")) == (b"7", b"3")
    assert spec.final((b"7", b"3")) == b"2.3333333333333333"
    assert AggSpec(AggKind.AVG, OID_FLOAT4).partial_oids == (OID_FLOAT8, OID_INT8)
    assert AggSpec(AggKind.AVG, OID_FLOAT4).result_oid == OID_FLOAT8
    assert AggSpec(AggKind.AVG, OID_INT8).partial_oids == (OID_NUMERIC, OID_INT8)


# -- min and max -------------------------------------------------------------------------------


def test_min_max_ties_follow_postgres() -> None:
    # numeric_smaller/larger return the later argument on a tie; bpchar keeps the first.
    mn, mx = AggSpec(AggKind.MIN, OID_NUMERIC), AggSpec(AggKind.MAX, OID_NUMERIC)
    assert fold(mn, [b"1.0", b"1.00", b"1.000"]) == b"1.000"
    assert fold(mx, [b"1.0", b"1.00", b"1.000"]) == b"1.000"
    assert fold(AggSpec(AggKind.MIN, OID_FLOAT8), [b"0", b"-0"]) == b"-0"
    assert fold(AggSpec(AggKind.MAX, OID_FLOAT8), [b"-0", b"0"]) == b"0"
    assert fold(AggSpec(AggKind.MIN, OID_INTERVAL), [b"1 mon", b"30 days"]) == b"30 days"
    assert fold(AggSpec(AggKind.MIN, OID_BPCHAR), [b"a  ", b"a", b"a "]) == b"a  "
    assert fold(AggSpec(AggKind.MAX, OID_BPCHAR), [b"a  ", b"a", b"a "]) == b"a  "


@given(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=10))
def test_min_max_int8(values: list[int | None]) -> None:
    texts = [None if v is None else str(v).encode() for v in values]
    present = [v for v in values if v is not None]
    assert fold(AggSpec(AggKind.MIN, OID_INT8), texts) == (
        str(min(present)).encode() if present else None
    )
    assert fold(AggSpec(AggKind.MAX, OID_INT8), texts) == (
        str(max(present)).encode() if present else None
    )


def test_min_max_types() -> None:
    assert AggSpec(AggKind.MIN, OID_VARCHAR).result_oid == OID_TEXT
    assert AggSpec(AggKind.MAX, OID_NAME).result_oid == OID_TEXT
    assert AggSpec(AggKind.MAX, OID_BPCHAR).result_oid == OID_BPCHAR
    for oid in (OID_BOOL, OID_BYTEA, 2950, 114):
        assert not supported_aggregate(AggKind.MIN, oid)
    with pytest.raises(ValueFormatError):
        fold(AggSpec(AggKind.MIN, 1082), [b"2024-01-01", b"01/02/2024"])


# -- bool, string_agg, array_agg ---------------------------------------------------------------


@given(st.lists(st.none() | st.booleans(), max_size=8))
def test_bool_and_or(values: list[bool | None]) -> None:
    texts = [None if v is None else (b"t" if v else b"f") for v in values]
    present = [v for v in values if v is not None]
    for kind, fn in ((AggKind.BOOL_AND, all), (AggKind.BOOL_OR, any)):
        want = None if not present else (b"t" if fn(present) else b"f")
        assert fold(AggSpec(kind, OID_BOOL), texts) == want


@given(
    st.lists(st.none() | st.text(max_size=5).map(lambda s: s.encode("utf-8", "replace"))),
    st.none() | st.sampled_from([b",", b"", b" | "]),
)
def test_string_agg(parts: list[bytes | None], delim: bytes | None) -> None:
    spec = AggSpec(AggKind.STRING_AGG, OID_TEXT, delim)
    present = [p for p in parts if p is not None]
    want = (delim or b"").join(present) if present else None
    assert fold(spec, parts) == want


def test_string_agg_bytea() -> None:
    spec = AggSpec(AggKind.STRING_AGG, OID_BYTEA, b"\x00\xff")
    assert spec.result_oid == OID_BYTEA
    assert fold(spec, [b"\\x01", None, b"\\x", b"\\xabcd"]) == b"\\x0100ff00ffabcd"
    with pytest.raises(ValueFormatError):
        fold(spec, [b"\\x01", b"\\001"])


def test_array_agg() -> None:
    spec = AggSpec(AggKind.ARRAY_AGG, OID_TEXT)
    assert spec.result_oid == 1009
    parts: list[Partial] = [b'{a,"b c"}', None, b"{NULL}", b'{"{x}","NULL","q\\"t"}']
    assert fold(spec, parts) == b'{a,"b c",NULL,"{x}","NULL","q\\"t"}'
    assert fold(spec, [None]) is None
    for bad in (b"{}", b"[0:1]={1,2}", b"1,2"):
        with pytest.raises(ValueFormatError):
            fold(spec, [b"{1}", bad])
    for unsupported in (1007, 603, 99999):  # arrays, box (';' delimiter), unknown types
        assert not supported_aggregate(AggKind.ARRAY_AGG, unsupported)


def test_unsupported_aggregates() -> None:
    for kind, oid in [
        (AggKind.SUM, OID_INTERVAL),
        (AggKind.SUM, 790),
        (AggKind.AVG, OID_INTERVAL),
        (AggKind.BOOL_AND, OID_INT4),
        (AggKind.STRING_AGG, OID_INT4),
        (AggKind.SUM, OID_TEXT),
        (99, OID_INT4),
    ]:
        assert not supported_aggregate(kind, oid)
        with pytest.raises((UnsupportedType, ValueError)):
            AggSpec(kind, oid)
    with pytest.raises(UnsupportedType):
        pgtypes.aggregate("stddev", OID_INT4)


# -- rows --------------------------------------------------------------------------------------


def datarow(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


def test_fold_groups_from_datarows() -> None:
    # Partial rows: (group key numeric, count, sum(int4) as int8, avg sum, avg count).
    rows = [
        RowView(datarow([b"1.0", b"2", b"10", b"10", b"2"])),
        RowView(datarow([b"2", b"1", None, None, b"0"])),
        RowView(datarow([b"1.00", b"3", b"-4", b"-4", b"3"])),
        RowView(datarow([None, b"1", b"7", b"7", b"1"])),
    ]
    specs = [AggSpec(AggKind.COUNT), AggSpec(AggKind.SUM, OID_INT4), AggSpec(AggKind.AVG, OID_INT4)]
    groups = fold_groups(rows, SortSpec([SortKey(0, OID_NUMERIC)]), specs, [1, 2, 3])
    finals = {first[0]: [s.final() for s in states] for first, states in groups.values()}
    assert finals == {
        b"1.0": [b"5", b"6", b"1.2000000000000000"],
        b"2": [b"1", None, None],
        None: [b"1", b"7", b"7.0000000000000000"],
    }
    with pytest.raises(ProtocolError):
        fold_groups(rows, SortSpec([SortKey(0, OID_NUMERIC)]), specs, [1, 2, 4])
    # The same from payloads: each group's first row is its own RowView.
    by_payload = fold_groups(
        [r.payload() for r in rows], SortSpec([SortKey(0, OID_NUMERIC)]), specs, [1, 2, 3]
    )
    assert {f[0]: [s.final() for s in st] for f, st in by_payload.values()} == finals
    assert [f.values() for f, _ in by_payload.values()] == [
        rows[0].values(),
        rows[1].values(),
        rows[3].values(),
    ]
    with pytest.raises(TypeError):
        fold_groups([None], SortSpec([]), [], [])  # type: ignore[list-item]


def test_pgtypes_helpers() -> None:
    spec = pgtypes.aggregate("AVG", OID_FLOAT4)
    assert pgtypes.partial_exprs(spec, "x") == ["sum((x)::float8)", "count(x)"]
    assert pgtypes.partial_exprs(pgtypes.aggregate("count"), "*") == ["count(*)"]
    assert pgtypes.partial_exprs(pgtypes.aggregate("every", OID_BOOL), "b") == ["bool_and(b)"]
    sa = pgtypes.aggregate("string_agg", OID_TEXT, b",")
    assert pgtypes.partial_exprs(sa, "t", "','") == ["string_agg(t, (',')::text)"]
    assert pgtypes.sort_key(0, OID_TEXT).column == 0
    assert pgtypes.sort_key(0, OID_NAME, collation="en_US").type_oid == OID_NAME
    with pytest.raises(UnsupportedType):
        pgtypes.sort_key(0, OID_TEXT, collation="en_US.utf8")
    assert pgtypes.SHARD_SETTINGS["DateStyle"] == "ISO"
    assert pgtypes.settings_problems(pgtypes.SHARD_SETTINGS) == []
    assert pgtypes.settings_problems({"DateStyle": "ISO, DMY", "extra_float_digits": "3"}) == []
    assert pgtypes.settings_problems({}) == []
    problems = pgtypes.settings_problems(
        {
            "DateStyle": "SQL, DMY",
            "IntervalStyle": "iso_8601",
            "bytea_output": "escape",
            "extra_float_digits": "0",
        }
    )
    assert len(problems) == 4 and "DateStyle" in problems[0]
    assert OID_FLOAT4 != OID_FLOAT8


def test_inputs_instead_of_partials() -> None:
    def fold_inputs(spec: AggSpec, values: Sequence[bytes | None]) -> bytes | None:
        state = spec.state()
        for v in values:
            state.combine_input(v)
        return state.final()

    assert fold_inputs(AggSpec(AggKind.COUNT), [b"x", None, b""]) == b"2"
    assert fold_inputs(AggSpec(AggKind.COUNT), []) == b"0"
    assert fold_inputs(AggSpec(AggKind.SUM, OID_INT4), [b"1", None, b"-3"]) == b"-2"
    assert fold_inputs(AggSpec(AggKind.AVG, OID_INT4), [b"1", None, b"2", b"2"]) == (
        b"1.6666666666666667"
    )
    # avg(real) adds each value widened to double: 0.1f is 0.100000001490116...
    assert fold_inputs(AggSpec(AggKind.AVG, OID_FLOAT4), [b"0.1", b"0.2"]) == (
        b"0.15000000223517418"
    )
    assert fold_inputs(AggSpec(AggKind.MAX, OID_TEXT), [b"a", None, b"b"]) == b"b"
    # array_agg keeps NULLs and quotes elements as array_out does.
    elements = [b"a", None, b"NULL", b"", b"a b", b'q"t', b"b\\s", b"{x}", b"null", b"1,2"]
    assert fold_inputs(AggSpec(AggKind.ARRAY_AGG, OID_TEXT), elements) == (
        b'{a,NULL,"NULL","","a b","q\\"t","b\\\\s","{x}","null","1,2"}'
    )
    assert fold_inputs(AggSpec(AggKind.ARRAY_AGG, OID_BYTEA), [b"\\x01"]) == b'{"\\\\x01"}'
    assert fold_inputs(AggSpec(AggKind.ARRAY_AGG, OID_INT4), [None]) == b"{NULL}"
