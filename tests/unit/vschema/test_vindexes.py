"""Every vindex: what it maps values to, what it refuses, how evenly it spreads rows over
2 and 4 shards; the lookups against an in-memory VCursor."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres._cy import vhash
from multigres.topo.keyrange import KeyRange
from multigres.vschema.doc import Checker, Params
from multigres.vschema.errors import VindexError
from multigres.vschema.shardmap import ShardMap
from multigres.vschema.vindexes import (
    VINDEX_TYPES,
    FunctionalVindex,
    HashVindex,
    LookupUniqueVindex,
    LookupVindex,
    MulticolVindex,
    NumericVindex,
    UnicodeLooseXxhashVindex,
    UnicodeXxhashVindex,
    Vindex,
    XxhashVindex,
)
from tests.unit.vschema.fakevcursor import FakeVCursor, UniqueViolation

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


def make(cls: type[Vindex], params: dict[str, Any] | None = None, name: str = "v") -> Any:
    checker = Checker()
    p = Params(checker, params or {}, f"vindexes.{name}.params")
    v = cls(name, p)
    p.finish()
    checker.raise_if_problems()
    return v


def be(n: int) -> bytes:
    return (n & ((1 << 64) - 1)).to_bytes(8, "big")


def test_types_and_costs() -> None:
    assert {t: (c.cost, c.unique, c.needs_vcursor) for t, c in VINDEX_TYPES.items()} == {
        "numeric": (0, True, False),
        "hash": (1, True, False),
        "xxhash": (1, True, False),
        "unicode_xxhash": (1, True, False),
        "unicode_loose_xxhash": (1, True, False),
        "multicol": (1, True, False),
        "lookup_unique": (10, True, True),
        "lookup": (20, False, True),
    }


# -- hash ----------------------------------------------------------------------------------


def test_hash_map_verify_reverse() -> None:
    v = make(HashVindex)
    ids = v.map([1, "2", b"-3", None])
    assert ids[0] == bytes.fromhex("910a2dec89025cc1")
    assert ids[3] is None
    assert v.verify([1, 2, 1], [ids[0], ids[1], ids[1]]) == [True, True, False]
    assert v.reverse_map(ids[:3]) == [1, 2, -3]


@given(st.lists(INT64, max_size=50))
def test_hash_reverse_map_round_trips(values: list[int]) -> None:
    v = make(HashVindex)
    assert v.reverse_map(v.map(values)) == values


def test_hash_refuses_with_vindex_name() -> None:
    v = make(HashVindex, name="hsh")
    with pytest.raises(VindexError, match=r"vindex 'hsh' \(hash\): 'abc' is not an integer"):
        v.map(["abc"])
    with pytest.raises(VindexError, match="out of range"):
        v.map([1 << 63])


# -- numeric -------------------------------------------------------------------------------


def test_numeric_identity() -> None:
    v = make(NumericVindex)
    assert v.map([0, 1, -1, "255"]) == [be(0), be(1), b"\xff" * 8, be(255)]
    assert v.reverse_map([be(-5), be(7)]) == [-5, 7]


@given(st.lists(INT64, min_size=2, max_size=50, unique=True))
def test_numeric_keeps_order_of_non_negative(values: list[int]) -> None:
    v = make(NumericVindex)
    pos = sorted(abs(x) >> 1 for x in values)
    ids = v.map(pos)
    assert ids == sorted(ids)


# -- xxhash --------------------------------------------------------------------------------


def test_xxhash_inputs() -> None:
    ints = make(XxhashVindex)
    assert ints.input == "int"
    assert ints.map([42, "042"]) == [vhash.xxh64(be(42)).to_bytes(8, "big")] * 2
    text = make(XxhashVindex, {"input": "text"})
    assert text.map(["héllo"]) == [vhash.xxh64("héllo".encode()).to_bytes(8, "big")]
    raw = make(XxhashVindex, {"input": "bytea"})
    assert raw.map([b"\x00\x01", "\\x0001"]) == [vhash.xxh64(b"\x00\x01").to_bytes(8, "big")] * 2
    with pytest.raises(VindexError, match="not an integer"):
        ints.map(["abc"])


def test_xxhash_bad_param() -> None:
    with pytest.raises(ValueError, match=r'vindexes.v.params.input: "float" is not one of'):
        make(XxhashVindex, {"input": "float"})


def test_unknown_param_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vindexes.v.params.inptu: unknown parameter"):
        make(XxhashVindex, {"inptu": "int"})


# -- unicode ---------------------------------------------------------------------------------


def test_unicode() -> None:
    cs = make(UnicodeXxhashVindex)
    ci = make(UnicodeXxhashVindex, {"case_insensitive": True})
    loose = make(UnicodeLooseXxhashVindex)
    assert loose.case_insensitive and not cs.case_insensitive
    a, b = cs.map(["Café", "CAFÉ"])
    assert a != b
    assert ci.map(["Café", "CAFÉ", "cafe\u0301"]) == [ci.map(["café"])[0]] * 3
    assert loose.map(["ABC"]) == ci.map(["abc"])
    # NFKC: the ligature and the full-width letters are their plain spelling.
    assert cs.map(["\ufb01le", "\uff46\uff49\uff4c\uff45"]) == cs.map(["file", "file"])


def test_unicode_param_types() -> None:
    with pytest.raises(ValueError, match=r"case_insensitive: expected true or false, got \"yes\""):
        make(UnicodeXxhashVindex, {"case_insensitive": "yes"})
    assert make(UnicodeXxhashVindex, {"case_insensitive": "true"}).case_insensitive


# -- distribution ---------------------------------------------------------------------------


SEQUENTIAL = list(range(1, 20_001))
WORDS = [f"user{i}@example.com" for i in range(20_000)]


@pytest.mark.parametrize(
    ("vindex", "values"),
    [
        (HashVindex, SEQUENTIAL),
        (XxhashVindex, SEQUENTIAL),
        (UnicodeXxhashVindex, WORDS),
        (UnicodeLooseXxhashVindex, WORDS),
    ],
)
@pytest.mark.parametrize("shards", [["-80", "80-"], ["-40", "40-80", "80-c0", "c0-"]])
def test_spread_is_even(
    vindex: type[FunctionalVindex], values: list[Any], shards: list[str]
) -> None:
    counts = Counter(ShardMap(shards).shards_for_ids(make(vindex).map(values)))
    expected = len(values) / len(shards)
    # Within 3% of an even share (binomial sd is about 0.6% here).
    assert set(counts) == set(shards)
    for n in counts.values():
        assert abs(n - expected) < 0.03 * expected, counts


def test_spread_of_random_ids() -> None:
    rng = random.Random(5)
    values = [rng.getrandbits(63) for _ in range(20_000)]
    counts = Counter(ShardMap(["-80", "80-"]).shards_for_ids(make(HashVindex).map(values)))
    assert abs(counts["-80"] - 10_000) < 300


# -- multicol --------------------------------------------------------------------------------


def test_multicol_layout() -> None:
    v = make(MulticolVindex, {"column_count": 2, "column_vindex": "hash,unicode_xxhash",
                              "column_bytes": "3,5"})
    h = make(HashVindex).map([7])[0]
    u = make(UnicodeXxhashVindex).map(["x"])[0]
    assert v.map_rows([(7, "x"), (None, "x")]) == [h[:3] + u[:5], None]
    assert v.column_count == 2
    assert v.map_prefix([(7,)]) == [KeyRange(h[:3], (int.from_bytes(h[:3], "big") + 1)
                                             .to_bytes(3, "big"))]
    assert v.map_prefix([(7, "x"), (None,)]) == [h[:3] + u[:5], None]
    assert v.verify_rows([(7, "x")], [h[:3] + u[:5]]) == [True]


def test_multicol_defaults() -> None:
    v = make(MulticolVindex, {"column_count": 3})
    assert v.widths == [4, 2, 2]
    h = make(HashVindex).map([1, 2, 3])
    assert v.map_rows([(1, 2, 3)]) == [h[0][:4] + h[1][:2] + h[2][:2]]


def test_multicol_prefix_routes_to_one_shard_of_two() -> None:
    v = make(MulticolVindex, {"column_count": 2, "column_bytes": [1, 7]})
    sm = ShardMap(["-80", "80-"])
    for first in range(50):
        (kr,) = v.map_prefix([(first,)])
        rows = v.map_rows([(first, second) for second in range(20)])
        assert len(sm.shards_for(kr)) == 1
        assert set(sm.shards_for_ids(rows)) == set(sm.shards_for(kr))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "column_count: missing"),
        ({"column_count": 9}, r"column_count: 9 is out of range \(2..8\)"),
        ({"column_count": 2, "column_vindex": "hash"}, "names 1 vindexes for 2 columns"),
        ({"column_count": 2, "column_vindex": "hash,lookup"}, 'column 1: "lookup" is not one of'),
        ({"column_count": 2, "column_bytes": "4,5"}, "must add up to 8"),
        ({"column_count": 2, "column_bytes": "8,0"}, "at least 1 byte"),
        ({"column_count": 2, "column_bytes": "a,b"}, "expected a list of integers"),
    ],
)
def test_multicol_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(MulticolVindex, params)


# -- lookup ----------------------------------------------------------------------------------


K1, K2 = be(0x1000000000000000), be(0x9000000000000000)


def lookup_unique() -> LookupUniqueVindex:
    v: LookupUniqueVindex = make(
        LookupUniqueVindex, {"table": "email_idx", "from": "email", "to": "ksid"}
    )
    v.bind("main", "email_idx", None)
    return v


def test_lookup_sql() -> None:
    v = make(LookupVindex, {"table": "sku_idx", "from": ["sku", "line_id"], "to": "ksid"})
    v.bind("main", "sku_idx", None)
    assert v.column_count == 2
    assert v.sql_map == 'SELECT "ksid" FROM "sku_idx" WHERE "sku" = $1'
    assert v.sql_verify == 'SELECT 1 FROM "sku_idx" WHERE "sku" = $1 AND "ksid" = $2 LIMIT 1'
    assert v.insert_sql(2) == (
        'INSERT INTO "sku_idx" ("sku", "line_id", "ksid") VALUES ($1, $2, $3), ($4, $5, $6)'
    )
    assert v.insert_sql(1, ignore_conflicts=True).endswith(" ON CONFLICT DO NOTHING")
    assert v.sql_delete == (
        'DELETE FROM "sku_idx" WHERE "sku" = $1 AND "line_id" = $2 AND "ksid" = $3'
    )


async def test_lookup_unique_cycle() -> None:
    v = lookup_unique()
    cur = FakeVCursor({"main": ["0"]}, unique={"email_idx": "email"})
    await v.create(cur, [["a@x"], ["b@x"]], [K1, K2])
    assert len(cur.calls) == 1  # one multi-row INSERT
    assert cur.calls[0].params == ["a@x", K1, "b@x", K2]
    assert cur.calls[0].target is None
    assert await v.map(cur, ["a@x", "b@x", "c@x", None]) == [K1, K2, None, None]
    assert await v.verify(cur, ["a@x", "a@x", None], [K1, K2, K1]) == [True, False, False]
    with pytest.raises(UniqueViolation):
        await v.create(cur, [["a@x"]], [K2])
    await v.create(cur, [["a@x"]], [K2], ignore_conflicts=True)
    assert await v.map(cur, ["a@x"]) == [K1]
    await v.update(cur, ["a@x"], K1, ["z@x"])
    assert await v.map(cur, ["a@x", "z@x"]) == [None, K1]
    await v.delete(cur, [["z@x"]], K2)  # another row's id: nothing deleted
    assert await v.map(cur, ["z@x"]) == [K1]
    await v.delete(cur, [["z@x"]], K1)
    assert await v.map(cur, ["z@x"]) == [None]


async def test_lookup_unique_refuses_two_rows() -> None:
    v = lookup_unique()
    cur = FakeVCursor({"main": ["0"]})
    await v.create(cur, [["a@x"], ["a@x"]], [K1, K2])
    with pytest.raises(VindexError, match="has 2 rows in email_idx"):
        await v.map(cur, ["a@x"])


async def test_lookup_non_unique() -> None:
    v: LookupVindex = make(
        LookupVindex,
        {"table": "sku_idx", "from": "sku,line_id", "to": "ksid", "ignore_nulls": True},
    )
    v.bind("main", "sku_idx", None)
    cur = FakeVCursor({"main": ["0"]})
    await v.create(cur, [["s1", 1], ["s1", 2], ["s2", 3], [None, 4]], [K1, K2, K2, K1])
    assert len(cur.rows("main", "sku_idx")) == 3  # the NULL row was skipped
    assert await v.map(cur, ["s1", "s2", "s3"]) == [(K1, K2), (K2,), ()]
    await v.delete(cur, [["s1", 1], [None, 9]], K1)
    assert await v.map(cur, ["s1"]) == [(K2,)]
    with pytest.raises(VindexError, match="a row of 1 values"):
        await v.create(cur, [["s9"]], [K1])


async def test_lookup_on_a_sharded_table_targets_the_owning_shard() -> None:
    # The lookup table is sharded by its from column with a hash vindex: each statement goes
    # to the shard of the value's hash, never to every shard.
    v = lookup_unique()
    route = make(HashVindex)
    v.bind("idx", "email_idx", make(UnicodeXxhashVindex))
    cur = FakeVCursor({"idx": ["-80", "80-"]})
    values = [f"u{i}@x" for i in range(20)]
    await v.create(cur, [[e] for e in values], [K1] * 20)
    assert all(isinstance(c.target, bytes) for c in cur.calls)
    on = {s: len(cur.data.get(("idx", s, "email_idx"), [])) for s in ("-80", "80-")}
    assert on["-80"] and on["80-"] and sum(on.values()) == 20
    assert await v.map(cur, values) == [K1] * 20
    assert all(c.target is not None for c in cur.calls)
    del route


async def test_lookup_write_only_maps_everywhere() -> None:
    v: LookupUniqueVindex = make(
        LookupUniqueVindex, {"table": "t", "from": "a", "to": "k", "write_only": True}
    )
    cur = FakeVCursor({"": ["0"]})
    assert await v.map(cur, [1, 2]) == [KeyRange(), KeyRange()]
    assert await v.verify(cur, [1], [K1]) == [True]
    assert cur.calls == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "a", "to": "k"}, "vindexes.v.params.table: missing"),
        ({"table": "t", "to": "k"}, "vindexes.v.params.from: missing"),
        ({"table": "t", "from": "a"}, "vindexes.v.params.to: missing"),
        ({"table": "t", "from": "a,a", "to": "k"}, '"a" is named twice'),
        ({"table": "t", "from": "a", "to": "a"}, '"a" is also a \'from\' column'),
        ({"table": 5, "from": "a", "to": "k"}, "table: expected a string, got a number"),
        ({"table": "t", "from": [], "to": "k"}, "from: must name at least one"),
    ],
)
def test_lookup_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(LookupVindex, params)
