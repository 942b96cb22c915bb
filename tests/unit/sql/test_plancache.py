"""multigres.sql.plancache: a bounded CLOCK cache of plans keyed by normalized text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres.sql.normalize import normalize
from multigres.sql.plancache import PlanCache


def test_hits_misses_and_counters() -> None:
    cache: PlanCache[str] = PlanCache(max_entries=10)
    key = normalize(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1").text
    assert cache.get(key) is None
    cache.put(key, "plan")
    # Another literal, the same key: a hit.
    other = normalize(b"SELECT abalance FROM pgbench_accounts WHERE aid = 2").text
    assert other == key and other is not key
    assert cache.get(other) == "plan"
    assert (cache.hits, cache.misses, cache.evictions, cache.size) == (1, 1, 0, 1)
    assert cache.bytes == len(key)
    assert cache.stats() == {"hits": 1, "misses": 1, "evictions": 0, "size": 1,
                             "bytes": len(key), "max_entries": 10, "max_bytes": 0}


def test_extra_key_component() -> None:
    cache: PlanCache[str] = PlanCache()
    cache.put(b"SELECT 1", "public", extra="public")
    cache.put(b"SELECT 1", "app", extra="app,public")
    assert cache.get(b"SELECT 1") is None
    assert cache.get(b"SELECT 1", "public") == "public"
    assert cache.get(b"SELECT 1", "app,public") == "app"
    assert ("public", b"SELECT 1") in cache and b"SELECT 1" not in cache
    cache.discard(b"SELECT 1", "public")
    assert cache.get(b"SELECT 1", "public") is None
    assert len(cache) == 1


def test_bounded_by_entries_evicts_unused_first() -> None:
    cache: PlanCache[int] = PlanCache(max_entries=3)
    for i in range(3):
        cache.put(b"q%d" % i, i)
    cache.get(b"q0")            # q0 gets a second chance, q1 does not
    cache.put(b"q3", 3)
    assert b"q1" not in cache
    assert {k for k in (b"q0", b"q2", b"q3") if k in cache} == {b"q0", b"q2", b"q3"}
    assert cache.evictions == 1 and cache.size == 3
    cache.put(b"q4", 4)         # q0 went to the back of the ring: q2 is the oldest now
    assert b"q2" not in cache and b"q0" in cache
    assert cache.size == 3 and cache.evictions == 2


def test_replacing_a_plan_keeps_one_entry() -> None:
    cache: PlanCache[str] = PlanCache(max_entries=2, max_bytes=100)
    cache.put(b"abc", "one", cost=10)
    cache.put(b"abc", "two", cost=20)
    assert cache.get(b"abc") == "two"
    assert (cache.size, cache.bytes) == (1, 23)


def test_bounded_by_bytes() -> None:
    cache: PlanCache[int] = PlanCache(max_entries=100, max_bytes=50)
    for i in range(10):
        cache.put(b"k%d" % i, i, cost=8)     # 10 bytes each
    assert cache.size == 5 and cache.bytes == 50
    assert cache.evictions == 5
    cache.put(b"huge", 0, cost=100)          # over the bound alone: not stored
    assert b"huge" not in cache and cache.size == 5


def test_clear_and_resize() -> None:
    cache: PlanCache[int] = PlanCache(max_entries=10)
    for i in range(10):
        cache.put(b"k%d" % i, i)
    cache.resize(4)
    assert cache.size == 4 and cache.evictions == 6
    cache.clear()
    assert (cache.size, cache.bytes) == (0, 0)
    assert cache.get(b"k9") is None
    with pytest.raises(ValueError):
        PlanCache(max_entries=0)
    with pytest.raises(ValueError):
        PlanCache(max_bytes=-1)


def test_discarded_entries_do_not_pile_up_in_the_ring() -> None:
    cache: PlanCache[int] = PlanCache(max_entries=10)
    for i in range(10_000):
        cache.put(b"k%d" % i, i)
        cache.discard(b"k%d" % i)
    assert cache.size == 0
    assert len(cache._ring) < 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["get", "put", "discard"]),
                          st.integers(min_value=0, max_value=12),
                          st.integers(min_value=0, max_value=20)), max_size=200))
def test_model(ops: list[tuple[str, int, int]]) -> None:
    # The cache never holds more than its bounds, never returns a wrong plan, and its
    # counters add up.
    cache: PlanCache[int] = PlanCache(max_entries=5, max_bytes=60)
    model: dict[bytes, int] = {}
    gets = 0
    for op, k, cost in ops:
        key = b"key%d" % k
        if op == "put":
            cache.put(key, k * 100 + cost, cost=cost)
            model[key] = k * 100 + cost
        elif op == "discard":
            cache.discard(key)
            model.pop(key, None)
        else:
            gets += 1
            got = cache.get(key)
            assert got is None or got == model[key]
        assert cache.size <= 5 and cache.bytes <= 60
        assert cache.bytes == sum(len(k) + v % 100 for k, v in model.items() if k in cache)
    assert cache.hits + cache.misses == gets
