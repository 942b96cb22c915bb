"""Key ranges, Vitess style: the part of the keyspace-id space a shard owns.

A keyspace id is a byte string (8 bytes from the vindexes), ordered as bytes. A range is
written ``START-END`` in hex, either side empty for "from the lowest" / "to the highest":
``-80`` (the lower half), ``80-`` (the upper half), ``40-80``; ``-`` or ``0`` (the shard name
of an unsharded tablegroup) is the whole space. START is included, END excluded.

Trailing zero bytes do not change a bound (``80`` and ``8000`` are the same point), so
bounds are kept without them and ``str()`` gives the canonical spelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class KeyRangeError(ValueError):
    """A malformed key range, or shards that do not cover the space exactly."""


def _parse_bound(text: str, spec: str) -> bytes:
    if len(text) % 2:
        raise KeyRangeError(f"key range {spec!r}: {text!r} has an odd number of hex digits")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyRangeError(f"key range {spec!r}: {text!r} is not hex") from None
    return raw.rstrip(b"\0")


@dataclass(frozen=True, slots=True)
class KeyRange:
    """``start`` included, ``end`` excluded; ``b""`` means unbounded on that side."""

    start: bytes = b""
    end: bytes = b""

    def __post_init__(self) -> None:
        if self.start.endswith(b"\0") or self.end.endswith(b"\0"):
            # Keep one spelling per point so that equality and ordering are plain bytes ones.
            object.__setattr__(self, "start", self.start.rstrip(b"\0"))
            object.__setattr__(self, "end", self.end.rstrip(b"\0"))
        if self.end and self.start >= self.end:
            raise KeyRangeError(f"key range {self}: start must be below end")

    @classmethod
    def parse(cls, spec: str) -> KeyRange:
        """Parse ``-80``, ``80-``, ``40-80``, ``-`` or ``0`` (whole range)."""
        if spec in ("0", "-"):
            return cls()
        start, sep, end = spec.partition("-")
        if not sep or "-" in end:
            raise KeyRangeError(
                f"key range {spec!r} must be START-END in hex (e.g. -80, 80-, 40-80) or 0"
            )
        lo, hi = _parse_bound(start, spec), _parse_bound(end, spec)
        if end and not hi:
            raise KeyRangeError(f"key range {spec!r}: end must be above 0")
        return cls(lo, hi)

    @property
    def is_full(self) -> bool:
        return not self.start and not self.end

    def contains(self, keyspace_id: bytes) -> bool:
        return keyspace_id >= self.start and (not self.end or keyspace_id < self.end)

    def intersects(self, other: KeyRange) -> bool:
        starts_before_other_ends = not other.end or self.start < other.end
        ends_after_other_starts = not self.end or other.start < self.end
        return starts_before_other_ends and ends_after_other_starts

    def __str__(self) -> str:
        return f"{self.start.hex()}-{self.end.hex()}"


def keyspace_id(value: int) -> bytes:
    """The 8-byte keyspace id of a 64-bit unsigned value (what numeric/hash vindexes give)."""
    return value.to_bytes(8, "big")


def canonical_shard_name(name: str) -> str:
    """The shard name as it must be written: ``0`` stays ``0``, others as ``str(KeyRange)``."""
    if name == "0":
        return name
    return str(KeyRange.parse(name))


def coverage_problems(ranges: Iterable[KeyRange]) -> list[str]:
    """Why ``ranges`` do not cover the whole space exactly once ([] when they do).

    Used to check a tablegroup's serving shards: each keyspace id must map to one shard.
    """
    problems: list[str] = []
    ordered = sorted(ranges, key=lambda r: r.start)
    if not ordered:
        return ["no shards: nothing covers the key range"]
    pos = b""  # everything below pos is covered
    reached_end = False
    for r in ordered:
        if reached_end:
            problems.append(f"{r} overlaps a shard that already reaches the end")
            continue
        if r.start > pos:
            problems.append(f"gap: {KeyRange(pos, r.start)} is not covered")
        elif r.start < pos:
            problems.append(
                f"overlap: {r} starts at {r.start.hex() or 'the beginning'}, "
                f"below {pos.hex()} where the previous shard ends"
            )
        if not r.end:
            reached_end = True
        elif r.end > pos:
            pos = r.end
    if not reached_end:
        problems.append(f"gap: {KeyRange(pos, b'')} is not covered")
    return problems


def check_coverage(ranges: Iterable[KeyRange]) -> None:
    """Raise KeyRangeError unless ``ranges`` cover the whole space without gap or overlap."""
    problems = coverage_problems(ranges)
    if problems:
        raise KeyRangeError("; ".join(problems))
