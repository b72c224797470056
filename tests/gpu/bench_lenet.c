/* Times the seed's LeNet training step (examples/lenet.json: Adagrad, l2, batch B) on a
 * device: eight random minibatches in host memory, cycled; each step copies its batch up and
 * fits without reading the score back; the clock stops after the last score is read (which
 * waits for the GPU). scripts/gpu-check runs it beside tests/gpu/torch_lenet_step.py.
 *   gpu_bench_lenet [--batch B] [--steps N] [--warmup N] [--device cuda|cuda:N|cpu] [--tf32]
 * Last line: RESULT dl4c device=cuda batch=B ms_per_step=... examples_per_s=... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl4c/dl4c.h"
#include "seed_lenet.h"

int main(int argc, char **argv) {
    int batch = 32, steps = 200, warmup = 20;
    bool tf32 = false;
    const char *device = "cuda";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--tf32")) tf32 = true;
        else { fprintf(stderr, "usage: %s [--batch B] [--steps N] [--warmup N] [--device D] [--tf32]\n", argv[0]); return 2; }
    }
    if (batch <= 0 || steps <= 0 || warmup < 0) { fprintf(stderr, "bad numbers\n"); return 2; }
    dl4c_net_conf c = seed_lenet_conf();
    c.training.batch_size_per_worker = batch;
    c.allow_tf32 = tf32;
    if (!dl4c_device_parse(device, &c.device, &c.device_index)) { fprintf(stderr, "bad --device %s\n", device); return 2; }
    dl4c_net *net = NULL;
    if (dl4c_net_new(&c, &net)) { fprintf(stderr, "gpu_bench_lenet: %s\n", dl4c_error_message()); return 1; }
    dl4c_net_set_threads(net, 1);
    enum { NB = 8 };
    float *x[NB], *y[NB];
    dl4c_rng r = dl4c_rng_make(7, 1, 2, 3);
    for (int b = 0; b < NB; b++) {
        x[b] = malloc(sizeof(float) * (size_t)batch * 784);
        y[b] = calloc((size_t)batch * 10, sizeof(float));
        for (int64_t i = 0; i < (int64_t)batch * 784; i++) x[b][i] = (float)dl4c_rng_uniform(&r);
        for (int i = 0; i < batch; i++) y[b][i * 10 + dl4c_rng_below(&r, 10)] = 1.0f;
    }
    float score = 0;
    dl4c_status s = DL4C_OK;
    for (int k = 0; k < warmup && !s; k++) s = dl4c_net_fit(net, x[k % NB], y[k % NB], batch, NULL);
    if (!s) s = dl4c_net_last_score(net, &score);
    const double t0 = dl4c_now();
    for (int k = 0; k < steps && !s; k++) s = dl4c_net_fit(net, x[k % NB], y[k % NB], batch, NULL);
    if (!s) s = dl4c_net_last_score(net, &score);
    const double secs = dl4c_now() - t0;
    if (s) { fprintf(stderr, "gpu_bench_lenet: %s\n", dl4c_error_message()); return 1; }
    const double ms = 1e3 * secs / steps;
    printf("dl4c %s batch %d: %.4f ms/step, %.0f examples/s, %d steps, score %.4f%s\n", device, batch, ms,
           batch / (ms / 1e3), steps, score, tf32 ? " (TF32)" : "");
    printf("RESULT dl4c device=%s batch=%d ms_per_step=%.5f examples_per_s=%.0f tf32=%d\n", device, batch, ms,
           batch / (ms / 1e3), tf32);
    for (int b = 0; b < NB; b++) { free(x[b]); free(y[b]); }
    dl4c_net_free(net);
    return 0;
}
