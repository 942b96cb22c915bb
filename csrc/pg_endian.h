/*
 * Big-endian (network order) loads and stores of 16/32/64-bit integers at any address.
 *
 * The Postgres wire protocol sends every integer big-endian, and the fields sit at arbitrary
 * offsets inside a message, so the pointers here are not aligned. memcpy into a local is the
 * portable way to read an unaligned value (a cast and dereference is undefined behaviour); GCC
 * and Clang turn the memcpy + byte swap into a single load + bswap (movbe on x86), so these cost
 * one or two instructions. Other compilers get the shift-and-or form, also correct everywhere.
 */
#ifndef MULTIGRES_PG_ENDIAN_H
#define MULTIGRES_PG_ENDIAN_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PG_ENDIAN_SWAP16(x) __builtin_bswap16(x)
#define PG_ENDIAN_SWAP32(x) __builtin_bswap32(x)
#define PG_ENDIAN_SWAP64(x) __builtin_bswap64(x)
#define PG_ENDIAN_HAVE_SWAP 1
#elif defined(__GNUC__) && defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
/* Already network order: a plain (unaligned-safe) copy is enough. */
#define PG_ENDIAN_SWAP16(x) (x)
#define PG_ENDIAN_SWAP32(x) (x)
#define PG_ENDIAN_SWAP64(x) (x)
#define PG_ENDIAN_HAVE_SWAP 1
#endif

#ifdef PG_ENDIAN_HAVE_SWAP

static inline int16_t pg_load_int16(const char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return (int16_t)PG_ENDIAN_SWAP16(v);
}

static inline int32_t pg_load_int32(const char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return (int32_t)PG_ENDIAN_SWAP32(v);
}

static inline int64_t pg_load_int64(const char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return (int64_t)PG_ENDIAN_SWAP64(v);
}

static inline void pg_store_int16(char *p, int16_t x) {
    uint16_t v = PG_ENDIAN_SWAP16((uint16_t)x);
    memcpy(p, &v, sizeof(v));
}

static inline void pg_store_int32(char *p, int32_t x) {
    uint32_t v = PG_ENDIAN_SWAP32((uint32_t)x);
    memcpy(p, &v, sizeof(v));
}

static inline void pg_store_int64(char *p, int64_t x) {
    uint64_t v = PG_ENDIAN_SWAP64((uint64_t)x);
    memcpy(p, &v, sizeof(v));
}

#else /* portable fallback: byte order independent */

static inline int16_t pg_load_int16(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (int16_t)(((uint16_t)u[0] << 8) | (uint16_t)u[1]);
}

static inline int32_t pg_load_int32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (int32_t)(((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
                     ((uint32_t)u[2] << 8) | (uint32_t)u[3]);
}

static inline int64_t pg_load_int64(const char *p) {
    return (int64_t)(((uint64_t)(uint32_t)pg_load_int32(p) << 32) |
                     (uint64_t)(uint32_t)pg_load_int32(p + 4));
}

static inline void pg_store_int16(char *p, int16_t x) {
    uint16_t v = (uint16_t)x;
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static inline void pg_store_int32(char *p, int32_t x) {
    uint32_t v = (uint32_t)x;
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static inline void pg_store_int64(char *p, int64_t x) {
    uint64_t v = (uint64_t)x;
    pg_store_int32(p, (int32_t)(uint32_t)(v >> 32));
    pg_store_int32(p + 4, (int32_t)(uint32_t)v);
}

#endif /* PG_ENDIAN_HAVE_SWAP */

#endif /* MULTIGRES_PG_ENDIAN_H */
