/* dl4c datasets: construction, freeing, seeded shuffles and data-parallel partitions. */
#include "dl4c/data.h"

#include <string.h>

dl4c_status dl4c_dataset_new(dl4c_tensor *features, dl4c_tensor *labels, int n_classes,
                             dl4c_dataset **out) {
    if (!out) {
        dl4c_tensor_free(features);
        dl4c_tensor_free(labels);
        return dl4c_error(DL4C_ERR_INVALID_ARG, "dataset: NULL output");
    }
    *out = NULL;
    dl4c_status st = DL4C_OK;
    if (!features || !labels)
        st = dl4c_error(DL4C_ERR_INVALID_ARG, "dataset: features and labels are required");
    else if (labels->ndim != 2)
        st = dl4c_error(DL4C_ERR_SHAPE, "dataset: labels must be 2-D [N, K], got %d dimensions",
                        labels->ndim);
    else if (features->shape[0] != labels->shape[0])
        st = dl4c_error(DL4C_ERR_SHAPE, "dataset: %lld feature rows but %lld label rows",
                        (long long)features->shape[0], (long long)labels->shape[0]);
    else if (n_classes < 0 || (n_classes > 0 && labels->shape[1] != n_classes))
        st = dl4c_error(DL4C_ERR_SHAPE, "dataset: %d classes but labels are %lld wide",
                        n_classes, (long long)labels->shape[1]);
    dl4c_dataset *ds = NULL;
    if (st == DL4C_OK && !(ds = dl4c_calloc(sizeof *ds)))
        st = dl4c_error(DL4C_ERR_NOMEM, "dataset: out of memory");
    if (st != DL4C_OK) {
        dl4c_tensor_free(features);
        dl4c_tensor_free(labels);
        return st;
    }
    ds->features = features;
    ds->labels = labels;
    ds->n_classes = n_classes;
    *out = ds;
    return DL4C_OK;
}

int64_t dl4c_dataset_count(const dl4c_dataset *ds) {
    return (ds && ds->features) ? ds->features->shape[0] : 0;
}

void dl4c_dataset_free(dl4c_dataset *ds) {
    if (!ds) return;
    dl4c_tensor_free(ds->features);
    dl4c_tensor_free(ds->labels);
    dl4c_free(ds);
}

/* The identity permutation of [0, n) shuffled by `r`. */
static dl4c_status shuffled_range(const char *what, int64_t n, dl4c_rng r, int64_t **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: NULL output", what);
    *out = NULL;
    if (n < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: negative count %lld", what, (long long)n);
    if ((uint64_t)n > SIZE_MAX / sizeof(int64_t))
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: count %lld is too large", what, (long long)n);
    int64_t *p = dl4c_alloc((size_t)n * sizeof *p);
    if (!p) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory for %lld indices", what, (long long)n);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    dl4c_rng_shuffle(&r, p, n);
    *out = p;
    return DL4C_OK;
}

dl4c_status dl4c_shuffle_indices(int64_t n, uint64_t seed, int epoch, int64_t **out) {
    return shuffled_range("shuffle", n,
                          dl4c_rng_make(seed, DL4C_STREAM_SHUFFLE, (uint64_t)(int64_t)epoch, 0), out);
}

dl4c_status dl4c_partition(int64_t n, uint64_t seed, int epoch, int workers,
                           int64_t **perm_out, int64_t *starts) {
    if (perm_out) *perm_out = NULL;
    if (workers < 1)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "partition: %d workers (at least 1 needed)", workers);
    if (!starts) return dl4c_error(DL4C_ERR_INVALID_ARG, "partition: NULL starts");
    dl4c_status st = shuffled_range(
        "partition", n, dl4c_rng_make(seed, DL4C_STREAM_PARTITION, (uint64_t)(int64_t)epoch, 0),
        perm_out);
    if (st != DL4C_OK) return st;
    int64_t base = n / workers, extra = n % workers;
    for (int w = 0; w <= workers; w++) starts[w] = (int64_t)w * base + (w < extra ? w : extra);
    DL4C_ASSERT(starts[workers] == n);
    return DL4C_OK;
}
