"""The hash functions (pyx/vhash.pyx, csrc/vhash.h): published test vectors, our own frozen
vectors, a second implementation in Python from the definitions in docs/vschema.md, and the
list functions' handling of every kind of value."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigres._cy import vhash

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


# -- reference implementations, written from the definitions ------------------------------


def ref_hash64(x: int) -> int:
    z = (x + GAMMA) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


P1, P2, P3, P4, P5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * P2) & M64, 31) * P1) & M64


def ref_xxh64(data: bytes, seed: int = 0) -> int:
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 8 * k : i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h ^= _round(0, int.from_bytes(data[i : i + 8], "little"))
        h = (_rotl(h, 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i : i + 4], "little") * P1) & M64
        h = (_rotl(h, 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M64
        h = (_rotl(h, 11) * P1) & M64
        i += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    return h ^ (h >> 32)


# -- hash64 ----------------------------------------------------------------------------------


def test_hash64_is_splitmix64_published_outputs() -> None:
    # SplitMix64 seeded with 0 gives 0xe220a8397b1dcdaf, then 0x6e789e6aa1b965f4: hash64(v)
    # is its first output with state v, so the second is hash64(GAMMA).
    assert vhash.hash64(0) == 0xE220A8397B1DCDAF
    assert vhash.hash64(GAMMA) == 0x6E789E6AA1B965F4
    # Vigna's reference splitmix64.c seeded with 1234567.
    outputs = [vhash.hash64((1234567 + k * GAMMA) & M64) for k in range(5)]
    assert outputs == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


# Frozen: these place rows. Changing one moves data between shards; never change them.
HASH_VECTORS = [
    (0, "e220a8397b1dcdaf"),
    (1, "910a2dec89025cc1"),
    (2, "975835de1c9756ce"),
    (42, "bdd732262feb6e95"),
    (-1, "e4d971771b652c20"),
    (-(1 << 63), "481ec0a212a9f3db"),
    (12345678901234567, "bad6664be58d2ada"),
]


@pytest.mark.parametrize(("value", "ksid"), HASH_VECTORS)
def test_hash_vectors(value: int, ksid: str) -> None:
    assert vhash.hash_ids([value]) == [bytes.fromhex(ksid)]
    assert ref_hash64(value & M64) == int(ksid, 16)


@given(st.integers(0, M64))
def test_hash64_matches_reference_and_inverts(x: int) -> None:
    h = vhash.hash64(x)
    assert h == ref_hash64(x)
    assert vhash.unhash64(h) == x


@given(st.lists(st.integers(-(1 << 63), (1 << 63) - 1), unique=True, max_size=200))
def test_hash_ids_never_collide(values: list[int]) -> None:
    ids = vhash.hash_ids(values)
    assert len(set(ids)) == len(values)


def test_hash64_argument_range() -> None:
    for bad in (-1, 1 << 64, True, "1"):
        with pytest.raises(ValueError, match="not an unsigned 64-bit integer"):
            vhash.hash64(bad)  # type: ignore[arg-type]


# -- integers as values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        ("42", 42),
        (b"42", 42),
        ("  -42\n", -42),
        ("+7", 7),
        ("-9223372036854775808", -(1 << 63)),
        ("9223372036854775807", (1 << 63) - 1),
        ("007", 7),
    ],
)
def test_integer_text_forms(value: object, expected: int) -> None:
    assert vhash.to_uint64(value) == expected & M64
    assert vhash.numeric_ids([value]) == [(expected & M64).to_bytes(8, "big")]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("9223372036854775808", OverflowError, "out of range"),
        ("-9223372036854775809", OverflowError, "out of range"),
        (1 << 63, OverflowError, "out of range"),
        ("", ValueError, "is not an integer"),
        ("-", ValueError, "is not an integer"),
        ("4 2", ValueError, "is not an integer"),
        ("1.5", ValueError, "is not an integer"),
        ("0x10", ValueError, "is not an integer"),
        (True, ValueError, "boolean"),
        (1.0, ValueError, "is not an integer"),
    ],
)
def test_integer_refused(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        vhash.hash_ids([value])


def test_none_is_none() -> None:
    assert vhash.hash_ids([None, 1, None])[0::2] == [None, None]
    assert vhash.numeric_ids([None]) == [None]
    assert vhash.xxhash_ids([None]) == [None]
    assert vhash.unicode_ids([None]) == [None]


# -- XXH64 ---------------------------------------------------------------------------------


def _sanity_buffer() -> bytes:
    # xxhsum's sanity buffer (xxHash's own self-test): bytes from squaring a 32-bit prime.
    out, gen = bytearray(), 2654435761
    for _ in range(101):
        out.append(gen >> 24)
        gen = (gen * gen) & 0xFFFFFFFF
    return bytes(out)


PRIME32 = 2654435761


@pytest.mark.parametrize(
    ("length", "seed", "expected"),
    [
        (0, 0, 0xEF46DB3751D8E999),
        (0, PRIME32, 0xAC75FDA2929B17EF),
        (1, 0, 0x4FCE394CC88952D8),
        (1, PRIME32, 0x739840CB819FA723),
        (14, 0, 0xCFFA8DB881BC3A3D),
        (14, PRIME32, 0x5B9611585EFCC9CB),
        (101, 0, 0x0EAB543384F878AD),
        (101, PRIME32, 0xCAA65939306F1E21),
    ],
)
def test_xxh64_sanity_vectors(length: int, seed: int, expected: int) -> None:
    data = _sanity_buffer()[:length]
    assert vhash.xxh64(data, seed) == expected
    assert ref_xxh64(data, seed) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"", 0xEF46DB3751D8E999),
        (b"a", 0xD24EC4F1A98C6E5B),
        (b"abc", 0x44BC2CF5AD770999),
        (b"asdf", 0x415872F599CEA71E),
        (b"Call me Ishmael.", 0x6D04390FC9D61A90),
        (b"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1),
        (b"Some years ago--never mind how long precisely-", 0x8F26F2B986AFDC52),
    ],
)
def test_xxh64_published_strings(text: bytes, expected: int) -> None:
    assert vhash.xxh64(text) == expected


@given(st.binary(max_size=300), st.integers(0, M64))
def test_xxh64_matches_reference(data: bytes, seed: int) -> None:
    assert vhash.xxh64(data, seed) == ref_xxh64(data, seed)


def test_xxhash_ids_modes() -> None:
    be = (42).to_bytes(8, "big")
    h_int = vhash.xxh64(be).to_bytes(8, "big")
    h_text = vhash.xxh64(b"42").to_bytes(8, "big")
    assert vhash.xxhash_ids([42, "42", b" 042 "], vhash.XX_INT) == [h_int] * 3
    assert vhash.xxhash_ids([42, "42", b"42"], vhash.XX_TEXT) == [h_text] * 3
    assert vhash.xxhash_ids([b"42", "42", "\\x3432"], vhash.XX_BYTES) == [h_text] * 3
    assert vhash.xxhash_ids([42, "42", b"42"], vhash.XX_AUTO) == [h_int, h_text, h_text]
    neg = vhash.xxhash_ids([-1], vhash.XX_INT)[0]
    assert neg == vhash.xxh64(b"\xff" * 8).to_bytes(8, "big")
    with pytest.raises(ValueError, match="hex"):
        vhash.xxhash_ids(["\\x4"], vhash.XX_BYTES)
    with pytest.raises(ValueError, match="mode"):
        vhash.xxhash_ids([1], 9)


# -- unicode ---------------------------------------------------------------------------------


def _ref_unicode(text: str, ci: bool) -> bytes:
    key = unicodedata.normalize("NFKC", text)
    if ci:
        key = unicodedata.normalize("NFKC", key.casefold())
    return ref_xxh64(key.encode()).to_bytes(8, "big")


@given(st.text(max_size=300), st.booleans())
def test_unicode_ids_match_definition(text: str, ci: bool) -> None:
    # The ASCII fast path in C and the unicodedata path give what the definition says.
    assert vhash.unicode_ids([text], ci) == [_ref_unicode(text, ci)]


def test_unicode_case_and_forms() -> None:
    full_width = "\uff53\uff54\uff52\uff41\uff53\uff53\uff45"  # strasse
    ci = vhash.unicode_ids(["Straße", "STRASSE", "strasse", full_width], True)
    assert len(set(ci)) == 1
    cs = vhash.unicode_ids(["Straße", "STRASSE", "strasse", full_width], False)
    assert cs[2] == cs[3] and len(set(cs)) == 3
    # bytes are UTF-8 text; a long ASCII key takes the heap path of the fast lower-casing.
    assert vhash.unicode_ids(["Éa".encode(), "X" * 1000], True) == vhash.unicode_ids(
        ["éA", "x" * 1000], True
    )
    with pytest.raises(ValueError, match="not UTF-8"):
        vhash.unicode_ids([b"\xff"])
    with pytest.raises(ValueError, match="not text"):
        vhash.unicode_ids([5])


# -- lists -------------------------------------------------------------------------------------


def test_join_prefixes() -> None:
    a: list[bytes | None] = [b"\x01\x02\x03\x04\x05\x06\x07\x08", None]
    b: list[bytes | None] = [b"\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8", b"\0" * 8]
    assert vhash.join_prefixes([a, b], [3, 5]) == [b"\x01\x02\x03\xa1\xa2\xa3\xa4\xa5", None]
    with pytest.raises(ValueError, match="add up to 7"):
        vhash.join_prefixes([a, b], [3, 4])
    with pytest.raises(ValueError, match="different lengths"):
        vhash.join_prefixes([a, b[:1]], [4, 4])


def test_locate() -> None:
    starts = [b"", b"\x40", b"\x80", b"\xc0"]
    ids = [b"\x00" * 8, b"\x3f" + b"\xff" * 7, b"\x40" + b"\0" * 7, b"\x80\x01", b"\xff" * 8, None]
    assert vhash.locate(starts, ids) == [0, 0, 1, 2, 3, -1]
    with pytest.raises(ValueError):
        vhash.locate([b"\x40"], [b"\x00"])


@given(st.lists(st.one_of(st.none(), st.binary(min_size=8, max_size=8)), max_size=100))
def test_locate_groups_agrees_with_locate(ids: list[bytes | None]) -> None:
    starts = [b"", b"\x40", b"\x80", b"\xc0"]
    where = vhash.locate(starts, ids)
    groups = vhash.locate_groups(starts, ids)
    assert groups == [[p for p, i in enumerate(where) if i == g] for g in range(4)]
