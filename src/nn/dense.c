/* Dense (fully connected) layer on the flattened input.
 *   forward:  z[n,out] = x[n,in] W[in,out] + b[out];  y = act(z)
 *   backward: dz = act'(dy);  dW[in,out] = x^T dz;  db = sum_n dz;  dx[n,in] = dz W^T
 * Internal weight layout [in, out] (for the gemm); the model file stores [out, in] as PyTorch. */
#include "nn/layer.h"

#include <stdio.h>
#include <string.h>

static dl4c_status dense_resolve(dl4c_layer_conf *c, const int in[3], int out[3], const char *path) {
    if (c->n_out <= 0)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.n_out: expected a positive integer, got %d", path, c->n_out);
    if (c->kernel[0] || c->kernel[1] || c->stride[0] || c->stride[1] || c->padding[0] || c->padding[1])
        return dl4c_error(DL4C_ERR_CONFIG, "%s: kernel/stride/padding do not apply to a %s layer",
                          path, dl4c_layer_type_str(c->type));
    (void)in;
    out[0] = c->n_out; out[1] = 1; out[2] = 1;
    return DL4C_OK;
}

void dl4c_dense_count(const dl4c_layer_conf *c, const int in[3], int64_t *nw, int64_t *nb) {
    *nw = (int64_t)in[0] * in[1] * in[2] * c->n_out;
    *nb = c->n_out;
}

void dl4c_dense_init(dl4c_layer *l, dl4c_rng *rng) {
    dl4c_weights_init(l->conf.weight_init, l->hw, l->n_weights, (double)l->in_size,
                      (double)l->conf.n_out, rng);
    for (int64_t i = 0; i < l->n_bias; i++) l->hb[i] = l->conf.bias_init;
}

static int64_t dense_zero(const dl4c_layer *l, int n) { return 0; }

void dl4c_dense_forward_linear(dl4c_layer *l, const float *x, float *y, int n) {
    const int in = (int)l->in_size, out = l->conf.n_out;
    l->be->fill_rows(l->be, l->b, y, n, out);
    l->be->gemm(l->be, false, false, n, out, in, 1.0f, x, in, l->w, out, 1.0f, y, out);
}

static void dense_forward(dl4c_layer *l, const float *x, float *y, int n) {
    if (l->be->dense_forward_act) {
        l->be->dense_forward_act(l->be, l->conf.activation, x, l->w, l->b, y, n, (int)l->in_size, l->conf.n_out);
        return;
    }
    dl4c_dense_forward_linear(l, x, y, n);
    l->be->act_forward(l->be, l->conf.activation, y, n, l->conf.n_out);
}

void dl4c_dense_backward_linear(dl4c_layer *l, const float *x, const float *dz, float *dx, int n) {
    const int in = (int)l->in_size, out = l->conf.n_out;
    l->be->gemm(l->be, true, false, in, out, n, 1.0f, x, in, dz, out, 0.0f, l->dw, out);
    l->be->sum_rows(l->be, dz, l->db, n, out);
    if (dx) l->be->gemm(l->be, false, true, n, in, out, 1.0f, dz, out, l->w, out, 0.0f, dx, in);
}

static void dense_backward(dl4c_layer *l, const float *x, const float *y, float *dy, float *dx, int n) {
    l->be->act_backward(l->be, l->conf.activation, y, dy, n, l->conf.n_out);
    dl4c_dense_backward_linear(l, x, dy, dx, n);
}

void dl4c_dense_param_shape(const dl4c_layer *l, int t, int *ndim, int64_t shape[4], bool *transposed) {
    if (t == 0) {
        *ndim = 2; shape[0] = l->conf.n_out; shape[1] = l->in_size; *transposed = true;
    } else {
        *ndim = 1; shape[0] = l->conf.n_out; *transposed = false;
    }
}

const dl4c_layer_ops dl4c_dense_ops = {
    .resolve = dense_resolve,
    .count = dl4c_dense_count,
    .init = dl4c_dense_init,
    .saved_floats = dense_zero,
    .scratch_floats = dense_zero,
    .forward = dense_forward,
    .backward = dense_backward,
    .param_shape = dl4c_dense_param_shape,
};
