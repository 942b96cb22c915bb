# The interface of the SQL normalizer (pyx/sqlnorm.pyx): what other extensions cimport with
# ``from multigres._cy.sqlnorm cimport Normalized, normalize_ptr, SK_READ, ...``.
#
# A Cython caller gets the same Normalized object as Python code, and reads its typed fields
# (kind_c, tx_verb_c, statements, n_params, param_base) and the literal spans (lit_at) without
# creating any Python object besides the normalized text.


# What a statement does, as a router must know (Python: multigres.sql.normalize.StatementKind).
cdef enum StatementKindC:
    SK_READ = 0
    SK_WRITE = 1
    SK_TRANSACTION = 2
    SK_SESSION = 3
    SK_DDL = 4
    SK_OTHER = 5

# Which transaction statement (Python: TxVerb). TX_NONE for every other class.
cdef enum TxVerbC:
    TX_NONE = 0
    TX_BEGIN = 1               # BEGIN, START TRANSACTION
    TX_COMMIT = 2              # COMMIT, END
    TX_ROLLBACK = 3            # ROLLBACK, ABORT
    TX_SAVEPOINT = 4
    TX_RELEASE = 5
    TX_ROLLBACK_TO = 6
    TX_PREPARE_TRANSACTION = 7
    TX_COMMIT_PREPARED = 8
    TX_ROLLBACK_PREPARED = 9
    TX_COMMIT_AND_CHAIN = 10
    TX_ROLLBACK_AND_CHAIN = 11

# What a literal that became a parameter was (Python: LiteralKind).
cdef enum LiteralKindC:
    LK_STRING = 0              # '...', E'...', $tag$...$tag$ (also a typed literal's string)
    LK_INTEGER = 1             # decimal digits only
    LK_NUMERIC = 2             # decimal point and/or exponent
    LK_BIT_STRING = 3          # B'...' or X'...'

# Literal flags (LitSpan.flags).
cdef enum:
    LF_ESCAPES = 1             # backslash escapes (E'...', or '...' without standard_conforming_strings)
    LF_DOLLAR = 2              # dollar-quoted: the value is the body as is
    LF_HEX = 4                 # X'...'
    LF_TYPED = 8               # typed literal (date '...'), rewritten as $N::date


# One literal that became a parameter: where it is in the SQL and where its placeholder is in
# the normalized text.
ctypedef struct LitSpan:
    Py_ssize_t start           # the literal in the SQL, prefix and quotes included
    Py_ssize_t end
    Py_ssize_t vstart          # its contents: between the quotes, or the digits
    Py_ssize_t vend
    Py_ssize_t ostart          # "$N" in the normalized text
    Py_ssize_t oend
    int kind                   # LiteralKindC
    int flags                  # LF_*
    int number                 # N


cdef class Normalized:
    cdef readonly bytes text           # the normalized text: the cache key
    cdef readonly bytes sql            # the statement as given
    cdef readonly int statements       # non-empty statements (split at top-level ';')
    cdef readonly int n_params         # literals that became parameters
    cdef readonly int param_base       # highest $n already in the SQL: placeholders are base+1..
    cdef readonly int kind_mask        # 1 << StatementKind of every statement
    cdef readonly bint has_function_call
    cdef readonly int kind_c           # StatementKindC of the first statement
    cdef readonly int tx_verb_c        # TxVerbC of the first statement
    cdef Py_ssize_t _first_start       # the first statement's first keyword in sql
    cdef Py_ssize_t _first_len
    cdef LitSpan *_lits
    cdef LitSpan _inline[4]
    cdef object _params                # list of Literal, built on first use

    cdef inline const LitSpan *lit_at(self, int i) noexcept:
        return &self._lits[i]


# Normalize n bytes at sql. ``owner`` is the bytes object holding exactly those bytes (kept as
# Normalized.sql, and returned as the text when nothing changes); None makes a copy.
# ``scs`` is the session's standard_conforming_strings. Raises ValueError on unterminated
# quotes or comments.
cdef Normalized normalize_ptr(const char *sql, Py_ssize_t n, object owner, bint scs)
