/* The network the model-file target checks files against (also written by gen_seeds.c to
 * make the seed corpus): a small convolutional net with Adam, so files carry every kind of
 * tensor (conv [out, in, kh, kw], transposed dense [out, in], biases, two updater slots). */
#ifndef DL4C_FUZZ_MODEL_H
#define DL4C_FUZZ_MODEL_H

#include "dl4c/nn.h"

static inline dl4c_net_conf fuzz_model_conf(dl4c_updater updater) {
    return (dl4c_net_conf){
        .seed = 7,
        .updater = {.type = updater, .learning_rate = 0.01f},
        .input = {.channels = 1, .height = 6, .width = 6},
        .n_layers = 4,
        .layers = {
            dl4c_conv2d(.kernel = {3, 3}, .n_out = 2, .activation = DL4C_RELU),
            dl4c_subsampling(.kernel = {2, 2}),
            dl4c_dense(.n_out = 4, .activation = DL4C_TANH),
            dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_NLL),
        },
        .training = {.batch_size_per_worker = 4},
    };
}

#endif
