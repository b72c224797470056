/* Shuffles, partitions and the minibatch iterator (with and without prefetch). */
#include "test_data_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dl4c/data.h"

/* True when p is a permutation of [0, n). */
static bool is_perm(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n + 1, 1);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = false;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_shuffle(void **state) {
    (void)state;
    int64_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(dl4c_shuffle_indices(1000, 42, 3, &a), DL4C_OK);
    assert_int_equal(dl4c_shuffle_indices(1000, 42, 3, &b), DL4C_OK);
    assert_int_equal(dl4c_shuffle_indices(1000, 42, 4, &c), DL4C_OK);
    assert_int_equal(dl4c_shuffle_indices(1000, 43, 3, &d), DL4C_OK);
    assert_true(is_perm(a, 1000));
    assert_memory_equal(a, b, 1000 * sizeof *a);
    assert_memory_not_equal(a, c, 1000 * sizeof *a);
    assert_memory_not_equal(a, d, 1000 * sizeof *a);
    int fixed = 0;
    for (int i = 0; i < 1000; i++) fixed += a[i] == i;
    assert_true(fixed < 20);   /* actually shuffled */
    dl4c_free(a); dl4c_free(b); dl4c_free(c); dl4c_free(d);
    assert_int_equal(dl4c_shuffle_indices(0, 1, 0, &a), DL4C_OK);
    dl4c_free(a);
    assert_int_equal(dl4c_shuffle_indices(-1, 1, 0, &a), DL4C_ERR_INVALID_ARG);
    assert_null(a);
}

static void test_partition(void **state) {
    (void)state;
    static const int64_t ns[] = {0, 1, 5, 7, 100, 1001, 60000};
    static const int ws[] = {1, 2, 3, 4, 7, 16};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++) {
            int64_t n = ns[i];
            int w = ws[j];
            int64_t starts[17], starts2[17];
            int64_t *p = NULL, *q = NULL;
            assert_int_equal(dl4c_partition(n, 7, 2, w, &p, starts), DL4C_OK);
            assert_int_equal(dl4c_partition(n, 7, 2, w, &q, starts2), DL4C_OK);
            assert_true(is_perm(p, n));
            assert_memory_equal(starts, starts2, (size_t)(w + 1) * sizeof *starts);
            if (n) assert_memory_equal(p, q, (size_t)n * sizeof *p);
            assert_int_equal(starts[0], 0);
            assert_int_equal(starts[w], n);
            int64_t lo = INT64_MAX, hi = 0;
            for (int k = 0; k < w; k++) {
                int64_t sz = starts[k + 1] - starts[k];
                assert_true(sz >= 0);
                if (sz < lo) lo = sz;
                if (sz > hi) hi = sz;
            }
            assert_true(hi - lo <= 1);
            dl4c_free(p);
            dl4c_free(q);
        }
    }
    /* re-drawn each epoch, and not the shuffle stream */
    int64_t s1[5], *e1 = NULL, *e2 = NULL, *sh = NULL;
    assert_int_equal(dl4c_partition(500, 7, 0, 4, &e1, s1), DL4C_OK);
    assert_int_equal(dl4c_partition(500, 7, 1, 4, &e2, s1), DL4C_OK);
    assert_int_equal(dl4c_shuffle_indices(500, 7, 0, &sh), DL4C_OK);
    assert_memory_not_equal(e1, e2, 500 * sizeof *e1);
    assert_memory_not_equal(e1, sh, 500 * sizeof *e1);
    dl4c_free(e1); dl4c_free(e2); dl4c_free(sh);
    int64_t *p = (void *)1;
    assert_int_equal(dl4c_partition(10, 7, 0, 0, &p, s1), DL4C_ERR_INVALID_ARG);
    assert_null(p);
}

/* A dataset of n rows: features [n, 2, 3, 4] with value row * 100 + j, labels one-hot mod k. */
static dl4c_dataset *make_ds(int64_t n, int k) {
    int64_t fs[4] = {n, 2, 3, 4}, ls[2] = {n, k};
    dl4c_tensor *x = dl4c_tensor_new(4, fs), *y = dl4c_tensor_new(2, ls);
    for (int64_t r = 0; r < n; r++) {
        for (int j = 0; j < 24; j++) x->data[r * 24 + j] = (float)(r * 100 + j);
        y->data[r * k + r % k] = 1.0f;
    }
    dl4c_dataset *ds = NULL;
    assert_int_equal(dl4c_dataset_new(x, y, k, &ds), DL4C_OK);
    return ds;
}

/* Runs one epoch and appends every batch (n, x, y) to out; returns floats written. */
static size_t run_epoch(dl4c_batch_iter *it, float *out, int bs, int64_t expect_rows) {
    size_t u = 0;
    int64_t rows = 0;
    for (dl4c_batch b; dl4c_batch_iter_next(it, &b);) {
        assert_true(b.n >= 1 && b.n <= bs);
        out[u++] = (float)b.n;
        memcpy(out + u, b.x, (size_t)b.n * 24 * sizeof(float));
        u += (size_t)b.n * 24;
        memcpy(out + u, b.y, (size_t)b.n * 3 * sizeof(float));
        u += (size_t)b.n * 3;
        rows += b.n;
    }
    assert_int_equal(rows, expect_rows);
    assert_false(dl4c_batch_iter_next(it, &(dl4c_batch){0}));   /* stays at the end */
    return u;
}

static void test_iter_identical(void **state) {
    (void)state;
    const int64_t n = 1003;
    const int bs = 32;
    dl4c_dataset *ds = make_ds(n, 3);
    size_t cap = (size_t)n * 28 + 1000;
    float *ref = malloc(cap * sizeof(float) * 4), *got = malloc(cap * sizeof(float) * 4);   /* 3.5 epochs */
    static const int prefetches[] = {0, 1, 2, 7};
    size_t ref_len = 0;
    for (size_t pi = 0; pi < sizeof prefetches / sizeof prefetches[0]; pi++) {
        dl4c_batch_iter *it = NULL;
        int64_t *order = NULL;
        assert_int_equal(dl4c_shuffle_indices(n, 9, 0, &order), DL4C_OK);
        assert_int_equal(dl4c_batch_iter_new(ds, order, n, bs, prefetches[pi], &it), DL4C_OK);
        assert_int_equal(dl4c_batch_iter_count(it), (n + bs - 1) / bs);
        size_t len = run_epoch(it, got, bs, n);
        /* the first epoch holds the rows of `order`, in order */
        size_t u = 0;
        for (int64_t r = 0; r < n;) {
            int cnt = (int)got[u++];
            for (int i = 0; i < cnt; i++, r++) {
                for (int j = 0; j < 24; j++)
                    assert_true(got[u + (size_t)i * 24 + (size_t)j] == (float)(order[r] * 100 + j));
                for (int k = 0; k < 3; k++)
                    assert_true(got[u + (size_t)cnt * 24 + (size_t)i * 3 + (size_t)k] ==
                                (order[r] % 3 == k ? 1.0f : 0.0f));
            }
            u += (size_t)cnt * 27;
        }
        /* epoch 1: new order; then a half list, then the identity (NULL) */
        dl4c_free(order);
        assert_int_equal(dl4c_shuffle_indices(n, 9, 1, &order), DL4C_OK);
        assert_int_equal(dl4c_batch_iter_reset(it, order, n), DL4C_OK);
        len += run_epoch(it, got + len, bs, n);
        assert_int_equal(dl4c_batch_iter_reset(it, order, n / 2), DL4C_OK);
        len += run_epoch(it, got + len, bs, n / 2);
        assert_int_equal(dl4c_batch_iter_reset(it, NULL, 0), DL4C_OK);
        len += run_epoch(it, got + len, bs, n);
        if (pi == 0) {
            memcpy(ref, got, len * sizeof(float));
            ref_len = len;
        } else {
            assert_int_equal(len, ref_len);
            assert_memory_equal(got, ref, len * sizeof(float));
        }
        dl4c_free(order);
        dl4c_batch_iter_free(it);
    }
    free(ref);
    free(got);
    dl4c_dataset_free(ds);
}

/* Reset and free at every point of an epoch while the producer runs. */
static void test_iter_early_stop(void **state) {
    (void)state;
    dl4c_dataset *ds = make_ds(500, 3);
    for (int round = 0; round < 200; round++) {
        dl4c_batch_iter *it = NULL;
        int prefetch = 1 + round % 4;
        assert_int_equal(dl4c_batch_iter_new(ds, NULL, 0, 7, prefetch, &it), DL4C_OK);
        int take = round % 9;   /* 0: free right after creation */
        dl4c_batch b;
        for (int i = 0; i < take; i++) assert_true(dl4c_batch_iter_next(it, &b));
        if (round % 3 == 1) {
            /* reset mid-epoch: the new list starts from its first batch */
            int64_t idx[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
            assert_int_equal(dl4c_batch_iter_reset(it, idx, 10), DL4C_OK);
            assert_true(dl4c_batch_iter_next(it, &b));
            assert_int_equal(b.n, 7);
            assert_true(b.x[0] == 900.0f);
            assert_true(dl4c_batch_iter_next(it, &b));
            assert_int_equal(b.n, 3);
            assert_true(b.x[0] == 200.0f);
            assert_false(dl4c_batch_iter_next(it, &b));
        }
        dl4c_batch_iter_free(it);
    }
    dl4c_batch_iter_free(NULL);
    dl4c_dataset_free(ds);
}

static void test_iter_errors(void **state) {
    (void)state;
    dl4c_dataset *ds = make_ds(10, 3);
    dl4c_batch_iter *it = (void *)1;
    int64_t bad[3] = {0, 10, 1};
    assert_int_equal(dl4c_batch_iter_new(ds, bad, 3, 2, 0, &it), DL4C_ERR_INVALID_ARG);
    assert_null(it);
    assert_non_null(strstr(dl4c_error_message(), "index 10 at position 1"));
    assert_int_equal(dl4c_batch_iter_new(ds, NULL, 0, 0, 0, &it), DL4C_ERR_INVALID_ARG);
    assert_int_equal(dl4c_batch_iter_new(ds, NULL, 0, 4, -1, &it), DL4C_ERR_INVALID_ARG);
    assert_int_equal(dl4c_batch_iter_new(NULL, NULL, 0, 4, 0, &it), DL4C_ERR_INVALID_ARG);
    /* a bad reset leaves the iterator empty but usable */
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        assert_int_equal(dl4c_batch_iter_new(ds, NULL, 0, 4, prefetch, &it), DL4C_OK);
        dl4c_batch b;
        assert_true(dl4c_batch_iter_next(it, &b));
        int64_t neg[1] = {-1};
        assert_int_equal(dl4c_batch_iter_reset(it, neg, 1), DL4C_ERR_INVALID_ARG);
        assert_false(dl4c_batch_iter_next(it, &b));
        assert_int_equal(dl4c_batch_iter_reset(it, NULL, 0), DL4C_OK);
        int total = 0;
        while (dl4c_batch_iter_next(it, &b)) total += b.n;
        assert_int_equal(total, 10);
        /* an empty list and a batch larger than the list */
        assert_int_equal(dl4c_batch_iter_reset(it, bad, 0), DL4C_OK);
        assert_false(dl4c_batch_iter_next(it, &b));
        dl4c_batch_iter_free(it);
        assert_int_equal(dl4c_batch_iter_new(ds, NULL, 0, 64, prefetch, &it), DL4C_OK);
        assert_true(dl4c_batch_iter_next(it, &b));
        assert_int_equal(b.n, 10);
        assert_false(dl4c_batch_iter_next(it, &b));
        dl4c_batch_iter_free(it);
    }
    /* dataset_new checks shapes and takes ownership even on failure */
    int64_t fs[2] = {4, 2}, ls[2] = {5, 3};
    dl4c_dataset *d2 = (void *)1;
    assert_int_equal(dl4c_dataset_new(dl4c_tensor_new(2, fs), dl4c_tensor_new(2, ls), 3, &d2), DL4C_ERR_SHAPE);
    assert_null(d2);
    dl4c_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_iter_identical),
        cmocka_unit_test(test_iter_early_stop),
        cmocka_unit_test(test_iter_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
