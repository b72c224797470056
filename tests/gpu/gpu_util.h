/* Helpers shared by the GPU tests: skipping without a GPU, random buffers on both backends,
 * norm-wise comparison. */
#ifndef DL4C_TESTS_GPU_UTIL_H
#define DL4C_TESTS_GPU_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE). */
#define GPU_SKIP 77

/* Exits 77 with a clear message when this process cannot use a GPU. */
static inline void gpu_require(void) {
    const int n = dl4c_cuda_device_count();
    if (n > 0) return;
    const dl4c_backend *be = NULL;
    dl4c_status s = dl4c_backend_open(DL4C_DEVICE_CUDA, 0, false, &be);
    printf("SKIPPED: no CUDA device (%s)\n", s ? dl4c_error_message() : "none found");
    fflush(stdout);
    exit(GPU_SKIP);
}

/* ||a - b|| / max(||b||, tiny), in double. */
static inline double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = (double)a[i] - b[i];
        d += x * x;
        r += (double)b[i] * b[i];
    }
    return sqrt(d) / (r > 1e-300 ? sqrt(r) : 1e-150);
}

static inline double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = fabs((double)a[i] - b[i]);
        if (x > m || isnan(x)) m = x;
    }
    return m;
}

/* Uniform floats in [lo, hi) from a counter-based generator. */
static inline float *rand_host(int64_t n, uint64_t seed, float lo, float hi) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    dl4c_rng r = dl4c_rng_make(seed, 77, 0, 0);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)dl4c_rng_uniform(&r);
    return p;
}

/* A device copy of host[0..n). */
static inline float *to_dev(const dl4c_backend *g, const float *host, int64_t n) {
    float *d = g->alloc(g, sizeof(float) * (size_t)(n ? n : 1));
    if (n) g->upload(g, d, host, sizeof(float) * (size_t)n);
    return d;
}

/* A host copy of dev[0..n) (caller frees). */
static inline float *to_host(const dl4c_backend *g, const float *dev, int64_t n) {
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (n) g->download(g, h, dev, sizeof(float) * (size_t)n);
    return h;
}

#endif
