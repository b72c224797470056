/* dl4c eval: classification evaluation (DL4J's Evaluation) over an int64 confusion matrix.
 * Everything (tp, fp, fn, examples) is derived from the K*K counts, so merging is adding
 * counts and a merged evaluation is bit-identical to the one of the whole data set. */
#define _GNU_SOURCE
#include "dl4c/eval.h"
#include "eval/json_util.h"

#include <jansson.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* DL4J prints the confusion matrix only up to this many classes (CONFUSION_PRINT_MAX_CLASSES). */
#define EVAL_CONFUSION_PRINT_MAX 20

struct dl4c_eval {
    int k;            /* number of classes */
    int64_t *counts;  /* [k][k] row-major: counts[actual * k + predicted] */
    char **labels;    /* k malloc'd class names, or NULL when none were set */
};

static const char *const metric_names[] = {
    [DL4C_EVAL_PRECISION] = "precision",
    [DL4C_EVAL_RECALL] = "recall",
    [DL4C_EVAL_F1] = "f1",
};
_Static_assert(sizeof metric_names / sizeof metric_names[0] == DL4C_EVAL_METRIC_COUNT,
               "metric_names must name every dl4c_eval_metric");

/* ---- life cycle ---- */

dl4c_status dl4c_eval_new(int n_classes, dl4c_eval **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_new: out is NULL");
    *out = NULL;
    if (n_classes < 1)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_new: n_classes must be >= 1, got %d",
                          n_classes);
    dl4c_eval *ev = calloc(1, sizeof *ev);
    if (!ev) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_new: out of memory");
    ev->k = n_classes;
    ev->counts = calloc((size_t)n_classes * (size_t)n_classes, sizeof *ev->counts);
    if (!ev->counts) {
        free(ev);
        return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_new: out of memory for %d x %d counts",
                          n_classes, n_classes);
    }
    *out = ev;
    return DL4C_OK;
}

static void labels_free(char **labels, int n) {
    if (!labels) return;
    for (int i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

void dl4c_eval_free(dl4c_eval *ev) {
    if (!ev) return;
    labels_free(ev->labels, ev->k);
    free(ev->counts);
    free(ev);
}

void dl4c_eval_reset(dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    memset(ev->counts, 0, (size_t)ev->k * (size_t)ev->k * sizeof *ev->counts);
}

/* Copies names[0..n) into a new array; NULL on allocation failure. */
static char **labels_copy(const char *const *names, int n) {
    char **copy = calloc((size_t)n, sizeof *copy);
    if (!copy) return NULL;
    for (int i = 0; i < n; i++) {
        copy[i] = strdup(names[i] ? names[i] : "");
        if (!copy[i]) {
            labels_free(copy, n);
            return NULL;
        }
    }
    return copy;
}

dl4c_status dl4c_eval_set_labels(dl4c_eval *ev, const char *const *names, int n) {
    if (!ev) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_set_labels: ev is NULL");
    if (!names) {
        labels_free(ev->labels, ev->k);
        ev->labels = NULL;
        return DL4C_OK;
    }
    if (n != ev->k)
        return dl4c_error(DL4C_ERR_SHAPE, "dl4c_eval_set_labels: %d names for %d classes", n,
                          ev->k);
    char **copy = labels_copy(names, n);
    if (!copy) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_set_labels: out of memory");
    labels_free(ev->labels, ev->k);
    ev->labels = copy;
    return DL4C_OK;
}

const char *dl4c_eval_label(const dl4c_eval *ev, int k) {
    DL4C_ASSERT(ev && k >= 0 && k < ev->k);
    return ev->labels ? ev->labels[k] : NULL;
}

/* ---- adding examples ---- */

/* Index of the first maximum of x[0..k). */
static int argmax_first(const float *x, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

dl4c_status dl4c_eval_add(dl4c_eval *ev, const float *probs, const float *labels, int n) {
    if (!ev) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_add: ev is NULL");
    if (n < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_add: n must be >= 0, got %d", n);
    if (n == 0) return DL4C_OK;
    if (!probs || !labels)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_add: probs or labels is NULL");
    const int k = ev->k;
    /* Check first, so a bad batch adds nothing. */
    for (int64_t i = 0; i < (int64_t)n * k; i++) {
        if (isnan(probs[i]))
            return dl4c_error(DL4C_ERR_NUMERIC, "dl4c_eval_add: NaN in predictions at row %" PRId64
                              ", class %" PRId64, i / k, i % k);
        if (isnan(labels[i]))
            return dl4c_error(DL4C_ERR_NUMERIC, "dl4c_eval_add: NaN in labels at row %" PRId64
                              ", class %" PRId64, i / k, i % k);
    }
    for (int i = 0; i < n; i++) {
        const int actual = argmax_first(labels + (size_t)i * k, k);
        const int predicted = argmax_first(probs + (size_t)i * k, k);
        ev->counts[(size_t)actual * k + predicted]++;
    }
    return DL4C_OK;
}

dl4c_status dl4c_eval_add_index(dl4c_eval *ev, int actual, int predicted) {
    if (!ev) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_add_index: ev is NULL");
    if (actual < 0 || actual >= ev->k || predicted < 0 || predicted >= ev->k)
        return dl4c_error(DL4C_ERR_INVALID_ARG,
                          "dl4c_eval_add_index: class out of range (actual %d, predicted %d, "
                          "%d classes)", actual, predicted, ev->k);
    ev->counts[(size_t)actual * ev->k + predicted]++;
    return DL4C_OK;
}

/* ---- merging and raw counts ---- */

dl4c_status dl4c_eval_merge(dl4c_eval *dst, const dl4c_eval *src) {
    if (!dst || !src) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_merge: NULL evaluation");
    if (dst->k != src->k)
        return dl4c_error(DL4C_ERR_SHAPE,
                          "dl4c_eval_merge: cannot merge an evaluation of %d classes into one of %d",
                          src->k, dst->k);
    if (!dst->labels && src->labels) {
        dl4c_status s = dl4c_eval_set_labels(dst, (const char *const *)src->labels, src->k);
        if (s != DL4C_OK) return s;
    }
    const size_t kk = (size_t)dst->k * (size_t)dst->k;
    for (size_t i = 0; i < kk; i++) dst->counts[i] += src->counts[i];
    return DL4C_OK;
}

int64_t *dl4c_eval_counts(dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    return ev->counts;
}

dl4c_status dl4c_eval_from_counts(int n_classes, const int64_t *counts, dl4c_eval **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_from_counts: out is NULL");
    *out = NULL;
    if (!counts) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_from_counts: counts is NULL");
    dl4c_eval *ev;
    dl4c_status s = dl4c_eval_new(n_classes, &ev);
    if (s != DL4C_OK) return s;
    const size_t kk = (size_t)n_classes * (size_t)n_classes;
    for (size_t i = 0; i < kk; i++) {
        if (counts[i] < 0) {
            dl4c_eval_free(ev);
            return dl4c_error(DL4C_ERR_INVALID_ARG,
                              "dl4c_eval_from_counts: negative count %" PRId64 " at [%zu][%zu]",
                              counts[i], i / (size_t)n_classes, i % (size_t)n_classes);
        }
        ev->counts[i] = counts[i];
    }
    *out = ev;
    return DL4C_OK;
}

/* ---- metrics ---- */

int dl4c_eval_n_classes(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    return ev->k;
}

int64_t dl4c_eval_examples(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    int64_t n = 0;
    for (size_t i = 0; i < (size_t)ev->k * (size_t)ev->k; i++) n += ev->counts[i];
    return n;
}

int64_t dl4c_eval_count(const dl4c_eval *ev, int actual, int predicted) {
    DL4C_ASSERT(ev && actual >= 0 && actual < ev->k && predicted >= 0 && predicted < ev->k);
    return ev->counts[(size_t)actual * ev->k + predicted];
}

static int64_t tp_of(const dl4c_eval *ev, int c) { return ev->counts[(size_t)c * ev->k + c]; }

/* Predicted as c but another class: column sum minus the diagonal. */
static int64_t fp_of(const dl4c_eval *ev, int c) {
    int64_t s = 0;
    for (int a = 0; a < ev->k; a++)
        if (a != c) s += ev->counts[(size_t)a * ev->k + c];
    return s;
}

/* Actually c but predicted as another class: row sum minus the diagonal. */
static int64_t fn_of(const dl4c_eval *ev, int c) {
    int64_t s = 0;
    for (int p = 0; p < ev->k; p++)
        if (p != c) s += ev->counts[(size_t)c * ev->k + p];
    return s;
}

/* Per-class metrics with `edge` returned for 0/0 (DL4J's precision(c, edge) and friends). */
static double precision_edge(const dl4c_eval *ev, int c, double edge) {
    const int64_t tp = tp_of(ev, c), fp = fp_of(ev, c);
    return tp + fp == 0 ? edge : (double)tp / (double)(tp + fp);
}

static double recall_edge(const dl4c_eval *ev, int c, double edge) {
    const int64_t tp = tp_of(ev, c), fn = fn_of(ev, c);
    return tp + fn == 0 ? edge : (double)tp / (double)(tp + fn);
}

static double f1_edge(const dl4c_eval *ev, int c, double edge) {
    const double p = precision_edge(ev, c, -1.0), r = recall_edge(ev, c, -1.0);
    if (p == -1.0 || r == -1.0) return edge;
    if (p == 0.0 || r == 0.0) return 0.0;
    return 2.0 * p * r / (p + r);
}

static double metric_edge(const dl4c_eval *ev, dl4c_eval_metric m, int c, double edge) {
    switch (m) {
    case DL4C_EVAL_PRECISION: return precision_edge(ev, c, edge);
    case DL4C_EVAL_RECALL: return recall_edge(ev, c, edge);
    case DL4C_EVAL_F1: return f1_edge(ev, c, edge);
    default: DL4C_ASSERT(!"unknown dl4c_eval_metric"); return 0.0;
    }
}

/* Mean over the classes where the metric is defined (not 0/0); NaN if there is none. */
static double macro(const dl4c_eval *ev, dl4c_eval_metric m) {
    double sum = 0.0;
    int count = 0;
    for (int c = 0; c < ev->k; c++) {
        const double v = metric_edge(ev, m, c, -1.0);
        if (v != -1.0) {
            sum += v;
            count++;
        }
    }
    return sum / count;   /* count 0: 0/0 = NaN, as DL4J */
}

double dl4c_eval_accuracy(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    const int64_t n = dl4c_eval_examples(ev);
    if (n == 0) return 0.0;
    int64_t correct = 0;
    for (int c = 0; c < ev->k; c++) correct += tp_of(ev, c);
    return (double)correct / (double)n;
}

double dl4c_eval_precision(const dl4c_eval *ev, int k) {
    DL4C_ASSERT(ev && k >= 0 && k < ev->k);
    return precision_edge(ev, k, 0.0);
}

double dl4c_eval_recall(const dl4c_eval *ev, int k) {
    DL4C_ASSERT(ev && k >= 0 && k < ev->k);
    return recall_edge(ev, k, 0.0);
}

double dl4c_eval_f1(const dl4c_eval *ev, int k) {
    DL4C_ASSERT(ev && k >= 0 && k < ev->k);
    return f1_edge(ev, k, 0.0);
}

double dl4c_eval_precision_macro(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    return dl4c_eval_examples(ev) == 0 ? 0.0 : macro(ev, DL4C_EVAL_PRECISION);
}

double dl4c_eval_recall_macro(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    return dl4c_eval_examples(ev) == 0 ? 0.0 : macro(ev, DL4C_EVAL_RECALL);
}

double dl4c_eval_f1_macro(const dl4c_eval *ev) {
    DL4C_ASSERT(ev);
    return dl4c_eval_examples(ev) == 0 ? NAN : macro(ev, DL4C_EVAL_F1);
}

int dl4c_eval_excluded(const dl4c_eval *ev, dl4c_eval_metric m) {
    DL4C_ASSERT(ev && m >= 0 && m < DL4C_EVAL_METRIC_COUNT);
    int n = 0;
    for (int c = 0; c < ev->k; c++)
        if (metric_edge(ev, m, c, -1.0) == -1.0) n++;
    return n;
}

/* ---- stats() text ---- */

/* Name of class c as DL4J resolves it: the label if set, else the index. */
static void put_class(FILE *f, const dl4c_eval *ev, int c) {
    if (ev->labels) fputs(ev->labels[c], f);
    else fprintf(f, "%d", c);
}

/* A double as Java's DecimalFormat("0.0000") prints it (NaN/Infinity as String.valueOf). */
static void put_4dp(FILE *f, double v) {
    if (isnan(v)) fputs("NaN", f);
    else if (isinf(v)) fputs(v > 0 ? "Infinity" : "-Infinity", f);
    else fprintf(f, "%.4f", v);
}

/* DL4J's warningHelper: lists the classes whose metric is 0/0. */
static void put_warning(FILE *f, const int *classes, int n, const char *metric) {
    const char *was = n == 1 ? "was" : "were";
    fprintf(f, "Warning: %d class%s %s never predicted by the model and %s excluded from average "
               "%s\nClasses excluded from average %s: [", n, n == 1 ? "" : "es", was, was,
            metric, metric);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", classes[i]);
    fputs("]\n", f);
}

/* "\t(N classes excluded from average)" after a score line, for more than 2 classes. */
static void put_excluded(FILE *f, const dl4c_eval *ev, dl4c_eval_metric m) {
    const int ex = dl4c_eval_excluded(ev, m);
    if (ev->k > 2 && ex > 0) fprintf(f, "\t(%d class%s excluded from average)", ex, ex > 1 ? "es" : "");
}

/* Decimal digits of v >= 0. */
static int digits_of(int64_t v) {
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* The confusion matrix as DL4J's Evaluation.confusionMatrix(): a header of class indices,
 * a divider, and one row per actual class ending "| a = name". Column width is one more
 * than the widest number (DL4J computes ceil(log10(max)), one digit short at powers of 10). */
static void put_confusion(FILE *f, const dl4c_eval *ev) {
    const int k = ev->k;
    int64_t widest = k - 1;
    for (size_t i = 0; i < (size_t)k * (size_t)k; i++)
        if (ev->counts[i] > widest) widest = ev->counts[i];
    const int w = digits_of(widest) + 1;
    for (int c = 0; c < k; c++) fprintf(f, "%*d", w, c);
    fputc('\n', f);
    for (int i = 0; i < w * k + 1; i++) fputc('-', f);
    fputc('\n', f);
    for (int a = 0; a < k; a++) {
        for (int p = 0; p < k; p++) fprintf(f, "%*" PRId64, w, ev->counts[(size_t)a * k + p]);
        fprintf(f, " | %d = ", a);
        put_class(f, ev, a);
        fputc('\n', f);
    }
    fputs("\nConfusion matrix format: Actual (rowClass) predicted as (columnClass) N times", f);
}

dl4c_status dl4c_eval_stats(const dl4c_eval *ev, char **out) {
    if (!ev || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_stats: NULL argument");
    *out = NULL;
    const int k = ev->k;
    char *buf = NULL;
    size_t len = 0;
    int *prec_warn = malloc((size_t)k * sizeof *prec_warn);
    int *rec_warn = malloc((size_t)k * sizeof *rec_warn);
    FILE *f = (prec_warn && rec_warn) ? open_memstream(&buf, &len) : NULL;
    if (!f) {
        free(prec_warn);
        free(rec_warn);
        return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_stats: out of memory");
    }

    /* DL4J 0.9's stats(): the non-zero confusion entries, one line each. */
    fputc('\n', f);
    int n_prec_warn = 0, n_rec_warn = 0;
    for (int a = 0; a < k; a++) {
        for (int p = 0; p < k; p++) {
            const int64_t count = ev->counts[(size_t)a * k + p];
            if (count == 0) continue;
            fputs("Examples labeled as ", f);
            put_class(f, ev, a);
            fputs(" classified by model as ", f);
            put_class(f, ev, p);
            fprintf(f, ": %" PRId64 " times\n", count);
        }
        if (tp_of(ev, a) == 0) {
            if (fp_of(ev, a) == 0) prec_warn[n_prec_warn++] = a;
            if (fn_of(ev, a) == 0) rec_warn[n_rec_warn++] = a;
        }
    }
    fputc('\n', f);
    if (n_prec_warn > 0) put_warning(f, prec_warn, n_prec_warn, "precision");
    if (n_rec_warn > 0) put_warning(f, rec_warn, n_rec_warn, "recall");
    free(prec_warn);
    free(rec_warn);

    fputs("\n==========================Scores========================================", f);
    fprintf(f, "\n # of classes:    %d", k);
    fputs("\n Accuracy:        ", f);
    put_4dp(f, dl4c_eval_accuracy(ev));
    fputs("\n Precision:       ", f);
    put_4dp(f, dl4c_eval_precision_macro(ev));
    put_excluded(f, ev, DL4C_EVAL_PRECISION);
    fputs("\n Recall:          ", f);
    put_4dp(f, dl4c_eval_recall_macro(ev));
    put_excluded(f, ev, DL4C_EVAL_RECALL);
    fputs("\n F1 Score:        ", f);
    put_4dp(f, dl4c_eval_f1_macro(ev));
    put_excluded(f, ev, DL4C_EVAL_F1);
    fprintf(f, "\nPrecision, recall & F1: macro-averaged (equally weighted avg. of %d classes)", k);
    fputs("\n========================================================================", f);

    /* The later DL4J's confusion matrix section. */
    if (k <= EVAL_CONFUSION_PRINT_MAX) {
        fputs("\n\n=========================Confusion Matrix=========================\n", f);
        put_confusion(f, ev);
    } else {
        fprintf(f, "\n\nNote: Confusion matrix not generated due to space requirements for %d "
                   "classes.", k);
    }
    fputs("\n==================================================================\n", f);

    const bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_stats: could not build the text");
    }
    *out = buf;
    return DL4C_OK;
}

/* ---- JSON ---- */


/* Dumps root into a malloc'd string (so the caller frees it with free(), whatever allocator
 * jansson was given); NULL on failure. */
static char *dump_malloc(const json_t *root) {
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
    const size_t n = json_dumpb(root, NULL, 0, flags);
    if (n == 0) return NULL;
    char *text = malloc(n + 1);
    if (!text) return NULL;
    if (json_dumpb(root, text, n, flags) != n) {
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

dl4c_status dl4c_eval_to_json(const dl4c_eval *ev, char **out) {
    if (!ev || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_eval_to_json: NULL argument");
    *out = NULL;
    const int k = ev->k;
    json_t *root = json_object();
    json_t *per[DL4C_EVAL_METRIC_COUNT] = {0};
    json_t *confusion = json_array();
    json_t *labels = ev->labels ? json_array() : NULL;
    bool ok = root && confusion && (labels || !ev->labels);
    for (int m = 0; m < DL4C_EVAL_METRIC_COUNT; m++) {
        per[m] = json_array();
        ok = ok && per[m];
    }
    for (int c = 0; ok && c < k; c++) {
        for (int m = 0; ok && m < DL4C_EVAL_METRIC_COUNT; m++)
            ok = json_array_append_new(per[m], json_num(metric_edge(ev, (dl4c_eval_metric)m, c, 0.0)))
                 == 0;
        json_t *row = json_array();
        ok = ok && json_array_append_new(confusion, row) == 0;
        for (int p = 0; ok && p < k; p++)
            ok = json_array_append_new(row, json_integer(ev->counts[(size_t)c * k + p])) == 0;
        if (ok && labels) ok = json_array_append_new(labels, json_string(ev->labels[c])) == 0;
    }
    ok = attach(ok, root, "n_classes", json_integer(k));
    ok = attach(ok, root, "examples", json_integer(dl4c_eval_examples(ev)));
    ok = attach(ok, root, "accuracy", json_num(dl4c_eval_accuracy(ev)));
    ok = attach(ok, root, "precision", json_num(dl4c_eval_precision_macro(ev)));
    ok = attach(ok, root, "recall", json_num(dl4c_eval_recall_macro(ev)));
    ok = attach(ok, root, "f1", json_num(dl4c_eval_f1_macro(ev)));
    char key[64];
    for (int m = 0; m < DL4C_EVAL_METRIC_COUNT; m++) {
        snprintf(key, sizeof key, "%s_per_class", metric_names[m]);
        ok = attach(ok, root, key, per[m]);
    }
    ok = attach(ok, root, "confusion", confusion);
    if (labels) ok = attach(ok, root, "labels", labels);
    char *text = ok ? dump_malloc(root) : NULL;
    json_decref(root);
    if (!text) return dl4c_error(DL4C_ERR_NOMEM, "dl4c_eval_to_json: could not build the JSON");
    *out = text;
    return DL4C_OK;
}
