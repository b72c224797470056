/* dl4c backends: one kernel table per device. Layers and the network touch their buffers only
 * through this table (ops and memory), so a device adds a table: cpu.c (OpenBLAS and loops) and
 * cuda.c (cuBLAS, cuDNN and the kernels of cuda_kernels.cu). Every pointer argument named as a
 * buffer is memory of that backend (host memory for the CPU, device memory for CUDA); host
 * pointers are named host_*. Every op takes the backend first: `be->ctx` is a device's state
 * (stream, library handles), NULL for the CPU. The CPU ops are the reference: a GPU op computes
 * the same function, summing in another order only where it says so. */
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

typedef struct dl4c_backend dl4c_backend;

struct dl4c_backend {
    const char *name;       /* "cpu", "cuda" */
    dl4c_device device;     /* where its buffers live */
    int device_index;       /* cuda:N (0 for the CPU) */
    bool host_memory;       /* buffers are host memory: no copies, no sync needed */
    void *ctx;              /* device state (NULL for the CPU) */

    /* ---- memory ---- */
    /* Zeroed buffer of `bytes` (NULL when out of memory). */
    void *(*alloc)(const dl4c_backend *be, size_t bytes);
    void (*free)(const dl4c_backend *be, void *buf);
    void (*zero)(const dl4c_backend *be, void *buf, size_t bytes);
    /* host -> buffer; host_src may be reused when it returns. */
    void (*upload)(const dl4c_backend *be, void *buf, const void *host_src, size_t bytes);
    /* buffer -> host; waits for the kernels before it. */
    void (*download)(const dl4c_backend *be, void *host_dst, const void *buf, size_t bytes);
    /* Makes the minibatch host_x [xn floats] (and host_y [yn], may be NULL) readable by the
     * kernels of the step that follows, in *x and *y. CPU: the host pointers themselves. CUDA:
     * an asynchronous copy through pinned memory on a copy stream into one of two device slots,
     * so the copy of batch k+1 overlaps the kernels of step k. The pointers stay valid until
     * the second call after this one. */
    dl4c_status (*batch_in)(const dl4c_backend *be, const float *host_x, int64_t xn,
                            const float *host_y, int64_t yn, const float **x, const float **y);
    /* Makes this thread's calls go to this backend's device (cudaSetDevice); may be NULL. */
    void (*bind)(const dl4c_backend *be);

    /* ---- products ---- */
    /* C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C, row-major. */
    void (*gemm)(const dl4c_backend *be, bool trans_a, bool trans_b, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
    /* Floats a convolution of geometry g with `out` filters keeps from forward to backward
     * (saved) and needs temporarily (scratch). */
    void (*conv2d_sizes)(const dl4c_backend *be, const dl4c_window *g, int out, int64_t *saved,
                         int64_t *scratch);
    /* z[b,o,y,x] = sum_{c,i,j} w[o,c,i,j] x[b,c,y*sh-pt+i,x*sw-pl+j] + bias[o] (0 outside). */
    void (*conv2d_forward)(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                           const float *w, const float *bias, float *z, float *saved,
                           float *scratch);
    /* Given dz = dL/dz: dw = dL/dw, db[o] = sum_{b,y,x} dz[b,o,y,x] (set, not accumulated) and,
     * when dx != NULL, dx = dL/dx. */
    void (*conv2d_backward)(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                            const float *w, const float *dz, float *dw, float *db, float *dx,
                            float *saved, float *scratch);

    /* ---- elementwise and reductions ---- */
    /* In place y = act(x) over rows x row_len (softmax is per row). */
    void (*act_forward)(const dl4c_backend *be, dl4c_activation a, float *x, int64_t rows,
                        int64_t row_len);
    /* In place dy := dL/dx given the output y of act (dy is dL/dy on entry). */
    void (*act_backward)(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy,
                         int64_t rows, int64_t row_len);
    /* Pooling over a window; max picks the first maximum in scan order (as PyTorch). */
    void (*pool_forward)(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g,
                         const float *x, float *y);
    /* dx = 0, then routes dy back (max: to the arg max; avg: spread / (kh*kw)). */
    void (*pool_backward)(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g,
                          const float *x, const float *y, const float *dy, float *dx);
    /* y[i,:] = bias for i < rows (rows of len floats). */
    void (*fill_rows)(const dl4c_backend *be, const float *bias, float *y, int rows, int len);
    /* db[j] = sum_i dz[i,j], in float, rows in order. */
    void (*sum_rows)(const dl4c_backend *be, const float *dz, float *db, int rows, int len);
    /* *loss (a double in backend memory) = the loss of y [n,K] against targets t, mean over n:
     *   nll/mcxent: -1/n sum t log y;  xent: -1/n sum t log y + (1-t) log(1-y);
     *   mse: 1/n sum 1/K (y - t)^2     (log clamped at 1e-12; summed in double). */
    void (*loss)(const dl4c_backend *be, dl4c_loss loss, const float *y, const float *t, int n,
                 int K, double *loss_out);
    /* dz = dL/dz when the loss and act fuse (softmax+nll/mcxent, sigmoid+xent): (y - t) / n;
     * otherwise dL/dy, and the caller applies act_backward. Returns whether it fused. */
    bool (*loss_grad)(const dl4c_backend *be, dl4c_loss loss, dl4c_activation act, const float *y,
                      const float *t, int n, int K, float *dz);
    /* *acc (a double in backend memory) += l1 sum |w| + 0.5 l2 sum w^2 (summed in double). */
    void (*reg_score)(const dl4c_backend *be, const float *w, int64_t n, float l1, float l2,
                      double *acc);
    /* dw += l2 w + l1 sign(w). */
    void (*reg_grad)(const dl4c_backend *be, const float *w, float *dw, int64_t n, float l1,
                     float l2);
    /* One updater step over n parameters (math in include/dl4c/optim.h). */
    void (*updater_step)(const dl4c_backend *be, const dl4c_updater_conf *c, float lr,
                         int64_t step, float *p, const float *g, float *state, int64_t n,
                         int64_t state_stride);

    /* Sets the threads this backend's products use (CPU: OpenBLAS threads). */
    void (*set_threads)(const dl4c_backend *be, int threads);
    /* Runs fn(ctx, task) for every task in [0, n_tasks) on the threads set_threads gave, and
     * returns when all are done; ops called from inside a task run on its thread alone. NULL
     * when the backend's own ops do the threading (OpenBLAS, a GPU). The network uses it to
     * run slices of a minibatch side by side (see network.c). */
    void (*parallel)(const dl4c_backend *be, int n_tasks, void (*fn)(void *ctx, int task), void *ctx);
    /* A hint: bytes at p (backend memory) will be read soon by this thread; NULL: no hint. */
    void (*prefetch)(const dl4c_backend *be, const void *p, size_t bytes);

    /* ---- optional fused forms (NULL: the layers call the ops above one after another) ---- */
    /* y = act(conv2d_forward(x)): the same floats as conv2d_forward then act_forward. */
    void (*conv2d_forward_act)(const dl4c_backend *be, const dl4c_window *g, int out,
                               dl4c_activation act, const float *x, const float *w,
                               const float *bias, float *y, float *saved, float *scratch);
    /* Given y = act(z) and dy = dL/dy (overwritten with dL/dz): act_backward then
     * conv2d_backward. */
    void (*conv2d_backward_act)(const dl4c_backend *be, const dl4c_window *g, int out,
                                dl4c_activation act, const float *x, const float *w,
                                const float *y, float *dy, float *dw, float *db, float *dx,
                                float *saved, float *scratch);
    /* y[n,out] = act(x[n,in] w[in,out] + bias) (softmax per row): fill_rows, gemm and
     * act_forward in one pass (the bias added after the product, as gemm with beta 1 does). */
    void (*dense_forward_act)(const dl4c_backend *be, dl4c_activation act, const float *x,
                              const float *w, const float *bias, float *y, int n, int in, int out);
    /* Pooling that keeps what its backward needs in `saved` (pool_saved_floats floats; max:
     * each window's arg max), so that the backward reads neither x nor y. The same results as
     * pool_forward / pool_backward; a backward follows the forward of its batch. With relu
     * (both calls), x is a relu's output and the backward also applies that relu's derivative:
     * dx = relu'(x) * pool_backward's dx, the same floats as act_backward after it; max keeps
     * no arg max for windows whose maximum is not positive, so this costs no extra pass. */
    int64_t (*pool_saved_floats)(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g);
    void (*pool_forward_saved)(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g,
                               const float *x, float *y, float *saved, bool relu);
    void (*pool_backward_saved)(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g,
                                const float *x, const float *y, const float *dy, float *dx,
                                const float *saved, bool relu);
};

/* The CPU backend (one shared, stateless table). */
const dl4c_backend *dl4c_backend_cpu(void);

/* A backend for device `device` (index for CUDA), allow_tf32 for TF32 tensor-core math in
 * products and convolutions. CPU: the shared table. CUDA: a new instance (stream, cuBLAS and
 * cuDNN handles) on that GPU, or DL4C_ERR_UNSUPPORTED with "no CUDA device available" or
 * "built without CUDA". Free with dl4c_backend_release (a no-op for the CPU). */
dl4c_status dl4c_backend_open(dl4c_device device, int index, bool allow_tf32,
                              const dl4c_backend **out);
void dl4c_backend_release(const dl4c_backend *be);

#ifdef DL4C_HAVE_CUDA
dl4c_status dl4c_backend_cuda_open(int index, bool allow_tf32, const dl4c_backend **out);
void dl4c_backend_cuda_release(const dl4c_backend *be);
#endif

#endif
