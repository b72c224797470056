/* Every op of the CUDA backend against the CPU backend on fresh random inputs, TF32 off:
 * norm-wise relative error ||gpu - cpu|| / ||cpu|| within 1e-5 (elementwise ops, whose floats
 * must be the same, within 1e-7). Sizes stay small enough that float sums in another order
 * stay within that bound. Skips (exit 77) without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gpu/gpu_util.h"

static const dl4c_backend *G, *C;
static uint64_t seed = 1000;

#define TOL 1e-5
#define TOL_EXACT 1e-7

static void check(const char *what, const float *gpu_dev, const float *cpu, int64_t n, double tol) {
    float *h = to_host(G, gpu_dev, n);
    const double e = rel_err(h, cpu, n);
    printf("  %-44s n=%-7lld rel %.2e  max|d| %.2e\n", what, (long long)n, e, max_abs_diff(h, cpu, n));
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %.1g", what, e, tol);
    free(h);
}

static void test_gemm(void **state) {
    const int m = 37, n = 53, k = 29;
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        const float beta = t == 3 ? 0.0f : 0.7f;
        float *a = rand_host((int64_t)m * k, seed++, -1, 1), *b = rand_host((int64_t)k * n, seed++, -1, 1);
        float *c = rand_host((int64_t)m * n, seed++, -1, 1);
        float *da = to_dev(G, a, (int64_t)m * k), *db = to_dev(G, b, (int64_t)k * n), *dc = to_dev(G, c, (int64_t)m * n);
        const int lda = ta ? m : k, ldb = tb ? k : n;
        C->gemm(C, ta, tb, m, n, k, 1.3f, a, lda, b, ldb, beta, c, n);
        G->gemm(G, ta, tb, m, n, k, 1.3f, da, lda, db, ldb, beta, dc, n);
        char what[64];
        snprintf(what, sizeof what, "gemm ta=%d tb=%d beta=%g", ta, tb, beta);
        check(what, dc, c, (int64_t)m * n, TOL);
        free(a); free(b); free(c);
        G->free(G, da); G->free(G, db); G->free(G, dc);
    }
}

/* One convolution geometry: forward, backward with and without dx. */
static void conv_case(int n, int c, int h, int w, int out, int kh, int kw, int sh, int sw, int pt, int pl, int pb,
                      int pr) {
    dl4c_window g = {.n = n, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .pt = pt, .pl = pl,
                     .oh = (h + pt + pb - kh) / sh + 1, .ow = (w + pl + pr - kw) / sw + 1};
    const int64_t nx = (int64_t)n * c * h * w, nw = (int64_t)out * c * kh * kw, ny = (int64_t)n * out * g.oh * g.ow;
    float *x = rand_host(nx, seed++, -1, 1), *wt = rand_host(nw, seed++, -0.5f, 0.5f);
    float *b = rand_host(out, seed++, -1, 1), *dz = rand_host(ny, seed++, -1, 1);
    int64_t cs, cc, gs, gc;
    C->conv2d_sizes(C, &g, out, &cs, &cc);
    G->conv2d_sizes(G, &g, out, &gs, &gc);
    float *saved = calloc((size_t)cs + 1, 4), *scratch = calloc((size_t)cc + 1, 4);
    float *gsaved = G->alloc(G, 4 * ((size_t)gs + 1)), *gscratch = G->alloc(G, 4 * ((size_t)gc + 1));
    float *y = malloc(4 * (size_t)ny), *dw = malloc(4 * (size_t)nw), *dbias = malloc(4 * (size_t)out);
    float *dx = malloc(4 * (size_t)nx);
    float *gx = to_dev(G, x, nx), *gw = to_dev(G, wt, nw), *gb = to_dev(G, b, out), *gdz = to_dev(G, dz, ny);
    float *gy = G->alloc(G, 4 * (size_t)ny), *gdw = G->alloc(G, 4 * (size_t)nw), *gdb = G->alloc(G, 4 * (size_t)out);
    float *gdx = G->alloc(G, 4 * (size_t)nx);
    C->conv2d_forward(C, &g, out, x, wt, b, y, saved, scratch);
    G->conv2d_forward(G, &g, out, gx, gw, gb, gy, gsaved, gscratch);
    char what[96];
    snprintf(what, sizeof what, "conv fwd %dx%dx%d k%dx%d s%d,%d p%d,%d,%d,%d", c, h, w, kh, kw, sh, sw, pt, pl, pb, pr);
    check(what, gy, y, ny, TOL);
    C->conv2d_backward(C, &g, out, x, wt, dz, dw, dbias, dx, saved, scratch);
    G->conv2d_backward(G, &g, out, gx, gw, gdz, gdw, gdb, gdx, gsaved, gscratch);
    check("  conv bwd dW", gdw, dw, nw, TOL);
    check("  conv bwd db", gdb, dbias, out, TOL);
    check("  conv bwd dx", gdx, dx, nx, TOL);
    G->zero(G, gdw, 4 * (size_t)nw);
    G->conv2d_backward(G, &g, out, gx, gw, gdz, gdw, gdb, NULL, gsaved, gscratch);
    check("  conv bwd dW (no dx)", gdw, dw, nw, TOL);
    free(x); free(wt); free(b); free(dz); free(saved); free(scratch); free(y); free(dw); free(dbias); free(dx);
    float *gbufs[] = {gsaved, gscratch, gx, gw, gb, gdz, gy, gdw, gdb, gdx};
    for (size_t i = 0; i < sizeof gbufs / sizeof gbufs[0]; i++) G->free(G, gbufs[i]);
}

static void test_conv2d(void **state) {
    conv_case(4, 1, 28, 28, 20, 5, 5, 1, 1, 0, 0, 0, 0);    /* LeNet layer 0 */
    conv_case(32, 1, 28, 28, 20, 5, 5, 1, 1, 0, 0, 0, 0);   /* ... at batch 32 (other cuDNN heuristics) */
    conv_case(32, 20, 12, 12, 50, 5, 5, 2, 2, 0, 0, 0, 0);  /* LeNet layer 2 at batch 32 */
    conv_case(4, 20, 12, 12, 50, 5, 5, 2, 2, 0, 0, 0, 0);   /* LeNet layer 2 (reads 11 of 12 rows) */
    conv_case(3, 3, 13, 11, 6, 3, 5, 1, 2, 1, 2, 1, 2);     /* symmetric padding */
    conv_case(2, 2, 8, 7, 5, 4, 4, 1, 1, 1, 1, 2, 2);       /* "same": one more at the bottom/right */
    conv_case(2, 3, 9, 9, 4, 2, 2, 2, 2, 0, 0, 1, 1);       /* "same", stride 2, extra row only */
}

static void pool_case(dl4c_pooling p, int n, int c, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl,
                      int pb, int pr) {
    dl4c_window g = {.n = n, .c = c, .h = h, .w = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .pt = pt, .pl = pl,
                     .oh = (h + pt + pb - kh) / sh + 1, .ow = (w + pl + pr - kw) / sw + 1};
    const int64_t nx = (int64_t)n * c * h * w, ny = (int64_t)n * c * g.oh * g.ow;
    float *x = rand_host(nx, seed++, -2, 2), *dy = rand_host(ny, seed++, -1, 1);
    float *y = malloc(4 * (size_t)ny), *dx = malloc(4 * (size_t)nx);
    float *gx = to_dev(G, x, nx), *gdy = to_dev(G, dy, ny), *gy = G->alloc(G, 4 * (size_t)ny);
    float *gdx = G->alloc(G, 4 * (size_t)nx);
    C->pool_forward(C, p, &g, x, y);
    G->pool_forward(G, p, &g, gx, gy);
    char what[96];
    snprintf(what, sizeof what, "%s pool fwd %dx%d k%dx%d s%d p%d,%d,%d,%d", p == DL4C_POOL_MAX ? "max" : "avg", h, w,
             kh, kw, sh, pt, pl, pb, pr);
    check(what, gy, y, ny, TOL);   /* max: the same floats; avg: sum and scale may round apart */
    C->pool_backward(C, p, &g, x, y, dy, dx);
    G->pool_backward(G, p, &g, gx, gy, gdy, gdx);
    check("  pool bwd dx", gdx, dx, nx, TOL);
    free(x); free(dy); free(y); free(dx);
    G->free(G, gx); G->free(G, gdy); G->free(G, gy); G->free(G, gdx);
}

static void test_pooling(void **state) {
    for (int p = 0; p < DL4C_POOLING_COUNT; p++) {
        pool_case((dl4c_pooling)p, 4, 20, 24, 24, 2, 2, 2, 2, 0, 0, 0, 0);   /* LeNet */
        pool_case((dl4c_pooling)p, 3, 5, 11, 9, 3, 3, 2, 2, 1, 1, 1, 1);    /* overlapping, padded */
        pool_case((dl4c_pooling)p, 2, 3, 7, 7, 2, 2, 2, 2, 0, 0, 1, 1);     /* "same": extra row/col */
    }
}

static void test_activations(void **state) {
    const int64_t rows = 7, len = 33, n = rows * len;
    for (int a = DL4C_IDENTITY; a < DL4C_ACTIVATION_COUNT; a++) {
        float *x = rand_host(n, seed++, -3, 3), *dy = rand_host(n, seed++, -1, 1);
        float *gx = to_dev(G, x, n), *gdy = to_dev(G, dy, n);
        C->act_forward(C, (dl4c_activation)a, x, rows, len);
        G->act_forward(G, (dl4c_activation)a, gx, rows, len);
        char what[64];
        snprintf(what, sizeof what, "act fwd %s", dl4c_activation_str((dl4c_activation)a));
        check(what, gx, x, n, TOL);
        C->act_backward(C, (dl4c_activation)a, x, dy, rows, len);
        G->act_backward(G, (dl4c_activation)a, gx, gdy, rows, len);
        snprintf(what, sizeof what, "act bwd %s", dl4c_activation_str((dl4c_activation)a));
        check(what, gdy, dy, n, TOL);
        free(x); free(dy);
        G->free(G, gx); G->free(G, gdy);
    }
}

static void test_dense_helpers(void **state) {
    const int rows = 45, len = 67;
    float *b = rand_host(len, seed++, -1, 1), *dz = rand_host((int64_t)rows * len, seed++, -1, 1);
    float *y = malloc(4 * (size_t)rows * len), *db = malloc(4 * (size_t)len);
    float *gb = to_dev(G, b, len), *gdz = to_dev(G, dz, (int64_t)rows * len);
    float *gy = G->alloc(G, 4 * (size_t)rows * len), *gdb = G->alloc(G, 4 * (size_t)len);
    C->fill_rows(C, b, y, rows, len);
    G->fill_rows(G, gb, gy, rows, len);
    check("fill_rows", gy, y, (int64_t)rows * len, 0);
    C->sum_rows(C, dz, db, rows, len);
    G->sum_rows(G, gdz, gdb, rows, len);
    check("sum_rows (same order: same floats)", gdb, db, len, 0);
    free(b); free(dz); free(y); free(db);
    G->free(G, gb); G->free(G, gdz); G->free(G, gy); G->free(G, gdb);
}

static void test_losses(void **state) {
    const int n = 19, K = 10;
    const struct { dl4c_loss loss; dl4c_activation act; } cases[] = {
        {DL4C_LOSS_NLL, DL4C_SOFTMAX}, {DL4C_LOSS_MCXENT, DL4C_SOFTMAX}, {DL4C_LOSS_XENT, DL4C_SIGMOID},
        {DL4C_LOSS_XENT, DL4C_SOFTMAX}, {DL4C_LOSS_MSE, DL4C_IDENTITY}, {DL4C_LOSS_MSE, DL4C_TANH},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float *y = rand_host((int64_t)n * K, seed++, -2, 2), *t = calloc((size_t)n * K, 4);
        C->act_forward(C, cases[k].act, y, n, K);
        dl4c_rng r = dl4c_rng_make(seed++, 1, 2, 3);
        for (int i = 0; i < n; i++) {
            if (cases[k].loss == DL4C_LOSS_MSE)
                for (int j = 0; j < K; j++) t[i * K + j] = (float)dl4c_rng_uniform(&r);
            else
                t[i * K + dl4c_rng_below(&r, K)] = 1.0f;
        }
        float *gy = to_dev(G, y, (int64_t)n * K), *gt = to_dev(G, t, (int64_t)n * K);
        double cl, gl, *gdl = G->alloc(G, sizeof(double));
        C->loss(C, cases[k].loss, y, t, n, K, &cl);
        G->loss(G, cases[k].loss, gy, gt, n, K, gdl);
        G->download(G, &gl, gdl, sizeof gl);
        const double e = fabs(gl - cl) / fabs(cl);
        printf("  loss %-6s/%-8s  cpu %.9g gpu %.9g rel %.2e\n", dl4c_loss_str(cases[k].loss),
               dl4c_activation_str(cases[k].act), cl, gl, e);
        assert_true(e <= 1e-9);
        float *dz = malloc(4 * (size_t)n * K), *gdz = G->alloc(G, 4 * (size_t)n * K);
        const bool cf = C->loss_grad(C, cases[k].loss, cases[k].act, y, t, n, K, dz);
        const bool gf = G->loss_grad(G, cases[k].loss, cases[k].act, gy, gt, n, K, gdz);
        assert_int_equal(cf, gf);
        check("  loss grad", gdz, dz, (int64_t)n * K, TOL_EXACT);
        free(y); free(t); free(dz);
        G->free(G, gy); G->free(G, gt); G->free(G, gdl); G->free(G, gdz);
    }
}

static void test_regularization(void **state) {
    const int64_t n = 50001;
    float *w = rand_host(n, seed++, -1, 1), *dw = rand_host(n, seed++, -1, 1);
    float *gw = to_dev(G, w, n), *gdw = to_dev(G, dw, n);
    double cacc = 0.25, gacc = 0.25, *gd = G->alloc(G, sizeof(double));
    G->upload(G, gd, &gacc, sizeof gacc);
    C->reg_score(C, w, n, 0.003f, 0.0005f, &cacc);
    G->reg_score(G, gw, n, 0.003f, 0.0005f, gd);
    G->download(G, &gacc, gd, sizeof gacc);
    printf("  reg score cpu %.12g gpu %.12g\n", cacc, gacc);
    assert_true(fabs(gacc - cacc) <= 1e-12 * fabs(cacc));
    C->reg_grad(C, w, dw, n, 0.003f, 0.0005f);
    G->reg_grad(G, gw, gdw, n, 0.003f, 0.0005f);
    check("reg grad (same floats)", gdw, dw, n, 0);
    free(w); free(dw);
    G->free(G, gw); G->free(G, gdw); G->free(G, gd);
}

static void test_updaters(void **state) {
    const int64_t n = 10007;
    for (int u = 0; u < DL4C_UPDATER_COUNT; u++) {
        dl4c_updater_conf conf = {.type = (dl4c_updater)u};
        dl4c_updater_conf_resolve(&conf);
        const int slots = dl4c_updater_state_per_param(conf.type);
        float *p = rand_host(n, seed++, -1, 1), *s = calloc((size_t)(slots * n + 1), 4);
        float *gp = to_dev(G, p, n), *gs = G->alloc(G, 4 * (size_t)(slots * n + 1));
        for (int step = 1; step <= 3; step++) {
            float *g = rand_host(n, seed++, -1, 1), *gg = to_dev(G, g, n);
            C->updater_step(C, &conf, 0.05f, step, p, g, slots ? s : NULL, n, n);
            G->updater_step(G, &conf, 0.05f, step, gp, gg, slots ? gs : NULL, n, n);
            free(g);
            G->free(G, gg);
        }
        char what[64];
        snprintf(what, sizeof what, "updater %s, 3 steps: params", dl4c_updater_str(conf.type));
        check(what, gp, p, n, TOL_EXACT);
        if (slots) check("  state", gs, s, slots * n, TOL_EXACT);
        free(p); free(s);
        G->free(G, gp); G->free(G, gs);
    }
}

static void test_batch_in(void **state) {
    /* Three batches through the two slots: each reads back as uploaded. */
    for (int k = 0; k < 3; k++) {
        const int64_t xn = 1000 + 37 * k, yn = 10 * (k + 1);
        float *x = rand_host(xn, seed++, -1, 1), *y = rand_host(yn, seed++, 0, 1);
        const float *dx, *dy;
        assert_int_equal(G->batch_in(G, x, xn, y, yn, &dx, &dy), DL4C_OK);
        check("batch_in x", dx, x, xn, 0);
        check("batch_in y", dy, y, yn, 0);
        free(x); free(y);
    }
}

static int setup(void **state) {
    C = dl4c_backend_cpu();
    if (dl4c_backend_open(DL4C_DEVICE_CUDA, 0, false, &G)) {
        fprintf(stderr, "%s\n", dl4c_error_message());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    dl4c_backend_release(G);
    return 0;
}

int main(void) {
    gpu_require();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),        cmocka_unit_test(test_conv2d),     cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_activations), cmocka_unit_test(test_dense_helpers), cmocka_unit_test(test_losses),
        cmocka_unit_test(test_regularization), cmocka_unit_test(test_updaters), cmocka_unit_test(test_batch_in),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
