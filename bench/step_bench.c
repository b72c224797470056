/* dl4c's training step and inference in isolation, on real data (make bench, bench/speed.py).
 *
 *   step_bench [--config examples/lenet.json] [--data DIR] [--threads T] [--batch B]
 *              [--infer-batch B] [--warmup N] [--steps N | --seconds S] [--mode train|infer|layers]
 *
 * train:  dl4c_net_fit over consecutive minibatches of the training set (the configuration's
 *         updater, l2, ...) from the initial weights: N warm-up steps (default 50), then N
 *         timed steps (or as many as S seconds allow); images/s. Weights that stop getting a
 *         data gradient decay under l2 into subnormal floats within a few hundred steps, and
 *         subnormals are slow on x86: compare peers over the same steps (bench/speed.py does).
 * infer:  dl4c_net_output over consecutive batches of the test set; images/s.
 * layers: training steps with the network's per-layer timing on: seconds and FLOP/s of each
 *         layer's forward and backward (FLOPs: 2 per multiply-add of the products).
 * One JSON line on stdout per mode. T threads: the backend's threads for this one network. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl4c/dl4c.h"
#include "nn/layer.h"

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--config F] [--data DIR] [--threads T] [--batch B] [--infer-batch B] "
            "[--seconds S] [--mode train|infer|layers]\n", argv0);
    return 2;
}

/* Multiply-adds x2 of layer i for a batch of n: forward, and backward (weights gradient, plus
 * the input gradient except for the first layer). */
static void layer_flops(const dl4c_net *net, int i, int n, double *fwd, double *bwd) {
    const dl4c_layer_info li = dl4c_net_layer_info(net, i);
    const dl4c_layer_conf *c = &dl4c_net_conf_of(net)->layers[i];
    double macs = 0;
    const double in = (double)li.in_shape[0] * li.in_shape[1] * li.in_shape[2];
    switch (li.type) {
    case DL4C_LAYER_CONV2D:
        macs = (double)li.out_shape[0] * li.out_shape[1] * li.out_shape[2] * li.in_shape[0] *
               c->kernel[0] * c->kernel[1];
        break;
    case DL4C_LAYER_DENSE: case DL4C_LAYER_OUTPUT:
        macs = in * (double)li.out_shape[0];
        break;
    default: break;
    }
    *fwd = 2.0 * macs * n;
    *bwd = 2.0 * macs * n * (i == 0 ? 1 : 2);
}

int main(int argc, char **argv) {
    const char *config = "examples/lenet.json", *data = "/usr/share/datasets/fashion-mnist", *mode = "train";
    int threads = 1, batch = 0, infer_batch = 256, warmup = 50, max_steps = 0;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(argv[0]);
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--infer-batch")) infer_batch = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--steps")) max_steps = atoi(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else return usage(argv[0]);
        i++;
    }
    const bool train = !strcmp(mode, "train"), infer = !strcmp(mode, "infer"), layers = !strcmp(mode, "layers");
    if ((!train && !infer && !layers) || threads <= 0 || batch < 0 || infer_batch <= 0 || !(seconds > 0) ||
        warmup < 0 || max_steps < 0)
        return usage(argv[0]);

    dl4c_net_conf conf;
    dl4c_dataset *tr = NULL, *te = NULL;
    dl4c_net *net = NULL;
    if (dl4c_config_load(config, &conf) || dl4c_mnist_dir_load(data, &tr, &te)) {
        fprintf(stderr, "step_bench: %s\n", dl4c_error_message());
        return 1;
    }
    if (batch) conf.training.batch_size_per_worker = batch;
    conf.training.workers = 1;
    if (dl4c_net_new(&conf, &net)) {
        fprintf(stderr, "step_bench: %s\n", dl4c_error_message());
        return 1;
    }
    dl4c_net_set_threads(net, threads);
    const dl4c_dataset *ds = infer ? te : tr;
    const int B = infer ? infer_batch : dl4c_net_conf_of(net)->training.batch_size_per_worker;
    const int64_t N = dl4c_dataset_count(ds), in = dl4c_net_input_size(net), K = dl4c_net_output_size(net);
    if (dl4c_tensor_row_size(ds->features) != in || ds->labels->shape[1] != K) {
        fprintf(stderr, "step_bench: the data set does not fit the network\n");
        return 1;
    }
    const int64_t nb = N / B;
    float *out = malloc(sizeof(float) * (size_t)(B * K));
    const int L = dl4c_net_n_layers(net);
    double *tm = calloc((size_t)(2 * L), sizeof *tm);
    int64_t k = 0, steps = 0;
    dl4c_status s = DL4C_OK;
    /* One step on batch k (cycling over the data set). */
#define STEP()                                                                               \
    do {                                                                                     \
        const int64_t r = (k++ % nb) * B;                                                    \
        s = infer ? dl4c_net_output(net, ds->features->data + r * in, B, out)                \
                  : dl4c_net_fit(net, ds->features->data + r * in, ds->labels->data + r * K, B, NULL); \
    } while (0)
    for (int i = 0; i < warmup && !s; i++) STEP();
    if (layers) dl4c_net_set_timing(net, tm);
    const double t0 = dl4c_now();
    double t1 = t0;
    while (!s && (max_steps ? steps < max_steps : (t1 = dl4c_now()) - t0 < seconds)) { STEP(); steps++; }
    if (max_steps) t1 = dl4c_now();
    if (s) {
        fprintf(stderr, "step_bench: %s\n", dl4c_error_message());
        return 1;
    }
    const double secs = t1 - t0;
    printf("{\"mode\": \"%s\", \"config\": \"%s\", \"threads\": %d, \"batch\": %d, \"steps\": %lld, "
           "\"seconds\": %.6f, \"images_per_s\": %.2f", mode, config, threads, B, (long long)steps, secs,
           (double)steps * B / secs);
    if (layers) {
        printf(", \"layers\": [");
        double tot = 0;
        for (int i = 0; i < L; i++) {
            double ff, bf;
            layer_flops(net, i, B, &ff, &bf);
            const double fs = tm[i] / steps, bs = tm[L + i] / steps;
            tot += fs + bs;
            printf("%s{\"index\": %d, \"type\": \"%s\", \"fwd_s\": %.9f, \"bwd_s\": %.9f, \"fwd_flop\": %.0f, "
                   "\"bwd_flop\": %.0f, \"fwd_gflops\": %.3f, \"bwd_gflops\": %.3f}", i ? ", " : "", i,
                   dl4c_layer_type_str(dl4c_net_layer_info(net, i).type), fs, bs, ff, bf,
                   ff ? ff / fs / 1e9 : 0, bf ? bf / bs / 1e9 : 0);
        }
        printf("], \"layers_s\": %.9f, \"step_s\": %.9f", tot, secs / steps);
    }
    printf("}\n");
    free(out);
    free(tm);
    dl4c_net_free(net);
    dl4c_dataset_free(tr);
    dl4c_dataset_free(te);
    dl4c_config_free_strings(&conf);
    return 0;
}
