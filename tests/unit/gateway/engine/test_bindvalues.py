"""Bind texts decode to the constants Postgres reads from them (scan.l, make_const)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from multigres.gateway.engine.bindvalues import (
    OID_BIT,
    OID_BPCHAR,
    OID_INT4,
    OID_INT8,
    OID_NUMERIC,
    OID_UNKNOWN,
    BindValue,
    decode,
    negate,
    numeric_text,
    vindex_input,
)
from multigres.wire.errors import PgError


@pytest.mark.parametrize(
    ("text", "value", "oid"),
    [
        ("42", 42, OID_INT4),
        (" 42 ", 42, OID_INT4),
        ("042", 42, OID_INT4),
        ("-5", -5, OID_INT4),
        ("+5", 5, OID_INT4),
        ("2147483647", 2147483647, OID_INT4),
        ("2147483648", 2147483648, OID_INT8),
        ("-2147483648", -2147483648, OID_INT4),
        ("-2147483649", -2147483649, OID_INT8),
        ("9223372036854775807", 9223372036854775807, OID_INT8),
        ("-9223372036854775808", -9223372036854775808, OID_INT8),
        ("9223372036854775808", Decimal("9223372036854775808"), OID_NUMERIC),
        ("1.5", Decimal("1.5"), OID_NUMERIC),
        ("1.0", Decimal("1.0"), OID_NUMERIC),
        ("1.5e3", Decimal("1500"), OID_NUMERIC),
        ("1E-2", Decimal("0.01"), OID_NUMERIC),
        (".5", Decimal("0.5"), OID_NUMERIC),
        ("5.", Decimal("5"), OID_NUMERIC),
        ("NULL", None, OID_UNKNOWN),
        ("null", None, OID_UNKNOWN),
        ("'abc'", "abc", OID_UNKNOWN),
        ("''", "", OID_UNKNOWN),
        ("'it''s'", "it's", OID_UNKNOWN),
        ("'a\\nb'", "a\\nb", OID_UNKNOWN),  # standard strings keep backslashes
        ("'a'\n  'b'", "ab", OID_UNKNOWN),
        ("E'a\\nb'", "a\nb", OID_UNKNOWN),
        ("e'\\t\\b\\f\\r'", "\t\b\f\r", OID_UNKNOWN),
        ("E'\\''", "'", OID_UNKNOWN),
        ("E'\\q'", "q", OID_UNKNOWN),
        ("E'\\101\\x41\\x4'", "AA\x04", OID_UNKNOWN),
        ("E'\\xc3\\xa9'", "é", OID_UNKNOWN),
        ("E'\\u00e9\\U0001F600'", "é\U0001F600", OID_UNKNOWN),
        ("E'\\uD83D\\uDE00'", "\U0001F600", OID_UNKNOWN),
        ("E'a'\n'\\n'", "a\n", OID_UNKNOWN),
        ("U&'d\\0061t\\+000061'", "data", OID_UNKNOWN),
        ("U&'\\\\'", "\\", OID_UNKNOWN),
        ("U&'d!0061t!+000061' UESCAPE '!'", "data", OID_UNKNOWN),
        ("U&'\\D83D\\DE00'", "\U0001F600", OID_UNKNOWN),
        ("$$x'y$$", "x'y", OID_UNKNOWN),
        ("$tag$a$$b$tag$", "a$$b", OID_UNKNOWN),
        ("N'ab'", "ab", OID_BPCHAR),
        ("B'0101'", "0101", OID_BIT),
        ("X'1F'", "00011111", OID_BIT),
        ("x'a'", "1010", OID_BIT),
    ],
)
def test_decode(text: str, value: object, oid: int) -> None:
    assert decode(text) == BindValue(value, oid)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "sqlstate", "message"),
    [
        ("E'\\u12'", "22025", "invalid Unicode escape"),
        ("E'\\uD83D'", "42601", "invalid Unicode surrogate pair"),
        ("E'\\uDE00'", "42601", "invalid Unicode surrogate pair"),
        ("E'\\u0000'", "42601", "invalid Unicode escape value"),
        ("E'\\000'", "22021", 'invalid byte sequence for encoding "UTF8": 0x00'),
        ("E'\\xff'", "22021", 'invalid byte sequence for encoding "UTF8": 0xff'),
        ("U&'\\12'", "42601", "invalid Unicode escape"),
        ("U&'x' UESCAPE '+'", "42601", "invalid Unicode escape character"),
        ("B'012'", "22P02", '"2" is not a valid binary digit'),
        ("X'1G'", "22P02", '"G" is not a valid hexadecimal digit'),
        ("'abc", "42601", "unterminated quoted string"),
        ("$$abc", "42601", "unterminated dollar-quoted string"),
        ("'a' 'b'", "42601", "not a constant"),  # continuation needs a newline
        ("abc", "42601", "not a constant"),
        ("1e", "42601", "not a constant"),
        (".", "42601", "not a constant"),
        ("--1", "42601", "not a constant"),
        ("", "42601", "not a constant"),
        ("0x10", "42601", "not a constant"),  # Postgres 16 syntax; the shards run 15
    ],
)
def test_decode_errors(text: str, sqlstate: str, message: str) -> None:
    with pytest.raises(PgError) as e:
        decode(text)
    assert e.value.sqlstate == sqlstate
    assert e.value.message.startswith(message)


def test_standard_conforming_strings_off() -> None:
    assert decode("'a\\nb'", standard_conforming_strings=False).value == "a\nb"
    assert decode("'\\''", standard_conforming_strings=False).value == "'"
    with pytest.raises(PgError) as e:
        decode("U&'x'", standard_conforming_strings=False)
    assert e.value.sqlstate == "0A000"


def test_negate_folds_and_retypes() -> None:
    assert negate(decode("2147483648")) == BindValue(-2147483648, OID_INT4)
    assert negate(decode("9223372036854775808")) == BindValue(-(1 << 63), OID_INT8)
    assert negate(decode("1.5")) == BindValue(Decimal("-1.5"), OID_NUMERIC)
    assert negate(decode("NULL")).is_null
    with pytest.raises(PgError) as e:
        negate(decode("'5'"))
    assert e.value.sqlstate == "0A000"


def test_vindex_input() -> None:
    assert vindex_input(decode("42")) == 42
    assert vindex_input(decode("'42'")) == "42"
    assert vindex_input(decode("1.50")) == "1.50"
    assert vindex_input(decode("NULL")) is None
    assert numeric_text(Decimal("1.5e3")) == "1500"
    assert numeric_text(Decimal("1.5e-3")) == "0.0015"
    assert numeric_text(Decimal("-0.0")) == "0.0"
