/* Finite-difference gradient checks (DL4J's GradientCheckUtil as the model): for every layer
 * type, activation and loss, each analytic gradient (regularization included) must match the
 * central difference (score(p + eps) - score(p - eps)) / 2 eps of the float32 score. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dl4c/nn.h"
#include "seed_lenet.h"

/* Checks every parameter; returns the number that fail |fd - an| > abs_tol + rel_tol max(|fd|,|an|). */
static int gradcheck_eps(dl4c_net_conf *conf, int n, bool one_hot, uint64_t data_seed, float eps) {
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(conf, &net), DL4C_OK);
    const int64_t in = dl4c_net_input_size(net), K = dl4c_net_output_size(net);
    float *x = malloc(sizeof(float) * n * in), *y = calloc((size_t)(n * K), sizeof(float));
    dl4c_rng r = dl4c_rng_make(data_seed, 99, 0, 0);
    for (int64_t i = 0; i < n * in; i++) x[i] = (float)dl4c_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        if (one_hot) y[i * K + dl4c_rng_below(&r, (uint64_t)K)] = 1.0f;
        else for (int k = 0; k < K; k++) y[i * K + k] = (float)dl4c_rng_uniform(&r);
    }
    float score;
    assert_int_equal(dl4c_net_compute_gradient(net, x, y, n, &score), DL4C_OK);
    const int64_t P = dl4c_net_n_params(net);
    float *g = malloc(sizeof(float) * P);
    memcpy(g, dl4c_net_gradients(net), sizeof(float) * P);
    float *p = dl4c_net_params(net);
    int bad = 0;
    double max_rel = 0;
    for (int64_t i = 0; i < P; i++) {
        const float orig = p[i];
        float s1, s2;
        p[i] = orig + eps;
        assert_int_equal(dl4c_net_score(net, x, y, n, &s1), DL4C_OK);
        p[i] = orig - eps;
        assert_int_equal(dl4c_net_score(net, x, y, n, &s2), DL4C_OK);
        p[i] = orig;
        const double fd = ((double)s1 - s2) / (2.0 * eps), an = g[i];
        const double err = fabs(fd - an), scale = fmax(fabs(fd), fabs(an));
        if (scale > 1e-4 && err / scale > max_rel) max_rel = err / scale;
        if (err > 2e-4 + 2e-2 * scale) {
            if (bad < 5) fprintf(stderr, "  param %lld: analytic %.6g, numeric %.6g\n", (long long)i, an, fd);
            bad++;
        }
    }
    fprintf(stderr, "  %lld params, %d failed, max relative error %.3g\n", (long long)P, bad, max_rel);
    free(x); free(y); free(g);
    dl4c_net_free(net);
    return bad;
}

/* eps 1e-2 keeps float32 rounding noise small next to the difference; near the kinks of relu
 * and max pooling a smaller eps (used for those nets) keeps the step from crossing them. */
static int gradcheck(dl4c_net_conf *conf, int n, bool one_hot, uint64_t data_seed) {
    return gradcheck_eps(conf, n, one_hot, data_seed, 1e-2f);
}

static void test_dense_activations_softmax_nll(void **state) {
    const dl4c_activation acts[] = {DL4C_IDENTITY, DL4C_RELU, DL4C_LEAKYRELU, DL4C_SIGMOID, DL4C_TANH, DL4C_SOFTMAX};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        fprintf(stderr, "dense %s -> softmax/nll\n", dl4c_activation_str(acts[a]));
        dl4c_net_conf c = {
            .seed = 7 + a, .input = {.features = 6}, .n_layers = 3,
            .layers = {dl4c_dense(.n_out = 5, .activation = acts[a]),
                       dl4c_dense(.n_out = 4, .activation = DL4C_TANH, .weight_init = DL4C_INIT_RELU),
                       dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_NLL)},
        };
        assert_int_equal(gradcheck(&c, 4, true, 1 + a), 0);
    }
}

static void test_losses(void **state) {
    fprintf(stderr, "sigmoid/xent\n");
    dl4c_net_conf c1 = {.seed = 3, .input = {.features = 5}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 4, .activation = DL4C_TANH),
                   dl4c_output(.n_out = 3, .activation = DL4C_SIGMOID, .loss = DL4C_LOSS_XENT)}};
    assert_int_equal(gradcheck(&c1, 5, false, 11), 0);
    fprintf(stderr, "identity/mse\n");
    dl4c_net_conf c2 = {.seed = 4, .input = {.features = 5}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 4, .activation = DL4C_SIGMOID),
                   dl4c_output(.n_out = 2, .activation = DL4C_IDENTITY, .loss = DL4C_LOSS_MSE)}};
    assert_int_equal(gradcheck(&c2, 5, false, 12), 0);
    fprintf(stderr, "tanh/mse (non-fused path)\n");
    dl4c_net_conf c3 = {.seed = 5, .input = {.features = 5}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 4, .activation = DL4C_LEAKYRELU),
                   dl4c_output(.n_out = 3, .activation = DL4C_TANH, .loss = DL4C_LOSS_MSE)}};
    assert_int_equal(gradcheck(&c3, 5, false, 13), 0);
    fprintf(stderr, "softmax/mcxent\n");
    dl4c_net_conf c4 = {.seed = 6, .input = {.features = 5}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 4, .activation = DL4C_TANH),
                   dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_MCXENT)}};
    assert_int_equal(gradcheck(&c4, 5, true, 14), 0);
}

static void test_conv_maxpool_truncate(void **state) {
    fprintf(stderr, "conv (stride 2, padding 1, tanh) -> max pool -> conv relu -> output\n");
    dl4c_net_conf c = {.seed = 8, .input = {.channels = 2, .height = 9, .width = 8}, .n_layers = 4,
        .l2 = 0.01f, .l1 = 0.001f,
        .layers = {dl4c_conv2d(.kernel = {3, 3}, .stride = {2, 1}, .padding = {1, 1}, .n_out = 3, .activation = DL4C_TANH),
                   dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}, .stride = {1, 2}),
                   dl4c_conv2d(.kernel = {2, 2}, .n_out = 2, .activation = DL4C_SIGMOID),
                   dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX)}};
    assert_int_equal(gradcheck_eps(&c, 3, true, 21, 2e-3f), 0);
}

/* relu then max pooling: the pooling applies relu' (through its arg max for 2x2 windows, by a
 * pass over dx for overlapping ones) and the convolution's backward takes dy as dz. */
static void test_conv_relu_maxpool(void **state) {
    fprintf(stderr, "conv relu (16x16 outputs) -> max pool 2x2 -> conv relu -> max pool 3x3 stride 2 -> output\n");
    dl4c_net_conf c = {.seed = 10, .input = {.channels = 1, .height = 18, .width = 18}, .n_layers = 5,
        .l2 = 0.01f,
        .layers = {dl4c_conv2d(.kernel = {3, 3}, .n_out = 3, .activation = DL4C_RELU),
                   dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}),
                   dl4c_conv2d(.kernel = {2, 2}, .n_out = 3, .activation = DL4C_RELU),
                   dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}),
                   dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX)}};
    assert_int_equal(gradcheck_eps(&c, 2, true, 23, 5e-4f), 0);
}

static void test_conv_same_avgpool(void **state) {
    fprintf(stderr, "conv same (stride 2) -> avg pool (padding) -> dense -> output\n");
    dl4c_net_conf c = {.seed = 9, .input = {.channels = 1, .height = 7, .width = 7}, .n_layers = 4,
        .l2 = 0.05f,
        .layers = {dl4c_conv2d(.kernel = {3, 2}, .stride = {2, 2}, .conv_mode = DL4C_CONV_SAME, .n_out = 2, .activation = DL4C_LEAKYRELU),
                   dl4c_subsampling(.pooling = DL4C_POOL_AVG, .kernel = {2, 2}, .stride = {1, 1}, .padding = {1, 0}),
                   dl4c_dense(.n_out = 4, .activation = DL4C_SOFTMAX),
                   dl4c_output(.n_out = 2, .activation = DL4C_SIGMOID, .loss = DL4C_LOSS_XENT)}};
    assert_int_equal(gradcheck(&c, 3, false, 22), 0);
}

static void test_lenet_param_count(void **state) {
    dl4c_net_conf c = seed_lenet_conf();
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    assert_int_equal(dl4c_net_n_params(net), 67780);
    const int64_t expect_out[6][3] = {{20, 24, 24}, {20, 12, 12}, {50, 4, 4}, {50, 2, 2}, {200, 1, 1}, {10, 1, 1}};
    for (int i = 0; i < 6; i++) {
        dl4c_layer_info li = dl4c_net_layer_info(net, i);
        for (int d = 0; d < 3; d++) assert_int_equal(li.out_shape[d], expect_out[i][d]);
    }
    /* Same seed, same network; another seed, another network. */
    dl4c_net *again, *other;
    assert_int_equal(dl4c_net_new(&c, &again), DL4C_OK);
    assert_memory_equal(dl4c_net_params(net), dl4c_net_params(again), sizeof(float) * 67780);
    c.seed = 124;
    assert_int_equal(dl4c_net_new(&c, &other), DL4C_OK);
    assert_memory_not_equal(dl4c_net_params(net), dl4c_net_params(other), sizeof(float) * 520);
    /* Xavier (DL4J): variance 2 / (fan_in + fan_out) for the dense layer: 2 / 400. */
    const float *w = dl4c_net_params(net) + 520 + 25050;
    double ss = 0;
    for (int i = 0; i < 40000; i++) ss += (double)w[i] * w[i];
    assert_true(fabs(ss / 40000 - 2.0 / 400) < 0.1 * (2.0 / 400));
    dl4c_net_free(net); dl4c_net_free(again); dl4c_net_free(other);
}

static void test_bad_configs(void **state) {
    dl4c_net *net;
    dl4c_net_conf c = {.input = {.channels = 1, .height = 4, .width = 4}, .n_layers = 2,
        .layers = {dl4c_conv2d(.kernel = {5, 5}, .n_out = 2), dl4c_output(.n_out = 2)}};
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "layers[0].kernel"));
    assert_non_null(strstr(dl4c_error_message(), "larger than its input"));
    dl4c_net_conf c2 = {.input = {.features = 3}, .n_layers = 1, .layers = {dl4c_dense(.n_out = 2)}};
    assert_int_equal(dl4c_net_new(&c2, &net), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "must be an output layer"));
    dl4c_net_conf c3 = {.input = {.features = 3}, .n_layers = 1,
        .layers = {dl4c_output(.n_out = 2, .activation = DL4C_RELU, .loss = DL4C_LOSS_NLL)}};
    assert_int_equal(dl4c_net_new(&c3, &net), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "layers[0].loss"));
    dl4c_net_conf c4 = {.input = {.channels = 1, .height = 6, .width = 6}, .n_layers = 2,
        .layers = {dl4c_conv2d(.kernel = {3, 3}, .stride = {2, 2}, .conv_mode = DL4C_CONV_STRICT, .n_out = 2), dl4c_output(.n_out = 2)}};
    assert_int_equal(dl4c_net_new(&c4, &net), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "strict"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_activations_softmax_nll),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_conv_maxpool_truncate),
        cmocka_unit_test(test_conv_relu_maxpool),
        cmocka_unit_test(test_conv_same_avgpool),
        cmocka_unit_test(test_lenet_param_count),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
