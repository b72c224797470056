/* The CPU backend: OpenBLAS for products, plain C loops for the rest. It is the reference the
 * other backends are tested against. Buffers are host memory from dl4c_calloc.
 * On a machine with AVX-512, dl4c_backend_cpu() is this table with the ops of cpu_avx512.c in
 * place of most of these (threaded by cpu_threads.c); DL4C_CPU_KERNELS=generic in the
 * environment keeps these. */
#include "backend/cpu_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ---- memory: buffers are host memory ----
 * Zeroed by calloc, whose large blocks are fresh pages from the kernel: what a network reserves
 * and never touches (the deltas of an evaluation-only batch size, unused scratch) costs no
 * resident memory. 64-byte aligned by hand (the block's start is kept just before). */
static void *cpu_alloc(const dl4c_backend *be, size_t bytes) {
    if (bytes > SIZE_MAX - 128) return NULL;
    unsigned char *raw = calloc(1, bytes + 64 + sizeof(void *));
    if (!raw) return NULL;
    const uintptr_t at = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)at)[-1] = raw;
    return (void *)at;
}
static void cpu_free(const dl4c_backend *be, void *p) {
    if (p) free(((void **)p)[-1]);
}
static void cpu_zero(const dl4c_backend *be, void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(const dl4c_backend *be, void *dst, const void *src, size_t bytes) {
    if (dst != src) memcpy(dst, src, bytes);
}
static dl4c_status cpu_batch_in(const dl4c_backend *be, const float *hx, int64_t xn, const float *hy,
                                int64_t yn, const float **x, const float **y) {
    *x = hx;
    if (y) *y = hy;
    return DL4C_OK;
}

static void cpu_gemm(const dl4c_backend *be, bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* col layout: rows (c, i, j), columns (b, y, x). */
static void cpu_im2col(const dl4c_window *g, const float *x, float *col) {
    const int64_t P = (int64_t)g->oh * g->ow, NP = (int64_t)g->n * P;
    for (int c = 0; c < g->c; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                float *row = col + ((int64_t)(c * g->kh + i) * g->kw + j) * NP;
                for (int b = 0; b < g->n; b++) {
                    const float *xc = x + ((int64_t)b * g->c + c) * g->h * g->w;
                    float *out = row + (int64_t)b * P;
                    for (int y = 0; y < g->oh; y++) {
                        const int iy = y * g->sh - g->pt + i;
                        float *o = out + (int64_t)y * g->ow;
                        if (iy < 0 || iy >= g->h) {
                            memset(o, 0, sizeof(float) * (size_t)g->ow);
                            continue;
                        }
                        const float *xr = xc + (int64_t)iy * g->w;
                        if (g->sw == 1 && g->pl == 0 && j + g->ow <= g->w) {
                            memcpy(o, xr + j, sizeof(float) * (size_t)g->ow);
                            continue;
                        }
                        for (int xo = 0; xo < g->ow; xo++) {
                            const int ix = xo * g->sw - g->pl + j;
                            o[xo] = (ix >= 0 && ix < g->w) ? xr[ix] : 0.0f;
                        }
                    }
                }
            }
}

static void cpu_col2im(const dl4c_window *g, const float *dcol, float *dx) {
    const int64_t P = (int64_t)g->oh * g->ow, NP = (int64_t)g->n * P;
    memset(dx, 0, sizeof(float) * (size_t)g->n * g->c * g->h * g->w);
    for (int c = 0; c < g->c; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const float *row = dcol + ((int64_t)(c * g->kh + i) * g->kw + j) * NP;
                for (int b = 0; b < g->n; b++) {
                    float *xc = dx + ((int64_t)b * g->c + c) * g->h * g->w;
                    const float *in = row + (int64_t)b * P;
                    for (int y = 0; y < g->oh; y++) {
                        const int iy = y * g->sh - g->pt + i;
                        if (iy < 0 || iy >= g->h) continue;
                        float *xr = xc + (int64_t)iy * g->w;
                        const float *o = in + (int64_t)y * g->ow;
                        for (int xo = 0; xo < g->ow; xo++) {
                            const int ix = xo * g->sw - g->pl + j;
                            if (ix >= 0 && ix < g->w) xr[ix] += o[xo];
                        }
                    }
                }
            }
}

#define LEAKY_ALPHA 0.01f

void dl4c_cpu_act_forward(const dl4c_backend *be, dl4c_activation a, float *x, int64_t rows, int64_t len) {
    const int64_t n = rows * len;
    switch (a) {
    case DL4C_IDENTITY: break;
    case DL4C_RELU: for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0 ? 0.0f : x[i]; break;  /* NaN passes */
    case DL4C_LEAKYRELU: for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0 ? LEAKY_ALPHA * x[i] : x[i]; break;
    case DL4C_SIGMOID: for (int64_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case DL4C_TANH: for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]); break;
    case DL4C_SOFTMAX:
        for (int64_t r = 0; r < rows; r++) {
            float *v = x + r * len, mx = -FLT_MAX;
            for (int64_t i = 0; i < len; i++) mx = v[i] > mx ? v[i] : mx;
            double sum = 0;
            for (int64_t i = 0; i < len; i++) { v[i] = expf(v[i] - mx); sum += v[i]; }
            const float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < len; i++) v[i] *= inv;
        }
        break;
    default: DL4C_ASSERT(!"unresolved activation");
    }
}

void dl4c_cpu_act_backward(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy, int64_t rows, int64_t len) {
    const int64_t n = rows * len;
    switch (a) {
    case DL4C_IDENTITY: break;
    case DL4C_RELU: for (int64_t i = 0; i < n; i++) dy[i] = y[i] > 0 ? dy[i] : 0.0f; break;
    case DL4C_LEAKYRELU: for (int64_t i = 0; i < n; i++) dy[i] = y[i] > 0 ? dy[i] : LEAKY_ALPHA * dy[i]; break;
    case DL4C_SIGMOID: for (int64_t i = 0; i < n; i++) dy[i] *= y[i] * (1.0f - y[i]); break;
    case DL4C_TANH: for (int64_t i = 0; i < n; i++) dy[i] *= 1.0f - y[i] * y[i]; break;
    case DL4C_SOFTMAX:
        for (int64_t r = 0; r < rows; r++) {
            const float *v = y + r * len;
            float *d = dy + r * len;
            double dot = 0;
            for (int64_t i = 0; i < len; i++) dot += (double)d[i] * v[i];
            for (int64_t i = 0; i < len; i++) d[i] = v[i] * (d[i] - (float)dot);
        }
        break;
    default: DL4C_ASSERT(!"unresolved activation");
    }
}

static void cpu_pool_forward(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x, float *y) {
    const float inv = 1.0f / (float)(g->kh * g->kw);
    for (int64_t bc = 0; bc < (int64_t)g->n * g->c; bc++) {
        const float *xc = x + bc * g->h * g->w;
        float *yc = y + bc * g->oh * g->ow;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                float acc = p == DL4C_POOL_MAX ? -INFINITY : 0.0f;
                for (int i = 0; i < g->kh; i++) {
                    const int iy = oy * g->sh - g->pt + i;
                    if (iy < 0 || iy >= g->h) continue;
                    for (int j = 0; j < g->kw; j++) {
                        const int ix = ox * g->sw - g->pl + j;
                        if (ix < 0 || ix >= g->w) continue;
                        const float v = xc[iy * g->w + ix];
                        if (p == DL4C_POOL_MAX) { if (v > acc || isnan(v)) acc = v; }
                        else acc += v;
                    }
                }
                yc[oy * g->ow + ox] = p == DL4C_POOL_MAX ? acc : acc * inv;
            }
    }
}

static void cpu_pool_backward(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x,
                              const float *y, const float *dy, float *dx) {
    const float inv = 1.0f / (float)(g->kh * g->kw);
    memset(dx, 0, sizeof(float) * (size_t)g->n * g->c * g->h * g->w);
    for (int64_t bc = 0; bc < (int64_t)g->n * g->c; bc++) {
        const float *xc = x + bc * g->h * g->w;
        float *dxc = dx + bc * g->h * g->w;
        const float *dyc = dy + bc * g->oh * g->ow;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                const float d = dyc[oy * g->ow + ox];
                int best = -1;
                float acc = -INFINITY;
                for (int i = 0; i < g->kh; i++) {
                    const int iy = oy * g->sh - g->pt + i;
                    if (iy < 0 || iy >= g->h) continue;
                    for (int j = 0; j < g->kw; j++) {
                        const int ix = ox * g->sw - g->pl + j;
                        if (ix < 0 || ix >= g->w) continue;
                        const int at = iy * g->w + ix;
                        if (p == DL4C_POOL_MAX) {
                            if (best < 0 || xc[at] > acc || isnan(xc[at])) { acc = xc[at]; best = at; }
                        } else {
                            dxc[at] += d * inv;
                        }
                    }
                }
                if (p == DL4C_POOL_MAX && best >= 0) dxc[best] += d;
            }
    }
}

/* ---- convolution: im2col + one gemm over the whole batch ----
 *   forward:  col[K, n*P] = im2col(x), K = c*kh*kw, P = oh*ow
 *             t[out, n*P] = W[out, K] col;  z[b,o,p] = t[o, b*P+p] + bias[o]
 *   backward: dzt[out, n*P] = dz rearranged;  dW = dzt col^T;  db[o] = sum dzt[o,:] (double)
 *             dcol = W^T dzt;  dx = col2im(dcol)
 * saved: col [K, n*P]; scratch: t or dzt [out, n*P], then dcol [K, n*P]. */
static void cpu_conv2d_sizes(const dl4c_backend *be, const dl4c_window *g, int out, int64_t *saved,
                             int64_t *scratch) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, NP = (int64_t)g->n * g->oh * g->ow;
    *saved = K * NP;
    *scratch = (out + K) * NP;
}

static void cpu_conv2d_forward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                               const float *w, const float *bias, float *y, float *col, float *t) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, P = (int64_t)g->oh * g->ow, NP = g->n * P;
    cpu_im2col(g, x, col);
    cpu_gemm(be, false, false, out, (int)NP, (int)K, 1.0f, w, (int)K, col, (int)NP, 0.0f, t, (int)NP);
    for (int b = 0; b < g->n; b++)
        for (int o = 0; o < out; o++) {
            const float *src = t + o * NP + b * P;
            float *dst = y + ((int64_t)b * out + o) * P;
            const float bv = bias[o];
            for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bv;
        }
}

static void cpu_conv2d_backward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                                const float *w, const float *dy, float *dw, float *db, float *dx,
                                float *col, float *scratch) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, P = (int64_t)g->oh * g->ow, NP = g->n * P;
    float *dzt = scratch, *dcol = scratch + out * NP;
    for (int o = 0; o < out; o++) {
        double bsum = 0;
        for (int b = 0; b < g->n; b++) {
            const float *src = dy + ((int64_t)b * out + o) * P;
            float *dst = dzt + o * NP + b * P;
            for (int64_t p = 0; p < P; p++) { dst[p] = src[p]; bsum += src[p]; }
        }
        db[o] = (float)bsum;
    }
    cpu_gemm(be, false, true, out, (int)K, (int)NP, 1.0f, dzt, (int)NP, col, (int)NP, 0.0f, dw, (int)K);
    if (dx) {
        cpu_gemm(be, true, false, (int)K, (int)NP, out, 1.0f, w, (int)K, dzt, (int)NP, 0.0f, dcol, (int)NP);
        cpu_col2im(g, dcol, dx);
    }
}

/* ---- dense helpers ---- */
static void cpu_fill_rows(const dl4c_backend *be, const float *bias, float *y, int rows, int len) {
    for (int i = 0; i < rows; i++) memcpy(y + (int64_t)i * len, bias, sizeof(float) * (size_t)len);
}

static void cpu_sum_rows(const dl4c_backend *be, const float *dz, float *db, int rows, int len) {
    memset(db, 0, sizeof(float) * (size_t)len);
    for (int i = 0; i < rows; i++)
        for (int o = 0; o < len; o++) db[o] += dz[(int64_t)i * len + o];
}

/* ---- losses ---- */
static double clampp(double p) { return p < 1e-12 ? 1e-12 : p; }

static void cpu_loss(const dl4c_backend *be, dl4c_loss loss, const float *y, const float *t, int n, int K,
                     double *out) {
    double sum = 0;
    for (int64_t i = 0; i < (int64_t)n * K; i++) {
        switch (loss) {
        case DL4C_LOSS_NLL: case DL4C_LOSS_MCXENT:
            if (t[i] != 0) sum -= t[i] * log(clampp(y[i]));
            break;
        case DL4C_LOSS_XENT:
            sum -= t[i] * log(clampp(y[i])) + (1.0 - t[i]) * log(clampp(1.0 - y[i]));
            break;
        case DL4C_LOSS_MSE: {
            const double d = (double)y[i] - t[i];
            sum += d * d / K;
            break;
        }
        default: DL4C_ASSERT(!"unresolved loss");
        }
    }
    *out = sum / n;
}

static bool cpu_loss_grad(const dl4c_backend *be, dl4c_loss loss, dl4c_activation a, const float *y,
                          const float *t, int n, int K, float *dz) {
    const int64_t total = (int64_t)n * K;
    const float inv_n = 1.0f / (float)n;
    if (((loss == DL4C_LOSS_NLL || loss == DL4C_LOSS_MCXENT) && a == DL4C_SOFTMAX) ||
        (loss == DL4C_LOSS_XENT && a == DL4C_SIGMOID)) {
        for (int64_t i = 0; i < total; i++) dz[i] = (y[i] - t[i]) * inv_n;
        return true;
    }
    for (int64_t i = 0; i < total; i++) {
        switch (loss) {
        case DL4C_LOSS_MSE: dz[i] = 2.0f * (y[i] - t[i]) / (float)K * inv_n; break;
        case DL4C_LOSS_XENT: {
            const double p = clampp(y[i]), q = clampp(1.0 - y[i]);
            dz[i] = (float)((-t[i] / p + (1.0 - t[i]) / q) * inv_n);
            break;
        }
        default: DL4C_ASSERT(!"unresolved loss");
        }
    }
    return false;
}

/* ---- regularization and updaters ---- */
static void cpu_reg_score(const dl4c_backend *be, const float *w, int64_t n, float l1, float l2, double *acc) {
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < n; k++) { s1 += fabs(w[k]); s2 += (double)w[k] * w[k]; }
    *acc += l1 * s1 + 0.5 * l2 * s2;
}

static void cpu_reg_grad(const dl4c_backend *be, const float *w, float *dw, int64_t n, float l1, float l2) {
    for (int64_t k = 0; k < n; k++) {
        const float v = w[k];
        dw[k] += l2 * v + l1 * (float)((v > 0) - (v < 0));
    }
}

static void cpu_updater_step(const dl4c_backend *be, const dl4c_updater_conf *c, float lr, int64_t step,
                             float *p, const float *g, float *s, int64_t n, int64_t stride) {
    dl4c_updater_step(c, lr, step, p, g, s, n, stride);
}

static void cpu_set_threads(const dl4c_backend *be, int threads) {
    openblas_set_num_threads(threads > 0 ? threads : 1);
}

static const dl4c_backend cpu_backend = {
    .name = "cpu",
    .device = DL4C_DEVICE_CPU,
    .host_memory = true,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .batch_in = cpu_batch_in,
    .gemm = cpu_gemm,
    .conv2d_sizes = cpu_conv2d_sizes,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .act_forward = dl4c_cpu_act_forward,
    .act_backward = dl4c_cpu_act_backward,
    .pool_forward = cpu_pool_forward,
    .pool_backward = cpu_pool_backward,
    .fill_rows = cpu_fill_rows,
    .sum_rows = cpu_sum_rows,
    .loss = cpu_loss,
    .loss_grad = cpu_loss_grad,
    .reg_score = cpu_reg_score,
    .reg_grad = cpu_reg_grad,
    .updater_step = cpu_updater_step,
    .set_threads = cpu_set_threads,
};

const dl4c_backend *dl4c_backend_cpu_generic(void) { return &cpu_backend; }

/* The table dl4c_backend_cpu() returns: the portable one, or a copy with the AVX-512 ops. */
static dl4c_backend cpu_fast;
static const dl4c_backend *cpu_chosen = &cpu_backend;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_choose(void) {
    const char *env = getenv("DL4C_CPU_KERNELS");
    if (env && !strcmp(env, "generic")) return;
    if (!dl4c_cpu_avx512_usable()) return;
    cpu_fast = cpu_backend;
    dl4c_cpu_avx512_install(&cpu_fast);
    cpu_chosen = &cpu_fast;
}

const dl4c_backend *dl4c_backend_cpu(void) {
    pthread_once(&cpu_once, cpu_choose);
    return cpu_chosen;
}
