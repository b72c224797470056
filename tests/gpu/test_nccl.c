/* The nccl communicator: its rank-ordered reduction kernel gives the same bits as the local
 * communicator's loop (float and double sums, int64 max); a group over every GPU of this machine
 * (one thread per rank) all-reduces, broadcasts and meets at barriers with the same results as
 * the local communicator. With one GPU the group has one rank (NCCL allows one rank per GPU).
 * Skips (exit 77) without a GPU. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cuda_runtime.h>

#include "backend/cuda_kernels.h"
#include "dl4c/dist.h"
#include "gpu/gpu_util.h"

static void test_reduce_kernel(void **state) {
    const int P = 5;
    const int64_t n = 1001, stride = 1003;
    float *h = rand_host(P * stride, 11, -1, 1), *out = malloc(sizeof(float) * n);
    void *din, *dout;
    assert_int_equal(cudaMalloc(&din, sizeof(double) * P * stride), cudaSuccess);
    assert_int_equal(cudaMalloc(&dout, sizeof(double) * n), cudaSuccess);
    assert_int_equal(cudaMemcpy(din, h, sizeof(float) * P * stride, cudaMemcpyHostToDevice), cudaSuccess);
    dl4c_k_reduce_ranks(NULL, 0, 0, din, dout, n, stride, P);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(out, dout, sizeof(float) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t i = 0; i < n; i++) {
        float acc = h[i];
        for (int r = 1; r < P; r++) acc = acc + h[r * stride + i];
        if (acc != out[i]) fail_msg("float sum, element %lld: %.9g vs %.9g", (long long)i, out[i], acc);
    }
    double *hd = malloc(sizeof(double) * P * stride), *od = malloc(sizeof(double) * n);
    for (int64_t i = 0; i < P * stride; i++) hd[i] = h[i] * 1.000001 + 1e-3 * (double)(i % 7);
    assert_int_equal(cudaMemcpy(din, hd, sizeof(double) * P * stride, cudaMemcpyHostToDevice), cudaSuccess);
    dl4c_k_reduce_ranks(NULL, 1, 0, din, dout, n, stride, P);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(od, dout, sizeof(double) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t i = 0; i < n; i++) {
        double acc = hd[i];
        for (int r = 1; r < P; r++) acc = acc + hd[r * stride + i];
        assert_true(acc == od[i]);
    }
    int64_t *hi = malloc(sizeof(int64_t) * P * stride), *oi = malloc(sizeof(int64_t) * n);
    for (int64_t i = 0; i < P * stride; i++) hi[i] = (int64_t)(h[i] * 1e6);
    assert_int_equal(cudaMemcpy(din, hi, sizeof(int64_t) * P * stride, cudaMemcpyHostToDevice), cudaSuccess);
    dl4c_k_reduce_ranks(NULL, 2, 1, din, dout, n, stride, P);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(oi, dout, sizeof(int64_t) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = hi[i];
        for (int r = 1; r < P; r++) m = hi[r * stride + i] > m ? hi[r * stride + i] : m;
        assert_true(m == oi[i]);
    }
    printf("  reduce kernel: float/double sums and int64 max over %d ranks equal the rank-ordered loop\n", P);
    cudaFree(din); cudaFree(dout);
    free(h); free(out); free(hd); free(od); free(hi); free(oi);
}

typedef struct rank_arg {
    dl4c_comm *nccl, *local;   /* this rank's communicators */
    int rank;
    int failures;              /* mismatches seen */
    dl4c_status status;
} rank_arg;

static void *rank_main(void *p) {
    rank_arg *a = p;
    const int64_t n = 100003;
    float *x = rand_host(n, 500 + (uint64_t)a->rank, -1, 1), *y = malloc(sizeof(float) * n);
    memcpy(y, x, sizeof(float) * n);
    if ((a->status = dl4c_comm_allreduce(a->nccl, x, n, DL4C_F32, DL4C_REDUCE_SUM))) goto out;
    if ((a->status = dl4c_comm_allreduce(a->local, y, n, DL4C_F32, DL4C_REDUCE_SUM))) goto out;
    for (int64_t i = 0; i < n; i++) a->failures += x[i] != y[i];
    double stats[3] = {a->rank, 1.5 * a->rank, -a->rank};
    if ((a->status = dl4c_comm_allreduce(a->nccl, stats, 3, DL4C_F64, DL4C_REDUCE_SUM))) goto out;
    const int size = dl4c_comm_size(a->nccl);
    a->failures += stats[0] != size * (size - 1) / 2.0;
    int64_t mx = a->rank;
    if ((a->status = dl4c_comm_allreduce(a->nccl, &mx, 1, DL4C_I64, DL4C_REDUCE_MAX))) goto out;
    a->failures += mx != size - 1;
    float b[5] = {(float)a->rank, 1, 2, 3, 4};
    if ((a->status = dl4c_comm_broadcast(a->nccl, b, sizeof b, size - 1))) goto out;
    a->failures += b[0] != (float)(size - 1);
    a->status = dl4c_comm_barrier(a->nccl);
out:
    free(x); free(y);
    return NULL;
}

static void test_group(void **state) {
    const int P = dl4c_cuda_device_count();
    int *devices = malloc(sizeof(int) * P);
    for (int r = 0; r < P; r++) devices[r] = r;
    dl4c_comm **nccl = calloc((size_t)P, sizeof *nccl), **local = calloc((size_t)P, sizeof *local);
    if (dl4c_comm_nccl_group(P, devices, nccl)) fail_msg("nccl group: %s", dl4c_error_message());
    assert_int_equal(dl4c_comm_local_group(P, local), DL4C_OK);
    printf("  nccl group over %d GPU(s)%s\n", P, P == 1 ? " (one rank: NCCL allows one rank per GPU)" : "");
    assert_string_equal(nccl[0]->ops->name, "nccl");
    assert_int_equal(dl4c_comm_nccl_device(nccl[0]), 0);
    assert_int_equal(dl4c_comm_nccl_device(local[0]), -1);
    rank_arg *args = calloc((size_t)P, sizeof *args);
    pthread_t *tids = calloc((size_t)P, sizeof *tids);
    for (int r = 0; r < P; r++) {
        args[r] = (rank_arg){.nccl = nccl[r], .local = local[r], .rank = r};
        assert_int_equal(pthread_create(&tids[r], NULL, rank_main, &args[r]), 0);
    }
    for (int r = 0; r < P; r++) pthread_join(tids[r], NULL);
    for (int r = 0; r < P; r++) {
        if (args[r].status) fail_msg("rank %d: %s", r, dl4c_status_str(args[r].status));
        assert_int_equal(args[r].failures, 0);
        dl4c_comm_free(nccl[r]);
        dl4c_comm_free(local[r]);
    }
    free(devices); free(nccl); free(local); free(args); free(tids);
}

int main(void) {
    gpu_require();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reduce_kernel), cmocka_unit_test(test_group)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
