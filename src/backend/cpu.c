/* The CPU backend: OpenBLAS for products, plain C loops for the rest. */
#include "backend/backend.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

static void cpu_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
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

static void cpu_act_forward(dl4c_activation a, float *x, int64_t rows, int64_t len) {
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

static void cpu_act_backward(dl4c_activation a, const float *y, float *dy, int64_t rows, int64_t len) {
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

static void cpu_pool_forward(dl4c_pooling p, const dl4c_window *g, const float *x, float *y) {
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

static void cpu_pool_backward(dl4c_pooling p, const dl4c_window *g, const float *x, const float *dy,
                              float *dx) {
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

static void cpu_set_threads(int threads) { openblas_set_num_threads(threads > 0 ? threads : 1); }

static const dl4c_backend cpu_backend = {
    .name = "cpu",
    .gemm = cpu_gemm,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .pool_forward = cpu_pool_forward,
    .pool_backward = cpu_pool_backward,
    .set_threads = cpu_set_threads,
};

const dl4c_backend *dl4c_backend_cpu(void) { return &cpu_backend; }
