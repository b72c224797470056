/* Updaters over flat buffers (math in include/dl4c/optim.h). */
#include "dl4c/optim.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const char *const updater_names[] = {"sgd", "nesterovs", "adagrad", "rmsprop", "adam"};
_Static_assert(sizeof updater_names / sizeof updater_names[0] == DL4C_UPDATER_COUNT, "updater_names");

const char *dl4c_updater_str(dl4c_updater u) {
    return ((int)u >= 0 && u < DL4C_UPDATER_COUNT) ? updater_names[u] : "?";
}

bool dl4c_updater_parse(const char *s, dl4c_updater *out) {
    for (int i = 0; i < DL4C_UPDATER_COUNT; i++)
        if (strcasecmp(s, updater_names[i]) == 0) { *out = (dl4c_updater)i; return true; }
    return false;
}

void dl4c_updater_conf_resolve(dl4c_updater_conf *c) {
    if (c->learning_rate == 0) c->learning_rate = 0.1f;
    if (c->momentum == 0) c->momentum = 0.9f;
    if (c->rho == 0) c->rho = 0.95f;
    if (c->beta1 == 0) c->beta1 = 0.9f;
    if (c->beta2 == 0) c->beta2 = 0.999f;
    if (c->epsilon == 0) c->epsilon = c->type == DL4C_ADAGRAD ? 1e-6f : 1e-8f;
}

int dl4c_updater_state_per_param(dl4c_updater u) {
    static const int per[] = {0, 1, 1, 1, 2};
    _Static_assert(sizeof per / sizeof per[0] == DL4C_UPDATER_COUNT, "state per updater");
    return per[u];
}

void dl4c_updater_step(const dl4c_updater_conf *c, float lr, int64_t step,
                       float *restrict p, const float *restrict g, float *restrict s, int64_t n,
                       int64_t stride) {
    switch (c->type) {
    case DL4C_SGD:
        for (int64_t i = 0; i < n; i++) p[i] -= lr * g[i];
        break;
    case DL4C_NESTEROVS: {
        const float mu = c->momentum;
        for (int64_t i = 0; i < n; i++) {
            s[i] = mu * s[i] + g[i];
            p[i] -= lr * (g[i] + mu * s[i]);
        }
        break;
    }
    case DL4C_ADAGRAD: {
        const float eps = c->epsilon;
        for (int64_t i = 0; i < n; i++) {
            s[i] += g[i] * g[i];
            p[i] -= lr * g[i] / (sqrtf(s[i]) + eps);
        }
        break;
    }
    case DL4C_RMSPROP: {
        const float rho = c->rho, eps = c->epsilon;
        for (int64_t i = 0; i < n; i++) {
            s[i] = rho * s[i] + (1 - rho) * g[i] * g[i];
            p[i] -= lr * g[i] / (sqrtf(s[i]) + eps);
        }
        break;
    }
    case DL4C_ADAM: {
        const float b1 = c->beta1, b2 = c->beta2, eps = c->epsilon;
        const float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        float *m = s, *v = s + stride;
        for (int64_t i = 0; i < n; i++) {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            p[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
        }
        break;
    }
    default:
        DL4C_ASSERT(!"unknown updater");
    }
}
