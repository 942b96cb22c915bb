"""Which statements the pooler answers as a deferred BEGIN (poolcore.plain_begin)."""

from __future__ import annotations

import pytest

from multigres._cy.poolcore import plain_begin

BEGIN, START = 1, 2


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        (b"BEGIN", BEGIN),
        (b"begin", BEGIN),
        (b"  Begin\n", BEGIN),
        (b"BEGIN;", BEGIN),
        (b"BEGIN ; ", BEGIN),
        (b"BEGIN WORK", BEGIN),
        (b"begin transaction;", BEGIN),
        (b"START TRANSACTION", START),
        (b"start\ttransaction ;", START),
    ],
)
def test_plain(sql: bytes, kind: int) -> None:
    assert plain_begin(sql) == kind


@pytest.mark.parametrize(
    "sql",
    [
        b"",
        b";",
        b"BEGINS",
        b"BEGIN_x",
        b"BEGIN1",
        b"BEGIN ISOLATION LEVEL SERIALIZABLE",
        b"BEGIN READ ONLY",
        b"BEGIN TRANSACTION READ WRITE",
        b"BEGIN WORK TRANSACTION",
        b"BEGIN; SELECT 1",
        b"BEGIN;;",
        b"BEGIN -- why",
        b"/* x */ BEGIN",
        b"START",
        b"START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        b"STARTTRANSACTION",
        b"COMMIT",
        b"SELECT 1",
    ],
)
def test_not_plain(sql: bytes) -> None:
    assert plain_begin(sql) == 0
