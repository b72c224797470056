/* The seed's LeNet (examples/lenet.json, examples/lenet.c) as the tests build it: seed 123,
 * Adagrad 0.1, l2 0.0005, Xavier, 1x28x28 in, 10 classes out, 67,780 parameters. Callers
 * change the fields their test is about (updater, device, batch) on the returned copy. */
#ifndef DL4C_TESTS_SEED_LENET_H
#define DL4C_TESTS_SEED_LENET_H

#include "dl4c/nn.h"

static inline dl4c_net_conf seed_lenet_conf(void) {
    return (dl4c_net_conf){
        .seed = 123, .l2 = 0.0005f,
        .updater = {.type = DL4C_ADAGRAD, .learning_rate = 0.1f},
        .weight_init = DL4C_INIT_XAVIER,
        .input = {.channels = 1, .height = 28, .width = 28},
        .n_layers = 6,
        .layers = {
            dl4c_conv2d(.kernel = {5, 5}, .stride = {1, 1}, .n_out = 20, .activation = DL4C_RELU),
            dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}),
            dl4c_conv2d(.kernel = {5, 5}, .stride = {2, 2}, .n_out = 50, .activation = DL4C_RELU),
            dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}),
            dl4c_dense(.n_out = 200, .activation = DL4C_RELU),
            dl4c_output(.n_out = 10, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_NLL),
        },
        .training = {.batch_size_per_worker = 32},
    };
}

#endif
