/* The local communicator: worker threads of one process. Ranks publish a pointer to their
 * buffer, meet at a barrier, each rank reduces its slice of elements over ranks 0..N-1 (in
 * that order) into a shared scratch, meet again, and copy the result back. Real
 * synchronization (pthread barriers), no spinning. */
#include "dl4c/dist.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct local_group {
    int size;                  /* ranks */
    pthread_barrier_t barrier; /* all ranks meet here */
    void **bufs;               /* bufs[r]: rank r's buffer during a collective */
    void *scratch;             /* reduction result */
    size_t scratch_bytes;      /* capacity of scratch */
    int refs;                  /* communicators still alive */
    pthread_mutex_t lock;      /* guards refs */
} local_group;

typedef struct local_comm {
    local_group *g;            /* shared */
    int rank;                  /* this thread's rank */
} local_comm;

static int local_rank(const dl4c_comm *c) { return ((local_comm *)c->impl)->rank; }
static int local_size(const dl4c_comm *c) { return ((local_comm *)c->impl)->g->size; }

static void wait_all(local_group *g) { pthread_barrier_wait(&g->barrier); }

static size_t dtype_size(dl4c_dtype t) { return t == DL4C_F32 ? 4 : 8; }

#define REDUCE_SLICE(T)                                                          \
    do {                                                                         \
        T *out = (T *)g->scratch;                                                \
        for (int64_t i = lo; i < hi; i++) {                                      \
            T acc = ((const T *)g->bufs[0])[i];                                  \
            for (int r = 1; r < g->size; r++) {                                  \
                const T v = ((const T *)g->bufs[r])[i];                          \
                acc = op == DL4C_REDUCE_SUM ? acc + v : (v > acc ? v : acc);     \
            }                                                                    \
            out[i] = acc;                                                        \
        }                                                                        \
    } while (0)

static dl4c_status local_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op) {
    local_comm *lc = c->impl;
    local_group *g = lc->g;
    if (g->size == 1 || n == 0) return DL4C_OK;
    const size_t bytes = (size_t)n * dtype_size(t);
    g->bufs[lc->rank] = buf;
    if (lc->rank == 0 && g->scratch_bytes < bytes) {
        void *fresh = malloc(bytes);
        if (fresh) { free(g->scratch); g->scratch = fresh; g->scratch_bytes = bytes; }
    }
    wait_all(g);
    if (g->scratch_bytes < bytes) {
        wait_all(g);
        return dl4c_error(DL4C_ERR_NOMEM, "local communicator: out of memory for %zu bytes", bytes);
    }
    const int64_t per = (n + g->size - 1) / g->size;
    const int64_t lo = per * lc->rank < n ? per * lc->rank : n;
    const int64_t hi = lo + per < n ? lo + per : n;
    switch (t) {
    case DL4C_F32: REDUCE_SLICE(float); break;
    case DL4C_F64: REDUCE_SLICE(double); break;
    case DL4C_I64: REDUCE_SLICE(int64_t); break;
    default: DL4C_ASSERT(!"bad dtype");
    }
    wait_all(g);
    memcpy(buf, g->scratch, bytes);
    wait_all(g);   /* nobody reuses scratch before everyone has copied */
    return DL4C_OK;
}

static dl4c_status local_broadcast(dl4c_comm *c, void *buf, size_t bytes, int root) {
    local_comm *lc = c->impl;
    local_group *g = lc->g;
    if (g->size == 1) return DL4C_OK;
    g->bufs[lc->rank] = buf;
    wait_all(g);
    if (lc->rank != root) memcpy(buf, g->bufs[root], bytes);
    wait_all(g);
    return DL4C_OK;
}

static dl4c_status local_barrier(dl4c_comm *c) {
    wait_all(((local_comm *)c->impl)->g);
    return DL4C_OK;
}

static void local_free(dl4c_comm *c) {
    local_comm *lc = c->impl;
    local_group *g = lc->g;
    pthread_mutex_lock(&g->lock);
    const int left = --g->refs;
    pthread_mutex_unlock(&g->lock);
    if (left == 0) {
        pthread_barrier_destroy(&g->barrier);
        pthread_mutex_destroy(&g->lock);
        free(g->scratch);
        free(g->bufs);
        free(g);
    }
    free(lc);
    free(c);
}

static const dl4c_comm_ops local_ops = {
    .name = "local", .rank = local_rank, .size = local_size, .allreduce = local_allreduce,
    .broadcast = local_broadcast, .barrier = local_barrier, .free = local_free,
};

dl4c_status dl4c_comm_local_group(int size, dl4c_comm **comms) {
    if (size < 1) return dl4c_error(DL4C_ERR_INVALID_ARG, "local communicator: size %d < 1", size);
    local_group *g = calloc(1, sizeof *g);
    if (!g || !(g->bufs = calloc((size_t)size, sizeof *g->bufs))) {
        free(g);
        return dl4c_error(DL4C_ERR_NOMEM, "local communicator: out of memory");
    }
    g->size = size;
    g->refs = size;
    pthread_barrier_init(&g->barrier, NULL, (unsigned)size);
    pthread_mutex_init(&g->lock, NULL);
    for (int r = 0; r < size; r++) {
        dl4c_comm *c = calloc(1, sizeof *c);
        local_comm *lc = calloc(1, sizeof *lc);
        DL4C_ASSERT(c && lc);
        lc->g = g;
        lc->rank = r;
        c->ops = &local_ops;
        c->impl = lc;
        comms[r] = c;
    }
    return DL4C_OK;
}
