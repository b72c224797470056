/* 2-D convolution, NCHW, by im2col + one gemm over the whole batch.
 *   forward:  col[K, n*P] = im2col(x), K = c*kh*kw, P = oh*ow
 *             t[out, n*P] = W[out, K] col;  z[b,o,p] = t[o, b*P+p] + bias[o];  y = act(z)
 *   backward: dz = act'(dy) -> dzt[out, n*P];  dW = dzt col^T;  db[o] = sum dzt[o,:]
 *             dcol = W^T dzt;  dx = col2im(dcol)
 * Weight layout [out, c, kh, kw], the same as PyTorch's. */
#include "nn/layer.h"

#include <string.h>

static dl4c_status conv_resolve(dl4c_layer_conf *c, const int in[3], int out[3], const char *path) {
    if (c->n_out <= 0)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.n_out: expected a positive integer, got %d", path, c->n_out);
    if (c->kernel[0] == 0 && c->kernel[1] == 0)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.kernel: missing (expected two positive integers)", path);
    if (c->stride[0] == 0 && c->stride[1] == 0) { c->stride[0] = 1; c->stride[1] = 1; }
    int oh, ow, pad[4];
    dl4c_status s = dl4c_window_resolve(c, in, &oh, &ow, pad, path);
    if (s) return s;
    out[0] = c->n_out; out[1] = oh; out[2] = ow;
    return DL4C_OK;
}

static void conv_count(const dl4c_layer_conf *c, const int in[3], int64_t *nw, int64_t *nb) {
    *nw = (int64_t)c->n_out * in[0] * c->kernel[0] * c->kernel[1];
    *nb = c->n_out;
}

static void conv_init(dl4c_layer *l, dl4c_rng *rng) {
    const double k = (double)l->conf.kernel[0] * l->conf.kernel[1];
    const double fan_in = l->in[0] * k;
    const double fan_out = l->conf.n_out * k / ((double)l->conf.stride[0] * l->conf.stride[1]);
    dl4c_weights_init(l->conf.weight_init, l->w, l->n_weights, fan_in, fan_out, rng);
    for (int64_t i = 0; i < l->n_bias; i++) l->b[i] = l->conf.bias_init;
}

static int64_t conv_K(const dl4c_layer *l) {
    return (int64_t)l->in[0] * l->conf.kernel[0] * l->conf.kernel[1];
}
static int64_t conv_P(const dl4c_layer *l) { return (int64_t)l->out[1] * l->out[2]; }

static int64_t conv_saved(const dl4c_layer *l, int n) { return conv_K(l) * n * conv_P(l); }
static int64_t conv_scratch(const dl4c_layer *l, int n) {
    return (l->conf.n_out + conv_K(l)) * n * conv_P(l);
}

static void conv_forward(dl4c_layer *l, const float *x, float *y, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    const int64_t K = conv_K(l), P = conv_P(l), NP = n * P;
    const int out = l->conf.n_out;
    float *col = l->saved, *t = l->scratch;
    l->be->im2col(&g, x, col);
    l->be->gemm(false, false, out, (int)NP, (int)K, 1.0f, l->w, (int)K, col, (int)NP, 0.0f, t, (int)NP);
    for (int b = 0; b < n; b++)
        for (int o = 0; o < out; o++) {
            const float *src = t + o * NP + b * P;
            float *dst = y + ((int64_t)b * out + o) * P;
            const float bias = l->b[o];
            for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bias;
        }
    l->be->act_forward(l->conf.activation, y, n, out * P);
}

static void conv_backward(dl4c_layer *l, const float *x, const float *y, float *dy, float *dx, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    const int64_t K = conv_K(l), P = conv_P(l), NP = n * P;
    const int out = l->conf.n_out;
    float *col = l->saved, *dzt = l->scratch, *dcol = l->scratch + out * NP;
    l->be->act_backward(l->conf.activation, y, dy, n, out * P);
    for (int o = 0; o < out; o++) {
        double bsum = 0;
        for (int b = 0; b < n; b++) {
            const float *src = dy + ((int64_t)b * out + o) * P;
            float *dst = dzt + o * NP + b * P;
            for (int64_t p = 0; p < P; p++) { dst[p] = src[p]; bsum += src[p]; }
        }
        l->db[o] = (float)bsum;
    }
    l->be->gemm(false, true, out, (int)K, (int)NP, 1.0f, dzt, (int)NP, col, (int)NP, 0.0f, l->dw, (int)K);
    if (dx) {
        l->be->gemm(true, false, (int)K, (int)NP, out, 1.0f, l->w, (int)K, dzt, (int)NP, 0.0f, dcol, (int)NP);
        l->be->col2im(&g, dcol, dx);
    }
}

static void conv_param_shape(const dl4c_layer *l, int t, int *ndim, int64_t shape[4], bool *transposed) {
    *transposed = false;
    if (t == 0) {
        *ndim = 4;
        shape[0] = l->conf.n_out; shape[1] = l->in[0];
        shape[2] = l->conf.kernel[0]; shape[3] = l->conf.kernel[1];
    } else {
        *ndim = 1; shape[0] = l->conf.n_out;
    }
}

const dl4c_layer_ops dl4c_conv2d_ops = {
    .resolve = conv_resolve,
    .count = conv_count,
    .init = conv_init,
    .saved_floats = conv_saved,
    .scratch_floats = conv_scratch,
    .forward = conv_forward,
    .backward = conv_backward,
    .param_shape = conv_param_shape,
};
