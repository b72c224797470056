/* The seed's Java example (DL4J LeNet on MNIST) in C, on Fashion-MNIST:
 *   lenet [DATA_DIR] [EPOCHS] [WORKERS]
 * DATA_DIR defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist),
 * EPOCHS to 5, WORKERS to 1 (parameter averaging over threads when more). */
#include <stdio.h>
#include <stdlib.h>

#include "dl4c/dl4c.h"

static void on_epoch(void *ctx, const dl4c_epoch_info *e) {
    printf("----- Epoch %d complete: loss %.4f, %.0f images/s (%.1f s) -----\n", e->epoch + 1,
           e->loss, e->examples_per_s, e->seconds);
    if (e->eval) {
        char *stats = NULL;
        if (dl4c_eval_stats(e->eval, &stats) == DL4C_OK) printf("%s\n", stats);
        free(stats);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    const int epochs = argc > 2 ? atoi(argv[2]) : 5;
    const int workers = argc > 3 ? atoi(argv[3]) : 1;

    /* Load the data: 60,000 training and 10,000 test images, pixels scaled to [0, 1]. */
    dl4c_dataset *train = NULL, *test = NULL;
    if (dl4c_mnist_dir_load(dir, &train, &test)) {
        fprintf(stderr, "lenet: %s\n", dl4c_error_message());
        return 2;
    }

    /* The network configuration, as the seed's builder writes it. */
    dl4c_net_conf conf = {
        .seed = 123,
        .l2 = 0.0005f,
        .updater = {.type = DL4C_ADAGRAD, .learning_rate = 0.1f},
        .weight_init = DL4C_INIT_XAVIER,
        .input = {.channels = 1, .height = 28, .width = 28},
        .n_layers = 6,
        .layers = {
            dl4c_conv2d(.kernel = {5, 5}, .stride = {1, 1}, .n_out = 20, .activation = DL4C_RELU),
            dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}),
            dl4c_conv2d(.kernel = {5, 5}, .stride = {2, 2}, .n_out = 50, .activation = DL4C_RELU),
            dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}),
            dl4c_dense(.n_out = 200, .activation = DL4C_RELU),
            dl4c_output(.n_out = 10, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_NLL),
        },
        /* ParameterAveragingTrainingMaster settings: batch 32 per worker, average every 5. */
        .training = {.epochs = epochs, .batch_size_per_worker = 32, .workers = workers,
                     .averaging_frequency = 5, .save_updater = true},
    };
    dl4c_net *net = NULL;
    if (dl4c_net_new(&conf, &net)) {
        fprintf(stderr, "lenet: %s\n", dl4c_error_message());
        return 2;
    }
    printf("LeNet: %lld parameters, %d worker(s), %d epoch(s)\n",
           (long long)dl4c_net_n_params(net), workers, epochs);

    dl4c_train_opts opts = {.threads = workers, .listener = {.on_epoch = on_epoch}};
    dl4c_train_state state;
    dl4c_status s = dl4c_train_local(net, train, test, &opts, &state);
    if (s) fprintf(stderr, "lenet: %s\n", dl4c_error_message());
    dl4c_net_free(net);
    dl4c_dataset_free(train);
    dl4c_dataset_free(test);
    return s ? 1 : 0;
}
