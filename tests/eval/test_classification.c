/* Tests for classification evaluation: hand-computed metrics, DL4J's stats() text, JSON,
 * and merges of shards that equal the whole exactly. */
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

/* Adds one example of class `actual` predicted as `predicted` through dl4c_eval_add
 * (one-hot labels, probabilities peaked at the prediction). */
static void add_one(dl4c_eval *ev, int k, int actual, int predicted) {
    float probs[32], labels[32];
    assert_true(k <= 32);
    for (int j = 0; j < k; j++) {
        probs[j] = 0.1f / (float)k;
        labels[j] = 0.0f;
    }
    probs[predicted] = 0.9f;
    labels[actual] = 1.0f;
    assert_int_equal(dl4c_eval_add(ev, probs, labels, 1), DL4C_OK);
}

/* actual 0: 2x as 0, 1x as 1; actual 1: 2x as 1; actual 2: 1x as 1 (class 2 never predicted). */
static dl4c_eval *small_case(void) {
    dl4c_eval *ev;
    assert_int_equal(dl4c_eval_new(3, &ev), DL4C_OK);
    add_one(ev, 3, 0, 0);
    add_one(ev, 3, 0, 1);
    add_one(ev, 3, 1, 1);
    add_one(ev, 3, 2, 1);
    add_one(ev, 3, 0, 0);
    add_one(ev, 3, 1, 1);
    return ev;
}

static void test_hand_computed(void **state) {
    (void)state;
    dl4c_eval *ev = small_case();
    assert_int_equal(dl4c_eval_n_classes(ev), 3);
    assert_int_equal(dl4c_eval_examples(ev), 6);
    assert_int_equal(dl4c_eval_count(ev, 0, 0), 2);
    assert_int_equal(dl4c_eval_count(ev, 0, 1), 1);
    assert_int_equal(dl4c_eval_count(ev, 1, 1), 2);
    assert_int_equal(dl4c_eval_count(ev, 2, 1), 1);
    assert_int_equal(dl4c_eval_count(ev, 2, 2), 0);
    assert_near(dl4c_eval_accuracy(ev), 4.0 / 6.0, 1e-15);
    /* class 0: tp 2, fp 0, fn 1 */
    assert_near(dl4c_eval_precision(ev, 0), 1.0, 1e-15);
    assert_near(dl4c_eval_recall(ev, 0), 2.0 / 3.0, 1e-15);
    assert_near(dl4c_eval_f1(ev, 0), 0.8, 1e-15);
    /* class 1: tp 2, fp 2, fn 0 */
    assert_near(dl4c_eval_precision(ev, 1), 0.5, 1e-15);
    assert_near(dl4c_eval_recall(ev, 1), 1.0, 1e-15);
    assert_near(dl4c_eval_f1(ev, 1), 2.0 / 3.0, 1e-15);
    /* class 2: tp 0, fp 0 (never predicted: precision 0/0 -> 0, excluded), fn 1 */
    assert_near(dl4c_eval_precision(ev, 2), 0.0, 0.0);
    assert_near(dl4c_eval_recall(ev, 2), 0.0, 0.0);
    assert_near(dl4c_eval_f1(ev, 2), 0.0, 0.0);
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_PRECISION), 1);
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_RECALL), 0);
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_F1), 1);
    /* macro: precision over classes 0,1; recall over all three; f1 over classes 0,1 */
    assert_near(dl4c_eval_precision_macro(ev), 0.75, 1e-15);
    assert_near(dl4c_eval_recall_macro(ev), (2.0 / 3.0 + 1.0 + 0.0) / 3.0, 1e-15);
    assert_near(dl4c_eval_f1_macro(ev), (0.8 + 2.0 / 3.0) / 2.0, 1e-15);
    dl4c_eval_free(ev);
}

static void test_stats_text(void **state) {
    (void)state;
    dl4c_eval *ev = small_case();
    char *text = NULL;
    assert_int_equal(dl4c_eval_stats(ev, &text), DL4C_OK);
    const char *expect =
        "\n"
        "Examples labeled as 0 classified by model as 0: 2 times\n"
        "Examples labeled as 0 classified by model as 1: 1 times\n"
        "Examples labeled as 1 classified by model as 1: 2 times\n"
        "Examples labeled as 2 classified by model as 1: 1 times\n"
        "\n"
        "Warning: 1 class was never predicted by the model and was excluded from average precision\n"
        "Classes excluded from average precision: [2]\n"
        "\n"
        "==========================Scores========================================\n"
        " # of classes:    3\n"
        " Accuracy:        0.6667\n"
        " Precision:       0.7500\t(1 class excluded from average)\n"
        " Recall:          0.5556\n"
        " F1 Score:        0.7333\t(1 class excluded from average)\n"
        "Precision, recall & F1: macro-averaged (equally weighted avg. of 3 classes)\n"
        "========================================================================\n"
        "\n"
        "=========================Confusion Matrix=========================\n"
        " 0 1 2\n"
        "-------\n"
        " 2 1 0 | 0 = 0\n"
        " 0 2 0 | 1 = 1\n"
        " 0 1 0 | 2 = 2\n"
        "\n"
        "Confusion matrix format: Actual (rowClass) predicted as (columnClass) N times\n"
        "==================================================================\n";
    assert_string_equal(text, expect);
    free(text);
    dl4c_eval_free(ev);
}

/* Classes named, a recall warning, and a count with two digits in the matrix. */
static void test_stats_text_named(void **state) {
    (void)state;
    dl4c_eval *ev;
    assert_int_equal(dl4c_eval_new(4, &ev), DL4C_OK);
    const char *names[] = {"cat", "dog", "fish", "bird"};
    assert_int_equal(dl4c_eval_set_labels(ev, names, 4), DL4C_OK);
    assert_string_equal(dl4c_eval_label(ev, 2), "fish");
    for (int i = 0; i < 12; i++) add_one(ev, 4, 0, 0);   /* cat: 12 right */
    add_one(ev, 4, 1, 0);                                 /* dog taken for a cat */
    add_one(ev, 4, 1, 1);                                 /* dog right */
    add_one(ev, 4, 2, 1);                                 /* fish taken for a dog */
    /* cat: tp 12 fp 1 fn 0 -> p 12/13, r 1, f1 24/25
     * dog: tp 1 fp 1 fn 1 -> p 1/2, r 1/2, f1 1/2
     * fish: tp 0 fp 0 fn 1 -> p 0/0 (excluded), r 0, f1 excluded
     * bird: tp 0 fp 0 fn 0 -> p, r, f1 all excluded */
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_PRECISION), 2);
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_RECALL), 1);
    assert_int_equal(dl4c_eval_excluded(ev, DL4C_EVAL_F1), 2);
    assert_near(dl4c_eval_precision_macro(ev), (12.0 / 13.0 + 0.5) / 2.0, 1e-15);
    assert_near(dl4c_eval_recall_macro(ev), (1.0 + 0.5 + 0.0) / 3.0, 1e-15);
    assert_near(dl4c_eval_f1_macro(ev), (24.0 / 25.0 + 0.5) / 2.0, 1e-15);
    char *text = NULL;
    assert_int_equal(dl4c_eval_stats(ev, &text), DL4C_OK);
    const char *expect =
        "\n"
        "Examples labeled as cat classified by model as cat: 12 times\n"
        "Examples labeled as dog classified by model as cat: 1 times\n"
        "Examples labeled as dog classified by model as dog: 1 times\n"
        "Examples labeled as fish classified by model as dog: 1 times\n"
        "\n"
        "Warning: 2 classes were never predicted by the model and were excluded from average precision\n"
        "Classes excluded from average precision: [2, 3]\n"
        "Warning: 1 class was never predicted by the model and was excluded from average recall\n"
        "Classes excluded from average recall: [3]\n"
        "\n"
        "==========================Scores========================================\n"
        " # of classes:    4\n"
        " Accuracy:        0.8667\n"
        " Precision:       0.7115\t(2 classes excluded from average)\n"
        " Recall:          0.5000\t(1 class excluded from average)\n"
        " F1 Score:        0.7300\t(2 classes excluded from average)\n"
        "Precision, recall & F1: macro-averaged (equally weighted avg. of 4 classes)\n"
        "========================================================================\n"
        "\n"
        "=========================Confusion Matrix=========================\n"
        "  0  1  2  3\n"
        "-------------\n"
        " 12  0  0  0 | 0 = cat\n"
        "  1  1  0  0 | 1 = dog\n"
        "  0  1  0  0 | 2 = fish\n"
        "  0  0  0  0 | 3 = bird\n"
        "\n"
        "Confusion matrix format: Actual (rowClass) predicted as (columnClass) N times\n"
        "==================================================================\n";
    assert_string_equal(text, expect);
    free(text);
    dl4c_eval_free(ev);
}

/* Two classes: no "(excluded)" tags (DL4J adds them only above 2 classes); an empty
 * evaluation prints NaN for F1 as Java does. */
static void test_stats_binary_and_empty(void **state) {
    (void)state;
    dl4c_eval *ev;
    assert_int_equal(dl4c_eval_new(2, &ev), DL4C_OK);
    char *text = NULL;
    assert_int_equal(dl4c_eval_stats(ev, &text), DL4C_OK);
    assert_non_null(strstr(text, " Accuracy:        0.0000\n"));
    assert_non_null(strstr(text, " Precision:       0.0000\n"));
    assert_non_null(strstr(text, " F1 Score:        NaN\n"));
    free(text);
    add_one(ev, 2, 0, 0);
    add_one(ev, 2, 1, 0);
    assert_int_equal(dl4c_eval_stats(ev, &text), DL4C_OK);
    assert_non_null(strstr(text, " Precision:       0.5000\n"));   /* class 1 excluded, untagged */
    assert_null(strstr(text, "excluded from average)"));
    free(text);
    dl4c_eval_free(ev);
}

static void test_argmax_first_wins(void **state) {
    (void)state;
    dl4c_eval *ev;
    assert_int_equal(dl4c_eval_new(3, &ev), DL4C_OK);
    const float probs[] = {0.4f, 0.4f, 0.2f,   0.1f, 0.45f, 0.45f};
    const float labels[] = {0, 1, 0,           0, 0, 1};
    assert_int_equal(dl4c_eval_add(ev, probs, labels, 2), DL4C_OK);
    assert_int_equal(dl4c_eval_count(ev, 1, 0), 1);
    assert_int_equal(dl4c_eval_count(ev, 2, 1), 1);
    assert_int_equal(dl4c_eval_add_index(ev, 2, 2), DL4C_OK);
    assert_int_equal(dl4c_eval_count(ev, 2, 2), 1);
    dl4c_eval_free(ev);
}

static void test_json(void **state) {
    (void)state;
    dl4c_eval *ev = small_case();
    char *text = NULL;
    assert_int_equal(dl4c_eval_to_json(ev, &text), DL4C_OK);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    assert_non_null(root);
    assert_true(json_is_object(root));
    assert_int_equal(json_integer_value(json_object_get(root, "n_classes")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "examples")), 6);
    assert_near(json_real_value(json_object_get(root, "accuracy")), 4.0 / 6.0, 0.0);
    assert_near(json_real_value(json_object_get(root, "precision")), 0.75, 0.0);
    assert_near(json_real_value(json_object_get(root, "recall")),
                        dl4c_eval_recall_macro(ev), 0.0);
    assert_near(json_real_value(json_object_get(root, "f1")), dl4c_eval_f1_macro(ev), 0.0);
    const char *per[] = {"precision_per_class", "recall_per_class", "f1_per_class"};
    for (int m = 0; m < 3; m++) {
        json_t *a = json_object_get(root, per[m]);
        assert_true(json_is_array(a));
        assert_int_equal(json_array_size(a), 3);
        for (int c = 0; c < 3; c++) {
            const double want = m == 0 ? dl4c_eval_precision(ev, c)
                              : m == 1 ? dl4c_eval_recall(ev, c) : dl4c_eval_f1(ev, c);
            assert_near(json_number_value(json_array_get(a, c)), want, 0.0);
        }
    }
    json_t *conf = json_object_get(root, "confusion");
    assert_true(json_is_array(conf));
    assert_int_equal(json_array_size(conf), 3);
    for (int a = 0; a < 3; a++) {
        json_t *row = json_array_get(conf, a);
        assert_int_equal(json_array_size(row), 3);
        for (int p = 0; p < 3; p++)
            assert_int_equal(json_integer_value(json_array_get(row, p)), dl4c_eval_count(ev, a, p));
    }
    assert_null(json_object_get(root, "labels"));
    json_decref(root);
    free(text);

    /* Labels appear when set; an empty evaluation's NaN f1 is null. */
    dl4c_eval *empty;
    assert_int_equal(dl4c_eval_new(2, &empty), DL4C_OK);
    const char *names[] = {"no", "yes"};
    assert_int_equal(dl4c_eval_set_labels(empty, names, 2), DL4C_OK);
    assert_int_equal(dl4c_eval_to_json(empty, &text), DL4C_OK);
    root = json_loads(text, 0, &err);
    assert_non_null(root);
    assert_true(json_is_null(json_object_get(root, "f1")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(root, "labels"), 1)), "yes");
    json_decref(root);
    free(text);
    dl4c_eval_free(empty);
    dl4c_eval_free(ev);
}

/* Random predictions and labels, K classes, n rows, drawn from the counter-based RNG. */
static void random_batch(uint64_t seed, int n, int k, float *probs, float *labels) {
    dl4c_rng r = dl4c_rng_make(seed, 7, 0, 0);
    for (int i = 0; i < n; i++) {
        const int actual = (int)dl4c_rng_below(&r, (uint64_t)k);
        for (int j = 0; j < k; j++) {
            probs[i * k + j] = (float)dl4c_rng_uniform(&r);
            labels[i * k + j] = j == actual ? 1.0f : 0.0f;
        }
        if (dl4c_rng_uniform(&r) < 0.5) probs[i * k + actual] += 0.5f;   /* mostly right */
    }
}

/* Every number and both texts of a and b are identical. */
static void assert_evals_identical(const dl4c_eval *a, const dl4c_eval *b) {
    const int k = dl4c_eval_n_classes(a);
    assert_int_equal(dl4c_eval_n_classes(b), k);
    assert_int_equal(dl4c_eval_examples(a), dl4c_eval_examples(b));
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            assert_int_equal(dl4c_eval_count(a, i, j), dl4c_eval_count(b, i, j));
    assert_true(dl4c_eval_accuracy(a) == dl4c_eval_accuracy(b));
    assert_true(dl4c_eval_precision_macro(a) == dl4c_eval_precision_macro(b));
    assert_true(dl4c_eval_recall_macro(a) == dl4c_eval_recall_macro(b));
    assert_true(dl4c_eval_f1_macro(a) == dl4c_eval_f1_macro(b));
    for (int c = 0; c < k; c++) {
        assert_true(dl4c_eval_precision(a, c) == dl4c_eval_precision(b, c));
        assert_true(dl4c_eval_recall(a, c) == dl4c_eval_recall(b, c));
        assert_true(dl4c_eval_f1(a, c) == dl4c_eval_f1(b, c));
    }
    char *ta, *tb;
    assert_int_equal(dl4c_eval_stats(a, &ta), DL4C_OK);
    assert_int_equal(dl4c_eval_stats(b, &tb), DL4C_OK);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
    assert_int_equal(dl4c_eval_to_json(a, &ta), DL4C_OK);
    assert_int_equal(dl4c_eval_to_json(b, &tb), DL4C_OK);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
}

static void test_merge_shards_equal_whole(void **state) {
    (void)state;
    enum { N = 1000, K = 7 };
    float *probs = malloc(sizeof(float) * N * K), *labels = malloc(sizeof(float) * N * K);
    assert_non_null(probs);
    assert_non_null(labels);
    random_batch(42, N, K, probs, labels);

    dl4c_eval *whole;
    assert_int_equal(dl4c_eval_new(K, &whole), DL4C_OK);
    assert_int_equal(dl4c_eval_add(whole, probs, labels, N), DL4C_OK);

    /* Three uneven shards, each evaluated in minibatches of 64. */
    const int cut[4] = {0, 211, 650, N};
    dl4c_eval *shard[3];
    for (int s = 0; s < 3; s++) {
        assert_int_equal(dl4c_eval_new(K, &shard[s]), DL4C_OK);
        for (int i = cut[s]; i < cut[s + 1]; i += 64) {
            const int n = cut[s + 1] - i < 64 ? cut[s + 1] - i : 64;
            assert_int_equal(dl4c_eval_add(shard[s], probs + i * K, labels + i * K, n), DL4C_OK);
        }
    }
    dl4c_eval *merged;
    assert_int_equal(dl4c_eval_new(K, &merged), DL4C_OK);
    for (int s = 0; s < 3; s++) assert_int_equal(dl4c_eval_merge(merged, shard[s]), DL4C_OK);
    assert_int_equal(dl4c_eval_examples(merged), N);
    assert_evals_identical(whole, merged);

    /* The same through the flat counts, as an all-reduce would do it. */
    int64_t reduced[K * K] = {0};
    for (int s = 0; s < 3; s++) {
        const int64_t *c = dl4c_eval_counts(shard[s]);
        for (int i = 0; i < K * K; i++) reduced[i] += c[i];
    }
    dl4c_eval *from;
    assert_int_equal(dl4c_eval_from_counts(K, reduced, &from), DL4C_OK);
    assert_evals_identical(whole, from);
    assert_memory_equal(dl4c_eval_counts(from), dl4c_eval_counts(whole), sizeof reduced);

    /* Writing an all-reduced array back into a shard's counts in place. */
    memcpy(dl4c_eval_counts(shard[0]), reduced, sizeof reduced);
    assert_evals_identical(whole, shard[0]);

    dl4c_eval_reset(from);
    assert_int_equal(dl4c_eval_examples(from), 0);

    dl4c_eval_free(from);
    dl4c_eval_free(merged);
    for (int s = 0; s < 3; s++) dl4c_eval_free(shard[s]);
    dl4c_eval_free(whole);
    free(probs);
    free(labels);
}

static void test_errors(void **state) {
    (void)state;
    dl4c_eval *ev = NULL, *other = NULL;
    assert_int_equal(dl4c_eval_new(0, &ev), DL4C_ERR_INVALID_ARG);
    assert_null(ev);
    assert_int_equal(dl4c_eval_new(3, &ev), DL4C_OK);
    assert_int_equal(dl4c_eval_new(4, &other), DL4C_OK);
    dl4c_error_clear();
    assert_int_equal(dl4c_eval_merge(ev, other), DL4C_ERR_SHAPE);
    assert_non_null(strstr(dl4c_error_message(), "4 classes"));
    const char *names[] = {"a", "b"};
    assert_int_equal(dl4c_eval_set_labels(ev, names, 2), DL4C_ERR_SHAPE);
    assert_int_equal(dl4c_eval_add_index(ev, 3, 0), DL4C_ERR_INVALID_ARG);
    assert_int_equal(dl4c_eval_add(ev, NULL, NULL, 1), DL4C_ERR_INVALID_ARG);
    assert_int_equal(dl4c_eval_add(ev, NULL, NULL, 0), DL4C_OK);
    assert_int_equal(dl4c_eval_add(ev, NULL, NULL, -1), DL4C_ERR_INVALID_ARG);
    const float probs[] = {0.2f, 0.3f, 0.5f,   NAN, 0.1f, 0.1f};
    const float labels[] = {0, 0, 1,   1, 0, 0};
    assert_int_equal(dl4c_eval_add(ev, probs, labels, 2), DL4C_ERR_NUMERIC);
    assert_int_equal(dl4c_eval_examples(ev), 0);   /* nothing half-added */
    const int64_t bad[4] = {1, -1, 0, 0};
    dl4c_eval *from = (dl4c_eval *)1;
    assert_int_equal(dl4c_eval_from_counts(2, bad, &from), DL4C_ERR_INVALID_ARG);
    assert_null(from);
    dl4c_eval_free(other);
    dl4c_eval_free(ev);
    dl4c_eval_free(NULL);
}

/* Above 20 classes the matrix is left out with DL4J's note; the JSON still holds it. */
static void test_many_classes(void **state) {
    (void)state;
    dl4c_eval *ev;
    assert_int_equal(dl4c_eval_new(21, &ev), DL4C_OK);
    for (int c = 0; c < 21; c++) assert_int_equal(dl4c_eval_add_index(ev, c, c), DL4C_OK);
    char *text;
    assert_int_equal(dl4c_eval_stats(ev, &text), DL4C_OK);
    assert_null(strstr(text, "Confusion Matrix"));
    assert_non_null(strstr(text, "Note: Confusion matrix not generated due to space requirements "
                                 "for 21 classes."));
    assert_non_null(strstr(text, " Accuracy:        1.0000\n"));
    free(text);
    dl4c_eval_free(ev);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_stats_text),
        cmocka_unit_test(test_stats_text_named),
        cmocka_unit_test(test_stats_binary_and_empty),
        cmocka_unit_test(test_argmax_first_wins),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_merge_shards_equal_whole),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_many_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
