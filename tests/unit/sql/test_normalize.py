"""multigres.sql.normalize: the plan cache's key, the literals and the statement's class."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multigres.sql.normalize import (
    OID_BIT,
    OID_INT4,
    OID_INT8,
    OID_NUMERIC,
    OID_UNKNOWN,
    LiteralKind,
    StatementKind,
    TxVerb,
    kinds,
    normalize,
)

K = StatementKind
V = TxVerb


def norm(sql: str | bytes) -> tuple[str, list[bytes]]:
    n = normalize(sql.encode() if isinstance(sql, str) else sql)
    return n.text.decode(errors="surrogateescape"), n.values


# -- the lexical grammar ------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "text", "values"), [
    # pgbench's SELECT: the benchmark.
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
     "SELECT abalance FROM pgbench_accounts WHERE aid = $1", [b"12345"]),
    # Strings: '' doubling, E'' escapes, dollar quoting.
    ("SELECT * FROM t WHERE a = 'it''s'", "SELECT * FROM t WHERE a = $1", [b"it's"]),
    ("SELECT * FROM t WHERE a = ''", "SELECT * FROM t WHERE a = $1", [b""]),
    (r"SELECT * FROM t WHERE a = E'a\nb\t\\c\'d''e\x41\101\q'",
     "SELECT * FROM t WHERE a = $1", [b"a\nb\t\\c'd'eAAq"]),
    (r"SELECT e'\b\f\r'", "SELECT $1", [b"\b\f\r"]),
    ("SELECT $$it's $1 -- not a comment$$", "SELECT $1", [b"it's $1 -- not a comment"]),
    ("SELECT $fn$ body with $$ inside $fn$", "SELECT $1", [b" body with $$ inside "]),
    ("SELECT $a$x$ab$y$a$", "SELECT $1", [b"x$ab$y"]),
    # Backslashes are plain characters in '...' (standard_conforming_strings).
    (r"SELECT 'a\'", "SELECT $1", [b"a\\"]),
    # Bit strings.
    ("SELECT B'1010', x'1F', b''", "SELECT $1, $2, $3", [b"1010", b"x1F", b""]),
    ("SELECT B'102'", "SELECT B'102'", []),
    # Numbers: a sign is not part of them.
    ("SELECT 1, 2.5, .5, 5., 1e10, 1.5E-3, 2e+2, 007",
     "SELECT $1, $2, $3, $4, $5, $6, $7, $8",
     [b"1", b"2.5", b".5", b"5.", b"1e10", b"1.5E-3", b"2e+2", b"007"]),
    ("SELECT -1, - 2, +3, 4-5", "SELECT -$1, - $2, +$3, $4-$5", [b"1", b"2", b"3", b"4", b"5"]),
    ("SELECT 5 !=-1", "SELECT $1 !=-$2", [b"5", b"1"]),
    # Postgres 16 number syntax, and trailing junk: kept as written.
    ("SELECT 0x1F, 0o17, 0b101, 1_000", "SELECT 0x1F, 0o17, 0b101, 1_000", []),
    ("SELECT 123abc", "SELECT 123abc", []),
    ("SELECT 1e", "SELECT 1e", []),
    # Keywords, not literals.
    ("SELECT NULL, TRUE, false", "SELECT NULL, TRUE, false", []),
    # Quoted identifiers are never literals.
    ('SELECT "a""b", "x\'y" FROM "T" WHERE "c" = \'v\'',
     'SELECT "a""b", "x\'y" FROM "T" WHERE "c" = $1', [b"v"]),
    # Whitespace runs collapse; case is kept.
    ("  select\t*\n\n FROM  t\r\nWHERE a=1  ", "select * FROM t WHERE a=$1", [b"1"]),
    # A placeholder never touches an identifier character: 'a'b is 'a' AS b.
    ("SELECT 'a'b", "SELECT $1 b", [b"a"]),
    ("SELECT 1::text", "SELECT $1::text", [b"1"]),
    # Comments go (each acts as a space), nested ones too.
    ("SELECT 1 -- one\n + /* two /* nested */ still */ 2 --", "SELECT $1 + $2", [b"1", b"2"]),
    ("SELECT a+/**/-b", "SELECT a+ -b", []),
    ("SELECT 1--2", "SELECT $1", [b"1"]),
    ("SELECT a/*+ not a hint */FROM t", "SELECT a/*+ not a hint */ FROM t", []),
    # Planner hints stay.
    ("/*+ SeqScan(t) */ SELECT * FROM t WHERE id = 3",
     "/*+ SeqScan(t) */ SELECT * FROM t WHERE id = $1", [b"3"]),
    ("SELECT /* multigres: shard=-80 */ * FROM t", "SELECT /* multigres: shard=-80 */ * FROM t",
     []),
    # Unicode escapes depend on UESCAPE: kept, and so is UESCAPE's string.
    ("SELECT U&'d\\0061t', U&'d!0061t' UESCAPE '!', u&\"d!0061\" UESCAPE '!' FROM t",
     "SELECT U&'d\\0061t', U&'d!0061t' UESCAPE '!', u&\"d!0061\" UESCAPE '!' FROM t", []),
    # N'...' is NCHAR '...'.
    ("SELECT N'x'", "SELECT N'x'", []),
    # E'' escapes whose byte depends on the encoding (or is refused): kept.
    (r"SELECT E'\u00e9', E'\U0001F600', E'\0', E'\x00', E'\xe9', E'\351'",
     r"SELECT E'\u00e9', E'\U0001F600', E'\0', E'\x00', E'\xe9', E'\351'", []),
    # A string continued over a newline is one literal: kept whole, newline included.
    ("SELECT 'a'\n  'b', 'c' -- x\n'd'", "SELECT 'a'\n  'b', 'c' -- x\n'd'", []),
    # Without a newline it is not a continuation (and not valid SQL): nothing joined.
    ("SELECT 'a' /* c */\n'b'", "SELECT $1 'b'", [b"a"]),
    # Non-UTF-8 bytes are identifier characters, and string contents pass through.
    (b"SELECT \xe9t\xe9 FROM t WHERE a = '\xff\xfe'", "SELECT \udce9t\udce9 FROM t WHERE a = $1",
     [b"\xff\xfe"]),
    # Typed literals: the string becomes the parameter, the type a cast.
    ("SELECT date '2024-01-01', now() - interval '5 minutes'",
     "SELECT $1::date, now() - $2::interval", [b"2024-01-01", b"5 minutes"]),
    ("SELECT interval '1', interval '2 days' * 2", "SELECT $1::interval, $2::interval * $3",
     [b"1", b"2 days", b"2"]),
    ("SELECT INT '1', Float E'1.5', jsonb $j${}$j$",
     "SELECT $1::INT, $2::Float, $3::jsonb", [b"1", b"1.5", b"{}"]),
    ("SELECT '1 day'::interval, 'x'::text", "SELECT $1::interval, $2::text", [b"1 day", b"x"]),
    # ... but not where the two spellings differ or the type name has several words.
    ("SELECT char 'abc', bit '101', timestamp with time zone '2024-01-01', pg_catalog.date 'x'",
     "SELECT char 'abc', bit '101', timestamp with time zone '2024-01-01', pg_catalog.date 'x'",
     []),
    ("SELECT interval(3) '1 day', numeric(10, 2) '1.5'",
     "SELECT interval(3) '1 day', numeric(10, 2) '1.5'", []),
])
def test_lexical(sql: str | bytes, text: str, values: list[bytes]) -> None:
    assert norm(sql) == (text, values)


def test_standard_conforming_strings_off() -> None:
    # Without it, '...' takes backslash escapes, as E'...' does: \' does not end the string.
    n = normalize(rb"SELECT 'a\'b' -- c", standard_conforming_strings=False)
    assert (n.text, n.values) == (b"SELECT $1", [b"a'b"])
    n = normalize(rb"SELECT 'a\\b'", standard_conforming_strings=False)
    assert n.values == [b"a\\b"]
    assert normalize(rb"SELECT 'a\\b'").values == [b"a\\\\b"]
    with pytest.raises(ValueError, match="unterminated"):
        normalize(rb"SELECT 'a\'b' -- c")


@pytest.mark.parametrize("sql", [
    "SELECT 'abc",
    "SELECT E'abc\\",
    "SELECT E'abc\\'",
    'SELECT "abc',
    "SELECT $$abc",
    "SELECT $a$abc$b$",
    "SELECT /* abc",
    "SELECT /* a /* b */",
    "SELECT B'10",
    "SELECT 'a'\n'b",
])
def test_unterminated(sql: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        normalize(sql.encode())


@pytest.mark.parametrize(("sql", "text"), [
    ("SELECT $", "SELECT $"),          # a stray $ (a syntax error for Postgres)
    ("SELECT $a", "SELECT $a"),
    ("SELECT a$b$c, a$$", "SELECT a$b$c, a$$"),   # identifiers may hold $
    ("SELECT 1 \\ 2", "SELECT $1 \\ 2"),   # after a stray character: kept
])
def test_odd_characters(sql: str, text: str) -> None:
    assert norm(sql)[0] == text


# -- where a literal must stay ------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "text"), [
    # Column positions.
    ("SELECT a, b FROM t ORDER BY 1, 2 DESC", "SELECT a, b FROM t ORDER BY 1, 2 DESC"),
    ("SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2",
     "SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2"),
    ("SELECT a FROM t ORDER BY a, 1 LIMIT 5 OFFSET 10",
     "SELECT a FROM t ORDER BY a, 1 LIMIT $1 OFFSET $2"),
    ("SELECT a FROM t GROUP BY a, 1 HAVING count(*) > 1",
     "SELECT a FROM t GROUP BY a, 1 HAVING count(*) > 1"),
    ("SELECT a FROM t ORDER BY a FOR UPDATE", "SELECT a FROM t ORDER BY a FOR UPDATE"),
    ("SELECT (SELECT a FROM u ORDER BY 1 LIMIT 1) FROM t WHERE b = 2",
     "SELECT (SELECT a FROM u ORDER BY 1 LIMIT $1) FROM t WHERE b = $2"),
    ("(SELECT 1 FROM t ORDER BY 1) UNION SELECT 2",
     "(SELECT $1 FROM t ORDER BY 1) UNION SELECT $2"),
    ("SELECT a FROM t ORDER BY rows, 1", "SELECT a FROM t ORDER BY rows, 1"),
    ("SELECT DISTINCT ON (1) a FROM t", "SELECT DISTINCT ON (1) a FROM t"),
    ("SELECT a FROM t GROUP BY ROLLUP (a, 1), CUBE (2)",
     "SELECT a FROM t GROUP BY ROLLUP (a, 1), CUBE (2)"),
    ("SELECT string_agg(a, ',' ORDER BY 1) FROM t",
     "SELECT string_agg(a, $1 ORDER BY 1) FROM t"),
    # Type modifiers and precisions are constants.
    ("SELECT x::varchar(10), CAST(y AS numeric(10, 2)), z::bit varying(5) FROM t",
     "SELECT x::varchar(10), CAST(y AS numeric(10, 2)), z::bit varying(5) FROM t"),
    ("SELECT x::mytype(3), y::public.geo(point, 4326), z::int[3], w::text[] FROM t",
     "SELECT x::mytype(3), y::public.geo(point, 4326), z::int[3], w::text[] FROM t"),
    ("SELECT CAST(x AS character varying(20)), x::double precision FROM t",
     "SELECT CAST(x AS character varying(20)), x::double precision FROM t"),
    ("SELECT current_timestamp(3), localtimestamp(2), x::timestamp(3) with time zone",
     "SELECT current_timestamp(3), localtimestamp(2), x::timestamp(3) with time zone"),
    ("SELECT * FROM f() AS t(a numeric(5), b mytype(7))",
     "SELECT * FROM f() AS t(a numeric(5), b mytype(7))"),
    # Places where the grammar wants a constant.
    ("SELECT extract('epoch' FROM ts) FROM t", "SELECT extract('epoch' FROM ts) FROM t"),
    ("SELECT * FROM t FETCH FIRST 5 ROWS ONLY", "SELECT * FROM t FETCH FIRST 5 ROWS ONLY"),
    ("SELECT * FROM t OFFSET +5 ROWS FETCH NEXT -1 ROWS ONLY",
     "SELECT * FROM t OFFSET +5 ROWS FETCH NEXT -1 ROWS ONLY"),
    ("SELECT x AT TIME ZONE 'UTC' FROM t", "SELECT x AT TIME ZONE 'UTC' FROM t"),
    ("WITH RECURSIVE s(n) AS (SELECT 1) CYCLE n SET c TO 'Y' DEFAULT 'N' USING p SELECT 1",
     "WITH RECURSIVE s(n) AS (SELECT $1) CYCLE n SET c TO 'Y' DEFAULT 'N' USING p SELECT $2"),
    ("SELECT json_table.a FROM json_table('[1]', '$[*]' COLUMNS (a int PATH '$'))",
     "SELECT json_table.a FROM json_table('[1]', '$[*]' COLUMNS (a int PATH '$'))"),
    # After a zone ends, parameters again.
    ("SELECT x::numeric(10, 2) + 1, a[1], b[2:3] FROM t",
     "SELECT x::numeric(10, 2) + $1, a[$2], b[$3:$4] FROM t"),
    ("SELECT x::int[] && ARRAY[1]", "SELECT x::int[] && ARRAY[$1]"),
    ("SELECT x::int IN (1, 2) FROM t", "SELECT x::int IN ($1, $2) FROM t"),
    ("WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x",
     "WITH x AS MATERIALIZED (SELECT $1) SELECT * FROM x"),
    ("SELECT 1 AS a, 2 AS day, 3 b FROM t", "SELECT $1 AS a, $2 AS day, $3 b FROM t"),
])
def test_constants_stay(sql: str, text: str) -> None:
    assert norm(sql)[0] == text


@pytest.mark.parametrize("sql", [
    "SET work_mem = '8MB'",
    "SET statement_timeout TO 5000",
    "SET LOCAL search_path = a, 'b'",
    "SET TIME ZONE 'UTC'",
    "RESET ALL",
    "SHOW work_mem",
    "CREATE TABLE t (a varchar(10) DEFAULT 'x', b int CHECK (b > 0))",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 5",
    "CREATE VIEW v AS SELECT * FROM t WHERE a = 1",
    "CREATE INDEX ON t (a) WHERE b = 2",
    "COMMENT ON TABLE t IS 'x'",
    "GRANT SELECT ON t TO u",
    "COPY t FROM STDIN WITH (FORMAT csv, DELIMITER ',')",
    "COPY (SELECT * FROM t WHERE a = 1) TO STDOUT",
    "PREPARE p (int) AS SELECT * FROM t WHERE a = $1 AND b = 2",
    "EXECUTE p (1, 'x')",
    "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t WHERE a = 1",
    "FETCH 10 FROM c",
    "MOVE FORWARD 5 IN c",
    "EXPLAIN SELECT * FROM t WHERE a = 1",
    "EXPLAIN ANALYZE DELETE FROM t WHERE a = 1",
    "VACUUM (VERBOSE) t",
    "NOTIFY chan, 'payload'",
    "SELECT pg_notify('chan', 'x'); SELECT 1",
    "BEGIN ISOLATION LEVEL SERIALIZABLE",
    "PREPARE TRANSACTION 'gid'",
    "COMMIT PREPARED 'gid'",
    "CALL proc(1, 'a')",
    "DO $$BEGIN PERFORM 1; END$$",
    "SELECT a INTO new_t FROM t WHERE b = 1",
    "WITH x AS (SELECT 1) SELECT * INTO y FROM x WHERE a = 2",
    "LOCK TABLE t IN SHARE MODE",
    "LOAD 'auto_explain'",
    "SELECT 1; SELECT 2",
])
def test_no_parameters_in(sql: str) -> None:
    text, values = norm(sql)
    assert values == []
    assert text == sql


@pytest.mark.parametrize(("sql", "text"), [
    # Postgres matches the select list (and HAVING, WINDOW) against GROUP BY expressions: a
    # placeholder in one copy of `a + 1` would break the match. WHERE and LIMIT keep theirs.
    ("SELECT a + 1 FROM t WHERE b = 2 GROUP BY a + 1 HAVING count(*) > 3 LIMIT 5",
     "SELECT a + 1 FROM t WHERE b = $1 GROUP BY a + 1 HAVING count(*) > 3 LIMIT $2"),
    # With DISTINCT, ORDER BY expressions must be in the select list.
    ("SELECT DISTINCT a + 1 FROM t WHERE b = 2 ORDER BY a + 1",
     "SELECT DISTINCT a + 1 FROM t WHERE b = $1 ORDER BY a + 1"),
    ("SELECT string_agg(DISTINCT c || 'x', ',' ORDER BY c || 'x') FROM t WHERE a < 3",
     "SELECT string_agg(DISTINCT c || 'x', ',' ORDER BY c || 'x') FROM t WHERE a < $1"),
    # A subquery in WHERE is not matched; one in the select list is (it may use grouped
    # columns of the outer query).
    ("SELECT a, count(*) FROM t WHERE b IN (SELECT c FROM u WHERE d = 4) GROUP BY a",
     "SELECT a, count(*) FROM t WHERE b IN (SELECT c FROM u WHERE d = $1) GROUP BY a"),
    ("SELECT (SELECT max(x) FROM u WHERE u.y = t.a + 1) FROM t GROUP BY t.a + 1",
     "SELECT (SELECT max(x) FROM u WHERE u.y = t.a + 1) FROM t GROUP BY t.a + 1"),
    # Without GROUP BY or DISTINCT, select lists take placeholders.
    ("SELECT a + 1, (SELECT max(x) + 1 FROM u WHERE u.y = 7) FROM t ORDER BY a + 1",
     "SELECT a + $1, (SELECT max(x) + $2 FROM u WHERE u.y = $3) FROM t ORDER BY a + 1"),
    ("SELECT a IS DISTINCT FROM b + 1 FROM t", "SELECT a IS DISTINCT FROM b + $1 FROM t"),
    # ON CONFLICT's target must prove a partial index's predicate: constants up to DO.
    ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) WHERE b = 2 DO UPDATE SET c = 3 WHERE d = 4",
     "INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) WHERE b = 2 DO UPDATE SET c = $2 "
     "WHERE d = $3"),
    # An interval with fields reads a literal by its fields, a parameter not ('1' is 1 second
    # as a plain interval, 0 once truncated to days).
    ("SELECT interval '1' day, '2'::interval hour to minute, CAST('3' AS pg_catalog.interval "
     "minute), interval '4' /* c */ second(3)",
     "SELECT interval '1' day, '2'::interval hour to minute, CAST('3' AS pg_catalog.interval "
     "minute), interval '4' second(3)"),
    ("SELECT '1'::interval(0), interval '2' + interval '3'",
     "SELECT $1::interval(0), $2::interval + $3::interval"),
])
def test_matched_expressions_keep_their_literals(sql: str, text: str) -> None:
    assert norm(sql)[0] == text


def test_select_into_found_late_drops_earlier_placeholders() -> None:
    n = normalize(b"SELECT 1, 'x' INTO t")
    assert (n.text, n.n_params, n.kind) == (b"SELECT 1, 'x' INTO t", 0, K.WRITE)
    n = normalize(b"INSERT INTO t SELECT 1")   # INTO after INSERT: an ordinary write
    assert (n.text, n.n_params) == (b"INSERT INTO t SELECT $1", 1)
    n = normalize(b"WITH a AS (SELECT 1) INSERT INTO t SELECT 2")
    assert n.values == [b"1", b"2"]


# -- placeholders after the statement's own $n --------------------------------------------------

@pytest.mark.parametrize(("sql", "text", "base"), [
    ("SELECT 5 FROM t WHERE a = $1", "SELECT $2 FROM t WHERE a = $1", 1),
    ("SELECT $2, 'x', $1", "SELECT $2, $3, $1", 2),
    ("SELECT $10 + 1 + 2", "SELECT $10 + $11 + $12", 10),
    ("SELECT $1", "SELECT $1", 1),
    ("SELECT '$1', $$ $9 $$, \"$3\" FROM t WHERE a = $2",
     "SELECT $3, $4, \"$3\" FROM t WHERE a = $2", 2),
])
def test_numbering_after_existing_params(sql: str, text: str, base: int) -> None:
    n = normalize(sql.encode())
    assert n.text.decode() == text
    assert n.param_base == base
    assert [p.number for p in n.params] == list(range(base + 1, base + 1 + n.n_params))


def test_unsure_numbering_gives_no_placeholders() -> None:
    # $1_0 could be $10 (Postgres 16 reads underscores), $70000 is past the protocol's limit.
    for sql in (b"SELECT 1, $1_0", b"SELECT 1, $70000", b"SELECT 1, $1abc"):
        assert normalize(sql).n_params == 0


def test_at_most_65535_parameters() -> None:
    sql = b"SELECT " + b", ".join([b"1"] * 65535)
    n = normalize(sql)
    assert n.n_params == 65535
    assert n.params[-1].number == 65535
    assert normalize(sql + b", 1").n_params == 0
    assert normalize(sql + b", $1").n_params == 0   # base 1 + 65535 > 65535


def test_long_statements_and_many_literals() -> None:
    # Past the stack buffers: output growth (one-char literals become $NNNN) and span storage.
    values = [str(i % 10).encode() for i in range(3000)]
    sql = b"SELECT * FROM t WHERE a IN (" + b",".join(values) + b") AND b = 'x'"
    n = normalize(sql)
    assert n.n_params == 3001
    assert n.values == [*values, b"x"]
    assert n.text.startswith(b"SELECT * FROM t WHERE a IN ($1,$2,$3,")
    assert n.text.endswith(b",$3000) AND b = $3001")
    assert n.render() == sql
    long_ident = b"x" * 5000
    n = normalize(b"SELECT " + long_ident + b" FROM t WHERE a = 1")
    assert n.text == b"SELECT " + long_ident + b" FROM t WHERE a = $1"


# -- statements ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "kind", "verb", "first"), [
    ("SELECT 1", K.READ, V.NONE, "select"),
    ("  (SELECT 1) UNION (SELECT 2)", K.READ, V.NONE, "select"),
    ("VALUES (1)", K.READ, V.NONE, "values"),
    ("TABLE t", K.READ, V.NONE, "table"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", K.READ, V.NONE, "with"),
    ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", K.WRITE, V.NONE, "with"),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", K.WRITE, V.NONE, "with"),
    ("SELECT * FROM t FOR UPDATE", K.WRITE, V.NONE, "select"),
    ("SELECT * FROM t FOR NO KEY UPDATE", K.WRITE, V.NONE, "select"),
    ("SELECT * FROM t FOR SHARE", K.WRITE, V.NONE, "select"),
    ("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", K.WRITE, V.NONE, "select"),
    ("SELECT * INTO t2 FROM t", K.WRITE, V.NONE, "select"),
    ("INSERT INTO t VALUES (1)", K.WRITE, V.NONE, "insert"),
    ("update t set a = 1", K.WRITE, V.NONE, "update"),
    ("DELETE FROM t", K.WRITE, V.NONE, "delete"),
    ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", K.WRITE, V.NONE, "merge"),
    ("COPY t FROM STDIN", K.WRITE, V.NONE, "copy"),
    ("COPY t (a, b) FROM '/tmp/x'", K.WRITE, V.NONE, "copy"),
    ("COPY t TO STDOUT", K.OTHER, V.NONE, "copy"),
    ("COPY (SELECT a FROM t) TO STDOUT", K.OTHER, V.NONE, "copy"),
    ("CALL p()", K.WRITE, V.NONE, "call"),
    ("DO 'BEGIN END'", K.WRITE, V.NONE, "do"),
    ("LOCK t", K.WRITE, V.NONE, "lock"),
    ("BEGIN", K.TRANSACTION, V.BEGIN, "begin"),
    ("begin work", K.TRANSACTION, V.BEGIN, "begin"),
    ("START TRANSACTION READ ONLY", K.TRANSACTION, V.BEGIN, "start"),
    ("COMMIT", K.TRANSACTION, V.COMMIT, "commit"),
    ("END TRANSACTION", K.TRANSACTION, V.COMMIT, "end"),
    ("COMMIT AND NO CHAIN", K.TRANSACTION, V.COMMIT, "commit"),
    ("COMMIT WORK AND CHAIN", K.TRANSACTION, V.COMMIT_AND_CHAIN, "commit"),
    ("ROLLBACK", K.TRANSACTION, V.ROLLBACK, "rollback"),
    ("ABORT", K.TRANSACTION, V.ROLLBACK, "abort"),
    ("ROLLBACK AND CHAIN", K.TRANSACTION, V.ROLLBACK_AND_CHAIN, "rollback"),
    ("ROLLBACK TO s", K.TRANSACTION, V.ROLLBACK_TO, "rollback"),
    ("ROLLBACK WORK TO SAVEPOINT s", K.TRANSACTION, V.ROLLBACK_TO, "rollback"),
    ("ROLLBACK TRANSACTION TO s", K.TRANSACTION, V.ROLLBACK_TO, "rollback"),
    ("SAVEPOINT s", K.TRANSACTION, V.SAVEPOINT, "savepoint"),
    ("RELEASE SAVEPOINT s", K.TRANSACTION, V.RELEASE, "release"),
    ("RELEASE s", K.TRANSACTION, V.RELEASE, "release"),
    ("PREPARE TRANSACTION 'g'", K.TRANSACTION, V.PREPARE_TRANSACTION, "prepare"),
    ("COMMIT PREPARED 'g'", K.TRANSACTION, V.COMMIT_PREPARED, "commit"),
    ("ROLLBACK PREPARED 'g'", K.TRANSACTION, V.ROLLBACK_PREPARED, "rollback"),
    ("SET a = 1", K.SESSION, V.NONE, "set"),
    ("SET ROLE r", K.SESSION, V.NONE, "set"),
    ("SET SESSION AUTHORIZATION u", K.SESSION, V.NONE, "set"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", K.SESSION, V.NONE, "set"),
    ("RESET a", K.SESSION, V.NONE, "reset"),
    ("DISCARD ALL", K.SESSION, V.NONE, "discard"),
    ("LISTEN c", K.SESSION, V.NONE, "listen"),
    ("UNLISTEN *", K.SESSION, V.NONE, "unlisten"),
    ("PREPARE p AS SELECT 1", K.SESSION, V.NONE, "prepare"),
    ("EXECUTE p", K.SESSION, V.NONE, "execute"),
    ("DEALLOCATE ALL", K.SESSION, V.NONE, "deallocate"),
    ("DECLARE c CURSOR FOR SELECT 1", K.SESSION, V.NONE, "declare"),
    ("FETCH c", K.SESSION, V.NONE, "fetch"),
    ("MOVE c", K.SESSION, V.NONE, "move"),
    ("CLOSE c", K.SESSION, V.NONE, "close"),
    ("LOAD 'x'", K.SESSION, V.NONE, "load"),
    ("CREATE TABLE t (a int)", K.DDL, V.NONE, "create"),
    ("ALTER TABLE t ADD b int", K.DDL, V.NONE, "alter"),
    ("DROP TABLE t", K.DDL, V.NONE, "drop"),
    ("TRUNCATE t", K.DDL, V.NONE, "truncate"),
    ("COMMENT ON TABLE t IS 'x'", K.DDL, V.NONE, "comment"),
    ("GRANT ALL ON t TO u", K.DDL, V.NONE, "grant"),
    ("REVOKE ALL ON t FROM u", K.DDL, V.NONE, "revoke"),
    ("REINDEX TABLE t", K.DDL, V.NONE, "reindex"),
    ("CLUSTER t", K.DDL, V.NONE, "cluster"),
    ("VACUUM t", K.DDL, V.NONE, "vacuum"),
    ("ANALYZE t", K.DDL, V.NONE, "analyze"),
    ("ANALYSE t", K.DDL, V.NONE, "analyse"),
    ("REFRESH MATERIALIZED VIEW v", K.DDL, V.NONE, "refresh"),
    ("SECURITY LABEL ON TABLE t IS 'x'", K.DDL, V.NONE, "security"),
    ("SHOW ALL", K.OTHER, V.NONE, "show"),
    ("EXPLAIN SELECT 1", K.OTHER, V.NONE, "explain"),
    ("EXPLAIN ANALYZE DELETE FROM t", K.OTHER, V.NONE, "explain"),
    ("NOTIFY c", K.OTHER, V.NONE, "notify"),
    ("CHECKPOINT", K.OTHER, V.NONE, "checkpoint"),
    ("", K.OTHER, V.NONE, ""),
    (" ; -- nothing\n;", K.OTHER, V.NONE, ""),
    ('"select" 1', K.OTHER, V.NONE, ""),
    ("FOO BAR", K.OTHER, V.NONE, "foo"),
    ("/* c */ -- d\n SeLeCt 1", K.READ, V.NONE, "select"),
])
def test_classification(sql: str, kind: K, verb: V, first: str) -> None:
    n = normalize(sql.encode())
    assert (n.kind, n.tx_verb, n.first_word) == (kind, verb, first)
    assert n.kind is kind and n.tx_verb is verb
    assert n.kind_c == kind and n.tx_verb_c == verb


_RULE = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); DELETE FROM u)"


@pytest.mark.parametrize(("sql", "count", "text"), [
    ("SELECT 1", 1, "SELECT $1"),
    ("SELECT 1;", 1, "SELECT $1"),
    ("SELECT 1 ; ", 1, "SELECT $1"),
    ("SELECT 1; SELECT 2;", 2, "SELECT 1; SELECT 2"),
    (";;SELECT 1;;;SELECT 2", 2, "SELECT 1;SELECT 2"),
    ("", 0, ""),
    (";;", 0, ""),
    ("-- only a comment", 0, ""),
    ("SELECT ';', \";\", $$;$$ -- ;", 1, 'SELECT $1, ";", $2'),
    (_RULE, 1, _RULE),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true "
     "THEN 2 END; END; SELECT 3", 2,
     "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true "
     "THEN 2 END; END; SELECT 3"),
])
def test_statements(sql: str, count: int, text: str) -> None:
    n = normalize(sql.encode())
    assert n.statements == count
    assert n.text.decode() == text


def test_kinds_of_every_statement() -> None:
    n = normalize(b"BEGIN; UPDATE t SET a = 1; SELECT 1; COMMIT")
    assert n.kind is K.TRANSACTION and n.tx_verb is V.BEGIN
    assert kinds(n) == {K.TRANSACTION, K.WRITE, K.READ}
    assert n.statements == 4


@pytest.mark.parametrize(("sql", "call"), [
    ("SELECT a FROM t WHERE b = 1", False),
    ("SELECT nextval('s')", True),
    ("SELECT count(*) FROM t", True),
    ('SELECT "MyFunc"(1)', True),
    ("SELECT pg_catalog.now()", True),
    ("SELECT a FROM t WHERE b IN (1, 2) AND EXISTS (SELECT 1) AND c = ANY (ARRAY[1])", False),
    ("SELECT CAST(a AS varchar(3)), a::numeric(4) FROM t", False),
    ("INSERT INTO t (a) VALUES (1)", False),
    ("WITH x(a) AS (VALUES (1)) SELECT * FROM x", False),
    ("SELECT * FROM t AS x(a)", False),
])
def test_function_calls(sql: str, call: bool) -> None:
    assert normalize(sql.encode()).has_function_call is call


# -- results ------------------------------------------------------------------------------------

def test_literals() -> None:
    n = normalize(b"SELECT 'a''b', E'\\n', 2147483647, 2147483648, 9223372036854775808, 1.5, "
                  b"X'0F', date '2024-01-01' FROM t WHERE a = $1")
    p = n.params
    assert [lit.number for lit in p] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert [lit.kind for lit in p] == [
        LiteralKind.STRING, LiteralKind.STRING, LiteralKind.INTEGER, LiteralKind.INTEGER,
        LiteralKind.INTEGER, LiteralKind.NUMERIC, LiteralKind.BIT_STRING, LiteralKind.STRING]
    assert [lit.raw for lit in p] == [
        b"'a''b'", b"E'\\n'", b"2147483647", b"2147483648", b"9223372036854775808", b"1.5",
        b"X'0F'", b"'2024-01-01'"]
    assert [lit.value for lit in p] == [
        b"a'b", b"\n", b"2147483647", b"2147483648", b"9223372036854775808", b"1.5", b"x0F",
        b"2024-01-01"]
    assert [lit.type_oid for lit in p] == [
        OID_UNKNOWN, OID_UNKNOWN, OID_INT4, OID_INT8, OID_NUMERIC, OID_NUMERIC, OID_BIT,
        OID_UNKNOWN]
    assert [lit.typed for lit in p] == [False] * 7 + [True]
    assert n.params is p  # built once
    assert repr(p[0]) == "Literal($2, STRING, b\"'a''b'\")"


def test_render() -> None:
    n = normalize(b"SELECT  date '2024-01-01', 'x' -- c\n FROM t WHERE a = 1")
    assert n.text == b"SELECT $1::date, $2 FROM t WHERE a = $3"
    assert n.render() == b"SELECT '2024-01-01'::date, 'x' FROM t WHERE a = 1"
    assert n.render([b"'2025-01-01'", b"'y'", b"2"]) == (
        b"SELECT '2025-01-01'::date, 'y' FROM t WHERE a = 2")
    with pytest.raises(ValueError):
        n.render([b"1"])


def test_text_is_the_given_object_when_nothing_changes() -> None:
    sql = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    n = normalize(sql)
    assert n.text is sql and n.sql is sql
    assert n.n_params == 0 and n.param_base == 1


def test_only_bytes() -> None:
    with pytest.raises(TypeError):
        normalize("SELECT 1")  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_result_or_value_error(data: bytes) -> None:
    try:
        n = normalize(data)
    except ValueError:
        return
    assert isinstance(n.text, bytes)
    assert n.statements >= 0


# Bytes that steer the lexer into its branches: quotes, prefixes, $, comments, operators.
_SQLISH = st.lists(
    st.sampled_from([
        b"'", b"''", b'"', b"$", b"$$", b"$a$", b"$1", b"$2", b"E'", b"B'", b"X'", b"N'",
        b"U&'", b"U&\"", b"\\", b"--", b"/*", b"*/", b"/*+", b"\n", b" ", b"\t", b";", b"(",
        b")", b"[", b"]", b",", b".", b"::", b":", b"-", b"+", b"=", b"<", b">", b"1", b"23",
        b"4.5", b".6", b"7e8", b"0x1", b"_", b"a", b"x", b"select", b"SELECT", b"where",
        b"order", b"by", b"group", b"limit", b"as", b"date", b"interval", b"varchar", b"from",
        b"into", b"insert", b"set", b"begin", b"atomic", b"end", b"case", b"create", b"uescape",
        b"\xc3\xa9", b"\xff", b"\x00",
    ]),
    max_size=40,
).map(b"".join)


@settings(max_examples=1500, deadline=None)
@given(_SQLISH)
def test_sqlish_fuzz_is_stable(data: bytes) -> None:
    try:
        n = normalize(data)
    except ValueError:
        return
    # Putting the literals back and normalizing again gives the same key and values: the
    # placeholders sit where the literals were, and nothing else moved.
    again = normalize(n.render())
    assert again.text == n.text
    assert again.values == n.values
    # The normalized text is its own normal form.
    assert normalize(n.text).text == n.text


_INTS = st.integers(min_value=0, max_value=10**30)
_TEXT = st.binary(max_size=30).filter(lambda b: b"\x00" not in b)


def _quoted(value: bytes) -> bytes:
    return b"'" + value.replace(b"'", b"''") + b"'"


def _escaped(value: bytes) -> bytes:
    out = bytearray(b"E'")
    for c in value:
        if c == 0x5C:
            out += b"\\\\"
        elif c == 0x27:
            out += b"\\'"
        elif c == 0x0A:
            out += b"\\n"
        else:
            out.append(c)
    return bytes(out) + b"'"


def _dollar(value: bytes) -> bytes:
    return b"$q$" + value + b"$q$"


_LITERALS = st.one_of(
    _INTS.map(lambda i: (str(i).encode(), str(i).encode())),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=0,
                max_value=10**9).map(lambda d: (str(d).encode(), str(d).encode())),
    _TEXT.map(lambda b: (_quoted(b), b)),
    _TEXT.map(lambda b: (_escaped(b), b)),
    _TEXT.filter(lambda b: b"$q$" not in b and not b.endswith(b"$q") and not b.endswith(b"$"))
    .map(lambda b: (_dollar(b), b)),
)


@settings(max_examples=400, deadline=None)
@given(
    col=st.sampled_from([b"aid", b"t.name", b'"Mixed Case"', b"x_1"]),
    op=st.sampled_from([b"=", b"<>", b">=", b"LIKE", b"IN ("]),
    lits=st.lists(_LITERALS, min_size=1, max_size=4),
    limit=_INTS,
)
def test_same_key_for_any_literal_values(col: bytes, op: bytes, lits: list[tuple[bytes, bytes]],
                                         limit: int) -> None:
    def build(literals: list[bytes], lim: bytes) -> bytes:
        if op == b"IN (":
            cond = col + b" IN (" + b", ".join(literals) + b")"
        else:
            cond = b" AND ".join(col + b" " + op + b" " + lit for lit in literals)
        return b"SELECT a, b FROM t WHERE " + cond + b" ORDER BY 1 LIMIT " + lim

    n = normalize(build([src for src, _ in lits], str(limit).encode()))
    reference = normalize(build([b"0"] * len(lits), b"0"))
    assert n.text == reference.text
    assert n.values == [value for _, value in lits] + [str(limit).encode()]
    assert b"ORDER BY 1 LIMIT $" in n.text


# -- the normalized texts parse, with the same shape (pglast: Postgres's own parser) ------------

CORPUS = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
    "UPDATE pgbench_accounts SET abalance = abalance + 4213 WHERE aid = 77;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (3, 1, 5, 12, CURRENT_TIMESTAMP);",
    "select * from t where a = 'x''y' and b = E'a\\nb' and c in (1, 2.5, 3) order by 1 limit 10",
    "SELECT date '2020-01-01', interval '1 day' second(3), x::varchar(10) FROM t",
    "SELECT x FROM t ORDER BY 2, x DESC LIMIT 5 OFFSET 10",
    "SELECT a, count(*) FROM t GROUP BY 1 HAVING count(*) > 3",
    "SELECT DISTINCT ON (1) a, b FROM t ORDER BY 1, b",
    "SELECT now() - interval '5 minutes'",
    "SELECT '2020-01-01'::date + 1",
    "SELECT CAST('12.5' AS numeric(10,2))",
    "SELECT x::numeric(10, 2), y::int[3] FROM t WHERE z = ANY('{1,2}'::int[])",
    "SELECT current_timestamp(3), localtime(2)",
    "SELECT extract('epoch' from ts), extract(year from ts) FROM t",
    "SELECT * FROM t FETCH FIRST 5 ROWS ONLY",
    "SELECT * FROM t OFFSET 5 ROWS FETCH NEXT 3 ROWS ONLY",
    "SELECT $1, 5 FROM t WHERE a = $2",
    "SELECT B'1010', X'1F', 1e10, .5, 1.5e-3, 0 FROM t",
    "SELECT $$dollar 'quoted'$$, $tag$with $$ inside$tag$",
    "SELECT U&'d!0061t' UESCAPE '!', 'x'",
    "SELECT 'a'\n'b' AS joined, N'n'",
    "SELECT \"Quoted\"\"Ident\" FROM \"T\" WHERE \"x\" = 'lit'",
    "SELECT 1 /* comment */ + 2 -- trailing\n",
    "/*+ SeqScan(t) */ SELECT * FROM t WHERE id = 3",
    "SELECT a FROM t WHERE b LIKE 'x%' ESCAPE '!' AND c ILIKE 'y'",
    "SELECT a FROM t WHERE b BETWEEN 1 AND 10 OR c IS DISTINCT FROM 5",
    "SELECT CASE WHEN a = 1 THEN 'one' WHEN a = 2 THEN 'two' ELSE 'many' END FROM t",
    "SELECT a FROM t WHERE b IS NULL AND c = TRUE AND d <> FALSE",
    "SELECT arr[1], arr[2:3] FROM t",
    "SELECT string_agg(a, ',' ORDER BY a) FROM t",
    "SELECT row_number() OVER (PARTITION BY a ORDER BY b ROWS BETWEEN 1 PRECEDING AND "
    "CURRENT ROW) FROM t",
    "WITH x AS MATERIALIZED (SELECT 1 AS a) SELECT * FROM x WHERE a = 2",
    "WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM t WHERE n < 100) "
    "SELECT sum(n) FROM t",
    "WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT * FROM d",
    "VALUES (1, 'a'), (2, 'b')",
    "(SELECT 1) UNION (SELECT 2) ORDER BY 1",
    "INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = 'y' RETURNING a",
    "UPDATE t SET a = a * 2, b = 'z' WHERE id IN (1, 2, 3)",
    "DELETE FROM t WHERE created < now() - interval '30 days'",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND t.v > 5 THEN UPDATE SET v = 0 "
    "WHEN NOT MATCHED THEN INSERT VALUES (s.id, 1)",
    "SELECT * FROM t WHERE a = 1 FOR UPDATE SKIP LOCKED",
    "SELECT * FROM generate_series(1, 10) AS g(i)",
    "SELECT * FROM t TABLESAMPLE bernoulli (10) REPEATABLE (42)",
    "SELECT lower('ABC'), upper(x), coalesce(y, 0), nullif(z, '') FROM t",
    "SELECT x AT TIME ZONE 'UTC' FROM t",
    "SELECT timestamp with time zone '2020-01-01 00:00+00'",
    "SELECT 'x'::text || 'y', 3 % 2, 2 ^ 3, |/ 16",
    "SELECT jsonb_build_object('a', 1) -> 'a', '{\"a\":1}'::jsonb ->> 'a'",
    "SELECT substring('hello' from 2 for 3), position('l' in 'hello'), trim(both 'x' from 'xax')",
    "SELECT overlay('abc' placing 'x' from 2 for 1)",
    "SELECT a FROM t WHERE (a, b) IN ((1, 2), (3, 4))",
    "SELECT ARRAY[1, 2, 3], ROW(1, 'a')",
    "SELECT 1 AS one, 'two' two, 'three'three",
    "SELECT count(DISTINCT a) FILTER (WHERE b > 0) FROM t",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
    "SELECT a FROM t t1 JOIN u t2 ON t1.a = t2.a AND t2.b = 3 LEFT JOIN LATERAL f(t1.a, 5) "
    "ON true",
    "SELECT interval '1' day, interval '2' hour to minute",
    "SELECT float '1.5', int '3', bool 't', numeric '1.25'",
    "SELECT a FROM t GROUP BY ROLLUP (a, 1)",
    "SELECT 'a' COLLATE \"C\" < 'b'",
    "SELECT x FROM t WHERE y SIMILAR TO 'a%' ESCAPE '#'",
    "SELECT json_object('a': 1, 'b' VALUE 2)",
    "SELECT a FROM t WHERE b = 'x' ORDER BY CASE WHEN a = 1 THEN 0 ELSE 1 END LIMIT 3",
    "SELECT (SELECT max(a) FROM t WHERE b = 2) + 1",
    "SELECT * FROM t WHERE a = 1 UNION ALL SELECT * FROM u WHERE b = 'x' ORDER BY 1 LIMIT 2",
    "SELECT * FROM f() AS t(a numeric(5), b varchar(7))",
    "WITH RECURSIVE s(n) AS (SELECT 1) CYCLE n SET c TO 'Y' DEFAULT 'N' USING p SELECT * FROM s",
    "SELECT a + 1, count(*) FROM t WHERE b = 2 GROUP BY a + 1 HAVING count(*) > 3",
    "SELECT DISTINCT a + 1 FROM t WHERE b = 2 ORDER BY a + 1",
    "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) WHERE b = 2 DO UPDATE SET c = 3",
    "SELECT interval '1' day, '2'::interval hour to minute",
    # Negative numbers: -1 becomes -$1 (Postgres folds -1 into one constant; -$1 is the
    # minus operator on a parameter: the same value, another tree, see NEGATIVE below).
    "SELECT a FROM t WHERE a = -1 AND b = - 2.5",
    "UPDATE pgbench_accounts SET abalance = abalance + -4213 WHERE aid = 77",
]
NEGATIVE = {CORPUS[-1], CORPUS[-2]}


# Fields of the parse tree that are byte offsets into the text, not structure.
_POSITIONS = {"location", "stmt_location", "stmt_len", "rexpr_list_start", "rexpr_list_end"}


def _tree(sql: str) -> Any:
    from pglast import parser

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in _POSITIONS}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return strip(json.loads(parser.parse_sql_json(sql)))


def test_corpus_is_varied() -> None:
    assert len(CORPUS) >= 60
    assert sum(normalize(s.encode()).n_params for s in CORPUS) > 120


@pytest.mark.parametrize("sql", CORPUS)
def test_normalized_text_parses_with_the_same_shape(sql: str) -> None:
    pglast = pytest.importorskip("pglast")
    n = normalize(sql.encode())
    text = n.text.decode()
    pglast.parser.parse_sql(text)  # the placeholders are where Postgres takes parameters
    if sql not in NEGATIVE:
        assert pglast.parser.fingerprint(text) == pglast.parser.fingerprint(sql)
    # Stronger than the fingerprint (which ignores constants): with the literals put back,
    # the parse tree is the original's, so nothing but the literals moved.
    assert _tree(n.render().decode()) == _tree(sql)


def test_a_placeholder_in_order_by_would_change_the_tree() -> None:
    # Why ORDER BY 1 stays: $1 there sorts by a constant instead of the first column.
    pytest.importorskip("pglast")
    assert _tree("SELECT a FROM t ORDER BY 1") != _tree("SELECT a FROM t ORDER BY $1")
    assert normalize(b"SELECT a FROM t ORDER BY 1").text == b"SELECT a FROM t ORDER BY 1"


# Random statements from a small grammar: every normalized text must parse, and with the
# literals put back give the original's tree.
_LIT = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.sampled_from(["1.5", ".5", "2e3", "'it''s'", "E'a\\nb'", "$$x$$", "B'101'", "X'0F'",
                     "''", "NULL", "TRUE"]),
)
_COL = st.sampled_from(["a", "t.b", '"C"', "d"])
_TYPE = st.sampled_from(["int", "text", "varchar(10)", "numeric(10, 2)", "int[]", "date",
                         "interval", "timestamp(3) with time zone", "bit varying(5)"])


@st.composite
def _expr(draw: st.DrawFn, depth: int = 0) -> str:
    kinds = ["lit", "col", "neg"] if depth > 2 else [
        "lit", "col", "neg", "op", "call", "cast", "typed", "case", "paren", "sub", "in",
        "arr", "between", "like"]
    k = draw(st.sampled_from(kinds))
    if k == "lit":
        return draw(_LIT)
    if k == "col":
        return draw(_COL)
    if k == "neg":
        return "-" + draw(st.integers(min_value=0, max_value=99).map(str))
    def e() -> str:
        return draw(_expr(depth + 1))

    if k == "op":
        return f"{e()} {draw(st.sampled_from(['+', '*', '=', '<>', '||', '>=']))} {e()}"
    if k == "call":
        return f"{draw(st.sampled_from(['f', 'coalesce', 'lower', 'pg_catalog.g']))}({e()}, {e()})"
    if k == "cast":
        return f"{e()}::{draw(_TYPE)}" if draw(st.booleans()) else f"CAST({e()} AS {draw(_TYPE)})"
    if k == "typed":
        return f"{draw(st.sampled_from(['date', 'interval', 'int', 'jsonb']))} '{draw(_LIT)}'"
    if k == "case":
        return f"CASE WHEN {e()} THEN {e()} ELSE {e()} END"
    if k == "paren":
        return f"({e()})"
    if k == "sub":
        return f"(SELECT {e()} FROM u WHERE {e()} LIMIT {draw(_LIT)})"
    if k == "in":
        return f"{e()} IN ({e()}, {e()})"
    if k == "arr":
        return f"ARRAY[{e()}, {e()}][{e()}]"
    if k == "between":
        return f"{e()} BETWEEN {e()} AND {e()}"
    return f"{e()} LIKE {e()}"


@st.composite
def _statement(draw: st.DrawFn) -> str:
    def e() -> str:
        return draw(_expr())

    dml = draw(st.sampled_from(["select", "select", "insert", "update", "delete", "with"]))
    if dml == "insert":
        return (f"INSERT INTO t (a, b) VALUES ({e()}, {e()}), ({e()}, {e()}) ON CONFLICT (a) "
                f"WHERE b = {draw(_LIT)} DO UPDATE SET b = {e()} RETURNING a, {e()}")
    if dml == "update":
        return f"UPDATE t SET a = {e()}, b = DEFAULT WHERE {e()} RETURNING {e()}"
    if dml == "delete":
        return f"DELETE FROM t USING u WHERE {e()} RETURNING *"
    if dml == "with":
        return (f"WITH w AS (UPDATE t SET a = {e()} RETURNING a) SELECT {e()} FROM w "
                f"WHERE a = {e()}")
    items = ", ".join(draw(st.lists(_expr(), min_size=1, max_size=3)))
    sql = f"SELECT {draw(st.sampled_from(['', 'DISTINCT ']))}{items} FROM t"
    if draw(st.booleans()):
        sql += f" WHERE {draw(_expr())}"
    if draw(st.booleans()):
        sql += f" GROUP BY {draw(st.sampled_from(['1', 'a', 'a, 2', 'a + 1']))}"
        if draw(st.booleans()):
            sql += f" HAVING count(*) > {draw(_LIT)}"
    if draw(st.booleans()):
        sql += f" ORDER BY {draw(st.sampled_from(['1', 'a DESC', '2, a', 'a + 1']))}"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(_LIT)} OFFSET {draw(_LIT)}"
    if draw(st.booleans()):
        sql = sql.replace(" ", draw(st.sampled_from(["  ", "\n", " /* c */ ", " -- c\n"])), 3)
    return sql


@settings(max_examples=400, deadline=None)
@given(_statement())
def test_generated_statements_keep_their_tree(sql: str) -> None:
    pglast = pytest.importorskip("pglast")
    try:
        original = _tree(sql)
    except pglast.parser.ParseError:
        return  # the grammar above can make a statement Postgres rejects: nothing to compare
    n = normalize(sql.encode())
    pglast.parser.parse_sql(n.text.decode())
    assert _tree(n.render().decode()) == original
