"""SQL normalization for the plan cache: one pass over the statement's bytes, no parser.

``normalize(sql)`` returns the text with each literal replaced by a placeholder ``$N`` (the
plan cache's key), the literals in order, the number of statements and what the first one is
(read, write, transaction control, session state, DDL, other). The lexer follows Postgres's
scan.l: '...' with '' doubling, E'...' with backslash escapes, U&'...' and U&"...", B'...',
X'...', N'...', $tag$...$tag$, "identifiers", -- and nested /* */ comments, string
continuation over a newline, numbers, $n parameters and operators (a comment may start
inside an operator). It reads bytes and never decodes them: every byte >= 0x80 is an
identifier character, as in Postgres, so any ASCII-compatible encoding works.

The rules, each chosen so that a placeholder never changes what a statement means (a literal
kept in the key costs only a cache miss; a wrong placeholder gives a wrong result):

- Placeholders are numbered after the highest $n already in the text, so statements of the
  extended protocol keep their own parameters.
- Only statements that can take parameters get them: SELECT, VALUES, TABLE, WITH, INSERT,
  UPDATE, DELETE, MERGE (SELECT INTO, DDL, SET, COPY, EXPLAIN, DECLARE, PREPARE, CALL, DO and
  the rest are normalized for whitespace and comments only). A string of several statements
  gets no placeholders (the extended protocol runs one statement per Parse).
- A literal becomes a parameter only where an expression may start: after an operator, '(',
  ',', '[', ':', or a keyword that begins an expression (SELECT, WHERE, AND, THEN, LIMIT, ...).
  So ORDER BY 1 (a column position) stays, and so do places where the grammar wants a
  constant: FETCH FIRST 5, CYCLE ... TO 'Y' DEFAULT 'N', UESCAPE '!', x AT TIME ZONE 'UTC'.
- No placeholders inside ORDER BY / GROUP BY lists (up to LIMIT, OFFSET, FETCH, FOR, HAVING,
  WINDOW, a set operation or the closing parenthesis), DISTINCT ON (...), ON CONFLICT's
  target (up to DO: its WHERE must prove a partial index's predicate), type modifiers
  (varchar(10), numeric(10,2), ::mytype(3), ::int[3], interval(3), second(3)),
  current_timestamp(3) and friends, extract(...), json_table(...), xmltable(...), and
  `name type(...)` column definitions.
- Postgres matches expressions between clauses: under GROUP BY, `SELECT a + 1 ... GROUP BY
  a + 1` (the select list, HAVING and WINDOW must use the grouped expressions), and with
  DISTINCT, `ORDER BY a + 1` must be in the select list. A parameter breaks such a match
  ($1 is not 1), so in a statement with GROUP BY or DISTINCT, literals in a select list,
  HAVING or WINDOW clause, or anywhere inside one (subqueries included), stay. FROM, WHERE,
  LIMIT, VALUES, SET and RETURNING keep their placeholders. (The statement is lexed again
  when GROUP BY or DISTINCT shows up after such a placeholder.)
- A typed literal (date '2024-01-01', interval '1 day', for a short list of built-in types
  where the two spellings mean the same) becomes $N::date: Postgres accepts only a string
  constant after the type name, and a cast of a parameter means the same thing.
- Except an interval with fields: '1'::interval day (or interval '1' day) is 1 day, because
  Postgres reads a literal with the type's fields, but $1::interval day reads $1 as an
  interval first (1 second) and then truncates it to days (0). Such strings stay.
- Kept as they are: U&'...' strings (and the string after UESCAPE), N'...', continued strings
  ('a'<newline>'b'), E'...' strings with \\u escapes or octal/hex escapes that give a zero or
  non-ASCII byte (their meaning depends on the server encoding), numbers with underscores or
  0x/0o/0b (Postgres 16 syntax), numbers followed by identifier characters, malformed B'...'/X'...'.
- NULL, TRUE and FALSE are keywords, not literals. A sign is not part of a number: -1 is -$1.
- Whitespace runs become one space; comments are removed (each acts as a space), except a
  /* */ comment that starts with /*+ or contains "multigres:" (planner hints), kept as is.
  Leading and trailing whitespace and a trailing ';' are dropped. Keywords are not case-folded:
  the cache key is the text as the application writes it, which is stable per call site.

Unterminated quotes, quoted identifiers, dollar quotes and comments raise ValueError (the
caller passes such a statement to Postgres, which reports the error).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memcmp, memcpy

import enum

ctypedef unsigned char uchar

cdef enum:
    # The extended protocol carries at most 65535 parameters per statement.
    MAX_PARAMS = 65535
    # Statements whose text fits are normalized in a stack buffer (no malloc).
    STACK_OUT = 2048
    # Literal spans kept on the stack before the lexer allocates.
    STACK_LITS = 16
    # Words of a statement kept for its classification (ROLLBACK WORK TO SAVEPOINT ...).
    MAX_WORDS = 5
    # Query levels ('(' nesting) whose clause is tracked; deeper ones count as matched.
    MAX_LEVELS = 64
    KW_SLOTS = 1024     # keyword hash table: a power of two, several times the keywords
    KW_MAXLEN = 23


class StatementKind(enum.IntEnum):
    READ = SK_READ
    WRITE = SK_WRITE
    TRANSACTION = SK_TRANSACTION
    SESSION = SK_SESSION
    DDL = SK_DDL
    OTHER = SK_OTHER


class TxVerb(enum.IntEnum):
    NONE = TX_NONE
    BEGIN = TX_BEGIN
    COMMIT = TX_COMMIT
    ROLLBACK = TX_ROLLBACK
    SAVEPOINT = TX_SAVEPOINT
    RELEASE = TX_RELEASE
    ROLLBACK_TO = TX_ROLLBACK_TO
    PREPARE_TRANSACTION = TX_PREPARE_TRANSACTION
    COMMIT_PREPARED = TX_COMMIT_PREPARED
    ROLLBACK_PREPARED = TX_ROLLBACK_PREPARED
    COMMIT_AND_CHAIN = TX_COMMIT_AND_CHAIN
    ROLLBACK_AND_CHAIN = TX_ROLLBACK_AND_CHAIN


class LiteralKind(enum.IntEnum):
    STRING = LK_STRING
    INTEGER = LK_INTEGER
    NUMERIC = LK_NUMERIC
    BIT_STRING = LK_BIT_STRING


# Enum members by value: a property returns one with a tuple index (no enum call per access).
cdef tuple _KINDS = tuple(StatementKind)
cdef tuple _VERBS = tuple(TxVerb)
cdef tuple _LIT_KINDS = tuple(LiteralKind)

# Type OIDs a parameter would carry for Postgres to type it as it types the literal.
OID_UNKNOWN = 0
OID_INT4 = 23
OID_INT8 = 20
OID_NUMERIC = 1700
OID_BIT = 1560


# -- character classes --------------------------------------------------------------------------

cdef enum:
    CC_SPACE = 1      # [ \t\n\r\f]
    CC_IDSTART = 2    # [A-Za-z_\x80-\xff]
    CC_IDCONT = 4     # [A-Za-z_0-9$\x80-\xff]
    CC_DIGIT = 8
    CC_OP = 16        # Postgres's op_chars: ~!@#^&|`?+-*/%<>=
    CC_HEX = 32

cdef uchar _cc[256]


cdef void _init_classes() noexcept:
    cdef int c
    for c in range(256):
        _cc[c] = 0
        if c >= 0x80 or (c >= ord("a") and c <= ord("z")) or (c >= ord("A") and c <= ord("Z")) \
                or c == ord("_"):
            _cc[c] |= CC_IDSTART | CC_IDCONT
        if c >= ord("0") and c <= ord("9"):
            _cc[c] |= CC_DIGIT | CC_IDCONT | CC_HEX
        if (c >= ord("a") and c <= ord("f")) or (c >= ord("A") and c <= ord("F")):
            _cc[c] |= CC_HEX
    _cc[ord("$")] |= CC_IDCONT
    for c in b" \t\n\r\f":
        _cc[c] |= CC_SPACE
    for c in b"~!@#^&|`?+-*/%<>=":
        _cc[c] |= CC_OP


_init_classes()


# -- keywords -----------------------------------------------------------------------------------
# One hash lookup per unquoted word gives its id (for the statement's class and the few words
# the rules name) and its flags (which rules it takes part in).

cdef enum Kw:
    KW_NONE = 0
    KW_OTHER            # a keyword known only by its flags
    KW_SELECT
    KW_VALUES
    KW_TABLE
    KW_WITH
    KW_INSERT
    KW_UPDATE
    KW_DELETE
    KW_MERGE
    KW_COPY
    KW_CALL
    KW_DO
    KW_LOCK
    KW_BEGIN
    KW_START
    KW_COMMIT
    KW_END
    KW_ROLLBACK
    KW_ABORT
    KW_SAVEPOINT
    KW_RELEASE
    KW_PREPARE
    KW_TRANSACTION
    KW_WORK
    KW_TO
    KW_PREPARED
    KW_AND
    KW_CHAIN
    KW_SET
    KW_RESET
    KW_DISCARD
    KW_LISTEN
    KW_UNLISTEN
    KW_EXECUTE
    KW_DEALLOCATE
    KW_DECLARE
    KW_FETCH
    KW_MOVE
    KW_CLOSE
    KW_LOAD
    KW_CREATE
    KW_ALTER
    KW_DROP
    KW_TRUNCATE
    KW_COMMENT
    KW_GRANT
    KW_REVOKE
    KW_REINDEX
    KW_CLUSTER
    KW_VACUUM
    KW_ANALYZE
    KW_ANALYSE
    KW_REFRESH
    KW_SECURITY
    KW_IMPORT
    KW_REASSIGN
    KW_FROM
    KW_INTO
    KW_BY
    KW_ORDER
    KW_GROUP
    KW_ON
    KW_DISTINCT
    KW_AS
    KW_ATOMIC
    KW_CASE
    KW_CONFLICT
    KW_INTERVAL

cdef enum:
    F_ALLOW = 1 << 0        # a literal may follow (an expression starts here)
    F_PARENKW = 1 << 1      # a keyword whose '(' is neither a call nor a type modifier
    F_TYPMOD = 1 << 2       # its '(' holds constants only (type modifiers, precisions)
    F_TYPEDLIT = 1 << 3     # `word 'string'` is a typed literal that means 'string'::word
    F_CLAUSE_END = 1 << 4   # ends an ORDER BY / GROUP BY list (reserved words only)
    F_SIGNKEEP = 1 << 5     # a signed number after it must be a constant (FETCH FIRST +5)
    F_TYPESTOP = 1 << 6     # after AS, not a type name (AS MATERIALIZED (...))
    F_TYPECONT = 1 << 7     # continues a multi-word type name (double precision, ...)
    F_NOCALLPREV = 1 << 8   # `<this> name(` is not a call (INSERT INTO t(a), WITH t(a))
    F_WRITE = 1 << 9        # makes a SELECT/WITH a write (FOR UPDATE/SHARE, INTO, DML in WITH)
    F_DML = 1 << 10         # a first word whose statement may take parameters
    F_EXPRWORD = 1 << 11    # a function call may follow (JOIN f(1), LATERAL f(1))
    F_CLAUSE = 1 << 12      # starts a clause of its query level ...
    F_MATCHED = 1 << 13     # ... whose expressions Postgres matches under GROUP BY/DISTINCT
    F_FIELD = 1 << 14       # an interval field (interval '1' day)

_KW_IDS = {
    "select": KW_SELECT, "values": KW_VALUES, "table": KW_TABLE, "with": KW_WITH,
    "insert": KW_INSERT, "update": KW_UPDATE, "delete": KW_DELETE, "merge": KW_MERGE,
    "copy": KW_COPY, "call": KW_CALL, "do": KW_DO, "lock": KW_LOCK, "begin": KW_BEGIN,
    "start": KW_START, "commit": KW_COMMIT, "end": KW_END, "rollback": KW_ROLLBACK,
    "abort": KW_ABORT, "savepoint": KW_SAVEPOINT, "release": KW_RELEASE,
    "prepare": KW_PREPARE, "transaction": KW_TRANSACTION, "work": KW_WORK, "to": KW_TO,
    "prepared": KW_PREPARED, "and": KW_AND, "chain": KW_CHAIN, "set": KW_SET,
    "reset": KW_RESET, "discard": KW_DISCARD, "listen": KW_LISTEN, "unlisten": KW_UNLISTEN,
    "execute": KW_EXECUTE, "deallocate": KW_DEALLOCATE, "declare": KW_DECLARE,
    "fetch": KW_FETCH, "move": KW_MOVE, "close": KW_CLOSE, "load": KW_LOAD,
    "create": KW_CREATE, "alter": KW_ALTER, "drop": KW_DROP, "truncate": KW_TRUNCATE,
    "comment": KW_COMMENT, "grant": KW_GRANT, "revoke": KW_REVOKE, "reindex": KW_REINDEX,
    "cluster": KW_CLUSTER, "vacuum": KW_VACUUM, "analyze": KW_ANALYZE, "analyse": KW_ANALYSE,
    "refresh": KW_REFRESH, "security": KW_SECURITY, "import": KW_IMPORT,
    "reassign": KW_REASSIGN, "from": KW_FROM, "into": KW_INTO, "by": KW_BY,
    "order": KW_ORDER, "group": KW_GROUP, "on": KW_ON, "distinct": KW_DISTINCT, "as": KW_AS,
    "atomic": KW_ATOMIC, "case": KW_CASE, "conflict": KW_CONFLICT, "interval": KW_INTERVAL,
}

_ALLOW = (
    "select where and or not then else when case like ilike escape between symmetric "
    "asymmetric distinct from limit offset returning having on for placing both leading "
    "trailing"
)
_KW_FLAGS = (
    (F_ALLOW, _ALLOW),
    (F_PARENKW, _ALLOW + (
        " in exists any some all values over filter within using as join lateral is similar "
        "set row array cast by tablesample repeatable only group sets rollup cube with "
        "recursive do conflict coalesce nullif greatest least grouping overlaps default update "
        "into rows range groups order partition union intersect except window materialized")),
    (F_TYPMOD, (
        "varchar char character nchar varying bit numeric decimal dec float timestamp time "
        "interval second current_time current_timestamp localtime localtimestamp extract "
        "json_table xmltable")),
    # Not char/character/bit: `char 'xyz'` is unbounded but 'xyz'::char is char(1).
    (F_TYPEDLIT, (
        "interval date time timestamp timestamptz timetz int int2 int4 int8 integer smallint "
        "bigint numeric decimal real float float4 float8 bool boolean text varchar uuid json "
        "jsonb bytea inet cidr money oid regclass tsquery tsvector xml")),
    (F_CLAUSE_END, "limit offset fetch for union intersect except having window do"),
    (F_SIGNKEEP, "first next offset"),
    (F_TYPESTOP, "materialized not"),
    (F_TYPECONT, (
        "precision varying with without time zone character char day hour minute second "
        "month year to")),
    (F_NOCALLPREV, "into as with recursive table"),
    (F_WRITE, "insert update delete merge share into"),
    (F_DML, "select values table with insert update delete merge"),
    (F_EXPRWORD, "join lateral tablesample using by"),
    (F_CLAUSE, (
        "select from where having window limit offset fetch values set returning on using "
        "union intersect except")),
    (F_MATCHED, "select having window"),
    (F_FIELD, "year month day hour minute second"),
)

ctypedef struct KwSlot:
    unsigned int h
    int len             # 0: empty slot
    int id
    int flags
    uchar text[KW_MAXLEN + 1]

cdef KwSlot _kw[KW_SLOTS]


cdef inline unsigned int _kw_hash_step(unsigned int h, uchar c) noexcept:
    return h * 31u + c


cdef void _kw_add(bytes name, int kw_id, int flags) noexcept:
    cdef unsigned int h = 0
    cdef Py_ssize_t k, n = len(name)
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(name)
    for k in range(n):
        h = _kw_hash_step(h, p[k])
    cdef unsigned int idx = h & (KW_SLOTS - 1)
    while _kw[idx].len != 0:
        if _kw[idx].h == h and _kw[idx].len == n and memcmp(_kw[idx].text, p, n) == 0:
            _kw[idx].flags |= flags
            if kw_id != KW_OTHER:
                _kw[idx].id = kw_id
            return
        idx = (idx + 1) & (KW_SLOTS - 1)
    _kw[idx].h = h
    _kw[idx].len = <int>n
    _kw[idx].id = kw_id
    _kw[idx].flags = flags
    memcpy(_kw[idx].text, p, n)


cdef void _init_keywords() except *:
    for name, kw_id in _KW_IDS.items():
        _kw_add(name.encode(), kw_id, 0)
    for flags, names in _KW_FLAGS:
        for name in names.split():
            assert len(name) <= KW_MAXLEN
            _kw_add(name.encode(), KW_OTHER, flags)


_init_keywords()


cdef inline const KwSlot *_kw_find(const uchar *w, Py_ssize_t n) noexcept:
    cdef uchar low[KW_MAXLEN + 1]
    cdef unsigned int h = 0
    cdef Py_ssize_t k
    cdef uchar c
    if n > KW_MAXLEN:
        return NULL
    for k in range(n):
        c = w[k]
        if c >= 65 and c <= 90:  # A-Z
            c += 32
        low[k] = c
        h = _kw_hash_step(h, c)
    cdef unsigned int idx = h & (KW_SLOTS - 1)
    while _kw[idx].len != 0:
        if _kw[idx].h == h and _kw[idx].len == n and memcmp(_kw[idx].text, low, n) == 0:
            return &_kw[idx]
        idx = (idx + 1) & (KW_SLOTS - 1)
    return NULL


# -- the lexer ----------------------------------------------------------------------------------

cdef enum Tok:
    T_NONE = 0      # start of a statement
    T_WORD          # unquoted identifier or keyword
    T_QIDENT        # "quoted identifier"
    T_LIT           # a literal (kept or replaced)
    T_PARAM         # $n
    T_OP            # an operator
    T_SIGN          # a lone + or -
    T_LPAREN
    T_RPAREN
    T_LBRACK
    T_RBRACK
    T_COMMA
    T_DOT
    T_DCOLON        # ::
    T_COLON
    T_OTHER

ctypedef struct Lexer:
    const uchar *s
    Py_ssize_t n
    bint scs                    # standard_conforming_strings
    bint params                 # this pass may emit placeholders
    int base                    # placeholders are base+1, base+2, ...
    # output
    uchar *out
    Py_ssize_t olen
    Py_ssize_t ocap
    uchar *heap                 # out, once it left the stack buffer
    bint space                  # whitespace or a comment since the last token
    Py_ssize_t semi_at          # output offset of the last statement-ending ';', or -1
    # literals that became parameters
    LitSpan *lits
    int nlits
    int lcap
    LitSpan lstack[STACK_LITS]
    # across statements
    int max_param
    bint redo_plain             # found a reason to drop every placeholder: run again without
    bint redo_strict            # a placeholder in a matched clause under GROUP BY/DISTINCT
    int statements
    int kind
    int tx_verb
    int kind_mask
    bint has_call
    Py_ssize_t first_start
    Py_ssize_t first_len
    # the current statement
    bint stmt_open              # a token was seen
    bint stmt_lead              # only '(' so far: the next word is the first word
    int stmt_first              # Kw of the first word
    bint stmt_params            # it may take placeholders
    int stmt_nlits
    bint stmt_write             # a word that makes a read a write
    int copy_dir                # KW_FROM or KW_TO, the first at depth 0
    int nwords
    int words[MAX_WORDS]
    int depth                   # ( and [ nesting
    int begin_depth             # BEGIN ATOMIC ... END (and CASE ... END inside it)
    bint zone                   # no placeholders here
    bint zone_clause            # the zone is an ORDER BY / GROUP BY list
    int zone_depth
    int typename                # 0; 1 after :: or AS; 2 inside a type name
    bint strict                 # keep literals in matched clauses (see the module doc)
    bint need_strict            # this statement has GROUP BY or DISTINCT
    int matched_params          # placeholders put in matched clauses
    # per query level: whether it (or a level around it) is in a matched clause
    uchar outer_matched[MAX_LEVELS]
    uchar matched[MAX_LEVELS]
    # the last three tokens (1: the latest)
    int t1
    int k1
    int f1
    int t2
    int k2
    int f2
    int t3
    int k3
    int f3
    Py_ssize_t w1_start         # the latest word: its bytes in s and where it went in out
    Py_ssize_t w1_end
    Py_ssize_t w1_out


cdef int _grow(Lexer *L, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = L.ocap * 2
    cdef uchar *p
    if cap < L.olen + need + 64:
        cap = L.olen + need + 64
    if L.heap == NULL:
        p = <uchar *>PyMem_Malloc(cap)
        if p == NULL:
            raise MemoryError()
        memcpy(p, L.out, L.olen)
    else:
        p = <uchar *>PyMem_Realloc(L.heap, cap)
        if p == NULL:
            raise MemoryError()
    L.heap = p
    L.out = p
    L.ocap = cap
    return 0


cdef inline int _emit(Lexer *L, const uchar *p, Py_ssize_t k) except -1:
    """Append k bytes, after one space if whitespace came before them."""
    if L.olen + k + 1 > L.ocap:
        _grow(L, k + 1)
    if L.space:
        L.space = 0
        if L.olen > 0:
            L.out[L.olen] = 32
            L.olen += 1
    memcpy(L.out + L.olen, p, k)
    L.olen += k
    return 0


cdef inline void _push(Lexer *L, int tok, int kw, int fl) noexcept:
    L.t3 = L.t2
    L.k3 = L.k2
    L.f3 = L.f2
    L.t2 = L.t1
    L.k2 = L.k1
    L.f2 = L.f1
    L.t1 = tok
    L.k1 = kw
    L.f1 = fl
    if tok != T_LPAREN:
        L.stmt_lead = 0
    L.stmt_open = 1


cdef inline bint _expr_start(int tok, int fl, int tok_before, int fl_before) noexcept:
    """Whether an expression may start after this token (so a literal may be a parameter)."""
    if tok == T_OP or tok == T_LPAREN or tok == T_COMMA or tok == T_LBRACK or tok == T_COLON:
        return True
    if tok == T_SIGN:
        # FETCH FIRST +5 / OFFSET -1 ROWS take a signed constant, not an expression.
        return not (tok_before == T_WORD and (fl_before & F_SIGNKEEP))
    if tok == T_WORD:
        return (fl & F_ALLOW) != 0
    return False


cdef void _reset_statement(Lexer *L) noexcept:
    L.stmt_open = 0
    L.stmt_lead = 1
    L.stmt_first = KW_NONE
    L.stmt_params = 0
    L.stmt_nlits = 0
    L.stmt_write = 0
    L.copy_dir = 0
    L.nwords = 0
    L.depth = 0
    L.begin_depth = 0
    L.zone = 0
    L.zone_clause = 0
    L.zone_depth = 0
    L.typename = 0
    L.need_strict = 0
    L.matched[0] = 0
    L.outer_matched[0] = 0
    L.t1 = L.t2 = L.t3 = T_NONE
    L.k1 = L.k2 = L.k3 = KW_NONE
    L.f1 = L.f2 = L.f3 = 0


cdef inline int _word_at(Lexer *L, int i) noexcept:
    return L.words[i] if i < L.nwords else KW_NONE


cdef int _chain_at(Lexer *L) noexcept:
    """Whether the words after COMMIT/ROLLBACK say AND CHAIN (not AND NO CHAIN)."""
    cdef int i
    for i in range(1, L.nwords - 1):
        if L.words[i] == KW_AND:
            return L.words[i + 1] == KW_CHAIN
    return 0


cdef void _classify(Lexer *L, int *kind, int *verb) noexcept:
    cdef int k = L.stmt_first
    cdef int w1, i
    verb[0] = TX_NONE
    if k == KW_SELECT or k == KW_VALUES or k == KW_TABLE or k == KW_WITH:
        kind[0] = SK_WRITE if L.stmt_write else SK_READ
    elif k == KW_INSERT or k == KW_UPDATE or k == KW_DELETE or k == KW_MERGE \
            or k == KW_CALL or k == KW_DO or k == KW_LOCK:
        kind[0] = SK_WRITE
    elif k == KW_COPY:
        kind[0] = SK_WRITE if L.copy_dir == KW_FROM else SK_OTHER
    elif k == KW_BEGIN or k == KW_START:
        kind[0] = SK_TRANSACTION
        verb[0] = TX_BEGIN
    elif k == KW_COMMIT or k == KW_END:
        kind[0] = SK_TRANSACTION
        if k == KW_COMMIT and _word_at(L, 1) == KW_PREPARED:
            verb[0] = TX_COMMIT_PREPARED
        else:
            verb[0] = TX_COMMIT_AND_CHAIN if _chain_at(L) else TX_COMMIT
    elif k == KW_ROLLBACK or k == KW_ABORT:
        kind[0] = SK_TRANSACTION
        i = 1
        w1 = _word_at(L, 1)
        if w1 == KW_WORK or w1 == KW_TRANSACTION:
            i = 2
        if k == KW_ROLLBACK and w1 == KW_PREPARED:
            verb[0] = TX_ROLLBACK_PREPARED
        elif k == KW_ROLLBACK and _word_at(L, i) == KW_TO:
            verb[0] = TX_ROLLBACK_TO
        else:
            verb[0] = TX_ROLLBACK_AND_CHAIN if _chain_at(L) else TX_ROLLBACK
    elif k == KW_SAVEPOINT:
        kind[0] = SK_TRANSACTION
        verb[0] = TX_SAVEPOINT
    elif k == KW_RELEASE:
        kind[0] = SK_TRANSACTION
        verb[0] = TX_RELEASE
    elif k == KW_PREPARE:
        if _word_at(L, 1) == KW_TRANSACTION:
            kind[0] = SK_TRANSACTION
            verb[0] = TX_PREPARE_TRANSACTION
        else:
            kind[0] = SK_SESSION
    elif k == KW_SET or k == KW_RESET or k == KW_DISCARD or k == KW_LISTEN \
            or k == KW_UNLISTEN or k == KW_EXECUTE or k == KW_DEALLOCATE or k == KW_DECLARE \
            or k == KW_FETCH or k == KW_MOVE or k == KW_CLOSE or k == KW_LOAD:
        kind[0] = SK_SESSION
    elif k == KW_CREATE or k == KW_ALTER or k == KW_DROP or k == KW_TRUNCATE \
            or k == KW_COMMENT or k == KW_GRANT or k == KW_REVOKE or k == KW_REINDEX \
            or k == KW_CLUSTER or k == KW_VACUUM or k == KW_ANALYZE or k == KW_ANALYSE \
            or k == KW_REFRESH or k == KW_SECURITY or k == KW_IMPORT or k == KW_REASSIGN:
        kind[0] = SK_DDL
    else:
        kind[0] = SK_OTHER      # SHOW, EXPLAIN, NOTIFY, CHECKPOINT, unknown
    return


cdef void _end_statement(Lexer *L) noexcept:
    cdef int kind, verb
    if L.need_strict and L.matched_params:
        L.redo_strict = 1
    L.matched_params = 0
    if L.stmt_open:
        _classify(L, &kind, &verb)
        if L.statements == 0:
            L.kind = kind
            L.tx_verb = verb
        L.kind_mask |= 1 << kind
        L.statements += 1
    _reset_statement(L)


cdef inline void _set_clause(Lexer *L, bint matched) noexcept:
    """A clause keyword at this query level: matched if it is, or a level around it is."""
    if L.depth >= 0 and L.depth < MAX_LEVELS:
        L.matched[L.depth] = L.outer_matched[L.depth] | matched


cdef inline bint _in_matched(Lexer *L) noexcept:
    if L.depth < 0 or L.depth >= MAX_LEVELS:
        return True
    return L.matched[L.depth]


cdef int _word(Lexer *L, Py_ssize_t i, Py_ssize_t j) except -1:
    cdef const KwSlot *slot = _kw_find(L.s + i, j - i)
    cdef int kw = KW_NONE
    cdef int fl = 0
    if slot != NULL:
        kw = slot.id
        fl = slot.flags
    if L.stmt_lead:
        L.stmt_first = kw
        L.stmt_params = L.params and (fl & F_DML) != 0
        if L.statements == 0:
            L.first_start = i
            L.first_len = j - i
    if L.nwords < MAX_WORDS:
        L.words[L.nwords] = kw
        L.nwords += 1
    # ORDER BY / GROUP BY lists: no placeholders (ORDER BY 1 is a column position).
    if L.zone and L.zone_clause and L.depth == L.zone_depth and (fl & F_CLAUSE_END):
        L.zone = 0
    if kw == KW_BY and L.t1 == T_WORD and (L.k1 == KW_ORDER or L.k1 == KW_GROUP):
        if not L.zone:
            L.zone = 1
            L.zone_clause = 1
            L.zone_depth = L.depth
        _set_clause(L, True)
        if L.k1 == KW_GROUP:
            L.need_strict = 1
    elif kw == KW_CONFLICT and L.t1 == T_WORD and L.k1 == KW_ON and not L.zone:
        L.zone = 1           # ON CONFLICT (...) WHERE ...: up to DO
        L.zone_clause = 1
        L.zone_depth = L.depth
    elif (fl & F_CLAUSE) and not (L.t1 == T_WORD and L.k1 == KW_DISTINCT):
        _set_clause(L, (fl & F_MATCHED) != 0)   # (not IS DISTINCT FROM, DISTINCT ON)
    elif kw == KW_DISTINCT and (L.t1 == T_LPAREN or (L.t1 == T_WORD and L.k1 == KW_SELECT)):
        L.need_strict = 1
    # Type names after :: and AS, so that their modifiers stay constants.
    if kw == KW_AS:
        L.typename = 1
    elif L.typename == 1:
        L.typename = 0 if (fl & F_TYPESTOP) else 2
    elif L.typename == 2 and not (fl & F_TYPECONT) and L.t1 != T_DOT:
        L.typename = 0       # (after a dot the name goes on: ::public.geometry(point, 4326))
    if fl & F_WRITE:
        L.stmt_write = 1
        # SELECT ... INTO t is CREATE TABLE AS: no parameters there.
        if kw == KW_INTO and L.depth <= 0 and L.stmt_first != KW_INSERT \
                and L.stmt_first != KW_MERGE and not (L.t1 == T_WORD and (
                    L.k1 == KW_INSERT or L.k1 == KW_MERGE)):
            L.stmt_params = 0
            if L.stmt_nlits:
                L.redo_plain = 1
    if (kw == KW_FROM or kw == KW_TO) and L.depth <= 0 and L.copy_dir == 0:
        L.copy_dir = kw
    # CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END holds ';' that do not end the statement.
    if L.stmt_first == KW_CREATE:
        if kw == KW_ATOMIC and L.t1 == T_WORD and L.k1 == KW_BEGIN:
            L.begin_depth += 1
        elif L.begin_depth > 0:
            if kw == KW_CASE:
                L.begin_depth += 1
            elif kw == KW_END:
                L.begin_depth -= 1
    _emit(L, L.s + i, j - i)
    _push(L, T_WORD, kw, fl)
    L.w1_start = i
    L.w1_end = j
    L.w1_out = L.olen - (j - i)
    return 0


cdef int _open(Lexer *L, uchar c) except -1:
    """'(' or '['."""
    cdef bint zone = 0
    cdef int t1 = L.t1
    if c == 40:  # (
        if L.typename == 2:
            zone = 1
        elif t1 == T_WORD:
            if L.f1 & F_TYPMOD:
                zone = 1
            elif L.k1 == KW_ON and L.t2 == T_WORD and L.k2 == KW_DISTINCT:
                zone = 1
            elif not (L.f1 & F_PARENKW) and (L.t2 == T_QIDENT or (
                    L.t2 == T_WORD and not (L.f2 & (F_ALLOW | F_EXPRWORD)))):
                zone = 1     # `name type(...)`: a column definition's type modifiers
        if (t1 == T_WORD and not (L.f1 & (F_PARENKW | F_TYPMOD))) or t1 == T_QIDENT:
            if L.typename != 2 and not (L.t2 == T_WORD and (L.f2 & F_NOCALLPREV)):
                L.has_call = 1
    elif L.typename == 2:
        zone = 1             # ::int[3]
    if zone and not L.zone:
        L.zone = 1
        L.zone_clause = 0
        L.zone_depth = L.depth
    if L.depth >= 0 and L.depth < MAX_LEVELS - 1:
        L.outer_matched[L.depth + 1] = L.matched[L.depth]
        L.matched[L.depth + 1] = L.matched[L.depth]
    L.depth += 1
    L.typename = 0
    _emit(L, &c, 1)
    _push(L, T_LPAREN if c == 40 else T_LBRACK, KW_NONE, 0)
    return 0


cdef int _close(Lexer *L, uchar c) except -1:
    """')' or ']'."""
    L.depth -= 1
    if L.zone:
        if L.zone_clause:
            if L.depth < L.zone_depth:
                L.zone = 0
        elif L.depth <= L.zone_depth:
            L.zone = 0
    L.typename = 0
    _emit(L, &c, 1)
    _push(L, T_RPAREN if c == 41 else T_RBRACK, KW_NONE, 0)
    return 0


cdef int _add_lit(Lexer *L) except -1:
    cdef LitSpan *p
    if L.nlits == L.lcap:
        if L.lits == L.lstack:
            p = <LitSpan *>PyMem_Malloc(2 * L.lcap * sizeof(LitSpan))
            if p != NULL:
                memcpy(p, L.lits, L.nlits * sizeof(LitSpan))
        else:
            p = <LitSpan *>PyMem_Realloc(L.lits, 2 * L.lcap * sizeof(LitSpan))
        if p == NULL:
            raise MemoryError()
        L.lits = p
        L.lcap *= 2
    L.nlits += 1
    return 0


cdef int _literal(Lexer *L, Py_ssize_t start, Py_ssize_t end, Py_ssize_t vstart,
                  Py_ssize_t vend, int kind, int flags, bint safe) except -1:
    """A literal from start to end: a placeholder where that cannot change the statement."""
    cdef bint ok = 0
    cdef int typed = 0      # 1: interval '...', 2: another typed literal
    cdef int number
    cdef uchar digits[8]
    cdef int nd, k
    cdef LitSpan *lit
    cdef Py_ssize_t ostart
    if safe and L.stmt_params and not L.zone and L.typename == 0:
        if _expr_start(L.t1, L.f1, L.t2, L.f2):
            ok = 1
        elif kind == LK_STRING and L.t1 == T_WORD and (L.f1 & F_TYPEDLIT) \
                and _expr_start(L.t2, L.f2, L.t3, L.f3):
            ok = typed = 1
            if L.k1 != KW_INTERVAL:
                typed = 2    # (only interval '...' can have fields after it)
        if ok and kind == LK_STRING and _interval_fields_follow(L.s, L.n, end, typed):
            ok = typed = 0
        if ok and _in_matched(L):
            if L.strict:
                ok = typed = 0
            else:
                L.matched_params += 1
    if not ok:
        _emit(L, L.s + start, end - start)
        _push(L, T_LIT, KW_NONE, 0)
        return 0
    number = L.base + L.nlits + 1
    if number > MAX_PARAMS:
        L.redo_plain = 1
        number = MAX_PARAMS     # this pass's output is thrown away
    nd = 0
    while number > 0 or nd == 0:
        digits[nd] = 48 + number % 10
        number //= 10
        nd += 1
    if typed:
        # date '2024-01-01' -> $N::date: drop the word, put it back after the placeholder.
        L.olen = L.w1_out
        L.space = 0
    if L.olen + nd + 8 + (L.w1_end - L.w1_start) > L.ocap:
        _grow(L, nd + 8 + (L.w1_end - L.w1_start))
    if L.space:
        L.space = 0
        if L.olen > 0:
            L.out[L.olen] = 32
            L.olen += 1
    if L.olen > 0 and (_cc[L.out[L.olen - 1]] & CC_IDCONT):
        L.out[L.olen] = 32   # x'1' is not $1's neighbour: "x$1" would be one identifier
        L.olen += 1
    ostart = L.olen
    L.out[L.olen] = 36  # $
    L.olen += 1
    for k in range(nd - 1, -1, -1):
        L.out[L.olen] = digits[k]
        L.olen += 1
    _add_lit(L)
    lit = &L.lits[L.nlits - 1]
    lit.start = start
    lit.end = end
    lit.vstart = vstart
    lit.vend = vend
    lit.ostart = ostart
    lit.oend = L.olen
    lit.kind = kind
    lit.flags = flags | (LF_TYPED if typed else 0)
    lit.number = L.base + L.nlits
    L.stmt_nlits += 1
    if typed:
        L.out[L.olen] = 58
        L.out[L.olen + 1] = 58
        L.olen += 2
        memcpy(L.out + L.olen, L.s + L.w1_start, L.w1_end - L.w1_start)
        L.olen += L.w1_end - L.w1_start
        L.t1 = T_LIT     # the word became part of the literal
        L.k1 = KW_NONE
        L.f1 = 0
        L.typename = 2   # interval '1' second(3) -> $1::interval second(3)
    else:
        _push(L, T_LIT, KW_NONE, 0)
    if end < L.n and (_cc[L.s[end]] & CC_IDCONT):
        L.space = 1      # 'a'b is 'a' AS b; "$1b" would be one token
    return 0


cdef Py_ssize_t _skip_space(const uchar *s, Py_ssize_t n, Py_ssize_t j) noexcept:
    """Past whitespace and comments from j (to n if a comment does not end)."""
    cdef int depth
    while j < n:
        if _cc[s[j]] & CC_SPACE:
            j += 1
        elif s[j] == 45 and j + 1 < n and s[j + 1] == 45:
            while j < n and s[j] != 10 and s[j] != 13:
                j += 1
        elif s[j] == 47 and j + 1 < n and s[j + 1] == 42:
            j += 2
            depth = 1
            while j < n and depth:
                if s[j] == 42 and j + 1 < n and s[j + 1] == 47:
                    depth -= 1
                    j += 2
                elif s[j] == 47 and j + 1 < n and s[j + 1] == 42:
                    depth += 1
                    j += 2
                else:
                    j += 1
        else:
            break
    return j


cdef inline Py_ssize_t _ident_end(const uchar *s, Py_ssize_t n, Py_ssize_t j) noexcept:
    if j >= n or not (_cc[s[j]] & CC_IDSTART):
        return j
    j += 1
    while j < n and (_cc[s[j]] & CC_IDCONT):
        j += 1
    return j


cdef bint _interval_fields_follow(const uchar *s, Py_ssize_t n, Py_ssize_t j,
                                  int typed) noexcept:
    """Whether a string literal ending at j is an interval with fields: followed by
    `::interval day`, `AS interval hour to minute`, or for interval '1' (typed == 1), `day`."""
    cdef Py_ssize_t e
    cdef const KwSlot *slot
    if typed == 2:
        return False
    if not typed:
        j = _skip_space(s, n, j)
        if j + 1 < n and s[j] == 58 and s[j + 1] == 58:  # ::
            j += 2
        else:
            e = _ident_end(s, n, j)
            slot = _kw_find(s + j, e - j) if e > j else NULL
            if slot == NULL or slot.id != KW_AS:
                return False
            j = e
        while True:      # the type's name, schema-qualified or not
            j = _skip_space(s, n, j)
            e = _ident_end(s, n, j)
            if e == j:
                return False
            slot = _kw_find(s + j, e - j)
            j = _skip_space(s, n, e)
            if j < n and s[j] == 46:  # .
                j += 1
                continue
            break
        if slot == NULL or slot.id != KW_INTERVAL:
            return False
    j = _skip_space(s, n, j)
    e = _ident_end(s, n, j)
    slot = _kw_find(s + j, e - j) if e > j else NULL
    return slot != NULL and (slot.flags & F_FIELD) != 0


cdef Py_ssize_t _scan_quoted(const uchar *s, Py_ssize_t n, Py_ssize_t j, bint escapes,
                             bint *unsafe) noexcept:
    """From just after an opening quote to just after the closing one (-1: unterminated).

    With escapes (E'...'), sets unsafe for escapes whose value depends on the encoding: \\u,
    \\U, and octal or hex escapes giving a zero or non-ASCII byte.
    """
    cdef uchar c
    cdef int v, k
    while j < n:
        c = s[j]
        if c == 39:  # '
            if j + 1 < n and s[j + 1] == 39:
                j += 2
                continue
            return j + 1
        if c == 92 and escapes:  # backslash
            if j + 1 >= n:
                return -1
            c = s[j + 1]
            if c >= 48 and c <= 55:  # \ooo
                v = 0
                k = 1
                while k <= 3 and j + k < n and s[j + k] >= 48 and s[j + k] <= 55:
                    v = v * 8 + (s[j + k] - 48)
                    k += 1
                v &= 0xFF
                if v == 0 or v >= 0x80:
                    unsafe[0] = 1
                j += k
                continue
            if c == 120 and j + 2 < n and (_cc[s[j + 2]] & CC_HEX):  # \xh[h]
                v = _hexval(s[j + 2])
                k = 3
                if j + 3 < n and (_cc[s[j + 3]] & CC_HEX):
                    v = v * 16 + _hexval(s[j + 3])
                    k = 4
                if v == 0 or v >= 0x80:
                    unsafe[0] = 1
                j += k
                continue
            if c == 117 or c == 85 or c >= 0x80:  # \u, \U, a backslash before a multibyte char
                unsafe[0] = 1
            j += 2
            continue
        j += 1
    return -1


cdef inline int _hexval(uchar c) noexcept:
    if c <= 57:
        return c - 48
    return (c | 32) - 87


cdef Py_ssize_t _continuation(const uchar *s, Py_ssize_t n, Py_ssize_t j) noexcept:
    """If a string that ended at j goes on ('a'<newline>'b'), the index of the next opening
    quote, else -1. Postgres joins quoted strings separated by whitespace holding a newline
    (and -- comments); the joined string is one literal."""
    cdef bint newline = 0
    cdef uchar c
    while j < n:
        c = s[j]
        if c == 10 or c == 13:
            newline = 1
        elif c == 32 or c == 9 or c == 12:
            pass
        elif c == 45 and j + 1 < n and s[j + 1] == 45:
            j += 2
            while j < n and s[j] != 10 and s[j] != 13:
                j += 1
            continue
        elif c == 39 and newline:
            return j
        else:
            return -1
        j += 1
    return -1


cdef Py_ssize_t _string(Lexer *L, Py_ssize_t start, Py_ssize_t q, int kind, int flags,
                        bint kept) except -1:
    """A quoted string whose opening quote is at q (start: its prefix, if any)."""
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef bint unsafe = 0
    cdef bint escapes = (flags & LF_ESCAPES) != 0
    cdef bint bits = kind == LK_BIT_STRING
    cdef Py_ssize_t j, vend, k
    cdef uchar c
    if bits:
        j = q + 1
        while j < n and s[j] != 39:
            c = s[j]
            if flags & LF_HEX:
                if not (_cc[c] & CC_HEX):
                    unsafe = 1
            elif c != 48 and c != 49:
                unsafe = 1
            j += 1
        j = j + 1 if j < n else -1
    else:
        j = _scan_quoted(s, n, q + 1, escapes, &unsafe)
    if j < 0:
        raise ValueError(f"unterminated quoted string at offset {start}")
    vend = j - 1
    k = _continuation(s, n, j)
    while k >= 0:
        kept = 1      # rare: kept whole, the newline between the parts matters
        if bits:
            j = k + 1
            while j < n and s[j] != 39:
                j += 1
            j = j + 1 if j < n else -1
        else:
            j = _scan_quoted(s, n, k + 1, escapes, &unsafe)
        if j < 0:
            raise ValueError(f"unterminated quoted string at offset {k}")
        k = _continuation(s, n, j)
    _literal(L, start, j, q + 1, vend, kind, flags, not kept and not unsafe)
    return j


cdef Py_ssize_t _number(Lexer *L, Py_ssize_t i) except -1:
    """A number starting at i (a digit, or '.' then a digit)."""
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef Py_ssize_t j = i
    cdef int kind = LK_INTEGER
    cdef bint safe = 1
    cdef Py_ssize_t k
    while j < n and (_cc[s[j]] & CC_DIGIT):
        j += 1
    if j < n and s[j] == 46 and not (j + 1 < n and s[j + 1] == 46):  # '.', but not 1..2
        kind = LK_NUMERIC
        j += 1
        while j < n and (_cc[s[j]] & CC_DIGIT):
            j += 1
    if j < n and (s[j] == 101 or s[j] == 69):  # e, E
        k = j + 1
        if k < n and (s[k] == 43 or s[k] == 45):
            k += 1
        if k < n and (_cc[s[k]] & CC_DIGIT):
            kind = LK_NUMERIC
            j = k
            while j < n and (_cc[s[j]] & CC_DIGIT):
                j += 1
    if j < n and (_cc[s[j]] & CC_IDSTART):
        # 0x1F, 1_000 (Postgres 16), 123abc (trailing junk): kept as written.
        safe = 0
    if s[i] == 46 and i > 0 and (_cc[s[i - 1]] & CC_IDCONT or s[i - 1] == 41
                                 or s[i - 1] == 93 or s[i - 1] == 34):
        safe = 0      # t.5, (x).5: not a number where a placeholder would do
    _literal(L, i, j, i, j, kind, 0, safe)
    return j


cdef Py_ssize_t _dollar(Lexer *L, Py_ssize_t i) except -1:
    """At '$': a parameter $n, a dollar-quoted string, or a stray '$'."""
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef Py_ssize_t j = i + 1
    cdef Py_ssize_t k, tag
    cdef long v = 0
    if j < n and (_cc[s[j]] & CC_DIGIT):
        while j < n and (_cc[s[j]] & CC_DIGIT):
            if v <= MAX_PARAMS:
                v = v * 10 + (s[j] - 48)
            j += 1
        if v > MAX_PARAMS or (j < n and (_cc[s[j]] & CC_IDCONT)):
            L.redo_plain = 1    # $1_0, $1abc or beyond the protocol's limit: numbering unsure
        if v > L.max_param:
            L.max_param = <int>v
        _emit(L, s + i, j - i)
        _push(L, T_PARAM, KW_NONE, 0)
        L.typename = 0
        return j
    # $tag$ where tag is empty or an identifier without '$'.
    if j < n and s[j] != 36:
        if not (_cc[s[j]] & CC_IDSTART):
            j = -1
        else:
            j += 1
            while j < n and (_cc[s[j]] & CC_IDCONT) and s[j] != 36:
                j += 1
            if j >= n or s[j] != 36:
                j = -1
    if j < 0 or j >= n:
        _emit(L, s + i, 1)
        _push(L, T_OTHER, KW_NONE, 0)
        return i + 1
    tag = j + 1 - i
    k = j + 1
    while True:
        while k < n and s[k] != 36:
            k += 1
        if k + tag > n:
            raise ValueError(f"unterminated dollar-quoted string at offset {i}")
        if memcmp(s + k, s + i, tag) == 0:
            break
        k += 1
    _literal(L, i, k + tag, i + tag, k, LK_STRING, LF_DOLLAR, True)
    return k + tag


cdef Py_ssize_t _comment(Lexer *L, Py_ssize_t i) except -1:
    """A /* */ comment (nested) at i: kept if it is a hint, else it acts as a space."""
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef Py_ssize_t j = i + 2
    cdef int depth = 1
    while j < n:
        if s[j] == 42 and j + 1 < n and s[j + 1] == 47:  # */
            j += 2
            depth -= 1
            if depth == 0:
                break
        elif s[j] == 47 and j + 1 < n and s[j + 1] == 42:  # /*
            j += 2
            depth += 1
        else:
            j += 1
    if depth:
        raise ValueError(f"unterminated /* comment at offset {i}")
    if (i + 2 < n and s[i + 2] == 43) or _contains(s + i, j - i, b"multigres:", 10):
        _emit(L, s + i, j - i)
    L.space = 1
    return j


cdef bint _contains(const uchar *p, Py_ssize_t n, const char *needle, Py_ssize_t m) noexcept:
    cdef Py_ssize_t k
    for k in range(n - m + 1):
        if p[k] == <uchar>needle[0] and memcmp(p + k, needle, m) == 0:
            return True
    return False


cdef int _lex(Lexer *L) except -1:
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t j
    cdef uchar c, c1, cls
    cdef bint plain
    while i < n:
        c = s[i]
        cls = _cc[c]
        if cls & CC_SPACE:
            L.space = 1
            i += 1
            continue
        c1 = s[i + 1] if i + 1 < n else 0
        if cls & CC_IDSTART:
            if c1 == 39:  # X'
                if c == 101 or c == 69:  # E'
                    i = _string(L, i, i + 1, LK_STRING, LF_ESCAPES, False)
                    continue
                if c == 98 or c == 66:  # B'
                    i = _string(L, i, i + 1, LK_BIT_STRING, 0, False)
                    continue
                if c == 120 or c == 88:  # X'
                    i = _string(L, i, i + 1, LK_BIT_STRING, LF_HEX, False)
                    continue
                if c == 110 or c == 78:  # N'...' is NCHAR '...': kept
                    i = _string(L, i, i + 1, LK_STRING, 0 if L.scs else LF_ESCAPES, True)
                    continue
            elif c1 == 38 and (c == 117 or c == 85) and i + 2 < n:  # U&
                if s[i + 2] == 39:  # U&'...': kept (its escapes depend on UESCAPE)
                    i = _string(L, i, i + 2, LK_STRING, 0, True)
                    continue
                if s[i + 2] == 34:  # U&"..."
                    i = _qident(L, i, i + 2)
                    continue
            j = i + 1
            while j < n and (_cc[s[j]] & CC_IDCONT):
                j += 1
            _word(L, i, j)
            i = j
        elif c == 39:
            i = _string(L, i, i, LK_STRING, 0 if L.scs else LF_ESCAPES, False)
        elif c == 34:
            i = _qident(L, i, i)
        elif cls & CC_DIGIT or (c == 46 and (_cc[c1] & CC_DIGIT)):
            i = _number(L, i)
        elif c == 36:
            i = _dollar(L, i)
        elif c == 45 and c1 == 45:  # -- comment
            j = i + 2
            while j < n and s[j] != 10 and s[j] != 13:
                j += 1
            L.space = 1
            i = j
        elif c == 47 and c1 == 42:
            i = _comment(L, i)
        elif cls & CC_OP:
            j = i + 1
            while j < n and (_cc[s[j]] & CC_OP):
                if (s[j] == 45 and j + 1 < n and s[j + 1] == 45) or (
                        s[j] == 47 and j + 1 < n and s[j + 1] == 42):
                    break    # a comment starts inside the operator
                j += 1
            _emit(L, s + i, j - i)
            _push(L, T_SIGN if j == i + 1 and (c == 43 or c == 45) else T_OP, KW_NONE, 0)
            L.typename = 0
            i = j
        elif c == 40 or c == 91:
            _open(L, c)
            i += 1
        elif c == 41 or c == 93:
            _close(L, c)
            i += 1
        elif c == 59 and L.depth <= 0 and L.begin_depth <= 0:  # ;
            if L.stmt_open:
                _end_statement(L)
                _emit(L, s + i, 1)
                L.semi_at = L.olen - 1
            i += 1
        elif c == 44:
            _emit(L, s + i, 1)
            _push(L, T_COMMA, KW_NONE, 0)
            L.typename = 0
            i += 1
        elif c == 46:
            _emit(L, s + i, 1)
            _push(L, T_DOT, KW_NONE, 0)
            i += 1
        elif c == 58:  # :
            if c1 == 58:
                _emit(L, s + i, 2)
                _push(L, T_DCOLON, KW_NONE, 0)
                L.typename = 1
                i += 2
            elif c1 == 61:  # :=
                _emit(L, s + i, 2)
                _push(L, T_OP, KW_NONE, 0)
                i += 2
            else:
                _emit(L, s + i, 1)
                _push(L, T_COLON, KW_NONE, 0)
                i += 1
        else:
            _emit(L, s + i, 1)
            _push(L, T_OTHER, KW_NONE, 0)
            L.typename = 0
            i += 1
    _end_statement(L)
    if L.semi_at >= 0 and L.semi_at == L.olen - 1:
        L.olen -= 1              # the trailing ';' (and a space before it)
        if L.olen > 0 and L.out[L.olen - 1] == 32:
            L.olen -= 1
    return 0


cdef Py_ssize_t _qident(Lexer *L, Py_ssize_t start, Py_ssize_t q) except -1:
    cdef const uchar *s = L.s
    cdef Py_ssize_t n = L.n
    cdef Py_ssize_t j = q + 1
    while True:
        while j < n and s[j] != 34:
            j += 1
        if j >= n:
            raise ValueError(f"unterminated quoted identifier at offset {start}")
        if j + 1 < n and s[j + 1] == 34:
            j += 2
            continue
        break
    j += 1
    if L.stmt_lead:
        L.stmt_first = KW_NONE
    if L.nwords < MAX_WORDS:
        L.words[L.nwords] = KW_NONE
        L.nwords += 1
    if L.typename:
        L.typename = 2
    _emit(L, s + start, j - start)
    _push(L, T_QIDENT, KW_NONE, 0)
    return j


cdef void _init_lexer(Lexer *L, const uchar *s, Py_ssize_t n, bint scs, bint params, int base,
                      bint strict, uchar *stack_out) noexcept:
    L.s = s
    L.strict = strict
    L.n = n
    L.scs = scs
    L.params = params
    L.base = base
    if L.heap != NULL:
        L.out = L.heap           # keep the grown buffer for the second pass
    else:
        L.out = stack_out
        L.ocap = STACK_OUT
    L.olen = 0
    L.space = 0
    L.semi_at = -1
    if L.lits == NULL:
        L.lits = L.lstack
        L.lcap = STACK_LITS
    L.nlits = 0
    L.max_param = 0
    L.redo_plain = 0
    L.redo_strict = 0
    L.matched_params = 0
    L.statements = 0
    L.kind = SK_OTHER
    L.tx_verb = TX_NONE
    L.kind_mask = 0
    L.has_call = 0
    L.first_start = 0
    L.first_len = 0
    _reset_statement(L)


cdef Normalized normalize_ptr(const char *sql, Py_ssize_t n, object owner, bint scs):
    cdef uchar stack_out[STACK_OUT]
    cdef Lexer L
    cdef Normalized res
    cdef int i
    L.heap = NULL
    L.lits = NULL
    if owner is None:
        owner = PyBytes_FromStringAndSize(sql, n)
        sql = PyBytes_AS_STRING(owner)
    cdef bint params = True
    cdef bint strict = False
    cdef int base = 0
    try:
        # Each condition below holds at most once, so at most three passes; almost every
        # statement takes one.
        while True:
            _init_lexer(&L, <const uchar *>sql, n, scs, params, base, strict, stack_out)
            _lex(&L)
            if not L.nlits:
                break
            if L.redo_plain or L.statements > 1:
                params = False
            elif L.redo_strict and not strict:
                strict = True
                base = L.max_param
            elif L.max_param != base:
                # Placeholders go after the statement's own $n, known only at its end.
                base = L.max_param
            else:
                break
        res = Normalized.__new__(Normalized)
        res.sql = owner
        if L.olen == n and memcmp(L.out, sql, n) == 0:
            res.text = owner     # nothing to change: no copy
        else:
            res.text = PyBytes_FromStringAndSize(<char *>L.out, L.olen)
        res.statements = L.statements
        res.n_params = L.nlits
        res.param_base = L.max_param
        res.kind_mask = L.kind_mask
        res.has_function_call = L.has_call
        res.kind_c = L.kind
        res.tx_verb_c = L.tx_verb
        res._first_start = L.first_start
        res._first_len = L.first_len
        if L.nlits > 4:
            res._lits = <LitSpan *>PyMem_Malloc(L.nlits * sizeof(LitSpan))
            if res._lits == NULL:
                res._lits = res._inline
                raise MemoryError()
        if L.nlits:
            memcpy(res._lits, L.lits, L.nlits * sizeof(LitSpan))
        return res
    finally:
        if L.heap != NULL:
            PyMem_Free(L.heap)
        if L.lits != NULL and L.lits != L.lstack:
            PyMem_Free(L.lits)


def normalize(bytes sql not None, bint standard_conforming_strings=True):
    """Normalize one statement string (a simple Query's text, or a Parse's)."""
    return normalize_ptr(PyBytes_AS_STRING(sql), len(sql), sql, standard_conforming_strings)


# -- results ------------------------------------------------------------------------------------

@cython.final
@cython.freelist(8)
cdef class Normalized:
    """What normalize() found: the cache key, the literals and the statement's class."""

    def __cinit__(self):
        self._lits = self._inline
        self._params = None

    def __dealloc__(self):
        if self._lits != self._inline:
            PyMem_Free(self._lits)

    @property
    def kind(self):
        """StatementKind of the first statement."""
        return _KINDS[self.kind_c]

    @property
    def tx_verb(self):
        """TxVerb of the first statement (NONE unless it is transaction control)."""
        return _VERBS[self.tx_verb_c]

    @property
    def first_word(self):
        """The first statement's first keyword, lower-cased ('' if it has none)."""
        cdef bytes w = self.sql[self._first_start:self._first_start + self._first_len]
        return PyUnicode_DecodeASCII(w, len(w), "replace").lower()

    @property
    def params(self):
        """The literals that became parameters, in placeholder order."""
        cdef int i
        cdef Literal lit
        if self._params is None:
            out = []
            for i in range(self.n_params):
                lit = Literal.__new__(Literal)
                lit._sql = self.sql
                lit._span = self._lits[i]
                out.append(lit)
            self._params = out
        return self._params

    @property
    def values(self):
        """The parameters' values as the extended protocol's text format takes them."""
        return [lit.value for lit in self.params]

    def render(self, values=None):
        """The normalized text with literals in place of the placeholders: their source text
        (by default), or the given SQL snippets, one per parameter."""
        cdef Py_ssize_t pos = 0
        cdef int i
        cdef const LitSpan *sp
        if values is not None and len(values) != self.n_params:
            raise ValueError(f"{self.n_params} values expected, got {len(values)}")
        parts = []
        for i in range(self.n_params):
            sp = &self._lits[i]
            parts.append(self.text[pos:sp.ostart])
            if values is None:
                parts.append(self.sql[sp.start:sp.end])
            else:
                parts.append(values[i])
            pos = sp.oend
        parts.append(self.text[pos:])
        return b"".join(parts)

    def __repr__(self):
        return (f"Normalized(text={self.text!r}, kind={self.kind.name}, "
                f"statements={self.statements}, params={self.values!r})")


@cython.final
@cython.freelist(8)
cdef class Literal:
    """One literal that became a parameter."""
    cdef bytes _sql
    cdef LitSpan _span
    cdef object _value

    @property
    def number(self):
        """N of its placeholder $N."""
        return self._span.number

    @property
    def kind(self):
        return _LIT_KINDS[self._span.kind]

    @property
    def raw(self):
        """Its source text (quotes and prefix included): what a template puts back."""
        return self._sql[self._span.start:self._span.end]

    @property
    def typed(self):
        """Whether it was a typed literal (date '...'), now $N::date."""
        return (self._span.flags & LF_TYPED) != 0

    @property
    def value(self):
        """Its value in the text format of the extended protocol (bytes): a string's contents
        with '' and escapes decoded, a dollar-quoted body as is, a number's digits, a bit
        string's digits (X'1F' is b"x1F", which the bit type reads as hex)."""
        if self._value is None:
            self._value = _decode(self._sql, &self._span)
        return self._value

    @property
    def type_oid(self):
        """The type Postgres gives the literal: int4, int8 or numeric for numbers (by size, as
        Postgres does), bit for bit strings, 0 (unknown: inferred from context) for strings."""
        k = self._span.kind
        if k == LK_STRING:
            return OID_UNKNOWN
        if k == LK_BIT_STRING:
            return OID_BIT
        if k == LK_NUMERIC:
            return OID_NUMERIC
        v = int(self.value)
        if v <= 2147483647:
            return OID_INT4
        if v <= 9223372036854775807:
            return OID_INT8
        return OID_NUMERIC

    def __repr__(self):
        return f"Literal(${self.number}, {self.kind.name}, {self.raw!r})"


cdef bytes _decode(bytes sql, const LitSpan *sp):
    cdef const uchar *s = <const uchar *>PyBytes_AS_STRING(sql)
    cdef Py_ssize_t j = sp.vstart
    cdef Py_ssize_t end = sp.vend
    cdef Py_ssize_t k
    cdef uchar c
    cdef int v
    cdef bytearray out
    if sp.kind == LK_BIT_STRING:
        return (b"x" if sp.flags & LF_HEX else b"") + sql[sp.vstart:sp.vend]
    if sp.kind != LK_STRING or sp.flags & LF_DOLLAR:
        return sql[sp.vstart:sp.vend]
    out = bytearray()
    while j < end:
        c = s[j]
        if c == 39:          # '' (the only quote inside)
            out.append(39)
            j += 2
        elif c == 92 and sp.flags & LF_ESCAPES:
            c = s[j + 1]
            if c >= 48 and c <= 55:
                v = 0
                k = 1
                while k <= 3 and j + k < end and s[j + k] >= 48 and s[j + k] <= 55:
                    v = v * 8 + (s[j + k] - 48)
                    k += 1
                out.append(v & 0xFF)
                j += k
                continue
            if c == 120 and j + 2 < end and (_cc[s[j + 2]] & CC_HEX):
                v = _hexval(s[j + 2])
                k = 3
                if j + 3 < end and (_cc[s[j + 3]] & CC_HEX):
                    v = v * 16 + _hexval(s[j + 3])
                    k = 4
                out.append(v)
                j += k
                continue
            if c == 98:
                out.append(8)
            elif c == 102:
                out.append(12)
            elif c == 110:
                out.append(10)
            elif c == 114:
                out.append(13)
            elif c == 116:
                out.append(9)
            else:
                out.append(c)
            j += 2
        else:
            k = j
            while k < end and s[k] != 39 and not (s[k] == 92 and sp.flags & LF_ESCAPES):
                k += 1
            out += sql[j:k]
            j = k
    return bytes(out)
