/* Output layer: a dense layer, an activation and a loss.
 *   forward:  y = act(x W + b)
 *   loss:     nll/mcxent: -1/n sum_n sum_k t log y     (softmax)
 *             xent:       -1/n sum_n sum_k t log y + (1-t) log(1-y)   (sigmoid)
 *             mse:        1/n sum_n 1/K sum_k (y - t)^2
 *   dL/dz:    softmax+nll and sigmoid+xent: (y - t) / n (fused, stable);
 *             otherwise dL/dy from the loss, then act' */
#include "nn/layer.h"

#include <math.h>
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

static double clampp(double p) { return p < 1e-12 ? 1e-12 : p; }

double dl4c_output_loss(const dl4c_layer *l, const float *y, const float *t, int n) {
    const int K = l->conf.n_out;
    double sum = 0;
    for (int64_t i = 0; i < (int64_t)n * K; i++) {
        switch (l->conf.loss) {
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
        default: DL4C_ASSERT(!"unresolved loss");
        }
    }
    return sum / n;
}

void dl4c_output_delta(const dl4c_layer *l, const float *y, const float *t, int n, float *dz) {
    const int K = l->conf.n_out;
    const int64_t total = (int64_t)n * K;
    const float inv_n = 1.0f / (float)n;
    const dl4c_activation a = l->conf.activation;
    const dl4c_loss loss = l->conf.loss;
    if (((loss == DL4C_LOSS_NLL || loss == DL4C_LOSS_MCXENT) && a == DL4C_SOFTMAX) ||
        (loss == DL4C_LOSS_XENT && a == DL4C_SIGMOID)) {
        for (int64_t i = 0; i < total; i++) dz[i] = (y[i] - t[i]) * inv_n;
        return;
    }
    for (int64_t i = 0; i < total; i++) {
        switch (loss) {
        case DL4C_LOSS_MSE: dz[i] = 2.0f * (y[i] - t[i]) / (float)K * inv_n; break;
        case DL4C_LOSS_XENT: {
            const double p = clampp(y[i]), q = clampp(1.0 - y[i]);
            dz[i] = (float)((-t[i] / p + (1.0 - t[i]) / q) * inv_n);
            break;
        }
        default: DL4C_ASSERT(!"unresolved loss");
        }
    }
    l->be->act_backward(a, y, dz, n, K);
}

static int64_t output_zero(const dl4c_layer *l, int n) { return 0; }

static void output_forward(dl4c_layer *l, const float *x, float *y, int n) {
    dl4c_dense_forward_linear(l, x, y, n);
    l->be->act_forward(l->conf.activation, y, n, l->conf.n_out);
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
