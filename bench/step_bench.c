/* dl4c's training step and inference in isolation, on real data (make bench, bench/speed.py).
 *
 *   step_bench [--config examples/lenet.json] [--data DIR] [--threads T] [--batch B]
 *              [--warmup N] [--steps N | --seconds S] [--infer-batch B] [--infer-steps N]
 *              [--mode train|layers|infer|all]
 *
 * train:  dl4c_net_fit over consecutive minibatches of the training set (the configuration's
 *         updater, l2, ...) from the initial weights: N warm-up steps (default 50), then N
 *         timed steps (or as many as S seconds allow); images/s. Weights that stop getting a
 *         data gradient decay under l2 into subnormal floats within a few hundred steps, and
 *         subnormals are slow on x86: compare peers over the same steps (bench/speed.py does).
 * layers: the same with the network's per-layer timing on: seconds (the median over the steps,
 *         and the mean) and FLOP/s of each layer's forward and backward (FLOPs: 2 per
 *         multiply-add of the products). When the step runs as slices on several threads
 *         (nn/layer.h, dl4c_net_slices), a layer's seconds are its slowest slice's: the FLOP/s
 *         are those of the whole minibatch over the time the layer held the threads.
 * infer:  dl4c_net_output over consecutive batches of the test set (N of B); images/s.
 * all:    layers, then infer with the weights trained.
 * One JSON line on stdout ({"train": ..., "infer": ...}); bench/torch_peer.py prints the same
 * for PyTorch. T threads: the backend's threads for this one network. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl4c/dl4c.h"
#include "nn/layer.h"

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--config F] [--data DIR] [--threads T] [--batch B] [--warmup N] "
            "[--steps N | --seconds S] [--infer-batch B] [--infer-steps N] [--mode train|layers|infer|all]\n", argv0);
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

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of column c of rows x stride doubles (tmp: rows doubles). */
static double median_of(const double *v, int stride, int c, int64_t rows, double *tmp) {
    if (rows <= 0) return 0;
    for (int64_t r = 0; r < rows; r++) tmp[r] = v[r * stride + c];
    qsort(tmp, (size_t)rows, sizeof *tmp, cmp_double);
    return rows % 2 ? tmp[rows / 2] : 0.5 * (tmp[rows / 2 - 1] + tmp[rows / 2]);
}

int main(int argc, char **argv) {
    const char *config = "examples/lenet.json", *data = "/usr/share/datasets/fashion-mnist", *mode = "train";
    int threads = 1, batch = 0, infer_batch = 256, warmup = 50, max_steps = 0, infer_steps = 39;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(argv[0]);
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--infer-batch")) infer_batch = atoi(v);
        else if (!strcmp(a, "--infer-steps")) infer_steps = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--steps")) max_steps = atoi(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else return usage(argv[0]);
        i++;
    }
    const bool all = !strcmp(mode, "all"), infer_only = !strcmp(mode, "infer");
    const bool train = all || !strcmp(mode, "train") || !strcmp(mode, "layers"), layers = all || !strcmp(mode, "layers");
    if ((!train && !infer_only) || threads <= 0 || batch < 0 || infer_batch <= 0 || !(seconds > 0) || warmup < 0 ||
        max_steps < 0 || infer_steps <= 0)
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
    const int64_t in = dl4c_net_input_size(net), K = dl4c_net_output_size(net);
    if (dl4c_tensor_row_size(tr->features) != in || tr->labels->shape[1] != K) {
        fprintf(stderr, "step_bench: the data set does not fit the network\n");
        return 1;
    }
    const int B = dl4c_net_conf_of(net)->training.batch_size_per_worker;
    float *out = malloc(sizeof(float) * (size_t)((B > infer_batch ? B : infer_batch) * K));
    const int L = dl4c_net_n_layers(net);
    double *tm = calloc((size_t)(2 * L), sizeof *tm);
    dl4c_status s = DL4C_OK;
    printf("{\"peer\": \"dl4c\", \"config\": \"%s\", \"threads\": %d", config, threads);
    if (train) {
        int64_t k = 0, steps = 0;
        const int64_t nb = dl4c_dataset_count(tr) / B;
        /* One step on batch k of the training set (in order, cycling). */
#define STEP() do { const int64_t r = (k++ % nb) * B; \
                    s = dl4c_net_fit(net, tr->features->data + r * in, tr->labels->data + r * K, B, NULL); } while (0)
        for (int i = 0; i < warmup && !s; i++) STEP();
        if (layers) dl4c_net_set_timing(net, tm);
        /* Per step: each layer's forward and backward seconds, and the step's (for medians). */
        int64_t cap = 1024;
        double *per = malloc(sizeof(double) * (size_t)(cap * (2 * L + 1))), *prev = calloc((size_t)(2 * L), sizeof(double));
        const double t0 = dl4c_now();
        double t1 = t0;
        while (!s && (max_steps ? steps < max_steps : (t1 = dl4c_now()) - t0 < seconds)) {
            const double ts = dl4c_now();
            STEP();
            if (steps == cap) {
                cap *= 2;
                double *np = realloc(per, sizeof(double) * (size_t)(cap * (2 * L + 1)));
                if (!np) { fprintf(stderr, "step_bench: out of memory\n"); return 1; }
                per = np;
            }
            double *row = per + steps * (2 * L + 1);
            for (int i = 0; i < 2 * L; i++) { row[i] = tm[i] - prev[i]; prev[i] = tm[i]; }
            row[2 * L] = dl4c_now() - ts;
            steps++;
        }
        if (max_steps) t1 = dl4c_now();
        dl4c_net_set_timing(net, NULL);
        if (s) {
            fprintf(stderr, "step_bench: %s\n", dl4c_error_message());
            return 1;
        }
        const double secs = t1 - t0;
        printf(", \"train\": {\"batch\": %d, \"slices\": %d, \"warmup\": %d, \"steps\": %lld, \"seconds\": %.6f, "
               "\"images_per_s\": %.2f", B, dl4c_net_slices(net, B), warmup, (long long)steps, secs, (double)steps * B / secs);
        if (layers) {
            /* fwd_s/bwd_s: the median over the timed steps (a step preempted on a shared machine
             * does not move it); *_mean_s: the mean. */
            double *col = malloc(sizeof(double) * (size_t)steps);
            printf(", \"layers\": [");
            double tot = 0;
            for (int i = 0; i < L; i++) {
                double ff, bf;
                layer_flops(net, i, B, &ff, &bf);
                const double fs = median_of(per, 2 * L + 1, i, steps, col), bs = median_of(per, 2 * L + 1, L + i, steps, col);
                tot += fs + bs;
                printf("%s{\"index\": %d, \"type\": \"%s\", \"fwd_s\": %.9f, \"bwd_s\": %.9f, \"fwd_mean_s\": %.9f, "
                       "\"bwd_mean_s\": %.9f, \"fwd_flop\": %.0f, \"bwd_flop\": %.0f, \"fwd_gflops\": %.3f, "
                       "\"bwd_gflops\": %.3f}", i ? ", " : "", i, dl4c_layer_type_str(dl4c_net_layer_info(net, i).type),
                       fs, bs, tm[i] / steps, tm[L + i] / steps, ff, bf, ff ? ff / fs / 1e9 : 0, bf ? bf / bs / 1e9 : 0);
            }
            printf("], \"layers_s\": %.9f, \"step_s\": %.9f, \"step_median_s\": %.9f", tot, secs / steps,
                   median_of(per, 2 * L + 1, 2 * L, steps, col));
            free(col);
        }
        free(per);
        free(prev);
        printf("}");
    }
    if (all || infer_only) {   /* inference over the test set, with the weights trained so far */
        const int64_t nb = dl4c_dataset_count(te) / infer_batch;
        s = dl4c_net_output(net, te->features->data, infer_batch, out);   /* buffers sized */
        const double t0 = dl4c_now();
        for (int i = 0; i < infer_steps && !s; i++)
            s = dl4c_net_output(net, te->features->data + (i % nb) * infer_batch * in, infer_batch, out);
        const double secs = dl4c_now() - t0;
        if (s) {
            fprintf(stderr, "step_bench: %s\n", dl4c_error_message());
            return 1;
        }
        printf(", \"infer\": {\"batch\": %d, \"steps\": %d, \"seconds\": %.6f, \"images_per_s\": %.2f}",
               infer_batch, infer_steps, secs, (double)infer_steps * infer_batch / secs);
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
