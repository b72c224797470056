/* Weight initialisation (DL4J's WeightInit schemes). */
#include "nn/layer.h"

#include <math.h>

void dl4c_weights_init(dl4c_weight_init init, float *w, int64_t n, double fan_in, double fan_out,
                       dl4c_rng *rng) {
    double scale = 0;
    switch (init) {
    case DL4C_INIT_XAVIER:         scale = sqrt(2.0 / (fan_in + fan_out)); break;
    case DL4C_INIT_XAVIER_UNIFORM: scale = sqrt(6.0 / (fan_in + fan_out)); break;
    case DL4C_INIT_RELU:           scale = sqrt(2.0 / fan_in); break;
    case DL4C_INIT_NORMAL:         scale = sqrt(1.0 / fan_in); break;
    case DL4C_INIT_UNIFORM:        scale = 1.0 / sqrt(fan_in); break;
    case DL4C_INIT_ZERO:           scale = 0; break;
    default: DL4C_ASSERT(!"unresolved weight init");
    }
    const bool uniform = init == DL4C_INIT_XAVIER_UNIFORM || init == DL4C_INIT_UNIFORM;
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(uniform ? scale * (2.0 * dl4c_rng_uniform(rng) - 1.0)
                               : scale * dl4c_rng_normal(rng));
}
