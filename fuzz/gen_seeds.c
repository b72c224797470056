/* Writes the model-file seeds of the fuzz corpus (fuzz/corpus/model/): the network of
 * fuzz_model.h saved with each updater, with progress, as a BMUF checkpoint and as the
 * checkpoint of a round cut short (worker states).
 *   usage: fuzz_gen_seeds DIR      (built on demand: cmake --build BUILD --target fuzz_gen_seeds) */
#include "fuzz_model.h"

#include <stdio.h>
#include <stdlib.h>

#include "dl4c/io.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s DIR\n", argv[0]); return 2; }
    static const dl4c_updater ups[] = {DL4C_SGD, DL4C_NESTEROVS, DL4C_ADAGRAD, DL4C_RMSPROP, DL4C_ADAM};
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
        const dl4c_net_conf c = fuzz_model_conf(ups[i]);
        dl4c_net *net = NULL;
        if (dl4c_net_new(&c, &net)) { fprintf(stderr, "%s\n", dl4c_error_message()); return 1; }
        float *us = dl4c_net_updater_state(net);
        for (int64_t k = 0; k < dl4c_net_n_updater_state(net); k++) us[k] = 0.001f * (float)k;
        dl4c_net_set_step(net, 12);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.safetensors", argv[1], dl4c_updater_str(ups[i]));
        dl4c_progress pr = {.epoch = 1, .round = 3, .iteration = 12, .seed = 7, .workers = 2, .loss = 0.5,
                            .has_updater = true};
        if (dl4c_model_save(net, i == 0 ? NULL : &pr, path)) { fprintf(stderr, "%s\n", dl4c_error_message()); return 1; }
        if (ups[i] == DL4C_ADAM) {
            float *delta = calloc((size_t)dl4c_net_n_params(net), sizeof(float));
            if (!delta) return 1;
            snprintf(path, sizeof path, "%s/adam_bmuf.safetensors", argv[1]);
            if (dl4c_model_save_checkpoint(net, &pr, delta, path)) { fprintf(stderr, "%s\n", dl4c_error_message()); return 1; }
            /* a checkpoint of a round cut short: two workers' states */
            dl4c_worker_states ws;
            if (dl4c_worker_states_alloc(net, 2, &ws)) { fprintf(stderr, "%s\n", dl4c_error_message()); return 1; }
            ws.batches[0] = 1;
            ws.steps[0] = ws.steps[1] = 12;
            ws.examples[0] = 4;
            ws.loss[0] = 0.25;
            snprintf(path, sizeof path, "%s/adam_workers.safetensors", argv[1]);
            if (dl4c_model_save_train_checkpoint(net, &pr, delta, &ws, path)) {
                fprintf(stderr, "%s\n", dl4c_error_message());
                return 1;
            }
            dl4c_worker_states_free(&ws);
            free(delta);
            pr.has_updater = false;
            snprintf(path, sizeof path, "%s/adam_no_updater.safetensors", argv[1]);
            if (dl4c_model_save(net, &pr, path)) { fprintf(stderr, "%s\n", dl4c_error_message()); return 1; }
        }
        dl4c_net_free(net);
    }
    return 0;
}
