"""Routing keyspace ids and key ranges to shards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres.topo.keyrange import KeyRange, KeyRangeError
from multigres.vschema.ksid import prefix_range, uint64_of
from multigres.vschema.shardmap import ShardMap

FOUR = ["80-c0", "-40", "c0-", "40-80"]  # any order


def test_shard_for() -> None:
    sm = ShardMap(FOUR)
    assert sm.names == ["-40", "40-80", "80-c0", "c0-"]
    assert sm.shard_for(b"\x00" * 8) == "-40"
    assert sm.shard_for(b"\x3f" + b"\xff" * 7) == "-40"
    assert sm.shard_for(b"\x40" + b"\x00" * 7) == "40-80"
    assert sm.shard_for(b"\xff" * 8) == "c0-"
    assert ShardMap(["0"]).shard_for(b"\x12" * 8) == "0"


@given(st.binary(min_size=8, max_size=8))
def test_shard_for_agrees_with_contains(ksid: bytes) -> None:
    sm = ShardMap(["-20", "20-2080", "2080-80", "80-"])
    owner = sm.shard_for(ksid)
    assert [n for n, r in zip(sm.names, sm.ranges, strict=True) if r.contains(ksid)] == [owner]


def test_group_and_ids() -> None:
    sm = ShardMap(["-80", "80-"])
    ids = [b"\x10" * 8, None, b"\x90" * 8, b"\x20" * 8]
    assert sm.shards_for_ids(ids) == ["-80", None, "80-", "-80"]
    assert sm.group(ids) == {"-80": [0, 3], "80-": [2]}


def test_ranges_and_destinations() -> None:
    sm = ShardMap(FOUR)
    assert sm.shards_for_range(KeyRange.parse("30-90")) == ["-40", "40-80", "80-c0"]
    assert sm.shards_for_range(KeyRange()) == sm.names
    assert sm.shards_for(None) == []
    assert sm.shards_for(b"\x50" * 8) == ["40-80"]
    assert sm.shards_for((b"\xd0" * 8, b"\x01" * 8, b"\xd1" * 8)) == ["-40", "c0-"]
    assert sm.shards_for(()) == []
    assert sm.shards_for(prefix_range(b"\x41")) == ["40-80"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["-80"], "gap: 80- is not covered"),
        (["-80", "40-"], "overlap"),
        ([], "no shards"),
    ],
)
def test_shards_must_cover(names: list[str], message: str) -> None:
    with pytest.raises(KeyRangeError, match=message):
        ShardMap(names)


def test_prefix_range() -> None:
    assert prefix_range(b"\x12\x34") == KeyRange(b"\x12\x34", b"\x12\x35")
    assert prefix_range(b"\x12\xff") == KeyRange(b"\x12\xff", b"\x13")
    assert prefix_range(b"\xff\xff") == KeyRange(b"\xff\xff", b"")
    assert prefix_range(b"") == KeyRange()
    assert uint64_of(b"\x80") == 1 << 63
