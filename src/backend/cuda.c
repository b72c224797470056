/* The CUDA backend: cuBLAS for products, cuDNN for convolution (forward, backward data,
 * backward filter), pooling, activations and softmax, and the kernels of cuda_kernels.cu for
 * bias, losses, regularization, updaters and leaky ReLU. All work goes on one stream per
 * backend instance (one per network); minibatches come up on a second stream.
 *
 * Matching the CPU: TF32 is off unless allow_tf32 (cuBLAS CUBLAS_DEFAULT_MATH, cuDNN
 * CUDNN_FMA_MATH: CUDNN_DEFAULT_MATH would allow TF32 on Ampere and later), and only
 * deterministic cuDNN algorithms are used, so a run repeats bit for bit on the same GPU.
 * Padding: cuDNN pads both sides alike; where dl4c's "same" mode pads one more row or column at
 * the bottom/right, the input is extended there first (zeros; -inf for max pooling) and the
 * gradient cropped back.
 *
 * Errors: allocation failures come back as NULL / DL4C_ERR_NOMEM; any other CUDA, cuBLAS or
 * cuDNN failure is a broken device or a bug, reported and asserted (DL4C_ASSERT). */
#include "backend/backend.h"

#ifdef DL4C_HAVE_CUDA

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda_kernels.h"

static void cuda_fail(const char *what, const char *msg, const char *file, int line) {
    dl4c_log(DL4C_LOG_ERROR, "CUDA backend: %s failed: %s (%s:%d)", what, msg, file, line);
    dl4c_assert_fail_(what, file, line);
}
#define CU(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) cuda_fail(#x, cudaGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define DNN(x) do { cudnnStatus_t e_ = (x); if (e_ != CUDNN_STATUS_SUCCESS) cuda_fail(#x, cudnnGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define BLAS(x) do { cublasStatus_t e_ = (x); if (e_ != CUBLAS_STATUS_SUCCESS) cuda_fail(#x, cublasGetStatusString(e_), __FILE__, __LINE__); } while (0)

/* cuDNN state for one window geometry (a convolution or a pooling). */
typedef struct window_plan {
    dl4c_window g;                       /* key: geometry */
    int out;                             /* key: filters (conv), -1 for pooling */
    int pool;                            /* key: dl4c_pooling + 1 for pooling, 0 for conv */
    int eh, ew;                          /* rows / columns the input is extended by (bottom/right) */
    cudnnTensorDescriptor_t x, y, bias;  /* x as cuDNN sees it (extended), y, bias [1,out,1,1] */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnPoolingDescriptor_t pooling;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws;                           /* workspace bytes (max of the three) */
} window_plan;

/* One of two minibatch slots: device buffers, pinned staging, and the events that order them. */
typedef struct batch_slot {
    float *x, *y;                        /* device copies of the minibatch */
    size_t xcap, ycap;                   /* their capacity in floats */
    float *pin;                          /* pinned staging: x then y */
    size_t pincap;                       /* floats */
    cudaEvent_t copied;                  /* the upload from pin is done */
    cudaEvent_t used;                    /* the kernels that read x and y are done */
    bool copied_set, used_set;           /* the events have been recorded */
} batch_slot;

#define MAX_PLANS 64

typedef struct cuda_ctx {
    int device;                          /* cuda:N */
    bool tf32;                           /* TF32 allowed */
    cudaStream_t stream;                 /* all kernels */
    cudaStream_t copy;                   /* minibatch uploads */
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    cudnnTensorDescriptor_t flat;        /* scratch descriptor for activations */
    cudnnActivationDescriptor_t act;     /* scratch descriptor */
    batch_slot slot[2];
    int next, last;                      /* next slot to fill, slot of the current step (-1: none) */
    window_plan plans[MAX_PLANS];
    int n_plans, evict;                  /* plans in use; next to replace when full */
    void *ws;                            /* cuDNN workspace */
    size_t ws_cap;                       /* bytes */
    float *tmp[2];                       /* padding / softmax scratch */
    size_t tmp_cap[2];                   /* floats */
} cuda_ctx;

static cuda_ctx *ctx_of(const dl4c_backend *be) { return be->ctx; }

/* ---- memory ---- */
static void *cuda_alloc(const dl4c_backend *be, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();   /* clear the sticky-free error */
        return NULL;
    }
    CU(cudaMemsetAsync(p, 0, bytes ? bytes : 1, c->stream));
    return p;
}

static void cuda_free(const dl4c_backend *be, void *p) {
    if (!p) return;
    CU(cudaStreamSynchronize(ctx_of(be)->stream));
    CU(cudaFree(p));
}

static void cuda_zero(const dl4c_backend *be, void *p, size_t bytes) {
    CU(cudaMemsetAsync(p, 0, bytes, ctx_of(be)->stream));
}

static void cuda_upload(const dl4c_backend *be, void *dst, const void *src, size_t bytes) {
    /* From pageable memory the call returns once src has been staged: src may be reused. */
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_of(be)->stream));
}

static void cuda_download(const dl4c_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CU(cudaStreamSynchronize(c->stream));
}

static void cuda_bind(const dl4c_backend *be) { CU(cudaSetDevice(ctx_of(be)->device)); }

/* Grows a device scratch buffer to at least n floats (waits for the stream before freeing). */
static float *grow(cuda_ctx *c, int k, size_t n) {
    if (c->tmp_cap[k] < n) {
        CU(cudaStreamSynchronize(c->stream));
        if (c->tmp[k]) CU(cudaFree(c->tmp[k]));
        c->tmp[k] = NULL;
        c->tmp_cap[k] = 0;
        CU(cudaMalloc((void **)&c->tmp[k], n * sizeof(float)));
        c->tmp_cap[k] = n;
    }
    return c->tmp[k];
}

static dl4c_status cuda_batch_in(const dl4c_backend *be, const float *hx, int64_t xn, const float *hy,
                                 int64_t yn, const float **x, const float **y) {
    cuda_ctx *c = ctx_of(be);
    /* Everything enqueued so far belongs to steps that read the last slot. */
    if (c->last >= 0) {
        CU(cudaEventRecord(c->slot[c->last].used, c->stream));
        c->slot[c->last].used_set = true;
    }
    batch_slot *s = &c->slot[c->next];
    c->last = c->next;
    c->next ^= 1;
    if (s->copied_set) CU(cudaEventSynchronize(s->copied));   /* pin is free again */
    const size_t need_pin = (size_t)xn + (size_t)(hy ? yn : 0);
    if (s->xcap < (size_t)xn || (hy && s->ycap < (size_t)yn) || s->pincap < need_pin) {
        CU(cudaStreamSynchronize(c->stream));
        CU(cudaStreamSynchronize(c->copy));
        if (s->xcap < (size_t)xn) {
            if (s->x) CU(cudaFree(s->x));
            s->x = NULL;
            s->xcap = 0;
            if (cudaMalloc((void **)&s->x, sizeof(float) * (size_t)xn) != cudaSuccess) goto nomem;
            s->xcap = (size_t)xn;
        }
        if (hy && s->ycap < (size_t)yn) {
            if (s->y) CU(cudaFree(s->y));
            s->y = NULL;
            s->ycap = 0;
            if (cudaMalloc((void **)&s->y, sizeof(float) * (size_t)yn) != cudaSuccess) goto nomem;
            s->ycap = (size_t)yn;
        }
        if (s->pincap < need_pin) {
            if (s->pin) CU(cudaFreeHost(s->pin));
            s->pin = NULL;
            s->pincap = 0;
            if (cudaMallocHost((void **)&s->pin, sizeof(float) * need_pin) != cudaSuccess) goto nomem;
            s->pincap = need_pin;
        }
    }
    memcpy(s->pin, hx, sizeof(float) * (size_t)xn);
    if (hy) memcpy(s->pin + xn, hy, sizeof(float) * (size_t)yn);
    /* Do not overwrite the device slot while the step that read it last still runs. */
    if (s->used_set) CU(cudaStreamWaitEvent(c->copy, s->used, 0));
    CU(cudaMemcpyAsync(s->x, s->pin, sizeof(float) * (size_t)xn, cudaMemcpyHostToDevice, c->copy));
    if (hy) CU(cudaMemcpyAsync(s->y, s->pin + xn, sizeof(float) * (size_t)yn, cudaMemcpyHostToDevice, c->copy));
    CU(cudaEventRecord(s->copied, c->copy));
    s->copied_set = true;
    CU(cudaStreamWaitEvent(c->stream, s->copied, 0));
    *x = s->x;
    if (y) *y = hy ? s->y : NULL;
    return DL4C_OK;
nomem:
    cudaGetLastError();
    return dl4c_error(DL4C_ERR_NOMEM, "cuda:%d: out of memory for a minibatch of %lld floats", c->device,
                      (long long)need_pin);
}

/* ---- products ---- */
/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
static void cuda_gemm(const dl4c_backend *be, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *cc, int ldc) {
    BLAS(cublasSgemm(ctx_of(be)->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                     &alpha, b, ldb, a, lda, &beta, cc, ldc));
}

/* ---- window plans ---- */
static bool same_window(const dl4c_window *a, const dl4c_window *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->kh == b->kh && a->kw == b->kw &&
           a->sh == b->sh && a->sw == b->sw && a->pt == b->pt && a->pl == b->pl && a->oh == b->oh && a->ow == b->ow;
}

static void plan_destroy(window_plan *p) {
    cudnnDestroyTensorDescriptor(p->x);
    cudnnDestroyTensorDescriptor(p->y);
    if (p->bias) cudnnDestroyTensorDescriptor(p->bias);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    if (p->pooling) cudnnDestroyPoolingDescriptor(p->pooling);
    memset(p, 0, sizeof *p);
}

/* Bottom/right extension so that cuDNN's symmetric padding gives dl4c's output size. */
static int extension(int in, int k, int s, int pad, int out) {
    const int need = (out - 1) * s + k - 2 * pad;
    return need > in ? need - in : 0;
}

static void ensure_ws(cuda_ctx *c, size_t bytes) {
    if (c->ws_cap >= bytes) return;
    CU(cudaStreamSynchronize(c->stream));
    if (c->ws) CU(cudaFree(c->ws));
    c->ws = NULL;
    c->ws_cap = 0;
    CU(cudaMalloc(&c->ws, bytes));
    c->ws_cap = bytes;
}

#define WS_LIMIT ((size_t)1 << 30)   /* largest cuDNN workspace considered (1 GiB) */

/* Without TF32 ("match the CPU"), only GEMM-like algorithms: FFT and Winograd convolutions are
 * deterministic but round far more (relative errors near 1e-4 against a float GEMM, seen on an
 * H200 for LeNet's first layer at batch 32), and tensor-op math would be TF32. */
static bool accurate_fwd(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}
static bool accurate_bwd_data(cudnnConvolutionBwdDataAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
static bool accurate_bwd_filter(cudnnConvolutionBwdFilterAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

/* Picks the first algorithm of cuDNN's heuristic list that is deterministic, within the
 * workspace limit and, without TF32, accurate (above) in FMA math; else `fallback` (a GEMM
 * algorithm that takes any geometry). */
#define PICK_ALGO(perf, got, out_algo, tf32, accurate, fallback)                                       \
    do {                                                                                          \
        int pick_ = -1;                                                                           \
        for (int i_ = 0; i_ < (got) && pick_ < 0; i_++)                                           \
            if ((perf)[i_].status == CUDNN_STATUS_SUCCESS && (perf)[i_].determinism == CUDNN_DETERMINISTIC && \
                (perf)[i_].memory <= WS_LIMIT &&                                                  \
                ((tf32) || (accurate((perf)[i_].algo) && ((perf)[i_].mathType == CUDNN_FMA_MATH ||    \
                                                         (perf)[i_].mathType == CUDNN_DEFAULT_MATH))))  \
                pick_ = i_;                                                                       \
        (out_algo) = pick_ >= 0 ? (perf)[pick_].algo : (fallback);                                \
    } while (0)

static window_plan *get_plan(cuda_ctx *c, const dl4c_window *g, int out, int pool) {
    for (int i = 0; i < c->n_plans; i++) {
        window_plan *p = &c->plans[i];
        if (p->out == out && p->pool == pool && same_window(&p->g, g)) return p;
    }
    window_plan *p;
    if (c->n_plans < MAX_PLANS) p = &c->plans[c->n_plans++];
    else { p = &c->plans[c->evict]; c->evict = (c->evict + 1) % MAX_PLANS; plan_destroy(p); }
    memset(p, 0, sizeof *p);
    p->g = *g;
    p->out = out;
    p->pool = pool;
    p->eh = extension(g->h, g->kh, g->sh, g->pt, g->oh);
    p->ew = extension(g->w, g->kw, g->sw, g->pl, g->ow);
    const int ch = pool ? g->c : out;
    DNN(cudnnCreateTensorDescriptor(&p->x));
    DNN(cudnnCreateTensorDescriptor(&p->y));
    DNN(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->c, g->h + p->eh, g->w + p->ew));
    DNN(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, ch, g->oh, g->ow));
    int dn, dc, dh, dw;
    if (pool) {
        DNN(cudnnCreatePoolingDescriptor(&p->pooling));
        DNN(cudnnSetPooling2dDescriptor(p->pooling,
                                        pool - 1 == DL4C_POOL_MAX ? CUDNN_POOLING_MAX_DETERMINISTIC
                                                                  : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                        CUDNN_PROPAGATE_NAN, g->kh, g->kw, g->pt, g->pl, g->sh, g->sw));
        DNN(cudnnGetPooling2dForwardOutputDim(p->pooling, p->x, &dn, &dc, &dh, &dw));
    } else {
        DNN(cudnnCreateTensorDescriptor(&p->bias));
        DNN(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, out, 1, 1));
        DNN(cudnnCreateFilterDescriptor(&p->w));
        DNN(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, out, g->c, g->kh, g->kw));
        DNN(cudnnCreateConvolutionDescriptor(&p->conv));
        DNN(cudnnSetConvolution2dDescriptor(p->conv, g->pt, g->pl, g->sh, g->sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT));
        DNN(cudnnSetConvolutionMathType(p->conv, c->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
        DNN(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &dn, &dc, &dh, &dw));
    }
    DL4C_ASSERT(dn == g->n && dc == ch && dh == g->oh && dw == g->ow);
    if (!pool) {
        /* The three algorithms must share one math type per descriptor: pick each, keep the
         * forward's (FMA without TF32 in practice). */
        cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int got = 0;
        size_t ws_f, ws_d, ws_w;
        DNN(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, p->x, p->w, p->conv, p->y,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fp));
        PICK_ALGO(fp, got, p->fwd, c->tf32, accurate_fwd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
        DNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->dnn, p->w, p->y, p->conv, p->x,
                                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, dp));
        PICK_ALGO(dp, got, p->bwd_data, c->tf32, accurate_bwd_data, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
        DNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->dnn, p->x, p->y, p->conv, p->w,
                                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, wp));
        PICK_ALGO(wp, got, p->bwd_filter, c->tf32, accurate_bwd_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
        /* Workspace for each as cuDNN reports it for the chosen algorithm. */
        DNN(cudnnGetConvolutionForwardWorkspaceSize(c->dnn, p->x, p->w, p->conv, p->y, p->fwd, &ws_f));
        DNN(cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, p->w, p->y, p->conv, p->x, p->bwd_data, &ws_d));
        DNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, p->x, p->y, p->conv, p->w, p->bwd_filter, &ws_w));
        p->ws = ws_f > ws_d ? ws_f : ws_d;
        if (ws_w > p->ws) p->ws = ws_w;
        ensure_ws(c, p->ws ? p->ws : 16);
        dl4c_log(DL4C_LOG_DEBUG, "cuda:%d conv n=%d %dx%dx%d -> %dx%dx%d k%dx%d s%d,%d: algorithms fwd %d, bwd data %d, "
                 "bwd filter %d; workspace %zu bytes%s", c->device, g->n, g->c, g->h, g->w, out, g->oh, g->ow, g->kh,
                 g->kw, g->sh, g->sw, (int)p->fwd, (int)p->bwd_data, (int)p->bwd_filter, p->ws,
                 c->tf32 ? " (TF32 allowed)" : "");
    }
    return p;
}

/* x as cuDNN sees it: x itself, or x extended into tmp[k]. */
static const float *extended(cuda_ctx *c, const window_plan *p, const float *x, float fill, int k) {
    if (!p->eh && !p->ew) return x;
    const dl4c_window *g = &p->g;
    const int h2 = g->h + p->eh, w2 = g->w + p->ew;
    float *t = grow(c, k, (size_t)g->n * g->c * h2 * w2);
    dl4c_k_pad_br(c->stream, x, t, (int64_t)g->n * g->c, g->h, g->w, h2, w2, fill);
    return t;
}

static const float one = 1.0f, zero = 0.0f;

static void cuda_conv2d_sizes(const dl4c_backend *be, const dl4c_window *g, int out, int64_t *saved,
                              int64_t *scratch) {
    get_plan(ctx_of(be), g, out, 0);   /* chooses the algorithms and sizes the workspace now */
    *saved = 0;
    *scratch = 0;
}

static void cuda_conv2d_forward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                                const float *w, const float *bias, float *z, float *saved, float *scratch) {
    cuda_ctx *c = ctx_of(be);
    const window_plan *p = get_plan(c, g, out, 0);
    const float *xe = extended(c, p, x, 0.0f, 0);
    DNN(cudnnConvolutionForward(c->dnn, &one, p->x, xe, p->w, w, p->conv, p->fwd, c->ws, p->ws, &zero, p->y, z));
    DNN(cudnnAddTensor(c->dnn, &one, p->bias, bias, &one, p->y, z));
}

static void cuda_conv2d_backward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                                 const float *w, const float *dz, float *dw, float *db, float *dx, float *saved,
                                 float *scratch) {
    cuda_ctx *c = ctx_of(be);
    const window_plan *p = get_plan(c, g, out, 0);
    dl4c_k_conv_bias_grad(c->stream, dz, db, g->n, out, (int64_t)g->oh * g->ow);
    const float *xe = extended(c, p, x, 0.0f, 0);
    DNN(cudnnConvolutionBackwardFilter(c->dnn, &one, p->x, xe, p->y, dz, p->conv, p->bwd_filter, c->ws, p->ws,
                                       &zero, p->w, dw));
    if (!dx) return;
    const bool ext = p->eh || p->ew;
    const int h2 = g->h + p->eh, w2 = g->w + p->ew;
    float *dxe = ext ? grow(c, 1, (size_t)g->n * g->c * h2 * w2) : dx;
    DNN(cudnnConvolutionBackwardData(c->dnn, &one, p->w, w, p->y, dz, p->conv, p->bwd_data, c->ws, p->ws, &zero,
                                     p->x, dxe));
    if (ext) dl4c_k_crop_br(c->stream, dxe, dx, (int64_t)g->n * g->c, g->h, g->w, h2, w2);
}

/* ---- pooling ---- */
static void cuda_pool_forward(const dl4c_backend *be, dl4c_pooling pm, const dl4c_window *g, const float *x,
                              float *y) {
    cuda_ctx *c = ctx_of(be);
    const window_plan *p = get_plan(c, g, -1, (int)pm + 1);
    const float *xe = extended(c, p, x, pm == DL4C_POOL_MAX ? -INFINITY : 0.0f, 0);
    DNN(cudnnPoolingForward(c->dnn, p->pooling, &one, p->x, xe, &zero, p->y, y));
}

static void cuda_pool_backward(const dl4c_backend *be, dl4c_pooling pm, const dl4c_window *g, const float *x,
                               const float *y, const float *dy, float *dx) {
    cuda_ctx *c = ctx_of(be);
    const window_plan *p = get_plan(c, g, -1, (int)pm + 1);
    const float *xe = extended(c, p, x, pm == DL4C_POOL_MAX ? -INFINITY : 0.0f, 0);
    const bool ext = p->eh || p->ew;
    const int h2 = g->h + p->eh, w2 = g->w + p->ew;
    float *dxe = ext ? grow(c, 1, (size_t)g->n * g->c * h2 * w2) : dx;
    DNN(cudnnPoolingBackward(c->dnn, p->pooling, &one, p->y, y, p->y, dy, p->x, xe, &zero, p->x, dxe));
    if (ext) dl4c_k_crop_br(c->stream, dxe, dx, (int64_t)g->n * g->c, g->h, g->w, h2, w2);
}

/* ---- activations: cuDNN for relu, sigmoid, tanh and softmax; leaky ReLU our own ---- */
static bool dnn_act_mode(dl4c_activation a, cudnnActivationMode_t *m) {
    switch (a) {
    case DL4C_RELU: *m = CUDNN_ACTIVATION_RELU; return true;
    case DL4C_SIGMOID: *m = CUDNN_ACTIVATION_SIGMOID; return true;
    case DL4C_TANH: *m = CUDNN_ACTIVATION_TANH; return true;
    default: return false;
    }
}

/* A [rows, len, 1, 1] descriptor (softmax is over len). */
static void flat_desc(cuda_ctx *c, int64_t rows, int64_t len) {
    DL4C_ASSERT(rows * len < INT32_MAX);
    DNN(cudnnSetTensor4dDescriptor(c->flat, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)rows, (int)len, 1, 1));
}

static void cuda_act_forward(const dl4c_backend *be, dl4c_activation a, float *x, int64_t rows, int64_t len) {
    cuda_ctx *c = ctx_of(be);
    cudnnActivationMode_t m;
    if (a == DL4C_IDENTITY) return;
    if (a == DL4C_SOFTMAX) {   /* out of place into tmp, then back */
        float *t = grow(c, 0, (size_t)(rows * len));
        flat_desc(c, rows, len);
        DNN(cudnnSoftmaxForward(c->dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &one, c->flat, x, &zero,
                                c->flat, t));
        CU(cudaMemcpyAsync(x, t, sizeof(float) * (size_t)(rows * len), cudaMemcpyDeviceToDevice, c->stream));
    } else if (dnn_act_mode(a, &m)) {   /* in place, as cuDNN allows */
        flat_desc(c, rows, len);
        DNN(cudnnSetActivationDescriptor(c->act, m, CUDNN_PROPAGATE_NAN, 0.0));
        DNN(cudnnActivationForward(c->dnn, c->act, &one, c->flat, x, &zero, c->flat, x));
    } else {
        dl4c_k_act_forward(c->stream, (int)a, x, rows, len);
    }
}

static void cuda_act_backward(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy, int64_t rows,
                              int64_t len) {
    cuda_ctx *c = ctx_of(be);
    cudnnActivationMode_t m;
    if (a == DL4C_IDENTITY) return;
    if (a == DL4C_SOFTMAX) {
        float *t = grow(c, 0, (size_t)(rows * len));
        flat_desc(c, rows, len);
        DNN(cudnnSoftmaxBackward(c->dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &one, c->flat, y,
                                 c->flat, dy, &zero, c->flat, t));
        CU(cudaMemcpyAsync(dy, t, sizeof(float) * (size_t)(rows * len), cudaMemcpyDeviceToDevice, c->stream));
    } else if (dnn_act_mode(a, &m)) {
        /* cuDNN reads x for relu's mask: y > 0 exactly where x > 0, so y stands in for x. */
        flat_desc(c, rows, len);
        DNN(cudnnSetActivationDescriptor(c->act, m, CUDNN_PROPAGATE_NAN, 0.0));
        DNN(cudnnActivationBackward(c->dnn, c->act, &one, c->flat, y, c->flat, dy, c->flat, y, &zero, c->flat, dy));
    } else {
        dl4c_k_act_backward(c->stream, (int)a, y, dy, rows, len);
    }
}

/* ---- own kernels ---- */
static void cuda_fill_rows(const dl4c_backend *be, const float *bias, float *y, int rows, int len) {
    dl4c_k_fill_rows(ctx_of(be)->stream, bias, y, rows, len);
}

static void cuda_sum_rows(const dl4c_backend *be, const float *dz, float *db, int rows, int len) {
    dl4c_k_sum_rows(ctx_of(be)->stream, dz, db, rows, len);
}

static void cuda_loss(const dl4c_backend *be, dl4c_loss loss, const float *y, const float *t, int n, int K,
                      double *out) {
    dl4c_k_loss(ctx_of(be)->stream, (int)loss, y, t, n, K, out);
}

static bool cuda_loss_grad(const dl4c_backend *be, dl4c_loss loss, dl4c_activation a, const float *y,
                           const float *t, int n, int K, float *dz) {
    const bool fused = ((loss == DL4C_LOSS_NLL || loss == DL4C_LOSS_MCXENT) && a == DL4C_SOFTMAX) ||
                       (loss == DL4C_LOSS_XENT && a == DL4C_SIGMOID);
    DL4C_ASSERT(fused || loss == DL4C_LOSS_MSE || loss == DL4C_LOSS_XENT);
    dl4c_k_loss_grad(ctx_of(be)->stream, (int)loss, fused, y, t, n, K, dz);
    return fused;
}

static void cuda_reg_score(const dl4c_backend *be, const float *w, int64_t n, float l1, float l2, double *acc) {
    dl4c_k_reg_score(ctx_of(be)->stream, w, n, l1, l2, acc);
}

static void cuda_reg_grad(const dl4c_backend *be, const float *w, float *dw, int64_t n, float l1, float l2) {
    dl4c_k_reg_grad(ctx_of(be)->stream, w, dw, n, l1, l2);
}

static void cuda_updater_step(const dl4c_backend *be, const dl4c_updater_conf *u, float lr, int64_t step,
                              float *p, const float *g, float *s, int64_t n, int64_t stride) {
    float bc1 = 1.0f, bc2 = 1.0f;
    if (u->type == DL4C_ADAM) {   /* as updater.c computes them */
        bc1 = 1.0f - powf(u->beta1, (float)step);
        bc2 = 1.0f - powf(u->beta2, (float)step);
    }
    dl4c_k_updater(ctx_of(be)->stream, (int)u->type, lr, u->momentum, u->rho, u->beta1, u->beta2, u->epsilon,
                   bc1, bc2, p, g, s, n, stride);
}

static void cuda_set_threads(const dl4c_backend *be, int threads) {}

static const dl4c_backend cuda_table = {
    .name = "cuda",
    .device = DL4C_DEVICE_CUDA,
    .host_memory = false,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .upload = cuda_upload,
    .download = cuda_download,
    .batch_in = cuda_batch_in,
    .bind = cuda_bind,
    .gemm = cuda_gemm,
    .conv2d_sizes = cuda_conv2d_sizes,
    .conv2d_forward = cuda_conv2d_forward,
    .conv2d_backward = cuda_conv2d_backward,
    .act_forward = cuda_act_forward,
    .act_backward = cuda_act_backward,
    .pool_forward = cuda_pool_forward,
    .pool_backward = cuda_pool_backward,
    .fill_rows = cuda_fill_rows,
    .sum_rows = cuda_sum_rows,
    .loss = cuda_loss,
    .loss_grad = cuda_loss_grad,
    .reg_score = cuda_reg_score,
    .reg_grad = cuda_reg_grad,
    .updater_step = cuda_updater_step,
    .set_threads = cuda_set_threads,
};

int dl4c_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

dl4c_status dl4c_backend_cuda_open(int index, bool tf32, const dl4c_backend **out) {
    *out = NULL;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "device cuda:%d: no CUDA device available (%s)", index,
                          e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 GPUs");
    }
    if (index < 0 || index >= count)
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "device cuda:%d: no such CUDA device (%d available: cuda:0..cuda:%d)",
                          index, count, count - 1);
    dl4c_backend *be = calloc(1, sizeof *be);
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) { free(be); free(c); return dl4c_error(DL4C_ERR_NOMEM, "cuda: out of memory"); }
    *be = cuda_table;
    be->ctx = c;
    be->device_index = index;
    c->device = index;
    c->tf32 = tf32;
    c->last = -1;
    CU(cudaSetDevice(index));
    CU(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CU(cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->stream); cudaStreamDestroy(c->copy); free(c); free(be);
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "device cuda:%d: cuBLAS could not start", index);
    }
    const cudnnStatus_t ds = cudnnCreate(&c->dnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        cublasDestroy(c->blas); cudaStreamDestroy(c->stream); cudaStreamDestroy(c->copy); free(c); free(be);
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "device cuda:%d: cuDNN could not start: %s", index,
                          cudnnGetErrorString(ds));
    }
    BLAS(cublasSetStream(c->blas, c->stream));
    BLAS(cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    DNN(cudnnSetStream(c->dnn, c->stream));
    DNN(cudnnCreateTensorDescriptor(&c->flat));
    DNN(cudnnCreateActivationDescriptor(&c->act));
    for (int k = 0; k < 2; k++) {
        CU(cudaEventCreateWithFlags(&c->slot[k].copied, cudaEventDisableTiming));
        CU(cudaEventCreateWithFlags(&c->slot[k].used, cudaEventDisableTiming));
    }
    *out = be;
    return DL4C_OK;
}

void dl4c_backend_cuda_release(const dl4c_backend *cbe) {
    dl4c_backend *be = (dl4c_backend *)cbe;
    cuda_ctx *c = be->ctx;
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream);
    cudaStreamSynchronize(c->copy);
    for (int i = 0; i < c->n_plans; i++) plan_destroy(&c->plans[i]);
    for (int k = 0; k < 2; k++) {
        batch_slot *s = &c->slot[k];
        cudaFree(s->x); cudaFree(s->y); cudaFreeHost(s->pin);
        cudaEventDestroy(s->copied); cudaEventDestroy(s->used);
        cudaFree(c->tmp[k]);
    }
    cudaFree(c->ws);
    cudnnDestroyTensorDescriptor(c->flat);
    cudnnDestroyActivationDescriptor(c->act);
    cudnnDestroy(c->dnn);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    cudaStreamDestroy(c->copy);
    free(c);
    free(be);
}

#endif  /* DL4C_HAVE_CUDA */
