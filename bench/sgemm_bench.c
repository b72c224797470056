/* The machine's float32 matrix-product ceiling: OpenBLAS sgemm on large square matrices.
 *   sgemm_bench [--threads T] [--n N] [--seconds S]
 * One JSON line: {"threads": T, "n": N, "gflops": best of the timed calls}. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int threads = 1, n = 1536;
    double seconds = 1.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else { fprintf(stderr, "usage: %s [--threads T] [--n N] [--seconds S]\n", argv[0]); return 2; }
    }
    if (threads <= 0 || n <= 0) return 2;
    openblas_set_num_threads(threads);
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.2f; c[i] = 0; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);  /* warm-up */
    double best = 1e30, total = 0;
    int calls = 0;
    const double end = now() + seconds;
    do {
        const double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        const double dt = now() - t0;
        total += dt;
        calls++;
        if (dt < best) best = dt;
    } while (now() < end);
    const double flop = 2.0 * n * n * (double)n;
    printf("{\"threads\": %d, \"n\": %d, \"calls\": %d, \"gflops\": %.2f, \"gflops_mean\": %.2f, \"core\": \"%s\"}\n",
           threads, n, calls, flop / best / 1e9, flop * calls / total / 1e9, openblas_get_corename());
    free(a); free(b); free(c);
    return 0;
}
