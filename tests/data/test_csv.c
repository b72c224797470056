/* CSV reader tests: classification, regression, headers, ranges, and every bad-input case. */
#include "test_data_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dl4c/data.h"

#include "test_data_fixtures.h"

static void expect_floats(const dl4c_tensor *t, const float *want, int64_t n) {
    assert_int_equal(t->size, n);
    for (int64_t i = 0; i < n; i++)
        if (t->data[i] != want[i]) fail_msg("element %lld: %g, expected %g", (long long)i, t->data[i], want[i]);
}

static void test_classification(void **state) {
    (void)state;
    /* default options: label last, classes inferred, header detected */
    const char *p = tdu_write_str(tmp, "iris.csv",
                                  "sepal_len,sepal_wid,class\n"
                                  "5.1,3.5,0\n"
                                  "\n"
                                  "4.9, 3.0 ,2\r\n"
                                  "\"6.2\",-1e-1,1\n"
                                  "7,8,2");   /* no final newline */
    dl4c_dataset *ds = NULL;
    dl4c_status st = dl4c_csv_load(p, NULL, &ds);
    if (st != DL4C_OK) fail_msg("%s", dl4c_error_message());
    assert_int_equal(ds->n_classes, 3);
    assert_int_equal(ds->features->ndim, 2);
    assert_int_equal(ds->features->shape[0], 4);
    assert_int_equal(ds->features->shape[1], 2);
    static const float fx[] = {5.1f, 3.5f, 4.9f, 3.0f, 6.2f, -0.1f, 7, 8};
    static const float fy[] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};
    expect_floats(ds->features, fx, 8);
    expect_floats(ds->labels, fy, 12);
    dl4c_dataset_free(ds);

    int64_t n = 0;
    assert_int_equal(dl4c_csv_count(p, NULL, &n), DL4C_OK);
    assert_int_equal(n, 4);

    /* label first, K given, ';' delimiter, explicit header, BOM, gzip */
    const char *text = "\xEF\xBB\xBFlabel;a;b;c\n3;1;2;3\n0;4;5;6\n";
    p = tdu_write(tmp, "first.csv.gz", text, strlen(text), 1);
    dl4c_csv_opts o = dl4c_csv_opts_default();
    o.label_column = 0;
    o.n_classes = 5;
    o.header = true;
    o.delimiter = ';';
    assert_int_equal(dl4c_csv_load(p, &o, &ds), DL4C_OK);
    assert_int_equal(ds->n_classes, 5);
    static const float gx[] = {1, 2, 3, 4, 5, 6};
    static const float gy[] = {0, 0, 0, 1, 0, 1, 0, 0, 0, 0};
    expect_floats(ds->features, gx, 6);
    expect_floats(ds->labels, gy, 10);
    dl4c_dataset_free(ds);

    /* a label column in the middle; no header; integral floats like "2.0" are classes */
    p = tdu_write_str(tmp, "mid.csv", "1,2.0,3\n4,0,6\n");
    o = dl4c_csv_opts_default();
    o.label_column = 1;
    o.detect_header = false;
    assert_int_equal(dl4c_csv_load(p, &o, &ds), DL4C_OK);
    static const float hx[] = {1, 3, 4, 6};
    static const float hy[] = {0, 0, 1, 1, 0, 0};
    expect_floats(ds->features, hx, 4);
    expect_floats(ds->labels, hy, 6);
    dl4c_dataset_free(ds);

    /* a zeroed struct: label in column 0, ',' delimiter, no header, classes inferred */
    dl4c_csv_opts z = {0};
    assert_int_equal(dl4c_csv_load(p, &z, &ds), DL4C_OK);
    assert_int_equal(ds->n_classes, 5);
    dl4c_dataset_free(ds);
}

static void test_regression(void **state) {
    (void)state;
    const char *p = tdu_write_str(tmp, "reg.csv", "x1,x2,x3,y1,y2\n1,2,3,0.5,-0.5\n4,5,6,1.5,2.5\n");
    dl4c_csv_opts o = dl4c_csv_opts_default();
    o.regression = true;
    o.n_label_columns = 2;   /* label_column -1: the last two columns */
    dl4c_dataset *ds = NULL;
    assert_int_equal(dl4c_csv_load(p, &o, &ds), DL4C_OK);
    assert_int_equal(ds->n_classes, 0);
    assert_int_equal(ds->labels->shape[1], 2);
    static const float fx[] = {1, 2, 3, 4, 5, 6};
    static const float fy[] = {0.5f, -0.5f, 1.5f, 2.5f};
    expect_floats(ds->features, fx, 6);
    expect_floats(ds->labels, fy, 4);
    dl4c_dataset_free(ds);

    /* one target in column 1 */
    o.n_label_columns = 0;   /* 0 = 1 */
    o.label_column = 1;
    assert_int_equal(dl4c_csv_load(p, &o, &ds), DL4C_OK);
    static const float gx[] = {1, 3, 0.5f, -0.5f, 4, 6, 1.5f, 2.5f};
    static const float gy[] = {2, 5};
    expect_floats(ds->features, gx, 8);
    expect_floats(ds->labels, gy, 2);
    dl4c_dataset_free(ds);
}

static void test_range(void **state) {
    (void)state;
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof text, "a,b,label\n");
    for (int i = 0; i < 100; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%d,%d.25,%d\n", i, -i, (i * 3) % 7);
    const char *p = tdu_write_str(tmp, "range.csv", text);
    dl4c_dataset *full = NULL, *part = NULL;
    assert_int_equal(dl4c_csv_load(p, NULL, &full), DL4C_OK);
    assert_int_equal(full->n_classes, 7);
    static const int64_t ranges[][2] = {{0, 100}, {10, 5}, {99, 1}, {0, 1}, {37, 0}, {100, 0}, {90, -1}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        assert_int_equal(dl4c_csv_load_range(p, NULL, ranges[r][0], ranges[r][1], &part), DL4C_OK);
        int64_t cnt = ranges[r][1] < 0 ? 100 - ranges[r][0] : ranges[r][1];
        assert_int_equal(dl4c_dataset_count(part), cnt);
        assert_int_equal(part->n_classes, 7);   /* inferred from the whole file */
        dl4c_tensor fx = dl4c_tensor_rows(full->features, ranges[r][0], cnt);
        dl4c_tensor fy = dl4c_tensor_rows(full->labels, ranges[r][0], cnt);
        if (cnt) {
            assert_memory_equal(part->features->data, fx.data, fx.size * sizeof(float));
            assert_memory_equal(part->labels->data, fy.data, fy.size * sizeof(float));
        }
        dl4c_dataset_free(part);
    }
    /* with K given, rows after the range are not even read */
    dl4c_csv_opts o = dl4c_csv_opts_default();
    o.n_classes = 7;
    assert_int_equal(dl4c_csv_load_range(p, &o, 3, 4, &part), DL4C_OK);
    assert_true(part->features->data[0] == 3.0f);
    dl4c_dataset_free(part);
    part = (void *)1;
    expect_error(dl4c_csv_load_range(p, NULL, 95, 10, &part), DL4C_ERR_INVALID_ARG, "out of range", NULL);
    assert_null(part);
    expect_error(dl4c_csv_load_range(p, &o, 101, -1, &part), DL4C_ERR_INVALID_ARG, "out of range", NULL);
    dl4c_dataset_free(full);
}

/* Loads `text` as name with opts and expects the error. */
static void bad(const char *name, const char *text, const dl4c_csv_opts *o, dl4c_status want,
                const char *msg) {
    const char *p = tdu_write_str(tmp, name, text);
    dl4c_dataset *ds = (void *)1;
    expect_error(dl4c_csv_load(p, o, &ds), want, msg, NULL);
    assert_null(ds);
}

static void test_bad_csv(void **state) {
    (void)state;
    /* a non-numeric field on line 17, column 3 */
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "a,b,c,label\n");
    for (int line = 2; line <= 20; line++)
        used += (size_t)snprintf(text + used, sizeof text - used, "1,2,%s,0\n", line == 17 ? "abc" : "3");
    bad("data.csv", text, NULL, DL4C_ERR_FORMAT, "data.csv:17: column 3: \"abc\" is not a number");

    bad("missing.csv", "1,2,3\n4,5,6\n7,8\n", NULL, DL4C_ERR_FORMAT,
        "missing.csv:3: expected 3 columns (as on line 1), found 2");
    bad("extra.csv", "1,2,3\n4,5,6,7\n", NULL, DL4C_ERR_FORMAT, "extra.csv:2: expected 3 columns");
    bad("emptyfield.csv", "1,2,3\n4,,6\n", NULL, DL4C_ERR_FORMAT, "emptyfield.csv:2: column 2: empty field");
    bad("header.csv", "a,b,c\n1,2\n", NULL, DL4C_ERR_FORMAT, "header.csv:2: 2 columns, but the header (line 1) has 3");
    bad("empty.csv", "", NULL, DL4C_ERR_FORMAT, "empty.csv: empty file");
    bad("blank.csv", "\n  \n\r\n", NULL, DL4C_ERR_FORMAT, "blank.csv: empty file");
    bad("onlyheader.csv", "a,b,label\n", NULL, DL4C_ERR_FORMAT, "empty file (no data rows after the header)");
    bad("nonint.csv", "1,2,0\n3,4,1.5\n", NULL, DL4C_ERR_FORMAT, "nonint.csv:2: column 3: class label 1.5 is not an integer");
    bad("negative.csv", "1,2,0\n3,4,-1\n", NULL, DL4C_ERR_FORMAT, "negative.csv:2: column 3: class label -1 is out of range");
    bad("hugelabel.csv", "1,2,1e9\n", NULL, DL4C_ERR_FORMAT, "hugelabel.csv:1: column 3: class label 1e+09 is out of range");
    bad("nan.csv", "1,nan,0\n", NULL, DL4C_ERR_FORMAT, "nan.csv:1: column 2: \"nan\" is not a finite float");
    bad("inf.csv", "1,2,0\n1e39,2,0\n", NULL, DL4C_ERR_FORMAT, "inf.csv:2: column 1: \"1e39\" is not a finite float");
    bad("trailing.csv", "1,2x,0\n", NULL, DL4C_ERR_FORMAT, "trailing.csv:1: column 2: \"2x\" is not a number");
    bad("onecol.csv", "1\n2\n", NULL, DL4C_ERR_FORMAT, "onecol.csv:1: no feature columns");
    dl4c_csv_opts o = dl4c_csv_opts_default();
    o.n_classes = 3;
    bad("k.csv", "1,2,0\n3,4,2\n5,6,3\n", &o, DL4C_ERR_FORMAT,
        "k.csv:3: column 3: class label 3 is out of range for 3 classes (0..2)");
    o = dl4c_csv_opts_default();
    o.label_column = 5;
    bad("col.csv", "1,2,0\n", &o, DL4C_ERR_INVALID_ARG, "label column 5");
    o = dl4c_csv_opts_default();
    o.regression = true;
    o.n_label_columns = 4;
    bad("cols.csv", "1,2,0\n", &o, DL4C_ERR_INVALID_ARG, "does not fit");
    o.n_label_columns = 3;
    bad("cols3.csv", "1,2,0\n", &o, DL4C_ERR_FORMAT, "no feature columns");
    o = dl4c_csv_opts_default();
    o.n_label_columns = 2;
    bad("cls2.csv", "1,2,0\n", &o, DL4C_ERR_INVALID_ARG, "one label column");
    o = dl4c_csv_opts_default();
    o.delimiter = '.';
    bad("delim.csv", "1,2,0\n", &o, DL4C_ERR_INVALID_ARG, "delimiter");
    /* header detection off: a header line is a bad number */
    o = dl4c_csv_opts_default();
    o.detect_header = false;
    bad("nohdr.csv", "x,y,label\n1,2,0\n", &o, DL4C_ERR_FORMAT, "nohdr.csv:1: column 1: \"x\" is not a number");

    /* binary junk, a missing file, a directory */
    unsigned char junk[300];
    for (int i = 0; i < 300; i++) junk[i] = (unsigned char)(i * 131 + 7);
    const char *pj = tdu_write(tmp, "junk.csv", junk, sizeof junk, 0);
    dl4c_dataset *ds = (void *)1;
    assert_int_equal(dl4c_csv_load(pj, NULL, &ds), DL4C_ERR_FORMAT);
    assert_non_null(strstr(dl4c_error_message(), "junk.csv"));
    expect_error(dl4c_csv_load(tdu_path(tmp, "absent.csv"), NULL, &ds), DL4C_ERR_IO, "absent.csv", NULL);
    expect_error(dl4c_csv_load(tmp, NULL, &ds), DL4C_ERR_IO, "directory", NULL);
    assert_null(ds);

    /* every prefix of a small file, plain and gzip: loads or fails cleanly */
    const char *good = "a,b,label\n1.5,2,0\n3,4e1,1\n";
    for (size_t cut = 0; cut <= strlen(good); cut++) {
        for (int gz = 0; gz < 2; gz++) {
            const char *p = tdu_write(tmp, gz ? "cut.csv.gz" : "cut.csv", good, cut, gz);
            dl4c_status st = dl4c_csv_load(p, NULL, &ds);
            if (st == DL4C_OK) dl4c_dataset_free(ds);
            else assert_int_equal(st, DL4C_ERR_FORMAT);
        }
    }
    /* a long line (bigger than the reader's first buffer) */
    size_t big = 200000;
    char *line = malloc(big * 2 + 16);
    size_t u = 0;
    for (size_t i = 0; i < big; i++) { line[u++] = '1'; line[u++] = ','; }
    memcpy(line + u, "0\n", 3);
    const char *pl = tdu_write_str(tmp, "long.csv", line);
    free(line);
    assert_int_equal(dl4c_csv_load(pl, NULL, &ds), DL4C_OK);
    assert_int_equal(ds->features->shape[1], (int64_t)big);
    dl4c_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_bad_csv),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
