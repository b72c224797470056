/* Tests for regression evaluation: hand-computed MSE/MAE/RMSE/RSE/R^2, DL4J's stats() table,
 * JSON, and merges of shards. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dl4c/eval.h"

/* |a - b| <= tol for doubles (cmocka's assert_float_equal works in float). */
#define assert_near(a, b, tol) assert_near_((a), (b), (tol), #a, __FILE__, __LINE__)
static void assert_near_(double a, double b, double tol, const char *what, const char *file,
                         int line) {
    if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %s = %.17g, expected %.17g", file, line, what, a, b);
}

/* [4, 2]: column 0 labels 1..4 with errors 0.5, 0, -0.5, 1; column 1 predicted exactly. */
static const float k_preds[] = {1.5f, 2, 2, 4, 2.5f, 6, 5, 8};
static const float k_labels[] = {1, 2, 2, 4, 3, 6, 4, 8};

static void test_hand_computed(void **state) {
    (void)state;
    dl4c_regeval *ev;
    assert_int_equal(dl4c_regeval_new(2, &ev), DL4C_OK);
    assert_int_equal(dl4c_regeval_add(ev, k_preds, k_labels, 4), DL4C_OK);
    assert_int_equal(dl4c_regeval_examples(ev), 4);
    assert_int_equal(dl4c_regeval_n_columns(ev), 2);
    /* column 0: sum e^2 = 1.5, sum |e| = 2, sum e = 1; sst = 30 - 10^2/4 = 5 */
    assert_near(dl4c_regeval_mse(ev, 0), 0.375, 1e-15);
    assert_near(dl4c_regeval_mae(ev, 0), 0.5, 1e-15);
    assert_near(dl4c_regeval_rmse(ev, 0), sqrt(0.375), 1e-15);
    assert_near(dl4c_regeval_mean_error(ev, 0), 0.25, 1e-15);
    assert_near(dl4c_regeval_rse(ev, 0), 0.3, 1e-15);
    assert_near(dl4c_regeval_r2(ev, 0), 0.7, 1e-15);
    /* column 1: perfect */
    assert_near(dl4c_regeval_mse(ev, 1), 0.0, 0.0);
    assert_near(dl4c_regeval_mae(ev, 1), 0.0, 0.0);
    assert_near(dl4c_regeval_rse(ev, 1), 0.0, 0.0);
    assert_near(dl4c_regeval_r2(ev, 1), 1.0, 0.0);
    dl4c_regeval_free(ev);
}

static void test_stats_text(void **state) {
    (void)state;
    dl4c_regeval *ev;
    assert_int_equal(dl4c_regeval_new(2, &ev), DL4C_OK);
    assert_int_equal(dl4c_regeval_add(ev, k_preds, k_labels, 4), DL4C_OK);
    char *text;
    assert_int_equal(dl4c_regeval_stats(ev, &text), DL4C_OK);
    const char *expect =
        "Column    MSE            MAE            RMSE           RSE            R^2            \n"
        "col_0     3.75000e-01    5.00000e-01    6.12372e-01    3.00000e-01    7.00000e-01    \n"
        "col_1     0.00000e+00    0.00000e+00    0.00000e+00    0.00000e+00    1.00000e+00    \n";
    assert_string_equal(text, expect);
    free(text);

    /* Named columns widen the first column; constant labels make RSE infinite and R^2 NaN. */
    const char *names[] = {"shell_age", "flat"};
    assert_int_equal(dl4c_regeval_set_labels(ev, names, 2), DL4C_OK);
    dl4c_regeval *flat;
    assert_int_equal(dl4c_regeval_new(2, &flat), DL4C_OK);
    const float p2[] = {1, 3, 2, 2};
    const float y2[] = {1, 2, 2, 2};
    assert_int_equal(dl4c_regeval_add(flat, p2, y2, 2), DL4C_OK);
    assert_int_equal(dl4c_regeval_merge(ev, flat), DL4C_OK);   /* ev has 6 rows now */
    assert_true(isinf(dl4c_regeval_rse(flat, 1)));
    assert_true(isnan(dl4c_regeval_r2(flat, 1)));
    assert_int_equal(dl4c_regeval_set_labels(flat, names, 2), DL4C_OK);
    assert_int_equal(dl4c_regeval_stats(flat, &text), DL4C_OK);
    const char *expect_flat =
        "Column        MSE            MAE            RMSE           RSE            R^2            \n"
        "shell_age     0.00000e+00    0.00000e+00    0.00000e+00    0.00000e+00    1.00000e+00    \n"
        "flat          5.00000e-01    5.00000e-01    7.07107e-01    Infinity       NaN            \n";
    assert_string_equal(text, expect_flat);
    free(text);
    dl4c_regeval_free(flat);
    dl4c_regeval_free(ev);
}

static void test_json(void **state) {
    (void)state;
    dl4c_regeval *ev;
    assert_int_equal(dl4c_regeval_new(2, &ev), DL4C_OK);
    assert_int_equal(dl4c_regeval_add(ev, k_preds, k_labels, 4), DL4C_OK);
    char *text;
    assert_int_equal(dl4c_regeval_to_json(ev, &text), DL4C_OK);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "examples")), 4);
    assert_int_equal(json_integer_value(json_object_get(root, "n_columns")), 2);
    json_t *cols = json_object_get(root, "columns");
    assert_int_equal(json_array_size(cols), 2);
    json_t *c0 = json_array_get(cols, 0);
    assert_string_equal(json_string_value(json_object_get(c0, "name")), "col_0");
    assert_near(json_number_value(json_object_get(c0, "mse")), 0.375, 1e-15);
    assert_near(json_number_value(json_object_get(c0, "mae")), 0.5, 1e-15);
    assert_near(json_number_value(json_object_get(c0, "rmse")), sqrt(0.375), 1e-15);
    assert_near(json_number_value(json_object_get(c0, "rse")), 0.3, 1e-15);
    assert_near(json_number_value(json_object_get(c0, "r2")), 0.7, 1e-15);
    json_decref(root);
    free(text);

    /* Undefined values are null. */
    dl4c_regeval *empty;
    assert_int_equal(dl4c_regeval_new(1, &empty), DL4C_OK);
    assert_int_equal(dl4c_regeval_to_json(empty, &text), DL4C_OK);
    root = json_loads(text, 0, &err);
    assert_non_null(root);
    json_t *e0 = json_array_get(json_object_get(root, "columns"), 0);
    assert_true(json_is_null(json_object_get(e0, "mse")));
    assert_true(json_is_null(json_object_get(e0, "r2")));
    json_decref(root);
    free(text);
    dl4c_regeval_free(empty);
    dl4c_regeval_free(ev);
}

/* Random [n, c] data; with `dyadic`, every value is a multiple of 1/8 in [-8, 8], so every
 * sum is exact in double and any order of summation gives the same bits. */
static void random_data(uint64_t seed, int n, int c, bool dyadic, float *preds, float *labels) {
    dl4c_rng r = dl4c_rng_make(seed, 11, 0, 0);
    for (int i = 0; i < n * c; i++) {
        if (dyadic) {
            labels[i] = (float)((int)dl4c_rng_below(&r, 129) - 64) / 8.0f;
            preds[i] = labels[i] + (float)((int)dl4c_rng_below(&r, 17) - 8) / 8.0f;
        } else {
            labels[i] = (float)(3.0 * dl4c_rng_normal(&r) + (i % c));
            preds[i] = labels[i] + (float)(0.5 * dl4c_rng_normal(&r));
        }
    }
}

/* Evaluates the whole set and three shards, merged both ways (merge and summed sums). */
static void check_shards(bool dyadic) {
    enum { N = 999, C = 3 };
    float *preds = malloc(sizeof(float) * N * C), *labels = malloc(sizeof(float) * N * C);
    assert_non_null(preds);
    assert_non_null(labels);
    random_data(dyadic ? 5 : 6, N, C, dyadic, preds, labels);

    dl4c_regeval *whole, *merged, *shard[3];
    assert_int_equal(dl4c_regeval_new(C, &whole), DL4C_OK);
    assert_int_equal(dl4c_regeval_add(whole, preds, labels, N), DL4C_OK);
    const int cut[4] = {0, 100, 517, N};
    assert_int_equal(dl4c_regeval_new(C, &merged), DL4C_OK);
    size_t len = 0;
    double *reduced = NULL;
    for (int s = 0; s < 3; s++) {
        assert_int_equal(dl4c_regeval_new(C, &shard[s]), DL4C_OK);
        assert_int_equal(dl4c_regeval_add(shard[s], preds + cut[s] * C, labels + cut[s] * C,
                                          cut[s + 1] - cut[s]), DL4C_OK);
        assert_int_equal(dl4c_regeval_merge(merged, shard[s]), DL4C_OK);
        const double *sums = dl4c_regeval_sums(shard[s], &len);
        assert_int_equal(len, 1 + 5 * C);
        if (!reduced) reduced = calloc(len, sizeof *reduced);
        for (size_t i = 0; i < len; i++) reduced[i] += sums[i];
    }
    dl4c_regeval *from;
    assert_int_equal(dl4c_regeval_from_sums(C, reduced, &from), DL4C_OK);
    assert_int_equal(dl4c_regeval_examples(merged), N);
    assert_int_equal(dl4c_regeval_examples(from), N);

    const dl4c_regeval *got[2] = {merged, from};
    for (int g = 0; g < 2; g++) {
        for (int j = 0; j < C; j++) {
            double (*const metric[])(const dl4c_regeval *, int) = {
                dl4c_regeval_mse, dl4c_regeval_mae, dl4c_regeval_rmse, dl4c_regeval_rse,
                dl4c_regeval_r2, dl4c_regeval_mean_error};
            for (size_t m = 0; m < sizeof metric / sizeof metric[0]; m++) {
                const double want = metric[m](whole, j), have = metric[m](got[g], j);
                if (dyadic) assert_true(want == have);
                else assert_near(have, want, 1e-12 * fabs(want) + 1e-15);
            }
        }
        if (dyadic) {
            char *a, *b;
            assert_int_equal(dl4c_regeval_stats(whole, &a), DL4C_OK);
            assert_int_equal(dl4c_regeval_stats(got[g], &b), DL4C_OK);
            assert_string_equal(a, b);
            free(a);
            free(b);
            assert_int_equal(dl4c_regeval_to_json(whole, &a), DL4C_OK);
            assert_int_equal(dl4c_regeval_to_json(got[g], &b), DL4C_OK);
            assert_string_equal(a, b);
            free(a);
            free(b);
        }
    }
    /* Sanity: the data is predicted well, so R^2 is high. */
    assert_true(dl4c_regeval_r2(whole, 0) > 0.9);

    dl4c_regeval_reset(from);
    assert_int_equal(dl4c_regeval_examples(from), 0);
    assert_true(isnan(dl4c_regeval_mse(from, 0)));
    dl4c_regeval_free(from);
    free(reduced);
    for (int s = 0; s < 3; s++) dl4c_regeval_free(shard[s]);
    dl4c_regeval_free(merged);
    dl4c_regeval_free(whole);
    free(preds);
    free(labels);
}

static void test_merge_exact(void **state) {
    (void)state;
    check_shards(true);
}

static void test_merge_random(void **state) {
    (void)state;
    check_shards(false);
}

static void test_errors(void **state) {
    (void)state;
    dl4c_regeval *ev = NULL, *other = NULL;
    assert_int_equal(dl4c_regeval_new(0, &ev), DL4C_ERR_INVALID_ARG);
    assert_null(ev);
    assert_int_equal(dl4c_regeval_new(2, &ev), DL4C_OK);
    assert_int_equal(dl4c_regeval_new(3, &other), DL4C_OK);
    dl4c_error_clear();
    assert_int_equal(dl4c_regeval_merge(ev, other), DL4C_ERR_SHAPE);
    assert_non_null(strstr(dl4c_error_message(), "3 columns"));
    const char *names[] = {"a"};
    assert_int_equal(dl4c_regeval_set_labels(ev, names, 1), DL4C_ERR_SHAPE);
    const float p[] = {1, 2, 3, NAN};
    const float y[] = {1, 2, 3, 4};
    assert_int_equal(dl4c_regeval_add(ev, p, y, 2), DL4C_ERR_NUMERIC);
    assert_int_equal(dl4c_regeval_examples(ev), 0);
    assert_int_equal(dl4c_regeval_add(ev, NULL, y, 1), DL4C_ERR_INVALID_ARG);
    const double bad[11] = {-1.0};
    dl4c_regeval *from = NULL;
    assert_int_equal(dl4c_regeval_from_sums(2, bad, &from), DL4C_ERR_INVALID_ARG);
    assert_null(from);
    dl4c_regeval_free(other);
    dl4c_regeval_free(ev);
    dl4c_regeval_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_stats_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_merge_exact),
        cmocka_unit_test(test_merge_random),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
