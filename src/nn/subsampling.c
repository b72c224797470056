/* Subsampling (pooling) layer: max or average over kh x kw windows, per channel.
 *   forward:  y[b,c,oy,ox] = max / mean over the window at (oy*sh - pt, ox*sw - pl)
 *   backward: max routes dy to the first maximum of each window; avg spreads dy / (kh*kw);
 *             after a relu layer (fold_relu) max routes it only where that maximum is positive
 * No parameters, no activation. */
#include "nn/layer.h"

static dl4c_status pool_resolve(dl4c_layer_conf *c, const int in[3], int out[3], const char *path) {
    if (c->n_out != 0)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.n_out: does not apply to a subsampling layer "
                          "(channels are kept)", path);
    if (c->pooling < 0 || c->pooling >= DL4C_POOLING_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.pooling: unknown pooling %d", path, (int)c->pooling);
    if (c->kernel[0] == 0 && c->kernel[1] == 0) { c->kernel[0] = 2; c->kernel[1] = 2; }
    if (c->stride[0] == 0 && c->stride[1] == 0) { c->stride[0] = c->kernel[0]; c->stride[1] = c->kernel[1]; }
    if (c->activation == DL4C_ACT_DEFAULT) c->activation = DL4C_IDENTITY;
    if (c->activation != DL4C_IDENTITY)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.activation: a subsampling layer has no activation", path);
    int oh, ow, pad[4];
    dl4c_status s = dl4c_window_resolve(c, in, &oh, &ow, pad, path);
    if (s) return s;
    out[0] = in[0]; out[1] = oh; out[2] = ow;
    return DL4C_OK;
}

static void pool_count(const dl4c_layer_conf *c, const int in[3], int64_t *nw, int64_t *nb) {
    *nw = 0;
    *nb = 0;
}

static void pool_init(dl4c_layer *l, dl4c_rng *rng) {}
static int64_t pool_zero(const dl4c_layer *l, int n) { return 0; }

/* Backends that keep the arg max from forward to backward get it in l->saved. */
static int64_t pool_saved(const dl4c_layer *l, int n) {
    if (!l->be->pool_saved_floats) return 0;
    const dl4c_window g = dl4c_layer_window(l, n);
    return l->be->pool_saved_floats(l->be, l->conf.pooling, &g);
}

static void pool_forward(dl4c_layer *l, const float *x, float *y, int n) {
    const dl4c_window g = dl4c_layer_window(l, n);
    if (l->be->pool_forward_saved) {
        l->be->pool_forward_saved(l->be, l->conf.pooling, &g, x, y, l->saved, l->fold_relu);
        return;
    }
    l->be->pool_forward(l->be, l->conf.pooling, &g, x, y);
}

static void pool_backward(dl4c_layer *l, const float *x, const float *y, float *dy, float *dx, int n) {
    if (!dx) return;
    const dl4c_window g = dl4c_layer_window(l, n);
    if (l->be->pool_backward_saved) {
        l->be->pool_backward_saved(l->be, l->conf.pooling, &g, x, y, dy, dx, l->saved, l->fold_relu);
        return;
    }
    l->be->pool_backward(l->be, l->conf.pooling, &g, x, y, dy, dx);
}

static void pool_param_shape(const dl4c_layer *l, int t, int *ndim, int64_t shape[4], bool *transposed) {
    DL4C_ASSERT(!"subsampling has no parameters");
}

const dl4c_layer_ops dl4c_subsampling_ops = {
    .resolve = pool_resolve,
    .count = pool_count,
    .init = pool_init,
    .saved_floats = pool_saved,
    .scratch_floats = pool_zero,
    .forward = pool_forward,
    .backward = pool_backward,
    .param_shape = pool_param_shape,
};
