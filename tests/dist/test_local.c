/* The local communicator (src/dist/local.c): worker threads of one process. Every rank's buffer
 * ends up holding the reduction over ranks 0..N-1 in that order (the same floats as the serial
 * loop), for every dtype and op, lengths that are not multiples of the reduction's blocks, and
 * many collectives in a row (the barrier's generations reused); ranks that arrive late (the
 * barrier's sleeping path) and groups larger than the machine's CPUs (no spinning) included. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "dl4c/dist.h"

#define MAX_RANKS 8
#define ROUNDS 60

typedef struct rank_ctx {
    dl4c_comm *comm;
    int rank, size;
    int64_t n;
    int late_every;              /* every so many rounds this rank sleeps 2 ms first (0: never) */
    int bad;                     /* mismatches seen */
} rank_ctx;

/* Value of element i on rank r in round k: floats whose sum depends on the order of addition. */
static float fval(int k, int r, int64_t i) {
    const uint32_t h = (uint32_t)(k * 7919 + r * 104729 + i * 2654435761u);
    return (float)((double)(h % 20011) * (r % 2 ? 1e-7 : 1.0) - 7000.0 * (i % 3));
}
static double dval(int k, int r, int64_t i) { return (double)fval(k, r, i) * 1.000000123; }
static int64_t ival(int k, int r, int64_t i) { return (int64_t)((k * 31 + r * 17 + i * 13) % 1001) - 500; }

static void nap(long ns) {
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

static void *run_rank(void *arg) {
    rank_ctx *c = arg;
    const int64_t n = c->n;
    float *f = malloc(sizeof(float) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n);
    int64_t *q = malloc(sizeof(int64_t) * (size_t)n);
    for (int k = 0; k < ROUNDS && f && d && q; k++) {
        for (int64_t i = 0; i < n; i++) { f[i] = fval(k, c->rank, i); d[i] = dval(k, c->rank, i); q[i] = ival(k, c->rank, i); }
        if (c->late_every && k % c->late_every == 0) nap(2000000);
        const dl4c_reduce_op op = k % 3 == 2 ? DL4C_REDUCE_MAX : DL4C_REDUCE_SUM;
        if (dl4c_comm_allreduce(c->comm, f, n, DL4C_F32, op) || dl4c_comm_allreduce(c->comm, d, n, DL4C_F64, op) ||
            dl4c_comm_allreduce(c->comm, q, n, DL4C_I64, op)) {
            c->bad++;
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            float ef = fval(k, 0, i);
            double ed = dval(k, 0, i);
            int64_t eq = ival(k, 0, i);
            for (int r = 1; r < c->size; r++) {   /* rank order, as the communicator promises */
                const float vf = fval(k, r, i);
                const double vd = dval(k, r, i);
                const int64_t vq = ival(k, r, i);
                ef = op == DL4C_REDUCE_SUM ? ef + vf : (vf > ef ? vf : ef);
                ed = op == DL4C_REDUCE_SUM ? ed + vd : (vd > ed ? vd : ed);
                eq = op == DL4C_REDUCE_SUM ? eq + vq : (vq > eq ? vq : eq);
            }
            if (memcmp(&f[i], &ef, sizeof ef) || memcmp(&d[i], &ed, sizeof ed) || q[i] != eq) c->bad++;
        }
        /* broadcast from a rotating root, then a barrier */
        const int root = k % c->size;
        int64_t token = c->rank == root ? 1000 + k : -1;
        if (dl4c_comm_broadcast(c->comm, &token, sizeof token, root) || token != 1000 + k) c->bad++;
        if (dl4c_comm_barrier(c->comm)) c->bad++;
    }
    free(f); free(d); free(q);
    return NULL;
}

static void run_group(int size, int64_t n, bool late) {
    dl4c_comm *comms[MAX_RANKS];
    assert_int_equal(dl4c_comm_local_group(size, comms), DL4C_OK);
    pthread_t tid[MAX_RANKS];
    rank_ctx ctx[MAX_RANKS];
    for (int r = 0; r < size; r++) {
        ctx[r] = (rank_ctx){.comm = comms[r], .rank = r, .size = size, .n = n,
                            .late_every = late ? 5 + r : 0};
        assert_int_equal(pthread_create(&tid[r], NULL, run_rank, &ctx[r]), 0);
    }
    for (int r = 0; r < size; r++) pthread_join(tid[r], NULL);
    for (int r = 0; r < size; r++) {
        if (ctx[r].bad) fail_msg("%d ranks, n = %lld: rank %d saw %d wrong results", size, (long long)n, r, ctx[r].bad);
        dl4c_comm_free(comms[r]);
    }
}

static void test_allreduce_in_rank_order(void **state) {
    (void)state;
    const int64_t lengths[] = {1, 3, 1023, 1025, 5000};
    for (int size = 1; size <= 4; size++)
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) run_group(size, lengths[l], false);
}

static void test_late_ranks_and_large_groups(void **state) {
    (void)state;
    run_group(2, 777, true);            /* the barrier's sleeping path */
    run_group(3, 2049, true);
    run_group(MAX_RANKS, 1500, false);  /* more ranks than this machine's CPUs: no spinning */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce_in_rank_order),
        cmocka_unit_test(test_late_ranks_and_large_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
