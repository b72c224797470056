/* dl4c data: datasets, readers (IDX for MNIST / Fashion-MNIST, CSV), seeded shuffling and
 * partitioning, and a minibatch iterator with an optional prefetch thread (DataVec +
 * DataSetIterator in the seed).
 *
 *   dl4c_dataset *train = NULL, *test = NULL;
 *   if (dl4c_mnist_dir_load("/usr/share/datasets/fashion-mnist", &train, &test)) ... error
 *   int64_t *order = NULL;
 *   dl4c_shuffle_indices(train->features->shape[0], seed, epoch, &order);
 *   dl4c_batch_iter *it = NULL;
 *   dl4c_batch_iter_new(train, order, train->features->shape[0], 64, 2, &it);
 *   for (dl4c_batch b; dl4c_batch_iter_next(it, &b);)  ... b.x [b.n, 1, 28, 28], b.y [b.n, 10]
 *   dl4c_batch_iter_free(it); dl4c_free(order); dl4c_dataset_free(train);
 *
 * Every random order is a pure function of (seed, epoch): the same on threads, MPI ranks or
 * after a restart. Errors: DL4C_ERR_IO for a missing or unreadable file, DL4C_ERR_FORMAT for
 * bad content (the message names the file and the place), DL4C_ERR_INVALID_ARG for
 * impossible arguments, DL4C_ERR_NOMEM. On failure nothing is returned in *out (NULL). */
#ifndef DL4C_DATA_H
#define DL4C_DATA_H

#include "dl4c/core.h"
#include "dl4c/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Datasets ---- */

typedef struct dl4c_dataset {
    dl4c_tensor *features;   /* [N, C, H, W] for images (IDX: [N, 1, 28, 28]) or [N, F] for CSV */
    dl4c_tensor *labels;     /* [N, K]: one-hot for classification, targets for regression */
    int n_classes;           /* K for classification, 0 for regression */
} dl4c_dataset;

/* Wraps two tensors (ownership passes to the dataset, also on failure) after checking that
 * they have the same number of rows, labels are 2-D, and n_classes is 0 or labels' width. */
dl4c_status dl4c_dataset_new(dl4c_tensor *features, dl4c_tensor *labels, int n_classes,
                             dl4c_dataset **out);
/* Number of examples (rows of features). */
int64_t dl4c_dataset_count(const dl4c_dataset *ds);
/* Frees the dataset and its tensors; NULL is a no-op. */
void dl4c_dataset_free(dl4c_dataset *ds);

/* ---- IDX (MNIST, Fashion-MNIST) ----
 * Images: magic 0x00000803 (unsigned bytes, 3 dims: N, H, W) -> features [N, 1, H, W] with
 * pixels scaled to [0, 1] (x / 255). Labels: magic 0x00000801 (N) -> one-hot [N, K].
 * Files may be plain or gzip-compressed (zlib reads both). Every label must be < K. */

#define DL4C_IDX_DEFAULT_CLASSES 10   /* K used by dl4c_idx_load / _load_range / mnist_dir */

/* The whole pair, K = DL4C_IDX_DEFAULT_CLASSES. */
dl4c_status dl4c_idx_load(const char *images_path, const char *labels_path, dl4c_dataset **out);
/* Rows [start, start+count) only, reading just those bytes (shards for MPI ranks); the
 * result equals the same rows of the full load. K = DL4C_IDX_DEFAULT_CLASSES. */
dl4c_status dl4c_idx_load_range(const char *images_path, const char *labels_path,
                                int64_t start, int64_t count, dl4c_dataset **out);
/* The general form: count < 0 means "to the end"; n_classes <= 0 means the default (10). */
dl4c_status dl4c_idx_load_ex(const char *images_path, const char *labels_path, int64_t start,
                             int64_t count, int n_classes, dl4c_dataset **out);
/* Number of examples an IDX file (images or labels) declares in its header. */
dl4c_status dl4c_idx_count(const char *images_path, int64_t *n);
/* The labels file beside an images file: "train-images-idx3-ubyte[.gz]" ->
 * "train-labels-idx1-ubyte[.gz]", "t10k-images.idx3-ubyte" -> "t10k-labels.idx1-ubyte"
 * (the last "images" in the file name becomes "labels", "idx3" becomes "idx1"). Tries the
 * same compression first, then the other (.gz added or removed). DL4C_ERR_IO if none exists,
 * DL4C_ERR_INVALID_ARG if the name has no "images" or `out` (n bytes) is too small. */
dl4c_status dl4c_idx_labels_path(const char *images_path, char *out, size_t n);
/* An MNIST directory: train-images-idx3-ubyte[.gz] (or train-images.idx3-ubyte[.gz]) and
 * t10k-... with their labels. Either output may be NULL to skip that half. On failure both
 * outputs are NULL. */
dl4c_status dl4c_mnist_dir_load(const char *dir, dl4c_dataset **train, dl4c_dataset **test);

/* ---- CSV ----
 * One example per line, numeric fields separated by `delimiter`; blank lines are skipped,
 * "\r\n" endings, surrounding spaces and one pair of surrounding double quotes are accepted.
 * Gzip-compressed files are read too. Values must be finite numbers. Columns in messages
 * are counted from 1, like lines ("data.csv:17: column 3: \"abc\" is not a number"). */
typedef struct dl4c_csv_opts {
    int label_column;     /* 0-based index of the (first) label column; negative counts from the
                             end so that the label block ends there: -1 = the last column(s).
                             dl4c_csv_opts_default() sets -1; note a zeroed struct means 0 */
    bool header;          /* the first line is a header: skip it */
    bool detect_header;   /* if `header` is false: skip the first line when at least half of its
                             fields are not numbers (default true in dl4c_csv_opts_default()) */
    int n_classes;        /* classification: K (0 = infer: largest label + 1) */
    bool regression;      /* label columns are real targets; labels [N, n_label_columns] */
    int n_label_columns;  /* regression: number of target columns (0 = 1); classification: 1 */
    char delimiter;       /* field separator (0 = ',') */
} dl4c_csv_opts;

/* {label_column = -1 (last), header = false, detect_header = true, n_classes = 0 (infer),
 *  regression = false, n_label_columns = 1, delimiter = ','} */
dl4c_csv_opts dl4c_csv_opts_default(void);

/* The whole file. `opts` NULL means dl4c_csv_opts_default(). Features [N, F] with F the
 * non-label columns in file order; labels one-hot [N, K] or targets [N, n_label_columns]. */
dl4c_status dl4c_csv_load(const char *path, const dl4c_csv_opts *opts, dl4c_dataset **out);
/* Data rows [start, start+count) only (count < 0: to the end), keeping only those in memory;
 * equals the same rows of the full load. When classes are inferred (n_classes 0) the label
 * column of every row is read so that K is the same on every shard. */
dl4c_status dl4c_csv_load_range(const char *path, const dl4c_csv_opts *opts, int64_t start,
                                int64_t count, dl4c_dataset **out);
/* Number of data rows (header and blank lines excluded). */
dl4c_status dl4c_csv_count(const char *path, const dl4c_csv_opts *opts, int64_t *n);

/* ---- Orders and partitions (pure functions of seed and epoch) ---- */

/* A seeded permutation of [0, n) for an epoch, drawn from (seed, DL4C_STREAM_SHUFFLE, epoch).
 * *out is allocated with dl4c_alloc; release it with dl4c_free. */
dl4c_status dl4c_shuffle_indices(int64_t n, uint64_t seed, int epoch, int64_t **out);

/* Data-parallel partitioning: a permutation of [0, n) drawn from
 * (seed, DL4C_STREAM_PARTITION, epoch), split into `workers` contiguous parts whose sizes
 * differ by at most 1 (the first n % workers parts get one more). Worker w owns
 * (*perm_out)[starts[w] .. starts[w+1]). `starts` has room for workers + 1 entries.
 * *perm_out is allocated with dl4c_alloc; release it with dl4c_free. */
dl4c_status dl4c_partition(int64_t n, uint64_t seed, int epoch, int workers,
                           int64_t **perm_out, int64_t *starts);

/* ---- Minibatch iterator ----
 * Walks a list of row indices of a dataset in order, gathering each batch of rows into
 * contiguous buffers: x [n, row] (row = features' row size, e.g. 1*28*28) and y [n, K].
 * The last batch may be shorter. With prefetch > 0 a producer thread fills up to `prefetch`
 * batches ahead into a ring of prefetch + 1 buffers allocated at creation (nothing is
 * allocated per batch); the batches are identical with and without prefetch. One consumer
 * thread per iterator. The dataset must outlive the iterator. */
typedef struct dl4c_batch {
    const float *x;   /* [n, row size of features], valid until the next next/reset/free */
    const float *y;   /* [n, labels' width] */
    int n;            /* examples in this batch (1..batch_size) */
} dl4c_batch;

typedef struct dl4c_batch_iter dl4c_batch_iter;

/* `indices` (copied; NULL means 0, 1, ..., N-1 with n_indices ignored) must be rows of ds. */
dl4c_status dl4c_batch_iter_new(const dl4c_dataset *ds, const int64_t *indices, int64_t n_indices,
                                int batch_size, int prefetch, dl4c_batch_iter **out);
/* The next batch into *b; false at the end of the list. */
bool dl4c_batch_iter_next(dl4c_batch_iter *it, dl4c_batch *b);
/* Starts over with a new list (a new epoch's order; NULL = 0..N-1), stopping any prefetch of
 * the old one. The list is copied; a longer list than before allocates once. On error
 * (bad index, out of memory) the iterator is left empty. */
dl4c_status dl4c_batch_iter_reset(dl4c_batch_iter *it, const int64_t *indices, int64_t n_indices);
/* Number of batches in the current list: ceil(n_indices / batch_size). */
int64_t dl4c_batch_iter_count(const dl4c_batch_iter *it);
/* Stops the producer thread (even mid-epoch) and frees everything; NULL is a no-op. */
void dl4c_batch_iter_free(dl4c_batch_iter *it);

#ifdef __cplusplus
}
#endif
#endif
