"""Differential tests of the value layer against a real Postgres 15: same values, same answers.

Hypothesis draws values of every supported type (integers at the int64 edges, numerics with
many digits and scales and NaN/Infinity, floats with NaN/infinities/-0/subnormals, unicode
texts with trailing spaces, bytea, BC dates, timestamps in time zones whose offsets have
minutes and seconds, intervals of mixed signs, uuids) and NULLs. Postgres prints them (so
the texts are Postgres's own), and then:

- ORDER BY: Postgres ranks the values (dense_rank under each ASC/DESC and NULLS option);
  ``compare`` must agree on every pair. The rows are also split into 4 "shards", each
  sorted by Postgres, and ``kway_merge`` of the shards (as RowViews over DataRow payloads
  built from the raw texts) must come out in Postgres's order on two keys.
- Aggregates: Postgres aggregates each shard's part (the select items
  ``pgtypes.partial_exprs`` gives, restricted to the shard with FILTER) and the whole set
  in one scan; the shards' partials, folded by ``AggState`` from DataRows, must print
  exactly what Postgres printed for the whole set. Rows are scanned shard by shard, so
  ties of min/max and the order of string_agg/array_agg are Postgres's own. Float sums are
  compared with Postgres adding the same partials (the order of additions differs from a
  single scan, see pgvalue's docstring), and with the whole set when the sum is exact.
- Float texts: random float8/float4 bit patterns print as Postgres prints them.

The server runs with the C collation and UTF8 (the test template); the session uses
``pgtypes.SHARD_SETTINGS``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multigres._cy.pgvalue import float_text
from multigres.sql import pgtypes
from multigres.sql.pgtypes import (
    AggKind,
    AggSpec,
    RowView,
    SortKey,
    SortSpec,
    compare,
    kway_merge,
    merge_payloads,
)
from multigres.testing.postgres import PgHarness

pytestmark = pytest.mark.integration

SHARDS = 4
EXAMPLES = 40  # per type and per aggregate: the whole module stays well under 30 s

db_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@pytest.fixture(scope="module")
def conn(pg_harness: PgHarness) -> Iterator[psycopg.Connection[Any]]:
    inst = pg_harness.primary()
    try:
        with inst.connect() as c:
            for name, value in pgtypes.SHARD_SETTINGS.items():
                c.execute("SELECT set_config(%s, %s, false)", [name, value])
            yield c
    finally:
        inst.stop()


def raw_rows(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> list[list[Any]]:
    """The result's texts exactly as the DataRows carried them (None for NULL)."""
    cur = conn.execute(sql.encode(), params)
    res = cur.pgresult
    assert res is not None
    return [[res.get_value(i, j) for j in range(res.nfields)] for i in range(res.ntuples)]


def datarow(values: Sequence[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


# -- values, as the text Postgres reads ---------------------------------------------------------


def numeric_text(mantissa: int, scale: int) -> str:
    digits = str(abs(mantissa)).rjust(scale + 1, "0")
    text = digits[: len(digits) - scale] + ("." + digits[len(digits) - scale :] if scale else "")
    return ("-" if mantissa < 0 else "") + text


def date_in(year: int, month: int, day: int) -> str:
    return (
        f"{year:04d}-{month:02d}-{day:02d}"
        if year > 0
        else f"{1 - year:04d}-{month:02d}-{day:02d} BC"
    )


@st.composite
def dates(draw: st.DrawFn, max_year: int = 294275) -> tuple[int, int, int]:
    year = draw(
        st.integers(1900, 2100)
        | st.integers(-4712, 9999)
        | st.integers(-4712, max_year)
        | st.sampled_from([0, 1, -1])
    )
    return (year, draw(st.integers(1, 12)), draw(st.integers(1, 28)))


def clock(draw: st.DrawFn) -> str:
    h, m, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    frac = draw(st.sampled_from(["", ".5", ".000001", ".123456", ".1"]))
    return f"{h:02d}:{m:02d}:{s:02d}{frac}"


@st.composite
def timestamps(draw: st.DrawFn, tz: bool) -> str:
    y, mo, d = draw(dates(294275 if tz else 294276))
    text = f"{abs(y if y > 0 else 1 - y):04d}-{mo:02d}-{d:02d} {clock(draw)}"
    if tz:
        off = draw(st.integers(-14 * 60, 14 * 60) | st.sampled_from([0, 330, -210, 345]))
        text += f"{'-' if off < 0 else '+'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return text + (" BC" if y <= 0 else "")


@st.composite
def intervals(draw: st.DrawFn) -> str:
    small = st.integers(-40, 40)
    months = draw(small | st.integers(-(2**31) + 1, 2**31 - 1))
    days = draw(small | st.integers(-(2**31) + 1, 2**31 - 1))
    hours = draw(st.integers(-30, 30) | st.integers(-(2**31) + 1, 2**31 - 1) | st.just(0))
    secs = draw(st.integers(-4000, 4000))
    usecs = draw(st.integers(-(10**6), 10**6) | st.just(0))
    return f"{months} mons {days} days {hours} hours {secs} seconds {usecs} microseconds"


text_chars = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
texts = st.text(text_chars, max_size=6) | st.sampled_from(
    ["a", "a ", "ab", "", " ", "é", "\U0001f600"]
)
trailing = st.builds(lambda t, n: t + " " * n, texts, st.integers(0, 3))

# type name -> (type OID, strategy of input texts)
TYPES: dict[str, tuple[int, st.SearchStrategy[str]]] = {
    "int2": (21, st.integers(-(2**15), 2**15 - 1).map(str)),
    "int4": (23, st.integers(-(2**31), 2**31 - 1).map(str) | st.integers(-3, 3).map(str)),
    "int8": (
        20,
        (
            st.integers(-(2**63), 2**63 - 1)
            | st.sampled_from([-(2**63), 2**63 - 1, -(2**63) + 1, 0, -1])
        ).map(str),
    ),
    "oid": (26, st.integers(0, 2**32 - 1).map(str)),
    "numeric": (
        1700,
        st.builds(
            numeric_text,
            st.integers(-(10**45), 10**45) | st.integers(-999, 999),
            st.integers(0, 40) | st.integers(0, 3),
        )
        | st.sampled_from(["NaN", "Infinity", "-Infinity", "0", "0.00", "1.0", "1"]),
    ),
    "float8": (701, (st.floats() | st.sampled_from([5e-324, -0.0, 2.0**-1022])).map(repr)),
    "float4": (700, (st.floats(width=32) | st.sampled_from([1e-45, -0.0])).map(repr)),
    "bool": (16, st.sampled_from(["t", "f"])),
    "text": (25, trailing),
    "varchar": (1043, trailing),
    "bpchar": (1042, trailing),
    "name": (19, texts),
    "bytea": (17, st.binary(max_size=6).map(lambda b: "\\x" + b.hex())),
    "date": (
        1082,
        dates(5874896).map(lambda d: date_in(*d)) | st.sampled_from(["infinity", "-infinity"]),
    ),
    "time": (1083, st.composite(lambda draw: clock(draw))() | st.just("24:00:00")),
    "timestamp": (1114, timestamps(False) | st.sampled_from(["infinity", "-infinity"])),
    "timestamptz": (1184, timestamps(True) | st.sampled_from(["infinity", "-infinity"])),
    "interval": (1186, intervals()),
    "uuid": (2950, st.uuids().map(str)),
}

# Session time zones for timestamptz: offsets with minutes, and Europe/Paris's local mean time
# before 1911 (+00:09:21).
ZONES = ["UTC", "Asia/Kathmandu", "America/St_Johns", "Europe/Paris", "Pacific/Chatham"]

ORDERS = {
    "ASC": (False, False),
    "DESC": (True, True),
    "ASC NULLS FIRST": (False, True),
    "DESC NULLS LAST": (True, False),
}


def values_of(typ: str, max_size: int = 24) -> st.SearchStrategy[list[str | None]]:
    return st.lists(st.none() | TYPES[typ][1], min_size=1, max_size=max_size)


def set_zone(conn: psycopg.Connection[Any], zone: str) -> None:
    conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


# -- ORDER BY ------------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", list(TYPES))
@db_settings
@given(data=st.data())
def test_order_by_matches_postgres(
    conn: psycopg.Connection[Any], typ: str, data: st.DataObject
) -> None:
    oid = TYPES[typ][0]
    values = data.draw(values_of(typ))
    n = len(values)
    shard_of = data.draw(st.lists(st.integers(0, SHARDS - 1), min_size=n, max_size=n))
    groups = data.draw(st.lists(st.none() | st.integers(0, 2), min_size=n, max_size=n))
    o1 = data.draw(st.sampled_from(list(ORDERS)))
    o2 = data.draw(st.sampled_from(list(ORDERS)))
    set_zone(conn, data.draw(st.sampled_from(ZONES)))
    rows = raw_rows(
        conn,
        f"""SELECT i, g, v,
                   dense_rank() OVER (ORDER BY v {o2}) AS rv,
                   dense_rank() OVER (ORDER BY g {o1}, v {o2}) AS rgv,
                   sh
            FROM (SELECT i, sh, g, s::{typ} AS v
                  FROM unnest(%s::text[], %s::int[], %s::int8[]) WITH ORDINALITY
                       AS u(s, sh, g, i)) t
            ORDER BY sh, g {o1}, v {o2}""",
        [values, shard_of, groups],
    )
    desc1, nf1 = ORDERS[o1]
    desc2, nf2 = ORDERS[o2]
    # Every pair of Postgres's texts: the same order as its ranks.
    for a in rows:
        for b in rows:
            want = sign(int(a[3]) - int(b[3]))
            assert compare(oid, a[2], b[2], desc2, nf2) == want, (o2, a[2], b[2])
    # Each shard's run as Postgres sorted it, merged by us: Postgres's order on two keys.
    spec = SortSpec([SortKey(1, 20, desc1, nf1), SortKey(2, oid, desc2, nf2)])
    runs: list[list[RowView]] = [[] for _ in range(SHARDS)]
    rank_of: dict[bytes, int] = {}
    for r in rows:
        runs[int(r[5])].append(RowView(datarow(r[:3])))
        rank_of[r[0]] = int(r[4])
    merged = kway_merge(spec, runs)
    ranks = [rank_of[row[0] or b""] for row in merged]
    assert ranks == sorted(ranks), [row.values() for row in merged]
    # ORDER BY ... OFFSET ... LIMIT on the payloads, as the engine merges shard results.
    offset = data.draw(st.integers(0, n))
    limit = data.draw(st.integers(-1, n))
    page = merge_payloads(spec, [[r.payload() for r in run] for run in runs], offset, limit)
    page_ranks = ranks[offset:] if limit < 0 else ranks[offset : offset + limit]
    assert [rank_of[RowView(p)[0] or b""] for p in page] == page_ranks
    # Group keys: equal exactly when Postgres ranks the values equal.
    by_rank: dict[int, set[bytes]] = {}
    for r in rows:
        by_rank.setdefault(int(r[3]), set()).add(pgtypes.value_group_key(oid, r[2]))
    keys = [k for ks in by_rank.values() for k in ks]
    assert all(len(ks) == 1 for ks in by_rank.values())
    assert len(set(keys)) == len(keys)


# -- aggregates ----------------------------------------------------------------------------------

MINMAX_TYPES = [
    "int2",
    "int4",
    "int8",
    "oid",
    "float4",
    "float8",
    "numeric",
    "text",
    "varchar",
    "bpchar",
    "name",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
]
ARRAY_TYPES = [
    "int4",
    "text",
    "bpchar",
    "numeric",
    "float8",
    "bytea",
    "bool",
    "date",
    "timestamptz",
    "interval",
    "uuid",
]

AGG_CASES: list[tuple[str, str]] = (
    [("count", "int4"), ("count", "text")]
    + [("sum", t) for t in ("int2", "int4", "int8", "numeric", "float4", "float8")]
    + [("avg", t) for t in ("int2", "int4", "int8", "numeric", "float4", "float8")]
    + [(k, t) for t in MINMAX_TYPES for k in ("min", "max")]
    + [("bool_and", "bool"), ("bool_or", "bool")]
    + [("string_agg", "text"), ("string_agg", "bytea")]
    + [("array_agg", t) for t in ARRAY_TYPES]
)

# Values whose sums stay finite: the order of float additions cannot overflow one way only.
finite_floats = st.floats(-1e300, 1e300) | st.sampled_from([0.1, 0.2, 0.3, -0.0, 1e-310])
# avg(float8) raises "value out of range" in Postgres when its sum of squares overflows (avg
# shares variance's accumulator), values beyond ~1e154: the merge, given sums, cannot.
AVG_FLOAT8 = (st.floats(-1e150, 1e150) | st.sampled_from([0.1, float("nan"), float("inf")])).map(
    repr
)
AGG_VALUES: dict[str, st.SearchStrategy[str]] = {
    "float8": (finite_floats | st.sampled_from([float("nan"), float("inf")])).map(repr),
    "float4": (st.floats(-(2.0**100), 2.0**100, width=32) | st.sampled_from([0.1, 16777216.0])).map(
        repr
    ),
}
# For array_agg: texts that need quoting in an array, and elements that look like NULL.
ARRAY_TEXTS = st.sampled_from(["NULL", "null", "a,b", '"q"', "{x}", "back\\slash", " ", "", "é"])


def agg_values(typ: str, kind: str) -> st.SearchStrategy[str]:
    if kind == "avg" and typ == "float8":
        return AVG_FLOAT8
    if kind == "array_agg" and typ == "text":
        return TYPES[typ][1] | ARRAY_TEXTS
    return AGG_VALUES.get(typ, TYPES[typ][1])


@pytest.mark.parametrize(("kind", "typ"), AGG_CASES)
@db_settings
@given(data=st.data())
def test_aggregates_match_postgres(
    conn: psycopg.Connection[Any], kind: str, typ: str, data: st.DataObject
) -> None:
    oid = TYPES[typ][0]
    strategy = agg_values(typ, kind)
    if typ in ("float4", "float8") and data.draw(st.booleans()):
        # Eighths below 2**20: every sum is exact, so the order of additions cannot show.
        strategy = st.integers(-(2**23), 2**23).map(lambda i: repr(i / 8))
    values = data.draw(st.lists(st.none() | strategy, max_size=30))
    shard_of = sorted(
        data.draw(st.lists(st.integers(0, SHARDS - 1), min_size=len(values), max_size=len(values)))
    )
    set_zone(conn, data.draw(st.sampled_from(ZONES)))
    delim_sql, delim = "NULL", None
    if kind == "string_agg":
        delim = data.draw(st.sampled_from([",", "", " | ", "é", None]))
        if typ == "bytea":
            delim_bytes = None if delim is None else delim.encode()
            delim_sql = "NULL" if delim is None else f"'\\x{delim.encode().hex()}'::bytea"
        else:
            delim_bytes = None if delim is None else delim.encode()
            delim_sql = "NULL" if delim is None else f"'{delim}'"
        spec = pgtypes.aggregate(kind, oid, delim_bytes)
    else:
        spec = pgtypes.aggregate(kind, oid)
    exprs = pgtypes.partial_exprs(spec, "v", delim_sql)
    whole = f"string_agg(v, {delim_sql})" if kind == "string_agg" else f"{kind}(v)"
    items = [whole] + [f"{e} FILTER (WHERE sh = {k})" for k in range(SHARDS) for e in exprs]
    # Rows in shard order (the sorted shard numbers): one scan reads shard 0, then 1, ...
    (row,) = raw_rows(
        conn,
        f"""SELECT {", ".join(items)}
            FROM (SELECT sh, s::{typ} AS v
                  FROM unnest(%s::text[], %s::int[]) WITH ORDINALITY AS u(s, sh, i)) t""",
        [values, shard_of],
    )
    want, partials = row[0], row[1:]
    state = spec.state()
    width = len(exprs)
    for k in range(SHARDS):
        # The merge engine's path: a DataRow from each shard, its partial columns folded in.
        state.combine_row(RowView(datarow(partials[k * width : (k + 1) * width])), 0)
    got = state.final()
    if typ in ("float4", "float8") and kind in ("sum", "avg"):
        assert got == postgres_float_combination(conn, kind, typ, partials, width), partials
        exact = [float(v) for v in values if v is not None]
        # Multiples of 1/8 whose absolute sum fits the mantissa (24 bits for float4, 53 for
        # float8, 3 of them after the point): every partial sum, in any order, is exact.
        mantissa = 24 if typ == "float4" else 53
        if (all((x * 8).is_integer() for x in exact)
                and sum(abs(x) for x in exact) * 8 < 2**mantissa):
            assert got == want  # exact sums: the order of additions does not matter
    else:
        assert got == want, (values, partials)


@pytest.mark.parametrize(("kind", "typ"), AGG_CASES)
@settings(max_examples=EXAMPLES // 4, deadline=None, database=None)
@given(data=st.data())
def test_aggregates_of_inputs_match_postgres(
    conn: psycopg.Connection[Any], kind: str, typ: str, data: st.DataObject
) -> None:
    """The transition path (``combine_input``: the gateway aggregating rows itself, as for
    DISTINCT aggregates): every value in scan order gives Postgres's text exactly, floats
    too (the same additions in the same order), array_agg quoting each element."""
    oid = TYPES[typ][0]
    values = data.draw(st.lists(st.none() | agg_values(typ, kind), max_size=20))
    set_zone(conn, data.draw(st.sampled_from(ZONES)))
    delim_sql, delim_bytes = "NULL", None
    if kind == "string_agg":
        delim_bytes = data.draw(st.sampled_from([b",", b"", b" | ", None]))
        if delim_bytes is not None:
            delim_sql = (
                f"'\\x{delim_bytes.hex()}'::bytea"
                if typ == "bytea"
                else f"'{delim_bytes.decode()}'"
            )
    whole = f"string_agg(v, {delim_sql})" if kind == "string_agg" else f"{kind}(v)"
    source = f"(SELECT i, s::{typ} AS v FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i)) t"
    (row,) = raw_rows(conn, f"SELECT {whole} FROM {source}", [values])
    texts = [r[0] for r in raw_rows(conn, f"SELECT v FROM {source} ORDER BY i", [values])]
    state = pgtypes.aggregate(kind, oid, delim_bytes).state()
    for text in texts:
        state.combine_input(text)
    assert state.final() == row[0], (values, texts)


def postgres_float_combination(
    conn: psycopg.Connection[Any], kind: str, typ: str, partials: list[bytes | None], width: int
) -> bytes | None:
    """What Postgres prints when it adds the shards' partial sums itself, in shard order
    (float4pl/float8pl), and for avg divides by the count (float8_avg, whose sum starts at
    0.0)."""
    sums = [p.decode() if p is not None else None for p in partials[::width]]
    if kind == "sum":
        (row,) = raw_rows(
            conn,
            f"SELECT sum(s::{typ}) FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i)",
            [sums],
        )
        return row[0]  # type: ignore[no-any-return]
    count = sum(int(c or b"0") for c in partials[1::width])
    (row,) = raw_rows(
        conn,
        "SELECT (0::float8 + sum(s::float8)) / nullif(%s, 0)::float8"
        " FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i)",
        [count, sums],
    )
    return row[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "values",
    [
        # avg's scale: at least the sum's display scale, at most 1000.
        ["1." + "0" * 1004 + "1", "2"],
        ["0." + "0" * 995 + "7", "0"],
        ["99999999999999999999999999999999999999.99", "-1", "3"],
        ["-0.00000000000000000001", "0", "0"],
        ["9999", "1"],
        ["10000", "0", "0"],
    ],
)
def test_avg_numeric_scales(conn: psycopg.Connection[Any], values: list[str]) -> None:
    spec = AggSpec(AggKind.AVG, 1700)
    (row,) = raw_rows(
        conn,
        "SELECT avg(s::numeric), sum(s::numeric) FILTER (WHERE i %% 2 = 0),"
        " count(s) FILTER (WHERE i %% 2 = 0), sum(s::numeric) FILTER (WHERE i %% 2 = 1),"
        " count(s) FILTER (WHERE i %% 2 = 1)"
        " FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i)",
        [values],
    )
    assert spec.final(spec.combine((row[1], row[2]), (row[3], row[4]))) == row[0]


# -- float texts ---------------------------------------------------------------------------------


def bit_pattern_floats(rng: random.Random, n: int, float4: bool) -> list[float]:
    fmt, bits = ("<f", 32) if float4 else ("<d", 64)
    ifmt = "<I" if float4 else "<Q"
    out = []
    for _ in range(n):
        x = struct.unpack(fmt, struct.pack(ifmt, rng.getrandbits(bits)))[0]
        if x == x and abs(x) != float("inf"):
            out.append(x)
    # Few fraction bits: ties between the two shortest candidates (to the even digit).
    top, fracs = (22, [0.25, 0.75, 0.125, 0.875, 0.5]) if float4 else (52, [0.25, 0.75, 0.5])
    out += [rng.randrange(2 ** (top - 3), 2**top) + rng.choice(fracs) for _ in range(2000)]
    # Powers of two (the gap below is half the gap above) and the ends of the range.
    exps = range(-149, 128) if float4 else range(-1074, 1024)
    out += [2.0**e for e in exps] + [-(2.0**e) for e in exps[::7]]
    if float4:
        out += [3.4028234663852886e38, 1.1754942106924411e-38]
    else:
        out += [1.7976931348623157e308, 2.2250738585072009e-308, 4.9406564584124654e-324]
    return out


@pytest.mark.parametrize("float4", [False, True])
def test_float_texts_match_postgres(conn: psycopg.Connection[Any], float4: bool) -> None:
    rng = random.Random(20240615)
    values = bit_pattern_floats(rng, 20000, float4)
    typ = "float4" if float4 else "float8"
    rows = raw_rows(
        conn,
        f"SELECT s::{typ} FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i) ORDER BY i",
        [[repr(v) for v in values]],
    )
    mismatches = [
        (v, r[0], float_text(v, float4))
        for v, r in zip(values, rows, strict=True)
        if float_text(v, float4) != r[0]
    ]
    assert not mismatches, mismatches[:10]


@db_settings
@given(
    st.lists(st.floats(allow_nan=False), max_size=50),
    st.lists(st.floats(allow_nan=False, width=32), max_size=50),
)
def test_float_texts_hypothesis(
    conn: psycopg.Connection[Any], doubles: list[float], singles: list[float]
) -> None:
    for typ, values, float4 in (("float8", doubles, False), ("float4", singles, True)):
        rows = raw_rows(
            conn,
            f"SELECT s::{typ} FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i) ORDER BY i",
            [[repr(v) for v in values]],
        )
        for v, r in zip(values, rows, strict=True):
            assert float_text(v, float4) == r[0], (v, r[0])
