/* The CUDA backend's own kernels (cuda_kernels.cu), launched on `stream`. Each computes the
 * same function as its CPU twin in cpu.c; elementwise kernels give the same floats (built with
 * --fmad=false, IEEE division and square root), reductions sum in double where the CPU does
 * (in another order) and in float in the CPU's order where the CPU sums in float. */
#ifndef DL4C_CUDA_KERNELS_H
#define DL4C_CUDA_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *dl4c_cuda_stream;

/* y[i,:] = bias, rows x len. */
void dl4c_k_fill_rows(dl4c_cuda_stream s, const float *bias, float *y, int rows, int len);
/* db[j] = sum_i dz[i,j] in float, rows in order (bit-identical to the CPU). */
void dl4c_k_sum_rows(dl4c_cuda_stream s, const float *dz, float *db, int rows, int len);
/* db[o] = (float) sum_{b,p} dz[b,o,p] in double; dz [n, out, P]. */
void dl4c_k_conv_bias_grad(dl4c_cuda_stream s, const float *dz, float *db, int n, int out, int64_t P);
/* Activations as the CPU backend computes them (act: dl4c_activation values), in place; the
 * backend uses them where cuDNN has no such activation (leaky ReLU). */
void dl4c_k_act_forward(dl4c_cuda_stream s, int act, float *x, int64_t rows, int64_t len);
void dl4c_k_act_backward(dl4c_cuda_stream s, int act, const float *y, float *dy, int64_t rows, int64_t len);
/* *out = loss (double, mean over n) of y against t [n, K]. One block: deterministic. */
void dl4c_k_loss(dl4c_cuda_stream s, int loss, const float *y, const float *t, int n, int K, double *out);
/* dL/dz (fused) or dL/dy, as cpu_loss_grad; `fused` selects the (y - t) / n form. */
void dl4c_k_loss_grad(dl4c_cuda_stream s, int loss, bool fused, const float *y, const float *t, int n,
                      int K, float *dz);
/* *acc += l1 sum|w| + 0.5 l2 sum w^2 (double, one block: deterministic). */
void dl4c_k_reg_score(dl4c_cuda_stream s, const float *w, int64_t n, float l1, float l2, double *acc);
/* dw += l2 w + l1 sign(w). */
void dl4c_k_reg_grad(dl4c_cuda_stream s, const float *w, float *dw, int64_t n, float l1, float l2);
/* Updater steps (dl4c_updater values); bc1/bc2 = Adam's bias corrections computed on the host. */
void dl4c_k_updater(dl4c_cuda_stream s, int type, float lr, float mu, float rho, float b1, float b2,
                    float eps, float bc1, float bc2, float *p, const float *g, float *state,
                    int64_t n, int64_t stride);
/* dst [nc, h2, w2] = src [nc, h, w] extended at the bottom/right with `fill` (h2 >= h, w2 >= w). */
void dl4c_k_pad_br(dl4c_cuda_stream s, const float *src, float *dst, int64_t nc, int h, int w, int h2,
                   int w2, float fill);
/* dst [nc, h, w] = the top-left h x w of src [nc, h2, w2]. */
void dl4c_k_crop_br(dl4c_cuda_stream s, const float *src, float *dst, int64_t nc, int h, int w, int h2,
                    int w2);
/* out[i] = op over r = 0..ranks-1 of in[r * stride + i], in rank order, for i < n.
 * dtype 0 float, 1 double, 2 int64; op 0 sum, 1 max. */
void dl4c_k_reduce_ranks(dl4c_cuda_stream s, int dtype, int op, const void *in, void *out, int64_t n,
                         int64_t stride, int ranks);

#ifdef __cplusplus
}
#endif
#endif
