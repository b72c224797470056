/* Output layer: a dense layer, an activation and a loss.
 *   forward:  y = act(x W + b)
 *   loss:     nll/mcxent: -1/n sum_n sum_k t log y     (softmax)
 *             xent:       -1/n sum_n sum_k t log y + (1-t) log(1-y)   (sigmoid)
 *             mse:        1/n sum_n 1/K sum_k (y - t)^2
 *   dL/dz:    softmax+nll and sigmoid+xent: (y - t) / n (fused, stable);
 *             otherwise dL/dy from the loss, then act' */
#include "nn/layer.h"

#include <stdio.h>

static dl4c_status output_resolve(dl4c_layer_conf *c, const int in[3], int out[3], const char *path) {
    if (c->loss == DL4C_LOSS_DEFAULT)
        c->loss = c->activation == DL4C_SOFTMAX ? DL4C_LOSS_NLL
                : c->activation == DL4C_SIGMOID ? DL4C_LOSS_XENT : DL4C_LOSS_MSE;
    if (c->loss < 0 || c->loss >= DL4C_LOSS_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.loss: unknown loss %d", path, (int)c->loss);
    if ((c->loss == DL4C_LOSS_NLL || c->loss == DL4C_LOSS_MCXENT) && c->activation != DL4C_SOFTMAX)
        return dl4c_error(DL4C_ERR_CONFIG,
                          "%s.loss: %s needs activation softmax (got %s): probabilities must sum to 1",
                          path, dl4c_loss_str(c->loss), dl4c_activation_str(c->activation));
    if (c->loss == DL4C_LOSS_XENT && c->activation != DL4C_SIGMOID && c->activation != DL4C_SOFTMAX)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.loss: xent needs activation sigmoid (got %s)", path,
                          dl4c_activation_str(c->activation));
    return dl4c_dense_ops.resolve(c, in, out, path);
}

void dl4c_output_loss(const dl4c_layer *l, const float *y, const float *t, int n, double *loss) {
    l->be->loss(l->be, l->conf.loss, y, t, n, l->conf.n_out, loss);
}

void dl4c_output_delta(const dl4c_layer *l, const float *y, const float *t, int n, float *dz) {
    const int K = l->conf.n_out;
    if (!l->be->loss_grad(l->be, l->conf.loss, l->conf.activation, y, t, n, K, dz))
        l->be->act_backward(l->be, l->conf.activation, y, dz, n, K);
}

static int64_t output_zero(const dl4c_layer *l, int n) { return 0; }

static void output_forward(dl4c_layer *l, const float *x, float *y, int n) {
    if (l->be->dense_forward_act) {
        l->be->dense_forward_act(l->be, l->conf.activation, x, l->w, l->b, y, n, (int)l->in_size, l->conf.n_out);
        return;
    }
    dl4c_dense_forward_linear(l, x, y, n);
    l->be->act_forward(l->be, l->conf.activation, y, n, l->conf.n_out);
}

/* For the output layer dy already holds dL/dz (from dl4c_output_delta). */
static void output_backward(dl4c_layer *l, const float *x, const float *y, float *dz, float *dx, int n) {
    dl4c_dense_backward_linear(l, x, dz, dx, n);
}

const dl4c_layer_ops dl4c_output_ops = {
    .resolve = output_resolve,
    .count = dl4c_dense_count,
    .init = dl4c_dense_init,
    .saved_floats = output_zero,
    .scratch_floats = output_zero,
    .forward = output_forward,
    .backward = output_backward,
    .param_shape = dl4c_dense_param_shape,
};
