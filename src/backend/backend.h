/* dl4c backends: one kernel table per device. Layers call kernels only through this table,
 * so a device adds a table and an op it lacks falls back to the CPU one. Every pointer
 * argument is device memory of that backend. */
#ifndef DL4C_BACKEND_H
#define DL4C_BACKEND_H

#include "dl4c/nn.h"

/* Geometry of a 2-D window op (convolution or pooling) over one NCHW batch. */
typedef struct dl4c_window {
    int n;                  /* batch size */
    int c, h, w;            /* input channels, height, width */
    int kh, kw;             /* kernel */
    int sh, sw;             /* stride */
    int pt, pl;             /* padding at top and left (bottom/right implied by oh/ow) */
    int oh, ow;             /* output height, width */
} dl4c_window;

typedef struct dl4c_backend {
    const char *name;       /* "cpu", "cuda" */
    /* C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C, row-major. */
    void (*gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* col[(c*kh+i)*kw+j][b*oh*ow + y*ow + x] = x[b][c][y*sh-pt+i][x*sw-pl+j] (0 outside). */
    void (*im2col)(const dl4c_window *g, const float *x, float *col);
    /* Adjoint of im2col: dx = 0, then dx[...] += dcol[...]. */
    void (*col2im)(const dl4c_window *g, const float *dcol, float *dx);
    /* In place y = act(x) over rows x row_len (softmax is per row). */
    void (*act_forward)(dl4c_activation a, float *x, int64_t rows, int64_t row_len);
    /* In place dy := dL/dx given the output y of act (dy is dL/dy on entry). */
    void (*act_backward)(dl4c_activation a, const float *y, float *dy, int64_t rows,
                         int64_t row_len);
    /* Pooling over a window; max picks the first maximum in scan order (as PyTorch). */
    void (*pool_forward)(dl4c_pooling p, const dl4c_window *g, const float *x, float *y);
    /* dx = 0, then routes dy back (max: to the arg max; avg: spread / (kh*kw)). */
    void (*pool_backward)(dl4c_pooling p, const dl4c_window *g, const float *x, const float *dy,
                          float *dx);
    /* Sets the threads this backend's products use. */
    void (*set_threads)(int threads);
} dl4c_backend;

const dl4c_backend *dl4c_backend_cpu(void);

#endif
