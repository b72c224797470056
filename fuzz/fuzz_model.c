/* libFuzzer target: model files (safetensors with dl4c metadata). Each input is read twice:
 * into the fixed network of fuzz_model.h (dl4c_model_read_checkpoint: header, metadata,
 * progress and worker states, tensor names, shapes and offsets), and as a whole model (dl4c_model_load: the network its
 * configuration describes). A file that loads must read back into its own network with the
 * same parameters. */
#include "fuzz_common.h"
#include "fuzz_model.h"

#include <stdlib.h>
#include <string.h>

#include "dl4c/io.h"

static dl4c_net *template_net;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!template_net) {
        const dl4c_net_conf c = fuzz_model_conf(DL4C_ADAM);
        if (dl4c_net_new(&c, &template_net) != DL4C_OK) abort();
    }
    fuzz_file f;
    fuzz_file_open(&f, data, size);
    const int64_t np = dl4c_net_n_params(template_net), ns = dl4c_net_n_updater_state(template_net);
    float *p = malloc(sizeof(float) * (size_t)(np + ns + np));
    if (!p) abort();
    int64_t step;
    dl4c_progress prog;
    dl4c_worker_states ws;
    if (dl4c_model_read_checkpoint(f.path, template_net, p, p + np, p + np + ns, &ws, &step, &prog) == DL4C_OK &&
        prog.has_workers != (ws.workers > 0))
        fuzz_fail("has_workers disagrees with the worker states read");
    dl4c_worker_states_free(&ws);

    dl4c_net *net = NULL;
    if (dl4c_model_load(f.path, &net, &prog) == DL4C_OK) {
        const int64_t n = dl4c_net_n_params(net);
        float *q = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!q) abort();
        if (dl4c_model_read_params(f.path, net, q, NULL, NULL, NULL, NULL) != DL4C_OK)
            fuzz_fail("a model that loads does not read into its own network");
        if (memcmp(q, dl4c_net_params(net), sizeof(float) * (size_t)n) != 0)
            fuzz_fail("dl4c_model_read_params and dl4c_model_load disagree");
        free(q);
        dl4c_net_free(net);
    }
    free(p);
    fuzz_file_close(&f);
    return 0;
}
