# The interface of the value layer (pyx/pgvalue.pyx): what the merge engine cimports with
# ``from multigres._cy.pgvalue cimport RowView, SortSpec, compare_rows, AggSpec, AggState, ...``.
#
# Values are Postgres's text forms as a DataRow carries them (simple query protocol). Nothing
# here decodes a value into a Python object on the hot path: a row is a view over the DataRow
# payload (column spans, no copies), a comparison parses the two texts in C, and an aggregate
# state folds partial texts into C fields (a Python object only where a value outgrows them).
#
# Errors cross these functions as Python exceptions with explicit error returns: ``except -1``
# for int results, ``except -2`` for comparisons (which return -1, 0 or 1).

from libc.stdint cimport int64_t, uint32_t


# A column of a DataRow: where its text starts (from the start of the payload) and its length;
# len == -1 is SQL NULL.
ctypedef struct ColSpan:
    Py_ssize_t off
    Py_ssize_t len


# How a type's text is compared (one switch in compare_values). TC_UNSUPPORTED: not at all.
cdef enum TypeClass:
    TC_UNSUPPORTED = 0
    TC_INT = 1                 # int2, int4, int8, oid: parsed to int64
    TC_NUMERIC = 2             # exact decimal text; NaN above +Infinity above every number
    TC_FLOAT = 3               # float4, float8: NaN above everything, -0 = 0
    TC_BOOL = 4                # f < t
    TC_TEXT = 5                # text, varchar, name: bytes, C collation
    TC_BPCHAR = 6              # bytes without trailing spaces, C collation
    TC_BYTEA = 7               # '\x..' hex output: the bytes
    TC_DATE = 8                # ISO DateStyle, BC, +-infinity
    TC_TIME = 9
    TC_TIMESTAMP = 10
    TC_TIMESTAMPTZ = 11        # the instant (the printed offset applied)
    TC_INTERVAL = 12           # IntervalStyle postgres; months as 30 days, days as 24 hours
    TC_UUID = 13


# The comparison class of a type OID (TC_UNSUPPORTED for the types we cannot order).
cdef int type_class(uint32_t oid) noexcept nogil

# Frame a DataRow payload (the message after its type byte and length): fills out[0:count]
# with the column spans when count <= cap, and returns count (the caller allocates and calls
# again when count > cap). A malformed payload raises ProtocolError (SQLSTATE 08P01).
cdef Py_ssize_t datarow_spans(const unsigned char *p, Py_ssize_t n, ColSpan *out,
                              Py_ssize_t cap) except -1

# Compare two non-NULL texts of one type class, ascending: -1, 0 or 1. A text that is not in
# the expected output format raises ValueFormatError (SQLSTATE 0A000).
cdef int compare_values(int tclass, const unsigned char *a, Py_ssize_t an,
                        const unsigned char *b, Py_ssize_t bn) except -2


# A DataRow's columns, framed in place over the bytes that hold it (kept alive by ``data``).
cdef class RowView:
    cdef readonly object data          # the bytes object the payload lives in
    cdef const unsigned char *base     # the payload's first byte (the column count)
    cdef Py_ssize_t payload_len
    cdef readonly Py_ssize_t ncols
    cdef ColSpan *cols
    cdef ColSpan _inline[8]            # rows of up to 8 columns need no allocation

    # The text of column i (pointer and length, -1 for NULL); i must be < ncols.
    cdef inline const unsigned char *col_ptr(self, Py_ssize_t i) noexcept:
        return self.base + self.cols[i].off

    cdef inline Py_ssize_t col_len(self, Py_ssize_t i) noexcept:
        return self.cols[i].len


# Frame a payload held in ``data`` (bytes) between start and end (end < 0: to its end).
cdef RowView row_view(object data, Py_ssize_t start, Py_ssize_t end)

# The DataRow payload of a sequence of column texts (bytes, None for NULL).
cpdef bytes build_datarow(object values)


ctypedef struct SortKeyC:
    Py_ssize_t column
    int tclass
    bint desc
    bint nulls_first


# One ORDER BY item: a column of the rows, its type, and the direction options.
cdef class SortKey:
    cdef readonly Py_ssize_t column
    cdef readonly uint32_t type_oid
    cdef readonly bint desc
    cdef readonly bint nulls_first


# An ORDER BY list, immutable (shared by cached plans).
cdef class SortSpec:
    cdef readonly tuple keys
    cdef SortKeyC *_keys
    cdef Py_ssize_t _n
    cdef readonly Py_ssize_t min_columns   # rows must have at least this many columns


# Compare two rows under an ORDER BY list: -1 when a sorts before b, 0 when they tie on every
# key, 1 after. A row too short for the keys raises ProtocolError.
cdef int compare_rows(RowView a, RowView b, SortSpec spec) except -2

# A key (bytes) equal for two rows exactly when compare_rows finds them tied: for hashing
# GROUP BY and DISTINCT ('1.0' and '1.00', 0 and -0, the same instant in two offsets, '1 mon'
# and '30 days' are one group, as in Postgres). Only the key's columns and types matter.
cdef bytes group_key(RowView row, SortSpec spec)


# Aggregate kinds (Python: multigres._cy.pgvalue.AggKind).
cdef enum AggKindC:
    AGG_COUNT = 0
    AGG_SUM = 1
    AGG_MIN = 2
    AGG_MAX = 3
    AGG_AVG = 4
    AGG_BOOL_AND = 5
    AGG_BOOL_OR = 6
    AGG_STRING_AGG = 7
    AGG_ARRAY_AGG = 8


# One aggregate of a plan: what it is over which input type, and how its partials combine.
# Immutable; new_state() makes the per-group accumulator.
cdef class AggSpec:
    cdef readonly int kind
    cdef readonly uint32_t input_oid
    cdef readonly uint32_t result_oid      # the type of the final value
    cdef readonly tuple partial_oids       # the types of the partial columns a shard sends
    cdef readonly object delimiter         # string_agg's delimiter (bytes, None for NULL)
    cdef int tclass                        # min/max: how to compare
    cdef int impl                          # which accumulator
    cdef bytes _delim_text                 # the delimiter as it goes into the partial text
    cdef AggState new_state(self)
    # On partials as objects (texts or None; (sum, count) pairs for avg): two combined into
    # one, and a partial's final text. The merge engine folds rows with AggState instead.
    cpdef object combine(self, object a, object b)
    cpdef object final(self, object partial)


# The accumulator of one aggregate in one group. Partials are folded in with add() (and, for
# avg, add_count() with the count column); final_value() gives the final text (bytes, or None
# for SQL NULL) exactly as Postgres prints it, partial_value() the combined partial.
cdef class AggState:
    cdef readonly AggSpec spec
    cdef int add(self, const unsigned char *p, Py_ssize_t n) except -1
    cdef int add_count(self, const unsigned char *p, Py_ssize_t n) except -1
    # Fold in one input value instead of a partial (the transition function: count counts
    # it, avg adds it and counts it, array_agg quotes it as an element, NULL included): for
    # aggregates the gateway computes from rows itself, DISTINCT ones.
    cdef int add_input(self, const unsigned char *p, Py_ssize_t n) except -1
    # Fold the partial at ``column`` of a row (and column + 1, the count, for avg).
    cdef int add_row(self, RowView row, Py_ssize_t column) except -1
    cdef object final_value(self)
    cdef object partial_value(self)
