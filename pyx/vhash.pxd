# The interface of pyx/vhash.pyx: the vindex hash functions (csrc/vhash.h) and the C entry
# points another extension cimports (``from multigres._cy.vhash cimport mg_hash64, int64_of``),
# e.g. to route rows it decodes without a Python call per value.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "vhash.h":
    uint64_t mg_hash64(uint64_t x) nogil
    uint64_t mg_unhash64(uint64_t x) nogil
    uint64_t mg_xxh64(const void *data, size_t length, uint64_t seed) nogil
    void mg_store_be64(unsigned char *out, uint64_t v) nogil
    uint64_t mg_load_be64(const unsigned char *p) nogil


# How xxhash_ids reads a value (XXI_AUTO: by its Python type).
cdef enum XxInput:
    XXI_AUTO = 0
    XXI_INT = 1
    XXI_TEXT = 2
    XXI_BYTES = 3


# The 64-bit integer of an int, or of the text form of one (str or bytes, as Postgres's
# int8in reads it: spaces around, an optional sign, decimal digits). ValueError otherwise;
# OverflowError outside the int64 range.
cdef int int64_of(object value, int64_t *out) except -1

# One 8-byte keyspace id (bytes) from a uint64.
cdef bytes ksid_of(uint64_t v)
