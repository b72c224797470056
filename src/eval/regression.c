/* dl4c eval: regression evaluation (DL4J's RegressionEvaluation) from per-column sums.
 * The state is one flat double array, so merging is adding arrays and an all-reduce of
 * dl4c_regeval_sums() across workers is the merged evaluation. */
#define _GNU_SOURCE
#include "dl4c/eval.h"
#include "eval/json_util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blocks of the sums array after the count, each C doubles long. */
enum { SUM_ERR = 0, SUM_SQ_ERR, SUM_ABS_ERR, SUM_LABEL, SUM_SQ_LABEL, SUM_BLOCKS };

/* Significant decimals and column width of stats(), DL4J's DEFAULT_PRECISION and precision+10. */
#define REGEVAL_PRECISION 5
#define REGEVAL_COLUMN_WIDTH (REGEVAL_PRECISION + 10)

struct dl4c_regeval {
    int c;            /* number of columns */
    double *sums;     /* 1 + SUM_BLOCKS * c: [count][sum e][sum e^2][sum |e|][sum y][sum y^2] */
    char **names;     /* c malloc'd column names, or NULL for "col_<i>" */
};

static size_t sums_len(int c) { return 1 + (size_t)SUM_BLOCKS * (size_t)c; }

/* The `block` sum of column `col`. */
static double *sum_at(const dl4c_regeval *ev, int block, int col) {
    return ev->sums + 1 + (size_t)block * ev->c + col;
}

dl4c_status dl4c_regeval_new(int n_columns, dl4c_regeval **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_new: out is NULL");
    *out = NULL;
    if (n_columns < 1)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_new: n_columns must be >= 1, got %d",
                          n_columns);
    dl4c_regeval *ev = calloc(1, sizeof *ev);
    if (!ev) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_new: out of memory");
    ev->c = n_columns;
    ev->sums = calloc(sums_len(n_columns), sizeof *ev->sums);
    if (!ev->sums) {
        free(ev);
        return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_new: out of memory");
    }
    *out = ev;
    return DL4C_OK;
}

static void names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

void dl4c_regeval_free(dl4c_regeval *ev) {
    if (!ev) return;
    names_free(ev->names, ev->c);
    free(ev->sums);
    free(ev);
}

void dl4c_regeval_reset(dl4c_regeval *ev) {
    DL4C_ASSERT(ev);
    memset(ev->sums, 0, sums_len(ev->c) * sizeof *ev->sums);
}

dl4c_status dl4c_regeval_set_labels(dl4c_regeval *ev, const char *const *names, int n) {
    if (!ev) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_set_labels: ev is NULL");
    if (!names) {
        names_free(ev->names, ev->c);
        ev->names = NULL;
        return DL4C_OK;
    }
    if (n != ev->c)
        return dl4c_error(DL4C_ERR_SHAPE, "dl4c_regeval_set_labels: %d names for %d columns", n,
                          ev->c);
    char **copy = calloc((size_t)n, sizeof *copy);
    for (int i = 0; copy && i < n; i++) {
        copy[i] = strdup(names[i] ? names[i] : "");
        if (!copy[i]) {
            names_free(copy, n);
            copy = NULL;
        }
    }
    if (!copy) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_set_labels: out of memory");
    names_free(ev->names, ev->c);
    ev->names = copy;
    return DL4C_OK;
}

dl4c_status dl4c_regeval_add(dl4c_regeval *ev, const float *preds, const float *labels, int n) {
    if (!ev) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_add: ev is NULL");
    if (n < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_add: n must be >= 0, got %d", n);
    if (n == 0) return DL4C_OK;
    if (!preds || !labels)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_add: preds or labels is NULL");
    const int c = ev->c;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            const size_t at = (size_t)i * c + j;
            if (isnan(preds[at]) || isnan(labels[at]))
                return dl4c_error(DL4C_ERR_NUMERIC, "dl4c_regeval_add: NaN in %s at row %d, column %d",
                                  isnan(preds[at]) ? "predictions" : "labels", i, j);
        }
    /* Row by row in order, so the sums do not depend on how a caller batches its rows. */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            const double y = labels[(size_t)i * c + j];
            const double e = (double)preds[(size_t)i * c + j] - y;
            *sum_at(ev, SUM_ERR, j) += e;
            *sum_at(ev, SUM_SQ_ERR, j) += e * e;
            *sum_at(ev, SUM_ABS_ERR, j) += fabs(e);
            *sum_at(ev, SUM_LABEL, j) += y;
            *sum_at(ev, SUM_SQ_LABEL, j) += y * y;
        }
    ev->sums[0] += n;
    return DL4C_OK;
}

dl4c_status dl4c_regeval_merge(dl4c_regeval *dst, const dl4c_regeval *src) {
    if (!dst || !src) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_merge: NULL evaluation");
    if (dst->c != src->c)
        return dl4c_error(DL4C_ERR_SHAPE,
                          "dl4c_regeval_merge: cannot merge an evaluation of %d columns into one of %d",
                          src->c, dst->c);
    if (!dst->names && src->names) {
        dl4c_status s = dl4c_regeval_set_labels(dst, (const char *const *)src->names, src->c);
        if (s != DL4C_OK) return s;
    }
    for (size_t i = 0; i < sums_len(dst->c); i++) dst->sums[i] += src->sums[i];
    return DL4C_OK;
}

double *dl4c_regeval_sums(dl4c_regeval *ev, size_t *len) {
    DL4C_ASSERT(ev);
    if (len) *len = sums_len(ev->c);
    return ev->sums;
}

dl4c_status dl4c_regeval_from_sums(int n_columns, const double *sums, dl4c_regeval **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_from_sums: out is NULL");
    *out = NULL;
    if (!sums) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_from_sums: sums is NULL");
    if (!(sums[0] >= 0.0) || sums[0] != floor(sums[0]))
        return dl4c_error(DL4C_ERR_INVALID_ARG,
                          "dl4c_regeval_from_sums: count %g is not a non-negative integer", sums[0]);
    dl4c_regeval *ev;
    dl4c_status s = dl4c_regeval_new(n_columns, &ev);
    if (s != DL4C_OK) return s;
    memcpy(ev->sums, sums, sums_len(n_columns) * sizeof *sums);
    *out = ev;
    return DL4C_OK;
}

/* ---- metrics ---- */

int dl4c_regeval_n_columns(const dl4c_regeval *ev) {
    DL4C_ASSERT(ev);
    return ev->c;
}

int64_t dl4c_regeval_examples(const dl4c_regeval *ev) {
    DL4C_ASSERT(ev);
    return (int64_t)ev->sums[0];
}

/* sum / n; NaN with no examples. */
static double mean_of(const dl4c_regeval *ev, int block, int col) {
    DL4C_ASSERT(ev && col >= 0 && col < ev->c);
    return ev->sums[0] > 0 ? *sum_at(ev, block, col) / ev->sums[0] : NAN;
}

double dl4c_regeval_mse(const dl4c_regeval *ev, int col) { return mean_of(ev, SUM_SQ_ERR, col); }
double dl4c_regeval_mae(const dl4c_regeval *ev, int col) { return mean_of(ev, SUM_ABS_ERR, col); }
double dl4c_regeval_rmse(const dl4c_regeval *ev, int col) { return sqrt(dl4c_regeval_mse(ev, col)); }
double dl4c_regeval_mean_error(const dl4c_regeval *ev, int col) { return mean_of(ev, SUM_ERR, col); }

/* Total sum of squares of the labels about their mean: sum y^2 - (sum y)^2 / n. */
static double sst_of(const dl4c_regeval *ev, int col) {
    const double n = ev->sums[0], sy = *sum_at(ev, SUM_LABEL, col);
    return *sum_at(ev, SUM_SQ_LABEL, col) - sy * sy / n;
}

double dl4c_regeval_rse(const dl4c_regeval *ev, int col) {
    DL4C_ASSERT(ev && col >= 0 && col < ev->c);
    if (!(ev->sums[0] > 0)) return NAN;
    const double sst = sst_of(ev, col);
    return sst > 0 ? *sum_at(ev, SUM_SQ_ERR, col) / sst : INFINITY;
}

double dl4c_regeval_r2(const dl4c_regeval *ev, int col) {
    DL4C_ASSERT(ev && col >= 0 && col < ev->c);
    if (!(ev->sums[0] > 0)) return NAN;
    const double sst = sst_of(ev, col);
    return sst > 0 ? 1.0 - *sum_at(ev, SUM_SQ_ERR, col) / sst : NAN;
}

/* ---- stats() text and JSON ---- */

/* Writes column `col`'s name into buf (the set name, or DL4J's "col_<i>"). */
static const char *column_name(const dl4c_regeval *ev, int col, char *buf, size_t size) {
    if (ev->names) return ev->names[col];
    snprintf(buf, size, "col_%d", col);
    return buf;
}

/* A value as Java's "%-15.5e" prints it (NaN and Infinity spelled as Java does). */
static void put_e(FILE *f, double v) {
    if (isnan(v)) fprintf(f, "%-*s", REGEVAL_COLUMN_WIDTH, "NaN");
    else if (isinf(v)) fprintf(f, "%-*s", REGEVAL_COLUMN_WIDTH, v > 0 ? "Infinity" : "-Infinity");
    else fprintf(f, "%-*.*e", REGEVAL_COLUMN_WIDTH, REGEVAL_PRECISION, v);
}

dl4c_status dl4c_regeval_stats(const dl4c_regeval *ev, char **out) {
    if (!ev || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_stats: NULL argument");
    *out = NULL;
    char name[32];
    int widest = 0;
    for (int j = 0; j < ev->c; j++) {
        const int len = (int)strlen(column_name(ev, j, name, sizeof name));
        if (len > widest) widest = len;
    }
    const int label_width = widest + 5;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_stats: out of memory");
    static const char *const header[] = {"MSE", "MAE", "RMSE", "RSE", "R^2"};
    fprintf(f, "%-*s", label_width, "Column");
    for (size_t h = 0; h < sizeof header / sizeof header[0]; h++)
        fprintf(f, "%-*s", REGEVAL_COLUMN_WIDTH, header[h]);
    fputc('\n', f);
    for (int j = 0; j < ev->c; j++) {
        fprintf(f, "%-*s", label_width, column_name(ev, j, name, sizeof name));
        put_e(f, dl4c_regeval_mse(ev, j));
        put_e(f, dl4c_regeval_mae(ev, j));
        put_e(f, dl4c_regeval_rmse(ev, j));
        put_e(f, dl4c_regeval_rse(ev, j));
        put_e(f, dl4c_regeval_r2(ev, j));
        fputc('\n', f);
    }
    const bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_stats: could not build the text");
    }
    *out = buf;
    return DL4C_OK;
}


dl4c_status dl4c_regeval_to_json(const dl4c_regeval *ev, char **out) {
    if (!ev || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_regeval_to_json: NULL argument");
    *out = NULL;
    char name[32];
    json_t *root = json_object();
    json_t *columns = json_array();
    bool ok = root && columns;
    for (int j = 0; ok && j < ev->c; j++) {
        json_t *col = json_object();
        ok = json_array_append_new(columns, col) == 0;
        ok = attach(ok, col, "name", json_string(column_name(ev, j, name, sizeof name)));
        ok = attach(ok, col, "mse", json_num(dl4c_regeval_mse(ev, j)));
        ok = attach(ok, col, "mae", json_num(dl4c_regeval_mae(ev, j)));
        ok = attach(ok, col, "rmse", json_num(dl4c_regeval_rmse(ev, j)));
        ok = attach(ok, col, "rse", json_num(dl4c_regeval_rse(ev, j)));
        ok = attach(ok, col, "r2", json_num(dl4c_regeval_r2(ev, j)));
    }
    ok = attach(ok, root, "n_columns", json_integer(ev->c));
    ok = attach(ok, root, "examples", json_integer(dl4c_regeval_examples(ev)));
    ok = attach(ok, root, "columns", columns);
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
    const size_t n = ok ? json_dumpb(root, NULL, 0, flags) : 0;
    char *text = n ? malloc(n + 1) : NULL;
    if (text && json_dumpb(root, text, n, flags) == n) {
        text[n] = '\0';
    } else {
        free(text);
        text = NULL;
    }
    json_decref(root);
    if (!text) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_regeval_to_json: could not build the JSON");
    *out = text;
    return DL4C_OK;
}
