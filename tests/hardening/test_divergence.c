/* Divergence, interruption and streaming in the training master (issue 7):
 *  - a NaN in the data stops training with DL4C_ERR_NUMERIC naming the layer and the
 *    iteration, on every worker, and no checkpoint is written with non-finite parameters;
 *  - on_nan skip-batch drops exactly the bad minibatch (checked bit for bit against a
 *    hand-written loop that leaves it out, Adam state included);
 *  - a stop request finishes the round, checkpoints, and a resume from that checkpoint ends
 *    bit-identical to an undisturbed run;
 *  - streaming (block_rows) gives the same model as in-memory training.
 * The threaded cases also run under ThreadSanitizer (make check-tsan). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dl4c/dl4c.h"

#define NF 6   /* features */
#define NK 3   /* classes */

/* n examples of NF features, NK classes by a fixed random linear rule. */
static dl4c_dataset *make_data(int64_t n, uint64_t seed) {
    const int64_t fs[2] = {n, NF}, ls[2] = {n, NK};
    dl4c_tensor *f = dl4c_tensor_new(2, fs), *l = dl4c_tensor_new(2, ls);
    dl4c_rng r = dl4c_rng_make(seed, 91, 0, 0);
    for (int64_t e = 0; e < n; e++) {
        float *x = f->data + e * NF, z[NK] = {0};
        for (int i = 0; i < NF; i++) x[i] = (float)dl4c_rng_uniform(&r) - 0.5f;
        for (int k = 0; k < NK; k++)
            for (int i = 0; i < NF; i++) z[k] += (float)((k + 1) * (i % 3 - 1)) * x[i];
        int arg = 0;
        for (int k = 1; k < NK; k++) if (z[k] > z[arg]) arg = k;
        l->data[e * NK + arg] = 1.0f;
    }
    dl4c_dataset *ds = NULL;
    assert_int_equal(dl4c_dataset_new(f, l, NK, &ds), DL4C_OK);
    return ds;
}

static dl4c_net_conf conf_of(int workers, int batch, int freq, int epochs) {
    return (dl4c_net_conf){
        .seed = 5, .updater = {.type = DL4C_ADAM, .learning_rate = 0.01f},
        .input = {.features = NF}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 8, .activation = DL4C_TANH, .name = "hidden"),
                   dl4c_output(.n_out = NK, .activation = DL4C_SOFTMAX)},
        .training = {.epochs = epochs, .workers = workers, .batch_size_per_worker = batch,
                     .averaging_frequency = freq, .save_updater = true},
    };
}

static bool finite_all(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) if (!isfinite(x[i])) return false;
    return true;
}

/* Checkpoint callback: keeps a copy of the last checkpoint and checks it is finite. */
typedef struct ckpt {
    int written;
    dl4c_train_state state;
    float *params, *ustate;
    int64_t step;
    dl4c_worker_states ws;   /* a copy of the state's worker states (a round cut short) */
} ckpt;

static dl4c_status save_ckpt(void *p, const dl4c_net *cnet, const dl4c_train_state *s) {
    ckpt *c = p;
    dl4c_net *net = (dl4c_net *)cnet;
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    assert_true(finite_all(dl4c_net_params(net), np));
    assert_true(finite_all(dl4c_net_updater_state(net), ns));
    if (!c->params) {
        c->params = malloc(sizeof(float) * (size_t)np);
        c->ustate = malloc(sizeof(float) * (size_t)ns);
    }
    memcpy(c->params, dl4c_net_params(net), sizeof(float) * (size_t)np);
    memcpy(c->ustate, dl4c_net_updater_state(net), sizeof(float) * (size_t)ns);
    c->step = dl4c_net_step(net);
    c->state = *s;
    dl4c_worker_states_free(&c->ws);
    if (s->partial) {
        assert_int_equal(dl4c_worker_states_copy(net, s->partial, &c->ws), DL4C_OK);
        c->state.partial = &c->ws;
    }
    c->written++;
    return DL4C_OK;
}

/* The 1-based iteration at which row `row` is fitted in epoch 0 with one worker, batch B. */
static int64_t iteration_of(int64_t n, uint64_t seed, int64_t row, int B) {
    int64_t *perm, starts[2];
    assert_int_equal(dl4c_partition(n, seed, 0, 1, &perm, starts), DL4C_OK);
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) if (perm[i] == row) at = i;
    dl4c_free(perm);
    return at / B + 1;
}

/* A NaN feature stops training at the minibatch holding it, naming layer and iteration; the
 * checkpoints before it are finite and none is written after. */
static void test_nan_stops_with_layer_and_iteration(void **state) {
    const int64_t n = 64;
    dl4c_dataset *ds = make_data(n, 1);
    const int64_t bad_row = 37;
    ds->features->data[bad_row * NF + 2] = NAN;
    dl4c_net_conf c = conf_of(1, 4, 1, 2);
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    ckpt ck = {0};
    dl4c_train_opts opts = {.threads = 1, .checkpoint_every = 1, .checkpoint = save_ckpt, .checkpoint_ctx = &ck};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(net, ds, NULL, &opts, &st), DL4C_ERR_NUMERIC);
    const int64_t it = iteration_of(n, c.seed, bad_row, 4);
    char want[64];
    snprintf(want, sizeof want, "iteration %lld ", (long long)it);
    const char *msg = dl4c_error_message();
    print_message("message: %s\n", msg);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "epoch 1"));
    assert_non_null(strstr(msg, "layer 0 (dense \"hidden\")"));
    /* One checkpoint per round (= per minibatch here) before the bad one, none after. */
    assert_int_equal(ck.written, it - 1);
    assert_int_equal(ck.state.iteration, it - 1);
    free(ck.params); free(ck.ustate);
    dl4c_net_free(net);
    dl4c_dataset_free(ds);
}

/* With two workers every worker stops; the message is the failing worker's own. */
static void test_nan_stops_all_workers(void **state) {
    dl4c_dataset *ds = make_data(96, 2);
    for (int64_t r = 0; r < 96; r += 5) ds->features->data[r * NF] = INFINITY;
    dl4c_net_conf c = conf_of(2, 4, 2, 1);
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    dl4c_train_opts opts = {.threads = 2};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(net, ds, NULL, &opts, &st), DL4C_ERR_NUMERIC);
    assert_non_null(strstr(dl4c_error_message(), "training diverged at epoch 1, iteration 1 (worker"));
    dl4c_net_free(net);
    dl4c_dataset_free(ds);
}

/* A learning rate that overflows the weights: the update is caught (parameters, not the loss). */
static void test_overflowing_update_stops(void **state) {
    dl4c_dataset *ds = make_data(32, 3);
    for (int64_t i = 0; i < 32 * NF; i++) ds->features->data[i] *= 1000.0f;   /* gradients > 1 */
    dl4c_net_conf c = conf_of(1, 4, 1, 1);
    c.updater = (dl4c_updater_conf){.type = DL4C_SGD, .learning_rate = 3e38f};
    c.layers[0].activation = DL4C_IDENTITY;   /* no saturation: gradients stay > 1 */
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    dl4c_train_opts opts = {.threads = 1};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(net, ds, NULL, &opts, &st), DL4C_ERR_NUMERIC);
    print_message("message: %s\n", dl4c_error_message());
    assert_non_null(strstr(dl4c_error_message(), "iteration 1 (worker 0): the update gave NaN or infinity"));
    assert_non_null(strstr(dl4c_error_message(), "): parameters not finite"));
    dl4c_net_free(net);
    dl4c_dataset_free(ds);
}

static void gather(const dl4c_dataset *ds, const int64_t *rows, int n, float *x, float *y) {
    for (int i = 0; i < n; i++) {
        memcpy(x + i * NF, ds->features->data + rows[i] * NF, sizeof(float) * NF);
        memcpy(y + i * NK, ds->labels->data + rows[i] * NK, sizeof(float) * NK);
    }
}

/* skip-batch: the result is the plain loop without the bad minibatches (Adam state and step
 * untouched by them), bit for bit. */
static void test_skip_batch_drops_exactly_the_bad_batches(void **state) {
    const int64_t n = 70;
    const int B = 4, E = 2;
    dl4c_dataset *ds = make_data(n, 4);
    const int64_t bad[2] = {11, 50};
    ds->features->data[bad[0] * NF + 1] = NAN;
    ds->features->data[bad[1] * NF + 5] = -INFINITY;
    dl4c_net_conf c = conf_of(1, B, 3, E);
    dl4c_net *a, *b;
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
    dl4c_train_opts opts = {.threads = 1, .on_nan = DL4C_ON_NAN_SKIP_BATCH};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_OK);
    float x[4 * NF], y[4 * NK];
    int64_t steps = 0, skipped = 0;
    for (int e = 0; e < E; e++) {
        int64_t *perm, starts[2];
        assert_int_equal(dl4c_partition(n, c.seed, e, 1, &perm, starts), DL4C_OK);
        for (int64_t i = 0; i < n; i += B) {
            const int m = (int)(n - i < B ? n - i : B);
            bool has_bad = false;
            for (int k = 0; k < m; k++) has_bad |= perm[i + k] == bad[0] || perm[i + k] == bad[1];
            steps++;
            if (has_bad) { skipped++; continue; }
            gather(ds, perm + i, m, x, y);
            float score;
            assert_int_equal(dl4c_net_fit(b, x, y, m, &score), DL4C_OK);
        }
        dl4c_free(perm);
    }
    assert_int_equal(skipped, 2 * E);
    assert_int_equal(st.iteration, steps);
    assert_int_equal(dl4c_net_step(a), dl4c_net_step(b));
    assert_true(finite_all(dl4c_net_params(a), dl4c_net_n_params(a)));
    assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * dl4c_net_n_params(a));
    assert_memory_equal(dl4c_net_updater_state(a), dl4c_net_updater_state(b),
                        sizeof(float) * dl4c_net_n_updater_state(a));
    dl4c_net_free(a);
    dl4c_net_free(b);
    dl4c_dataset_free(ds);
}

/* skip-batch with two workers, the overflowing update caught and undone: training goes on
 * and ends finite (the workers agree: the averaging never sees a non-finite value). */
static void test_skip_batch_two_workers(void **state) {
    dl4c_dataset *ds = make_data(96, 5);
    for (int64_t r = 0; r < 96; r += 7) ds->features->data[r * NF + 3] = NAN;
    dl4c_net_conf c = conf_of(2, 4, 2, 2);
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    dl4c_train_opts opts = {.threads = 2, .on_nan = DL4C_ON_NAN_SKIP_BATCH};
    dl4c_train_state st;
    assert_int_equal(dl4c_train_local(net, ds, NULL, &opts, &st), DL4C_OK);
    assert_true(finite_all(dl4c_net_params(net), dl4c_net_n_params(net)));
    assert_true(isfinite(st.loss));
    dl4c_net_free(net);
    dl4c_dataset_free(ds);
}

/* ---- Interruption: stop after round 3 (set from rank 0's round listener, as a signal
 * handler would from outside), checkpoint, resume: the same bits as an undisturbed run. The
 * flag is read before each minibatch: rank 0 stops at the start of round 4, rank 1 may have
 * fitted a minibatch of it already (then the checkpoint holds both workers' states). ---- */
static volatile sig_atomic_t stop_flag;

static void stop_at_round_3(void *ctx, const dl4c_round_info *r) {
    if (r->epoch == 0 && r->round == 3) __atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
}

static void test_interrupt_and_resume_is_exact(void **state) {
    dl4c_dataset *ds = make_data(150, 6);
    dl4c_net_conf c = conf_of(2, 5, 2, 2);
    dl4c_net *ref, *a, *b;
    assert_int_equal(dl4c_net_new(&c, &ref), DL4C_OK);
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
    dl4c_train_opts plain = {.threads = 2};
    dl4c_train_state st_ref, st;
    assert_int_equal(dl4c_train_local(ref, ds, NULL, &plain, &st_ref), DL4C_OK);

    ckpt ck = {0};
    stop_flag = 0;
    dl4c_train_opts opts = {.threads = 2, .listener = {.on_round = stop_at_round_3},
                            .checkpoint = save_ckpt, .checkpoint_ctx = &ck, .stop = &stop_flag};
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &st), DL4C_ERR_INTERRUPTED);
    assert_int_equal(ck.written, 1);
    assert_int_equal(ck.state.epoch, 0);
    assert_int_equal(ck.state.round, 3);
    if (ck.state.partial) assert_int_equal(ck.ws.batches[0], 0);
    /* Resume into a fresh network from the checkpoint's contents. */
    memcpy(dl4c_net_params(b), ck.params, sizeof(float) * dl4c_net_n_params(b));
    memcpy(dl4c_net_updater_state(b), ck.ustate, sizeof(float) * dl4c_net_n_updater_state(b));
    dl4c_net_set_step(b, ck.step);
    dl4c_train_opts resume = {.threads = 2, .resume = &ck.state};
    dl4c_train_state st2;
    assert_int_equal(dl4c_train_local(b, ds, NULL, &resume, &st2), DL4C_OK);
    assert_int_equal(st2.iteration, st_ref.iteration);
    assert_memory_equal(dl4c_net_params(ref), dl4c_net_params(b), sizeof(float) * dl4c_net_n_params(b));
    assert_memory_equal(dl4c_net_updater_state(ref), dl4c_net_updater_state(b),
                        sizeof(float) * dl4c_net_n_updater_state(b));
    free(ck.params); free(ck.ustate);
    dl4c_worker_states_free(&ck.ws);
    dl4c_net_free(ref); dl4c_net_free(a); dl4c_net_free(b);
    dl4c_dataset_free(ds);
}

/* ---- Streaming: a data source handing out blocks of rows copied from "the file" ---- */
typedef struct stream_src {
    const dl4c_dataset *all;
    dl4c_dataset *part[4];     /* per worker: the block it holds */
    int64_t *ident[4];
    int64_t max_block;         /* largest block acquired */
    int acquired;              /* blocks acquired */
} stream_src;

static dl4c_status stream_acquire(void *p, int w, const int64_t *rows, int64_t n, const dl4c_dataset **ds,
                                  const int64_t **idx) {
    stream_src *s = p;
    assert_null(s->part[w]);   /* the master releases a block before acquiring the next */
    const int64_t fs[2] = {n, NF}, ls[2] = {n, NK};
    dl4c_tensor *f = dl4c_tensor_new(2, fs), *l = dl4c_tensor_new(2, ls);
    s->ident[w] = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        memcpy(f->data + i * NF, s->all->features->data + rows[i] * NF, sizeof(float) * NF);
        memcpy(l->data + i * NK, s->all->labels->data + rows[i] * NK, sizeof(float) * NK);
        s->ident[w][i] = i;
    }
    assert_int_equal(dl4c_dataset_new(f, l, NK, &s->part[w]), DL4C_OK);
    __atomic_fetch_add(&s->acquired, 1, __ATOMIC_RELAXED);
    int64_t m = __atomic_load_n(&s->max_block, __ATOMIC_RELAXED);
    while (n > m && !__atomic_compare_exchange_n(&s->max_block, &m, n, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    *ds = s->part[w];
    *idx = s->ident[w];
    return DL4C_OK;
}

static void stream_release(void *p, int w) {
    stream_src *s = p;
    dl4c_dataset_free(s->part[w]);
    free(s->ident[w]);
    s->part[w] = NULL;
    s->ident[w] = NULL;
}

static void test_streaming_equals_in_memory(void **state) {
    dl4c_dataset *ds = make_data(203, 7);
    dl4c_net_conf c = conf_of(2, 6, 3, 2);
    c.training.prefetch = 2;
    dl4c_net *a, *b;
    assert_int_equal(dl4c_net_new(&c, &a), DL4C_OK);
    assert_int_equal(dl4c_net_new(&c, &b), DL4C_OK);
    dl4c_train_opts opts = {.threads = 2};
    dl4c_train_state sa, sb;
    assert_int_equal(dl4c_train_local(a, ds, NULL, &opts, &sa), DL4C_OK);
    stream_src src = {.all = ds};
    /* 20 rows: blocks of 18 (3 minibatches), so blocks end inside rounds too. */
    dl4c_train_data data = {.n_train = 203, .acquire = stream_acquire, .release = stream_release,
                            .ctx = &src, .block_rows = 20};
    assert_int_equal(dl4c_train_local_data(b, &data, &opts, &sb), DL4C_OK);
    assert_int_equal(src.max_block, 18);
    assert_true(src.acquired >= 2 * 2 * 6);   /* ~102 rows per worker and epoch: 6 blocks */
    assert_int_equal(sa.iteration, sb.iteration);
    assert_memory_equal(dl4c_net_params(a), dl4c_net_params(b), sizeof(float) * dl4c_net_n_params(a));
    dl4c_net_free(a);
    dl4c_net_free(b);
    dl4c_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_stops_with_layer_and_iteration),
        cmocka_unit_test(test_nan_stops_all_workers),
        cmocka_unit_test(test_overflowing_update_stops),
        cmocka_unit_test(test_skip_batch_drops_exactly_the_bad_batches),
        cmocka_unit_test(test_skip_batch_two_workers),
        cmocka_unit_test(test_interrupt_and_resume_is_exact),
        cmocka_unit_test(test_streaming_equals_in_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
