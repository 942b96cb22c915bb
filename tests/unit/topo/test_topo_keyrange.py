"""Key ranges: parsing, containment, intersection, coverage of a tablegroup's shards."""

from __future__ import annotations

import pytest

from multigres.topo.keyrange import (
    KeyRange,
    KeyRangeError,
    canonical_shard_name,
    check_coverage,
    coverage_problems,
    keyspace_id,
)


@pytest.mark.parametrize(
    ("spec", "start", "end", "text"),
    [
        ("-80", b"", b"\x80", "-80"),
        ("80-", b"\x80", b"", "80-"),
        ("40-80", b"\x40", b"\x80", "40-80"),
        ("0", b"", b"", "-"),
        ("-", b"", b"", "-"),
        ("8000-c000", b"\x80", b"\xc0", "80-c0"),  # trailing zeros do not move a bound
        ("00-80", b"", b"\x80", "-80"),
        ("A0-FF", b"\xa0", b"\xff", "a0-ff"),
        ("-0180", b"", b"\x01\x80", "-0180"),
    ],
)
def test_parse(spec: str, start: bytes, end: bytes, text: str) -> None:
    kr = KeyRange.parse(spec)
    assert (kr.start, kr.end, str(kr)) == (start, end, text)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("80", "START-END"),
        ("", "START-END"),
        ("-8", "odd"),
        ("zz-", "not hex"),
        ("80-40", "below end"),
        ("80-80", "below end"),
        ("-00", "above 0"),
        ("10-20-30", "START-END"),
    ],
)
def test_parse_errors(spec: str, why: str) -> None:
    with pytest.raises(KeyRangeError, match=why):
        KeyRange.parse(spec)


def test_contains() -> None:
    low, high, mid = KeyRange.parse("-80"), KeyRange.parse("80-"), KeyRange.parse("40-80")
    assert low.contains(keyspace_id(0))
    assert low.contains(keyspace_id(0x7FFF_FFFF_FFFF_FFFF))
    assert not low.contains(keyspace_id(0x8000_0000_0000_0000))  # end excluded
    assert high.contains(keyspace_id(0x8000_0000_0000_0000))  # start included
    assert high.contains(keyspace_id(2**64 - 1))
    assert mid.contains(keyspace_id(0x4000_0000_0000_0000))
    assert not mid.contains(keyspace_id(0x3FFF_FFFF_FFFF_FFFF))
    assert KeyRange.parse("0").contains(b"") and KeyRange.parse("0").contains(b"\xff" * 8)
    # Short ids compare as bytes, with the missing bytes as zeros.
    assert high.contains(b"\x80") and not low.contains(b"\x80")


def test_intersects() -> None:
    r = KeyRange.parse
    assert r("-80").intersects(r("40-c0"))
    assert not r("-80").intersects(r("80-"))
    assert r("0").intersects(r("40-50"))
    assert r("40-50").intersects(r("-"))
    assert not r("40-50").intersects(r("50-60"))
    assert r("80-").intersects(r("c0-"))


def test_canonical_shard_name() -> None:
    assert canonical_shard_name("0") == "0"
    assert canonical_shard_name("-80") == "-80"
    assert canonical_shard_name("-8000") == "-80"
    assert canonical_shard_name("80-C0") == "80-c0"


def ranges(*specs: str) -> list[KeyRange]:
    return [KeyRange.parse(s) for s in specs]


@pytest.mark.parametrize(
    "specs",
    [("0",), ("-80", "80-"), ("80-", "-40", "40-80"), ("-10", "10-20", "20-c0", "c0-")],
)
def test_full_coverage(specs: tuple[str, ...]) -> None:
    check_coverage(ranges(*specs))
    assert coverage_problems(ranges(*specs)) == []


@pytest.mark.parametrize(
    ("specs", "problem"),
    [
        ((), "no shards"),
        (("-40", "80-"), "gap: 40-80"),
        (("40-",), "gap: -40"),
        (("-80",), "gap: 80-"),
        (("-80", "40-"), "overlap: 40-"),
        (("-80", "-40", "80-"), "overlap: -40"),
        (("0", "80-"), "overlaps a shard that already reaches the end"),
    ],
)
def test_coverage_problems(specs: tuple[str, ...], problem: str) -> None:
    with pytest.raises(KeyRangeError, match=problem):
        check_coverage(ranges(*specs))
