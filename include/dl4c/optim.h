/* dl4c updaters: one step over flat buffers of parameters, gradients and updater state.
 *   sgd:       p -= lr g
 *   nesterovs: v = mu v + g;  p -= lr (g + mu v)                (PyTorch's Nesterov SGD)
 *   adagrad:   h += g^2;      p -= lr g / (sqrt(h) + eps)       (DL4J/PyTorch, eps 1e-6)
 *   rmsprop:   h = rho h + (1 - rho) g^2;  p -= lr g / (sqrt(h) + eps)
 *   adam:      m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *              p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * l1/l2 are added to the gradient of weights before the step: g += l2 p + l1 sign(p). */
#ifndef DL4C_OPTIM_H
#define DL4C_OPTIM_H

#include "dl4c/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dl4c_updater {
    DL4C_SGD = 0,
    DL4C_NESTEROVS,
    DL4C_ADAGRAD,
    DL4C_RMSPROP,
    DL4C_ADAM,
    DL4C_UPDATER_COUNT
} dl4c_updater;
const char *dl4c_updater_str(dl4c_updater u);
bool dl4c_updater_parse(const char *s, dl4c_updater *out);

typedef struct dl4c_updater_conf {
    dl4c_updater type;     /* default sgd */
    float learning_rate;   /* default 0.1 */
    float momentum;        /* nesterovs: default 0.9 */
    float rho;             /* rmsprop: default 0.95 (DL4J) */
    float beta1, beta2;    /* adam: defaults 0.9, 0.999 */
    float epsilon;         /* adagrad 1e-6, rmsprop 1e-8, adam 1e-8 by default */
} dl4c_updater_conf;

/* Fills zero fields with the defaults above. */
void dl4c_updater_conf_resolve(dl4c_updater_conf *c);
/* Floats of updater state per parameter: sgd 0, nesterovs 1, adagrad 1, rmsprop 1, adam 2. */
int dl4c_updater_state_per_param(dl4c_updater u);

/* One step over params[0..n): state holds state_per_param * n floats laid out as
 * [slot0 for all n][slot1 for all n]. lr is this segment's learning rate; step is the
 * 1-based step number (Adam's bias correction). */
void dl4c_updater_step(const dl4c_updater_conf *c, float lr, int64_t step,
                       float *params, const float *grads, float *state, int64_t n,
                       int64_t state_stride);

#ifdef __cplusplus
}
#endif
#endif
