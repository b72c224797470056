/* Parameter averaging: the semantics DESIGN.md promises, checked against hand-written loops. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dl4c/dl4c.h"

/* n examples of 1x6x6 with 3 classes given by a fixed random linear rule (learnable). */
static dl4c_dataset *make_data(int64_t n, uint64_t seed) {
    const int64_t fs[4] = {n, 1, 6, 6}, ls[2] = {n, 3};
    dl4c_tensor *f = dl4c_tensor_new(4, fs), *l = dl4c_tensor_new(2, ls);
    dl4c_rng r = dl4c_rng_make(seed, 77, 0, 0), wr = dl4c_rng_make(5, 78, 0, 0);
    float w[3][36];
    for (int k = 0; k < 3; k++) for (int i = 0; i < 36; i++) w[k][i] = (float)dl4c_rng_normal(&wr);
    for (int64_t e = 0; e < n; e++) {
        float *x = f->data + e * 36, best = -1e30f;
        int arg = 0;
        for (int i = 0; i < 36; i++) x[i] = (float)dl4c_rng_uniform(&r);
        for (int k = 0; k < 3; k++) {
            float z = 0;
            for (int i = 0; i < 36; i++) z += w[k][i] * (x[i] - 0.5f);
            if (z > best) { best = z; arg = k; }
        }
        l->data[e * 3 + arg] = 1.0f;
    }
    dl4c_dataset *ds = NULL;
    assert_int_equal(dl4c_dataset_new(f, l, 3, &ds), DL4C_OK);
    return ds;
}

static dl4c_net_conf small_conf(dl4c_updater u, int workers, int batch, int freq, int epochs) {
    dl4c_net_conf c = {
        .seed = 42, .l2 = 1e-3f, .updater = {.type = u, .learning_rate = u == DL4C_SGD ? 0.1f : 0.02f},
        .input = {.channels = 1, .height = 6, .width = 6}, .n_layers = 4,
        .layers = {dl4c_conv2d(.kernel = {3, 3}, .n_out = 4, .activation = DL4C_RELU),
                   dl4c_subsampling(.kernel = {2, 2}),
                   dl4c_dense(.n_out = 8, .activation = DL4C_TANH),
                   dl4c_output(.n_out = 3, .activation = DL4C_SOFTMAX)},
        .training = {.epochs = epochs, .workers = workers, .batch_size_per_worker = batch,
                     .averaging_frequency = freq, .save_updater = true},
    };
    return c;
}

static void gather(const dl4c_dataset *ds, const int64_t *rows, int n, float *x, float *y) {
    const int64_t fr = dl4c_tensor_row_size(ds->features), lr = ds->labels->shape[1];
    for (int i = 0; i < n; i++) {
        memcpy(x + i * fr, ds->features->data + rows[i] * fr, sizeof(float) * fr);
        memcpy(y + i * lr, ds->labels->data + rows[i] * lr, sizeof(float) * lr);
    }
}

/* With one worker, training is exactly the plain loop: same order, same steps, same bits. */
static void test_one_worker_is_plain_training(void **state) {
    dl4c_dataset *ds = make_data(203, 1);
    const dl4c_updater ups[] = {DL4C_ADAGRAD, DL4C_ADAM, DL4C_NESTEROVS};
    for (size_t u = 0; u < 3; u++) {
        dl4c_net_conf c = small_conf(ups[u], 1, 16, 5, 2);
        dl4c_net *a, *b;
        assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
        assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
        dl4c_train_opts opts = {.threads = 1};
        dl4c_train_state st;
        assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_OK);
        float x[16 * 36], y[16 * 3];
        int64_t steps = 0;
        for (int e = 0; e < 2; e++) {
            int64_t *perm, starts[2];
            assert_int_equal(dl4c_partition(203, c.seed, e, 1, &perm, starts), DL4C_OK);
            for (int64_t i = 0; i < 203; i += 16) {
                const int n = (int)(203 - i < 16 ? 203 - i : 16);
                gather(ds, perm + i, n, x, y);
                float score;
                assert_int_equal(dl4c_net_fit(b, x, y, n, &score), DL4C_OK);
                steps++;
            }
            dl4c_free(perm);
        }
        assert_int_equal(st.iteration, steps);
        assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * dl4c_net_n_params(a));
        assert_memory_equal(dl4c_net_updater_state(a), dl4c_net_updater_state(b),
                            sizeof(float) * dl4c_net_n_updater_state(a));
        dl4c_net_free(a);
        dl4c_net_free(b);
    }
    dl4c_dataset_free(ds);
}

/* Plain SGD, averaging every step: N workers with batch B = one worker with batch N*B made of
 * the same examples (averaging after one SGD step is one step on the averaged gradient). */
static void test_sgd_workers_equal_large_batch(void **state) {
    const int W = 3, B = 8, R = 6;
    const int64_t n = (int64_t)W * B * R;
    dl4c_dataset *ds = make_data(n, 2);
    dl4c_net_conf c = small_conf(DL4C_SGD, W, B, 1, 1);
    c.l2 = 0;
    dl4c_net *a, *b;
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    c.training.workers = 1;
    c.training.batch_size_per_worker = W * B;
    assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
    dl4c_train_opts opts = {.threads = 1};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_OK);
    assert_int_equal(st.iteration, R);
    int64_t *perm, starts[4];
    assert_int_equal(dl4c_partition(n, 42, 0, W, &perm, starts), DL4C_OK);
    float x[24 * 36], y[24 * 3];
    for (int r = 0; r < R; r++) {
        int64_t rows[24];
        for (int w = 0; w < W; w++)
            for (int i = 0; i < B; i++) rows[w * B + i] = perm[starts[w] + (int64_t)r * B + i];
        gather(ds, rows, W * B, x, y);
        float score;
        assert_int_equal(dl4c_net_fit(b, x, y, W * B, &score), DL4C_OK);
    }
    dl4c_free(perm);
    double maxdiff = 0, maxp = 0;
    for (int64_t i = 0; i < dl4c_net_n_params(a); i++) {
        maxdiff = fmax(maxdiff, fabs((double)dl4c_net_params(a)[i] - dl4c_net_params(b)[i]));
        maxp = fmax(maxp, fabs(dl4c_net_params(b)[i]));
    }
    fprintf(stderr, "  max |difference| %.3g (max |param| %.3g)\n", maxdiff, maxp);
    assert_true(maxdiff <= 1e-6 * fmax(1.0, maxp));
    /* and it really trained: parameters moved from the initial ones */
    dl4c_net *init;
    assert_int_equal(dl4c_net_new(&c, &init), DL4C_OK);
    assert_memory_not_equal(dl4c_net_params(init), dl4c_net_params(b), sizeof(float) * dl4c_net_n_params(b));
    dl4c_net_free(init);
    dl4c_net_free(a);
    dl4c_net_free(b);
    dl4c_dataset_free(ds);
}

typedef struct capture {
    int at_round;               /* which round's checkpoint to keep (global count, 1-based) */
    int seen;
    float *params, *ustate;     /* copies */
    float *bmuf;                /* copy of the block momentum (bmuf runs) */
    int64_t step;
    dl4c_train_state st;
    int64_t counts[9];          /* last epoch's evaluation */
    int evals;
} capture;

static dl4c_status keep_checkpoint(void *p, const dl4c_net *net, const dl4c_train_state *s) {
    capture *c = p;
    if (++c->seen != c->at_round) return DL4C_OK;
    dl4c_net *n = (dl4c_net *)net;
    memcpy(c->params, dl4c_net_params(n), sizeof(float) * dl4c_net_n_params(n));
    memcpy(c->ustate, dl4c_net_updater_state(n), sizeof(float) * dl4c_net_n_updater_state(n));
    c->step = dl4c_net_step(net);
    c->st = *s;
    if (s->bmuf_delta) {
        memcpy(c->bmuf, s->bmuf_delta, sizeof(float) * dl4c_net_n_params(n));
        c->st.bmuf_delta = c->bmuf;
    }
    return DL4C_OK;
}

static void on_epoch(void *p, const dl4c_epoch_info *e) {
    capture *c = p;
    memcpy(c->counts, dl4c_eval_counts((dl4c_eval *)e->eval), sizeof c->counts);
    c->evals++;
}

/* Resuming from a mid-epoch checkpoint reaches the same model as an uninterrupted run; the
 * distributed evaluation equals a single-process one; two runs are identical. */
static void test_resume_and_distributed_eval(void **state) {
    dl4c_dataset *ds = make_data(301, 3), *test = make_data(97, 4);
    for (int run = 0; run < 3; run++) {
        const int W = run == 0 ? 1 : 3;
        dl4c_net_conf c = small_conf(DL4C_ADAM, W, 10, 2, 3);
        if (run == 2) c.training.averaging = DL4C_AVG_BMUF;   /* block momentum survives a resume */
        dl4c_net *a, *b, *again;
        assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
        assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
        assert_int_equal(dl4c_net_new(&c, &again), DL4C_OK);
        const int64_t P = dl4c_net_n_params(a);
        capture cap = {.at_round = 9, .params = malloc(sizeof(float) * P), .bmuf = malloc(sizeof(float) * P),
                       .ustate = malloc(sizeof(float) * dl4c_net_n_updater_state(a))};
        dl4c_train_opts opts = {.threads = 1, .checkpoint_every = 1, .checkpoint = keep_checkpoint,
                                .checkpoint_ctx = &cap, .listener = {.on_epoch = on_epoch, .ctx = &cap}};
        dl4c_train_state st;
        assert_int_equal(dl4c_train_local(a, ds, test, &opts, &st), DL4C_OK);
        assert_int_equal(cap.evals, 3);
        assert_int_equal(st.epoch, 3);
        /* distributed evaluation (W shards) == single-process evaluation of the final net */
        dl4c_eval *ev;
        assert_int_equal(dl4c_net_evaluate(a, test, 13, &ev, NULL), DL4C_OK);
        assert_memory_equal(dl4c_eval_counts(ev), cap.counts, sizeof cap.counts);
        assert_int_equal(dl4c_eval_examples(ev), 97);
        fprintf(stderr, "  workers %d%s: test accuracy %.3f\n", W, run == 2 ? " (bmuf)" : "",
                dl4c_eval_accuracy(ev));
        dl4c_eval_free(ev);
        /* resume from the 9th round's state */
        memcpy(dl4c_net_params(b), cap.params, sizeof(float) * P);
        memcpy(dl4c_net_updater_state(b), cap.ustate, sizeof(float) * dl4c_net_n_updater_state(b));
        dl4c_net_set_step(b, cap.step);
        assert_true(cap.st.round > 0 || cap.st.epoch > 0);
        dl4c_train_opts ropts = {.threads = 1, .resume = &cap.st};
        dl4c_train_state rst;
        assert_int_equal(dl4c_train_local(b, ds, NULL, &ropts, &rst), DL4C_OK);
        assert_int_equal(rst.iteration, st.iteration);
        assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * P);
        /* a second uninterrupted run is identical */
        dl4c_train_opts plain = {.threads = 1};
        assert_int_equal(dl4c_train_local(again, ds, NULL, &plain, &rst), DL4C_OK);
        assert_memory_equal(dl4c_net_params(a), dl4c_net_params(again), sizeof(float) * P);
        if (run == 2) assert_non_null(cap.st.bmuf_delta);
        free(cap.params);
        free(cap.ustate);
        free(cap.bmuf);
        dl4c_net_free(a); dl4c_net_free(b); dl4c_net_free(again);
    }
    dl4c_dataset_free(ds);
    dl4c_dataset_free(test);
}

/* Unequal partitions: workers that did fewer batches weigh less; the last short round counts. */
static void test_uneven_rounds_use_every_example(void **state) {
    dl4c_dataset *ds = make_data(53, 5);
    dl4c_net_conf c = small_conf(DL4C_SGD, 4, 4, 3, 1);
    dl4c_net *a;
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    int64_t seen = 0;
    dl4c_train_opts opts = {.threads = 1};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_OK);
    /* 53 examples over 4 workers: parts of 14,13,13,13 -> 4 batches each -> 2 rounds (3 + 1) */
    assert_int_equal(st.round, 0);
    assert_int_equal(st.epoch, 1);
    assert_int_equal(st.iteration, 4);
    (void)seen;
    for (int64_t i = 0; i < dl4c_net_n_params(a); i++) assert_true(isfinite(dl4c_net_params(a)[i]));
    dl4c_net_free(a);
    dl4c_dataset_free(ds);
}

/* A NaN in the data stops every worker with a message naming where. */
static void test_nan_stops_all_workers(void **state) {
    dl4c_dataset *ds = make_data(64, 6);
    ds->features->data[40 * 36 + 3] = NAN;
    dl4c_net_conf c = small_conf(DL4C_SGD, 2, 8, 2, 1);
    dl4c_net *a;
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    dl4c_train_opts opts = {.threads = 1};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_ERR_NUMERIC);
    assert_non_null(strstr(dl4c_error_message(), "iteration"));
    assert_non_null(strstr(dl4c_error_message(), "NaN"));
    dl4c_net_free(a);
    dl4c_dataset_free(ds);
}

/* ---- A stop request between minibatches (SIGINT) cuts a round short ---- */

/* Training data served one minibatch at a time from memory (streaming, block_rows = batch);
 * worker `stop_worker` sets the stop flag when it acquires its `stop_at`-th block. */
typedef struct cut_data {
    const dl4c_dataset *ds;
    volatile sig_atomic_t stop;
    int stop_worker, stop_at, acquired[8];
} cut_data;

static dl4c_status cut_acquire(void *p, int worker, const int64_t *rows, int64_t n, const dl4c_dataset **ds,
                               const int64_t **idx) {
    cut_data *c = p;
    (void)n;
    /* another thread's request: an atomic store, as the trainer's read (a signal handler's own
     * write is the other kind of request) */
    if (worker == c->stop_worker && ++c->acquired[worker] == c->stop_at) __atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
    *ds = c->ds;
    *idx = rows;
    return DL4C_OK;
}

static void cut_release(void *p, int worker) { (void)p; (void)worker; }

/* The checkpoint of the cut: the net's own tensors, the state and a deep copy of the workers'. */
typedef struct cut_capture {
    int checkpoints;
    float *params, *ustate, *bmuf;
    int64_t step;
    dl4c_train_state st;
    dl4c_worker_states ws;
} cut_capture;

static dl4c_status keep_cut(void *p, const dl4c_net *net, const dl4c_train_state *s) {
    cut_capture *c = p;
    dl4c_net *n = (dl4c_net *)net;
    const int64_t np = dl4c_net_n_params(n), ns = dl4c_net_n_updater_state(n);
    c->checkpoints++;
    assert_non_null(s->partial);
    memcpy(c->params, dl4c_net_params(n), sizeof(float) * np);
    memcpy(c->ustate, dl4c_net_updater_state(n), sizeof(float) * ns);
    c->step = dl4c_net_step(net);
    c->st = *s;
    if (s->bmuf_delta) {
        memcpy(c->bmuf, s->bmuf_delta, sizeof(float) * np);
        c->st.bmuf_delta = c->bmuf;
    }
    assert_int_equal(dl4c_worker_states_copy(net, s->partial, &c->ws), DL4C_OK);
    c->st.partial = &c->ws;
    return DL4C_OK;
}

/* Stopped between minibatches, training writes every worker's state and returns
 * DL4C_ERR_INTERRUPTED; resuming from it gives the uninterrupted run's parameters, bit for bit
 * (plain averaging with Adam and save_updater; BMUF with a fresh updater every round). */
static void test_stop_mid_round_resumes_exactly(void **state) {
    dl4c_dataset *ds = make_data(301, 8);
    for (int run = 0; run < 2; run++) {
        dl4c_net_conf c = small_conf(DL4C_ADAM, 3, 5, 4, 2);
        if (run == 1) {
            c.training.averaging = DL4C_AVG_BMUF;
            c.training.block_momentum = 0.5f;
            c.training.block_learning_rate = 1.0f;
            c.training.save_updater = false;
        }
        dl4c_net *a, *b, *cut;
        assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
        assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
        assert_int_equal(dl4c_net_new(&c, &cut), DL4C_OK);
        const int64_t P = dl4c_net_n_params(a);
        cut_data data = {.ds = ds, .stop_worker = 1, .stop_at = 7};   /* worker 1's 7th minibatch: round 2 */
        dl4c_train_data td = {.n_train = 301, .acquire = cut_acquire, .release = cut_release, .ctx = &data,
                              .block_rows = 5};
        dl4c_train_state st;
        dl4c_train_opts plain = {.threads = 1};
        data.stop_worker = -1;
        assert_int_equal(dl4c_train_local_data(a, &td, &plain, &st), DL4C_OK);

        data.stop_worker = 1;
        cut_capture cap = {.params = malloc(sizeof(float) * P), .bmuf = malloc(sizeof(float) * P),
                           .ustate = malloc(sizeof(float) * dl4c_net_n_updater_state(a))};
        dl4c_train_opts opts = {.threads = 1, .checkpoint = keep_cut, .checkpoint_ctx = &cap, .stop = &data.stop};
        dl4c_train_state cst;
        assert_int_equal(dl4c_train_local_data(cut, &td, &opts, &cst), DL4C_ERR_INTERRUPTED);
        assert_non_null(strstr(dl4c_error_message(), "between minibatches"));
        assert_int_equal(cap.checkpoints, 1);
        assert_int_equal(cap.st.epoch, 0);
        assert_int_equal(cap.st.round, 1);
        assert_int_equal(cap.ws.workers, 3);
        assert_int_equal(cap.ws.batches[1], 3);   /* its 7th minibatch is the 3rd of round 2 */
        for (int w = 0; w < 3; w++) assert_true(cap.ws.batches[w] <= 4);

        memcpy(dl4c_net_params(b), cap.params, sizeof(float) * P);
        memcpy(dl4c_net_updater_state(b), cap.ustate, sizeof(float) * dl4c_net_n_updater_state(b));
        dl4c_net_set_step(b, cap.step);
        data.stop_worker = -1;
        data.stop = 0;
        dl4c_train_opts ropts = {.threads = 1, .resume = &cap.st};
        dl4c_train_state rst;
        assert_int_equal(dl4c_train_local_data(b, &td, &ropts, &rst), DL4C_OK);
        assert_int_equal(rst.iteration, st.iteration);
        assert_null(rst.partial);
        assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * P);
        /* resuming a round cut short needs the same workers */
        dl4c_net_conf c2 = c;
        c2.training.workers = 2;
        dl4c_net *d;
        assert_int_equal(dl4c_net_new(&c2, &d), DL4C_OK);
        assert_int_equal(dl4c_train_local_data(d, &td, &ropts, &rst), DL4C_ERR_INVALID_ARG);
        assert_non_null(strstr(dl4c_error_message(), "states of 3 workers"));
        dl4c_net_free(d);
        dl4c_worker_states_free(&cap.ws);
        free(cap.params); free(cap.ustate); free(cap.bmuf);
        dl4c_net_free(a); dl4c_net_free(b); dl4c_net_free(cut);
    }
    dl4c_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_worker_is_plain_training),
        cmocka_unit_test(test_sgd_workers_equal_large_batch),
        cmocka_unit_test(test_resume_and_distributed_eval),
        cmocka_unit_test(test_uneven_rounds_use_every_example),
        cmocka_unit_test(test_nan_stops_all_workers),
        cmocka_unit_test(test_stop_mid_round_resumes_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
