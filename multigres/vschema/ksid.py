"""Keyspace ids: the 8-byte values vindexes map rows to, and the ranges of them.

The ordering of keyspace ids is the bytes ordering (``KeyRange`` in
:mod:`multigres.topo.keyrange`); the numeric vindexes give the big-endian bytes of a uint64,
so the bytes order is the numbers' order.
"""

from __future__ import annotations

from multigres.topo.keyrange import KeyRange, keyspace_id

KSID_LEN = 8

__all__ = ["KSID_LEN", "keyspace_id", "prefix_range", "uint64_of"]


def uint64_of(ksid: bytes) -> int:
    """The uint64 whose big-endian bytes ``ksid`` is (shorter ids are padded with zeros)."""
    if len(ksid) > KSID_LEN:
        raise ValueError(f"keyspace id {ksid.hex()} is longer than {KSID_LEN} bytes")
    return int.from_bytes(ksid.ljust(KSID_LEN, b"\0"), "big")


def prefix_range(prefix: bytes) -> KeyRange:
    """Every keyspace id that starts with ``prefix``: [prefix, the next prefix)."""
    if not prefix:
        return KeyRange()
    # The next prefix of the same length: add one, carrying; all 0xff has none (open end).
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return KeyRange(prefix, b"")
    end = stripped[:-1] + bytes([stripped[-1] + 1])
    return KeyRange(prefix, end)
