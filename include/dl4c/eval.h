/* dl4c eval: classification and regression evaluation, like DL4J's Evaluation and
 * RegressionEvaluation. Every evaluation is a set of sums, so evaluations of shards merge
 * (add) into exactly the evaluation of the whole: workers evaluate their partitions and one
 * all-reduce of the flat count/sum arrays, or dl4c_*_merge, combines them.
 *
 * Classification (K classes, counts c[a][p] = examples of actual class a predicted as p):
 *   predicted = argmax(probs row), actual = argmax(labels row); first maximum wins
 *   tp_k = c[k][k];  fp_k = sum_a c[a][k] - tp_k;  fn_k = sum_p c[k][p] - tp_k
 *   accuracy     = sum_k tp_k / examples                                (0 with no examples)
 *   precision_k  = tp_k / (tp_k + fp_k)          (0/0: class never predicted, reported as 0)
 *   recall_k     = tp_k / (tp_k + fn_k)          (0/0: class never in the labels, reported as 0)
 *   f1_k         = 2 p r / (p + r)               (0 if p or r is 0; reported 0 if p or r is 0/0)
 *   macro metric = mean over the classes where it is not 0/0 (DL4J: such classes are excluded
 *                  and stats() warns about them); precision/recall are 0 with no examples,
 *                  f1 is NaN with no examples.
 *   Unlike DL4J 0.9, f1() is the macro average for K = 2 too (DL4J reports class 1 there).
 *
 * Regression (C columns, per column over the n examples, e = prediction - label, y = label):
 *   mse = sum e^2 / n;  mae = sum |e| / n;  rmse = sqrt(mse);  mean_error = sum e / n
 *   sst = sum y^2 - (sum y)^2 / n;  rse = sum e^2 / sst;  r2 = 1 - rse   (coefficient of
 *   determination; sst <= 0, constant labels: rse = +inf, r2 = NaN).  No examples: all NaN.
 *
 * Strings returned through `char **out` are allocated with malloc and freed by the caller
 * with free(). An evaluation is not shared between threads without the caller's locking. */
#ifndef DL4C_EVAL_H
#define DL4C_EVAL_H

#include "dl4c/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================= classification ======================= */

typedef struct dl4c_eval dl4c_eval;

/* A new, empty evaluation of n_classes >= 1 classes (DL4C_ERR_INVALID_ARG otherwise). */
dl4c_status dl4c_eval_new(int n_classes, dl4c_eval **out);
void dl4c_eval_free(dl4c_eval *ev);          /* NULL is a no-op */
/* Forgets every count (class names are kept). */
void dl4c_eval_reset(dl4c_eval *ev);

/* Optional class names used by stats() ("Examples labeled as cat ..."); names[0..n) are
 * copied, n must equal the number of classes (DL4C_ERR_SHAPE otherwise); NULL clears them. */
dl4c_status dl4c_eval_set_labels(dl4c_eval *ev, const char *const *names, int n);
/* Name of class k (the set label or NULL when none was set). */
const char *dl4c_eval_label(const dl4c_eval *ev, int k);

/* Adds n examples: probs and labels are [n, K] row-major; labels one-hot (argmax is taken).
 * A NaN in probs gives DL4C_ERR_NUMERIC and adds nothing. */
dl4c_status dl4c_eval_add(dl4c_eval *ev, const float *probs, const float *labels, int n);
/* Adds one example given as class indices. */
dl4c_status dl4c_eval_add_index(dl4c_eval *ev, int actual, int predicted);

/* dst += src. Different class counts give DL4C_ERR_SHAPE. dst takes src's class names
 * when it has none. */
dl4c_status dl4c_eval_merge(dl4c_eval *dst, const dl4c_eval *src);

/* The K*K confusion counts, row-major [actual][predicted], writable in place: an all-reduce
 * (sum) of these arrays across workers gives the merged evaluation. */
int64_t *dl4c_eval_counts(dl4c_eval *ev);
/* A new evaluation holding counts[0..K*K) (as laid out by dl4c_eval_counts). Negative
 * counts give DL4C_ERR_INVALID_ARG. */
dl4c_status dl4c_eval_from_counts(int n_classes, const int64_t *counts, dl4c_eval **out);

int dl4c_eval_n_classes(const dl4c_eval *ev);
int64_t dl4c_eval_examples(const dl4c_eval *ev);
/* Examples of actual class `actual` predicted as `predicted`. */
int64_t dl4c_eval_count(const dl4c_eval *ev, int actual, int predicted);

double dl4c_eval_accuracy(const dl4c_eval *ev);
double dl4c_eval_precision(const dl4c_eval *ev, int k);   /* per class; 0/0 -> 0 */
double dl4c_eval_recall(const dl4c_eval *ev, int k);
double dl4c_eval_f1(const dl4c_eval *ev, int k);
double dl4c_eval_precision_macro(const dl4c_eval *ev);
double dl4c_eval_recall_macro(const dl4c_eval *ev);
double dl4c_eval_f1_macro(const dl4c_eval *ev);

/* Which macro average an exclusion count is asked for. */
typedef enum dl4c_eval_metric {
    DL4C_EVAL_PRECISION = 0,
    DL4C_EVAL_RECALL,
    DL4C_EVAL_F1,
    DL4C_EVAL_METRIC_COUNT
} dl4c_eval_metric;
/* Number of classes left out of that macro average because the metric is 0/0 for them. */
int dl4c_eval_excluded(const dl4c_eval *ev, dl4c_eval_metric m);

/* The report as DL4J's Evaluation.stats() prints it: "Examples labeled as A classified by
 * model as P: N times" lines, warnings about classes excluded from the averages, the
 * "Scores" block (4 decimals), then the confusion matrix (rows = actual; left out with a
 * note above 20 classes, as DL4J does). Ends with a newline. Free *out with free(). */
dl4c_status dl4c_eval_stats(const dl4c_eval *ev, char **out);

/* One JSON object: n_classes, examples, accuracy, precision, recall, f1 (macro),
 * precision_per_class, recall_per_class, f1_per_class, confusion (array of rows, rows =
 * actual), and labels when set. Undefined values (NaN) are null. Free *out with free(). */
dl4c_status dl4c_eval_to_json(const dl4c_eval *ev, char **out);

/* ======================= regression ======================= */

typedef struct dl4c_regeval dl4c_regeval;

/* A new, empty regression evaluation of n_columns >= 1 columns. */
dl4c_status dl4c_regeval_new(int n_columns, dl4c_regeval **out);
void dl4c_regeval_free(dl4c_regeval *ev);    /* NULL is a no-op */
void dl4c_regeval_reset(dl4c_regeval *ev);

/* Optional column names for stats() (default "col_0", "col_1", ...); n must equal the
 * number of columns; NULL restores the defaults. */
dl4c_status dl4c_regeval_set_labels(dl4c_regeval *ev, const char *const *names, int n);

/* Adds n examples: preds and labels are [n, C] row-major. NaN gives DL4C_ERR_NUMERIC and
 * adds nothing. */
dl4c_status dl4c_regeval_add(dl4c_regeval *ev, const float *preds, const float *labels, int n);

/* dst += src; different column counts give DL4C_ERR_SHAPE. */
dl4c_status dl4c_regeval_merge(dl4c_regeval *dst, const dl4c_regeval *src);

/* The sums, writable in place for an all-reduce (sum), *len = 1 + 5*C doubles laid out as
 * [count][sum e: C][sum e^2: C][sum |e|: C][sum y: C][sum y^2: C]. */
double *dl4c_regeval_sums(dl4c_regeval *ev, size_t *len);
/* A new evaluation from sums laid out as above (1 + 5*n_columns doubles). */
dl4c_status dl4c_regeval_from_sums(int n_columns, const double *sums, dl4c_regeval **out);

int dl4c_regeval_n_columns(const dl4c_regeval *ev);
int64_t dl4c_regeval_examples(const dl4c_regeval *ev);
double dl4c_regeval_mse(const dl4c_regeval *ev, int col);
double dl4c_regeval_mae(const dl4c_regeval *ev, int col);
double dl4c_regeval_rmse(const dl4c_regeval *ev, int col);
double dl4c_regeval_rse(const dl4c_regeval *ev, int col);
double dl4c_regeval_r2(const dl4c_regeval *ev, int col);
double dl4c_regeval_mean_error(const dl4c_regeval *ev, int col);

/* DL4J's RegressionEvaluation.stats() table: a header "Column MSE MAE RMSE RSE R^2" and one
 * row per column, values as %.5e in 15-wide columns. Free *out with free(). */
dl4c_status dl4c_regeval_stats(const dl4c_regeval *ev, char **out);

/* {"n_columns", "examples", "columns": [{"name", "mse", "mae", "rmse", "rse", "r2"}]};
 * non-finite values are null. Free *out with free(). */
dl4c_status dl4c_regeval_to_json(const dl4c_regeval *ev, char **out);

#ifdef __cplusplus
}
#endif
#endif
