/* IDX reader tests: the real Fashion-MNIST, plain vs gzip, ranges, and every bad-input case. */
#include "test_data_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dl4c/data.h"

#include "test_data_fixtures.h"

static void test_fashion_mnist(void **state) {
    (void)state;
    dl4c_dataset *train = NULL, *test = NULL;
    dl4c_status st = dl4c_mnist_dir_load(FMNIST_DIR, &train, &test);
    if (st != DL4C_OK) fail_msg("%s", dl4c_error_message());
    assert_int_equal(dl4c_dataset_count(train), 60000);
    assert_int_equal(dl4c_dataset_count(test), 10000);
    assert_int_equal(train->features->ndim, 4);
    assert_int_equal(train->features->shape[1], 1);
    assert_int_equal(train->features->shape[2], 28);
    assert_int_equal(train->features->shape[3], 28);
    assert_int_equal(train->labels->shape[1], 10);
    assert_int_equal(train->n_classes, 10);

    static const int first_train[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const int first_test[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) {
        assert_true(train->labels->data[i * 10 + first_train[i]] == 1.0f);
        assert_true(test->labels->data[i * 10 + first_test[i]] == 1.0f);
    }
    /* pixels in [0, 1], both ends reached; first image's byte sum is 76247 */
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < train->features->size; i++) {
        float v = train->features->data[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    double s = 0;
    for (int i = 0; i < 784; i++) s += train->features->data[i] * 255.0;
    assert_true(s > 76246.5 && s < 76247.5);
    /* one-hot: every row sums to 1, 6000 per class */
    int64_t per_class[10] = {0};
    for (int64_t i = 0; i < 60000; i++) {
        float row = 0;
        for (int k = 0; k < 10; k++) {
            row += train->labels->data[i * 10 + k];
            if (train->labels->data[i * 10 + k] == 1.0f) per_class[k]++;
        }
        assert_true(row == 1.0f);
    }
    for (int k = 0; k < 10; k++) assert_int_equal(per_class[k], 6000);

    /* the iterator over the whole training set, with prefetch, sees every label once */
    dl4c_batch_iter *it = NULL;
    assert_int_equal(dl4c_batch_iter_new(train, NULL, 0, 128, 2, &it), DL4C_OK);
    int64_t seen = 0, nb = 0;
    double label_sum = 0;
    for (dl4c_batch b; dl4c_batch_iter_next(it, &b);) {
        for (int i = 0; i < b.n * 10; i++) label_sum += b.y[i];
        seen += b.n;
        nb++;
    }
    assert_int_equal(seen, 60000);
    assert_int_equal(nb, (60000 + 127) / 128);
    assert_true(label_sum == 60000.0);
    dl4c_batch_iter_free(it);

    dl4c_dataset_free(train);
    dl4c_dataset_free(test);

    int64_t n = 0;
    assert_int_equal(dl4c_idx_count(FMNIST_DIR "/train-images-idx3-ubyte.gz", &n), DL4C_OK);
    assert_int_equal(n, 60000);
    assert_int_equal(dl4c_idx_count(FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", &n), DL4C_OK);
    assert_int_equal(n, 10000);
}

/* t10k decompressed into the temp dir loads the same as the .gz; ranges equal slices. */
static void test_plain_gz_and_range(void **state) {
    (void)state;
    size_t ni = 0, nl = 0;
    unsigned char *im = tdu_read_all(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", &ni);
    unsigned char *lb = tdu_read_all(FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", &nl);
    assert_int_equal(ni, 7840016);
    assert_int_equal(nl, 10008);
    const char *pi = tdu_write(tmp, "t10k-images-idx3-ubyte", im, ni, 0);
    const char *pl = tdu_write(tmp, "t10k-labels-idx1-ubyte", lb, nl, 0);
    assert_non_null(pi);
    assert_non_null(pl);
    free(im);
    free(lb);

    dl4c_dataset *gz = NULL, *plain = NULL, *dir = NULL;
    assert_int_equal(dl4c_idx_load(FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                                   FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", &gz), DL4C_OK);
    assert_int_equal(dl4c_idx_load(pi, pl, &plain), DL4C_OK);
    assert_int_equal(gz->features->size, plain->features->size);
    assert_memory_equal(gz->features->data, plain->features->data, gz->features->size * sizeof(float));
    assert_memory_equal(gz->labels->data, plain->labels->data, gz->labels->size * sizeof(float));
    /* a directory with only plain t10k files: test half loads, train half is missing */
    assert_int_equal(dl4c_mnist_dir_load(tmp, NULL, &dir), DL4C_OK);
    assert_int_equal(dl4c_dataset_count(dir), 10000);
    dl4c_dataset_free(dir);
    dl4c_dataset *tr = (void *)1, *te = (void *)1;
    expect_error(dl4c_mnist_dir_load(tmp, &tr, &te), DL4C_ERR_IO, tmp, "train-images-idx3-ubyte", NULL);
    assert_null(tr);
    assert_null(te);

    /* ranges, from both the gzip and the plain file */
    static const int64_t ranges[][2] = {{0, 1}, {0, 10000}, {1234, 777}, {9999, 1}, {5000, 0}, {10000, 0}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        for (int g = 0; g < 2; g++) {
            dl4c_dataset *part = NULL;
            dl4c_status st = g ? dl4c_idx_load_range(FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                                                     FMNIST_DIR "/t10k-labels-idx1-ubyte.gz",
                                                     ranges[r][0], ranges[r][1], &part)
                               : dl4c_idx_load_range(pi, pl, ranges[r][0], ranges[r][1], &part);
            if (st != DL4C_OK) fail_msg("%s", dl4c_error_message());
            assert_int_equal(dl4c_dataset_count(part), ranges[r][1]);
            dl4c_tensor fx = dl4c_tensor_rows(gz->features, ranges[r][0], ranges[r][1]);
            dl4c_tensor fy = dl4c_tensor_rows(gz->labels, ranges[r][0], ranges[r][1]);
            assert_int_equal(part->features->size, fx.size);
            if (fx.size) {
                assert_memory_equal(part->features->data, fx.data, fx.size * sizeof(float));
                assert_memory_equal(part->labels->data, fy.data, fy.size * sizeof(float));
            }
            dl4c_dataset_free(part);
        }
    }
    dl4c_dataset *bad = (void *)1;
    expect_error(dl4c_idx_load_range(pi, pl, 9990, 11, &bad), DL4C_ERR_INVALID_ARG, "out of range", NULL);
    assert_null(bad);
    expect_error(dl4c_idx_load_range(pi, pl, -1, 1, &bad), DL4C_ERR_INVALID_ARG, NULL);
    expect_error(dl4c_idx_load_range(pi, pl, 0, -1, &bad), DL4C_ERR_INVALID_ARG, NULL);
    /* more classes than the default */
    assert_int_equal(dl4c_idx_load_ex(pi, pl, 10, 5, 12, &bad), DL4C_OK);
    assert_int_equal(bad->labels->shape[1], 12);
    assert_int_equal(bad->n_classes, 12);
    dl4c_dataset_free(bad);

    dl4c_dataset_free(gz);
    dl4c_dataset_free(plain);
}

static void test_labels_path(void **state) {
    (void)state;
    char out[512];
    assert_int_equal(dl4c_idx_labels_path(FMNIST_DIR "/train-images-idx3-ubyte.gz", out, sizeof out), DL4C_OK);
    assert_string_equal(out, FMNIST_DIR "/train-labels-idx1-ubyte.gz");
    assert_int_equal(dl4c_idx_labels_path(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", out, sizeof out), DL4C_OK);
    assert_string_equal(out, FMNIST_DIR "/t10k-labels-idx1-ubyte.gz");

    char d[256];
    snprintf(d, sizeof d, "%s/lp", tmp);
    assert_int_equal(mkdir(d, 0700), 0);
    /* dotted style, and plain images beside gzip labels */
    assert_non_null(tdu_write_str(d, "t10k-labels.idx1-ubyte", "x"));
    assert_non_null(tdu_write_str(d, "train-labels-idx1-ubyte.gz", "x"));
    assert_int_equal(dl4c_idx_labels_path(tdu_path(d, "t10k-images.idx3-ubyte"), out, sizeof out), DL4C_OK);
    assert_string_equal(out, tdu_path(d, "t10k-labels.idx1-ubyte"));
    assert_int_equal(dl4c_idx_labels_path(tdu_path(d, "t10k-images.idx3-ubyte.gz"), out, sizeof out), DL4C_OK);
    assert_string_equal(out, tdu_path(d, "t10k-labels.idx1-ubyte"));
    assert_int_equal(dl4c_idx_labels_path(tdu_path(d, "train-images-idx3-ubyte"), out, sizeof out), DL4C_OK);
    assert_string_equal(out, tdu_path(d, "train-labels-idx1-ubyte.gz"));
    /* not found, no "images" in the name, buffer too small */
    expect_error(dl4c_idx_labels_path(tdu_path(d, "foo-images-idx3-ubyte"), out, sizeof out), DL4C_ERR_IO,
                 "foo-labels-idx1-ubyte", NULL);
    expect_error(dl4c_idx_labels_path(tdu_path(d, "data.bin"), out, sizeof out), DL4C_ERR_INVALID_ARG,
                 "data.bin", NULL);
    expect_error(dl4c_idx_labels_path(tdu_path(d, "train-images-idx3-ubyte"), out, 8), DL4C_ERR_INVALID_ARG,
                 "too small", NULL);
}

/* Writes an images/labels pair from buffers (freeing them); returns the two paths. */
static void write_pair(const char *name, unsigned char *im, size_t ni, unsigned char *lb, size_t nl,
                       int gz, const char **pi, const char **pl) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s-images-idx3-ubyte%s", name, gz ? ".gz" : "");
    snprintf(b, sizeof b, "%s-labels-idx1-ubyte%s", name, gz ? ".gz" : "");
    *pi = tdu_write(tmp, a, im, ni, gz);
    *pl = tdu_write(tmp, b, lb, nl, gz);
    assert_non_null(*pi);
    assert_non_null(*pl);
    free(im);
    free(lb);
}

/* Builds the two buffers first (they set ni / nl), then writes them. */
#define PAIR(name, IMAGES, LABELS)                                   \
    do {                                                             \
        unsigned char *im_ = IMAGES;                                 \
        unsigned char *lb_ = LABELS;                                 \
        write_pair(name, im_, ni, lb_, nl, gz, &pi, &pl);            \
    } while (0)

static void test_bad_idx(void **state) {
    (void)state;
    size_t ni, nl;
    const char *pi, *pl;
    dl4c_dataset *ds = (void *)1;

    for (int gz = 0; gz < 2; gz++) {
        /* truncated pixels: 100 images of 28x28 claimed, 1000 bytes present */
        PAIR("trunc", tdu_idx_images(100, 28, 28, 1000, &ni),
             tdu_idx_labels(100, 10, 100, -1, 0, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, pi,
                     "truncated: expected 78400 bytes of pixels, got 1000", NULL);
        assert_null(ds);
        /* a range that lies beyond the data present */
        expect_error(dl4c_idx_load_range(pi, pl, 50, 10, &ds), DL4C_ERR_FORMAT, pi, "truncated", NULL);
        /* a range inside the data present loads */
        assert_int_equal(dl4c_idx_load_range(pi, pl, 0, 1, &ds), DL4C_OK);
        dl4c_dataset_free(ds);

        /* truncated labels */
        PAIR("truncl", tdu_idx_images(5, 2, 2, 20, &ni),
             tdu_idx_labels(5, 10, 3, -1, 0, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, pl, "truncated", "labels", NULL);

        /* wrong magic: a labels file given as images, and the reverse */
        PAIR("swap", tdu_idx_images(5, 2, 2, 20, &ni),
             tdu_idx_labels(5, 10, 5, -1, 0, &nl));
        expect_error(dl4c_idx_load(pl, pi, &ds), DL4C_ERR_FORMAT, pl, "wrong magic number 0x00000801",
                     "0x00000803", "labels file", NULL);
        unsigned char junk[64];
        for (int i = 0; i < 64; i++) junk[i] = (unsigned char)(i * 37 + 11);
        const char *pj = tdu_write(tmp, gz ? "junk.gz" : "junk", junk, sizeof junk, gz);
        expect_error(dl4c_idx_load(pj, pl, &ds), DL4C_ERR_FORMAT, pj, "wrong magic number", NULL);

        /* count mismatch */
        PAIR("mismatch", tdu_idx_images(5, 2, 2, 20, &ni),
             tdu_idx_labels(6, 10, 6, -1, 0, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, "mismatch", "5 images", "6 labels", NULL);

        /* label out of range */
        PAIR("range", tdu_idx_images(5, 2, 2, 20, &ni),
             tdu_idx_labels(5, 10, 5, 3, 10, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, pl, "label 10 of example 3",
                     "out of range", NULL);
        /* fine with 11 classes */
        assert_int_equal(dl4c_idx_load_ex(pi, pl, 0, -1, 11, &ds), DL4C_OK);
        assert_true(ds->labels->data[3 * 11 + 10] == 1.0f);
        dl4c_dataset_free(ds);

        /* zero-sized images */
        PAIR("zero", tdu_idx_images(5, 0, 2, 0, &ni),
             tdu_idx_labels(5, 10, 5, -1, 0, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, pi, "0x2", NULL);

        /* a header claiming 2^32-1 images with almost nothing behind it: no huge allocation */
        PAIR("huge", tdu_idx_images(0xFFFFFFFFu, 28, 28, 100, &ni),
             tdu_idx_labels(0xFFFFFFFFu, 10, 100, -1, 0, &nl));
        expect_error(dl4c_idx_load(pi, pl, &ds), DL4C_ERR_FORMAT, pi, "truncated", NULL);

        /* empty files */
        const char *pe = tdu_write(tmp, gz ? "empty.gz" : "empty", "", 0, gz);
        expect_error(dl4c_idx_load(pe, pl, &ds), DL4C_ERR_FORMAT, pe, "empty file", NULL);
        int64_t n = 5;
        expect_error(dl4c_idx_count(pe, &n), DL4C_ERR_FORMAT, pe, NULL);
    }

    /* every prefix of a valid small pair fails cleanly (plain and gzip) */
    size_t fi, fl;
    unsigned char *im = tdu_idx_images(3, 4, 4, 48, &fi);
    unsigned char *lb = tdu_idx_labels(3, 10, 3, -1, 0, &fl);
    char full_l[256], full_i[256];   /* copies: tdu_path's buffers rotate */
    snprintf(full_l, sizeof full_l, "%s", tdu_write(tmp, "ok-labels", lb, fl, 0));
    snprintf(full_i, sizeof full_i, "%s", tdu_write(tmp, "ok-images", im, fi, 0));
    for (size_t cut = 0; cut < fi; cut++) {
        for (int gz = 0; gz < 2; gz++) {
            const char *p = tdu_write(tmp, gz ? "cut-images.gz" : "cut-images", im, cut, gz);
            dl4c_status st = dl4c_idx_load(p, full_l, &ds);
            assert_int_equal(st, DL4C_ERR_FORMAT);
            assert_non_null(strstr(dl4c_error_message(), "cut-images"));
        }
    }
    for (size_t cut = 0; cut < fl; cut++) {
        const char *p = tdu_write(tmp, "cut-labels", lb, cut, 0);
        assert_int_equal(dl4c_idx_load(full_i, p, &ds), DL4C_ERR_FORMAT);
    }
    assert_int_equal(dl4c_idx_load(full_i, full_l, &ds), DL4C_OK);
    assert_true(ds->features->data[5] == (float)(5 * 7) / 255.0f);
    dl4c_dataset_free(ds);

    /* unreadable gzip: a gzip header followed by garbage, and a compressed file cut short */
    unsigned char badgz[40] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    for (int i = 10; i < 40; i++) badgz[i] = (unsigned char)(i * 91);
    const char *pg = tdu_write(tmp, "bad-images.gz", badgz, sizeof badgz, 0);
    expect_error(dl4c_idx_load(pg, full_l, &ds), DL4C_ERR_FORMAT, pg, "gzip", NULL);
    size_t gzn = 0;
    unsigned char *big = tdu_idx_images(50, 28, 28, 50 * 784, &ni);
    const char *pbig = tdu_write(tmp, "big-images.gz", big, ni, 1);
    free(big);
    FILE *f = fopen(pbig, "rb");
    unsigned char comp[65536];
    gzn = fread(comp, 1, sizeof comp, f);
    fclose(f);
    assert_true(gzn > 100 && gzn < sizeof comp);
    const char *pcut = tdu_write(tmp, "cutgz-images.gz", comp, gzn / 2, 0);
    expect_error(dl4c_idx_load(pcut, full_l, &ds), DL4C_ERR_FORMAT, pcut, NULL);

    /* missing files, a directory */
    expect_error(dl4c_idx_load(tdu_path(tmp, "nope-images"), full_l, &ds), DL4C_ERR_IO, "nope-images",
                 "No such file", NULL);
    expect_error(dl4c_idx_load(full_i, tdu_path(tmp, "nope-labels"), &ds), DL4C_ERR_IO, "nope-labels", NULL);
    expect_error(dl4c_idx_load(tmp, full_l, &ds), DL4C_ERR_IO, "directory", NULL);
    expect_error(dl4c_mnist_dir_load(tdu_path(tmp, "nodir"), &ds, NULL), DL4C_ERR_IO, "nodir", NULL);
    assert_null(ds);

    free(im);
    free(lb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_plain_gz_and_range),
        cmocka_unit_test(test_labels_path),
        cmocka_unit_test(test_bad_idx),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
