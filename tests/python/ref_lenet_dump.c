/* Dumps the seed's LeNet for the PyTorch reference test (tests/python/test_torch_reference.py).
 *
 *   ref_lenet_dump OUT_DIR [IMAGES_IDX_GZ LABELS_IDX_GZ]
 *
 * Builds the seed's LeNet (seed 123, adagrad lr 0.1, l2 5e-4), takes STEPS minibatches of
 * BATCH examples (the first BATCH * STEPS Fashion-MNIST images scaled to [0, 1] when the IDX
 * files are given, otherwise uniform [0, 1) pixels and random labels from dl4c_rng), and writes
 * into OUT_DIR raw little-endian float32 files plus index.json, which names every file with its
 * shape:
 *   x, y                      inputs [STEPS, BATCH, 1, 28, 28] and one-hot labels [STEPS, BATCH, 10]
 *   params0/<name>            initial parameters in PyTorch layout (state_dict names)
 *   output0                   dl4c_net_output on batch 0 [BATCH, 10] (softmax probabilities)
 *   grad0/<name>              gradient of batch 0 (dl4c_net_compute_gradient; l2 term included)
 *   params<k>/<name>          parameters after k = 1..STEPS calls of dl4c_net_fit on batches 0..k-1
 *   state<STEPS>/<name>       Adagrad accumulators (sum of g^2) after the last step
 * and in index.json the scores: score0 (compute_gradient on batch 0) and fit_scores[k] (the score
 * dl4c_net_fit returned for step k, i.e. before that step). Exit status 0 on success. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <zlib.h>

#include "dl4c/nn.h"
#include "seed_lenet.h"

enum { BATCH = 16, STEPS = 10, CLASSES = 10, SIDE = 28 };

static int fail(const char *what) {
    fprintf(stderr, "ref_lenet_dump: %s\n", what);
    return 1;
}

/* Reads an IDX file (gzip): checks the magic and the leading dimension, skips the header and
 * reads `want` bytes of data. Returns 0 on success. */
static int read_idx_gz(const char *path, int ndim, unsigned char *data, size_t want) {
    gzFile f = gzopen(path, "rb");
    if (!f) { fprintf(stderr, "ref_lenet_dump: cannot open %s: %s\n", path, strerror(errno)); return 1; }
    unsigned char hdr[16];
    const int hlen = 4 + 4 * ndim;
    int ok = gzread(f, hdr, (unsigned)hlen) == hlen && hdr[0] == 0 && hdr[1] == 0 && hdr[2] == 0x08 &&
             hdr[3] == ndim && gzread(f, data, (unsigned)want) == (int)want;
    gzclose(f);
    if (!ok) fprintf(stderr, "ref_lenet_dump: %s: not an IDX file of %d dimensions with enough data\n", path, ndim);
    return !ok;
}

/* Writes n floats to dir/file and records {"file", "shape"} under `name` in the index. */
static int dump(const char *dir, json_t *index, const char *name, const float *v, int64_t n,
                int ndim, const int64_t *shape) {
    char file[256], path[1024];
    snprintf(file, sizeof file, "%s.f32", name);
    for (char *c = file; *c; c++) if (*c == '/') *c = '_';
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "ref_lenet_dump: cannot write %s: %s\n", path, strerror(errno)); return 1; }
    const int ok = fwrite(v, sizeof(float), (size_t)n, f) == (size_t)n;
    if (fclose(f) != 0 || !ok) { fprintf(stderr, "ref_lenet_dump: write error on %s\n", path); return 1; }
    json_t *sh = json_array();
    for (int d = 0; d < ndim; d++) json_array_append_new(sh, json_integer(shape[d]));
    json_object_set_new(json_object_get(index, "tensors"), name,
                        json_pack("{s:s, s:o}", "file", file, "shape", sh));
    return 0;
}

/* Dumps every parameter tensor of the flat buffer `flat` (params, gradients or updater state)
 * under "<prefix>/<state_dict name>", in PyTorch layout. */
static int dump_tensors(const char *dir, json_t *index, const dl4c_net *net, const char *prefix,
                        const float *flat, float *tmp) {
    for (int i = 0; i < dl4c_net_n_param_tensors(net); i++) {
        const dl4c_param_info p = dl4c_net_param_tensor(net, i);
        char name[128];
        snprintf(name, sizeof name, "%s/%s", prefix, p.name);
        dl4c_net_param_export(net, i, flat, tmp);
        if (dump(dir, index, name, tmp, p.size, p.ndim, p.shape)) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s OUT_DIR [IMAGES_IDX_GZ LABELS_IDX_GZ]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return fail("cannot create the output directory");

    /* The seed's LeNet (the example in include/dl4c/nn.h). */
    const dl4c_net_conf conf = seed_lenet_conf();
    dl4c_net *net;
    if (dl4c_net_new(&conf, &net) != DL4C_OK) return fail(dl4c_error_message());
    dl4c_net_set_threads(net, 1);
    const int64_t P = dl4c_net_n_params(net), in = dl4c_net_input_size(net);
    if (in != SIDE * SIDE || dl4c_net_output_size(net) != CLASSES) return fail("unexpected net shape");

    const int64_t n_x = (int64_t)STEPS * BATCH * in, n_y = (int64_t)STEPS * BATCH * CLASSES;
    float *x = malloc(sizeof(float) * (size_t)n_x), *y = calloc((size_t)n_y, sizeof(float));
    float *tmp = malloc(sizeof(float) * (size_t)P), *out = malloc(sizeof(float) * BATCH * CLASSES);
    unsigned char *pix = malloc((size_t)n_x), lab[STEPS * BATCH];
    if (!x || !y || !tmp || !out || !pix) return fail("out of memory");
    if (argc == 4) {
        if (read_idx_gz(argv[2], 3, pix, (size_t)n_x) || read_idx_gz(argv[3], 1, lab, sizeof lab)) return 1;
        for (int64_t i = 0; i < n_x; i++) x[i] = (float)pix[i] / 255.0f;
        for (int i = 0; i < STEPS * BATCH; i++) {
            if (lab[i] >= CLASSES) return fail("label out of range");
            y[i * CLASSES + lab[i]] = 1.0f;
        }
    } else {
        dl4c_rng r = dl4c_rng_make(2024, 7, 0, 0);
        for (int64_t i = 0; i < n_x; i++) x[i] = (float)dl4c_rng_uniform(&r);
        for (int i = 0; i < STEPS * BATCH; i++) y[i * CLASSES + dl4c_rng_below(&r, CLASSES)] = 1.0f;
    }

    json_t *index = json_pack("{s:i, s:i, s:i, s:s, s:{}}", "batch", BATCH, "steps", STEPS,
                              "n_params", (json_int_t)P, "data", argc == 4 ? "idx" : "uniform",
                              "tensors");
    int err = 0;
    const int64_t xs[5] = {STEPS, BATCH, 1, SIDE, SIDE}, ys[3] = {STEPS, BATCH, CLASSES},
                  os[2] = {BATCH, CLASSES};
    err |= dump(dir, index, "x", x, n_x, 5, xs);
    err |= dump(dir, index, "y", y, n_y, 3, ys);
    err |= dump_tensors(dir, index, net, "params0", dl4c_net_params(net), tmp);

    if (dl4c_net_output(net, x, BATCH, out) != DL4C_OK) return fail(dl4c_error_message());
    err |= dump(dir, index, "output0", out, BATCH * CLASSES, 2, os);
    float score;
    if (dl4c_net_compute_gradient(net, x, y, BATCH, &score) != DL4C_OK) return fail(dl4c_error_message());
    json_object_set_new(index, "score0", json_real(score));
    err |= dump_tensors(dir, index, net, "grad0", dl4c_net_gradients(net), tmp);

    json_t *fit_scores = json_array();
    for (int k = 0; k < STEPS && !err; k++) {
        const int64_t off = (int64_t)k * BATCH;
        if (dl4c_net_fit(net, x + off * in, y + off * CLASSES, BATCH, &score) != DL4C_OK)
            return fail(dl4c_error_message());
        json_array_append_new(fit_scores, json_real(score));
        char prefix[32];
        snprintf(prefix, sizeof prefix, "params%d", k + 1);
        err |= dump_tensors(dir, index, net, prefix, dl4c_net_params(net), tmp);
    }
    json_object_set_new(index, "fit_scores", fit_scores);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "state%d", STEPS);
    err |= dump_tensors(dir, index, net, prefix, dl4c_net_updater_state(net), tmp);

    char path[1024];
    snprintf(path, sizeof path, "%s/index.json", dir);
    if (!err && json_dump_file(index, path, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9)) != 0)
        err = fail("cannot write index.json");
    json_decref(index);
    dl4c_net_free(net);
    free(x); free(y); free(tmp); free(out); free(pix);
    return err ? 1 : 0;
}
