/*
 * The hash functions of the vindexes (pyx/vhash.pyx; docs/vschema.md defines them).
 *
 * mg_hash64: the `hash` vindex. The first output of SplitMix64 seeded with the value:
 *     z = x + 0x9E3779B97F4A7C15
 *     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *     z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *     return z ^ (z >> 31)
 * all mod 2^64. Each step is a bijection of the 64-bit integers (adding a constant, xor with
 * a right shift of itself, multiplying by an odd constant), so distinct values never collide,
 * and mg_unhash64 undoes it.
 *
 * mg_xxh64: XXH64 (Yann Collet's xxHash, 64-bit variant), written here from the published
 * algorithm description; lanes are read little-endian, as the specification says, whatever
 * the machine's byte order.
 */
#ifndef MULTIGRES_VHASH_H
#define MULTIGRES_VHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MG_SPLITMIX_GAMMA 0x9E3779B97F4A7C15ULL
#define MG_SPLITMIX_M1 0xBF58476D1CE4E5B9ULL
#define MG_SPLITMIX_M2 0x94D049BB133111EBULL
/* The multiplicative inverses of M1 and M2 mod 2^64. */
#define MG_SPLITMIX_M1_INV 0x96DE1B173F119089ULL
#define MG_SPLITMIX_M2_INV 0x319642B2D24D8EC3ULL

static inline uint64_t mg_hash64(uint64_t x) {
    uint64_t z = x + MG_SPLITMIX_GAMMA;
    z = (z ^ (z >> 30)) * MG_SPLITMIX_M1;
    z = (z ^ (z >> 27)) * MG_SPLITMIX_M2;
    return z ^ (z >> 31);
}

static inline uint64_t mg_unhash64(uint64_t z) {
    /* x ^= x >> s is undone by xoring in x >> s, x >> 2s, ... while the shift is < 64. */
    z = z ^ (z >> 31) ^ (z >> 62);
    z *= MG_SPLITMIX_M2_INV;
    z = z ^ (z >> 27) ^ (z >> 54);
    z *= MG_SPLITMIX_M1_INV;
    z = z ^ (z >> 30) ^ (z >> 60);
    return z - MG_SPLITMIX_GAMMA;
}

#define MG_XXH_P1 0x9E3779B185EBCA87ULL
#define MG_XXH_P2 0xC2B2AE3D27D4EB4FULL
#define MG_XXH_P3 0x165667B19E3779F9ULL
#define MG_XXH_P4 0x85EBCA77C2B2AE63ULL
#define MG_XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t mg_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t mg_le64(const unsigned char *p) {
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static inline uint32_t mg_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t mg_xxh_round(uint64_t acc, uint64_t lane) {
    acc += lane * MG_XXH_P2;
    acc = mg_rotl64(acc, 31);
    return acc * MG_XXH_P1;
}

static inline uint64_t mg_xxh_merge(uint64_t acc, uint64_t v) {
    acc ^= mg_xxh_round(0, v);
    return acc * MG_XXH_P1 + MG_XXH_P4;
}

static inline uint64_t mg_xxh64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)data;
    const unsigned char *end = p + len;
    uint64_t h;

    if (len >= 32) {
        const unsigned char *limit = end - 32;
        uint64_t v1 = seed + MG_XXH_P1 + MG_XXH_P2;
        uint64_t v2 = seed + MG_XXH_P2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - MG_XXH_P1;
        do {
            v1 = mg_xxh_round(v1, mg_le64(p));
            v2 = mg_xxh_round(v2, mg_le64(p + 8));
            v3 = mg_xxh_round(v3, mg_le64(p + 16));
            v4 = mg_xxh_round(v4, mg_le64(p + 24));
            p += 32;
        } while (p <= limit);
        h = mg_rotl64(v1, 1) + mg_rotl64(v2, 7) + mg_rotl64(v3, 12) + mg_rotl64(v4, 18);
        h = mg_xxh_merge(h, v1);
        h = mg_xxh_merge(h, v2);
        h = mg_xxh_merge(h, v3);
        h = mg_xxh_merge(h, v4);
    } else {
        h = seed + MG_XXH_P5;
    }
    h += (uint64_t)len;

    while (end - p >= 8) {
        h ^= mg_xxh_round(0, mg_le64(p));
        h = mg_rotl64(h, 27) * MG_XXH_P1 + MG_XXH_P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)mg_le32(p) * MG_XXH_P1;
        h = mg_rotl64(h, 23) * MG_XXH_P2 + MG_XXH_P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * MG_XXH_P5;
        h = mg_rotl64(h, 11) * MG_XXH_P1;
        p++;
    }

    h ^= h >> 33;
    h *= MG_XXH_P2;
    h ^= h >> 29;
    h *= MG_XXH_P3;
    h ^= h >> 32;
    return h;
}

/* The 8 bytes of v, big-endian (a keyspace id). */
static inline void mg_store_be64(unsigned char *out, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t mg_load_be64(const unsigned char *p) {
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
           ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
           ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

#endif
