/* The local communicator: worker threads of one process. Ranks publish a pointer to their
 * buffer, meet at a barrier, each rank reduces its slice of elements over ranks 0..N-1 (in
 * that order) and writes the result into that slice of every rank's buffer, and they meet
 * again.
 * The barrier spins for up to BARRIER_SPIN_NS before it sleeps on a condition variable, when the
 * group has no more ranks than the process has CPUs: an averaging round meets about 20 times,
 * and a sleep and wake-up per meeting (a futex round trip, tens of microseconds on a VM) made
 * averaging a tenth of LeNet's round with 2 workers on 2 cores (1.1 ms per round of 5
 * minibatches, measured with pthread barriers). Ranks that wait longer (a slower worker's
 * fit) sleep as before. */
#define _GNU_SOURCE
#include "dl4c/dist.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BARRIER_SPIN_NS 50000

typedef struct local_group {
    int size;                  /* ranks */
    bool spin;                 /* ranks <= CPUs: waiters spin before they sleep */
    _Atomic int arrived;       /* ranks at the barrier now */
    _Atomic unsigned gen;      /* barrier generation: advanced by the last rank to arrive */
    pthread_mutex_t bar_m;     /* with bar_cv: sleeping waiters */
    pthread_cond_t bar_cv;
    void **bufs;               /* bufs[r]: rank r's buffer during a collective */
    int refs;                  /* communicators still alive */
    pthread_mutex_t lock;      /* guards refs */
} local_group;

typedef struct local_comm {
    local_group *g;            /* shared */
    int rank;                  /* this thread's rank */
} local_comm;

static int local_rank(const dl4c_comm *c) { return ((local_comm *)c->impl)->rank; }
static int local_size(const dl4c_comm *c) { return ((local_comm *)c->impl)->g->size; }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* All ranks meet here (a generation barrier: the last to arrive resets the count, then
 * advances the generation the others wait on). */
static void wait_all(local_group *g) {
    const unsigned gen = atomic_load_explicit(&g->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&g->arrived, 1, memory_order_acq_rel) == g->size - 1) {
        atomic_store_explicit(&g->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&g->gen, gen + 1, memory_order_release);
        pthread_mutex_lock(&g->bar_m);
        pthread_cond_broadcast(&g->bar_cv);
        pthread_mutex_unlock(&g->bar_m);
        return;
    }
    if (g->spin) {
        const int64_t until = now_ns() + BARRIER_SPIN_NS;
        for (int i = 1; atomic_load_explicit(&g->gen, memory_order_acquire) == gen; i++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if (i % 256 == 0 && now_ns() > until) break;
        }
    }
    pthread_mutex_lock(&g->bar_m);
    while (atomic_load_explicit(&g->gen, memory_order_acquire) == gen) pthread_cond_wait(&g->bar_cv, &g->bar_m);
    pthread_mutex_unlock(&g->bar_m);
}

/* Elements [lo, hi) of every rank's buffer = their reduction over ranks 0..N-1, in that order
 * (in blocks, so each block is read from the N buffers and written back while in cache). */
#define REDUCE_SLICE(T)                                                          \
    do {                                                                         \
        enum { BLOCK = 1024 };                                                   \
        T acc[BLOCK];                                                            \
        for (int64_t b0 = lo; b0 < hi; b0 += BLOCK) {                            \
            const int nb = (int)(hi - b0 < BLOCK ? hi - b0 : BLOCK);             \
            memcpy(acc, (const T *)g->bufs[0] + b0, sizeof(T) * (size_t)nb);     \
            for (int r = 1; r < g->size; r++) {                                  \
                const T *v = (const T *)g->bufs[r] + b0;                         \
                for (int i = 0; i < nb; i++)                                     \
                    acc[i] = op == DL4C_REDUCE_SUM ? acc[i] + v[i] : (v[i] > acc[i] ? v[i] : acc[i]); \
            }                                                                    \
            for (int r = 0; r < g->size; r++)                                    \
                memcpy((T *)g->bufs[r] + b0, acc, sizeof(T) * (size_t)nb);       \
        }                                                                        \
    } while (0)

static dl4c_status local_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op) {
    local_comm *lc = c->impl;
    local_group *g = lc->g;
    if (g->size == 1 || n == 0) return DL4C_OK;
    g->bufs[lc->rank] = buf;
    wait_all(g);
    const int64_t per = (n + g->size - 1) / g->size;
    const int64_t lo = per * lc->rank < n ? per * lc->rank : n;
    const int64_t hi = lo + per < n ? lo + per : n;
    switch (t) {
    case DL4C_F32: REDUCE_SLICE(float); break;
    case DL4C_F64: REDUCE_SLICE(double); break;
    case DL4C_I64: REDUCE_SLICE(int64_t); break;
    default: DL4C_ASSERT(!"bad dtype");
    }
    wait_all(g);   /* every slice written into every buffer */
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
        pthread_cond_destroy(&g->bar_cv);
        pthread_mutex_destroy(&g->bar_m);
        pthread_mutex_destroy(&g->lock);
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
    pthread_mutex_init(&g->bar_m, NULL);
    pthread_cond_init(&g->bar_cv, NULL);
    cpu_set_t cpus;
    g->spin = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && size <= CPU_COUNT(&cpus);
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
