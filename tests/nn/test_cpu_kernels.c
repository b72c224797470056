/* The CPU backend's fast kernels (cpu_avx512.c, when the machine has AVX-512) against its
 * portable ones (cpu.c, OpenBLAS and loops):
 *  - elementwise ops, pooling (non-overlapping windows), updaters: the same floats, bit for bit,
 *    NaN, infinities and signed zeros included (the exact path near underflow with both of its
 *    ways of rounding to float);
 *  - products and convolutions (sums in another order): within 1e-5 relative (norm-wise);
 *  - every fast op: the same bits with 1 and 2 threads.
 * On a machine without AVX-512 there is nothing to compare: it passes at once. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backend/cpu_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define MXCSR() (_mm_getcsr() & ~0x3fu)   /* the control bits: rounding, FTZ, DAZ, masks (not the sticky flags) */
#else
#define MXCSR() 0u
#endif

static const dl4c_backend *F, *G;   /* fast, generic */

static float *rnd(int64_t n, uint64_t seed, double scale) {
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    dl4c_rng r = dl4c_rng_make(seed, 5, 6, 7);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(scale * dl4c_rng_normal(&r));
    return v;
}

static float *dup(const float *v, int64_t n) {
    float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
    memcpy(d, v, sizeof(float) * (size_t)n);
    return d;
}

static void close_to(const char *what, const float *a, const float *b, int64_t n, double tol) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    const double e = sqrt(num / (den > 0 ? den : 1));
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %.1g", what, e, tol);
}

static void same_bits(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %lld differs: %.9g vs %.9g", what, (long long)i, a[i], b[i]);
}

static void *alloc_f(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* ---- products ---- */
/* n floats followed by GUARD floats of a marker: a kernel writing past its output shows (masked
 * vector stores are not checked by AddressSanitizer). */
#define GUARD 64
static float *guarded(int64_t n) {
    float *p = alloc_f(n + GUARD);
    for (int i = 0; i < GUARD; i++) p[n + i] = 1234.5f;
    return p;
}
static void guard_intact(const char *what, const float *p, int64_t n) {
    for (int i = 0; i < GUARD; i++)
        if (p[n + i] != 1234.5f) fail_msg("%s: written past its end (element %lld)", what, (long long)(n + i));
}

/* Operands near underflow: the fast products scale an operand with tiny entries (below 2^-100)
 * by 2^32 and the sums back (cpu_avx512.c, "subnormal weights"), and fall back to the plain
 * product when an entry is too big for that. TINY_A / TINY_B: that operand's entries all times
 * 2^-130 (subnormal and barely normal floats, and so are the sums: their rounding is the check);
 * BIG_B: and one entry of B 2^100 (2^32 times it is not a float: the plain product must be taken);
 * SMALL_B: B's entries times 2^-60 (normal, not scaled). TINY_A with TINY_B or SMALL_B: products
 * that underflow even scaled (the scaled k loop runs with flush-to-zero, which must leave the
 * results as the plain product's and the caller's MXCSR as it was). */
enum { TINY_A = 1, TINY_B = 2, BIG_B = 4, SMALL_B = 8 };

/* Every pool thread's MXCSR (the helpers run tasks of the 2-thread product too): any that
 * differs from want is reported. */
#define CSR_TASKS 256
static unsigned csr_seen[CSR_TASKS];
static void csr_task(void *ctx, int t) {
    (void)ctx;
    for (volatile int spin = 0; spin < 2000; spin++) {}   /* long enough for a helper to take some */
    csr_seen[t] = MXCSR();
}
static void check_pool_csr(const char *what, unsigned want) {
    dl4c_cpu_set_threads(2);
    dl4c_cpu_parallel(CSR_TASKS, csr_task, NULL);
    dl4c_cpu_set_threads(1);
    for (int t = 0; t < CSR_TASKS; t++)
        if (csr_seen[t] != want) fail_msg("%s: a pool thread's MXCSR is %#x, not %#x", what, csr_seen[t], want);
}

static void check_gemm_tiny(bool ta, bool tb, int m, int n, int k, float beta, int tiny) {
    float *a = rnd((int64_t)m * k, 1 + m, 1), *b = rnd((int64_t)k * n, 2 + n, 1), *c0 = rnd((int64_t)m * n, 3, 1);
    if (tiny) for (int64_t i = 0; i < (int64_t)m * n; i++) c0[i] *= 0x1p-120f;
    if (tiny & TINY_A) for (int64_t i = 0; i < (int64_t)m * k; i++) a[i] *= 0x1p-130f;
    if (tiny & TINY_B) for (int64_t i = 0; i < (int64_t)k * n; i++) b[i] *= 0x1p-130f;
    if (tiny & BIG_B) b[(int64_t)k * n / 2] = 0x1p100f;
    if (tiny & SMALL_B) for (int64_t i = 0; i < (int64_t)k * n; i++) b[i] *= 0x1p-60f;
    float *c1 = guarded((int64_t)m * n), *c2 = guarded((int64_t)m * n);
    memcpy(c1, c0, sizeof(float) * (size_t)m * n);
    memcpy(c2, c0, sizeof(float) * (size_t)m * n);
    const int lda = ta ? m : k, ldb = tb ? k : n;
    G->gemm(G, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c0, n);
    const unsigned csr = MXCSR();
    dl4c_cpu_set_threads(1);
    F->gemm(F, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c1, n);
    const unsigned csr1 = MXCSR();
    dl4c_cpu_set_threads(2);
    F->gemm(F, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c2, n);
    const unsigned csr2 = MXCSR();
    dl4c_cpu_set_threads(1);
    char what[96];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d beta=%g tiny=%d", ta, tb, m, n, k, beta, tiny);
    if (csr1 != csr || csr2 != csr) fail_msg("%s: MXCSR %#x before, %#x / %#x after", what, csr, csr1, csr2);
    check_pool_csr(what, csr);
    close_to(what, c1, c0, (int64_t)m * n, 1e-5);
    same_bits(what, c2, c1, (int64_t)m * n);
    guard_intact(what, c1, (int64_t)m * n);
    guard_intact(what, c2, (int64_t)m * n);
    free(a); free(b); free(c0); free(c1); free(c2);
}

static void check_gemm(bool ta, bool tb, int m, int n, int k, float beta) { check_gemm_tiny(ta, tb, m, n, k, beta, 0); }

static void test_gemm(void **state) {
    const int shapes[][3] = {{1, 1, 1}, {32, 200, 200}, {32, 10, 200}, {200, 200, 32}, {13, 17, 5},
                             {50, 512, 500}, {3, 33, 70}, {100, 1, 9}, {25, 47, 1}, {64, 300, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int be = 0; be < 2; be++) check_gemm(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], (float)be);
}

static void test_gemm_tiny(void **state) {
    const int shapes[][3] = {{32, 200, 200}, {16, 200, 200}, {200, 200, 32}, {13, 47, 70}, {50, 512, 500}};
    const int kinds[] = {TINY_A, TINY_B, TINY_B | BIG_B, TINY_A | TINY_B, TINY_A | SMALL_B};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (size_t q = 0; q < sizeof kinds / sizeof kinds[0]; q++)
                check_gemm_tiny(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 0.0f, kinds[q]);
}

static void test_dense_forward_act(void **state) {
    const dl4c_activation acts[] = {DL4C_IDENTITY, DL4C_RELU, DL4C_LEAKYRELU, DL4C_SIGMOID, DL4C_TANH, DL4C_SOFTMAX};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        const int n = 37, in = 45, out = 21;
        float *x = rnd((int64_t)n * in, 4, 1), *w = rnd((int64_t)in * out, 5, 0.3), *b = rnd(out, 6, 1);
        float *y0 = alloc_f((int64_t)n * out), *y1 = alloc_f((int64_t)n * out);
        G->fill_rows(G, b, y0, n, out);
        G->gemm(G, false, false, n, out, in, 1.0f, x, in, w, out, 1.0f, y0, out);
        G->act_forward(G, acts[i], y0, n, out);
        F->dense_forward_act(F, acts[i], x, w, b, y1, n, in, out);
        close_to(dl4c_activation_str(acts[i]), y1, y0, (int64_t)n * out, 1e-5);
        free(x); free(w); free(b); free(y0); free(y1);
    }
}

/* ---- convolutions ---- */
typedef struct conv_case { int n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, out; dl4c_activation act; } conv_case;

static dl4c_window window_of(const conv_case *k) {
    dl4c_window g = {.n = k->n, .c = k->c, .h = k->h, .w = k->w, .kh = k->kh, .kw = k->kw, .sh = k->sh,
                     .sw = k->sw, .pt = k->pt, .pl = k->pl};
    g.oh = (k->h + k->pt + k->pb - k->kh) / k->sh + 1;
    g.ow = (k->w + k->pl + k->pr - k->kw) / k->sw + 1;
    return g;
}

static void run_conv(const dl4c_backend *B, const conv_case *k, bool fused, const float *x, const float *w,
                     const float *b, const float *dyin, float *y, float *dw, float *db, float *dx) {
    const dl4c_window g = window_of(k);
    int64_t saved, scratch;
    B->conv2d_sizes(B, &g, k->out, &saved, &scratch);
    float *sv = alloc_f(saved), *sc = alloc_f(scratch);
    const int64_t ny = (int64_t)k->n * k->out * g.oh * g.ow;
    float *dy = dup(dyin, ny);
    if (fused) {
        B->conv2d_forward_act(B, &g, k->out, k->act, x, w, b, y, sv, sc);
        B->conv2d_backward_act(B, &g, k->out, k->act, x, w, y, dy, dw, db, dx, sv, sc);
    } else {
        B->conv2d_forward(B, &g, k->out, x, w, b, y, sv, sc);
        B->act_forward(B, k->act, y, k->n, ny / k->n);
        B->act_backward(B, k->act, y, dy, k->n, ny / k->n);
        B->conv2d_backward(B, &g, k->out, x, w, dy, dw, db, dx, sv, sc);
    }
    free(sv); free(sc); free(dy);
}

/* tiny: 0, or TINY_A (the input, and so the bias, times 2^-130: y and dW near underflow) or
 * TINY_B (the weights and the bias: y and dx near underflow). */
static void check_conv_tiny(const conv_case *k, int tiny) {
    const dl4c_window g = window_of(k);
    const int64_t nx = (int64_t)k->n * k->c * k->h * k->w, nw = (int64_t)k->out * k->c * k->kh * k->kw;
    const int64_t ny = (int64_t)k->n * k->out * g.oh * g.ow;
    float *x = rnd(nx, 10, 1), *w = rnd(nw, 11, 0.2), *b = rnd(k->out, 12, 0.1), *dy = rnd(ny, 13, 1);
    if (tiny & TINY_A) for (int64_t i = 0; i < nx; i++) x[i] *= 0x1p-130f;
    if (tiny & TINY_B) for (int64_t i = 0; i < nw; i++) w[i] *= 0x1p-130f;
    if (tiny) for (int i = 0; i < k->out; i++) b[i] *= 0x1p-130f;
    float *out[3][4];
    for (int r = 0; r < 3; r++) {
        out[r][0] = guarded(ny); out[r][1] = guarded(nw); out[r][2] = guarded(k->out); out[r][3] = guarded(nx);
    }
    run_conv(G, k, false, x, w, b, dy, out[0][0], out[0][1], out[0][2], out[0][3]);
    dl4c_cpu_set_threads(1);
    run_conv(F, k, true, x, w, b, dy, out[1][0], out[1][1], out[1][2], out[1][3]);
    dl4c_cpu_set_threads(2);
    run_conv(F, k, true, x, w, b, dy, out[2][0], out[2][1], out[2][2], out[2][3]);
    dl4c_cpu_set_threads(1);
    static const char *const names[4] = {"y", "dw", "db", "dx"};
    const int64_t sizes[4] = {ny, nw, k->out, nx};
    for (int t = 0; t < 4; t++) {
        char what[160];
        snprintf(what, sizeof what, "conv n%d c%d %dx%d k%dx%d s%dx%d p%d,%d out%d %s tiny=%d: %s", k->n, k->c, k->h,
                 k->w, k->kh, k->kw, k->sh, k->sw, k->pt, k->pl, k->out, dl4c_activation_str(k->act), tiny, names[t]);
        close_to(what, out[1][t], out[0][t], sizes[t], 1e-5);
        same_bits(what, out[2][t], out[1][t], sizes[t]);
        guard_intact(what, out[1][t], sizes[t]);
        guard_intact(what, out[2][t], sizes[t]);
    }
    /* The unfused fast ops give the fused ones' floats. */
    float *y3 = alloc_f(ny), *dw3 = alloc_f(nw), *db3 = alloc_f(k->out), *dx3 = alloc_f(nx);
    run_conv(F, k, false, x, w, b, dy, y3, dw3, db3, dx3);
    same_bits("unfused y", y3, out[1][0], ny);
    same_bits("unfused dw", dw3, out[1][1], nw);
    same_bits("unfused dx", dx3, out[1][3], nx);
    free(y3); free(dw3); free(db3); free(dx3);
    for (int r = 0; r < 3; r++) for (int t = 0; t < 4; t++) free(out[r][t]);
    free(x); free(w); free(b); free(dy);
}

static void test_conv(void **state) {
    const conv_case cases[] = {
        {32, 1, 28, 28, 5, 5, 1, 1, 0, 0, 0, 0, 20, DL4C_RELU},       /* LeNet layer 0 (dot dW) */
        {32, 20, 12, 12, 5, 5, 2, 2, 0, 0, 0, 0, 50, DL4C_RELU},      /* LeNet layer 2 (outer dW) */
        {3, 3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 7, DL4C_TANH},          /* same padding, odd sizes */
        {2, 4, 10, 10, 3, 3, 2, 2, 1, 1, 1, 1, 40, DL4C_LEAKYRELU},   /* stride 2 with padding, outer */
        {5, 2, 7, 7, 1, 1, 1, 1, 0, 0, 0, 0, 3, DL4C_IDENTITY},       /* 1x1 */
        {2, 3, 20, 23, 4, 2, 3, 3, 0, 2, 0, 2, 5, DL4C_SIGMOID},      /* stride 3 (gathers) */
        {4, 16, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 32, DL4C_RELU},         /* outer, P = 64 */
        {1, 1, 40, 40, 17, 17, 1, 1, 0, 0, 0, 0, 2, DL4C_RELU},       /* kernel wider than 16 */
        {3, 2, 6, 50, 3, 3, 1, 1, 0, 0, 0, 0, 4, DL4C_RELU},          /* rows crossing lanes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_tiny(&cases[i], 0);
    /* near underflow: the LeNet layers and an outer-product dW */
    for (size_t i = 0; i < 4; i++) {
        if (i == 2) continue;
        check_conv_tiny(&cases[i], TINY_A);
        check_conv_tiny(&cases[i], TINY_B);
    }
}

/* ---- pooling: the same bits, NaN and signed zeros included ---- */
static void check_pool(dl4c_pooling p, int n, int c, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl) {
    dl4c_window g = {.n = n, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .pt = pt, .pl = pl};
    g.oh = (h + 2 * pt - kh) / sh + 1;
    g.ow = (w + 2 * pl - kw) / sw + 1;
    const int64_t nx = (int64_t)n * c * h * w, ny = (int64_t)n * c * g.oh * g.ow;
    float *x = rnd(nx, 20, 1), *dy = rnd(ny, 21, 1);
    for (int64_t i = 0; i < nx; i += 37) x[i] = NAN;
    for (int64_t i = 5; i < nx; i += 41) x[i] = -0.0f;
    for (int64_t i = 7; i < nx; i += 43) x[i] = 0.0f;
    for (int64_t i = 3; i < nx; i += 29) x[i] = -INFINITY;
    for (int64_t i = 9; i < nx; i += 31) x[i] = x[i - 1];   /* ties */
    for (int64_t i = 2; i < ny; i += 13) dy[i] = -0.0f;
    float *y0 = alloc_f(ny), *y1 = guarded(ny), *y2 = guarded(ny), *dx0 = alloc_f(nx), *dx1 = guarded(nx), *dx2 = guarded(nx);
    G->pool_forward(G, p, &g, x, y0);
    G->pool_backward(G, p, &g, x, y0, dy, dx0);
    dl4c_cpu_set_threads(1);
    F->pool_forward(F, p, &g, x, y1);
    F->pool_backward(F, p, &g, x, y1, dy, dx1);
    dl4c_cpu_set_threads(2);
    F->pool_forward(F, p, &g, x, y2);
    F->pool_backward(F, p, &g, x, y2, dy, dx2);
    dl4c_cpu_set_threads(1);
    same_bits("pool forward", y1, y0, ny);
    same_bits("pool backward", dx1, dx0, nx);
    guard_intact("pool forward", y1, ny);
    guard_intact("pool forward, 2 threads", y2, ny);
    guard_intact("pool backward", dx1, nx);
    guard_intact("pool backward, 2 threads", dx2, nx);
    /* With the arg max kept from forward to backward. */
    float *sv = alloc_f(F->pool_saved_floats(F, p, &g)), *y3 = alloc_f(ny), *dx3 = alloc_f(nx);
    F->pool_forward_saved(F, p, &g, x, y3, sv, false);
    F->pool_backward_saved(F, p, &g, x, y3, dy, dx3, sv, false);
    same_bits("pool forward, saved", y3, y0, ny);
    same_bits("pool backward, saved", dx3, dx0, nx);
    /* With the relu of the layer below folded in (forward and backward told, or only one of
     * them): the portable backward, then relu'(x) when the backward is told. */
    float *dxr = alloc_f(nx), *dx4 = guarded(nx);
    memcpy(dxr, dx0, sizeof(float) * (size_t)nx);
    G->act_backward(G, DL4C_RELU, x, dxr, 1, nx);
    for (int t = 1; t <= 2; t++)
        for (int keep = 0; keep < 2; keep++)
            for (int told = 1; told < 4; told++) {   /* bit 0: forward, bit 1: backward */
                dl4c_cpu_set_threads(t);
                F->pool_forward_saved(F, p, &g, x, y3, keep ? sv : NULL, told & 1);
                F->pool_backward_saved(F, p, &g, x, y3, dy, dx4, keep ? sv : NULL, told & 2);
                dl4c_cpu_set_threads(1);
                char what[96];
                snprintf(what, sizeof what, "pool with relu (told: %s), %d threads%s",
                         told == 3 ? "both" : told == 1 ? "forward" : "backward", t, keep ? ", saved" : "");
                same_bits(what, y3, y0, ny);
                same_bits(what, dx4, told & 2 ? dxr : dx0, nx);
                guard_intact(what, dx4, nx);
            }
    free(dxr); free(dx4);
    free(sv); free(y3); free(dx3);
    same_bits("pool forward, 2 threads", y2, y1, ny);
    same_bits("pool backward, 2 threads", dx2, dx1, nx);
    free(x); free(dy); free(y0); free(y1); free(y2); free(dx0); free(dx1); free(dx2);
}

static void test_pool(void **state) {
    for (int p = 0; p < DL4C_POOLING_COUNT; p++) {
        check_pool(p, 32, 20, 24, 24, 2, 2, 2, 2, 0, 0);
        check_pool(p, 32, 50, 4, 4, 2, 2, 2, 2, 0, 0);
        check_pool(p, 3, 3, 4, 4, 2, 2, 2, 2, 0, 0);     /* 4x4 planes, not a multiple of 4 of them */
        check_pool(p, 3, 4, 9, 37, 2, 2, 2, 2, 1, 1);
        check_pool(p, 2, 3, 10, 10, 3, 3, 3, 3, 1, 1);
        check_pool(p, 2, 3, 11, 11, 3, 3, 2, 2, 0, 0);   /* overlapping: portable backward */
        check_pool(p, 2, 3, 13, 13, 2, 3, 4, 5, 0, 2);   /* gaps between windows */
        check_pool(p, 1, 2, 5, 40, 1, 1, 1, 1, 0, 0);
    }
}

/* ---- elementwise ---- */
static void test_elementwise(void **state) {
    const int64_t n = 100003;
    float *x = rnd(n, 30, 2), *y = rnd(n, 31, 1), *d = rnd(n, 32, 1);
    for (int64_t i = 0; i < n; i += 101) x[i] = NAN;
    for (int64_t i = 1; i < n; i += 103) x[i] = -0.0f;
    for (int64_t i = 2; i < n; i += 107) y[i] = 0.0f;
    for (int64_t i = 3; i < n; i += 109) y[i] = NAN;
    const dl4c_activation acts[] = {DL4C_IDENTITY, DL4C_RELU, DL4C_LEAKYRELU, DL4C_SIGMOID, DL4C_TANH, DL4C_SOFTMAX};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        float *x0 = dup(x, n), *x1 = dup(x, n), *d0 = dup(d, n), *d1 = dup(d, n);
        G->act_forward(G, acts[a], x0, 1000, 100);
        F->act_forward(F, acts[a], x1, 1000, 100);
        same_bits(dl4c_activation_str(acts[a]), x1, x0, 100000);
        G->act_backward(G, acts[a], y, d0, 1000, 100);
        F->act_backward(F, acts[a], y, d1, 1000, 100);
        same_bits(dl4c_activation_str(acts[a]), d1, d0, 100000);
        free(x0); free(x1); free(d0); free(d1);
    }
    float *wt = dup(x, n);   /* weights with subnormals, gradients too */
    for (int64_t i = 0; i < n; i += 3) wt[i] *= 1e-39f;
    for (int64_t i = 1; i < n; i += 5) d[i] *= 1e-40f;
    const float *ws[2] = {wt, x};
    const char *what[2][2] = {{"reg_grad, subnormals, rounded from the bits", "reg_grad"},
                              {"reg_grad, subnormals, rounded by conversion", "reg_grad"}};
    const bool by_cvt = dl4c_cpu_avx512_round_by_cvt(false);
    for (int cvt = 0; cvt < 2; cvt++) {   /* both ways of the exact path's rounding */
        dl4c_cpu_avx512_round_by_cvt(cvt);
        for (int k = 0; k < 2; k++)
            for (int l1 = 0; l1 < 2; l1++) {
                float *g0 = dup(d, n), *g1 = dup(d, n);
                G->reg_grad(G, ws[k], g0, n, l1 ? 0.01f : 0.0f, 5e-4f);
                F->reg_grad(F, ws[k], g1, n, l1 ? 0.01f : 0.0f, 5e-4f);
                same_bits(what[cvt][k], g1, g0, n);
                free(g0); free(g1);
            }
    }
    dl4c_cpu_avx512_round_by_cvt(by_cvt);
    free(wt);
    float *s0 = alloc_f(200), *s1 = alloc_f(200);
    G->sum_rows(G, d, s0, 500, 200);
    F->sum_rows(F, d, s1, 500, 200);
    same_bits("sum_rows", s1, s0, 200);
    free(s0); free(s1);
    double r0 = 0, r1 = 0;   /* sums in double, in another order: within 1e-12 */
    for (int64_t i = 3; i < n; i += 109) y[i] = 1.0f;
    G->reg_score(G, y, n, 0.01f, 5e-4f, &r0);
    F->reg_score(F, y, n, 0.01f, 5e-4f, &r1);
    assert_true(fabs(r1 - r0) <= 1e-12 * fabs(r0));
    free(x); free(y); free(d);
}

static void test_updaters(void **state) {
    const int64_t n = 70001;
    const bool by_cvt = dl4c_cpu_avx512_round_by_cvt(false);
    for (int v = 0; v < 2 * DL4C_UPDATER_COUNT; v++) {   /* each updater, both ways of rounding */
        const int u = v % DL4C_UPDATER_COUNT;
        dl4c_cpu_avx512_round_by_cvt(v >= DL4C_UPDATER_COUNT);
        dl4c_updater_conf c = {.type = (dl4c_updater)u, .learning_rate = 0.1f};
        dl4c_updater_conf_resolve(&c);
        const int slots = dl4c_updater_state_per_param(c.type);
        float *p0 = rnd(n, 40, 1), *g = rnd(n, 41, 1), *st0 = rnd(2 * n, 42, 1);
        for (int64_t i = 0; i < 2 * n; i++) st0[i] = fabsf(st0[i]);
        /* Subnormal and tiny values (the exact slow path), a few per 16 lanes or whole runs. */
        for (int64_t i = 0; i < n; i += 7) p0[i] *= 1e-39f;
        for (int64_t i = 3; i < n; i += 11) g[i] *= 1e-40f;
        for (int64_t i = 5; i < n; i += 13) g[i] *= 1e-25f;
        for (int64_t i = 0; i < 2 * n; i += 17) st0[i] *= 1e-41f;
        for (int64_t i = 40000; i < 40100; i++) { p0[i] *= 1e-38f; g[i] *= 1e-38f; }
        p0[1] = 0x1p-149f; g[2] = -0x1p-149f; p0[9] = -0.0f; g[10] = -0.0f;
        float *p1 = dup(p0, n), *st1 = dup(st0, 2 * n);
        for (int step = 1; step <= 3; step++) {
            G->updater_step(G, &c, 0.1f, step, p0, g, slots ? st0 : NULL, n, n);
            F->updater_step(F, &c, 0.1f, step, p1, g, slots ? st1 : NULL, n, n);
        }
        same_bits(dl4c_updater_str(c.type), p1, p0, n);
        same_bits(dl4c_updater_str(c.type), st1, st0, 2 * n);
        free(p0); free(p1); free(g); free(st0); free(st1);
    }
    dl4c_cpu_avx512_round_by_cvt(by_cvt);
}

int main(void) {
    if (!dl4c_cpu_avx512_usable()) {
        printf("test_cpu_kernels: no AVX-512 on this machine: the portable kernels are the only ones\n");
        return 0;
    }
    G = dl4c_backend_cpu_generic();
    static dl4c_backend fast;
    fast = *G;
    dl4c_cpu_avx512_install(&fast);
    F = &fast;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_tiny),
        cmocka_unit_test(test_dense_forward_act),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_updaters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
