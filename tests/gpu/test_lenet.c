/* The seed's LeNet on the GPU against the CPU: the same initial parameters (bit for bit), one
 * training step with the same gradients and parameters (norm-wise within 1e-4), the same
 * outputs; the host-mirror API (dl4c_net_params and friends) round-trips; a fit without a score
 * reads it later; GPU runs repeat bit for bit; a missing device fails clearly. Skips (exit 77)
 * without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gpu/gpu_util.h"
#include "seed_lenet.h"

/* The seed's LeNet (examples/lenet.json): Adagrad 0.1, l2 5e-4, xavier, relu, max pooling. */
static dl4c_net_conf lenet(dl4c_device d) {
    dl4c_net_conf c = seed_lenet_conf();
    c.device = d;
    return c;
}

/* A batch of n images in [0, 1) with one-hot labels. */
static void make_batch(int n, uint64_t s, float **x, float **y) {
    *x = rand_host((int64_t)n * 784, s, 0, 1);
    *y = calloc((size_t)n * 10, sizeof(float));
    dl4c_rng r = dl4c_rng_make(s, 5, 0, 0);
    for (int i = 0; i < n; i++) (*y)[i * 10 + dl4c_rng_below(&r, 10)] = 1.0f;
}

static dl4c_net *make(dl4c_net_conf c) {
    dl4c_net *net = NULL;
    if (dl4c_net_new(&c, &net)) fail_msg("dl4c_net_new: %s", dl4c_error_message());
    dl4c_net_set_threads(net, 1);
    return net;
}

/* Compares every parameter tensor of two flat buffers, norm-wise; prints each, returns the
 * worst relative error (the caller asserts, after everything is printed). */
static double compare_tensors(const char *what, dl4c_net *net, const float *a, const float *b) {
    double worst = 0;
    for (int t = 0; t < dl4c_net_n_param_tensors(net); t++) {
        const dl4c_param_info p = dl4c_net_param_tensor(net, t);
        const double e = rel_err(a + p.offset, b + p.offset, p.size);
        printf("  %-10s %-16s rel %.2e  max|d| %.2e\n", what, p.name, e, max_abs_diff(a + p.offset, b + p.offset, p.size));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void test_one_step(void **state) {
    dl4c_net *cpu = make(lenet(DL4C_DEVICE_CPU)), *gpu = make(lenet(DL4C_DEVICE_CUDA));
    int idx = -1;
    assert_int_equal(dl4c_net_device(gpu, &idx), DL4C_DEVICE_CUDA);
    assert_int_equal(idx, 0);
    const int64_t P = dl4c_net_n_params(cpu);
    assert_int_equal(P, 67780);
    assert_memory_equal(dl4c_net_params(cpu), dl4c_net_params(gpu), sizeof(float) * (size_t)P);
    float *x, *y;
    make_batch(32, 42, &x, &y);
    float sc, sg;
    assert_int_equal(dl4c_net_compute_gradient(cpu, x, y, 32, &sc), DL4C_OK);
    assert_int_equal(dl4c_net_compute_gradient(gpu, x, y, 32, &sg), DL4C_OK);
    printf("  score cpu %.9g gpu %.9g\n", sc, sg);
    assert_true(fabs(sc - sg) <= 1e-5 * fabs(sc));
    const double eg = compare_tensors("gradient", cpu, dl4c_net_gradients(gpu), dl4c_net_gradients(cpu));
    dl4c_net_apply_update(cpu);
    dl4c_net_apply_update(gpu);
    const float *pg = dl4c_net_params(gpu), *pc = dl4c_net_params(cpu);
    const double ep = compare_tensors("params", cpu, pg, pc);
    const double all = rel_err(pg, pc, P);
    printf("  all %lld parameters after one step: rel %.2e, max|d| %.2e\n", (long long)P, all, max_abs_diff(pg, pc, P));
    const double es = compare_tensors("adagrad", cpu, dl4c_net_updater_state(gpu), dl4c_net_updater_state(cpu));
    assert_true(all <= 1e-4);   /* the bar: the same parameters within 1e-4 */
    assert_true(ep <= 1e-4);
    assert_true(eg <= 1e-4);
    assert_true(es <= 1e-4);
    /* Outputs of the stepped networks on a fresh batch (odd size: new cuDNN plans). */
    float *x2, *y2;
    make_batch(13, 43, &x2, &y2);
    float oc[130], og[130];
    assert_int_equal(dl4c_net_output(cpu, x2, 13, oc), DL4C_OK);
    assert_int_equal(dl4c_net_output(gpu, x2, 13, og), DL4C_OK);
    const double eo = rel_err(og, oc, 130);
    printf("  outputs after the step: rel %.2e\n", eo);
    assert_true(eo <= 1e-4);
    free(x); free(y); free(x2); free(y2);
    dl4c_net_free(cpu);
    dl4c_net_free(gpu);
}

/* Ten fits with score == NULL (no waiting), then the last score; and two GPU runs repeat bit
 * for bit. */
static void test_async_and_repeatable(void **state) {
    dl4c_net *a = make(lenet(DL4C_DEVICE_CUDA)), *b = make(lenet(DL4C_DEVICE_CUDA)), *cpu = make(lenet(DL4C_DEVICE_CPU));
    float score_a = 0, score_b = 0, score_c = 0;
    for (int k = 0; k < 10; k++) {
        float *x, *y;
        make_batch(32, 100 + k, &x, &y);
        assert_int_equal(dl4c_net_fit(a, x, y, 32, NULL), DL4C_OK);
        assert_int_equal(dl4c_net_fit(b, x, y, 32, &score_b), DL4C_OK);
        assert_int_equal(dl4c_net_fit(cpu, x, y, 32, &score_c), DL4C_OK);
        free(x); free(y);
    }
    assert_int_equal(dl4c_net_last_score(a, &score_a), DL4C_OK);
    printf("  score after 10 steps: gpu %.9g (read later) / %.9g, cpu %.9g\n", score_a, score_b, score_c);
    assert_true(score_a == score_b);
    assert_true(fabs(score_a - score_c) <= 1e-2 * fabs(score_c));
    const int64_t P = dl4c_net_n_params(a);
    assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * (size_t)P);
    const double e = rel_err(dl4c_net_params(a), dl4c_net_params(cpu), P);
    printf("  params after 10 steps: gpu vs cpu rel %.2e\n", e);
    assert_true(e <= 1e-2);   /* Adagrad's first steps are nearly sign(g): loose after ten */
    dl4c_net_free(a); dl4c_net_free(b); dl4c_net_free(cpu);
}

/* Writing through dl4c_net_params reaches the GPU at the next call; a larger batch regrows. */
static void test_host_mirror(void **state) {
    dl4c_net *cpu = make(lenet(DL4C_DEVICE_CPU)), *gpu = make(lenet(DL4C_DEVICE_CUDA));
    const int64_t P = dl4c_net_n_params(cpu);
    float *pc = dl4c_net_params(cpu), *pg = dl4c_net_params(gpu);
    for (int64_t i = 0; i < P; i += 7) { pc[i] *= -0.5f; pg[i] *= -0.5f; }
    float *x, *y, oc[700], og[700];
    make_batch(70, 9, &x, &y);   /* above the reserved 32 */
    assert_int_equal(dl4c_net_output(cpu, x, 70, oc), DL4C_OK);
    assert_int_equal(dl4c_net_output(gpu, x, 70, og), DL4C_OK);
    const double e = rel_err(og, oc, 700);
    printf("  outputs after writing params through the host pointer: rel %.2e\n", e);
    assert_true(e <= 1e-4);
    float sc, sg;
    assert_int_equal(dl4c_net_score(cpu, x, y, 70, &sc), DL4C_OK);
    assert_int_equal(dl4c_net_score(gpu, x, y, 70, &sg), DL4C_OK);
    assert_true(fabs(sc - sg) <= 1e-5 * fabs(sc));
    free(x); free(y);
    dl4c_net_free(cpu);
    dl4c_net_free(gpu);
}

/* TF32 on: it runs, and stays close. */
static void test_tf32(void **state) {
    dl4c_net_conf c = lenet(DL4C_DEVICE_CUDA);
    c.allow_tf32 = true;
    dl4c_net *t = make(c), *cpu = make(lenet(DL4C_DEVICE_CPU));
    float *x, *y, st, sc;
    make_batch(32, 77, &x, &y);
    assert_int_equal(dl4c_net_fit(t, x, y, 32, &st), DL4C_OK);
    assert_int_equal(dl4c_net_fit(cpu, x, y, 32, &sc), DL4C_OK);
    const double e = rel_err(dl4c_net_params(t), dl4c_net_params(cpu), dl4c_net_n_params(cpu));
    printf("  TF32 on: score %.6g vs cpu %.6g, params rel %.2e\n", st, sc, e);
    assert_true(fabs(st - sc) <= 1e-2 * fabs(sc));
    free(x); free(y);
    dl4c_net_free(t);
    dl4c_net_free(cpu);
}

static void test_no_such_device(void **state) {
    dl4c_net_conf c = lenet(DL4C_DEVICE_CUDA);
    c.device_index = 999;
    dl4c_net *net = NULL;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_ERR_UNSUPPORTED);
    assert_null(net);
    printf("  cuda:999 -> %s\n", dl4c_error_message());
    assert_non_null(strstr(dl4c_error_message(), "cuda:999"));
}

int main(void) {
    gpu_require();
    if (getenv("DL4C_DEBUG")) dl4c_log_set_level(DL4C_LOG_DEBUG);   /* cuDNN algorithm choices */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_step),    cmocka_unit_test(test_async_and_repeatable),
        cmocka_unit_test(test_host_mirror), cmocka_unit_test(test_tf32),
        cmocka_unit_test(test_no_such_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
