"""bindvalues against Postgres 15: every literal decodes to the value and type Postgres
reads from it, and the texts Postgres refuses are refused."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from multigres.gateway.engine.bindvalues import OID_BIT, decode, numeric_text
from multigres.testing.postgres import PgHarness
from multigres.wire.errors import PgError

pytestmark = pytest.mark.integration

LITERALS = [
    "42", "042", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808",
    "1.5", "1.0", "1.5e3", "1E-2", ".5", "5.", "0.000", "1.5e-3", "123456789012345678901234.5",
    "NULL", "'abc'", "''", "'it''s'", "'a\\nb'", "'a'\n  'b'", "E'a\\nb'", "e'\\t\\b\\f\\r'",
    "E'\\''", "E'\\q'", "E'\\101\\x41\\x4'", "E'\\xc3\\xa9'", "E'\\u00e9\\U0001F600'",
    "E'\\uD83D\\uDE00'", "E'a'\n'\\n'", "U&'d\\0061t\\+000061'", "U&'\\\\'",
    "U&'d!0061t!+000061' UESCAPE '!'", "U&'\\D83D\\DE00'", "$$x'y$$", "$tag$a$$b$tag$",
    "N'ab'", "B'0101'", "X'1F'", "x'a'", "E'\\777'",
]
REFUSED = [
    "E'\\u12'", "E'\\uD83D'", "E'\\uDE00'", "E'\\u0000'", "E'\\000'", "E'\\xff'", "U&'\\12'",
    "U&'x' UESCAPE '+'", "B'012'", "X'1G'",
]


@pytest.fixture(scope="module")
def conn(pg_harness: PgHarness) -> Iterator[psycopg.Connection[Any]]:
    inst = pg_harness.primary()
    try:
        with inst.connect() as c:
            c.autocommit = True
            yield c
    finally:
        inst.stop()


def _pg_text(bv_value: object, oid: int) -> str | None:
    if bv_value is None:
        return None
    if isinstance(bv_value, Decimal):
        return numeric_text(bv_value)
    return str(bv_value)


@pytest.mark.parametrize("literal", LITERALS)
def test_same_value_and_type(conn: psycopg.Connection[Any], literal: str) -> None:
    sql = f"SELECT ({literal})::text, pg_typeof({literal})::oid::int"
    try:
        row = conn.execute(sql.encode()).fetchone()  # bytes: no client-side % handling
    except psycopg.Error as e:
        with pytest.raises(PgError) as mine:
            decode(literal)
        assert mine.value.sqlstate == e.sqlstate, (literal, e)
        return
    assert row is not None
    bv = decode(literal)
    expected_oid = 705 if row[1] == 705 else row[1]  # 705: unknown
    assert (bv.type_oid or 705) == expected_oid, literal
    text = _pg_text(bv.value, bv.type_oid)
    if bv.type_oid == OID_BIT:
        assert text == row[0]
    else:
        assert text == row[0], literal


@pytest.mark.parametrize("literal", REFUSED)
def test_same_refusals(conn: psycopg.Connection[Any], literal: str) -> None:
    with pytest.raises(psycopg.Error) as pg:
        conn.execute(f"SELECT ({literal})::text".encode())
    with pytest.raises(PgError) as mine:
        decode(literal)
    assert mine.value.sqlstate == pg.value.sqlstate, (literal, pg.value)
