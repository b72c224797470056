/* Minibatch iterator with an optional prefetch thread.
 *
 * Batch b of the current list goes to ring slot b % n_slots. The consumer holds the slot of
 * the batch it was last given until its next call; the producer may fill batch p only while
 * p - released < n_slots, where `released` is the number of batches the consumer has given
 * back, so it never writes the slot the consumer holds nor one not yet consumed. Waiting is
 * on condition variables only (no spinning). With prefetch 0 there is no thread and one slot,
 * filled in the consumer's call; the gather code is the same, so batches are identical. */
#include "dl4c/data.h"

#include <pthread.h>
#include <string.h>

struct dl4c_batch_iter {
    const dl4c_dataset *ds;   /* rows come from here (not owned) */
    int64_t x_row;            /* floats per feature row */
    int64_t y_row;            /* floats per label row */
    int batch_size;           /* examples per full batch */
    int n_slots;              /* ring size: prefetch + 1 */
    float *x_buf;             /* n_slots * batch_size * x_row floats */
    float *y_buf;             /* n_slots * batch_size * y_row floats */
    int64_t *indices;         /* the current list of rows (owned copy) */
    int64_t n_indices;        /* entries used in indices */
    int64_t idx_cap;          /* entries allocated in indices */
    int64_t n_batches;        /* ceil(n_indices / batch_size) */
    int64_t consumed;         /* batches handed to the consumer */
    /* prefetch only; everything below and `indices`/`consumed` are guarded by mu */
    bool threaded;            /* a producer thread runs */
    pthread_t thread;         /* the producer */
    pthread_mutex_t mu;       /* guards the counters */
    pthread_cond_t ready;     /* signalled when a batch is produced */
    pthread_cond_t space;     /* signalled when a slot is released, the list reset, or stop */
    pthread_cond_t idle;      /* signalled when the producer finishes filling a slot */
    int64_t produced;         /* batches filled, in order */
    int64_t released;         /* batches the consumer gave back */
    bool busy;                /* the producer is filling a slot outside the lock */
    bool stop;                /* the producer must exit */
};

/* Gathers batch b of the current list into its ring slot. */
static int fill(dl4c_batch_iter *it, int64_t b) {
    int slot = (int)(b % it->n_slots);
    int64_t first = b * it->batch_size;
    int64_t n = it->n_indices - first;
    if (n > it->batch_size) n = it->batch_size;
    float *x = it->x_buf + (size_t)slot * (size_t)it->batch_size * (size_t)it->x_row;
    float *y = it->y_buf + (size_t)slot * (size_t)it->batch_size * (size_t)it->y_row;
    const float *fx = it->ds->features->data, *fy = it->ds->labels->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = it->indices[first + i];
        memcpy(x + i * it->x_row, fx + r * it->x_row, (size_t)it->x_row * sizeof(float));
        memcpy(y + i * it->y_row, fy + r * it->y_row, (size_t)it->y_row * sizeof(float));
    }
    return (int)n;
}

static void *producer(void *arg) {
    dl4c_batch_iter *it = arg;
    pthread_mutex_lock(&it->mu);
    while (!it->stop) {
        if (it->produced < it->n_batches && it->produced - it->released < it->n_slots) {
            int64_t b = it->produced;
            it->busy = true;
            pthread_mutex_unlock(&it->mu);
            fill(it, b);
            pthread_mutex_lock(&it->mu);
            it->busy = false;
            it->produced++;
            pthread_cond_signal(&it->ready);
            pthread_cond_broadcast(&it->idle);
            continue;
        }
        pthread_cond_wait(&it->space, &it->mu);
    }
    pthread_mutex_unlock(&it->mu);
    return NULL;
}

/* Checks and copies a list into it->indices (caller holds the lock / no producer is busy). */
static dl4c_status set_indices(dl4c_batch_iter *it, const int64_t *indices, int64_t n) {
    int64_t rows = dl4c_dataset_count(it->ds);
    it->n_indices = 0;
    it->n_batches = 0;
    if (!indices) n = rows;
    if (n < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: negative list length %lld", (long long)n);
    if (indices) {
        for (int64_t i = 0; i < n; i++)
            if (indices[i] < 0 || indices[i] >= rows)
                return dl4c_error(DL4C_ERR_INVALID_ARG,
                                  "batch iterator: index %lld at position %lld is not a row of the %lld-row dataset",
                                  (long long)indices[i], (long long)i, (long long)rows);
    }
    if (n > it->idx_cap) {
        if ((uint64_t)n > SIZE_MAX / sizeof(int64_t))
            return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: %lld indices are too many", (long long)n);
        int64_t *p = dl4c_alloc((size_t)n * sizeof *p);
        if (!p) return dl4c_error(DL4C_ERR_NOMEM, "batch iterator: out of memory for %lld indices", (long long)n);
        dl4c_free(it->indices);
        it->indices = p;
        it->idx_cap = n;
    }
    if (indices) {
        if (n) memcpy(it->indices, indices, (size_t)n * sizeof *indices);
    } else {
        for (int64_t i = 0; i < n; i++) it->indices[i] = i;
    }
    it->n_indices = n;
    it->n_batches = (n + it->batch_size - 1) / it->batch_size;
    return DL4C_OK;
}

dl4c_status dl4c_batch_iter_new(const dl4c_dataset *ds, const int64_t *indices, int64_t n_indices,
                                int batch_size, int prefetch, dl4c_batch_iter **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: NULL output");
    *out = NULL;
    if (!ds || !ds->features || !ds->labels)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: no dataset");
    if (ds->features->device != DL4C_DEVICE_CPU || ds->labels->device != DL4C_DEVICE_CPU)
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "batch iterator: the dataset must be in CPU memory");
    if (batch_size < 1)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: batch size %d (must be at least 1)", batch_size);
    if (prefetch < 0 || prefetch > 1024)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: prefetch %d (0..1024)", prefetch);
    dl4c_batch_iter *it = dl4c_calloc(sizeof *it);
    if (!it) return dl4c_error(DL4C_ERR_NOMEM, "batch iterator: out of memory");
    it->ds = ds;
    it->x_row = dl4c_tensor_row_size(ds->features);
    it->y_row = dl4c_tensor_row_size(ds->labels);
    it->batch_size = batch_size;
    it->n_slots = prefetch + 1;
    size_t xf, yf, xb, yb;
    if (__builtin_mul_overflow((size_t)it->n_slots * (size_t)batch_size, (size_t)it->x_row, &xf) ||
        __builtin_mul_overflow((size_t)it->n_slots * (size_t)batch_size, (size_t)it->y_row, &yf) ||
        __builtin_mul_overflow(xf, sizeof(float), &xb) || __builtin_mul_overflow(yf, sizeof(float), &yb)) {
        dl4c_free(it);
        return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: batch buffers would be too large");
    }
    it->x_buf = dl4c_alloc(xb);
    it->y_buf = dl4c_alloc(yb);
    dl4c_status st = (it->x_buf && it->y_buf)
                         ? DL4C_OK
                         : dl4c_error(DL4C_ERR_NOMEM, "batch iterator: out of memory for %d buffers of %d rows",
                                      it->n_slots, batch_size);
    if (st == DL4C_OK) st = set_indices(it, indices, n_indices);
    if (st == DL4C_OK && prefetch > 0) {
        pthread_mutex_init(&it->mu, NULL);
        pthread_cond_init(&it->ready, NULL);
        pthread_cond_init(&it->space, NULL);
        pthread_cond_init(&it->idle, NULL);
        if (pthread_create(&it->thread, NULL, producer, it) != 0) {
            pthread_cond_destroy(&it->idle);
            pthread_cond_destroy(&it->space);
            pthread_cond_destroy(&it->ready);
            pthread_mutex_destroy(&it->mu);
            st = dl4c_error(DL4C_ERR_INTERNAL, "batch iterator: cannot start the prefetch thread");
        } else {
            it->threaded = true;
        }
    }
    if (st != DL4C_OK) {
        dl4c_free(it->x_buf);
        dl4c_free(it->y_buf);
        dl4c_free(it->indices);
        dl4c_free(it);
        return st;
    }
    *out = it;
    return DL4C_OK;
}

bool dl4c_batch_iter_next(dl4c_batch_iter *it, dl4c_batch *b) {
    int64_t batch;
    if (!it->threaded) {
        if (it->consumed >= it->n_batches) return false;
        batch = it->consumed++;
        b->n = fill(it, batch);
    } else {
        pthread_mutex_lock(&it->mu);
        it->released = it->consumed;   /* give back the batch handed out last time */
        pthread_cond_signal(&it->space);
        if (it->consumed >= it->n_batches) {
            pthread_mutex_unlock(&it->mu);
            return false;
        }
        while (it->produced <= it->consumed) pthread_cond_wait(&it->ready, &it->mu);
        batch = it->consumed++;
        pthread_mutex_unlock(&it->mu);
        int64_t left = it->n_indices - batch * it->batch_size;
        b->n = (int)(left < it->batch_size ? left : it->batch_size);
    }
    int slot = (int)(batch % it->n_slots);
    b->x = it->x_buf + (size_t)slot * (size_t)it->batch_size * (size_t)it->x_row;
    b->y = it->y_buf + (size_t)slot * (size_t)it->batch_size * (size_t)it->y_row;
    return true;
}

dl4c_status dl4c_batch_iter_reset(dl4c_batch_iter *it, const int64_t *indices, int64_t n_indices) {
    if (!it) return dl4c_error(DL4C_ERR_INVALID_ARG, "batch iterator: NULL");
    if (!it->threaded) {
        it->consumed = 0;
        return set_indices(it, indices, n_indices);
    }
    pthread_mutex_lock(&it->mu);
    while (it->busy) pthread_cond_wait(&it->idle, &it->mu);
    it->consumed = it->produced = it->released = 0;
    dl4c_status st = set_indices(it, indices, n_indices);
    pthread_cond_signal(&it->space);
    pthread_mutex_unlock(&it->mu);
    return st;
}

int64_t dl4c_batch_iter_count(const dl4c_batch_iter *it) { return it ? it->n_batches : 0; }

void dl4c_batch_iter_free(dl4c_batch_iter *it) {
    if (!it) return;
    if (it->threaded) {
        pthread_mutex_lock(&it->mu);
        it->stop = true;
        pthread_cond_signal(&it->space);
        pthread_mutex_unlock(&it->mu);
        pthread_join(it->thread, NULL);
        pthread_cond_destroy(&it->idle);
        pthread_cond_destroy(&it->space);
        pthread_cond_destroy(&it->ready);
        pthread_mutex_destroy(&it->mu);
    }
    dl4c_free(it->x_buf);
    dl4c_free(it->y_buf);
    dl4c_free(it->indices);
    dl4c_free(it);
}
