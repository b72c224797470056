/* Counter-based RNG: draw n of key k is mix(k, n), a SplitMix64-style bijective finalizer
 * applied to (key + golden * (n + 1)). Pure function of (key, n): reproducible per worker,
 * per round, whatever the threads do. */
#include "dl4c/core.h"

#include <math.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

dl4c_rng dl4c_rng_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t k = mix64(seed ^ 0x6a09e667f3bcc908ULL);
    k = mix64(k ^ (a + 0x9e3779b97f4a7c15ULL));
    k = mix64(k ^ (b + 0x3c6ef372fe94f82bULL));
    k = mix64(k ^ (c + 0xa54ff53a5f1d36f1ULL));
    return (dl4c_rng){.key = k, .counter = 0};
}

uint64_t dl4c_rng_u64(dl4c_rng *r) {
    uint64_t n = r->counter++;
    return mix64(r->key + 0x9e3779b97f4a7c15ULL * (n + 1));
}

double dl4c_rng_uniform(dl4c_rng *r) {
    return (double)(dl4c_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double dl4c_rng_normal(dl4c_rng *r) {
    double u1 = dl4c_rng_uniform(r), u2 = dl4c_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t dl4c_rng_below(dl4c_rng *r, uint64_t n) {
    DL4C_ASSERT(n > 0);
    /* rejection sampling: unbiased */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do { x = dl4c_rng_u64(r); } while (x >= limit);
    return x % n;
}

void dl4c_rng_shuffle(dl4c_rng *r, int64_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)dl4c_rng_below(r, (uint64_t)i + 1);
        int64_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
}
