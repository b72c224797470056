/* 2-D convolution, NCHW (the backend's conv2d ops: im2col + gemm on the CPU, cuDNN on CUDA).
 *   forward:  z[b,o] = sum_c W[o,c] * x[b,c] + bias[o];  y = act(z)
 *   backward: dz = act'(y) dy (dy itself when the pooling after a relu applied relu': layer.h);
 *             dW, db = sum dz, dx from the backend's conv2d_backward
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
    dl4c_weights_init(l->conf.weight_init, l->hw, l->n_weights, fan_in, fan_out, rng);
    for (int64_t i = 0; i < l->n_bias; i++) l->hb[i] = l->conf.bias_init;
}

static int64_t conv_saved(const dl4c_layer *l, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    int64_t saved, scratch;
    l->be->conv2d_sizes(l->be, &g, l->conf.n_out, &saved, &scratch);
    return saved;
}
static int64_t conv_scratch(const dl4c_layer *l, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    int64_t saved, scratch;
    l->be->conv2d_sizes(l->be, &g, l->conf.n_out, &saved, &scratch);
    return scratch;
}

static void conv_forward(dl4c_layer *l, const float *x, float *y, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    const int64_t P = (int64_t)l->out[1] * l->out[2];
    if (l->be->conv2d_forward_act) {
        l->be->conv2d_forward_act(l->be, &g, l->conf.n_out, l->conf.activation, x, l->w, l->b, y,
                                  l->saved, l->scratch);
        return;
    }
    l->be->conv2d_forward(l->be, &g, l->conf.n_out, x, l->w, l->b, y, l->saved, l->scratch);
    l->be->act_forward(l->be, l->conf.activation, y, n, l->conf.n_out * P);
}

static void conv_backward(dl4c_layer *l, const float *x, const float *y, float *dy, float *dx, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    const int64_t P = (int64_t)l->out[1] * l->out[2];
    const dl4c_activation a = l->dy_is_dz ? DL4C_IDENTITY : l->conf.activation;   /* see layer.h */
    if (l->be->conv2d_backward_act) {
        l->be->conv2d_backward_act(l->be, &g, l->conf.n_out, a, x, l->w, y, dy, l->dw, l->db, dx,
                                   l->saved, l->scratch);
        return;
    }
    l->be->act_backward(l->be, a, y, dy, n, l->conf.n_out * P);
    l->be->conv2d_backward(l->be, &g, l->conf.n_out, x, l->w, dy, l->dw, l->db, dx, l->saved, l->scratch);
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
