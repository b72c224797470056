/* The CUDA backend's own kernels (declared in cuda_kernels.h): bias, losses, regularization,
 * updaters, leaky ReLU, padding, and the rank-ordered reduction of the nccl communicator.
 * Built with --fmad=false so that a*b + c rounds twice, as the CPU backend does: elementwise
 * results are the same floats as cpu.c's. Reductions use one block and a fixed tree, so they
 * are deterministic from run to run. */
#include "backend/cuda_kernels.h"

#include <cfloat>
#include <cmath>

#include "dl4c/nn.h"

namespace {

constexpr int kThreads = 256;
constexpr int kReduceThreads = 1024;

inline unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    if (b < 1) b = 1;
    if (b > 65535LL * 32) b = 65535LL * 32;   /* grid-stride loops cover the rest */
    return (unsigned)b;
}

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* Sums v over the block (blockDim.x a power of two <= kReduceThreads); thread 0 gets it. */
__device__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const double r = sh[0];
    __syncthreads();
    return r;
}

__global__ void fill_rows_k(const float *bias, float *y, int rows, int len) {
    GRID_STRIDE(i, (int64_t)rows * len) y[i] = bias[i % len];
}

__global__ void sum_rows_k(const float *dz, float *db, int rows, int len) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= len) return;
    float acc = 0.0f;   /* the CPU's order; unrolled so the loads overlap */
#pragma unroll 16
    for (int i = 0; i < rows; i++) acc += dz[(int64_t)i * len + j];
    db[j] = acc;
}

__global__ void conv_bias_grad_k(const float *dz, float *db, int n, int out, int64_t P) {
    __shared__ double sh[kReduceThreads];
    const int o = blockIdx.x;
    double acc = 0;
    const int64_t total = (int64_t)n * P;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
        const int64_t b = i / P, p = i - b * P;
        acc += dz[(b * out + o) * P + p];
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) db[o] = (float)acc;
}

constexpr float kLeakyAlpha = 0.01f;

__global__ void act_forward_k(int a, float *x, int64_t n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        switch (a) {
        case DL4C_RELU: x[i] = v < 0 ? 0.0f : v; break;
        case DL4C_LEAKYRELU: x[i] = v < 0 ? kLeakyAlpha * v : v; break;
        case DL4C_SIGMOID: x[i] = 1.0f / (1.0f + expf(-v)); break;
        case DL4C_TANH: x[i] = tanhf(v); break;
        default: break;
        }
    }
}

__global__ void act_backward_k(int a, const float *y, float *dy, int64_t n) {
    GRID_STRIDE(i, n) {
        const float v = y[i];
        switch (a) {
        case DL4C_RELU: dy[i] = v > 0 ? dy[i] : 0.0f; break;
        case DL4C_LEAKYRELU: dy[i] = v > 0 ? dy[i] : kLeakyAlpha * dy[i]; break;
        case DL4C_SIGMOID: dy[i] *= v * (1.0f - v); break;
        case DL4C_TANH: dy[i] *= 1.0f - v * v; break;
        default: break;
        }
    }
}

/* One thread per row, as the CPU: max, exp, sum in double, scale by (float)(1 / sum). */
__global__ void softmax_forward_k(float *x, int64_t rows, int64_t len) {
    GRID_STRIDE(r, rows) {
        float *v = x + r * len, mx = -FLT_MAX;
        for (int64_t i = 0; i < len; i++) mx = v[i] > mx ? v[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < len; i++) { v[i] = expf(v[i] - mx); sum += v[i]; }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < len; i++) v[i] *= inv;
    }
}

__global__ void softmax_backward_k(const float *y, float *dy, int64_t rows, int64_t len) {
    GRID_STRIDE(r, rows) {
        const float *v = y + r * len;
        float *d = dy + r * len;
        double dot = 0;
        for (int64_t i = 0; i < len; i++) dot += (double)d[i] * v[i];
        for (int64_t i = 0; i < len; i++) d[i] = v[i] * (d[i] - (float)dot);
    }
}

__device__ double clampp(double p) { return p < 1e-12 ? 1e-12 : p; }

__global__ void loss_k(int loss, const float *y, const float *t, int n, int K, double *out) {
    __shared__ double sh[kReduceThreads];
    double sum = 0;
    const int64_t total = (int64_t)n * K;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
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
        default: break;
        }
    }
    sum = block_sum(sum, sh);
    if (threadIdx.x == 0) *out = sum / n;
}

__global__ void loss_grad_k(int loss, bool fused, const float *y, const float *t, int64_t total, int K,
                            float inv_n, float *dz) {
    GRID_STRIDE(i, total) {
        if (fused) { dz[i] = (y[i] - t[i]) * inv_n; continue; }
        if (loss == DL4C_LOSS_MSE) {
            dz[i] = 2.0f * (y[i] - t[i]) / (float)K * inv_n;
        } else {   /* xent without sigmoid */
            const double p = clampp(y[i]), q = clampp(1.0 - y[i]);
            dz[i] = (float)((-t[i] / p + (1.0 - t[i]) / q) * inv_n);
        }
    }
}

__global__ void reg_score_k(const float *w, int64_t n, float l1, float l2, double *acc) {
    __shared__ double sh[kReduceThreads];
    double s1 = 0, s2 = 0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        s1 += fabs((double)w[k]);
        s2 += (double)w[k] * w[k];
    }
    s1 = block_sum(s1, sh);
    s2 = block_sum(s2, sh);
    if (threadIdx.x == 0) *acc += l1 * s1 + 0.5 * l2 * s2;
}

__global__ void reg_grad_k(const float *w, float *dw, int64_t n, float l1, float l2) {
    GRID_STRIDE(k, n) {
        const float v = w[k];
        dw[k] += l2 * v + l1 * (float)((v > 0) - (v < 0));
    }
}

/* The loops of dl4c_updater_step (src/optim/updater.c), one element per thread. */
__global__ void updater_k(int type, float lr, float mu, float rho, float b1, float b2, float eps,
                          float bc1, float bc2, float *p, const float *g, float *s, int64_t n,
                          int64_t stride) {
    GRID_STRIDE(i, n) {
        switch (type) {
        case DL4C_SGD: p[i] -= lr * g[i]; break;
        case DL4C_NESTEROVS:
            s[i] = mu * s[i] + g[i];
            p[i] -= lr * (g[i] + mu * s[i]);
            break;
        case DL4C_ADAGRAD:
            s[i] += g[i] * g[i];
            p[i] -= lr * g[i] / (sqrtf(s[i]) + eps);
            break;
        case DL4C_RMSPROP:
            s[i] = rho * s[i] + (1 - rho) * g[i] * g[i];
            p[i] -= lr * g[i] / (sqrtf(s[i]) + eps);
            break;
        case DL4C_ADAM: {
            float *m = s, *v = s + stride;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            p[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
            break;
        }
        default: break;
        }
    }
}

__global__ void pad_br_k(const float *src, float *dst, int64_t nc, int h, int w, int h2, int w2, float fill) {
    GRID_STRIDE(i, nc * h2 * w2) {
        const int64_t c = i / ((int64_t)h2 * w2);
        const int r = (int)(i / w2 % h2), col = (int)(i % w2);
        dst[i] = (r < h && col < w) ? src[(c * h + r) * w + col] : fill;
    }
}

__global__ void crop_br_k(const float *src, float *dst, int64_t nc, int h, int w, int h2, int w2) {
    GRID_STRIDE(i, nc * h * w) {
        const int64_t c = i / ((int64_t)h * w);
        const int r = (int)(i / w % h), col = (int)(i % w);
        dst[i] = src[(c * h2 + r) * w2 + col];
    }
}

template <typename T>
__global__ void reduce_ranks_k(int op, const T *in, T *out, int64_t n, int64_t stride, int ranks) {
    GRID_STRIDE(i, n) {
        T acc = in[i];
        for (int r = 1; r < ranks; r++) {
            const T v = in[(int64_t)r * stride + i];
            acc = op == 0 ? acc + v : (v > acc ? v : acc);
        }
        out[i] = acc;
    }
}

}  // namespace

extern "C" {

void dl4c_k_fill_rows(dl4c_cuda_stream s, const float *bias, float *y, int rows, int len) {
    fill_rows_k<<<blocks_for((int64_t)rows * len), kThreads, 0, s>>>(bias, y, rows, len);
}

void dl4c_k_sum_rows(dl4c_cuda_stream s, const float *dz, float *db, int rows, int len) {
    sum_rows_k<<<(len + 127) / 128, 128, 0, s>>>(dz, db, rows, len);
}

void dl4c_k_conv_bias_grad(dl4c_cuda_stream s, const float *dz, float *db, int n, int out, int64_t P) {
    conv_bias_grad_k<<<out, 512, 0, s>>>(dz, db, n, out, P);
}

void dl4c_k_act_forward(dl4c_cuda_stream s, int act, float *x, int64_t rows, int64_t len) {
    if (act == DL4C_IDENTITY) return;
    if (act == DL4C_SOFTMAX) softmax_forward_k<<<blocks_for(rows), kThreads, 0, s>>>(x, rows, len);
    else act_forward_k<<<blocks_for(rows * len), kThreads, 0, s>>>(act, x, rows * len);
}

void dl4c_k_act_backward(dl4c_cuda_stream s, int act, const float *y, float *dy, int64_t rows, int64_t len) {
    if (act == DL4C_IDENTITY) return;
    if (act == DL4C_SOFTMAX) softmax_backward_k<<<blocks_for(rows), kThreads, 0, s>>>(y, dy, rows, len);
    else act_backward_k<<<blocks_for(rows * len), kThreads, 0, s>>>(act, y, dy, rows * len);
}

void dl4c_k_loss(dl4c_cuda_stream s, int loss, const float *y, const float *t, int n, int K, double *out) {
    loss_k<<<1, kReduceThreads, 0, s>>>(loss, y, t, n, K, out);
}

void dl4c_k_loss_grad(dl4c_cuda_stream s, int loss, bool fused, const float *y, const float *t, int n, int K,
                      float *dz) {
    const int64_t total = (int64_t)n * K;
    loss_grad_k<<<blocks_for(total), kThreads, 0, s>>>(loss, fused, y, t, total, K, 1.0f / (float)n, dz);
}

void dl4c_k_reg_score(dl4c_cuda_stream s, const float *w, int64_t n, float l1, float l2, double *acc) {
    reg_score_k<<<1, kReduceThreads, 0, s>>>(w, n, l1, l2, acc);
}

void dl4c_k_reg_grad(dl4c_cuda_stream s, const float *w, float *dw, int64_t n, float l1, float l2) {
    reg_grad_k<<<blocks_for(n), kThreads, 0, s>>>(w, dw, n, l1, l2);
}

void dl4c_k_updater(dl4c_cuda_stream s, int type, float lr, float mu, float rho, float b1, float b2, float eps,
                    float bc1, float bc2, float *p, const float *g, float *state, int64_t n, int64_t stride) {
    updater_k<<<blocks_for(n), kThreads, 0, s>>>(type, lr, mu, rho, b1, b2, eps, bc1, bc2, p, g, state, n, stride);
}

void dl4c_k_pad_br(dl4c_cuda_stream s, const float *src, float *dst, int64_t nc, int h, int w, int h2, int w2,
                   float fill) {
    pad_br_k<<<blocks_for(nc * h2 * w2), kThreads, 0, s>>>(src, dst, nc, h, w, h2, w2, fill);
}

void dl4c_k_crop_br(dl4c_cuda_stream s, const float *src, float *dst, int64_t nc, int h, int w, int h2, int w2) {
    crop_br_k<<<blocks_for(nc * h * w), kThreads, 0, s>>>(src, dst, nc, h, w, h2, w2);
}

void dl4c_k_reduce_ranks(dl4c_cuda_stream s, int dtype, int op, const void *in, void *out, int64_t n,
                         int64_t stride, int ranks) {
    switch (dtype) {
    case 0: reduce_ranks_k<float><<<blocks_for(n), kThreads, 0, s>>>(op, (const float *)in, (float *)out, n, stride, ranks); break;
    case 1: reduce_ranks_k<double><<<blocks_for(n), kThreads, 0, s>>>(op, (const double *)in, (double *)out, n, stride, ranks); break;
    default: reduce_ranks_k<long long><<<blocks_for(n), kThreads, 0, s>>>(op, (const long long *)in, (long long *)out, n, stride, ranks); break;
    }
}

}  // extern "C"
