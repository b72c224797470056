/* One worker on two CPU threads runs a minibatch as two slices side by side (network.c): the
 * seed's LeNet at batch 32 must give the same outputs and loss as on one thread (the same
 * floats: the forward of a row does not depend on the rows beside it), a gradient equal up to
 * the order of one sum (the slices' gradients are added) and the same floats for the tail (the
 * dense and output layers, run over the whole minibatch), the same training within float
 * noise, and bit-identical results from run to run, also when one thread runs both slices one
 * after the other. Uneven batches (33 rows: 16 + 17), and batches too small for two slices,
 * take the same paths. Needs the AVX-512 backend (the one with a thread pool); elsewhere the
 * slice checks are skipped and say so. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backend/cpu_internal.h"
#include "dl4c/dl4c.h"
#include "nn/layer.h"
#include "seed_lenet.h"

#define IN (28 * 28)
#define K 10

/* A minibatch of n: pixels in [0, 1) from a fixed generator, one-hot labels. */
static void make_batch(int n, uint32_t seed, float *x, float *y) {
    uint32_t s = seed;
    for (int i = 0; i < n * IN; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    memset(y, 0, sizeof(float) * (size_t)(n * K));
    for (int i = 0; i < n; i++) y[i * K + (i * 7 + (int)seed) % K] = 1;
}

static dl4c_net *lenet(int threads) {
    dl4c_net_conf c = seed_lenet_conf();
    dl4c_net *net = NULL;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    dl4c_net_set_threads(net, threads);
    return net;
}

/* max |a - b| / max |b| over n floats */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static bool have_slices(void) {
    dl4c_net *net = lenet(2);
    const bool yes = dl4c_net_slices(net, 32) == 2;
    dl4c_net_free(net);
    return yes;
}

/* Outputs, loss and gradient of one minibatch of n on 2 threads against 1 thread; tail: the
 * dense and output layers run over the whole minibatch (slices of fewer than 64 rows). */
static void check_batch(int n, int want_slices, bool tail) {
    dl4c_net *one = lenet(1), *two = lenet(2);
    assert_int_equal(dl4c_net_slices(one, n), 1);
    assert_int_equal(dl4c_net_slices(two, n), want_slices);
    float *x = malloc(sizeof(float) * (size_t)(n * IN)), *y = malloc(sizeof(float) * (size_t)(n * K));
    float *o1 = malloc(sizeof(float) * (size_t)(n * K)), *o2 = malloc(sizeof(float) * (size_t)(n * K));
    make_batch(n, 11, x, y);
    assert_int_equal(dl4c_net_output(one, x, n, o1), DL4C_OK);
    assert_int_equal(dl4c_net_output(two, x, n, o2), DL4C_OK);
    assert_memory_equal(o1, o2, sizeof(float) * (size_t)(n * K));
    float s1, s2;
    assert_int_equal(dl4c_net_compute_gradient(one, x, y, n, &s1), DL4C_OK);
    assert_int_equal(dl4c_net_compute_gradient(two, x, y, n, &s2), DL4C_OK);
    assert_true(s1 == s2);   /* the loss is taken over the whole minibatch */
    const float *g1 = dl4c_net_gradients(one), *g2 = dl4c_net_gradients(two);
    /* per layer: a slice that lost its share of a gradient would be off by about half */
    for (int i = 0; i < dl4c_net_n_param_tensors(one); i++) {
        const dl4c_param_info p = dl4c_net_param_tensor(one, i);
        const double d = rel_diff(g2 + p.offset, g1 + p.offset, p.size);
        if (getenv("SLICE_DEBUG")) print_message("batch %d %s %g\n", n, p.name, d);
        if (d > 1e-5) fail_msg("batch %d: %s gradient differs by %g (relative)", n, p.name, d);
        /* the tail (layers 4 and 5: dense, output) is the one-thread computation */
        if (tail && (strncmp(p.name, "layers.4.", 9) == 0 || strncmp(p.name, "layers.5.", 9) == 0))
            assert_memory_equal(g2 + p.offset, g1 + p.offset, sizeof(float) * (size_t)p.size);
    }
    free(x); free(y); free(o1); free(o2);
    dl4c_net_free(one);
    dl4c_net_free(two);
}

static void test_batch_32(void **state) {
    (void)state;
    if (!have_slices()) skip();
    check_batch(32, 2, true);
}

static void test_uneven_batch(void **state) {
    (void)state;
    if (!have_slices()) skip();
    check_batch(33, 2, true);
}

/* Slices of 80 rows (inference-sized) run every layer, the tail included. */
static void test_large_batch_no_tail(void **state) {
    (void)state;
    if (!have_slices()) skip();
    check_batch(160, 2, false);
}

static void test_small_batch_one_slice(void **state) {
    (void)state;
    if (!have_slices()) skip();
    check_batch(15, 1, false);   /* fewer than 8 rows per slice: one slice, bit-identical gradient */
    dl4c_net *one = lenet(1), *two = lenet(2);
    float x[15 * IN], y[15 * K], s;
    make_batch(15, 3, x, y);
    assert_int_equal(dl4c_net_compute_gradient(one, x, y, 15, &s), DL4C_OK);
    assert_int_equal(dl4c_net_compute_gradient(two, x, y, 15, &s), DL4C_OK);
    assert_memory_equal(dl4c_net_gradients(one), dl4c_net_gradients(two),
                        sizeof(float) * (size_t)dl4c_net_n_params(one));
    dl4c_net_free(one);
    dl4c_net_free(two);
}

/* 10 Adagrad steps: 2 threads twice give the same parameters bit for bit, and the same as 1
 * thread within float noise (Adagrad magnifies the first steps' rounding: 1e-4 measured); the
 * per-layer timing of step_bench is filled in. */
static void test_training(void **state) {
    (void)state;
    if (!have_slices()) skip();
    enum { N = 32, STEPS = 10 };
    dl4c_net *one = lenet(1), *a = lenet(2), *b = lenet(2);
    double timing[2 * DL4C_MAX_LAYERS] = {0};
    dl4c_net_set_timing(a, timing);
    static float x[N * IN], y[N * K];
    for (int t = 0; t < STEPS; t++) {
        make_batch(N, 100 + t, x, y);
        float s;
        assert_int_equal(dl4c_net_fit(one, x, y, N, &s), DL4C_OK);
        assert_int_equal(dl4c_net_fit(a, x, y, N, &s), DL4C_OK);
        assert_int_equal(dl4c_net_fit(b, x, y, N, &s), DL4C_OK);
    }
    const int64_t P = dl4c_net_n_params(one);
    assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * (size_t)P);
    const double d = rel_diff(dl4c_net_params(a), dl4c_net_params(one), P);
    if (d > 1e-3) fail_msg("parameters after %d steps differ by %g (relative)", STEPS, d);
    if (getenv("SLICE_DEBUG")) print_message("params %g\n", d);
    const int L = dl4c_net_n_layers(a);
    for (int i = 0; i < L; i++) {
        assert_true(timing[i] > 0);
        assert_true(timing[L + i] > 0);
    }
    dl4c_net_free(one);
    dl4c_net_free(a);
    dl4c_net_free(b);
}

/* The slices of a minibatch run one after the other on one thread (inside a task of the pool,
 * where loops run inline; under load the pool does the same): the same floats as side by side.
 * Each slice's rows of every buffer are its own, whatever the order. */
typedef struct inline_job { dl4c_net *net; const float *x, *y; int n; float *o; float s; } inline_job;

static void inline_task(void *ctx, int t) {
    inline_job *j = ctx;
    if (t != 0) return;
    assert_int_equal(dl4c_net_output(j->net, j->x, j->n, j->o), DL4C_OK);
    assert_int_equal(dl4c_net_compute_gradient(j->net, j->x, j->y, j->n, &j->s), DL4C_OK);
}

static void test_slices_one_after_the_other(void **state) {
    (void)state;
    if (!have_slices()) skip();
    for (int n = 32; n <= 33; n++) {
        dl4c_net *a = lenet(2), *b = lenet(2);
        float *x = malloc(sizeof(float) * (size_t)(n * IN)), *y = malloc(sizeof(float) * (size_t)(n * K));
        float *oa = malloc(sizeof(float) * (size_t)(n * K)), *ob = malloc(sizeof(float) * (size_t)(n * K));
        make_batch(n, 21, x, y);
        float sa;
        assert_int_equal(dl4c_net_output(a, x, n, oa), DL4C_OK);
        assert_int_equal(dl4c_net_compute_gradient(a, x, y, n, &sa), DL4C_OK);
        inline_job j = {.net = b, .x = x, .y = y, .n = n, .o = ob};
        dl4c_cpu_parallel(2, inline_task, &j);
        assert_memory_equal(oa, ob, sizeof(float) * (size_t)(n * K));
        assert_true(sa == j.s);
        assert_memory_equal(dl4c_net_gradients(a), dl4c_net_gradients(b),
                            sizeof(float) * (size_t)dl4c_net_n_params(a));
        free(x); free(y); free(oa); free(ob);
        dl4c_net_free(a);
        dl4c_net_free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_32), cmocka_unit_test(test_uneven_batch),
        cmocka_unit_test(test_small_batch_one_slice), cmocka_unit_test(test_training),
        cmocka_unit_test(test_slices_one_after_the_other), cmocka_unit_test(test_large_batch_no_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
