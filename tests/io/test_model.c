/* Tests for the model file (src/io/model.c): save -> load round trips that are bit-identical
 * for every updater, progress and BMUF state; every damaged or hostile file fails cleanly
 * with a message that starts with the path; failed saves leave nothing behind. Also writes
 * DL4C_BINARY_DIR/io_test_lenet.safetensors (+ _x.f32 input, _out.f32 output) for
 * tests/io/test_safetensors_read.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dl4c/config.h"
#include "dl4c/io.h"
#include "dl4c/nn.h"
#include "seed_lenet.h"

enum { BATCH = 8, SIDE = 28, CLASSES = 10 };

/* ---- helpers ---- */

static char g_dir[256];   /* a fresh temporary directory for the whole run */

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

/* The seed's LeNet (include/dl4c/nn.h) with the given updater. */
static dl4c_net *lenet(dl4c_updater u) {
    dl4c_net_conf conf = seed_lenet_conf();
    conf.updater = (dl4c_updater_conf){.type = u, .learning_rate = 0.01f};
    dl4c_net *net = NULL;
    assert_int_equal(dl4c_net_new(&conf, &net), DL4C_OK);
    return net;
}

/* Random inputs x [n, 784] and one-hot labels y [n, 10]. */
static void random_batch(uint64_t seed, float *x, float *y, int n) {
    dl4c_rng r = dl4c_rng_make(seed, 99, 0, 0);
    for (int i = 0; i < n * SIDE * SIDE; i++) x[i] = (float)dl4c_rng_uniform(&r);
    memset(y, 0, sizeof(float) * (size_t)n * CLASSES);
    for (int i = 0; i < n; i++) y[i * CLASSES + dl4c_rng_below(&r, CLASSES)] = 1.0f;
}

/* A LeNet trained for `steps` minibatches, so params, updater state and step are non-trivial. */
static dl4c_net *trained_lenet(dl4c_updater u, int steps) {
    dl4c_net *net = lenet(u);
    float x[BATCH * SIDE * SIDE], y[BATCH * CLASSES], score;
    for (int k = 0; k < steps; k++) {
        random_batch((uint64_t)k + 1, x, y, BATCH);
        assert_int_equal(dl4c_net_fit(net, x, y, BATCH, &score), DL4C_OK);
    }
    return net;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in g_dir whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void assert_same_conf(const dl4c_net *a, const dl4c_net *b) {
    char *ja = NULL, *jb = NULL;
    assert_int_equal(dl4c_config_to_json(dl4c_net_conf_of(a), &ja), DL4C_OK);
    assert_int_equal(dl4c_config_to_json(dl4c_net_conf_of(b), &jb), DL4C_OK);
    assert_string_equal(ja, jb);
    free(ja);
    free(jb);
}

/* Bit-identical parameters, updater state (when expected) and step. */
static void assert_same_net(dl4c_net *a, dl4c_net *b, bool with_state) {
    assert_int_equal(dl4c_net_n_params(a), dl4c_net_n_params(b));
    assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b),
                        sizeof(float) * (size_t)dl4c_net_n_params(a));
    assert_int_equal(dl4c_net_n_updater_state(a), dl4c_net_n_updater_state(b));
    if (with_state && dl4c_net_n_updater_state(a))
        assert_memory_equal(dl4c_net_updater_state(a), dl4c_net_updater_state(b),
                            sizeof(float) * (size_t)dl4c_net_n_updater_state(a));
    assert_int_equal(dl4c_net_step(a), dl4c_net_step(b));
    assert_same_conf(a, b);
}

static void assert_same_progress(const dl4c_progress *a, const dl4c_progress *b) {
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->round, b->round);
    assert_int_equal(a->iteration, b->iteration);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->workers, b->workers);
    if (isnan(a->loss)) assert_true(isnan(b->loss));
    else assert_memory_equal(&a->loss, &b->loss, sizeof a->loss);
    assert_int_equal(a->has_updater, b->has_updater);
    assert_int_equal(a->has_bmuf, b->has_bmuf);
}

/* Loading `path` must fail with `status`, NULL net, and a message that starts with the path
 * and contains `fragment` (NULL: any). */
static void expect_load_fail(const char *path, dl4c_status status, const char *fragment) {
    dl4c_net *net = (dl4c_net *)&net;   /* garbage that must be overwritten with NULL */
    dl4c_progress p;
    const dl4c_status s = dl4c_model_load(path, &net, &p);
    const char *msg = dl4c_error_message();
    if (s != status || net != NULL || strncmp(msg, path, strlen(path)) != 0 ||
        (fragment && !strstr(msg, fragment)))
        fail_msg("load %s: status %s, net %p, message \"%s\" (expected %s with \"%s\")", path,
                 dl4c_status_str(s), (void *)net, msg, dl4c_status_str(status), fragment ? fragment : "");
}

/* A saved file split into its header (parsed) and data section, for editing. */
typedef struct model_file {
    json_t *header;
    unsigned char *data;
    size_t data_len;
} model_file;

static model_file open_model_file(const char *path) {
    size_t len;
    unsigned char *buf = read_all(path, &len);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)buf[b] << (8 * b);
    assert_true(hlen % 8 == 0 && 8 + hlen <= len);
    json_error_t err;
    model_file m = {.header = json_loadb((char *)buf + 8, hlen, 0, &err)};
    assert_non_null(m.header);
    m.data_len = len - 8 - hlen;
    m.data = malloc(m.data_len + 1);
    memcpy(m.data, buf + 8 + hlen, m.data_len);
    free(buf);
    return m;
}

/* Writes header (as given) + data + `extra` trailing bytes. */
static void write_model_file(const char *path, const model_file *m, size_t extra) {
    char *text = json_dumps(m->header, JSON_COMPACT);
    assert_non_null(text);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    unsigned char *buf = calloc(1, 8 + padded + m->data_len + extra);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, text, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    memcpy(buf + 8 + padded, m->data, m->data_len);
    memset(buf + 8 + padded + m->data_len, 0xAB, extra);
    write_all(path, buf, 8 + padded + m->data_len + extra);
    free(buf);
    free(text);
}

static void close_model_file(model_file *m) {
    json_decref(m->header);
    free(m->data);
}

static json_t *meta_of(model_file *m) { return json_object_get(m->header, "__metadata__"); }

/* ---- round trips ---- */

static void roundtrip(dl4c_updater u, int steps) {
    dl4c_net *net = trained_lenet(u, steps);
    const dl4c_progress p = {.epoch = 2, .round = 3, .iteration = steps, .seed = 123, .workers = 4,
                             .loss = 0.123456789012345678, .has_updater = true};
    const char *path = tmp_path("roundtrip.safetensors");
    assert_int_equal(dl4c_model_save(net, &p, path), DL4C_OK);
    assert_int_equal(count_temp_files(g_dir), 0);
    dl4c_net *back = NULL;
    dl4c_progress q;
    memset(&q, 0x5A, sizeof q);
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_non_null(back);
    assert_same_net(net, back, true);
    dl4c_progress want = p;
    want.has_updater = dl4c_updater_state_per_param(u) > 0;
    assert_same_progress(&want, &q);
    assert_int_equal(dl4c_net_step(back), steps);

    /* The loaded network computes the same outputs and keeps training identically. */
    float x[BATCH * SIDE * SIDE], y[BATCH * CLASSES], o1[BATCH * CLASSES], o2[BATCH * CLASSES], s1, s2;
    random_batch(77, x, y, BATCH);
    assert_int_equal(dl4c_net_fit(net, x, y, BATCH, &s1), DL4C_OK);
    assert_int_equal(dl4c_net_fit(back, x, y, BATCH, &s2), DL4C_OK);
    assert_memory_equal(&s1, &s2, sizeof s1);
    assert_int_equal(dl4c_net_output(net, x, BATCH, o1), DL4C_OK);
    assert_int_equal(dl4c_net_output(back, x, BATCH, o2), DL4C_OK);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_same_net(net, back, true);

    /* Tensor names in the file: parameters then updater slots. */
    model_file m = open_model_file(path);
    const int slots = dl4c_updater_state_per_param(u);
    assert_int_equal(json_object_size(m.header), 1 + 8 * (1 + slots));
    for (int s = 0; s < slots; s++) {
        char name[96];
        snprintf(name, sizeof name, "updater.layers.4.weight.%s", dl4c_updater_slot_name(u, s));
        assert_non_null(json_object_get(m.header, name));
    }
    assert_string_equal(json_string_value(json_object_get(meta_of(&m), "format")), "dl4c");
    assert_string_equal(json_string_value(json_object_get(meta_of(&m), "version")), "1");
    char step[32];
    snprintf(step, sizeof step, "%d", steps);
    assert_string_equal(json_string_value(json_object_get(meta_of(&m), "step")), step);
    close_model_file(&m);
    dl4c_net_free(back);
    dl4c_net_free(net);
}

static void test_roundtrip_adagrad(void **state) { (void)state; roundtrip(DL4C_ADAGRAD, 3); }
static void test_roundtrip_adam(void **state) { (void)state; roundtrip(DL4C_ADAM, 3); }
static void test_roundtrip_sgd(void **state) { (void)state; roundtrip(DL4C_SGD, 2); }
static void test_roundtrip_nesterovs(void **state) { (void)state; roundtrip(DL4C_NESTEROVS, 2); }
static void test_roundtrip_rmsprop(void **state) { (void)state; roundtrip(DL4C_RMSPROP, 2); }

/* has_updater false: no updater tensors, the loaded state is zero, the step is kept. */
static void test_without_updater(void **state) {
    (void)state;
    dl4c_net *net = trained_lenet(DL4C_ADAM, 2);
    const dl4c_progress p = {.epoch = 1, .seed = 5, .workers = 1, .loss = 2.5, .has_updater = false};
    const char *path = tmp_path("no_updater.safetensors");
    assert_int_equal(dl4c_model_save(net, &p, path), DL4C_OK);
    dl4c_net *back;
    dl4c_progress q;
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_same_net(net, back, false);
    assert_false(q.has_updater);
    for (int64_t i = 0; i < dl4c_net_n_updater_state(back); i++)
        assert_true(dl4c_net_updater_state(back)[i] == 0.0f);
    model_file m = open_model_file(path);
    assert_int_equal(json_object_size(m.header), 1 + 8);
    close_model_file(&m);
    dl4c_net_free(back);
    dl4c_net_free(net);
}

/* progress NULL: updater state kept; progress reads the config's seed and workers. NaN loss
 * and a seed above INT64_MAX survive. progress_out may be NULL. */
static void test_progress_edge_cases(void **state) {
    (void)state;
    dl4c_net *net = trained_lenet(DL4C_ADAGRAD, 1);
    const char *path = tmp_path("noprogress.safetensors");
    assert_int_equal(dl4c_model_save(net, NULL, path), DL4C_OK);
    dl4c_net *back;
    dl4c_progress q;
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_same_net(net, back, true);
    assert_true(q.has_updater);
    assert_true(q.seed == 123);
    assert_int_equal(q.workers, dl4c_net_conf_of(net)->training.workers);
    assert_true(isnan(q.loss));
    dl4c_net_free(back);

    const dl4c_progress p = {.epoch = 7, .round = 1, .iteration = 1, .seed = UINT64_MAX - 1,
                             .workers = 2, .loss = INFINITY, .has_updater = true};
    assert_int_equal(dl4c_model_save(net, &p, path), DL4C_OK);
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_true(q.seed == UINT64_MAX - 1);
    assert_true(isnan(q.loss));   /* not finite: saved as null */
    dl4c_net_free(back);
    assert_int_equal(dl4c_model_load(path, &back, NULL), DL4C_OK);
    dl4c_net_free(back);

    /* A file without progress and step (as a PyTorch user might write) loads with zeros. */
    model_file m = open_model_file(path);
    json_object_del(meta_of(&m), "progress");
    json_object_del(meta_of(&m), "step");
    const char *bare = tmp_path("bare.safetensors");
    write_model_file(bare, &m, 0);
    close_model_file(&m);
    assert_int_equal(dl4c_model_load(bare, &back, &q), DL4C_OK);
    assert_int_equal(dl4c_net_step(back), 0);
    assert_int_equal(q.epoch, 0);
    assert_true(q.has_updater);
    dl4c_net_free(back);
    dl4c_net_free(net);
}

/* A checkpoint with BMUF state, read back into caller buffers of a template network. */
static void test_checkpoint_read_params(void **state) {
    (void)state;
    dl4c_net *net = trained_lenet(DL4C_NESTEROVS, 2);
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    float *bmuf = malloc(sizeof(float) * (size_t)np);
    dl4c_rng r = dl4c_rng_make(9, 9, 9, 9);
    for (int64_t i = 0; i < np; i++) bmuf[i] = (float)dl4c_rng_normal(&r);
    const dl4c_progress p = {.epoch = 0, .round = 17, .iteration = 2, .seed = 123, .workers = 3,
                             .loss = 1.0, .has_updater = true, .has_bmuf = true};
    const char *path = tmp_path("ckpt.safetensors");
    assert_int_equal(dl4c_model_save_checkpoint(net, &p, bmuf, path), DL4C_OK);

    dl4c_net *tmpl = lenet(DL4C_NESTEROVS);
    float *params = malloc(sizeof(float) * (size_t)np), *ustate = malloc(sizeof(float) * (size_t)ns),
          *bmuf2 = malloc(sizeof(float) * (size_t)np);
    int64_t step = -1;
    dl4c_progress q;
    assert_int_equal(dl4c_model_read_params(path, tmpl, params, ustate, bmuf2, &step, &q), DL4C_OK);
    assert_memory_equal(params, dl4c_net_params(net), sizeof(float) * (size_t)np);
    assert_memory_equal(ustate, dl4c_net_updater_state(net), sizeof(float) * (size_t)ns);
    assert_memory_equal(bmuf2, bmuf, sizeof(float) * (size_t)np);
    assert_int_equal(step, 2);
    assert_same_progress(&p, &q);

    /* dl4c_model_load accepts (and skips) the BMUF state. */
    dl4c_net *back;
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_true(q.has_bmuf);
    assert_same_net(net, back, true);
    dl4c_net_free(back);

    /* A template with another updater: the file's state is unexpected; buffers untouched. */
    dl4c_net *adam = lenet(DL4C_ADAM);
    memset(params, 0x11, sizeof(float) * (size_t)np);
    const dl4c_status s = dl4c_model_read_params(path, adam, params, NULL, NULL, NULL, NULL);
    assert_int_equal(s, DL4C_ERR_FORMAT);
    assert_non_null(strstr(dl4c_error_message(), "updater.layers.0.weight.momentum"));
    for (int64_t i = 0; i < np; i++) {
        uint32_t bits;
        memcpy(&bits, &params[i], 4);
        assert_int_equal(bits, 0x11111111u);
    }
    dl4c_net_free(adam);
    dl4c_net_free(tmpl);
    dl4c_net_free(net);
    free(params);
    free(ustate);
    free(bmuf);
    free(bmuf2);
}

static void test_slot_names(void **state) {
    (void)state;
    assert_null(dl4c_updater_slot_name(DL4C_SGD, 0));
    assert_string_equal(dl4c_updater_slot_name(DL4C_NESTEROVS, 0), "momentum");
    assert_string_equal(dl4c_updater_slot_name(DL4C_ADAGRAD, 0), "sum_sq");
    assert_string_equal(dl4c_updater_slot_name(DL4C_RMSPROP, 0), "square_avg");
    assert_string_equal(dl4c_updater_slot_name(DL4C_ADAM, 0), "exp_avg");
    assert_string_equal(dl4c_updater_slot_name(DL4C_ADAM, 1), "exp_avg_sq");
    assert_null(dl4c_updater_slot_name(DL4C_ADAM, 2));
    assert_null(dl4c_updater_slot_name(DL4C_UPDATER_COUNT, 0));
}

/* The model the Python script reads: trained LeNet (adagrad), an input and dl4c's output. */
static void test_write_python_fixture(void **state) {
    (void)state;
    dl4c_net *net = trained_lenet(DL4C_ADAGRAD, 3);
    const dl4c_progress p = {.epoch = 1, .round = 2, .iteration = 3, .seed = 123, .workers = 1,
                             .loss = 2.0, .has_updater = true};
    char path[1024];
    snprintf(path, sizeof path, "%s/io_test_lenet.safetensors", DL4C_BINARY_DIR);
    assert_int_equal(dl4c_model_save(net, &p, path), DL4C_OK);
    enum { N = 4 };
    float x[N * SIDE * SIDE], y[N * CLASSES], out[N * CLASSES];
    random_batch(4242, x, y, N);
    assert_int_equal(dl4c_net_output(net, x, N, out), DL4C_OK);
    snprintf(path, sizeof path, "%s/io_test_lenet_x.f32", DL4C_BINARY_DIR);
    write_all(path, x, sizeof x);
    snprintf(path, sizeof path, "%s/io_test_lenet_out.f32", DL4C_BINARY_DIR);
    write_all(path, out, sizeof out);
    dl4c_net_free(net);
}

/* ---- damaged and hostile files ---- */

static char g_good[512];   /* a valid saved model (adagrad LeNet) */

static void make_good(void) {
    snprintf(g_good, sizeof g_good, "%s/good.safetensors", g_dir);
    if (file_exists(g_good)) return;
    dl4c_net *net = trained_lenet(DL4C_ADAGRAD, 1);
    const dl4c_progress p = {.epoch = 1, .iteration = 1, .seed = 123, .workers = 1, .loss = 1.5,
                             .has_updater = true};
    assert_int_equal(dl4c_model_save(net, &p, g_good), DL4C_OK);
    dl4c_net_free(net);
}

static void test_truncated(void **state) {
    (void)state;
    make_good();
    size_t len;
    unsigned char *buf = read_all(g_good, &len);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)buf[b] << (8 * b);
    const char *path = tmp_path("truncated.safetensors");
    /* Every prefix up to the end of the header, then a sample of longer ones. */
    for (size_t n = 0; n < len; n += n <= 8 + hlen + 16 ? 1 : 997) {
        write_all(path, buf, n);
        expect_load_fail(path, DL4C_ERR_FORMAT, NULL);
    }
    for (size_t n = len - 5; n < len; n++) {
        write_all(path, buf, n);
        expect_load_fail(path, DL4C_ERR_FORMAT, "");
    }
    write_all(path, buf, 0);
    expect_load_fail(path, DL4C_ERR_FORMAT, "too short");
    write_all(path, buf, 8 + hlen - 1);
    expect_load_fail(path, DL4C_ERR_FORMAT, "runs past the end of the file");
    write_all(path, buf, 8 + hlen);
    expect_load_fail(path, DL4C_ERR_FORMAT, "outside the data section");
    free(buf);
}

/* Flipping any byte of the length or header must not crash: the load fails cleanly or (a
 * digit in the config changed) gives a working network. */
static void test_flipped_header_bytes(void **state) {
    (void)state;
    make_good();
    size_t len;
    unsigned char *buf = read_all(g_good, &len);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)buf[b] << (8 * b);
    const char *path = tmp_path("flipped.safetensors");
    static const unsigned char flips[] = {0x01, 0x20, 0x80, 0xFF};
    int failed = 0, loaded = 0;
    for (size_t i = 0; i < 8 + hlen; i++) {
        const unsigned char f = flips[i % sizeof flips];
        buf[i] ^= f;
        write_all(path, buf, len);
        dl4c_net *net = (dl4c_net *)&net;
        const dl4c_status s = dl4c_model_load(path, &net, NULL);
        if (s == DL4C_OK) {
            assert_non_null(net);
            dl4c_net_free(net);
            loaded++;
        } else {
            assert_null(net);
            assert_true(s == DL4C_ERR_FORMAT || s == DL4C_ERR_NOMEM);
            assert_int_equal(strncmp(dl4c_error_message(), path, strlen(path)), 0);
            failed++;
        }
        buf[i] ^= f;
    }
    assert_true(failed > loaded);
    free(buf);
}

/* Edits one thing in the good file's header, writes it, expects the failure. */
typedef void (*edit_fn)(model_file *m);

static void expect_edit_fail(edit_fn edit, size_t extra, const char *fragment) {
    make_good();
    model_file m = open_model_file(g_good);
    edit(&m);
    const char *path = tmp_path("edited.safetensors");
    write_model_file(path, &m, extra);
    close_model_file(&m);
    expect_load_fail(path, DL4C_ERR_FORMAT, fragment);
}

static void no_edit(model_file *m) { (void)m; }
static void del_meta(model_file *m) { json_object_del(m->header, "__metadata__"); }
static void meta_array(model_file *m) { json_object_set_new(m->header, "__metadata__", json_array()); }
static void meta_number(model_file *m) { json_object_set_new(meta_of(m), "extra", json_integer(1)); }
static void del_config(model_file *m) { json_object_del(meta_of(m), "config"); }
static void bad_config_json(model_file *m) { json_object_set_new(meta_of(m), "config", json_string("{\"seed\": ")); }
static void bad_config_field(model_file *m) {
    json_object_set_new(meta_of(m), "config",
                        json_string("{\"input\": {\"features\": 4}, \"layers\": [{\"type\": \"output\", "
                                    "\"n_out\": 3, \"kernel\": [1, 1]}]}"));
}
static void bad_format(model_file *m) { json_object_set_new(meta_of(m), "format", json_string("pt")); }
static void del_format(model_file *m) { json_object_del(meta_of(m), "format"); }
static void bad_version(model_file *m) { json_object_set_new(meta_of(m), "version", json_string("2")); }
static void bad_step(model_file *m) { json_object_set_new(meta_of(m), "step", json_string("-3")); }
static void bad_progress(model_file *m) { json_object_set_new(meta_of(m), "progress", json_string("[1]")); }
static void bad_progress_field(model_file *m) {
    json_object_set_new(meta_of(m), "progress", json_string("{\"epoch\": \"one\"}"));
}
static void unknown_progress_field(model_file *m) {
    json_object_set_new(meta_of(m), "progress", json_string("{\"epochs\": 1}"));
}
static json_t *tensor(model_file *m, const char *name) { return json_object_get(m->header, name); }
static void dtype_f16(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "dtype", json_string("F16"));
}
static void wrong_shape(model_file *m) {
    json_object_set_new(tensor(m, "layers.4.weight"), "shape", json_pack("[i, i]", 200, 100));
}
static void wrong_rank(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.weight"), "shape", json_pack("[i, i]", 20, 25));
}
static void offsets_past_end(model_file *m) {
    json_t *o = json_object_get(tensor(m, "layers.5.bias"), "data_offsets");
    json_array_set_new(o, 1, json_integer(json_integer_value(json_array_get(o, 1)) + 1000000));
}
static void offsets_wrong_size(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "data_offsets", json_pack("[i, i]", 2000, 2004));
}
static void offsets_overlap(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "data_offsets", json_pack("[i, i]", 1000, 1080));
}
static void offsets_negative(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "data_offsets", json_pack("[i, i]", -80, 0));
}
static void offsets_reversed(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "data_offsets", json_pack("[i, i]", 2080, 2000));
}
static void offsets_huge(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "data_offsets",
                        json_pack("[I, I]", (json_int_t)INT64_MAX - 10, (json_int_t)INT64_MAX));
}
static void shape_huge(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "shape", json_pack("[I]", (json_int_t)INT64_MAX));
}
static void tensor_not_object(model_file *m) { json_object_set_new(m->header, "layers.0.bias", json_integer(3)); }
static void tensor_extra_field(model_file *m) {
    json_object_set_new(tensor(m, "layers.0.bias"), "note", json_string("hi"));
}
static void missing_tensor(model_file *m) { json_object_del(m->header, "layers.5.bias"); }
static void missing_state(model_file *m) { json_object_del(m->header, "updater.layers.2.bias.sum_sq"); }
static void missing_all_state(model_file *m) {
    const char *names[] = {"weight", "bias"};
    for (int l = 0; l < 6; l++)
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "updater.layers.%d.%s.sum_sq", l, names[k]);
            json_object_del(m->header, name);
        }
}
static void unexpected_tensor(model_file *m) {
    json_object_set_new(m->header, "layers.9.weight",
                        json_pack("{s:s, s:[i], s:[i, i]}", "dtype", "F32", "shape", 0, "data_offsets", 0, 0));
}
static void unexpected_slot(model_file *m) {
    json_object_set_new(m->header, "updater.layers.0.bias.exp_avg",
                        json_pack("{s:s, s:[i], s:[i, i]}", "dtype", "F32", "shape", 20, "data_offsets", 0, 80));
}

static void test_bad_metadata(void **state) {
    (void)state;
    expect_edit_fail(del_meta, 0, "no __metadata__");
    expect_edit_fail(meta_array, 0, "__metadata__ is not an object");
    expect_edit_fail(meta_number, 0, "__metadata__.extra: expected a string");
    expect_edit_fail(del_config, 0, "no __metadata__.config");
    expect_edit_fail(bad_config_json, 0, "__metadata__.config");
    expect_edit_fail(bad_config_field, 0, "kernel");
    expect_edit_fail(bad_format, 0, "\"pt\", expected \"dl4c\"");
    expect_edit_fail(del_format, 0, "format is missing");
    expect_edit_fail(bad_version, 0, "unsupported model file version \"2\"");
    expect_edit_fail(bad_step, 0, "__metadata__.step");
    expect_edit_fail(bad_progress, 0, "__metadata__.progress");
    expect_edit_fail(bad_progress_field, 0, "__metadata__.progress.epoch");
    expect_edit_fail(unknown_progress_field, 0, "unknown field \"epochs\"");
}

static void test_bad_tensors(void **state) {
    (void)state;
    expect_edit_fail(dtype_f16, 0, "layers.0.bias: dtype is \"F16\", only F32 is supported");
    expect_edit_fail(wrong_shape, 0, "layers.4.weight: expected shape [200, 200], file has [200, 100]");
    expect_edit_fail(wrong_rank, 0, "layers.0.weight: expected shape [20, 1, 5, 5], file has [20, 25]");
    expect_edit_fail(shape_huge, 0, "layers.0.bias: expected shape [20], file has [9223372036854775807]");
    expect_edit_fail(offsets_past_end, 0, "outside the data section");
    expect_edit_fail(offsets_wrong_size, 0, "the shape needs 80");
    expect_edit_fail(offsets_overlap, 0, "overlaps");
    expect_edit_fail(offsets_negative, 0, "non-negative");
    expect_edit_fail(offsets_reversed, 0, "outside the data section");
    expect_edit_fail(offsets_huge, 0, "outside the data section");
    expect_edit_fail(tensor_not_object, 0, "layers.0.bias: expected an object");
    expect_edit_fail(tensor_extra_field, 0, "unknown field \"note\"");
    expect_edit_fail(missing_tensor, 0, "missing tensor \"layers.5.bias\"");
    expect_edit_fail(missing_state, 0, "missing tensor \"updater.layers.2.bias.sum_sq\"");
    expect_edit_fail(missing_all_state, 0, "progress says has_updater is true");
    expect_edit_fail(unexpected_tensor, 0, "unexpected tensor \"layers.9.weight\"");
    expect_edit_fail(unexpected_slot, 0, "keeps state \"sum_sq\"");
    expect_edit_fail(no_edit, 4, "4 trailing bytes");
    expect_edit_fail(no_edit, 1, "1 trailing bytes");
}

/* ---- Worker states of a round cut short (a checkpoint written on SIGINT mid-round) ---- */

static char g_workers_ckpt[512];   /* a checkpoint with 3 workers' states, for the edits */

static void fill_worker_states(dl4c_net *net, dl4c_worker_states *ws) {
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    assert_int_equal(dl4c_worker_states_alloc(net, 3, ws), DL4C_OK);
    dl4c_rng r = dl4c_rng_make(5, 6, 7, 8);
    for (int64_t i = 0; i < 3 * np; i++) ws->params[i] = (float)dl4c_rng_normal(&r);
    for (int64_t i = 0; i < 3 * ns; i++) ws->ustate[i] = (float)dl4c_rng_uniform(&r);
    const int64_t batches[3] = {2, 0, 5}, steps[3] = {12, 10, 15}, skipped[3] = {0, 0, 1};
    for (int w = 0; w < 3; w++) {
        ws->batches[w] = batches[w];
        ws->steps[w] = steps[w];
        ws->examples[w] = batches[w] * 32;
        ws->skipped[w] = skipped[w];
        ws->loss[w] = 0.1 * (w + 1) + 1.0 / 3.0;
    }
}

static void test_worker_states(void **state) {
    (void)state;
    dl4c_net *net = trained_lenet(DL4C_ADAGRAD, 2);
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    dl4c_worker_states ws;
    fill_worker_states(net, &ws);
    const dl4c_progress p = {.epoch = 1, .round = 4, .iteration = 10, .seed = 123, .workers = 3,
                             .loss = 0.5, .has_updater = true};
    const char *path = strcpy(g_workers_ckpt, tmp_path("cut.safetensors"));
    assert_int_equal(dl4c_model_save_train_checkpoint(net, &p, NULL, &ws, path), DL4C_OK);

    /* Read back: every worker's tensors and counters, bit for bit. */
    dl4c_net *tmpl = lenet(DL4C_ADAGRAD);
    float *params = malloc(sizeof(float) * (size_t)np), *ustate = malloc(sizeof(float) * (size_t)ns);
    dl4c_worker_states got;
    dl4c_progress q;
    int64_t step = -1;
    assert_int_equal(dl4c_model_read_checkpoint(path, tmpl, params, ustate, NULL, &got, &step, &q), DL4C_OK);
    assert_true(q.has_workers);
    assert_int_equal(got.workers, 3);
    assert_memory_equal(got.params, ws.params, sizeof(float) * (size_t)(3 * np));
    assert_memory_equal(got.ustate, ws.ustate, sizeof(float) * (size_t)(3 * ns));
    assert_memory_equal(got.batches, ws.batches, sizeof(int64_t) * 3);
    assert_memory_equal(got.steps, ws.steps, sizeof(int64_t) * 3);
    assert_memory_equal(got.examples, ws.examples, sizeof(int64_t) * 3);
    assert_memory_equal(got.skipped, ws.skipped, sizeof(int64_t) * 3);
    assert_memory_equal(got.loss, ws.loss, sizeof(double) * 3);
    assert_memory_equal(params, dl4c_net_params(net), sizeof(float) * (size_t)np);
    assert_int_equal(step, 2);
    dl4c_worker_states_free(&got);
    assert_null(got.params);

    /* A file without worker states reads as none; the model loaders accept (and skip) them. */
    assert_int_equal(dl4c_model_save(net, &p, tmp_path("plain.safetensors")), DL4C_OK);
    assert_int_equal(dl4c_model_read_checkpoint(tmp_path("plain.safetensors"), tmpl, params, NULL, NULL, &got,
                                                NULL, &q), DL4C_OK);
    assert_int_equal(got.workers, 0);
    assert_false(q.has_workers);
    assert_int_equal(dl4c_model_read_params(path, tmpl, params, NULL, NULL, NULL, &q), DL4C_OK);
    assert_true(q.has_workers);
    dl4c_net *back;
    assert_int_equal(dl4c_model_load(path, &back, &q), DL4C_OK);
    assert_same_net(net, back, true);
    dl4c_net_free(back);

    /* Without the updater state, the workers' updater tensors are left out too. */
    dl4c_progress nu = p;
    nu.has_updater = false;
    assert_int_equal(dl4c_model_save_train_checkpoint(net, &nu, NULL, &ws, tmp_path("cut_nu.safetensors")), DL4C_OK);
    assert_int_equal(dl4c_model_read_checkpoint(tmp_path("cut_nu.safetensors"), tmpl, params, NULL, NULL, &got,
                                                NULL, &q), DL4C_OK);
    assert_false(q.has_updater);
    assert_memory_equal(got.params, ws.params, sizeof(float) * (size_t)(3 * np));
    dl4c_worker_states_free(&got);

    dl4c_worker_states_free(&ws);
    dl4c_net_free(tmpl);
    dl4c_net_free(net);
    free(params);
    free(ustate);
}

/* Edits the "partial" object inside the progress metadata of g_workers_ckpt. */
static void edit_partial(model_file *m, void (*edit)(json_t *partial, json_t *progress)) {
    json_t *progress = json_loads(json_string_value(json_object_get(meta_of(m), "progress")), 0, NULL);
    assert_non_null(progress);
    edit(json_object_get(progress, "partial"), progress);
    char *text = json_dumps(progress, JSON_COMPACT);
    json_object_set_new(meta_of(m), "progress", json_string(text));
    free(text);
    json_decref(progress);
}
static void short_array(json_t *pa, json_t *pr) { (void)pr; json_array_remove(json_object_get(pa, "steps"), 0); }
static void too_many_batches(json_t *pa, json_t *pr) {
    (void)pr;
    json_array_set_new(json_object_get(pa, "batches"), 0, json_integer(1000));
}
static void skipped_over(json_t *pa, json_t *pr) {
    (void)pr;
    json_array_set_new(json_object_get(pa, "skipped"), 1, json_integer(1));
}
static void loss_string(json_t *pa, json_t *pr) { (void)pr; json_array_set_new(json_object_get(pa, "loss"), 2, json_string("x")); }
static void partial_extra(json_t *pa, json_t *pr) { (void)pr; json_object_set_new(pa, "rng", json_array()); }
static void partial_gone(json_t *pa, json_t *pr) { (void)pa; json_object_del(pr, "partial"); }
static void workers_zero(json_t *pa, json_t *pr) { (void)pa; json_object_set_new(pr, "workers", json_integer(0)); }
static void workers_many(json_t *pa, json_t *pr) {
    json_object_set_new(pr, "workers", json_integer(4000));
    const char *keys[] = {"batches", "steps", "examples", "skipped", "loss"};
    for (int j = 0; j < 5; j++)
        for (int w = 3; w < 4000; w++) json_array_append_new(json_object_get(pa, keys[j]), json_integer(0));
}

static void ep_short_array(model_file *m) { edit_partial(m, short_array); }
static void ep_too_many_batches(model_file *m) { edit_partial(m, too_many_batches); }
static void ep_skipped_over(model_file *m) { edit_partial(m, skipped_over); }
static void ep_loss_string(model_file *m) { edit_partial(m, loss_string); }
static void ep_partial_extra(model_file *m) { edit_partial(m, partial_extra); }
static void ep_partial_gone(model_file *m) { edit_partial(m, partial_gone); }
static void ep_workers_zero(model_file *m) { edit_partial(m, workers_zero); }
static void ep_workers_many(model_file *m) { edit_partial(m, workers_many); }
static void missing_worker_tensor(model_file *m) { json_object_del(m->header, "worker.1.layers.4.bias"); }
static void missing_worker_state(model_file *m) { json_object_del(m->header, "worker.2.updater.layers.0.weight.sum_sq"); }
static void worker_out_of_range(model_file *m) {
    json_t *t = json_deep_copy(json_object_get(m->header, "worker.2.layers.0.bias"));
    json_object_del(m->header, "worker.2.layers.0.bias");
    json_object_set_new(m->header, "worker.3.layers.0.bias", t);
}

static void expect_workers_edit_fail(edit_fn edit, const char *fragment) {
    model_file m = open_model_file(g_workers_ckpt);
    edit(&m);
    const char *path = tmp_path("cut_edited.safetensors");
    write_model_file(path, &m, 0);
    close_model_file(&m);
    expect_load_fail(path, DL4C_ERR_FORMAT, fragment);
    /* The resume path checks the same, and leaves the caller's buffers as they were. */
    dl4c_net *tmpl = lenet(DL4C_ADAGRAD);
    dl4c_worker_states ws = {.workers = 99};
    float *params = calloc((size_t)dl4c_net_n_params(tmpl), sizeof(float));
    assert_int_equal(dl4c_model_read_checkpoint(path, tmpl, params, NULL, NULL, &ws, NULL, NULL), DL4C_ERR_FORMAT);
    assert_int_equal(ws.workers, 0);
    assert_null(ws.params);
    for (int64_t i = 0; i < dl4c_net_n_params(tmpl); i++) assert_true(params[i] == 0.0f);
    free(params);
    dl4c_net_free(tmpl);
}

static void test_bad_worker_states(void **state) {
    (void)state;
    assert_true(g_workers_ckpt[0]);   /* written by test_worker_states */
    expect_workers_edit_fail(ep_short_array, "partial.steps: expected an array of 3 entries");
    expect_workers_edit_fail(ep_too_many_batches, "partial.batches[0]: invalid value (at most the averaging frequency)");
    expect_workers_edit_fail(ep_skipped_over, "partial.skipped[1]: invalid value (at most the worker's batches)");
    expect_workers_edit_fail(ep_loss_string, "partial.loss[2]: invalid value");
    expect_workers_edit_fail(ep_partial_extra, "partial: unknown field \"rng\"");
    expect_workers_edit_fail(ep_partial_gone, "has no \"partial\" object");
    expect_workers_edit_fail(ep_workers_zero, "0 workers (expected 1 to 65536)");
    expect_workers_edit_fail(ep_workers_many, "4000 worker states need more than the");
    expect_workers_edit_fail(missing_worker_tensor, "missing tensor \"worker.1.layers.4.bias\"");
    expect_workers_edit_fail(missing_worker_state, "missing tensor \"worker.2.updater.layers.0.weight.sum_sq\"");
    expect_workers_edit_fail(worker_out_of_range, "unexpected tensor \"worker.3.layers.0.bias\"");
}

static void test_bad_container(void **state) {
    (void)state;
    const char *path = tmp_path("container.safetensors");
    unsigned char buf[64] = {0};
    /* header length absurd, then past the end */
    buf[5] = 1;   /* 2^40 */
    write_all(path, buf, sizeof buf);
    expect_load_fail(path, DL4C_ERR_FORMAT, "exceeds the limit");
    memset(buf, 0, sizeof buf);
    buf[0] = 60;
    write_all(path, buf, sizeof buf);
    expect_load_fail(path, DL4C_ERR_FORMAT, "runs past the end");
    /* header not JSON, not an object, JSON with a NUL, empty */
    const char *bodies[] = {"not json", "[1, 2, 3]", "{\"a\": 1} x", "{\"__metadata__\": {}}   ",
                            "{\"a\": \"b\\u0000c\"}", "  {}", "{\"__metadata__\": {\"format\": \"dl4c\","
                            " \"format\": \"dl4c\"}}"};
    const char *frags[] = {"does not start with", "does not start with", "not valid JSON",
                           "format is missing", "not valid JSON", "does not start with",
                           "not valid JSON"};
    for (size_t k = 0; k < sizeof bodies / sizeof *bodies; k++) {
        const size_t n = strlen(bodies[k]);
        unsigned char file[256] = {0};
        file[0] = (unsigned char)n;
        memcpy(file + 8, bodies[k], n);
        write_all(path, file, 8 + n);
        expect_load_fail(path, DL4C_ERR_FORMAT, frags[k]);
    }
    memset(buf, 0, sizeof buf);
    write_all(path, buf, 8);
    expect_load_fail(path, DL4C_ERR_FORMAT, "empty header");
    /* unreadable: missing file, a directory */
    expect_load_fail(tmp_path("no-such-file.safetensors"), DL4C_ERR_IO, "No such file");
    expect_load_fail(g_dir, DL4C_ERR_IO, "not a regular file");
}

/* ---- failing saves ---- */

static void test_failed_saves(void **state) {
    (void)state;
    dl4c_net *net = lenet(DL4C_ADAGRAD);
    /* the directory does not exist */
    const char *missing = tmp_path("no-such-dir/model.safetensors");
    assert_int_equal(dl4c_model_save(net, NULL, missing), DL4C_ERR_IO);
    assert_int_equal(strncmp(dl4c_error_message(), missing, strlen(missing)), 0);
    assert_non_null(strstr(dl4c_error_message(), strerror(ENOENT)));
    assert_false(file_exists(tmp_path("no-such-dir")));
    /* the "directory" is a file */
    const char *plain = tmp_path("plain-file");
    write_all(plain, "x", 1);
    const char *under = tmp_path("plain-file/model.safetensors");
    assert_int_equal(dl4c_model_save(net, NULL, under), DL4C_ERR_IO);
    assert_non_null(strstr(dl4c_error_message(), strerror(ENOTDIR)));
    unlink(plain);

    /* the target is a directory: rename fails, no temp file left */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/fails", g_dir);
    assert_int_equal(mkdir(sub, 0777), 0);
    char target_dir[600];
    snprintf(target_dir, sizeof target_dir, "%s/target", sub);
    assert_int_equal(mkdir(target_dir, 0777), 0);
    assert_int_equal(dl4c_model_save(net, NULL, target_dir), DL4C_ERR_IO);
    assert_int_equal(count_temp_files(sub), 0);
    rmdir(target_dir);

    /* a full disk (simulated with RLIMIT_FSIZE): the existing target stays byte-identical */
    char target[600];
    snprintf(target, sizeof target, "%s/model.safetensors", sub);
    assert_int_equal(dl4c_model_save(net, NULL, target), DL4C_OK);
    size_t len0;
    unsigned char *before = read_all(target, &len0);
    dl4c_net *other = trained_lenet(DL4C_ADAGRAD, 1);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {.rlim_cur = 4096, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    const dl4c_status s = dl4c_model_save(other, NULL, target);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", dl4c_error_message());
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(s, DL4C_ERR_IO);
    assert_int_equal(strncmp(msg, target, strlen(target)), 0);
    assert_non_null(strstr(msg, strerror(EFBIG)));
    size_t len1;
    unsigned char *after = read_all(target, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    assert_int_equal(count_temp_files(sub), 0);
    free(before);
    free(after);

    /* an unwritable directory (meaningless as root, who may write anyway) */
    if (geteuid() != 0) {
        assert_int_equal(chmod(sub, 0555), 0);
        assert_int_equal(dl4c_model_save(other, NULL, target), DL4C_ERR_IO);
        assert_non_null(strstr(dl4c_error_message(), strerror(EACCES)));
        assert_int_equal(chmod(sub, 0755), 0);
        after = read_all(target, &len1);
        assert_int_equal(len0, len1);
        free(after);
        assert_int_equal(count_temp_files(sub), 0);
    }
    /* and a save that works replaces the file, keeping its mode */
    assert_int_equal(chmod(target, 0640), 0);
    assert_int_equal(dl4c_model_save(other, NULL, target), DL4C_OK);
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    dl4c_net *back;
    assert_int_equal(dl4c_model_load(target, &back, NULL), DL4C_OK);
    assert_same_net(other, back, true);
    dl4c_net_free(back);
    unlink(target);
    rmdir(sub);
    dl4c_net_free(other);
    dl4c_net_free(net);
}

static void test_bad_args(void **state) {
    (void)state;
    dl4c_net *net = (dl4c_net *)&net;
    assert_int_equal(dl4c_model_load(NULL, &net, NULL), DL4C_ERR_INVALID_ARG);
    assert_null(net);
    assert_int_equal(dl4c_model_save(NULL, NULL, "x"), DL4C_ERR_INVALID_ARG);
}

/* ---- setup ---- */

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dl4c_io_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(g_dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_names),
        cmocka_unit_test(test_roundtrip_adagrad),
        cmocka_unit_test(test_roundtrip_adam),
        cmocka_unit_test(test_roundtrip_sgd),
        cmocka_unit_test(test_roundtrip_nesterovs),
        cmocka_unit_test(test_roundtrip_rmsprop),
        cmocka_unit_test(test_without_updater),
        cmocka_unit_test(test_progress_edge_cases),
        cmocka_unit_test(test_checkpoint_read_params),
        cmocka_unit_test(test_worker_states),
        cmocka_unit_test(test_bad_worker_states),
        cmocka_unit_test(test_write_python_fixture),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_flipped_header_bytes),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_bad_container),
        cmocka_unit_test(test_failed_saves),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
